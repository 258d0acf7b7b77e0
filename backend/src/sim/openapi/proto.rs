//! The protobuf form of an OpenAPI v2 document: gnostic's `openapi.v2.Document`
//! (github.com/google/gnostic, `openapiv2/OpenAPIv2.proto`), which kubectl
//! asks `/openapi/v2` for and decodes without looking at the content type
//! (kubectl 1.20 knows no other form). Only the messages a Kubernetes
//! document uses are written: info, paths with their operations and
//! parameters, definitions with their schemas; vendor extensions and
//! defaults travel as YAML text in `Any.yaml`, as gnostic writes them.

use serde_json::{Map, Value};

/// A message being written: fields in the order they are added.
#[derive(Default)]
struct Message(Vec<u8>);

const VARINT: u64 = 0;
const BYTES: u64 = 2;

impl Message {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn key(&mut self, field: u64, wire_type: u64) {
        self.varint((field << 3) | wire_type);
    }

    fn bytes(&mut self, field: u64, bytes: &[u8]) {
        self.key(field, BYTES);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    /// A string field; proto3 leaves empty strings out.
    fn string(&mut self, field: u64, value: &str) {
        if !value.is_empty() {
            self.bytes(field, value.as_bytes());
        }
    }

    fn bool(&mut self, field: u64, value: bool) {
        if value {
            self.key(field, VARINT);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u64, value: i64) {
        if value != 0 {
            self.key(field, VARINT);
            self.varint(value as u64);
        }
    }

    /// A sub-message, written even when empty (its presence can matter).
    fn message(&mut self, field: u64, message: Message) {
        self.bytes(field, &message.0);
    }

    /// A JSON string field of `object`, when it is one.
    fn json_string(&mut self, field: u64, object: &Map<String, Value>, key: &str) {
        if let Some(value) = object.get(key).and_then(Value::as_str) {
            self.string(field, value);
        }
    }

    fn json_bool(&mut self, field: u64, object: &Map<String, Value>, key: &str) {
        self.bool(
            field,
            object.get(key).and_then(Value::as_bool) == Some(true),
        );
    }

    /// A repeated string field from a JSON array of strings.
    fn json_strings(&mut self, field: u64, object: &Map<String, Value>, key: &str) {
        for value in object
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(value) = value.as_str() {
                self.bytes(field, value.as_bytes());
            }
        }
    }
}

/// `Any { yaml }`: JSON text is YAML, which is how readers parse it.
fn any(value: &Value) -> Message {
    let mut any = Message::default();
    any.string(2, &value.to_string());
    any
}

/// `repeated NamedAny vendor_extension`: every `x-` key of `object`.
fn vendor_extensions(message: &mut Message, field: u64, object: &Map<String, Value>) {
    for (name, value) in object.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Message::default();
        named.string(1, name);
        named.message(2, any(value));
        message.message(field, named);
    }
}

/// Encodes a Swagger 2.0 document (as JSON) as an `openapi.v2.Document`.
pub fn document(doc: &Value) -> Vec<u8> {
    let empty = Map::new();
    let doc = doc.as_object().unwrap_or(&empty);
    let mut out = Message::default();
    out.json_string(1, doc, "swagger");
    if let Some(info) = doc.get("info").and_then(Value::as_object) {
        let mut message = Message::default();
        message.json_string(1, info, "title");
        message.json_string(2, info, "version");
        out.message(2, message);
    }
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        let mut message = Message::default();
        for (name, item) in paths {
            let mut named = Message::default();
            named.string(1, name);
            named.message(2, path_item(item.as_object().unwrap_or(&empty)));
            message.message(2, named);
        }
        out.message(8, message);
    }
    if let Some(definitions) = doc.get("definitions").and_then(Value::as_object) {
        let mut message = Message::default();
        for (name, definition) in definitions {
            let mut named = Message::default();
            named.string(1, name);
            named.message(2, schema(definition));
            message.message(1, named);
        }
        out.message(9, message);
    }
    out.0
}

fn path_item(item: &Map<String, Value>) -> Message {
    let mut message = Message::default();
    for (field, verb) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if let Some(operation) = item.get(verb).and_then(Value::as_object) {
            message.message(field, self::operation(operation));
        }
    }
    for parameter in item
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        message.message(9, parameters_item(parameter));
    }
    vendor_extensions(&mut message, 10, item);
    message
}

fn operation(operation: &Map<String, Value>) -> Message {
    let mut message = Message::default();
    message.json_strings(1, operation, "tags");
    message.json_string(3, operation, "description");
    message.json_string(5, operation, "operationId");
    message.json_strings(6, operation, "produces");
    message.json_strings(7, operation, "consumes");
    for parameter in operation
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        message.message(8, parameters_item(parameter));
    }
    if let Some(responses) = operation.get("responses").and_then(Value::as_object) {
        let mut list = Message::default();
        for (code, response) in responses {
            let response = response.as_object().cloned().unwrap_or_default();
            let mut body = Message::default();
            body.json_string(1, &response, "description");
            if let Some(schema) = response.get("schema") {
                let mut item = Message::default();
                item.message(1, self::schema(schema));
                body.message(2, item);
            }
            let mut value = Message::default();
            value.message(1, body);
            let mut named = Message::default();
            named.string(1, code);
            named.message(2, value);
            list.message(1, named);
        }
        message.message(9, list);
    }
    message.json_strings(10, operation, "schemes");
    vendor_extensions(&mut message, 13, operation);
    message
}

