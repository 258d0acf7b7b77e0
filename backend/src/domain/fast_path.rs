//! The CI fast path's rules: which environments take a deploy without a
//! work order, what an image reference is, what a lane is called, and the
//! statuses a fast-path deployment goes through.

use std::fmt;

use sha2::{Digest, Sha256};

/// Environment classes a fast-path deploy may target; staging and prod
/// take work orders only.
pub const OPEN_ENVIRONMENTS: [&str; 2] = ["dev", "test"];

/// The pod and selector label that marks a lane's objects.
pub const LANE_LABEL: &str = "rollway.io/lane";

/// The annotation a lane's objects carry naming the object they copy.
pub const LANE_OF_ANNOTATION: &str = "rollway.io/lane-of";

/// Kubernetes names and label values: at most 63 characters.
const MAX_NAME: usize = 63;

/// Where a fast-path deployment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// Accepted; the engine has not written to the cluster yet.
    Pending,
    /// The image is written; the rollout is being followed.
    RollingOut,
    /// The rollout completed.
    Succeeded,
    /// The rollout failed, passed its deadline, or could not be written.
    Failed,
}

impl DeploymentStatus {
    pub const ALL: [DeploymentStatus; 4] = [
        DeploymentStatus::Pending,
        DeploymentStatus::RollingOut,
        DeploymentStatus::Succeeded,
        DeploymentStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Pending => "pending",
            DeploymentStatus::RollingOut => "rolling_out",
            DeploymentStatus::Succeeded => "succeeded",
            DeploymentStatus::Failed => "failed",
        }
    }

    /// Words for people.
    pub fn label(self) -> &'static str {
        match self {
            DeploymentStatus::Pending => "Pending",
            DeploymentStatus::RollingOut => "Rolling out",
            DeploymentStatus::Succeeded => "Succeeded",
            DeploymentStatus::Failed => "Failed",
        }
    }

    /// Nothing more happens to a deployment in this status.
    pub fn is_final(self) -> bool {
        matches!(self, DeploymentStatus::Succeeded | DeploymentStatus::Failed)
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DeploymentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown deployment status '{s}'"))
    }
}

/// Whether a cluster of `environment` takes fast-path deploys.
pub fn open_to_fast_path(environment: &str) -> bool {
    OPEN_ENVIRONMENTS.contains(&environment)
}

/// A container image reference, checked: `[host[:port]/]path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Everything before the tag and digest: `registry.example.com/group/app`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Reads `image` as a container image reference (the grammar of the
/// distribution reference: lowercase path components joined by `/`, an
/// optional registry host with port, a tag of at most 128 word characters,
/// dots and dashes, a `sha256:` digest of 64 hex digits). A reference
/// without a tag or digest is refused: a fast-path deploy names what runs.
pub fn parse_image(image: &str) -> Result<ImageRef, String> {
    let refuse = |why: &str| {
        Err(format!(
            "'{}' is not a container image reference ({why}), e.g. registry.example.com/group/app:1.2.3",
            image.chars().take(80).collect::<String>()
        ))
    };
    if image.is_empty() || image.len() > 255 {
        return refuse("it must be 1 to 255 characters");
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("it contains a space or a control character");
    }
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => {
            let hex = digest.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64
                || !hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
            {
                return refuse("its digest must be sha256: and 64 lowercase hex digits");
            }
            (rest, Some(digest.to_string()))
        }
        None => (image, None),
    };
    // A ':' after the last '/' starts the tag; one before it is a port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return refuse("its tag must be letters, digits, '_', '.' and '-', at most 128");
        }
    }
    if tag.is_none() && digest.is_none() {
        return refuse("name a tag or a digest");
    }
    let mut parts: Vec<&str> = repository.split('/').collect();
    // The first part is a registry host when it has a '.' or a ':' or is
    // localhost.
    let host = (parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost"))
        .then(|| parts.remove(0));
    if let Some(host) = host {
        let (name, port) = match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        let name_ok = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        let port_ok = port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()));
        if !name_ok || !port_ok {
            return refuse("its registry host is not a host name with an optional port");
        }
    }
    let path_ok = !parts.is_empty()
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                && part.ends_with(|c: char| c.is_ascii_alphanumeric())
        });
    if !path_ok {
        return refuse(
            "its path must be lowercase letters, digits and '.', '_' or '-' between them, \
             joined by '/'",
        );
    }
    Ok(ImageRef {
        repository: repository.to_string(),
        tag: tag.map(str::to_string),
        digest,
    })
}

