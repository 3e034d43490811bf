//! The house: what start-up checks in the settings before the service answers anyone, and
//! what it never prints.

use std::process::Command;

use cramp_cds::config::Settings;
use cramp_cds::server::{Application, Clock};

use crate::helpers::{FhirTestServer, TestApp, now, spawn_app_with, temp_database_url};
use crate::helpers::{app_allowed_to_call, request_without_prefetch, resources_of};

const BAD_BASE_URLS: [&str; 6] = [
    "cds.example",
    "ftp://cds.example",
    "https://cds.example/cds?tenant=a",
    "https://cds.example/cds#top",
    "http://",
    "https://:443/cds",
];

#[actix_web::test]
async fn the_service_refuses_to_start_with_a_public_base_url_that_is_no_base_url() {
    for value in BAD_BASE_URLS {
        let mut settings = Settings::default();
        settings.server.bind = "127.0.0.1:0".to_owned();
        settings.store.database_url = temp_database_url();
        settings.server.public_base_url = Some(value.to_owned());
        let refused = Application::build(&settings, true, Clock::Fixed(now())).await;
        let message = refused.err().expect(value).to_string();
        assert!(
            message.contains("server.public_base_url"),
            "{value}: {message}"
        );
        assert!(message.contains(value), "{value}: {message}");
    }
    let mut settings = Settings::default();
    settings.server.bind = "127.0.0.1:0".to_owned();
    settings.store.database_url = temp_database_url();
    settings.server.public_base_url = Some("https://cds.example/cds/".to_owned());
    assert!(
        Application::build(&settings, true, Clock::Fixed(now()))
            .await
            .is_ok(),
        "an https base URL with a path starts"
    );
}

#[test]
fn serve_exits_naming_server_public_base_url_when_it_has_a_query() {
    let output = Command::new(env!("CARGO_BIN_EXE_cramp-cds"))
        .args(["serve", "--allow-unauthenticated", "--bind", "127.0.0.1:0"])
        .env(
            "CRAMP_CDS_SERVER__PUBLIC_BASE_URL",
            "https://cds.example/?tenant=a",
        )
        .env("CRAMP_CDS_STORE__DATABASE_URL", temp_database_url())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("server.public_base_url 'https://cds.example/?tenant=a'"),
        "{stderr}"
    );
}

#[test]
fn the_admin_token_and_patient_key_never_appear_in_the_debug_of_the_settings() {
    let token = "house-test-admin-token-0123456789abcdef";
    let key = "house-test-patient-key-0123456789";
    let mut settings = Settings::default();
    settings.admin.token = Some(token.into());
    settings.store.patient_key = Some(key.into());
    let printed = format!("{settings:#?}");
    assert!(!printed.contains(token), "{printed}");
    assert!(!printed.contains(key), "{printed}");
}

/// The value of the Prometheus sample `name` (0 when the series does not exist yet).
async fn sample(app: &TestApp, name: &str) -> f64 {
    let text = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[actix_web::test]
async fn the_server_counts_the_fhir_fetches_and_cards_that_the_invocation_reports() {
    let fixture = "diuretic-low-magnesium-mmol.fire";
    let fhir = FhirTestServer::start(resources_of(fixture), 50).await;
    let app = app_allowed_to_call(&fhir.base_url).await;
    let fetched = "cramp_cds_fhir_fetches_total{outcome=\"ok\"}";
    let carded = "cramp_cds_cards_total{indicator=\"warning\",rule=\"diuretic-low-magnesium\"}";
    let (fetched_before, carded_before) = (sample(&app, fetched).await, sample(&app, carded).await);
    let body = request_without_prefetch(fixture, &fhir.base_url);
    let response = app
        .post_hook(
            "cramp-numbness-patient-view",
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let keys = fhir.received().len() as f64;
    assert!(keys >= 5.0, "{keys}");
    assert!(
        sample(&app, fetched).await - fetched_before >= keys,
        "one count per prefetch key fetched"
    );
    assert!(sample(&app, carded).await - carded_before >= 1.0);
}

/// Copies the directory `from` into `to`, recursively.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[actix_web::test]
async fn the_openapi_service_ids_are_those_of_the_loaded_knowledge() {
    let dir = tempfile::tempdir().unwrap();
    let knowledge = dir.path().join("cds-hooks");
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cds-hooks"),
        &knowledge,
    );
    let services = knowledge.join("services.json");
    let text = std::fs::read_to_string(&services).unwrap();
    assert!(text.contains("\"cramp-numbness-order-sign\""));
    std::fs::write(
        &services,
        text.replace("\"cramp-numbness-order-sign\"", "\"house-order-sign\""),
    )
    .unwrap();
    let app = spawn_app_with(|s| s.knowledge.dir = Some(knowledge.clone())).await;
    let get = |path: &str| app.http.get(format!("{}{path}", app.address)).send();
    let document: serde_json::Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    let discovery: serde_json::Value = get("/cds-services").await.unwrap().json().await.unwrap();
    let offered: Vec<&str> = discovery["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(offered.contains(&"house-order-sign"), "{offered:?}");
    let documented: Vec<&str> = document["components"]["schemas"]["ServiceId"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    assert_eq!(documented, offered);
}
