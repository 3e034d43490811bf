//! Fetching what the prefetch lacks from the EHR's FHIR server.

use serde_json::json;

use crate::helpers::{
    FHIR_TOKEN as TOKEN, FhirTestServer, PATIENT_VIEW, app_allowed_to_call, cards, fixture,
    request_without_prefetch, resources_of, rule_id,
};

#[actix_web::test]
async fn missing_prefetch_is_fetched_with_the_bearer_token_and_substituted_queries() {
    let fhir = FhirTestServer::start(resources_of("diuretic-low-magnesium-mmol.fire"), 50).await;
    let app = app_allowed_to_call(&fhir.base_url).await;
    let body = request_without_prefetch("diuretic-low-magnesium-mmol.fire", &fhir.base_url);
    let (status, body) = app.post_hook_json(PATIENT_VIEW, &body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rule_id(&cards(&body)[0]), "diuretic-low-magnesium");

    let received = fhir.received();
    let mut paths: Vec<String> = received.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/fhir/Condition",
            "/fhir/MedicationRequest",
            "/fhir/MedicationStatement",
            "/fhir/Observation",
            "/fhir/Patient/pat-1"
        ]
    );
    for request in &received {
        assert_eq!(
            request.authorization.as_deref(),
            Some(&*format!("Bearer {TOKEN}"))
        );
        assert_eq!(request.accept.as_deref(), Some("application/fhir+json"));
        if request.path != "/fhir/Patient/pat-1" {
            assert!(
                request.query.starts_with("patient=pat-1"),
                "{}",
                request.query
            );
        }
    }
    let observation_query = &received
        .iter()
        .find(|r| r.path == "/fhir/Observation")
        .unwrap()
        .query;
    assert!(
        observation_query.contains("code=http://loinc.org|19123-9"),
        "{observation_query}"
    );
    assert!(observation_query.ends_with("_sort=-date"));
}

#[actix_web::test]
async fn next_links_are_followed_so_a_result_on_page_two_counts() {
    let mut resources = resources_of("diuretic-low-magnesium-mmol.fire");
    // The low result comes last, so with one resource a page it is on a later page.
    resources.insert(0, json!({"resourceType": "Observation", "id": "mg-old-normal", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2601-3"}]},
        "subject": {"reference": "Patient/pat-1"}, "effectiveDateTime": "2026-03-01T08:00:00Z",
        "valueQuantity": {"value": 0.85, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}}));
    let fhir = FhirTestServer::start(resources, 1).await;
    let app = app_allowed_to_call(&fhir.base_url).await;
    let mut body = request_without_prefetch("diuretic-low-magnesium-mmol.fire", &fhir.base_url);
    let mut prefetch = fixture("diuretic-low-magnesium-mmol.fire")["prefetch"].clone();
    prefetch.as_object_mut().unwrap().remove("observations");
    body["prefetch"] = prefetch;
    let (status, body) = app.post_hook_json(PATIENT_VIEW, &body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rule_id(&cards(&body)[0]), "diuretic-low-magnesium");
    let received = fhir.received();
    assert!(
        received.iter().all(|r| r.path == "/fhir/Observation"),
        "only the missing key is fetched"
    );
    assert!(
        received.iter().any(|r| r.query.contains("_page=2")),
        "{received:?}"
    );
}

#[actix_web::test]
async fn an_operation_outcome_in_the_prefetch_is_replaced_by_a_fetch() {
    let fhir = FhirTestServer::start(resources_of("cirrhosis-cramps.fire"), 50).await;
    let app = app_allowed_to_call(&fhir.base_url).await;
    let mut body = fixture("cirrhosis-cramps.fire");
    body["prefetch"]["conditions"] = json!({"resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout", "diagnostics": "search timed out"}]});
    body["fhirServer"] = json!(fhir.base_url);
    body["fhirAuthorization"] = json!({"access_token": TOKEN, "token_type": "Bearer"});
    let (status, body) = app.post_hook_json(PATIENT_VIEW, &body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rule_id(&cards(&body)[0]), "cirrhosis-cramps");
    assert_eq!(fhir.received().len(), 1);
    assert_eq!(fhir.received()[0].path, "/fhir/Condition");
}

#[actix_web::test]
async fn a_fhir_server_that_is_down_gives_a_412() {
    // A port bound but never listened on: held for the test, so nothing else can take it,
    // and every connection to it is refused.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let base = format!("http://{}/fhir", closed.local_addr().unwrap());
    let app = app_allowed_to_call(&base).await;
    let body = request_without_prefetch("diuretic-low-magnesium-mmol.fire", &base);
    let (status, body) = app.post_hook_json(PATIENT_VIEW, &body).await;
    assert_eq!(status, 412, "{body}");
    let diagnostics = body["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        diagnostics.contains("could not be reached"),
        "{diagnostics}"
    );
    assert!(!diagnostics.contains(TOKEN));
}

#[actix_web::test]
async fn a_fhir_server_off_the_allowlist_is_never_contacted_and_the_answer_is_412() {
    let fhir = FhirTestServer::start(resources_of("diuretic-low-magnesium-mmol.fire"), 50).await;
    let app = app_allowed_to_call("https://ehr.example/fhir").await;
    let body = request_without_prefetch("diuretic-low-magnesium-mmol.fire", &fhir.base_url);
    let (status, body) = app.post_hook_json(PATIENT_VIEW, &body).await;
    assert_eq!(status, 412, "{body}");
    assert!(fhir.received().is_empty(), "{:?}", fhir.received());
}
