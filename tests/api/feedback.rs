//! Feedback, card history, override-based suppression and reports. What a store must
//! keep is tested on each store: `on_sqlite` always, `on_postgresql` (ignored, run with
//! `--include-ignored`) on the server CRAMP_CDS_TEST_POSTGRES_URL names.

use chrono::Duration;
use serde_json::{Value, json};

use crate::helpers::tokens::{ISSUER, es384_token, key_file_client};
use crate::helpers::{
    PUBLIC_BASE_URL, TestApp, cards, fixture_bytes, now, on_each_database, postgres_database_url,
    rule_id, spawn_app_at, spawn_authenticated_app, temp_database_url,
};

const ADMIN_TOKEN: &str = "test-admin-token-of-at-least-32-bytes";
use crate::helpers::PATIENT_VIEW;

async fn app_on(database_url: &str, days_later: i64) -> TestApp {
    let url = database_url.to_owned();
    spawn_app_at(now() + Duration::days(days_later), move |s| {
        s.store.database_url = url;
        s.admin.token = Some(ADMIN_TOKEN.into());
        // A loaded test machine must not turn a slow lookup into a missed suppression.
        s.store.lookup_timeout_ms = 5_000;
    })
    .await
}

async fn post_feedback(app: &TestApp, body: &Value) -> (u16, Value) {
    app.post_feedback(PATIENT_VIEW, body).await
}

async fn report(app: &TestApp) -> Value {
    let (status, report) = app.admin_report(ADMIN_TOKEN).await;
    assert_eq!(status, 200, "{report}");
    report
}

fn rule_row<'a>(report: &'a Value, rule: &str) -> &'a Value {
    report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule_id"] == rule)
        .unwrap_or_else(|| panic!("{rule} not in {report}"))
}

async fn card_for(app: &TestApp, fixture: &str, rule: &str) -> Option<Value> {
    let response = app.post_hook(PATIENT_VIEW, fixture_bytes(fixture)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    cards(&body).iter().find(|c| rule_id(c) == rule).cloned()
}

/// The low-magnesium card of the diuretic fixture, if the rule fires.
async fn magnesium_card(app: &TestApp) -> Option<Value> {
    card_for(
        app,
        "diuretic-low-magnesium-mmol.fire",
        "diuretic-low-magnesium",
    )
    .await
}

fn overridden(card: &Value, code: &str) -> Value {
    json!({"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-01T12:05:00Z",
        "overrideReason": {"reason": {"system": "https://cramp-cds.org/fhir/CodeSystem/override-reason",
                                      "code": code, "display": "Already addressed"},
                           "userComment": "Replacing already"}}]})
}

on_each_database!(accepted_feedback_is_stored_once_and_shows_in_the_report);
async fn accepted_feedback_is_stored_once_and_shows_in_the_report(url: &str) {
    let app = app_on(url, 0).await;
    let card = card_for(&app, "cirrhosis-cramps.fire", "cirrhosis-cramps")
        .await
        .unwrap();
    let feedback = json!({"feedback": [{"card": card["uuid"], "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}], "outcomeTimestamp": "2026-11-01T12:01:00Z"}]});
    let (status, body) = post_feedback(&app, &feedback).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["unknownCards"], json!([]));
    let (status, _) = post_feedback(&app, &feedback).await;
    assert_eq!(status, 200, "the same feedback again is fine");
    let report = report(&app).await;
    let row = rule_row(&report, "cirrhosis-cramps");
    assert_eq!(row["issued"], 1, "{url}");
    assert_eq!(row["accepted"], 1, "idempotent: {url}");
    assert_eq!(row["override_rate"], 0.0);
}

on_each_database!(the_sandbox_dismiss_and_unknown_cards_are_stored_and_reported);
async fn the_sandbox_dismiss_and_unknown_cards_are_stored_and_reported(url: &str) {
    let app = app_on(url, 0).await;
    let card = magnesium_card(&app).await.unwrap();
    let dismiss = json!({"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-01T12:02:00Z",
        "overrideReason": {"reason": {"code": "not-relevant", "system": "https://cramp-cds.org/fhir/CodeSystem/override-reason"}}}]});
    assert_eq!(post_feedback(&app, &dismiss).await.0, 200);
    let unknown = json!({"feedback": [{"card": "00000000-0000-0000-0000-000000000000", "outcome": "overridden",
        "outcomeTimestamp": "2026-11-01T12:03:00Z"}]});
    let (status, body) = post_feedback(&app, &unknown).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["unknownCards"],
        json!(["00000000-0000-0000-0000-000000000000"])
    );
    let report = report(&app).await;
    let row = rule_row(&report, "diuretic-low-magnesium");
    assert_eq!(row["overridden"], 1);
    assert_eq!(row["override_rate"], 1.0);
    assert_eq!(row["top_override_reasons"][0]["reason"], "not-relevant");
    assert_eq!(report["feedback_for_unknown_cards"], 1, "{url}");
}

