//! HTTP in, HTTP out: the real actix-web application, started on a free port.
//! One test binary, one file per feature.

mod auth;
mod cli;
mod conformance;
mod conformance_cards;
mod conformance_http;
mod conformance_requests;
mod deployment;
mod discovery;
mod durability;
mod errors;
mod fallback;
mod feedback;
mod helpers;
mod house;
mod input_bounds;
mod invocation;
mod knowledge_as_data;
mod knowledge_reload;
mod operations;
mod postgres_outage;
mod postgres_tls;
mod prefetch;
mod retention;
mod rules;
mod schema;
mod simulate;
mod tenancy;
mod token_boundaries;
