//! Acknowledged data is stored: a `200` from the feedback endpoint means the row is
//! committed, whatever the disk, the database file or another process did before.
//! Faults are real: the database file made immutable (`chattr +i`, root only), the
//! files deleted under the running service, another connection holding the write lock.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    ServiceProcess, TestApp, cards, fixture_bytes, now, rule_id, spawn_app_at, temp_database_url,
};

const PATIENT_VIEW: &str = "cramp-numbness-patient-view";

async fn app_on(database_url: &str) -> TestApp {
    let url = database_url.to_owned();
    spawn_app_at(now(), move |s| {
        s.store.database_url = url;
        s.store.lookup_timeout_ms = 5_000;
    })
    .await
}

fn database_path(url: &str) -> String {
    url.trim_start_matches("sqlite://").to_owned()
}

async fn issued_card(app: &TestApp) -> Value {
    let response = app
        .post_hook(
            PATIENT_VIEW,
            fixture_bytes("diuretic-low-magnesium-mmol.fire"),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    cards(&body)
        .iter()
        .find(|c| rule_id(c) == "diuretic-low-magnesium")
        .expect("the rule fires")
        .clone()
}

/// An override that does not snooze (reason `other`), at a distinct timestamp.
fn override_of(card: &Value, minute: u32, code: &str) -> Value {
    json!({"feedback": [{"card": card["uuid"], "outcome": "overridden",
        "outcomeTimestamp": format!("2026-11-01T11:{:02}:00Z", minute % 60),
        "overrideReason": {"reason": {"system": "https://cramp-cds.org/fhir/CodeSystem/override-reason",
                                      "code": code}}}]})
}

async fn post_feedback(app: &TestApp, body: &Value) -> (u16, Value) {
    app.post_feedback(PATIENT_VIEW, body).await
}

async fn ready_status(app: &TestApp) -> (u16, Value) {
    app.get_json("/ready").await
}

/// Rows in a table, read by a connection of the test's own.
async fn count_rows(url: &str, table: &str) -> i64 {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let mut connection = sqlx::AnyConnection::connect(&format!("{url}?mode=ro"))
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&mut connection)
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

/// Sets or clears the immutable attribute; `false` when this machine cannot (not root).
fn set_immutable(paths: &[String], on: bool) -> bool {
    let flag = if on { "+i" } else { "-i" };
    paths.iter().all(|path| {
        !std::path::Path::new(path).exists()
            || Command::new("chattr")
                .args([flag, path])
                .status()
                .is_ok_and(|s| s.success())
    })
}

#[actix_web::test]
#[ignore = "needs root: chattr +i makes the database file immutable"]
async fn feedback_acknowledged_after_a_transient_write_fault_is_always_stored() {
    let url = temp_database_url();
    let app = app_on(&url).await;
    let card = issued_card(&app).await;
    let (status, _) = post_feedback(&app, &override_of(&card, 0, "other")).await;
    assert_eq!(status, 200);
    let file = database_path(&url);
    // Not the -shm file: SQLite maps it into memory, and a write fault there is a SIGBUS.
    let files = [file.clone(), format!("{file}-wal")];
    assert!(
        set_immutable(&files, true),
        "this test needs root: chattr +i {file} failed"
    );
    // During the fault, concurrent calls reach several pooled connections; none may say 200.
    let during: Vec<u16> = futures::future::join_all((1..=6).map(|minute| {
        let body = override_of(&card, minute, "other");
        let app = &app;
        async move { post_feedback(app, &body).await.0 }
    }))
    .await;
    let (ready_during, _) = ready_status(&app).await;
    assert!(set_immutable(&files, false));
    let stored_during = count_rows(&url, "feedback").await - 1;
    let acknowledged_during = during.iter().filter(|s| **s == 200).count() as i64;
    assert!(
        acknowledged_during <= stored_during,
        "{during:?}: {acknowledged_during} acknowledged, {stored_during} stored"
    );
    assert!(during.iter().all(|s| *s == 200 || *s == 503), "{during:?}");

    // Once the fault clears, every 200 is a committed row.
    let before = count_rows(&url, "feedback").await;
    let mut acknowledged = 0;
    for minute in 10..40 {
        let (status, body) = post_feedback(&app, &override_of(&card, minute, "other")).await;
        assert!(status == 200 || status == 503, "{status} {body}");
        if status == 200 {
            acknowledged += 1;
        }
    }
    let stored = count_rows(&url, "feedback").await - before;
    assert_eq!(
        stored, acknowledged,
        "every acknowledged feedback is stored"
    );
    assert!(
        acknowledged >= 25,
        "the store recovers: {acknowledged} of 30"
    );
    assert_eq!(
        ready_during, 503,
        "readiness reflects a store that cannot write"
    );
    assert_eq!(ready_status(&app).await.0, 200, "ready again");
}

#[actix_web::test]
async fn deleted_database_files_make_feedback_and_readiness_503_and_are_never_recreated() {
    let url = temp_database_url();
    let app = app_on(&url).await;
    let card = issued_card(&app).await;
    assert_eq!(
        post_feedback(&app, &override_of(&card, 0, "other")).await.0,
        200
    );
    let file = database_path(&url);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{file}{suffix}"));
    }
    let (status, body) = post_feedback(&app, &override_of(&card, 1, "other")).await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = ready_status(&app).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["database"].as_str().unwrap_or("").contains("removed"),
        "{body}"
    );
    // Hooks still answer, and nothing creates a new, empty database behind the operator's back.
    let response = app
        .post_hook(
            PATIENT_VIEW,
            fixture_bytes("diuretic-low-magnesium-mmol.fire"),
        )
        .await;
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !std::path::Path::new(&file).exists(),
        "no new database file"
    );
}