#[actix_web::test]
async fn invalid_feedback_is_a_400_naming_the_field() {
    let app = app_on(&temp_database_url(), 0).await;
    let cases = [
        (json!({}), "feedback"),
        (json!({"feedback": []}), "feedback"),
        (
            json!({"feedback": [{"outcome": "accepted", "outcomeTimestamp": "2026-11-01T12:00:00Z"}]}),
            "feedback[0].card",
        ),
        (
            json!({"feedback": [{"card": "c", "outcome": "ignored", "outcomeTimestamp": "2026-11-01T12:00:00Z"}]}),
            "feedback[0].outcome",
        ),
        (
            json!({"feedback": [{"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-11-01T12:00:00Z"}]}),
            "feedback[0].acceptedSuggestions",
        ),
        (
            json!({"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"}]}),
            "feedback[0].outcomeTimestamp",
        ),
        (
            json!({"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-11-01T12:00:00Z",
            "overrideReason": {"reason": {"system": "x"}}}]}),
            "feedback[0].overrideReason.reason.code",
        ),
    ];
    for (body, field) in cases {
        let (status, outcome) = post_feedback(&app, &body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(outcome["issue"][0]["expression"][0], field, "{outcome}");
    }
}

on_each_database!(an_already_addressed_override_snoozes_the_rule_for_thirty_days_then_it_returns);
async fn an_already_addressed_override_snoozes_the_rule_for_thirty_days_then_it_returns(url: &str) {
    let app = app_on(url, 0).await;
    let card = magnesium_card(&app).await.unwrap();
    assert_eq!(
        post_feedback(&app, &overridden(&card, "already-addressed"))
            .await
            .0,
        200
    );
    assert!(
        magnesium_card(&app).await.is_none(),
        "suppressed right after the override: {url}"
    );
    let day_29 = app_on(url, 29).await;
    assert!(magnesium_card(&day_29).await.is_none());
    let day_31 = app_on(url, 31).await;
    assert!(
        magnesium_card(&day_31).await.is_some(),
        "the snooze expires: {url}"
    );
}

#[actix_web::test]
async fn other_reasons_do_not_snooze_and_critical_cards_are_never_suppressed() {
    let url = temp_database_url();
    let app = app_on(&url, 0).await;
    let card = magnesium_card(&app).await.unwrap();
    assert_eq!(
        post_feedback(&app, &overridden(&card, "patient-declined"))
            .await
            .0,
        200
    );
    assert!(magnesium_card(&app).await.is_some());

    let critical = card_for(
        &app,
        "diuretic-severe-low-magnesium.critical.fire",
        "diuretic-low-magnesium",
    )
    .await
    .unwrap();
    assert_eq!(critical["indicator"], "critical");
    assert_eq!(
        post_feedback(&app, &overridden(&critical, "already-addressed"))
            .await
            .0,
        200
    );
    let again = card_for(
        &app,
        "diuretic-severe-low-magnesium.critical.fire",
        "diuretic-low-magnesium",
    )
    .await;
    assert_eq!(
        again.expect("critical cards are never suppressed")["indicator"],
        "critical"
    );
}

