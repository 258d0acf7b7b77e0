//! The pure core: rules of the product with no I/O, no async and no database.
//! Everything here is unit-tested table-driven; the shell (db, http, api)
//! loads facts, calls these functions and persists what they decide.

pub mod cluster;
pub mod fast_path;
pub mod freeze;
pub mod id_token;
pub mod notify;
pub mod release_item;
pub mod text;
pub mod tree;
pub mod verify;
pub mod work_order;
