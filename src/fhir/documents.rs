//! Reading FHIR JSON documents (a prefetch value, a page from the FHIR
//! server, or `context.draftOrders`) resource by resource.
//!
//! A Bundle is read entry by entry, so one malformed entry is reported as a
//! [`DataIssue`](super::record::DataIssue) and skipped instead of failing the
//! whole Bundle (as a typed Bundle parse would).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::record::PatientRecord;
use crate::hooks::object_or::ObjectOr;
use crate::knowledge::topics::IssueTopic;
use cramp_fhir_parse::{ParsedResource, parse_resource};

/// What a document turned out to hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// `null`: the client has no data for this key.
    Null,
    /// Resources were added; `next` is the Bundle's next-page link, if any.
    Resources {
        /// How many resources were read.
        count: usize,
        /// Absolute URL of the next page.
        next: Option<String>,
    },
    /// The client sent an OperationOutcome instead of the data.
    OperationOutcome(String),
    /// The document could not be read at all.
    Unreadable(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Peek {
    resource_type: Option<String>,
}

#[derive(Deserialize)]
struct BundleShape<'a> {
    #[serde(default, borrow)]
    entry: Vec<EntryShape<'a>>,
    #[serde(default)]
    link: Vec<LinkShape>,
}

#[derive(Deserialize)]
struct LinkShape {
    relation: Option<String>,
    url: Option<String>,
}

/// One `Bundle.entry`, read in the same pass as the Bundle. An entry that is not an
/// object is kept as [`ObjectOr::NotAnObject`], so it is reported and skipped alone.
type EntryShape<'a> = ObjectOr<EntryMembers<'a>>;

#[derive(Deserialize)]
struct EntryMembers<'a> {
    #[serde(default, rename = "fullUrl")]
    full_url: Option<String>,
    #[serde(default, borrow)]
    resource: Option<&'a RawValue>,
    #[serde(default, borrow)]
    search: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SearchShape {
    mode: Option<String>,
}

/// `entry.search.mode`, when `search` is an object that has one.
fn search_mode(search: Option<&RawValue>) -> Option<String> {
    serde_json::from_str::<SearchShape>(search?.get())
        .ok()?
        .mode
}

/// The topic of an issue about `raw`, from its leading `resourceType` when it has one.
fn topic_of(raw: &[u8]) -> IssueTopic {
    cramp_fhir_parse::leading_resource_type(raw)
        .map(IssueTopic::of_resource_type)
        .unwrap_or(IssueTopic::Other)
}

/// Adds every resource in `bytes` (a resource or a Bundle) to the record.
/// `location` names the source in reported issues (e.g. `prefetch.observations`).
pub fn add_document(record: &mut PatientRecord, bytes: &[u8], location: &str) -> Document {
    add_kept(record, bytes, location, |_| true)
}

/// Adds only the Medication resources in `bytes` (a Medication or a Bundle); everything else,
/// unreadable entries included, is skipped silently.
pub fn add_medications_only(record: &mut PatientRecord, bytes: &[u8], location: &str) {
    let mut scratch = PatientRecord::new(record.patient_id.clone());
    add_kept(&mut scratch, bytes, location, |resource| {
        matches!(resource, ParsedResource::Medication(_))
    });
    record.take_medications_from(scratch);
}

/// Adds the resources of `bytes` that `keep` accepts.
fn add_kept(
    record: &mut PatientRecord,
    bytes: &[u8],
    location: &str,
    keep: fn(&ParsedResource) -> bool,
) -> Document {
    let trimmed = bytes.trim_ascii();
    if trimmed == b"null" {
        return Document::Null;
    }
    let resource_type = match cramp_fhir_parse::leading_resource_type(trimmed) {
        Some(found) => Some(found.to_owned()),
        None => match serde_json::from_slice::<Peek>(trimmed) {
            Ok(peek) => peek.resource_type,
            Err(e) => return Document::Unreadable(format!("not a FHIR JSON object: {e}")),
        },
    };
    match resource_type.as_deref() {
        Some("Bundle") => add_bundle(record, trimmed, location, keep),
        Some("OperationOutcome") => {
            let text = match parse_resource(trimmed) {
                Ok(parsed) => outcome_text(&parsed.resource),
                Err(e) => e.to_string(),
            };
            Document::OperationOutcome(text)
        }
        Some(_) => match parse_resource(trimmed) {
            Ok(parsed) => {
                if keep(&parsed.resource) {
                    record.add(parsed.resource, trimmed, location);
                }
                Document::Resources {
                    count: 1,
                    next: None,
                }
            }
            Err(e) => {
                record.add_issue(topic_of(trimmed), location, e.to_string());
                Document::Unreadable(e.to_string())
            }
        },
        None => Document::Unreadable("the resourceType element is missing".to_owned()),
    }
}

