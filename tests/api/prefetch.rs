//! Every prefetch shape: absent, null, a single resource, an empty or paged
//! searchset Bundle, an OperationOutcome, and a Bundle with a malformed entry.

use crate::helpers::{cards, fixture, rule_id, spawn_app};

#[actix_web::test]
async fn null_keys_mean_no_data_and_the_rules_still_run() {
    let app = spawn_app().await;
    let (status, body) = app.post_fixture("prefetch-null-keys.fire").await;
    assert_eq!(status, 200);
    assert_eq!(rule_id(&cards(&body)[0]), "diuretic-low-magnesium");
}

#[actix_web::test]
async fn single_resources_and_an_empty_bundle_are_read() {
    let app = spawn_app().await;
    let (status, body) = app.post_fixture("prefetch-single-resources.fire").await;
    assert_eq!(status, 200);
    assert_eq!(rule_id(&cards(&body)[0]), "diuretic-low-magnesium");
}

#[actix_web::test]
async fn a_paged_bundle_without_fhir_access_is_evaluated_on_its_first_page_and_says_so() {
    let app = spawn_app().await;
    let (status, body) = app.post_fixture("prefetch-paged-bundle.fire").await;
    assert_eq!(status, 200);
    let detail = cards(&body)[0]["detail"].as_str().unwrap();
    assert!(detail.contains("only the first page was sent"), "{detail}");
}

#[actix_web::test]
async fn a_malformed_bundle_entry_is_reported_and_skipped() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_fixture("prefetch-bundle-with-malformed-entry.fire")
        .await;
    assert_eq!(status, 200);
    let card = &cards(&body)[0];
    assert_eq!(rule_id(card), "diuretic-low-magnesium");
    let detail = card["detail"].as_str().unwrap();
    assert!(
        detail.contains("prefetch.observations.entry[2]"),
        "{detail}"
    );
    assert!(detail.contains("Observation could not be read"), "{detail}");
}

#[actix_web::test]
async fn bundle_entries_that_are_not_objects_are_reported_and_the_others_read() {
    let app = spawn_app().await;
    let mut request = fixture("prefetch-bundle-with-malformed-entry.fire");
    let entries = request["prefetch"]["observations"]["entry"]
        .as_array_mut()
        .unwrap();
    entries.insert(0, serde_json::json!(5));
    entries.insert(1, serde_json::json!(["an", "array"]));
    entries.insert(
        2,
        serde_json::json!({"resource": null, "fullUrl": "urn:uuid:x"}),
    );
    let response = app
        .post_hook(
            "cramp-numbness-patient-view",
            serde_json::to_vec(&request).unwrap(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let card = &cards(&body)[0];
    assert_eq!(rule_id(card), "diuretic-low-magnesium");
    let detail = card["detail"].as_str().unwrap();
    assert!(
        detail.contains(
            "prefetch.observations.entry[0]: the entry could not be read: it is a number"
        ),
        "{detail}"
    );
    assert!(
        detail.contains("entry[1]: the entry could not be read: it is an array"),
        "{detail}"
    );
    // The malformed Observation moved from entry[2] to entry[5]; it is still reported.
    assert!(
        detail.contains("prefetch.observations.entry[5]"),
        "{detail}"
    );
}

#[actix_web::test]
async fn an_operation_outcome_without_fhir_access_is_a_412() {
    let app = spawn_app().await;
    let (status, body) = app.post_fixture("prefetch-operation-outcome.missing").await;
    assert_eq!(status, 412);
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("conditions")
    );
}

#[actix_web::test]
async fn a_missing_key_without_fhir_access_is_a_412_naming_the_key() {
    let app = spawn_app().await;
    let (status, body) = app.post_fixture("prefetch-missing-key.missing").await;
    assert_eq!(status, 412);
    let diagnostics = body["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains("observations"), "{diagnostics}");
    assert!(diagnostics.contains("fhirServer"), "{diagnostics}");
}
