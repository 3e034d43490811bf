//! The CDS Hooks request: read once, at the edge, into a [`HookCall`] whose
//! fields are known to be valid for its hook. Every problem is a
//! [`RequestError`] that names the field.
//!
//! Prefetch values and `draftOrders` stay as borrowed raw JSON here; the
//! `fhir` module reads them resource by resource.
//!
//! Limits, so that nothing unbounded is carried into URLs, logs or the store:
//! `hookInstance` is at most [`MAX_HOOK_INSTANCE_LEN`] characters; `context.patientId`,
//! `context.encounterId` and the id of `context.userId` (`Practitioner/123`) must be FHIR ids
//! ([`FhirId`]: at most 64 of `A-Z a-z 0-9 - .`), so no value the client sends can move a
//! prefetch URL outside the FHIR server's base URL.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::Hook;
use super::fhir_id::FhirId;
use super::object_or::ObjectOr;

/// Most characters in `hookInstance` (a UUID has 36).
pub const MAX_HOOK_INSTANCE_LEN: usize = 128;

/// A request that cannot be served, and the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RequestError {
    /// The JSON path of the field (e.g. `context.patientId`), or `body`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl RequestError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        RequestError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `fhirAuthorization`. Its `Debug` never shows the token.
#[derive(Clone, Deserialize)]
pub struct FhirAuthorization {
    /// The OAuth access token; transient: never logged or stored.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: Option<i64>,
    /// Granted SMART scopes.
    pub scope: Option<String>,
    /// The service's OAuth client id.
    pub subject: Option<String>,
    /// The patient in context, with patient scopes.
    pub patient: Option<String>,
}

impl fmt::Debug for FhirAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FhirAuthorization")
            .field("access_token", &"[redacted]")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The validated hook context.
#[derive(Debug, Clone)]
pub struct HookContext<'a> {
    /// `userId`, e.g. `Practitioner/123`: one of the hook's user types and a FHIR id.
    pub user_id: String,
    /// `patientId`.
    pub patient_id: FhirId,
    /// `encounterId`, when sent.
    pub encounter_id: Option<FhirId>,
    /// `selections` (order-select only): references into `draftOrders`.
    pub selections: Vec<String>,
    /// `draftOrders` (order-select and order-sign): the Bundle, as raw JSON.
    pub draft_orders: Option<&'a RawValue>,
}

