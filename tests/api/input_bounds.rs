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
