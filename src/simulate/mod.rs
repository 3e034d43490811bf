//! `cramp-cds simulate`: what the service would say to a whole population. A FHIR Bulk Data
//! export (or a directory of patient Bundles or CDS Hooks requests) is grouped by patient
//! with bounded memory ([`partition`]), each patient becomes the `patient-view` request an EHR
//! would send ([`request`]) and is evaluated by the serve code path ([`evaluator`]) in
//! parallel, and the outcomes are counted ([`tally`]) into a [`report::Report`].

pub mod age_band;
pub mod blocks;
pub mod bundle;
pub mod evaluator;
pub mod html;
pub mod input;
pub mod issues;
pub mod partition;
pub mod pass;
pub mod patients_csv;
pub mod population;
pub mod progress;
pub mod report;
pub mod request;
pub mod resource_head;
pub mod run;
pub mod spill;
pub mod svg;
pub mod tally;
pub mod wilson;

pub use run::{SimulateOptions, simulate};
