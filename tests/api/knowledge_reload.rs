//! The knowledge version everywhere and reloading the knowledge without a restart: every
//! card names the knowledge that made it, the history and the report by version keep it,
//! and `POST /admin/knowledge/reload` (or SIGHUP to the real binary) swaps in a changed
//! knowledge directory, refuses a broken one (the old one keeps serving) and fails no call
//! made meanwhile.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::helpers::{
    PATIENT_VIEW, ServiceProcess, TestApp, cards, edit, fixture_bytes, knowledge_copy,
    on_each_database, rule_id, spawn_app_with, status_and_json, temp_database_url,
};

const ADMIN_TOKEN: &str = "test-admin-token-of-at-least-32-bytes";
const EXTENSION: &str = "org.cramp-cds.knowledge";
const FIXTURE: &str = "diuretic-low-magnesium-mmol.fire";
const RULE: &str = "diuretic-low-magnesium";
const RULE_FILE: &str = "rules/diuretic-low-magnesium.toml";
const SUMMARY: &str = "Low magnesium {lab:magnesium} on {medication}: correct the deficiency\"";
const EDITED_SUMMARY: &str =
    "Low magnesium {lab:magnesium} on {medication}: correct the deficiency (edited)\"";

/// The app serving the knowledge of `dir`, with the admin endpoints on, its history in
/// `database_url`.
async fn app_serving(dir: &Path, database_url: &str, workers: usize) -> TestApp {
    let (dir, url) = (dir.to_path_buf(), database_url.to_owned());
    spawn_app_with(move |s| {
        s.knowledge.dir = Some(dir);
        s.admin.token = Some(ADMIN_TOKEN.into());
        s.store.database_url = url;
        s.server.workers = Some(workers);
    })
    .await
}

async fn reload(app: &TestApp, token: Option<&str>) -> (u16, Value) {
    let mut request = app
        .http
        .post(format!("{}/admin/knowledge/reload", app.address));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    status_and_json(request.send().await.unwrap()).await
}

