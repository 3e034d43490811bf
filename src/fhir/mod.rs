//! Patient data: from the request's prefetch, or from the EHR's FHIR server
//! when a key the rules need is missing, into a [`PatientRecord`].
//!
//! Each prefetch key may be absent, `null`, a resource, a searchset Bundle
//! (empty or paged) or an OperationOutcome. When needed data can be neither
//! read from the prefetch nor fetched, the answer is [`GatherError::MissingData`]
//! (HTTP 412, as CDS Hooks 2.0 requires).

pub mod access;
pub mod documents;
pub mod dose;
pub mod fetch;
pub mod record;

use std::collections::BTreeSet;

use futures::future::join_all;

use crate::hooks::template::{RenderError, TokenValues};
use crate::hooks::{Hook, HookCall, RequestError};
use crate::knowledge::services::Service;
use crate::knowledge::topics::IssueTopic;
pub use access::{FhirAccess, FhirServerError};
use documents::{Document, add_document, add_draft_orders, add_medications_only};
pub use fetch::{FetchError, FhirClient, FhirClientSettings, HttpClientError};
pub use record::PatientRecord;

/// Why the patient's data could not be gathered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatherError {
    /// Data the rules need is neither in the prefetch nor obtainable from the FHIR server.
    #[error("required data is missing for prefetch keys {}: {reason}", keys.join(", "))]
    MissingData {
        /// The prefetch keys that could not be satisfied.
        keys: Vec<String>,
        /// Why they could not be fetched.
        reason: String,
    },
    /// The request contradicts itself (e.g. a selection not among the draft orders).
    #[error(transparent)]
    BadRequest(#[from] RequestError),
}

/// How many prefetch keys were fetched from the FHIR server, by outcome (for the edge to
/// count; this module keeps no metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchTally {
    /// Keys whose every page was read.
    pub ok: u64,
    /// Keys whose fetch failed.
    pub failed: u64,
}

/// What gathering did: the record (or why there is none) and the fetches it made either way.
#[derive(Debug)]
pub struct Gathered {
    /// The patient's record.
    pub record: Result<PatientRecord, GatherError>,
    /// The FHIR server fetches made on the way.
    pub fetches: FetchTally,
}

/// A prefetch key still to be fetched: the key, and what to GET (relative template or absolute next link).
struct PendingFetch {
    key: String,
    target: String,
    needed: bool,
    /// Only further pages of a paged prefetch Bundle are missing; the first page was read.
    next_page_only: bool,
}

/// Builds the patient's record for `call` from its prefetch, fetching what is missing, and
/// tells how many fetches it made.
pub async fn gather(
    call: &HookCall<'_>,
    service: &Service,
    needed_types: &BTreeSet<&'static str>,
    client: &FhirClient,
    access: &FhirAccess,
) -> Gathered {
    let mut fetches = FetchTally::default();
    let record = gather_record(call, service, needed_types, client, access, &mut fetches).await;
    Gathered { record, fetches }
}

async fn gather_record(
    call: &HookCall<'_>,
    service: &Service,
    needed_types: &BTreeSet<&'static str>,
    client: &FhirClient,
    access: &FhirAccess,
    fetches: &mut FetchTally,
) -> Result<PatientRecord, GatherError> {
    let mut record = PatientRecord::new(call.context.patient_id.as_str());
    let values = TokenValues {
        user_id: Some(&call.context.user_id),
        patient_id: Some(&call.context.patient_id),
        encounter_id: call.context.encounter_id.as_deref(),
    };
    let mut pending = Vec::new();
    for (key, template) in &service.templates {
        let needed = needed_types.contains(template.resource_type.as_str());
        let sent = call.prefetch.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let location = format!("prefetch.{key}");
        let render = || template.render(&values);
        let (refetch, next_page_only) = match sent {
            Some(raw) => match add_document(&mut record, raw.get().as_bytes(), &location) {
                Document::Null | Document::Resources { next: None, .. } => (None, false),
                Document::Resources {
                    next: Some(next), ..
                } => (Some(Ok(next)), true),
                Document::OperationOutcome(text) => {
                    tracing::debug!(key = %key, outcome = %text, "prefetch key holds an OperationOutcome");
                    (Some(render()), false)
                }
                Document::Unreadable(problem) => {
                    record.add_issue(IssueTopic::Other, &location, problem);
                    (Some(render()), false)
                }
            },
            None => (Some(render()), false),
        };
        match refetch {
            None => {}
            Some(Ok(target)) => pending.push(PendingFetch {
                key: key.clone(),
                target,
                needed,
                next_page_only,
            }),
            Some(Err(RenderError::NotAnId { field, reason })) => {
                // Parsing the request already refuses such values; this is the second guard.
                return Err(GatherError::BadRequest(RequestError::new(
                    field,
                    reason.to_string(),
                )));
            }
            Some(Err(missing @ RenderError::Missing { .. })) if needed => {
                return Err(GatherError::MissingData {
                    keys: vec![key.clone()],
                    reason: missing.to_string(),
                });
            }
            Some(Err(RenderError::Missing { .. })) => {}
        }
    }
    let server = match &call.fhir_server {
        Some(server) if !access.permits(server) => {
            tracing::warn!(
                host = server.host_str().unwrap_or_default(),
                "fhirServer is not on the caller's allowlist; using the prefetch only"
            );
            None
        }
        other => other.as_ref(),
    };
    fetch_pending(call, server, client, pending, &mut record, fetches).await?;
    add_medications_from_other_keys(call, service, &mut record);

    if let Some(bundle) = call.context.draft_orders {
        let selections =
            (call.hook == Hook::OrderSelect).then_some(call.context.selections.as_slice());
        let references = add_draft_orders(&mut record, bundle, selections);
        let unreadable_drafts = record
            .issues
            .iter()
            .any(|i| i.location.starts_with("context.draftOrders"));
        if let Some(selections) = selections
            && !unreadable_drafts
            && let Some((index, missing)) = selections
                .iter()
                .enumerate()
                .find(|(_, s)| !references.contains(s))
        {
            return Err(GatherError::BadRequest(RequestError::new(
                format!("context.selections[{index}]"),
                format!("'{missing}' is not among context.draftOrders"),
            )));
        }
    }
    record.resolve_medication_references();
    Ok(record)
}

