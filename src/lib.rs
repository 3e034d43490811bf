//! cramp-cds: a CDS Hooks 2.0 service that looks for treatable causes of muscle
//! cramps and numbness in a patient's FHIR R4 record and answers with cards.
//!
//! One request flows one way: `server` (HTTP) → `hooks` (protocol) → `fhir`
//! (patient data) → `engine` (rules from `knowledge`) → `cards`. The same
//! [`invoke::CdsService`] serves HTTP and the command line.

pub mod auth;
pub mod cards;
pub mod cli;
pub mod config;
pub mod docs;
pub mod engine;
pub mod fhir;
pub mod hooks;
pub mod http_body;
pub mod invoke;
pub mod knowledge;
pub mod metrics;
pub mod server;
pub mod simulate;
pub mod store;
pub mod synthetic;
pub mod telemetry;
