//! Flows shared by pages and the API: each checks the policy and the rules,
//! talks to GitLab or Kubernetes when it must, and writes through `db`. Pages
//! and the API both call these, so a rule is checked the same way whichever
//! door a request comes in by.

pub mod changes;
pub mod clusters;
pub mod fast_path;
pub mod freezes;
pub mod line_stops;
pub mod live;
pub mod notifications;
pub mod work_orders;

pub use clusters::{cluster_client, kube_error, stage_deployment, test_connection};
pub use work_orders::{OrderRequest, decide_on_work_order, drive_stage, file_work_order};
