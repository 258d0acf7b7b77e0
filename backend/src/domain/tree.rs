//! The service tree: slugs, materialised paths, role inheritance and approver
//! resolution.
//!
//! Two rules live here and nowhere else:
//! - *permissions inherit downward*: a role granted on a node applies to the
//!   node and every descendant (the union along the ancestor chain);
//! - *approvers override upward*: the approvers of a node are the owners of
//!   the nearest node, starting at the node itself and walking up, that has
//!   any owners.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::domain::text::check_single_line;

/// Longest accepted node slug.
pub const MAX_NAME_LEN: usize = 63;
/// Longest accepted node title.
pub const MAX_TITLE_LEN: usize = 200;

/// A role a member holds on a tree node. Ordered from least to most powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// May see the node and what hangs below it.
    Viewer,
    /// May file and drive release tickets.
    Engineer,
    /// R&D lead: approves tickets, manages members and child nodes.
    Owner,
}

impl Role {
    /// Every role, least powerful first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Engineer, Role::Owner];

    /// The role's name as used in the UI, the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Engineer => "engineer",
            Role::Owner => "owner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "engineer" => Ok(Role::Engineer),
            "owner" => Ok(Role::Owner),
            other => Err(format!(
                "unknown role '{other}': expected owner, engineer or viewer"
            )),
        }
    }
}

/// Checks a node slug: 1–63 characters of lowercase letters, digits and
/// single dashes, starting with a letter and not ending with a dash.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("name must be at most {MAX_NAME_LEN} characters"));
    }
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let starts_with_letter = name.starts_with(|c: char| c.is_ascii_lowercase());
    if !ok_chars || !starts_with_letter || name.ends_with('-') || name.contains("--") {
        return Err(format!(
            "name '{name}' is not a slug: use lowercase letters, digits and single dashes, starting with a letter"
        ));
    }
    Ok(())
}

/// Checks a node title: not blank, at most [`MAX_TITLE_LEN`] characters,
/// one line.
pub fn validate_title(title: &str) -> Result<(), String> {
    if title.trim().is_empty() {
        return Err("title must not be empty".into());
    }
    if title.chars().count() > MAX_TITLE_LEN {
        return Err(format!("title must be at most {MAX_TITLE_LEN} characters"));
    }
    check_single_line("title", title)
}

/// The materialised path of a node named `name` under a parent with
/// `parent_path` (`None` for a root node).
pub fn child_path(parent_path: Option<&str>, name: &str) -> String {
    match parent_path {
        Some(parent) if parent != "/" => format!("{parent}/{name}"),
        _ => format!("/{name}"),
    }
}

/// Whether something granted on `granted` applies at `path`: the same node
/// or a descendant. `/a/b` covers `/a/b` and `/a/b/c` but not `/a/bc`; `/`
/// covers everything.
pub fn path_covers(path: &str, granted: &str) -> bool {
    if granted == "/" {
        return true;
    }
    match path.strip_prefix(granted) {
        Some("") => true,
        Some(rest) => rest.starts_with('/'),
        None => false,
    }
}

/// A node path as people type it, made canonical: the leading slash
/// added, empty segments and a trailing slash dropped, letters lowercased
/// (`shop/Cart/` is `/shop/cart`). `None` for the whole tree (blank or
/// `/`); an error naming the input when a segment is no node name.
pub fn normalize_path(raw: &str) -> Result<Option<String>, String> {
    let segments: Vec<String> = raw
        .trim()
        .split('/')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_lowercase())
        .collect();
    if segments.is_empty() {
        return Ok(None);
    }
    if segments.iter().any(|s| validate_name(s).is_err()) {
        return Err(format!(
            "'{}' is not a node path: node names are lowercase letters, digits and dashes, as in /shop/cart",
            raw.trim()
        ));
    }
    Ok(Some(format!("/{}", segments.join("/"))))
}

/// The path of the parent of the node at `path`; `/` for a root node.
pub fn parent_path(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((parent, _)) => parent,
    }
}

/// The paths from the root down to `path` inclusive: `/a/b/c` gives
/// `["/a", "/a/b", "/a/b/c"]`.
pub fn ancestor_chain(path: &str) -> Vec<String> {
    let mut chain = Vec::new();
    let mut current = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        current.push('/');
        current.push_str(segment);
        chain.push(current.clone());
    }
    chain
}

/// One membership: an account holds `role` on the node at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership<A> {
    pub account: A,
    pub path: String,
    pub role: Role,
}

/// The roles an account holds at `path`: the union of the roles it was
/// granted on the node itself and on every ancestor.
pub fn effective_roles<A: PartialEq>(
    account: &A,
    path: &str,
    memberships: &[Membership<A>],
) -> BTreeSet<Role> {
    memberships
        .iter()
        .filter(|m| &m.account == account && path_covers(path, &m.path))
        .map(|m| m.role)
        .collect()
}

