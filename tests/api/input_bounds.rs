//! Limits and timeouts on what comes in: ids that would leave the FHIR base URL, oversized
//! feedback and hook fields, FHIR responses, stalled bodies and headers, slow FHIR servers,
//! and report cells that a spreadsheet would run as formulas (issue 11).
//!
//! One section per finding, each with the helpers it brings.

use serde_json::{Value, json};

use crate::helpers::{FhirTestServer, fixture};

const PATIENT_VIEW: &str = "cramp-numbness-patient-view";
const FIXTURE: &str = "diuretic-low-magnesium-mmol.fire";

fn diagnostics(outcome: &Value) -> &str {
    outcome["issue"][0]["diagnostics"].as_str().unwrap_or("")
}

fn expression(outcome: &Value) -> &str {
    outcome["issue"][0]["expression"][0].as_str().unwrap_or("")
}

// 14: nothing outside the FHIR base URL is fetched with the access token.

use actix_web::{HttpRequest, HttpResponse};

use crate::fallback::{TOKEN, app_allowed_to_call, request_without_prefetch, resources_of};

#[actix_web::test]
async fn a_patient_id_with_dot_segments_is_a_400_and_the_fhir_server_sees_no_request() {
    let fhir = FhirTestServer::start(resources_of(FIXTURE), 50).await;
    let app = app_allowed_to_call(&fhir.base_url).await;
    let mut body = request_without_prefetch(FIXTURE, &fhir.base_url);
    body["context"]["patientId"] = json!("../../r4-evil/steal");
    let response = app
        .post_hook(PATIENT_VIEW, serde_json::to_vec(&body).unwrap())
        .await;
    assert_eq!(response.status(), 400);
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(expression(&outcome), "context.patientId", "{outcome}");
    assert!(fhir.received().is_empty(), "{:?}", fhir.received());
}

#[actix_web::test]
async fn a_next_link_to_a_sibling_of_the_base_path_is_not_followed() {
    // The base is `/fhir`; the link goes to `/fhirX/...`, which a plain prefix check lets by.
    let fhir = FhirTestServer::scripted(|_: HttpRequest, base: String| async move {
        HttpResponse::Ok()
            .content_type("application/fhir+json")
            .json(json!({"resourceType": "Bundle", "type": "searchset", "entry": [],
                "link": [{"relation": "next", "url": format!("{base}X/Observation?patient=pat-1")}]}))
    })
    .await;
    let app = app_allowed_to_call(&fhir.base_url).await;
    let mut body = request_without_prefetch(FIXTURE, &fhir.base_url);
    let mut prefetch = fixture(FIXTURE)["prefetch"].clone();
    prefetch.as_object_mut().unwrap().remove("observations");
    body["prefetch"] = prefetch;
    let response = app
        .post_hook(PATIENT_VIEW, serde_json::to_vec(&body).unwrap())
        .await;
    let status = response.status().as_u16();
    let outcome: Value = response.json().await.unwrap();
    let received = fhir.received();
    assert!(!received.is_empty(), "the first page is fetched");
    assert!(
        received.iter().all(|r| r.path.starts_with("/fhir/")),
        "{received:?}"
    );
    assert!(
        received
            .iter()
            .all(|r| r.authorization.as_deref() == Some(&*format!("Bearer {TOKEN}"))),
        "{received:?}"
    );
    assert_eq!(status, 412, "{outcome}");
    assert!(
        diagnostics(&outcome).contains("not under the FHIR server's base URL"),
        "{outcome}"
    );
}

// 7 and 11: feedback and hook requests are bounded when parsed.

use crate::helpers::{TestApp, spawn_app_with};