/// `ParametersItem { parameter: Parameter { body | non_body } }`.
fn parameters_item(parameter: &Value) -> Message {
    let empty = Map::new();
    let p = parameter.as_object().unwrap_or(&empty);
    let mut inner = Message::default();
    match p.get("in").and_then(Value::as_str) {
        Some("body") => {
            let mut body = Message::default();
            body.json_string(1, p, "description");
            body.json_string(2, p, "name");
            body.json_string(3, p, "in");
            body.json_bool(4, p, "required");
            if let Some(schema) = p.get("schema") {
                body.message(5, self::schema(schema));
            }
            inner.message(1, body);
        }
        location => {
            // Query and path sub-schemas share their first fields; `type`
            // and `uniqueItems` sit one number apart.
            let (which, type_field, unique_field) = match location {
                Some("path") => (4, 5, 19),
                _ => (3, 6, 20),
            };
            let mut sub = Message::default();
            sub.json_bool(1, p, "required");
            sub.json_string(2, p, "in");
            sub.json_string(3, p, "description");
            sub.json_string(4, p, "name");
            sub.json_string(type_field, p, "type");
            sub.json_bool(unique_field, p, "uniqueItems");
            let mut non_body = Message::default();
            non_body.message(which, sub);
            inner.message(2, non_body);
        }
    }
    let mut item = Message::default();
    item.message(1, inner);
    item
}

/// `openapi.v2.Schema`.
fn schema(schema: &Value) -> Message {
    let empty = Map::new();
    let s = schema.as_object().unwrap_or(&empty);
    let mut message = Message::default();
    message.json_string(1, s, "$ref");
    message.json_string(2, s, "format");
    message.json_string(3, s, "title");
    message.json_string(4, s, "description");
    if let Some(default) = s.get("default") {
        message.message(5, any(default));
    }
    for (field, key) in [
        (11, "maxLength"),
        (12, "minLength"),
        (14, "maxItems"),
        (15, "minItems"),
    ] {
        message.int64(field, s.get(key).and_then(Value::as_i64).unwrap_or(0));
    }
    message.json_bool(16, s, "uniqueItems");
    message.json_strings(19, s, "required");
    for value in s
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        message.message(20, any(value));
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(allowed)) => {
            let mut item = Message::default();
            item.key(2, VARINT);
            item.varint(u64::from(*allowed));
            message.message(21, item);
        }
        Some(inner @ Value::Object(_)) => {
            let mut item = Message::default();
            item.message(1, self::schema(inner));
            message.message(21, item);
        }
        _ => {}
    }
    if let Some(type_) = s.get("type") {
        let mut item = Message::default();
        match type_ {
            Value::Array(types) => {
                for t in types.iter().filter_map(Value::as_str) {
                    item.bytes(1, t.as_bytes());
                }
            }
            other => item.string(1, other.as_str().unwrap_or_default()),
        }
        message.message(22, item);
    }
    if let Some(items) = s.get("items") {
        let mut item = Message::default();
        match items {
            Value::Array(list) => list.iter().for_each(|i| item.message(1, self::schema(i))),
            one => item.message(1, self::schema(one)),
        }
        message.message(23, item);
    }
    for part in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        message.message(24, self::schema(part));
    }
    if let Some(properties) = s.get("properties").and_then(Value::as_object) {
        let mut list = Message::default();
        for (name, property) in properties {
            let mut named = Message::default();
            named.string(1, name);
            named.message(2, self::schema(property));
            list.message(1, named);
        }
        message.message(25, list);
    }
    message.json_bool(27, s, "readOnly");
    vendor_extensions(&mut message, 31, s);
    message
}

#[cfg(test)]
pub(crate) mod decode {
    //! A protobuf wire-format reader for the tests: the fields of one
    //! message, by number.

    /// `(field number, value)`: varints as numbers, length-delimited
    /// fields as their bytes.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Field<'a> {
        Varint(u64),
        Bytes(&'a [u8]),
    }

