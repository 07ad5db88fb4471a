//! Inventories written by other tools' agents, read into Census snapshots for migration:
//! the XML of OCS Inventory and FusionInventory agents and the GLPI agent's JSON
//! (`ocs`), through a bounded XML reader that never expands an entity (`xml`) or the JSON
//! read into the same tree (`glpi`).
//!
//! Architecture Invariant: pure parsing. Nothing here touches the store; what a parsed
//! inventory may change in the CMDB is decided where it is imported.

pub mod glpi;
pub mod ocs;
pub mod xml;
