//! GitLab CI ID tokens: which service account a verified token acts as.
//!
//! An admin binds claims of GitLab's `id_tokens:` JWT to a service account
//! ([`Binding`]); a request whose token matches a binding acts as that
//! account. The rules, all strict:
//!
//! - `project_path` is either a project's full path (`acme/pay/api`) or a
//!   group prefix `group/*`, which matches every project under that group,
//!   **nested subgroups included** (`acme/*` matches `acme/pay/api`): whoever
//!   owns a GitLab group owns its subgroups. The prefix ends at a `/`, so
//!   `acme/*` never matches `acme-evil/x`, nor the project `acme` itself.
//!   GitLab paths are unique regardless of case, so paths are compared
//!   ASCII case-insensitively (patterns are stored lowercased).
//! - `ref_type` (`branch` or `tag`), when set, must equal the claim.
//! - `ref`, when set, is a glob over the claim: `*` matches any run of
//!   characters, `/` included (`release/*` matches `release/2026/q1`);
//!   every other character matches itself, case-sensitively (git refs are).
//! - "protected refs only" holds when the `ref_protected` claim is the
//!   string `"true"` — GitLab sends a string; anything else (missing,
//!   `"false"`, `"TRUE"`, a JSON boolean) is not protected.
//!
//! When several bindings match, the most specific wins ([`choose`]): an
//! exact project over a group prefix, a longer group prefix over a shorter
//! one; then an exact ref over a glob (the glob with more literal
//! characters first) over none; then a set `ref_type`; then "protected
//! only"; ties go to the lowest binding id.

use std::cmp::Reverse;

/// Longest project path or ref pattern accepted.
pub const MAX_PATTERN_LEN: usize = 255;

/// What a binding says about `project_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectPattern {
    /// One project, by its full path (lowercased).
    Exact(String),
    /// Every project under this group path (lowercased, without `/*`).
    Group(String),
}

impl ProjectPattern {
    /// Reads `group/project`, `group/sub/project` or `group/*`; refuses
    /// anything else with a message for the `project_path` field.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("the project path must not be empty".into());
        }
        if raw.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "the project path must be at most {MAX_PATTERN_LEN} characters"
            ));
        }
        let (path, group) = match raw.strip_suffix("/*") {
            Some(prefix) => (prefix, true),
            None => (raw, false),
        };
        let segments: Vec<&str> = path.split('/').collect();
        let valid_segment = |s: &&str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                && !s.starts_with(['-', '.'])
        };
        if !segments.iter().all(valid_segment) {
            return Err(format!(
                "'{raw}' is not a GitLab project path: write group/project (each part letters, digits, '_', '-', '.') or group/* for every project under a group"
            ));
        }
        let path = path.to_ascii_lowercase();
        if group {
            Ok(ProjectPattern::Group(path))
        } else if segments.len() < 2 {
            Err(format!(
                "'{raw}' names no project: write group/project, or {raw}/* for every project under the group"
            ))
        } else {
            Ok(ProjectPattern::Exact(path))
        }
    }

    /// The pattern as stored and shown (`acme/pay` or `acme/*`).
    pub fn as_stored(&self) -> String {
        match self {
            ProjectPattern::Exact(p) => p.clone(),
            ProjectPattern::Group(g) => format!("{g}/*"),
        }
    }

    /// Whether a token's `project_path` claim is covered.
    pub fn matches(&self, project_path: &str) -> bool {
        let claim = project_path.to_ascii_lowercase();
        match self {
            ProjectPattern::Exact(p) => claim == *p,
            ProjectPattern::Group(g) => claim
                .strip_prefix(g.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| !rest.is_empty()),
        }
    }

    /// Every stored pattern that could match `project_path`: the path
    /// itself and `g/*` for each group above it (for an indexed look-up).
    pub fn candidates(project_path: &str) -> Vec<String> {
        let claim = project_path.to_ascii_lowercase();
        let mut out = vec![claim.clone()];
        let mut end = 0;
        while let Some(slash) = claim[end..].find('/') {
            end += slash;
            out.push(format!("{}/*", &claim[..end]));
            end += 1;
        }
        out
    }
}

/// A `ref_type` a binding may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefType {
    Branch,
    Tag,
}

impl RefType {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "branch" => Ok(RefType::Branch),
            "tag" => Ok(RefType::Tag),
            other => Err(format!("ref_type must be 'branch' or 'tag', not '{other}'")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RefType::Branch => "branch",
            RefType::Tag => "tag",
        }
    }
}

