//! Bad input gets the right status and an OperationOutcome naming what was wrong.

use serde_json::{Value, json};

use crate::helpers::{TestApp, fixture, spawn_app, spawn_app_with};

const PATIENT_VIEW: &str = "cramp-numbness-patient-view";

async fn outcome(response: reqwest::Response) -> (u16, String, Option<String>) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    let issue = &body["issue"][0];
    (
        status,
        issue["diagnostics"].as_str().unwrap_or_default().to_owned(),
        issue["expression"][0].as_str().map(str::to_owned),
    )
}

async fn post_json(app: &TestApp, service: &str, body: &Value) -> (u16, String, Option<String>) {
    outcome(
        app.post_hook(service, serde_json::to_vec(body).unwrap())
            .await,
    )
    .await
}

fn minimal() -> Value {
    json!({"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
           "context": {"userId": "Practitioner/example", "patientId": "pat-1"},
           "prefetch": fixture("diuretic-normal-magnesium.quiet")["prefetch"].clone()})
}

#[actix_web::test]
async fn malformed_json_is_a_400_about_the_body() {
    let app = spawn_app().await;
    let (status, message, field) = outcome(app.post_hook(PATIENT_VIEW, "{\"hook\": ").await).await;
    assert_eq!(status, 400);
    assert_eq!(field.as_deref(), Some("body"));
    assert!(message.contains("not valid JSON"), "{message}");
}

#[actix_web::test]
async fn a_json_array_instead_of_an_object_is_a_400() {
    let app = spawn_app().await;
    let (status, _, field) = post_json(&app, PATIENT_VIEW, &json!([1, 2])).await;
    assert_eq!((status, field.as_deref()), (400, Some("body")));
}

#[actix_web::test]
async fn each_missing_required_field_is_a_400_naming_it() {
    let app = spawn_app().await;
    type Removal = fn(&mut Value);
    let cases: [(&str, Removal); 5] = [
        ("hook", |b| {
            b.as_object_mut().unwrap().remove("hook");
        }),
        ("hookInstance", |b| {
            b.as_object_mut().unwrap().remove("hookInstance");
        }),
        ("context", |b| {
            b.as_object_mut().unwrap().remove("context");
        }),
        ("context.patientId", |b| {
            b["context"].as_object_mut().unwrap().remove("patientId");
        }),
        ("context.userId", |b| {
            b["context"].as_object_mut().unwrap().remove("userId");
        }),
    ];
    for (expected_field, mutate) in cases {
        let mut body = minimal();
        mutate(&mut body);
        let (status, _, field) = post_json(&app, PATIENT_VIEW, &body).await;
        assert_eq!(status, 400, "{expected_field}");
        assert_eq!(field.as_deref(), Some(expected_field));
    }
}

#[actix_web::test]
async fn invalid_field_values_are_400s_naming_the_field() {
    let app = spawn_app().await;
    let mut body = minimal();
    body["context"]["userId"] = json!("Device/1");
    assert_eq!(
        post_json(&app, PATIENT_VIEW, &body).await.2.as_deref(),
        Some("context.userId")
    );
    let mut body = minimal();
    body["context"]["patientId"] = json!(42);
    assert_eq!(
        post_json(&app, PATIENT_VIEW, &body).await.2.as_deref(),
        Some("context.patientId")
    );
    let mut body = minimal();
    body["fhirServer"] = json!("not a url");
    assert_eq!(
        post_json(&app, PATIENT_VIEW, &body).await.2.as_deref(),
        Some("fhirServer")
    );
    let mut body = minimal();
    body["prefetch"] = json!(["not", "an", "object"]);
    assert_eq!(
        post_json(&app, PATIENT_VIEW, &body).await.2.as_deref(),
        Some("prefetch")
    );
}

#[actix_web::test]
async fn the_wrong_hook_for_a_service_is_a_400_naming_hook() {
    let app = spawn_app().await;
    let (status, message, field) = post_json(&app, "cramp-numbness-order-sign", &minimal()).await;
    assert_eq!((status, field.as_deref()), (400, Some("hook")));
    assert!(message.contains("order-sign"), "{message}");
}

#[actix_web::test]
async fn order_select_without_selections_or_with_a_stray_selection_is_a_400() {
    let app = spawn_app().await;
    let mut body = fixture("diuretic-order-select-low-magnesium.fire");
    body["context"]
        .as_object_mut()
        .unwrap()
        .remove("selections");
    let (status, _, field) = post_json(&app, "cramp-numbness-order-select", &body).await;
    assert_eq!(
        (status, field.as_deref()),
        (400, Some("context.selections"))
    );

    let mut body = fixture("diuretic-order-select-low-magnesium.fire");
    body["context"]["selections"] = json!(["MedicationRequest/not-in-the-bundle"]);
    let (status, _, field) = post_json(&app, "cramp-numbness-order-select", &body).await;
    assert_eq!(
        (status, field.as_deref()),
        (400, Some("context.selections[0]"))
    );

    let mut body = fixture("order-sign-diuretic.quiet");
    body["context"]["draftOrders"] = json!({"resourceType": "Patient"});
    let (status, _, field) = post_json(&app, "cramp-numbness-order-sign", &body).await;
    assert_eq!(
        (status, field.as_deref()),
        (400, Some("context.draftOrders"))
    );
}

#[actix_web::test]
async fn an_unknown_service_is_a_404() {
    let app = spawn_app().await;
    let (status, message, _) = post_json(&app, "no-such-service", &minimal()).await;
    assert_eq!(status, 404);
    assert!(message.contains("no-such-service"), "{message}");
    let response = app
        .http
        .get(format!("{}/nowhere", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(outcome(response).await.0, 404);
}

#[actix_web::test]
async fn a_wrong_method_is_a_405() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/cds-services/{PATIENT_VIEW}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(outcome(response).await.0, 405);
}

#[actix_web::test]
async fn a_body_over_the_limit_is_a_413() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 1024).await;
    let mut body = minimal();
    body["padding"] = json!("x".repeat(2048));
    let (status, message, _) = post_json(&app, PATIENT_VIEW, &body).await;
    assert_eq!(status, 413);
    assert!(message.contains("1024"), "{message}");
}

#[actix_web::test]
async fn a_streamed_body_over_the_limit_without_content_length_is_a_413() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 1024).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b' '; 512])).collect();
    let stream = futures::stream::iter(chunks);
    let response = app
        .http
        .post(format!("{}/cds-services/{PATIENT_VIEW}", app.address))
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[actix_web::test]
async fn a_wrong_content_type_is_a_415() {
    let app = spawn_app().await;
    for content_type in [Some("text/plain"), Some("application/xml"), None] {
        let mut request = app
            .http
            .post(format!("{}/cds-services/{PATIENT_VIEW}", app.address))
            .body(serde_json::to_vec(&minimal()).unwrap());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let (status, _, _) = outcome(request.send().await.unwrap()).await;
        assert_eq!(status, 415, "{content_type:?}");
    }
}

#[actix_web::test]
async fn json_with_a_charset_and_fhir_json_are_accepted() {
    let app = spawn_app().await;
    for content_type in ["application/json; charset=utf-8", "application/fhir+json"] {
        let response = app
            .http
            .post(format!("{}/cds-services/{PATIENT_VIEW}", app.address))
            .header("Content-Type", content_type)
            .body(serde_json::to_vec(&minimal()).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{content_type}");
    }
}
