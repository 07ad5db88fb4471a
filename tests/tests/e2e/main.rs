//! End-to-end tests: the real `census-collector` and `census-agent` binaries over real TLS
//! on 127.0.0.1. One test binary; modules by subject.

mod access;
mod agent;
mod backup;
mod crash;
mod deltas;
mod drift;
mod faults;
mod foreign;
mod health;
mod ingest;
mod map;
mod packaging;
mod postgres;
mod query;
mod readme;
mod register;
mod services;
mod support;
mod ui;
mod ui_browser;
mod vulns;