/// Checks a lane: a branch slug (GitLab's `$CI_COMMIT_REF_SLUG`), that is a
/// DNS-1123 label of at most 63 characters.
pub fn validate_lane(lane: &str) -> Result<(), String> {
    let ok = !lane.is_empty()
        && lane.len() <= MAX_NAME
        && lane
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && lane.starts_with(|c: char| c.is_ascii_alphanumeric())
        && lane.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "lane '{}' is not a slug: lowercase letters, digits and '-', a letter or digit at both \
             ends, at most {MAX_NAME} characters (GitLab's $CI_COMMIT_REF_SLUG is one)",
            lane.chars().take(80).collect::<String>()
        ))
    }
}

/// The name of `base`'s copy in lane `slug`: `<base>--<slug>`, cut to 63
/// characters with a short hash of the whole name when longer (so two
/// long lanes never share a name).
pub fn lane_name(base: &str, slug: &str) -> String {
    let full = format!("{base}--{slug}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash = hex::encode(&Sha256::digest(full.as_bytes())[..4]);
    let keep = MAX_NAME - hash.len() - 1;
    let cut = full[..keep].trim_end_matches(['-', '.', '_']);
    format!("{cut}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dev_and_test_take_the_fast_path() {
        assert!(open_to_fast_path("dev") && open_to_fast_path("test"));
        assert!(!open_to_fast_path("staging") && !open_to_fast_path("prod"));
        assert!(!open_to_fast_path("Dev"));
    }

    #[test]
    fn image_references_split_into_repository_tag_and_digest() {
        let r = parse_image("registry.example.com:5000/group/app:v1.2.3").unwrap();
        assert_eq!(r.repository, "registry.example.com:5000/group/app");
        assert_eq!(r.tag.as_deref(), Some("v1.2.3"));
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = parse_image(&format!("app@{digest}")).unwrap();
        assert_eq!(r.repository, "app");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
        let r = parse_image(&format!("localhost/x/y:1@{digest}")).unwrap();
        assert_eq!(r.repository, "localhost/x/y");
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(parse_image("nginx:1.27").unwrap().repository, "nginx");
    }

    #[test]
    fn malformed_image_references_are_refused_with_the_reason() {
        for (image, why) in [
            ("", "1 to 255"),
            ("app", "tag or a digest"),
            ("registry.example.com:5000/app", "tag or a digest"),
            ("App:1", "lowercase"),
            ("group//app:1", "lowercase"),
            ("app:", "tag must be"),
            ("app:-x", "tag must be"),
            ("app:1 2", "space"),
            ("app:1\n", "space"),
            ("app@sha256:abc", "digest"),
            ("app@md5:0", "digest"),
            ("-bad.example.com/app:1", "registry host"),
            ("reg.example.com:port/app:1", "registry host"),
            ("app/:1", "lowercase"),
        ] {
            let err = parse_image(image).unwrap_err();
            assert!(err.contains(why), "{image:?}: {err}");
        }
        assert!(parse_image(&format!("a:{}", "1".repeat(129))).is_err());
        assert!(parse_image(&"a".repeat(256)).is_err());
    }

    #[test]
    fn lanes_are_slugs_of_at_most_63() {
        for ok in ["main", "feature-x", "a", "1-2", &"a".repeat(63)] {
            assert!(validate_lane(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Feature",
            "feature/x",
            "-x",
            "x-",
            "a_b",
            "ü",
            &"a".repeat(64),
        ] {
            assert!(validate_lane(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_long_lane_name_is_cut_with_a_hash_and_stays_distinct() {
        assert_eq!(lane_name("web", "feature-x"), "web--feature-x");
        let a = lane_name("checkout-service", &format!("{}-a", "x".repeat(60)));
        let b = lane_name("checkout-service", &format!("{}-b", "x".repeat(60)));
        assert_eq!(a.len(), 63);
        assert_ne!(a, b);
        assert!(a.starts_with("checkout-service--xxx"));
        assert!(validate_lane(&a).is_ok(), "{a}");
        // Cut at a '-': no dangling dash before the hash.
        let c = lane_name(&"d".repeat(50), "e-f-g-h-i-j-k-l-m-n");
        assert!(!c.contains("--") || c.starts_with(&"d".repeat(50)), "{c}");
        assert!(validate_lane(&c).is_ok(), "{c}");
    }
}