async fn post_feedback(app: &TestApp, body: &Value) -> (u16, Value) {
    let response = app
        .http
        .post(format!(
            "{}/cds-services/{PATIENT_VIEW}/feedback",
            app.address
        ))
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn an_override() -> Value {
    json!({"card": "4e0a3a1e-3283-4575-ab82-028d55fe2719", "outcome": "overridden",
        "outcomeTimestamp": "2026-11-01T12:00:00Z",
        "overrideReason": {"reason": {"system": "https://cramp-cds.org/fhir/CodeSystem/override-reason",
                                      "code": "patient-declined", "display": "Patient declined"},
                           "userComment": "Discussed with the patient"}})
}

fn an_acceptance(suggestions: usize, id_length: usize) -> Value {
    let ids: Vec<Value> = (0..suggestions)
        .map(|_| json!({"id": "s".repeat(id_length)}))
        .collect();
    json!({"card": "4e0a3a1e-3283-4575-ab82-028d55fe2719", "outcome": "accepted",
        "outcomeTimestamp": "2026-11-01T12:00:00Z", "acceptedSuggestions": ids})
}

#[actix_web::test]
async fn feedback_with_more_than_a_hundred_entries_is_a_400_naming_feedback_and_the_limit() {
    let app = spawn_app_with(|_| {}).await;
    let at_the_limit: Vec<Value> = (0..100).map(|_| an_override()).collect();
    let (status, body) = post_feedback(&app, &json!({ "feedback": at_the_limit })).await;
    assert_eq!(status, 200, "{body}");
    let over: Vec<Value> = (0..101).map(|_| an_override()).collect();
    let (status, outcome) = post_feedback(&app, &json!({ "feedback": over })).await;
    assert_eq!(status, 400, "{outcome}");
    assert_eq!(expression(&outcome), "feedback");
    assert!(diagnostics(&outcome).contains("100"), "{outcome}");
}

#[actix_web::test]
async fn oversized_feedback_fields_are_a_400_naming_the_field_and_the_limit() {
    let app = spawn_app_with(|_| {}).await;
    let with = |path: &[&str], value: Value| {
        let mut entry = an_override();
        let mut at = &mut entry;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = value;
        entry
    };
    let cases = [
        (
            with(&["card"], json!("c".repeat(129))),
            "feedback[0].card",
            "128",
        ),
        (
            with(&["overrideReason", "userComment"], json!("x".repeat(4001))),
            "feedback[0].overrideReason.userComment",
            "4000",
        ),
        (
            with(
                &["overrideReason", "reason", "code"],
                json!("c".repeat(257)),
            ),
            "feedback[0].overrideReason.reason.code",
            "256",
        ),
        (
            with(
                &["overrideReason", "reason", "system"],
                json!("s".repeat(513)),
            ),
            "feedback[0].overrideReason.reason.system",
            "512",
        ),
        (
            with(
                &["overrideReason", "reason", "display"],
                json!("d".repeat(513)),
            ),
            "feedback[0].overrideReason.reason.display",
            "512",
        ),
        (
            an_acceptance(51, 36),
            "feedback[0].acceptedSuggestions",
            "50",
        ),
        (
            an_acceptance(1, 129),
            "feedback[0].acceptedSuggestions[0].id",
            "128",
        ),
    ];
    for (entry, field, limit) in cases {
        let (status, outcome) = post_feedback(&app, &json!({ "feedback": [entry] })).await;
        assert_eq!(status, 400, "{field}: {outcome}");
        assert_eq!(expression(&outcome), field, "{outcome}");
        assert!(diagnostics(&outcome).contains(limit), "{outcome}");
    }
    let (status, body) = post_feedback(&app, &json!({"feedback": [an_acceptance(50, 128)]})).await;
    assert_eq!(status, 200, "entries at the limits are stored: {body}");
}

#[actix_web::test]
async fn feedback_timestamped_more_than_five_minutes_ahead_is_a_400_naming_the_field() {
    // The app's clock is fixed at 2026-11-01T12:00:00Z.
    let app = spawn_app_with(|_| {}).await;
    let mut entry = an_override();
    entry["outcomeTimestamp"] = json!("2026-11-01T12:05:00Z");
    let (status, body) = post_feedback(&app, &json!({ "feedback": [entry.clone()] })).await;
    assert_eq!(status, 200, "five minutes of clock skew is fine: {body}");
    entry["outcomeTimestamp"] = json!("2036-11-01T12:00:00Z");
    let (status, outcome) = post_feedback(&app, &json!({ "feedback": [entry] })).await;
    assert_eq!(status, 400, "{outcome}");
    assert_eq!(expression(&outcome), "feedback[0].outcomeTimestamp");
    assert!(diagnostics(&outcome).contains("5 minutes"), "{outcome}");
}

#[actix_web::test]
async fn oversized_hook_request_fields_are_a_400_naming_the_field() {
    let app = spawn_app_with(|_| {}).await;
    let cases = [
        ("hookInstance", None, json!("h".repeat(129)), "128"),
        (
            "context.userId",
            Some("userId"),
            json!(format!("Practitioner/{}", "1".repeat(65))),
            "64",
        ),
        (
            "context.patientId",
            Some("patientId"),
            json!("p".repeat(65)),
            "64",
        ),
        (
            "context.encounterId",
            Some("encounterId"),
            json!("e".repeat(65)),
            "64",
        ),
    ];
    for (field, context_key, value, limit) in cases {
        let mut request = fixture(FIXTURE);
        match context_key {
            Some(key) => request["context"][key] = value,
            None => request["hookInstance"] = value,
        }
        let response = app
            .post_hook(PATIENT_VIEW, serde_json::to_vec(&request).unwrap())
            .await;
        let status = response.status().as_u16();
        let outcome: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{field}: {outcome}");
        assert_eq!(expression(&outcome), field, "{outcome}");
        assert!(diagnostics(&outcome).contains(limit), "{outcome}");
    }
}