/// A validated CDS Hooks invocation.
#[derive(Debug, Clone)]
pub struct HookCall<'a> {
    /// The hook.
    pub hook: Hook,
    /// `hookInstance`, at most [`MAX_HOOK_INSTANCE_LEN`] characters.
    pub hook_instance: String,
    /// `fhirServer`, when sent.
    pub fhir_server: Option<url::Url>,
    /// `fhirAuthorization`, when sent.
    pub fhir_authorization: Option<FhirAuthorization>,
    /// The context.
    pub context: HookContext<'a>,
    /// Prefetch keys and their raw values, in the order sent.
    pub prefetch: Vec<(String, &'a RawValue)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(borrow)]
    hook: Option<&'a RawValue>,
    #[serde(borrow)]
    hook_instance: Option<&'a RawValue>,
    #[serde(borrow)]
    fhir_server: Option<&'a RawValue>,
    #[serde(borrow)]
    fhir_authorization: Option<&'a RawValue>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    #[serde(borrow)]
    prefetch: Option<ObjectOr<BTreeMap<String, &'a RawValue>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContextEnvelope<'a> {
    #[serde(borrow)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    patient_id: Option<&'a RawValue>,
    #[serde(borrow)]
    encounter_id: Option<&'a RawValue>,
    #[serde(borrow)]
    selections: Option<&'a RawValue>,
    #[serde(borrow)]
    draft_orders: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundlePeek {
    resource_type: Option<String>,
}

/// Reads and validates a request body for the service whose hook is `expected`.
pub fn parse_hook_call(body: &[u8], expected: Hook) -> Result<HookCall<'_>, RequestError> {
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|e| {
        let message = if e.is_data() {
            format!("the request must be a JSON object: {e}")
        } else {
            format!("the request is not valid JSON: {e}")
        };
        RequestError::new("body", message)
    })?;

    let hook_name = required_string(envelope.hook, "hook")?;
    let hook: Hook = hook_name
        .parse()
        .map_err(|e: String| RequestError::new("hook", e))?;
    if hook != expected {
        return Err(RequestError::new(
            "hook",
            format!("this service answers '{expected}', not '{hook}'"),
        ));
    }
    let hook_instance = required_string(envelope.hook_instance, "hookInstance")?;
    if hook_instance.chars().count() > MAX_HOOK_INSTANCE_LEN {
        return Err(RequestError::new(
            "hookInstance",
            format!("must be at most {MAX_HOOK_INSTANCE_LEN} characters"),
        ));
    }

    let fhir_authorization = envelope
        .fhir_authorization
        .filter(|raw| raw.get() != "null")
        .map(parse_authorization)
        .transpose()?;
    let fhir_server = optional_string(envelope.fhir_server, "fhirServer")?
        .map(|text| {
            url::Url::parse(&text)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| {
                    RequestError::new(
                        "fhirServer",
                        format!("'{text}' is not an absolute http(s) URL"),
                    )
                })
        })
        .transpose()?;
    if fhir_authorization.is_some() && fhir_server.is_none() {
        return Err(RequestError::new(
            "fhirServer",
            "is required when fhirAuthorization is present",
        ));
    }

    let context = parse_context(
        envelope
            .context
            .ok_or_else(|| RequestError::new("context", "is required"))?,
        hook,
    )?;

    let prefetch = match envelope.prefetch {
        // Absent or null: the client prefetched nothing.
        None => Vec::new(),
        Some(ObjectOr::Object(entries)) => entries.into_iter().collect(),
        Some(ObjectOr::NotAnObject(kind)) => {
            return Err(RequestError::new(
                "prefetch",
                format!("must be a JSON object, not {kind}"),
            ));
        }
    };

    Ok(HookCall {
        hook,
        hook_instance,
        fhir_server,
        fhir_authorization,
        context,
        prefetch,
    })
}

fn parse_context(raw: &RawValue, hook: Hook) -> Result<HookContext<'_>, RequestError> {
    let envelope: ContextEnvelope<'_> = serde_json::from_str(raw.get())
        .map_err(|e| RequestError::new("context", format!("must be a JSON object: {e}")))?;
    let user_id = required_string(envelope.user_id, "context.userId")?;
    let allowed = hook.user_types();
    match user_id.split_once('/') {
        Some((kind, id)) if allowed.contains(&kind) => FhirId::check(id).map_err(|e| {
            RequestError::new("context.userId", format!("the id after '{kind}/' {e}"))
        })?,
        _ => {
            return Err(RequestError::new(
                "context.userId",
                format!(
                    "{} must be a reference of the form Type/id with Type one of {}",
                    shown(&user_id),
                    allowed.join(", ")
                ),
            ));
        }
    }
    let patient_id = fhir_id(
        required_string(envelope.patient_id, "context.patientId")?,
        "context.patientId",
    )?;
    let encounter_id = optional_string(envelope.encounter_id, "context.encounterId")?
        .map(|id| fhir_id(id, "context.encounterId"))
        .transpose()?;

    let draft_orders = if hook.has_draft_orders() {
        let raw = envelope
            .draft_orders
            .filter(|r| r.get() != "null")
            .ok_or_else(|| {
                RequestError::new("context.draftOrders", format!("is required for {hook}"))
            })?;
        let peek: BundlePeek = serde_json::from_str(raw.get()).map_err(|_| {
            RequestError::new("context.draftOrders", "must be a FHIR Bundle object")
        })?;
        if peek.resource_type.as_deref() != Some("Bundle") {
            return Err(RequestError::new(
                "context.draftOrders",
                "must be a FHIR Bundle (resourceType 'Bundle')",
            ));
        }
        Some(raw)
    } else {
        None
    };

    let selections = if hook == Hook::OrderSelect {
        let raw = envelope.selections.ok_or_else(|| {
            RequestError::new("context.selections", "is required for order-select")
        })?;
        let selections: Vec<String> = serde_json::from_str(raw.get())
            .map_err(|_| RequestError::new("context.selections", "must be an array of strings"))?;
        if selections.is_empty() {
            return Err(RequestError::new(
                "context.selections",
                "must name at least one draft order",
            ));
        }
        if let Some((i, bad)) = selections.iter().enumerate().find(
            |(_, s)| !matches!(s.split_once('/'), Some((t, id)) if !t.is_empty() && !id.is_empty()),
        ) {
            return Err(RequestError::new(
                format!("context.selections[{i}]"),
                format!("{} must be a reference of the form Type/id", shown(bad)),
            ));
        }
        selections
    } else {
        Vec::new()
    };

    Ok(HookContext {
        user_id,
        patient_id,
        encounter_id,
        selections,
        draft_orders,
    })
}