fn add_bundle(
    record: &mut PatientRecord,
    bytes: &[u8],
    location: &str,
    keep: fn(&ParsedResource) -> bool,
) -> Document {
    let bundle: BundleShape<'_> = match serde_json::from_slice(bytes) {
        Ok(bundle) => bundle,
        Err(e) => return Document::Unreadable(format!("the Bundle could not be read: {e}")),
    };
    let mut count = 0;
    for (index, entry) in bundle.entry.into_iter().enumerate() {
        let entry_location = format!("{location}.entry[{index}]");
        let (resource, search, full_url) = match entry {
            ObjectOr::Object(members) => (members.resource, members.search, members.full_url),
            ObjectOr::NotAnObject(kind) => {
                record.add_issue(
                    IssueTopic::Other,
                    entry_location,
                    format!("the entry could not be read: it is {kind}, not an object"),
                );
                continue;
            }
        };
        let Some(resource) = resource else {
            continue;
        };
        let raw = resource.get().as_bytes();
        match parse_resource(raw) {
            Ok(parsed) => {
                let is_outcome = search_mode(search).as_deref() == Some("outcome")
                    || matches!(parsed.resource, ParsedResource::OperationOutcome(_));
                if is_outcome {
                    record.add_issue(
                        IssueTopic::Other,
                        entry_location,
                        format!("search outcome: {}", outcome_text(&parsed.resource)),
                    );
                    continue;
                }
                if keep(&parsed.resource) {
                    record.add_entry(parsed.resource, raw, &entry_location, full_url.as_deref());
                    count += 1;
                }
            }
            Err(e) => record.add_issue(topic_of(raw), entry_location, e.to_string()),
        }
    }
    let next = bundle
        .link
        .into_iter()
        .find(|l| l.relation.as_deref() == Some("next"))
        .and_then(|l| l.url);
    Document::Resources { count, next }
}

/// Adds the orders of a `draftOrders` Bundle; orders named in `selections` (or all, when `None`) are in scope.
/// Returns the reference (`Type/id`) of every entry of the Bundle, including orders of types the
/// rules do not read (a NutritionOrder, a DeviceRequest): order-select may select any of them.
pub fn add_draft_orders(
    record: &mut PatientRecord,
    bundle: &RawValue,
    selections: Option<&[String]>,
) -> Vec<String> {
    let location = "context.draftOrders";
    let shape: BundleShape<'_> = match serde_json::from_str(bundle.get()) {
        Ok(shape) => shape,
        Err(e) => {
            record.add_issue(
                IssueTopic::Other,
                location,
                format!("the Bundle could not be read: {e}"),
            );
            return Vec::new();
        }
    };
    let mut listed = Vec::new();
    for (index, entry) in shape.entry.into_iter().enumerate() {
        let entry_location = format!("{location}.entry[{index}]");
        let ObjectOr::Object(EntryMembers {
            resource: Some(resource),
            full_url,
            ..
        }) = entry
        else {
            record.add_issue(
                IssueTopic::Other,
                entry_location,
                "the entry has no readable resource",
            );
            continue;
        };
        let raw = resource.get().as_bytes();
        let value: serde_json::Value = match serde_json::from_str(resource.get()) {
            Ok(value) => value,
            Err(e) => {
                record.add_issue(topic_of(raw), entry_location, e.to_string());
                continue;
            }
        };
        if let (Some(resource_type), Some(id)) = (
            value
                .get("resourceType")
                .and_then(serde_json::Value::as_str),
            value.get("id").and_then(serde_json::Value::as_str),
        ) {
            listed.push(format!("{resource_type}/{id}"));
        }
        match parse_resource(raw) {
            Ok(parsed) => {
                for repair in &parsed.repairs {
                    tracing::debug!(location = %entry_location, %repair, "draft order repaired");
                }
                if matches!(parsed.resource, ParsedResource::Medication(_)) {
                    record.add_draft_medication(parsed.resource, full_url.as_deref());
                    continue;
                }
                record.add_draft_order(&parsed.resource, value, selections, &entry_location);
            }
            Err(e) => {
                tracing::warn!(location = %entry_location, error = %e, "draft order could not be read");
                record.add_issue(
                    topic_of(raw),
                    entry_location,
                    format!("draft order could not be read: {e}"),
                );
            }
        }
    }
    for order in &record.draft_orders {
        if !listed.contains(&order.reference) {
            listed.push(order.reference.clone());
        }
    }
    listed
}

fn outcome_text(resource: &ParsedResource) -> String {
    match resource {
        ParsedResource::OperationOutcome(outcome) => {
            let texts: Vec<String> = outcome
                .issue
                .iter()
                .flatten()
                .map(|i| {
                    i.diagnostics
                        .clone()
                        .or_else(|| i.details.as_ref().and_then(|d| d.text.clone()))
                        .unwrap_or_else(|| i.code.to_string())
                })
                .collect();
            texts.join("; ")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bad_bundle_entry_is_reported_and_the_rest_are_read() {
        let bundle = br#"{"resourceType":"Bundle","type":"searchset","entry":[
            {"resource":{"resourceType":"Condition","id":"ok","subject":{"reference":"Patient/p"}}},
            {"resource":{"resourceType":"Condition","id":"bad","subject":"not-a-reference"}}],
            "link":[{"relation":"next","url":"https://ehr.example/fhir/Condition?page=2"}]}"#;
        let mut record = PatientRecord::new("p");
        let document = add_document(&mut record, bundle, "prefetch.conditions");
        assert_eq!(
            document,
            Document::Resources {
                count: 1,
                next: Some("https://ehr.example/fhir/Condition?page=2".into())
            }
        );
        assert_eq!(record.conditions.len(), 1);
        assert_eq!(record.issues.len(), 1);
        assert!(record.issues[0].location.ends_with("entry[1]"));
    }

    #[test]
    fn null_and_operation_outcome_are_told_apart() {
        let mut record = PatientRecord::new("p");
        assert_eq!(add_document(&mut record, b" null ", "k"), Document::Null);
        let outcome = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"forbidden","diagnostics":"no access"}]}"#;
        assert_eq!(
            add_document(&mut record, outcome, "k"),
            Document::OperationOutcome("no access".into())
        );
    }
}