#[actix_web::test]
async fn hooks_still_answer_with_cards_while_the_database_is_locked() {
    use sqlx::Connection;
    let url = temp_database_url();
    let app = {
        let url = url.clone();
        spawn_app_at(now(), move |s| {
            s.store.database_url = url;
            s.store.queue_capacity = 2;
            s.store.lookup_timeout_ms = 50;
        })
        .await
    };
    // Another process holds the write lock: every history write times out.
    sqlx::any::install_default_drivers();
    let mut blocker = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut blocker)
        .await
        .unwrap();
    for _ in 0..5 {
        let card = magnesium_card(&app).await;
        assert!(card.is_some(), "cards are still returned");
    }
    let metrics = app.metrics().await;
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cramp_cds_history_dropped_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped >= 1, "{metrics}");
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
}

#[actix_web::test]
async fn the_report_needs_the_admin_token_and_is_off_without_one() {
    let app = app_on(&temp_database_url(), 0).await;
    let response = app
        .http
        .get(format!("{}/admin/report", app.address))
        .header("Authorization", "Bearer wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let csv = app
        .http
        .get(format!(
            "{}/admin/report?format=csv&since=2026-10-01",
            app.address
        ))
        .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.starts_with("rule_id,issued,accepted,overridden,override_rate"),
        "{csv}"
    );
    let off = spawn_app_at(now(), |s| s.store.database_url = temp_database_url()).await;
    assert_eq!(off.get("/admin/report").await.status(), 404);
}

#[actix_web::test]
async fn the_report_command_and_evaluate_explain_read_the_same_database() {
    let url = temp_database_url();
    let app = app_on(&url, 0).await;
    let card = magnesium_card(&app).await.unwrap();
    assert_eq!(
        post_feedback(&app, &overridden(&card, "already-addressed"))
            .await
            .0,
        200
    );
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cramp-cds"))
            .args(args)
            .env("CRAMP_CDS_STORE__DATABASE_URL", &url)
            .output()
            .unwrap()
    };
    let output = cli(&["report", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&output.stdout);
    assert!(
        csv.contains("diuretic-low-magnesium,1,0,1,1.000,\"Already addressed (1)\""),
        "{csv}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let request = format!(
        "{}/fixtures/requests/diuretic-low-magnesium-mmol.fire.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let output = cli(&[
        "evaluate",
        "--request",
        &request,
        "--now",
        "2026-11-02T12:00:00Z",
        "--format",
        "text",
        "--explain",
    ]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("suppressed: diuretic-low-magnesium"),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("already-addressed"), "{text}");

    // simulate --suppression reads the same overrides (and writes nothing).
    let input = tempfile::tempdir().unwrap();
    std::fs::copy(&request, input.path().join("request.json")).unwrap();
    let simulate = |extra: &[&str]| {
        let mut args = vec!["simulate", input.path().to_str().unwrap()];
        args.extend_from_slice(&["--now", "2026-11-02T12:00:00Z", "--format", "json"]);
        args.extend_from_slice(extra);
        let output = cli(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let magnesium_patients = |report: &serde_json::Value| -> u64 {
        report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["ruleId"] == "diuretic-low-magnesium")
            .map(|r| r["patients"].as_u64().unwrap())
            .sum()
    };
    let plain = simulate(&[]);
    assert_eq!(magnesium_patients(&plain), 1, "{plain}");
    assert!(plain.get("suppressed").is_none());
    let suppressed = simulate(&["--suppression"]);
    assert_eq!(magnesium_patients(&suppressed), 0, "{suppressed}");
    assert_eq!(suppressed["run"]["suppression"], true);
    assert_eq!(
        suppressed["suppressed"],
        serde_json::json!([{"ruleId": "diuretic-low-magnesium", "patients": 1}])
    );
    // Another client's overrides do not count.
    let other = simulate(&["--suppression", "--issuer", "https://other.example"]);
    assert_eq!(magnesium_patients(&other), 1, "{other}");
    let output = cli(&["report", "--format", "csv"]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("diuretic-low-magnesium,1,0,1,"),
        "the simulations recorded no card"
    );
}