/// Reads the Medication resources of prefetch keys the service did not ask for (e.g. a
/// `medications` Bundle some EHRs add), so `medicationReference`s to them resolve. Nothing
/// else in such a key is used: clinical facts come only from the service's own templates.
fn add_medications_from_other_keys(
    call: &HookCall<'_>,
    service: &Service,
    record: &mut PatientRecord,
) {
    for (key, raw) in &call.prefetch {
        if service.templates.iter().any(|(k, _)| k == key) {
            continue;
        }
        let location = format!("prefetch.{key}");
        add_medications_only(record, raw.get().as_bytes(), &location);
    }
}

async fn fetch_pending(
    call: &HookCall<'_>,
    server: Option<&url::Url>,
    client: &FhirClient,
    pending: Vec<PendingFetch>,
    record: &mut PatientRecord,
    tally: &mut FetchTally,
) -> Result<(), GatherError> {
    if pending.is_empty() {
        return Ok(());
    }
    let (Some(server), Some(authorization)) = (server, &call.fhir_authorization) else {
        for partial in pending.iter().filter(|p| p.next_page_only) {
            record.add_issue(
                IssueTopic::Other,
                format!("prefetch.{}", partial.key),
                "only the first page was sent and there is no FHIR server access to read the rest",
            );
        }
        let keys: Vec<String> = pending
            .iter()
            .filter(|p| p.needed && !p.next_page_only)
            .map(|p| p.key.clone())
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        return Err(GatherError::MissingData {
            keys,
            reason: "they were not prefetched, and the request has no fhirServer and fhirAuthorization the service may use to fetch them".to_owned(),
        });
    };
    let budget = client.budget();
    let fetches = pending
        .iter()
        .map(|p| client.fetch_all(server, &p.target, &authorization.access_token, &budget));
    let results = join_all(fetches).await;
    let mut failed = Vec::new();
    let mut reasons: Vec<(String, Vec<String>)> = Vec::new();
    for (fetch, result) in pending.iter().zip(results) {
        if result.is_ok() {
            tally.ok += 1;
        } else {
            tally.failed += 1;
        }
        match result {
            Ok(pages) => {
                for (page_number, page) in pages.iter().enumerate() {
                    let location = format!("fetched.{}[page {}]", fetch.key, page_number + 1);
                    if let Document::OperationOutcome(text) | Document::Unreadable(text) =
                        add_document(record, page, &location)
                    {
                        record.add_issue(IssueTopic::Other, &location, text);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(key = %fetch.key, %error, "FHIR server fetch failed");
                if fetch.needed && !fetch.next_page_only {
                    failed.push(fetch.key.clone());
                    let reason = error.to_string();
                    match reasons.iter_mut().find(|(r, _)| *r == reason) {
                        Some((_, keys)) => keys.push(fetch.key.clone()),
                        None => reasons.push((reason, vec![fetch.key.clone()])),
                    }
                } else {
                    record.add_issue(
                        IssueTopic::Other,
                        format!("fetched.{}", fetch.key),
                        error.to_string(),
                    );
                }
            }
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    // One reason for all keys reads as before; different reasons say which key had which.
    let reason = match reasons.as_slice() {
        [(reason, _)] => reason.clone(),
        _ => reasons
            .iter()
            .map(|(reason, keys)| format!("{}: {reason}", keys.join(", ")))
            .collect::<Vec<_>>()
            .join("; "),
    };
    Err(GatherError::MissingData {
        keys: failed,
        reason,
    })
}
