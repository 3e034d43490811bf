//! Each hook's happy path, and the shape of every card the service sends.

use serde_json::Value;

use crate::helpers::{cards, rule_id, spawn_app};

/// Checks a card against CDS Hooks 2.0 §4 and the catalog's card requirements.
pub fn assert_spec_shaped(card: &Value) {
    fn no_nulls(value: &Value, path: &str) {
        match value {
            Value::Null => panic!("null at {path}"),
            Value::Array(items) => {
                assert!(!items.is_empty(), "empty array at {path}");
                items
                    .iter()
                    .enumerate()
                    .for_each(|(i, v)| no_nulls(v, &format!("{path}[{i}]")));
            }
            Value::Object(map) => map
                .iter()
                .for_each(|(k, v)| no_nulls(v, &format!("{path}.{k}"))),
            _ => {}
        }
    }
    no_nulls(card, "card");
    assert!(uuid::Uuid::parse_str(card["uuid"].as_str().unwrap()).is_ok());
    let summary = card["summary"].as_str().unwrap();
    assert!(
        !summary.is_empty() && summary.chars().count() < 140,
        "{summary}"
    );
    let indicator = card["indicator"].as_str().unwrap();
    assert!(["info", "warning", "critical"].contains(&indicator));
    assert!(
        card["detail"]
            .as_str()
            .unwrap()
            .contains("**Why this card**")
    );
    assert!(!card["source"]["label"].as_str().unwrap().is_empty());
    assert!(
        card["source"]["topic"]["system"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    if let Some(suggestions) = card.get("suggestions") {
        let behavior = card["selectionBehavior"]
            .as_str()
            .expect("selectionBehavior with suggestions");
        assert!(["at-most-one", "any"].contains(&behavior));
        for suggestion in suggestions.as_array().unwrap() {
            assert!(uuid::Uuid::parse_str(suggestion["uuid"].as_str().unwrap()).is_ok());
            assert!(!suggestion["label"].as_str().unwrap().is_empty());
            for action in suggestion["actions"].as_array().unwrap() {
                assert!(!action["description"].as_str().unwrap().is_empty());
                match action["type"].as_str().unwrap() {
                    "create" | "update" => {
                        let bytes = serde_json::to_vec(&action["resource"]).unwrap();
                        cramp_fhir_parse::parse_resource(&bytes)
                            .expect("suggested resource is valid FHIR R4");
                        assert_eq!(action["resource"]["status"], "draft");
                        assert!(
                            action["resource"]["subject"]["reference"]
                                .as_str()
                                .unwrap()
                                .starts_with("Patient/")
                        );
                    }
                    "delete" => assert!(action["resourceId"].as_str().unwrap().contains('/')),
                    other => panic!("unknown action type {other}"),
                }
            }
        }
    } else {
        assert!(card.get("selectionBehavior").is_none());
    }
    if indicator != "info" {
        let reasons = card["overrideReasons"]
            .as_array()
            .expect("override reasons on warning and critical");
        assert!(
            reasons
                .iter()
                .all(|r| r["display"].as_str().is_some_and(|d| !d.is_empty()))
        );
    }
}

#[actix_web::test]
async fn patient_view_returns_a_warning_card_with_its_evidence() {
    let app = spawn_app().await;
    let (status, body) = app.post_fixture("diuretic-low-magnesium-mmol.fire").await;
    assert_eq!(status, 200);
    let cards = cards(&body);
    assert_eq!(cards.len(), 1);
    let card = &cards[0];
    assert_spec_shaped(card);
    assert_eq!(rule_id(card), "diuretic-low-magnesium");
    assert_eq!(card["indicator"], "warning");
    let detail = card["detail"].as_str().unwrap();
    assert!(detail.contains("**0.55 mmol/L**"), "{detail}");
    assert!(detail.contains("2026-10-02"));
    assert!(detail.contains("Observation/mg-low"));
    assert!(detail.contains("MedicationStatement/ms-furosemide"));
    assert!(
        detail.contains("\"furosemide\""),
        "says which name matched: {detail}"
    );
    let suggestion = &card["suggestions"][0];
    let resource = &suggestion["actions"][0]["resource"];
    assert_eq!(resource["resourceType"], "MedicationRequest");
    assert_eq!(resource["intent"], "proposal");
    assert_eq!(resource["subject"]["reference"], "Patient/pat-1");
    assert_eq!(
        resource["medicationCodeableConcept"]["coding"][0]["code"],
        "6582"
    );
    assert_eq!(
        resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"],
        480
    );
}

#[actix_web::test]
async fn order_select_from_the_sandbox_rx_view_is_evaluated_despite_its_r4_deviations() {
    let app = spawn_app().await;
    let (status, body) = app.post_fixture("sandbox-rx-view-order-select.fire").await;
    assert_eq!(status, 200);
    let card = &cards(&body)[0];
    assert_spec_shaped(card);
    assert_eq!(rule_id(card), "diuretic-low-magnesium");
    let detail = card["detail"].as_str().unwrap();
    assert!(detail.contains("Order being placed: Furosemide 40 MG Oral Tablet"));
    assert!(detail.contains("Furosemide 40 MG Oral Tablet (MedicationRequest/request-123"));
}

#[actix_web::test]
async fn order_sign_answers_with_a_cards_array_even_when_empty() {
    let app = spawn_app().await;
    let (status, body) = app.post_fixture("order-sign-diuretic.quiet").await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"cards": []}));
}

#[actix_web::test]
async fn a_critical_card_carries_override_reasons_and_its_own_summary() {
    let app = spawn_app().await;
    let (_, body) = app
        .post_fixture("diuretic-severe-low-magnesium.critical.fire")
        .await;
    let card = &cards(&body)[0];
    assert_spec_shaped(card);
    assert_eq!(card["indicator"], "critical");
    let summary = card["summary"].as_str().unwrap();
    assert!(summary.contains("1 mg/dL on 2026-10-30"), "{summary}");
    assert!(summary.contains("severe deficiency"), "{summary}");
    let detail = card["detail"].as_str().unwrap();
    assert!(
        detail.contains("**0.41 mmol/L** (reported as 1 mg/dL)"),
        "{detail}"
    );
}

#[actix_web::test]
async fn card_and_suggestion_uuids_are_new_on_every_call() {
    let app = spawn_app().await;
    let (_, first) = app.post_fixture("cirrhosis-cramps.fire").await;
    let (_, second) = app.post_fixture("cirrhosis-cramps.fire").await;
    assert_ne!(first["cards"][0]["uuid"], second["cards"][0]["uuid"]);
    assert_ne!(
        first["cards"][0]["suggestions"][0]["uuid"],
        second["cards"][0]["suggestions"][0]["uuid"]
    );
}