    fn varint(bytes: &[u8], at: &mut usize) -> u64 {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return value;
            }
            shift += 7;
        }
    }

    /// Every field of a message, panicking on anything but varint and
    /// length-delimited fields (the only ones the encoder writes).
    pub fn fields(bytes: &[u8]) -> Vec<(u64, Field<'_>)> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < bytes.len() {
            let key = varint(bytes, &mut at);
            match key & 7 {
                0 => out.push((key >> 3, Field::Varint(varint(bytes, &mut at)))),
                2 => {
                    let len = varint(bytes, &mut at) as usize;
                    out.push((key >> 3, Field::Bytes(&bytes[at..at + len])));
                    at += len;
                }
                other => panic!("unexpected wire type {other}"),
            }
        }
        out
    }

    /// The length-delimited values of field `number`.
    pub fn all(bytes: &[u8], number: u64) -> Vec<&[u8]> {
        fields(bytes)
            .into_iter()
            .filter_map(|(n, f)| match f {
                Field::Bytes(b) if n == number => Some(b),
                _ => None,
            })
            .collect()
    }

    /// The one length-delimited value of field `number`.
    pub fn one(bytes: &[u8], number: u64) -> &[u8] {
        let values = all(bytes, number);
        assert_eq!(values.len(), 1, "field {number}");
        values[0]
    }

    pub fn text(bytes: &[u8], number: u64) -> String {
        String::from_utf8(one(bytes, number).to_vec()).expect("utf-8")
    }

    /// The `value` (field 2) of the `Named…` entry (field `number`) whose
    /// name (field 1) is `name`.
    pub fn named<'a>(bytes: &'a [u8], number: u64, name: &str) -> &'a [u8] {
        all(bytes, number)
            .into_iter()
            .find(|entry| all(entry, 1).first() == Some(&name.as_bytes()))
            .map(|entry| one(entry, 2))
            .unwrap_or_else(|| panic!("no entry {name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::decode::{Field, fields, named, one, text};
    use super::*;
    use serde_json::json;

    #[test]
    fn a_small_schema_has_the_bytes_protoc_would_write() {
        let bytes = schema(&json!({"description": "a", "type": "string"})).0;
        // description = 4 (key 0x22), type = 22 (key 0xb2 0x01: a two-byte
        // varint), TypeItem.value = 1.
        assert_eq!(
            bytes,
            [
                0x22, 1, b'a', 0xb2, 0x01, 8, 0x0a, 6, b's', b't', b'r', b'i', b'n', b'g'
            ]
        );
    }

    #[test]
    fn varints_and_long_fields_round_trip() {
        let long = "x".repeat(300);
        let mut message = Message::default();
        message.string(4, &long);
        message.int64(11, 150);
        message.bool(16, true);
        message.bool(27, false);
        let decoded = fields(&message.0);
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[0], (4, Field::Bytes(long.as_bytes())));
        assert_eq!(decoded[1], (11, Field::Varint(150)));
        assert_eq!(decoded[2], (16, Field::Varint(1)));
    }

    #[test]
    fn documents_carry_definitions_paths_and_extensions() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": {"/apis/apps/v1/namespaces/{namespace}/deployments/{name}": {
                "parameters": [{"name": "name", "in": "path", "required": true, "type": "string", "uniqueItems": true}],
                "patch": {
                    "operationId": "patchAppsV1NamespacedDeployment",
                    "parameters": [
                        {"name": "body", "in": "body", "required": true, "schema": {"type": "object"}},
                        {"name": "dryRun", "in": "query", "type": "string", "uniqueItems": true},
                    ],
                    "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/D"}}},
                    "x-kubernetes-group-version-kind": {"group": "apps", "kind": "Deployment", "version": "v1"},
                },
            }},
            "definitions": {"D": {
                "description": "A deployment.",
                "type": "object",
                "required": ["spec"],
                "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "items": {"type": "array", "items": {"$ref": "#/definitions/D"}},
                },
                "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "Deployment", "version": "v1"}],
            }},
        });
        let bytes = document(&doc);
        assert_eq!(text(&bytes, 1), "2.0");
        assert_eq!(text(one(&bytes, 2), 2), "v1.33.0");

        let definition = named(one(&bytes, 9), 1, "D");
        assert_eq!(text(definition, 4), "A deployment.");
        assert_eq!(text(definition, 19), "spec");
        assert_eq!(text(one(definition, 22), 1), "object");
        let extension = named(definition, 31, "x-kubernetes-group-version-kind");
        let yaml: Value = serde_yaml::from_str(&text(extension, 2)).unwrap();
        assert_eq!(yaml[0]["kind"], "Deployment");
        let properties = one(definition, 25);
        let labels = named(properties, 1, "labels");
        assert_eq!(text(one(one(one(labels, 21), 1), 22), 1), "string");
        let items = named(properties, 1, "items");
        assert_eq!(text(one(one(items, 23), 1), 1), "#/definitions/D");

        let path = named(
            one(&bytes, 8),
            2,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
        );
        let name_param = one(one(one(one(path, 9), 1), 2), 4);
        assert_eq!(text(name_param, 4), "name");
        assert_eq!(
            fields(name_param).iter().filter(|(n, _)| *n == 19).count(),
            1
        );
        let patch = one(path, 8);
        assert_eq!(text(patch, 5), "patchAppsV1NamespacedDeployment");
        let params = super::decode::all(patch, 8);
        let body = one(one(params[0], 1), 1);
        assert_eq!(text(body, 2), "body");
        let query = one(one(one(params[1], 1), 2), 3);
        assert_eq!(text(query, 4), "dryRun");
        assert_eq!(text(query, 6), "string");
        let response = one(one(named(one(patch, 9), 1, "200"), 1), 2);
        assert_eq!(text(one(response, 1), 1), "#/definitions/D");
        assert!(named(patch, 13, "x-kubernetes-group-version-kind").len() > 2);
    }
}