#[actix_web::test]
async fn a_new_database_is_not_created_when_the_configuration_forbids_it() {
    let url = temp_database_url();
    let mut settings = cramp_cds::config::Settings::default();
    settings.store.database_url = url.clone();
    settings.store.create_if_missing = false;
    let error = cramp_cds::store::Store::connect(&settings.store)
        .await
        .expect_err("refused");
    let message = error.to_string();
    assert!(message.contains("store.create_if_missing"), "{message}");
    assert!(!std::path::Path::new(&database_path(&url)).exists());
}

#[actix_web::test]
async fn an_override_sent_while_another_process_holds_the_write_lock_is_stored_or_refused() {
    use sqlx::Connection;
    let url = temp_database_url();
    let app = app_on(&url).await;
    // Another process takes the write lock before the card reaches the database.
    sqlx::any::install_default_drivers();
    let mut blocker = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let card = issued_card(&app).await;
    let feedback = override_of(&card, 5, "already-addressed");
    // The feedback arrives while the card's write waits for the lock, and the lock goes away
    // while both wait: the feedback must not be stored without the card it is about.
    let send = async {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        post_feedback(&app, &feedback).await
    };
    let release = async {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    };
    let ((status, body), ()) = futures::join!(send, release);
    drop(blocker);
    if status == 200 {
        assert_eq!(body["unknownCards"], json!([]), "{body}");
    } else {
        assert_eq!(status, 503, "{body}");
        // The EHR sends it again once the lock is gone: then it is stored.
        let (status, body) = post_feedback(&app, &feedback).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["unknownCards"], json!([]), "{body}");
    }
    assert_eq!(
        count_rows(&url, "overrides").await,
        1,
        "the snooze is stored"
    );
    let response = app
        .post_hook(
            PATIENT_VIEW,
            fixture_bytes("diuretic-low-magnesium-mmol.fire"),
        )
        .await;
    let body: Value = response.json().await.unwrap();
    assert!(
        cards(&body)
            .iter()
            .all(|c| rule_id(c) != "diuretic-low-magnesium"),
        "the rule is snoozed: {body}"
    );
}

