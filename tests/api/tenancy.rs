//! Client boundaries: cards, feedback and suppression belong to the client (JWT
//! issuer) and tenant they were issued to. One EHR's override never silences
//! another's cards for a patient with the same id, and one client cannot send
//! feedback about another's cards.

use serde_json::{Value, json};

use crate::helpers::tokens::{es384_token, key_file_client};
use crate::helpers::{
    TestApp, cards, fixture_bytes, rule_id, spawn_authenticated_app, temp_database_url,
};

const PATIENT_VIEW: &str = "cramp-numbness-patient-view";
const EHR_A: &str = "https://ehr-a.example";
const EHR_B: &str = "https://ehr-b.example";
const RULE: &str = "diuretic-low-magnesium";
const ADMIN_TOKEN: &str = "tenancy-test-admin-token-of-32-bytes-or-more";

async fn app() -> TestApp {
    let url = temp_database_url();
    spawn_authenticated_app(move |s| {
        s.store.database_url = url;
        s.store.lookup_timeout_ms = 5_000;
        s.server.public_base_url = Some("https://cds.example".to_owned());
        s.auth.clients = vec![key_file_client(EHR_A), key_file_client(EHR_B)];
        s.admin.token = Some(ADMIN_TOKEN.into());
    })
    .await
}

fn token(issuer: &str, tenant: Option<&str>, path: &str) -> String {
    es384_token(issuer, tenant, &format!("https://cds.example{path}"))
}

async fn hook(app: &TestApp, issuer: &str, tenant: Option<&str>) -> Value {
    let path = format!("/cds-services/{PATIENT_VIEW}");
    let response = app
        .post_with_token(
            &path,
            &token(issuer, tenant, &path),
            fixture_bytes("diuretic-low-magnesium-mmol.fire"),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn card_of(body: &Value) -> Option<Value> {
    cards(body).iter().find(|c| rule_id(c) == RULE).cloned()
}

async fn snooze(app: &TestApp, issuer: &str, tenant: Option<&str>, card: &Value) -> Value {
    let path = format!("/cds-services/{PATIENT_VIEW}/feedback");
    let feedback = json!({"feedback": [{"card": card["uuid"], "outcome": "overridden",
        "outcomeTimestamp": "2026-11-01T12:01:00Z",
        "overrideReason": {"reason": {"code": "already-addressed"}}}]});
    let response = app
        .post_with_token(
            &path,
            &token(issuer, tenant, &path),
            serde_json::to_vec(&feedback).unwrap(),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[actix_web::test]
async fn an_override_from_one_ehr_never_silences_another_ehrs_cards_for_the_same_patient_id() {
    let app = app().await;
    let card_a = card_of(&hook(&app, EHR_A, None).await).expect("fires for A");
    assert!(
        card_of(&hook(&app, EHR_B, None).await).is_some(),
        "fires for B"
    );
    let body = snooze(&app, EHR_A, None, &card_a).await;
    assert_eq!(body["unknownCards"], json!([]));
    assert!(
        card_of(&hook(&app, EHR_A, None).await).is_none(),
        "A snoozed it"
    );
    assert!(
        card_of(&hook(&app, EHR_B, None).await).is_some(),
        "B's patient with the same id is another patient"
    );
}

#[actix_web::test]
async fn a_client_cannot_send_feedback_about_another_clients_cards() {
    let app = app().await;
    let card_a = card_of(&hook(&app, EHR_A, None).await).expect("fires for A");
    let body = snooze(&app, EHR_B, None, &card_a).await;
    assert_eq!(body["unknownCards"], json!([card_a["uuid"]]), "{body}");
    assert!(
        card_of(&hook(&app, EHR_A, None).await).is_some(),
        "B's feedback did not snooze A's rule"
    );
    let (_, report) = app.admin_report(ADMIN_TOKEN).await;
    assert_eq!(report["feedback_for_unknown_cards"], 1, "{report}");
    let row = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule_id"] == RULE)
        .unwrap();
    assert_eq!(
        row["overridden"], 0,
        "B's feedback is not counted on A's card: {report}"
    );
}

#[actix_web::test]
async fn tenants_of_one_issuer_are_kept_apart() {
    let app = app().await;
    let card = card_of(&hook(&app, EHR_A, Some("hospital-1")).await).expect("fires");
    snooze(&app, EHR_A, Some("hospital-1"), &card).await;
    assert!(card_of(&hook(&app, EHR_A, Some("hospital-1")).await).is_none());
    assert!(card_of(&hook(&app, EHR_A, Some("hospital-2")).await).is_some());
    let body = snooze(&app, EHR_A, Some("hospital-2"), &card).await;
    assert_eq!(body["unknownCards"], json!([card["uuid"]]), "{body}");
}