fn parse_authorization(raw: &RawValue) -> Result<FhirAuthorization, RequestError> {
    let auth: FhirAuthorization = serde_json::from_str(raw.get()).map_err(|e| {
        // The message of a type error never quotes the token's value.
        RequestError::new(
            "fhirAuthorization",
            format!(
                "must be an object with access_token and token_type: {}",
                redact(&e)
            ),
        )
    })?;
    if auth.access_token.trim().is_empty() {
        return Err(RequestError::new(
            "fhirAuthorization.access_token",
            "must not be empty",
        ));
    }
    if !auth.token_type.eq_ignore_ascii_case("bearer") {
        return Err(RequestError::new(
            "fhirAuthorization.token_type",
            format!("must be 'Bearer', not '{}'", auth.token_type),
        ));
    }
    Ok(auth)
}

/// The position and category of a serde error, without any quoted input.
fn redact(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

fn fhir_id(text: String, field: &str) -> Result<FhirId, RequestError> {
    FhirId::parse(&text).map_err(|e| RequestError::new(field, e.to_string()))
}

/// `value` quoted for a message, cut short when long.
fn shown(value: &str) -> String {
    const SHOWN: usize = 64;
    match value.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("'{}…'", &value[..end]),
        None => format!("'{value}'"),
    }
}

fn required_string(raw: Option<&RawValue>, field: &str) -> Result<String, RequestError> {
    optional_string(raw, field)?.ok_or_else(|| RequestError::new(field, "is required"))
}