#[actix_web::test]
async fn cards_answered_just_before_a_kill_9_still_take_feedback_and_snooze_their_rule() {
    let url = temp_database_url();
    let hook_path = format!("/cds-services/{PATIENT_VIEW}");
    let mut service = ServiceProcess::start_on(&url).await;
    let (status, body) = service
        .post(
            &hook_path,
            fixture_bytes("diuretic-low-magnesium-mmol.fire"),
        )
        .await;
    assert_eq!(status, 200);
    // SIGKILL at once: no drain, no flush.
    service.child.kill().unwrap();
    service.child.wait().unwrap();
    let card = cards(&body)
        .iter()
        .find(|c| rule_id(c) == "diuretic-low-magnesium")
        .expect("the rule fires")
        .clone();

    let service = ServiceProcess::start_on(&url).await;
    let (status, body) = service
        .post(
            &format!("{hook_path}/feedback"),
            serde_json::to_vec(&override_of(&card, 3, "already-addressed")).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["unknownCards"],
        json!([]),
        "the card was recorded: {body}"
    );
    let (_, body) = service
        .post(
            &hook_path,
            fixture_bytes("diuretic-low-magnesium-mmol.fire"),
        )
        .await;
    assert!(
        cards(&body)
            .iter()
            .all(|c| rule_id(c) != "diuretic-low-magnesium"),
        "the override snoozes the rule: {body}"
    );
}

#[actix_web::test]
async fn a_sqlite_url_without_a_path_or_in_memory_is_refused_by_name() {
    for url in [
        "sqlite://",
        "sqlite:",
        "sqlite://?mode=rwc",
        "sqlite::memory:",
    ] {
        let settings = cramp_cds::store::StoreSettings {
            database_url: url.to_owned(),
            ..Default::default()
        };
        let message = cramp_cds::store::Store::connect(&settings)
            .await
            .expect_err(url)
            .to_string();
        assert!(message.contains("store.database_url"), "{url}: {message}");
        assert!(
            message.contains("names no database file") || message.contains("in-memory"),
            "{url}: {message}"
        );
    }
}

#[actix_web::test]
async fn a_snooze_counts_from_receipt_not_from_the_clients_outcome_timestamp() {
    use cramp_cds::store::{ClientScope, FeedbackEntry, IssuedCard, Store, StoreSettings};
    let store = Store::connect(&StoreSettings {
        database_url: temp_database_url(),
        ..Default::default()
    })
    .await
    .unwrap();
    let client = ClientScope::of("https://ehr.example", None);
    let patient = store.patient_hash(&client, "patient-1");
    store
        .write_issued_cards(&[IssuedCard {
            card_uuid: "card-1".to_owned(),
            client_scope: client.clone(),
            service_id: PATIENT_VIEW.to_owned(),
            rule_id: "diuretic-low-magnesium".to_owned(),
            indicator: "warning".to_owned(),
            hook_instance: "hook-1".to_owned(),
            patient_hash: patient.clone(),
            issued_at: now(),
            knowledge_version: "test+000000000000".to_owned(),
            suggestion_uuids: vec![],
        }])
        .await
        .unwrap();
    let in_2100 = chrono::DateTime::parse_from_rfc3339("2100-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let entry = FeedbackEntry {
        card_uuid: "card-1".to_owned(),
        outcome: "overridden".to_owned(),
        outcome_timestamp: "2100-01-01T00:00:00Z".to_owned(),
        outcome_at: in_2100,
        service_id: PATIENT_VIEW.to_owned(),
        accepted_suggestions: vec![],
        reason_system: None,
        reason_code: Some("already-addressed".to_owned()),
        reason_display: None,
        user_comment: None,
    };
    store
        .write_feedback(&client, &[entry], now())
        .await
        .unwrap();
    let overrides = store
        .overrides_for_patient(&patient, now() - chrono::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides[0].at, now(), "counted from receipt");
}