/// The approvers at `path` and the node they come from: the owners of the
/// nearest node that has any, starting at `path` and walking up. `None` when
/// no node on the chain has an owner.
pub fn effective_approvers<A: Clone + Ord>(
    path: &str,
    memberships: &[Membership<A>],
) -> Option<(String, BTreeSet<A>)> {
    ancestor_chain(path).into_iter().rev().find_map(|node| {
        let owners: BTreeSet<A> = memberships
            .iter()
            .filter(|m| m.role == Role::Owner && m.path == node)
            .map(|m| m.account.clone())
            .collect();
        (!owners.is_empty()).then_some((node, owners))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn typed_paths_are_made_canonical() {
        for (typed, canonical) in [
            ("shop/cart", Some("/shop/cart")),
            ("/shop/cart/", Some("/shop/cart")),
            (" //Shop//cart ", Some("/shop/cart")),
            ("/", None),
            ("", None),
        ] {
            assert_eq!(
                super::normalize_path(typed),
                Ok(canonical.map(String::from)),
                "{typed:?}"
            );
        }
        for bad in ["/shop/%", "/shop/c_rt", "/a/b c"] {
            let message = super::normalize_path(bad).unwrap_err();
            assert!(message.contains("is not a node path"), "{bad}: {message}");
        }
    }

    use super::*;

    fn m(account: &'static str, path: &str, role: Role) -> Membership<&'static str> {
        Membership {
            account,
            path: path.to_string(),
            role,
        }
    }

    #[test]
    fn path_covers_itself_and_descendants_only() {
        let cases = [
            ("/a/b", "/a/b", true),
            ("/a/b/c", "/a/b", true),
            ("/a/b/c/d", "/a/b", true),
            ("/a/bc", "/a/b", false),
            ("/a", "/a/b", false),
            ("/b/a/b", "/a/b", false),
            ("/anything/at/all", "/", true),
            ("/a", "/a", true),
        ];
        for (path, granted, expected) in cases {
            assert_eq!(
                path_covers(path, granted),
                expected,
                "path_covers({path}, {granted})"
            );
        }
    }

    #[test]
    fn slugs_are_validated() {
        let cases = [
            ("payments", true),
            ("checkout-api", true),
            ("a1", true),
            ("", false),
            ("Payments", false),
            ("-a", false),
            ("a-", false),
            ("a--b", false),
            ("1abc", false),
            ("a b", false),
            ("a/b", false),
            ("ä", false),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_name(name).is_ok(), ok, "{name:?}");
        }
        assert!(validate_name(&"a".repeat(63)).is_ok());
        assert!(validate_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn titles_are_validated() {
        assert!(validate_title("Payments").is_ok());
        assert!(validate_title("   ").is_err());
        assert!(validate_title(&"é".repeat(200)).is_ok());
        assert!(validate_title(&"é".repeat(201)).is_err());
    }

    #[test]
    fn child_paths_are_materialised() {
        assert_eq!(child_path(None, "acme"), "/acme");
        assert_eq!(child_path(Some("/acme"), "pay"), "/acme/pay");
        assert_eq!(ancestor_chain("/a/b/c"), ["/a", "/a/b", "/a/b/c"]);
        assert!(ancestor_chain("/").is_empty());
        assert_eq!(parent_path("/a/b/c"), "/a/b");
        assert_eq!(parent_path("/a"), "/");
    }

    #[test]
    fn roles_inherit_down_the_ancestor_chain() {
        let memberships = [
            m("alice", "/acme", Role::Viewer),
            m("alice", "/acme/pay", Role::Engineer),
            m("bob", "/acme/pay/api", Role::Owner),
            m("carol", "/acme/payroll", Role::Owner),
        ];
        use Role::*;
        let cases: &[(&str, &str, &[Role])] = &[
            ("alice", "/acme", &[Viewer]),
            ("alice", "/acme/pay", &[Viewer, Engineer]),
            ("alice", "/acme/pay/api", &[Viewer, Engineer]),
            ("alice", "/other", &[]),
            ("bob", "/acme/pay", &[]),
            ("bob", "/acme/pay/api", &[Owner]),
            ("bob", "/acme/pay/api/v2", &[Owner]),
            // A role on /acme/payroll must not leak to /acme/pay or back.
            ("carol", "/acme/pay", &[]),
            ("carol", "/acme/payroll/x", &[Owner]),
        ];
        for (account, path, expected) in cases {
            let got: Vec<Role> = effective_roles(account, path, &memberships)
                .into_iter()
                .collect();
            assert_eq!(&got, expected, "{account} at {path}");
        }
    }

    #[test]
    fn approvers_are_the_owners_of_the_nearest_node_with_owners() {
        let memberships = [
            m("root-owner", "/acme", Role::Owner),
            m("pay-owner", "/acme/pay", Role::Owner),
            m("pay-owner-2", "/acme/pay", Role::Owner),
            m("pay-eng", "/acme/pay/api", Role::Engineer),
            m("hr-viewer", "/acme/hr", Role::Viewer),
        ];
        /// (path, expected (source node, approvers))
        type Case<'a> = (&'a str, Option<(&'a str, &'a [&'a str])>);
        let cases: &[Case] = &[
            ("/acme", Some(("/acme", &["root-owner"]))),
            // A child's owners replace its parents' owners.
            (
                "/acme/pay",
                Some(("/acme/pay", &["pay-owner", "pay-owner-2"])),
            ),
            // Engineers never approve; walk up past nodes without owners.
            (
                "/acme/pay/api",
                Some(("/acme/pay", &["pay-owner", "pay-owner-2"])),
            ),
            ("/acme/hr/x", Some(("/acme", &["root-owner"]))),
            ("/acme/payroll", Some(("/acme", &["root-owner"]))),
            ("/other", None),
        ];
        for (path, expected) in cases {
            let got = effective_approvers(path, &memberships)
                .map(|(node, owners)| (node, owners.into_iter().collect::<Vec<_>>()));
            let expected = expected.map(|(node, owners)| (node.to_string(), owners.to_vec()));
            assert_eq!(got, expected, "approvers at {path}");
        }
    }

    #[test]
    fn roles_parse_and_print() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