/// Checks a ref glob: 1–255 characters, no whitespace or control
/// characters (git refs hold neither).
pub fn check_ref_pattern(raw: &str) -> Result<(), String> {
    if raw.is_empty() {
        return Err("the ref pattern must not be empty (leave it out to match every ref)".into());
    }
    if raw.len() > MAX_PATTERN_LEN {
        return Err(format!(
            "the ref pattern must be at most {MAX_PATTERN_LEN} characters"
        ));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the ref pattern must not contain spaces or control characters".into());
    }
    Ok(())
}

/// Whether `value` matches the glob `pattern` (`*` is any run of
/// characters, `/` included; nothing else is special).
pub fn glob_matches(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    // Where the last `*` was, and the value position it is tried from.
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether the `ref_protected` claim says the ref is protected: only the
/// string `"true"` does.
pub fn is_protected(claim: Option<&str>) -> bool {
    claim == Some("true")
}

/// The claims of a verified token that bindings look at, and the ones the
/// audit log names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiClaims {
    pub project_path: String,
    /// The `ref` claim: a branch or tag name.
    pub ref_name: String,
    /// `branch` or `tag` as GitLab sends it.
    pub ref_type: String,
    /// From the `ref_protected` string claim ([`is_protected`]).
    pub ref_protected: bool,
    pub job_id: Option<String>,
    pub pipeline_id: Option<String>,
}

impl CiClaims {
    /// How the audit log names the job: `acme/pay@main job 42`.
    pub fn describe(&self) -> String {
        let mut out = format!("{}@{}", self.project_path, self.ref_name);
        if let Some(job) = &self.job_id {
            out.push_str(&format!(" job {job}"));
        }
        out
    }
}

/// A binding of claims to a service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub id: i64,
    pub project: ProjectPattern,
    pub ref_type: Option<RefType>,
    pub ref_pattern: Option<String>,
    pub protected_only: bool,
}

impl Binding {
    /// Whether a token with these claims matches every condition.
    pub fn matches(&self, claims: &CiClaims) -> bool {
        self.project.matches(&claims.project_path)
            && self.ref_type.is_none_or(|t| t.as_str() == claims.ref_type)
            && self
                .ref_pattern
                .as_deref()
                .is_none_or(|p| glob_matches(p, &claims.ref_name))
            && (!self.protected_only || claims.ref_protected)
    }

    /// How specific the binding is; greater is more specific.
    fn specificity(&self) -> (u8, usize, u8, usize, bool, bool) {
        let (exact_project, group_depth) = match &self.project {
            ProjectPattern::Exact(_) => (1, 0),
            ProjectPattern::Group(g) => (0, g.split('/').count()),
        };
        let (ref_rank, ref_literals) = match &self.ref_pattern {
            Some(p) if !p.contains('*') => (2, p.len()),
            Some(p) => (1, p.chars().filter(|c| *c != '*').count()),
            None => (0, 0),
        };
        (
            exact_project,
            group_depth,
            ref_rank,
            ref_literals,
            self.ref_type.is_some(),
            self.protected_only,
        )
    }
}