#[actix_web::test]
#[ignore = "needs PostgreSQL: set CRAMP_CDS_TEST_POSTGRES_URL"]
async fn two_instances_share_the_replay_cache_and_suppression_through_postgresql() {
    let url = postgres_database_url().await;
    let instance = |url: String| {
        spawn_authenticated_app(move |s| {
            s.store.database_url = url;
            s.store.lookup_timeout_ms = 5_000;
            // Behind one load balancer both instances answer at the same public URL.
            s.server.public_base_url = Some(PUBLIC_BASE_URL.to_owned());
            s.auth.clients = vec![key_file_client(ISSUER)];
        })
    };
    let first = instance(url.clone()).await;
    let second = instance(url.clone()).await;
    let hook_path = format!("/cds-services/{PATIENT_VIEW}");
    let token = |path: &str| es384_token(ISSUER, None, &format!("{PUBLIC_BASE_URL}{path}"));
    async fn hook(app: &TestApp, token: String) -> reqwest::Response {
        let path = format!("/cds-services/{PATIENT_VIEW}");
        let request = fixture_bytes("diuretic-low-magnesium-mmol.fire");
        app.post_with_token(&path, &token, request).await
    }
    // Replay: a token used on the first instance is refused by the second.
    let once = token(&hook_path);
    let response = hook(&first, once.clone()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(hook(&second, once).await.status(), 401);

    // Suppression: an override sent to the first instance silences the rule on the second.
    let card = cards(&body)
        .iter()
        .find(|c| rule_id(c) == "diuretic-low-magnesium")
        .unwrap()
        .clone();
    let feedback_path = format!("{hook_path}/feedback");
    let response = first
        .post_with_token(
            &feedback_path,
            &token(&feedback_path),
            serde_json::to_vec(&overridden(&card, "already-addressed")).unwrap(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = hook(&second, token(&hook_path)).await.json().await.unwrap();
    assert!(
        cards(&body)
            .iter()
            .all(|c| rule_id(c) != "diuretic-low-magnesium"),
        "{body}"
    );
}

on_each_database!(a_large_history_batch_is_written_in_multi_row_statements_without_duplicates);
async fn a_large_history_batch_is_written_in_multi_row_statements_without_duplicates(url: &str) {
    use cramp_cds::store::{IssuedCard, ROWS_PER_INSERT, Store, StoreSettings};
    let store = Store::connect(&StoreSettings {
        database_url: url.to_owned(),
        ..StoreSettings::default()
    })
    .await
    .unwrap();
    let card = |n: usize| IssuedCard {
        card_uuid: format!("card-{n}"),
        client_scope: cramp_cds::store::ClientScope::local(),
        service_id: PATIENT_VIEW.to_owned(),
        rule_id: if n.is_multiple_of(2) {
            "even-rule"
        } else {
            "odd-rule"
        }
        .to_owned(),
        indicator: "info".to_owned(),
        hook_instance: "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea".to_owned(),
        patient_hash: "hash".to_owned(),
        issued_at: now(),
        knowledge_version: "test+000000000000".to_owned(),
        suggestion_uuids: vec![format!("suggestion-{n}")],
    };
    // Two and a half statements' worth, with a card repeated inside the batch and
    // one already written before it.
    let total = ROWS_PER_INSERT * 2 + ROWS_PER_INSERT / 2;
    store.write_issued_cards(&[card(7)]).await.unwrap();
    let mut batch: Vec<IssuedCard> = (0..total).map(card).collect();
    batch.push(card(3));
    store.write_issued_cards(&batch).await.unwrap();
    let report = store.report(None).await.unwrap();
    let issued: i64 = report.rules.iter().map(|r| r.issued).sum();
    assert_eq!(issued, total as i64, "on {url}: {report:?}");
    let even = report
        .rules
        .iter()
        .find(|r| r.rule_id == "even-rule")
        .unwrap();
    assert_eq!(even.issued, total.div_ceil(2) as i64, "on {url}");
}