fn optional_string(raw: Option<&RawValue>, field: &str) -> Result<Option<String>, RequestError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.get() == "null" {
        return Ok(None);
    }
    let value: String = serde_json::from_str(raw.get())
        .map_err(|_| RequestError::new(field, "must be a string"))?;
    if value.trim().is_empty() {
        return Err(RequestError::new(field, "must not be empty"));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENT_VIEW: &str = r#"{"hook":"patient-view","hookInstance":"d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context":{"userId":"Practitioner/example","patientId":"1288992"}}"#;

    #[test]
    fn a_minimal_patient_view_request_is_accepted() {
        let call = parse_hook_call(PATIENT_VIEW.as_bytes(), Hook::PatientView).unwrap();
        assert_eq!(call.context.patient_id.as_str(), "1288992");
        assert!(call.prefetch.is_empty());
    }

    #[test]
    fn the_wrong_hook_names_the_hook_field() {
        let err = parse_hook_call(PATIENT_VIEW.as_bytes(), Hook::OrderSign).unwrap_err();
        assert_eq!(err.field, "hook");
    }

    #[test]
    fn a_missing_patient_id_names_the_field() {
        let body =
            br#"{"hook":"patient-view","hookInstance":"x","context":{"userId":"Practitioner/1"}}"#;
        let err = parse_hook_call(body, Hook::PatientView).unwrap_err();
        assert_eq!(err.field, "context.patientId");
    }

    #[test]
    fn order_select_needs_selections_and_draft_orders() {
        let body = br#"{"hook":"order-select","hookInstance":"x","context":{"userId":"Practitioner/1","patientId":"p","draftOrders":{"resourceType":"Bundle","entry":[]}}}"#;
        let err = parse_hook_call(body, Hook::OrderSelect).unwrap_err();
        assert_eq!(err.field, "context.selections");
        let body = br#"{"hook":"order-sign","hookInstance":"x","context":{"userId":"Practitioner/1","patientId":"p"}}"#;
        let err = parse_hook_call(body, Hook::OrderSign).unwrap_err();
        assert_eq!(err.field, "context.draftOrders");
    }

    fn patient_view_with(field: &str, value: &str) -> Vec<u8> {
        let mut request: serde_json::Value = serde_json::from_str(PATIENT_VIEW).unwrap();
        match field.strip_prefix("context.") {
            Some(key) => request["context"][key] = value.into(),
            None => request[field] = value.into(),
        }
        serde_json::to_vec(&request).unwrap()
    }

    #[test]
    fn context_ids_that_are_not_fhir_ids_name_the_field() {
        let cases = [
            ("context.patientId", "../../r4-evil/steal"),
            ("context.patientId", ".."),
            ("context.patientId", "1288992?_count=1000"),
            ("context.encounterId", "e/../../x"),
            ("context.userId", "Practitioner/../../x"),
            ("context.userId", "Practitioner/"),
        ];
        for (field, value) in cases {
            let body = patient_view_with(field, value);
            let err = parse_hook_call(&body, Hook::PatientView).unwrap_err();
            assert_eq!(err.field, field, "{value}");
            assert!(err.message.contains("FHIR id"), "{err}");
        }
    }

    #[test]
    fn context_ids_and_the_hook_instance_over_their_limits_name_the_field_and_the_limit() {
        let cases = [
            ("hookInstance", "h".repeat(MAX_HOOK_INSTANCE_LEN + 1), "128"),
            ("context.patientId", "p".repeat(65), "64"),
            ("context.encounterId", "e".repeat(65), "64"),
            (
                "context.userId",
                format!("Practitioner/{}", "1".repeat(65)),
                "64",
            ),
        ];
        for (field, value, limit) in cases {
            let body = patient_view_with(field, &value);
            let err = parse_hook_call(&body, Hook::PatientView).unwrap_err();
            assert_eq!(err.field, field);
            assert!(err.message.contains(limit), "{err}");
            assert!(
                !err.message.contains(&value),
                "the value is not echoed: {err}"
            );
        }
        let at_the_limits = patient_view_with("hookInstance", &"h".repeat(MAX_HOOK_INSTANCE_LEN));
        let call = parse_hook_call(&at_the_limits, Hook::PatientView).unwrap();
        assert_eq!(call.hook_instance.len(), MAX_HOOK_INSTANCE_LEN);
    }

    #[test]
    fn an_authorization_without_a_server_is_rejected_and_never_shows_the_token() {
        let body = br#"{"hook":"patient-view","hookInstance":"x","context":{"userId":"Practitioner/1","patientId":"p"},
            "fhirAuthorization":{"access_token":"SECRET","token_type":"Bearer","expires_in":300,"scope":"patient/*.read","subject":"cds"}}"#;
        let err = parse_hook_call(body, Hook::PatientView).unwrap_err();
        assert_eq!(err.field, "fhirServer");
        let body = br#"{"hook":"patient-view","hookInstance":"x","context":{"userId":"Practitioner/1","patientId":"p"},
            "fhirServer":"https://ehr.example/fhir","fhirAuthorization":{"access_token":"SECRET","token_type":"Bearer"}}"#;
        let call = parse_hook_call(body, Hook::PatientView).unwrap();
        assert!(!format!("{call:?}").contains("SECRET"));
    }
}
