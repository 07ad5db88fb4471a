//! Offline vulnerability matching against OSV advisories.
//!
//! The path: `import` reads OSV's published layout (a directory or an ecosystem's
//! `all.zip`) -> `osv::parse` validates each record into an [`Advisory`] -> the store keeps
//! it with an index by (ecosystem release, package) -> `matching` decides, for an install,
//! whether an advisory's ranges hold its version -> `exposure` answers per host, per
//! vulnerability and for the fleet, evaluating each distinct (package version, ecosystem)
//! once however many computers share it; `tracker` keeps, per computer, when each
//! exposure was first detected and when it closed, re-matching a computer when its record
//! changes and the fleet when the advisories do, and raises the feed events webhooks carry.
//!
//! [`Advisory`]: crate::model::vuln::Advisory

pub mod exposure;
pub mod import;
pub mod matching;
pub mod osv;
pub mod tracker;
