//! The protobuf OpenAPI v2 document (`/openapi/v2`, gnostic's
//! `openapi.v2.Document`) as far as older kubectls (1.2x) read it to decide
//! whether a kind supports server-side dry run: one path per served kind
//! whose PATCH operation names the kind (`x-kubernetes-group-version-kind`)
//! and takes a `dryRun` query parameter. It has no definitions, so their
//! client-side validation finds no schema and checks nothing.

use super::kinds::Kind;

/// The encoded document.
pub fn document() -> Vec<u8> {
    let mut paths = Vec::new();
    for kind in Kind::ALL {
        let mut item = Vec::new();
        put_str(&mut item, 1, &item_path(kind));
        put_msg(&mut item, 2, &path_item(kind));
        put_msg(&mut paths, 2, &item);
    }
    let mut info = Vec::new();
    put_str(&mut info, 1, "Kubernetes");
    put_str(&mut info, 2, super::discovery::SERVER_VERSION);
    let mut doc = Vec::new();
    put_str(&mut doc, 1, "2.0");
    put_msg(&mut doc, 2, &info);
    put_msg(&mut doc, 8, &paths);
    doc
}

/// `/apis/apps/v1/namespaces/{namespace}/deployments/{name}`.
fn item_path(kind: Kind) -> String {
    let root = match kind.group() {
        "" => "/api/v1".to_string(),
        group => format!("/apis/{group}/{}", kind.version()),
    };
    if kind.namespaced() {
        format!("{root}/namespaces/{{namespace}}/{}/{{name}}", kind.plural())
    } else {
        format!("{root}/{}/{{name}}", kind.plural())
    }
}

/// A PathItem with its PATCH operation.
fn path_item(kind: Kind) -> Vec<u8> {
    let mut query = Vec::new(); // QueryParameterSubSchema
    put_str(&mut query, 2, "query");
    put_str(&mut query, 4, "dryRun");
    put_str(&mut query, 6, "string");
    let mut non_body = Vec::new();
    put_msg(&mut non_body, 3, &query);
    let mut parameter = Vec::new();
    put_msg(&mut parameter, 2, &non_body);
    let mut parameters_item = Vec::new();
    put_msg(&mut parameters_item, 1, &parameter);

    let gvk = format!(
        "group: \"{}\"\nkind: {}\nversion: {}\n",
        kind.group(),
        kind.kind(),
        kind.version()
    );
    let mut any = Vec::new();
    put_str(&mut any, 2, &gvk);
    let mut extension = Vec::new(); // NamedAny
    put_str(&mut extension, 1, "x-kubernetes-group-version-kind");
    put_msg(&mut extension, 2, &any);

    let mut operation = Vec::new();
    put_str(&mut operation, 5, &format!("patch{}", kind.kind()));
    put_msg(&mut operation, 8, &parameters_item);
    put_msg(&mut operation, 13, &extension);
    let mut item = Vec::new();
    put_msg(&mut item, 8, &operation);
    item
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited field.
fn put_msg(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_str(out: &mut Vec<u8>, field: u64, text: &str) {
    put_msg(out, field, text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the length-delimited fields of one message.
    fn fields(mut bytes: &[u8]) -> Vec<(u64, &[u8])> {
        fn varint(bytes: &mut &[u8]) -> u64 {
            let mut value = 0u64;
            let mut shift = 0;
            loop {
                let b = bytes[0];
                *bytes = &bytes[1..];
                value |= u64::from(b & 0x7f) << shift;
                if b < 0x80 {
                    return value;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let key = varint(&mut bytes);
            assert_eq!(key & 7, 2, "only length-delimited fields");
            let len = varint(&mut bytes) as usize;
            out.push((key >> 3, &bytes[..len]));
            bytes = &bytes[len..];
        }
        out
    }

    fn field(bytes: &[u8], number: u64) -> &[u8] {
        fields(bytes)
            .into_iter()
            .find(|(n, _)| *n == number)
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("field {number} missing"))
    }

    #[test]
    fn every_kind_has_a_patch_operation_taking_dry_run() {
        let doc = document();
        assert_eq!(field(&doc, 1), b"2.0");
        let paths = fields(field(&doc, 8));
        assert_eq!(paths.len(), Kind::ALL.len());
        let deployment = paths
            .iter()
            .map(|(_, item)| item)
            .find(|item| {
                field(item, 1) == b"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
            })
            .expect("the deployment path");
        let patch = field(field(deployment, 2), 8);
        let query = field(field(field(field(patch, 8), 1), 2), 3);
        assert_eq!(field(query, 4), b"dryRun");
        let extension = field(patch, 13);
        assert_eq!(field(extension, 1), b"x-kubernetes-group-version-kind");
        let yaml = std::str::from_utf8(field(field(extension, 2), 2)).unwrap();
        assert_eq!(yaml, "group: \"apps\"\nkind: Deployment\nversion: v1\n");
    }
}
