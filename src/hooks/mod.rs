//! The CDS Hooks protocol: hooks, the request and its validation, the response
//! and card types, and prefetch templates. No clinical logic lives here.

pub mod feedback;
pub mod fhir_id;
mod hook;
pub mod object_or;
pub mod request;
pub mod response;
pub mod template;
pub mod vocabulary;

pub use fhir_id::FhirId;
pub use hook::Hook;
pub use request::{FhirAuthorization, HookCall, HookContext, RequestError, parse_hook_call};
