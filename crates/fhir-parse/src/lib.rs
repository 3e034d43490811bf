//! The one place where serde meets the fhir-sdk R4B types.
//!
//! Deserialising the generated FHIR types instantiates a very large amount of
//! generic code. Keeping that behind the single non-generic [`parse_resource`]
//! in its own crate means the application crate only reads fields of the
//! typed resources and rebuilds in seconds instead of minutes.
//!
//! This crate does not decide what a resource means clinically; it only turns
//! bytes into typed resources, repairing a few well-known deviations from R4
//! that real clients send (see [`Repair`]).

use std::borrow::Cow;

use serde::Deserialize;

pub use fhir_sdk::r4b::{codes, resources, types};
pub use fhir_sdk::{Date, DateTime, Instant};

use fhir_sdk::r4b::resources::{
    Condition, Medication, MedicationRequest, MedicationStatement, Observation, OperationOutcome,
    Patient, ServiceRequest,
};

/// A FHIR resource of one of the types the service reads, or the name of a
/// type it does not read.
#[derive(Debug, Clone)]
pub enum ParsedResource {
    /// A Patient.
    Patient(Patient),
    /// An Observation.
    Observation(Observation),
    /// A Condition.
    Condition(Condition),
    /// A MedicationStatement.
    MedicationStatement(MedicationStatement),
    /// A MedicationRequest.
    MedicationRequest(MedicationRequest),
    /// A Medication (referenced from a statement or request).
    Medication(Medication),
    /// A ServiceRequest (a draft order for a test or referral).
    ServiceRequest(ServiceRequest),
    /// An OperationOutcome, as a client sends in place of a prefetch result it could not get.
    OperationOutcome(OperationOutcome),
    /// A resource of a type the service does not read; only its type is kept.
    Other {
        /// The `resourceType` as sent.
        resource_type: String,
    },
}

/// A deviation from FHIR R4 that was repaired so the resource could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// `MedicationRequest.intent` was missing (the CDS Hooks sandbox omits it) and was read as `proposal`.
    MissingIntentReadAsProposal,
    /// `MedicationRequest.category` was a single object instead of an array.
    CategoryObjectWrappedInArray,
}

impl std::fmt::Display for Repair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Repair::MissingIntentReadAsProposal => {
                f.write_str("MedicationRequest.intent was missing; read as 'proposal'")
            }
            Repair::CategoryObjectWrappedInArray => {
                f.write_str("MedicationRequest.category was an object, not an array; read as a one-element array")
            }
        }
    }
}

/// A parsed resource and the repairs that were needed to read it.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The typed resource.
    pub resource: ParsedResource,
    /// Deviations from R4 that were repaired (empty for a conformant resource).
    pub repairs: Vec<Repair>,
}

/// Why a resource could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The `resourceType`, when it could be read.
    pub resource_type: Option<String>,
    /// What was wrong, in the words of the JSON parser.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.resource_type {
            Some(t) => write!(f, "{t} could not be read: {}", self.message),
            None => write!(f, "resource could not be read: {}", self.message),
        }
    }
}

impl std::error::Error for ParseError {}

#[derive(Deserialize)]
struct ResourceTypePeek<'a> {
    #[serde(rename = "resourceType", borrow)]
    resource_type: Option<Cow<'a, str>>,
}

/// Parses one FHIR R4 resource from JSON bytes.
///
/// The `resourceType` is read first, so only the resource types the service
/// uses are deserialised in full; any other type is returned as
/// [`ParsedResource::Other`] without further cost.
///
/// ```
/// use cramp_fhir_parse::{ParsedResource, parse_resource};
///
/// let json = br#"{"resourceType":"Condition","subject":{"reference":"Patient/1"},
///                 "code":{"text":"Cirrhosis of liver"}}"#;
/// let parsed = parse_resource(json).unwrap();
/// assert!(matches!(parsed.resource, ParsedResource::Condition(_)));
/// assert!(parsed.repairs.is_empty());
/// ```
pub fn parse_resource(bytes: &[u8]) -> Result<Parsed, ParseError> {
    let resource_type = match leading_resource_type(bytes) {
        Some(found) => Some(Cow::Borrowed(found)),
        None => {
            let peek: ResourceTypePeek<'_> =
                serde_json::from_slice(bytes).map_err(|e| ParseError {
                    resource_type: None,
                    message: e.to_string(),
                })?;
            peek.resource_type
        }
    };
    let Some(resource_type) = resource_type else {
        return Err(ParseError {
            resource_type: None,
            message: "the resourceType element is missing".to_owned(),
        });
    };
    let typed = |message: serde_json::Error| ParseError {
        resource_type: Some(resource_type.to_string()),
        message: message.to_string(),
    };
    let resource = match resource_type.as_ref() {
        "Patient" => ParsedResource::Patient(serde_json::from_slice(bytes).map_err(typed)?),
        "Observation" => ParsedResource::Observation(serde_json::from_slice(bytes).map_err(typed)?),
        "Condition" => ParsedResource::Condition(serde_json::from_slice(bytes).map_err(typed)?),
        "MedicationStatement" => {
            ParsedResource::MedicationStatement(serde_json::from_slice(bytes).map_err(typed)?)
        }
        "MedicationRequest" => return parse_medication_request(bytes).map_err(typed),
        "Medication" => ParsedResource::Medication(serde_json::from_slice(bytes).map_err(typed)?),
        "ServiceRequest" => {
            ParsedResource::ServiceRequest(serde_json::from_slice(bytes).map_err(typed)?)
        }
        "OperationOutcome" => {
            ParsedResource::OperationOutcome(serde_json::from_slice(bytes).map_err(typed)?)
        }
        other => ParsedResource::Other {
            resource_type: other.to_owned(),
        },
    };
    Ok(Parsed {
        resource,
        repairs: Vec::new(),
    })
}