/// The binding a token acts through: the most specific of those that
/// match, ties to the lowest id (module docs).
pub fn choose<'a>(bindings: &'a [Binding], claims: &CiClaims) -> Option<&'a Binding> {
    bindings
        .iter()
        .filter(|b| b.matches(claims))
        .max_by_key(|b| (b.specificity(), Reverse(b.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(project: &str, r: &str, ref_type: &str, protected: bool) -> CiClaims {
        CiClaims {
            project_path: project.into(),
            ref_name: r.into(),
            ref_type: ref_type.into(),
            ref_protected: protected,
            job_id: Some("7".into()),
            pipeline_id: None,
        }
    }

    fn binding(id: i64, project: &str) -> Binding {
        Binding {
            id,
            project: ProjectPattern::parse(project).unwrap(),
            ref_type: None,
            ref_pattern: None,
            protected_only: false,
        }
    }

    #[test]
    fn project_patterns_parse_strictly() {
        assert_eq!(
            ProjectPattern::parse("Acme/Pay").unwrap(),
            ProjectPattern::Exact("acme/pay".into())
        );
        assert_eq!(
            ProjectPattern::parse(" acme/* ").unwrap(),
            ProjectPattern::Group("acme".into())
        );
        assert_eq!(
            ProjectPattern::parse("acme/pay/*").unwrap().as_stored(),
            "acme/pay/*"
        );
        for bad in [
            "",
            "*",
            "/*",
            "acme",
            "acme/",
            "/acme/pay",
            "acme//pay",
            "acme/*/x",
            "acme/p*",
            "acme/pay*",
            "acme/ pay",
            "acme/-pay",
            "acme/pay/**",
            "acme/../x",
        ] {
            assert!(ProjectPattern::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_group_prefix_matches_projects_and_subgroups_below_it_only() {
        let acme = ProjectPattern::parse("acme/*").unwrap();
        assert!(acme.matches("acme/pay"));
        assert!(acme.matches("acme/pay/api"), "nested subgroups match");
        assert!(acme.matches("ACME/Pay"), "GitLab paths ignore case");
        for other in [
            "acme-evil/x",
            "acmex/pay",
            "acme",
            "acme/",
            "evil/acme/pay",
            "x/acme",
        ] {
            assert!(!acme.matches(other), "acme/* matched {other}");
        }
        let exact = ProjectPattern::parse("acme/pay").unwrap();
        assert!(exact.matches("acme/pay") && exact.matches("Acme/PAY"));
        for other in ["acme/pay/api", "acme/payroll", "acme/pa", "acme"] {
            assert!(!exact.matches(other), "acme/pay matched {other}");
        }
    }

    #[test]
    fn candidates_list_the_path_and_every_group_above_it() {
        assert_eq!(
            ProjectPattern::candidates("Acme/pay/api"),
            ["acme/pay/api", "acme/*", "acme/pay/*"]
        );
    }

    #[test]
    fn ref_globs_match_whole_refs() {
        let cases = [
            ("main", "main", true),
            ("main", "main2", false),
            ("main", "xmain", false),
            ("main", "Main", false),
            ("release/*", "release/1.2", true),
            ("release/*", "release/2026/q1", true),
            ("release/*", "release/", true),
            ("release/*", "release", false),
            ("release/*", "hotfix/release/1", false),
            ("v*", "v1.2.3", true),
            ("v*.*", "v1.2", true),
            ("v*.*", "v12", false),
            ("*", "anything/at/all", true),
            ("*-rc", "1.0-rc", true),
            ("*-rc", "1.0-rc1", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ];
        for (pattern, value, want) in cases {
            assert_eq!(glob_matches(pattern, value), want, "{pattern} ~ {value}");
        }
    }

    #[test]
    fn only_the_string_true_is_protected() {
        assert!(is_protected(Some("true")));
        for other in [
            Some("false"),
            Some("TRUE"),
            Some("True"),
            Some("1"),
            Some(""),
            None,
        ] {
            assert!(!is_protected(other), "{other:?}");
        }
    }

    #[test]
    fn ref_patterns_are_checked() {
        assert!(check_ref_pattern("release/*").is_ok());
        let long = "x".repeat(256);
        for bad in ["", "a b", "a\tb", long.as_str()] {
            assert!(check_ref_pattern(bad).is_err(), "{bad:?}");
        }
        assert!(RefType::parse("branch").is_ok() && RefType::parse("Branch").is_err());
    }

    #[test]
    fn every_condition_of_a_binding_must_hold() {
        let b = Binding {
            id: 1,
            project: ProjectPattern::parse("acme/*").unwrap(),
            ref_type: Some(RefType::Branch),
            ref_pattern: Some("release/*".into()),
            protected_only: true,
        };
        assert!(b.matches(&claims("acme/pay", "release/1", "branch", true)));
        assert!(!b.matches(&claims("acme/pay", "release/1", "branch", false)));
        assert!(!b.matches(&claims("acme/pay", "release/1", "tag", true)));
        assert!(!b.matches(&claims("acme/pay", "main", "branch", true)));
        assert!(!b.matches(&claims("acme-evil/pay", "release/1", "branch", true)));
    }

    #[test]
    fn the_most_specific_binding_wins_then_the_lowest_id() {
        let group = binding(1, "acme/*");
        let subgroup = binding(2, "acme/pay/*");
        let exact = binding(3, "acme/pay/api");
        let mut exact_main = binding(9, "acme/pay/api");
        exact_main.ref_pattern = Some("main".into());
        let mut exact_glob = binding(4, "acme/pay/api");
        exact_glob.ref_pattern = Some("ma*".into());
        let twin = binding(8, "acme/pay/api");
        let c = claims("acme/pay/api", "main", "branch", false);

        let all = [group.clone(), subgroup.clone()];
        assert_eq!(choose(&all, &c).map(|b| b.id), Some(2), "deeper group");
        let all = [group.clone(), subgroup.clone(), twin.clone(), exact.clone()];
        assert_eq!(choose(&all, &c).map(|b| b.id), Some(3), "exact, lowest id");
        let all = [exact.clone(), exact_glob.clone(), exact_main.clone()];
        assert_eq!(choose(&all, &c).map(|b| b.id), Some(9), "exact ref");
        let all = [exact.clone(), exact_glob.clone()];
        assert_eq!(choose(&all, &c).map(|b| b.id), Some(4), "a glob over none");
        let other = claims("acme/pay/api", "dev", "branch", false);
        let all = [exact_main.clone(), exact_glob.clone()];
        assert_eq!(choose(&all, &other), None);
    }
}