/// Reloads with the admin token, expecting a 200.
async fn reload_ok(app: &TestApp) -> Value {
    let (status, body) = reload(app, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The knowledge hash every card of a response names (they must all name the same one).
fn hash_of_response(body: &Value) -> String {
    let hashes: BTreeSet<String> = cards(body)
        .iter()
        .map(|card| {
            card["extension"][EXTENSION]["hash"]
                .as_str()
                .unwrap_or_else(|| panic!("a card without the knowledge version: {card}"))
                .to_owned()
        })
        .collect();
    assert_eq!(hashes.len(), 1, "one knowledge per response: {body}");
    hashes.into_iter().next().unwrap()
}

fn magnesium_card(body: &Value) -> &Value {
    cards(body)
        .iter()
        .find(|c| rule_id(c) == RULE)
        .unwrap_or_else(|| panic!("no {RULE} card in {body}"))
}

async fn post_fixture(app: &TestApp) -> Value {
    let response = app.post_hook(PATIENT_VIEW, fixture_bytes(FIXTURE)).await;
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Writes `text` to `knowledge/RULE_FILE` at once (written beside the knowledge directory,
/// then renamed), so a reload never reads half a file.
fn replace_rule_file(knowledge: &Path, text: &str) {
    let target = knowledge.join(RULE_FILE);
    let staging: PathBuf = knowledge.with_extension("staging.toml");
    std::fs::write(&staging, text).unwrap();
    std::fs::rename(&staging, target).unwrap();
}

#[actix_web::test]
async fn every_card_names_the_knowledge_version_and_a_reload_after_an_edit_changes_it() {
    let dir = knowledge_copy();
    let app = app_serving(dir.path(), &temp_database_url(), 1).await;
    let before = post_fixture(&app).await;
    let first = hash_of_response(&before);
    assert_eq!(first.len(), 12, "the short hash: {first}");
    let extension = &magnesium_card(&before)["extension"][EXTENSION];
    assert_eq!(
        extension["version"], "2026.12.1",
        "knowledge.toml's version"
    );
    // Discovery and readiness name the same version.
    let (_, discovery) = app.get_json("/cds-services").await;
    for service in discovery["services"].as_array().unwrap() {
        assert_eq!(service["extension"][EXTENSION]["hash"], first.as_str());
    }
    let (_, ready) = app.get_json("/ready").await;
    assert_eq!(ready["knowledge"]["version"]["hash"], first.as_str());

    edit(dir.path().join(RULE_FILE), SUMMARY, EDITED_SUMMARY);
    let answer = reload_ok(&app).await;
    assert_eq!(answer["outcome"], "reloaded", "{answer}");
    assert_eq!(answer["previous"]["hash"], first.as_str());
    let second = answer["current"]["hash"].as_str().unwrap().to_owned();
    assert_ne!(second, first, "an edited card text is another knowledge");

    let after = post_fixture(&app).await;
    assert_eq!(hash_of_response(&after), second);
    let summary = magnesium_card(&after)["summary"].as_str().unwrap();
    assert!(summary.ends_with("(edited)"), "{summary}");
    let (_, ready) = app.get_json("/ready").await;
    assert_eq!(ready["knowledge"]["version"]["hash"], second.as_str());

    let again = reload_ok(&app).await;
    assert_eq!(again["outcome"], "unchanged", "{again}");
    assert_eq!(again["current"]["hash"], second.as_str());
}

on_each_database!(the_history_keeps_each_cards_version_and_the_report_by_version_shows_both);
async fn the_history_keeps_each_cards_version_and_the_report_by_version_shows_both(url: &str) {
    let dir = knowledge_copy();
    let app = app_serving(dir.path(), url, 1).await;
    let old_card = magnesium_card(&post_fixture(&app).await).clone();
    edit(dir.path().join(RULE_FILE), SUMMARY, EDITED_SUMMARY);
    let answer = reload_ok(&app).await;
    let new_card = magnesium_card(&post_fixture(&app).await).clone();
    let id = |v: &Value| {
        format!(
            "{}+{}",
            v["version"].as_str().unwrap(),
            v["hash"].as_str().unwrap()
        )
    };
    let (old_version, new_version) = (id(&answer["previous"]), id(&answer["current"]));
    // The old card overridden (without snoozing), the new one accepted.
    let feedback = json!({"feedback": [
        {"card": old_card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-01T12:01:00Z",
         "overrideReason": {"reason": {"system": "https://cramp-cds.org/fhir/CodeSystem/override-reason",
                                       "code": "not-relevant", "display": "Not relevant"}}},
        {"card": new_card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-01T12:02:00Z",
         "acceptedSuggestions": [{"id": new_card["suggestions"][0]["uuid"]}]}]});
    let (status, body) = app.post_feedback(PATIENT_VIEW, &feedback).await;
    assert_eq!(status, 200, "{body}");

    let response = app
        .http
        .get(format!("{}/admin/report?by=knowledge-version", app.address))
        .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    let (status, report) = status_and_json(response).await;
    assert_eq!(status, 200, "{report}");
    let row = |version: &str| {
        report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule_id"] == RULE && r["knowledge_version"] == version)
            .unwrap_or_else(|| panic!("no {RULE} row for {version} in {report}"))
            .clone()
    };
    let (old_row, new_row) = (row(&old_version), row(&new_version));
    assert_eq!(
        (old_row["issued"].clone(), old_row["override_rate"].clone()),
        (json!(1), json!(1.0))
    );
    assert_eq!(
        (new_row["issued"].clone(), new_row["override_rate"].clone()),
        (json!(1), json!(0.0))
    );
    // By rule (the default) the two versions are one row.
    let (_, by_rule) = app.admin_report(ADMIN_TOKEN).await;
    let rows: Vec<&Value> = by_rule["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["rule_id"] == RULE)
        .collect();
    assert_eq!(rows.len(), 1, "{by_rule}");
    assert_eq!(rows[0]["issued"], 2);
    assert!(rows[0].get("knowledge_version").is_none(), "{by_rule}");

    // The history rows themselves.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT card_uuid, knowledge_version FROM issued_cards WHERE rule_id = $1")
            .bind(RULE)
            .fetch_all(&pool)
            .await
            .unwrap();
    let version_of = |card: &Value| {
        stored
            .iter()
            .find(|(uuid, _)| uuid == card["uuid"].as_str().unwrap())
            .map(|(_, version)| version.clone())
    };
    assert_eq!(version_of(&old_card), Some(old_version.clone()));
    assert_eq!(version_of(&new_card), Some(new_version.clone()));

    // The command line groups the same way.
    let output = crate::helpers::cramp_cds()
        .args(["report", "--by", "knowledge-version", "--format", "csv"])
        .env("CRAMP_CDS_STORE__DATABASE_URL", url)
        .output()
        .unwrap();
    let csv = String::from_utf8_lossy(&output.stdout);
    assert!(csv.starts_with("knowledge_version,rule_id,"), "{csv}");
    assert!(
        csv.contains(&format!("{old_version},{RULE},1,0,1,1.000,"))
            && csv.contains(&format!("{new_version},{RULE},1,1,0,0.000,")),
        "{csv}{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let (status, body) = {
        let response = app
            .http
            .get(format!("{}/admin/report?by=week", app.address))
            .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
            .send()
            .await
            .unwrap();
        status_and_json(response).await
    };
    assert_eq!(status, 400, "{body}");
}

#[actix_web::test]
async fn a_broken_knowledge_is_refused_naming_the_file_and_the_old_one_keeps_answering() {
    let dir = knowledge_copy();
    let app = app_serving(dir.path(), &temp_database_url(), 1).await;
    let serving = hash_of_response(&post_fixture(&app).await);
    edit(
        dir.path().join(RULE_FILE),
        "id = \"diuretic-low-magnesium\"",
        "id = \"diuretic-low-magnesium\"\nindicatr = \"info\"",
    );
    let (status, body) = reload(&app, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["file"], RULE_FILE, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(RULE_FILE) && error.contains("indicatr"),
        "names the file and the problem: {error}"
    );
    assert_eq!(body["current"]["hash"], serving.as_str());

    let after = post_fixture(&app).await;
    assert_eq!(
        hash_of_response(&after),
        serving,
        "the old knowledge answers"
    );
    assert!(
        app.metrics()
            .await
            .contains("cramp_cds_knowledge_reloads_total{outcome=\"refused\"}")
    );
}

#[actix_web::test]
async fn the_reload_endpoint_needs_the_admin_token_and_is_409_on_the_built_in_knowledge() {
    let dir = knowledge_copy();
    let app = app_serving(dir.path(), &temp_database_url(), 1).await;
    assert_eq!(reload(&app, None).await.0, 401);
    assert_eq!(reload(&app, Some("wrong-token")).await.0, 401);
    assert_eq!(reload(&app, Some(&format!("{ADMIN_TOKEN}x"))).await.0, 401);
    assert_eq!(
        app.get("/admin/knowledge/reload").await.status(),
        405,
        "POST only"
    );

    let built_in = spawn_app_with(|s| {
        s.admin.token = Some(ADMIN_TOKEN.into());
        s.store.database_url = temp_database_url();
    })
    .await;
    let (status, body) = reload(&built_in, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("knowledge.dir"),
        "{body}"
    );
    assert_eq!(body["current"]["version"], "2026.12.1");

    let off = spawn_app_with(|s| s.store.database_url = temp_database_url()).await;
    assert_eq!(reload(&off, Some(ADMIN_TOKEN)).await.0, 404, "admin off");
}

/// Sends hook calls from `streams` concurrent loops until `stop` is set (and at least
/// `at_least` in all), returning each response's status, knowledge hash and magnesium
/// summary.
async fn send_continuously(
    app: Arc<TestApp>,
    streams: usize,
    at_least: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> Vec<(u16, Option<(String, String)>)> {
    let loops = (0..streams).map(|_| {
        let (app, stop, sent) = (app.clone(), stop.clone(), sent.clone());
        async move {
            let mut results = Vec::new();
            while !stop.load(Ordering::SeqCst) || sent.load(Ordering::SeqCst) < at_least {
                let response = app.post_hook(PATIENT_VIEW, fixture_bytes(FIXTURE)).await;
                let (status, body) = status_and_json(response).await;
                let seen = (status == 200).then(|| {
                    let summary = magnesium_card(&body)["summary"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    (hash_of_response(&body), summary)
                });
                results.push((status, seen));
                sent.fetch_add(1, Ordering::SeqCst);
            }
            results
        }
    });
    futures::future::join_all(loops)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[actix_web::test]
async fn reloading_under_load_fails_no_call_and_the_cards_after_carry_the_new_version() {
    const RELOADS: usize = 6;
    const CALLS_BETWEEN_RELOADS: usize = 25;
    let dir = knowledge_copy();
    let original = std::fs::read_to_string(dir.path().join(RULE_FILE)).unwrap();
    assert!(original.contains(SUMMARY));
    let edited = original.replacen(SUMMARY, EDITED_SUMMARY, 1);
    let app = Arc::new(app_serving(dir.path(), &temp_database_url(), 2).await);
    let original_hash = hash_of_response(&post_fixture(&app).await);

    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let load = actix_web::rt::spawn(send_continuously(
        app.clone(),
        4,
        200,
        stop.clone(),
        sent.clone(),
    ));
    let mut edited_hash = None;
    let mut last = original_hash.clone();
    for reload_number in 1..=RELOADS {
        // Let calls run between reloads (no time is asserted: this only waits for them).
        let wanted = reload_number * CALLS_BETWEEN_RELOADS;
        while sent.load(Ordering::SeqCst) < wanted {
            actix_web::rt::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let to_edited = reload_number % 2 == 1;
        replace_rule_file(dir.path(), if to_edited { &edited } else { &original });
        let answer = reload_ok(&app).await;
        assert_eq!(answer["outcome"], "reloaded", "{answer}");
        assert_eq!(answer["previous"]["hash"], last.as_str(), "{answer}");
        last = answer["current"]["hash"].as_str().unwrap().to_owned();
        if to_edited {
            assert_eq!(*edited_hash.get_or_insert(last.clone()), last);
        } else {
            assert_eq!(last, original_hash, "the same files, the same hash");
        }
    }
    stop.store(true, Ordering::SeqCst);
    let results = load.await.unwrap();
    let edited_hash = edited_hash.unwrap();

    let failed: Vec<u16> = results
        .iter()
        .map(|(status, _)| *status)
        .filter(|s| *s != 200)
        .collect();
    assert!(results.len() >= 200, "{} calls", results.len());
    assert!(failed.is_empty(), "failed calls: {failed:?}");
    let mut seen = BTreeSet::new();
    for (_, answer) in &results {
        let (hash, summary) = answer.as_ref().unwrap();
        // Each call used one knowledge from start to end: its card text is that version's.
        let edited_text = summary.ends_with("(edited)");
        assert_eq!(
            hash == &edited_hash,
            edited_text,
            "hash {hash} with summary {summary}"
        );
        assert!(hash == &edited_hash || hash == &original_hash, "{hash}");
        seen.insert(hash.clone());
    }
    assert_eq!(seen.len(), 2, "the calls spanned the reloads: {seen:?}");
    let after = post_fixture(&app).await;
    assert_eq!(
        hash_of_response(&after),
        last,
        "the new version after the reload"
    );
}

#[actix_web::test]
async fn sighup_reloads_the_knowledge_of_the_running_binary() {
    let dir = knowledge_copy();
    let knowledge = dir.path().to_str().unwrap().to_owned();
    let service = ServiceProcess::start_with(
        &temp_database_url(),
        &[("CRAMP_CDS_KNOWLEDGE__DIR", knowledge.as_str())],
    )
    .await;
    let hook = format!("/cds-services/{PATIENT_VIEW}");
    let (status, body) = service.post(&hook, fixture_bytes(FIXTURE)).await;
    assert_eq!(status, 200, "{body}");
    let before = hash_of_response(&body);

    edit(dir.path().join(RULE_FILE), SUMMARY, EDITED_SUMMARY);
    let pid = service.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    // The reload runs in the background: ask until a card carries another version (or the
    // service stops answering, which fails the test).
    let mut after = before.clone();
    for _ in 0..600 {
        let (status, body) = service.post(&hook, fixture_bytes(FIXTURE)).await;
        assert_eq!(
            status, 200,
            "the service keeps answering across SIGHUP: {body}"
        );
        after = hash_of_response(&body);
        if after != before {
            let summary = magnesium_card(&body)["summary"].as_str().unwrap();
            assert!(summary.ends_with("(edited)"), "{summary}");
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_ne!(after, before, "no card carried the reloaded knowledge");
}