/// The `resourceType` when it is the object's first member, as FHIR JSON writes it, read
/// without scanning the rest of the resource. `None` sends the caller to a full read.
pub fn leading_resource_type(bytes: &[u8]) -> Option<&str> {
    let rest = skip_whitespace(bytes).strip_prefix(b"{")?;
    let rest = skip_whitespace(rest).strip_prefix(b"\"resourceType\"")?;
    let rest = skip_whitespace(rest).strip_prefix(b":")?;
    let rest = skip_whitespace(rest).strip_prefix(b"\"")?;
    let end = rest.iter().position(|b| *b == b'"' || *b == b'\\')?;
    if rest[end] != b'"' {
        return None;
    }
    let name = std::str::from_utf8(&rest[..end]).ok()?;
    name.bytes()
        .all(|b| b.is_ascii_alphabetic())
        .then_some(name)
}

fn skip_whitespace(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Reads a MedicationRequest, repairing the deviations the CDS Hooks sandbox's
/// Rx View is known to send (no `intent`, `category` as one object) when the
/// strict read fails.
fn parse_medication_request(bytes: &[u8]) -> Result<Parsed, serde_json::Error> {
    let strict_error = match serde_json::from_slice::<MedicationRequest>(bytes) {
        Ok(request) => {
            return Ok(Parsed {
                resource: ParsedResource::MedicationRequest(request),
                repairs: Vec::new(),
            });
        }
        Err(e) => e,
    };
    let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
    let Some(object) = value.as_object_mut() else {
        return Err(strict_error);
    };
    let mut repairs = Vec::new();
    if !object.contains_key("intent") {
        object.insert("intent".to_owned(), "proposal".into());
        repairs.push(Repair::MissingIntentReadAsProposal);
    }
    if let Some(category) = object.get_mut("category")
        && category.is_object()
    {
        *category = serde_json::Value::Array(vec![category.take()]);
        repairs.push(Repair::CategoryObjectWrappedInArray);
    }
    if repairs.is_empty() {
        return Err(strict_error);
    }
    let request: MedicationRequest = serde_json::from_value(value)?;
    Ok(Parsed {
        resource: ParsedResource::MedicationRequest(request),
        repairs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_is_read_as_an_observation() {
        let json = br#"{"resourceType":"Observation","status":"final","code":{"text":"Mg"}}"#;
        let parsed = parse_resource(json).expect("valid observation");
        assert!(matches!(parsed.resource, ParsedResource::Observation(_)));
    }

    #[test]
    fn an_unread_resource_type_keeps_only_its_name() {
        let parsed = parse_resource(br#"{"resourceType":"Encounter","status":"x"}"#).unwrap();
        match parsed.resource {
            ParsedResource::Other { resource_type } => assert_eq!(resource_type, "Encounter"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_leading_resource_type_is_read_without_a_full_scan() {
        assert_eq!(
            leading_resource_type(br#" { "resourceType" : "Bundle", "entry": ["#),
            Some("Bundle")
        );
        assert_eq!(
            leading_resource_type(br#"{"id":"x","resourceType":"Bundle"}"#),
            None
        );
        let late =
            br#"{"id":"x","status":"final","code":{"text":"Mg"},"resourceType":"Observation"}"#;
        assert!(matches!(
            parse_resource(late).unwrap().resource,
            ParsedResource::Observation(_)
        ));
    }

    #[test]
    fn a_missing_resource_type_is_an_error() {
        let err = parse_resource(br#"{"status":"final"}"#).unwrap_err();
        assert!(err.message.contains("resourceType"));
    }

    #[test]
    fn a_sandbox_medication_request_is_repaired_and_the_repairs_are_reported() {
        let json = br#"{"resourceType":"MedicationRequest","id":"request-123","status":"draft",
            "category":{"coding":[{"code":"outpatient"}]},"subject":{"reference":"Patient/1"},
            "medicationCodeableConcept":{"text":"Quinine Sulfate 324 MG Oral Capsule"}}"#;
        let parsed = parse_resource(json).expect("repaired");
        assert_eq!(
            parsed.repairs,
            vec![
                Repair::MissingIntentReadAsProposal,
                Repair::CategoryObjectWrappedInArray
            ]
        );
    }

    #[test]
    fn a_broken_medication_request_is_still_an_error() {
        let json = br#"{"resourceType":"MedicationRequest","status":"nonsense","intent":"order"}"#;
        assert!(parse_resource(json).is_err());
    }
}
