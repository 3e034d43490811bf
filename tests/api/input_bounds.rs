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

use crate::helpers::{
    FHIR_TOKEN as TOKEN, app_allowed_to_call, request_without_prefetch, resources_of,
};

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

// 7 and 11: feedback and hook requests are bounded when parsed.

use crate::helpers::{TestApp, spawn_app_with};

async fn post_feedback(app: &TestApp, body: &Value) -> (u16, Value) {
    app.post_feedback(PATIENT_VIEW, body).await
}

fn an_override() -> Value {
    json!({"card": "4e0a3a1e-3283-4575-ab82-028d55fe2719", "outcome": "overridden",
        "outcomeTimestamp": "2026-11-01T12:00:00Z",
        "overrideReason": {"reason": {"system": "https://cramp-cds.org/fhir/CodeSystem/override-reason",
                                      "code": "patient-declined", "display": "Patient declined"},
                           "userComment": "Discussed with the patient"}})
}

fn an_acceptance(suggestions: usize, id_length: usize) -> Value {
    let ids: Vec<Value> = (0..suggestions)
        .map(|_| json!({"id": "s".repeat(id_length)}))
        .collect();
    json!({"card": "4e0a3a1e-3283-4575-ab82-028d55fe2719", "outcome": "accepted",
        "outcomeTimestamp": "2026-11-01T12:00:00Z", "acceptedSuggestions": ids})
}

#[actix_web::test]
async fn feedback_with_more_than_a_hundred_entries_is_a_400_naming_feedback_and_the_limit() {
    let app = spawn_app_with(|_| {}).await;
    let at_the_limit: Vec<Value> = (0..100).map(|_| an_override()).collect();
    let (status, body) = post_feedback(&app, &json!({ "feedback": at_the_limit })).await;
    assert_eq!(status, 200, "{body}");
    let over: Vec<Value> = (0..101).map(|_| an_override()).collect();
    let (status, outcome) = post_feedback(&app, &json!({ "feedback": over })).await;
    assert_eq!(status, 400, "{outcome}");
    assert_eq!(expression(&outcome), "feedback");
    assert!(diagnostics(&outcome).contains("100"), "{outcome}");
}

#[actix_web::test]
async fn oversized_feedback_fields_are_a_400_naming_the_field_and_the_limit() {
    let app = spawn_app_with(|_| {}).await;
    let with = |path: &[&str], value: Value| {
        let mut entry = an_override();
        let mut at = &mut entry;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = value;
        entry
    };
    let cases = [
        (
            with(&["card"], json!("c".repeat(129))),
            "feedback[0].card",
            "128",
        ),
        (
            with(&["overrideReason", "userComment"], json!("x".repeat(4001))),
            "feedback[0].overrideReason.userComment",
            "4000",
        ),
        (
            with(
                &["overrideReason", "reason", "code"],
                json!("c".repeat(257)),
            ),
            "feedback[0].overrideReason.reason.code",
            "256",
        ),
        (
            with(
                &["overrideReason", "reason", "system"],
                json!("s".repeat(513)),
            ),
            "feedback[0].overrideReason.reason.system",
            "512",
        ),
        (
            with(
                &["overrideReason", "reason", "display"],
                json!("d".repeat(513)),
            ),
            "feedback[0].overrideReason.reason.display",
            "512",
        ),
        (
            an_acceptance(51, 36),
            "feedback[0].acceptedSuggestions",
            "50",
        ),
        (
            an_acceptance(1, 129),
            "feedback[0].acceptedSuggestions[0].id",
            "128",
        ),
    ];
    for (entry, field, limit) in cases {
        let (status, outcome) = post_feedback(&app, &json!({ "feedback": [entry] })).await;
        assert_eq!(status, 400, "{field}: {outcome}");
        assert_eq!(expression(&outcome), field, "{outcome}");
        assert!(diagnostics(&outcome).contains(limit), "{outcome}");
    }
    let (status, body) = post_feedback(&app, &json!({"feedback": [an_acceptance(50, 128)]})).await;
    assert_eq!(status, 200, "entries at the limits are stored: {body}");
}

#[actix_web::test]
async fn feedback_timestamped_more_than_five_minutes_ahead_is_a_400_naming_the_field() {
    // The app's clock is fixed at 2026-11-01T12:00:00Z.
    let app = spawn_app_with(|_| {}).await;
    let mut entry = an_override();
    entry["outcomeTimestamp"] = json!("2026-11-01T12:05:00Z");
    let (status, body) = post_feedback(&app, &json!({ "feedback": [entry.clone()] })).await;
    assert_eq!(status, 200, "five minutes of clock skew is fine: {body}");
    entry["outcomeTimestamp"] = json!("2036-11-01T12:00:00Z");
    let (status, outcome) = post_feedback(&app, &json!({ "feedback": [entry] })).await;
    assert_eq!(status, 400, "{outcome}");
    assert_eq!(expression(&outcome), "feedback[0].outcomeTimestamp");
    assert!(diagnostics(&outcome).contains("5 minutes"), "{outcome}");
}

#[actix_web::test]
async fn oversized_hook_request_fields_are_a_400_naming_the_field() {
    let app = spawn_app_with(|_| {}).await;
    let cases = [
        ("hookInstance", None, json!("h".repeat(129)), "128"),
        (
            "context.userId",
            Some("userId"),
            json!(format!("Practitioner/{}", "1".repeat(65))),
            "64",
        ),
        (
            "context.patientId",
            Some("patientId"),
            json!("p".repeat(65)),
            "64",
        ),
        (
            "context.encounterId",
            Some("encounterId"),
            json!("e".repeat(65)),
            "64",
        ),
    ];
    for (field, context_key, value, limit) in cases {
        let mut request = fixture(FIXTURE);
        match context_key {
            Some(key) => request["context"][key] = value,
            None => request["hookInstance"] = value,
        }
        let response = app
            .post_hook(PATIENT_VIEW, serde_json::to_vec(&request).unwrap())
            .await;
        let status = response.status().as_u16();
        let outcome: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{field}: {outcome}");
        assert_eq!(expression(&outcome), field, "{outcome}");
        assert!(diagnostics(&outcome).contains(limit), "{outcome}");
    }
}

// 5: FHIR responses are read within bounds.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use cramp_cds::config::Settings;

/// The app, allowed (in trial mode) to call `fhir_base`, with settings changed by `configure`.
async fn app_calling(fhir_base: &str, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let base = fhir_base.to_owned();
    spawn_app_with(move |s| {
        s.auth.trial_fhir_servers = vec![base];
        configure(s);
    })
    .await
}

/// Posts the fixture without its prefetch, so every key is fetched from `fhir_base`; returns
/// the status, the body and how long the answer took.
async fn hook_fetching_from(app: &TestApp, fhir_base: &str) -> (u16, Value, Duration) {
    let body = request_without_prefetch(FIXTURE, fhir_base);
    let started = Instant::now();
    let response = app
        .post_hook(PATIENT_VIEW, serde_json::to_vec(&body).unwrap())
        .await;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, started.elapsed())
}

/// A searchset Bundle of about `size` bytes (its padding is in `id`).
fn bundle_of_size(size: usize) -> String {
    let head = r#"{"resourceType":"Bundle","type":"searchset","entry":[],"id":""#;
    let tail = r#""}"#;
    format!(
        "{head}{}{tail}",
        "a".repeat(size.saturating_sub(head.len() + tail.len()))
    )
}

/// A FHIR server on a raw socket that answers every request with headers declaring
/// `declared` body bytes, then sends none of them.
fn fhir_server_declaring_a_body_it_never_sends(declared: u64) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut socket in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buffer = [0u8; 8192];
                let _ = socket.read(&mut buffer);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: {declared}\r\n\r\n"
                );
                let _ = socket.write_all(head.as_bytes());
                std::thread::sleep(Duration::from_secs(30));
            });
        }
    });
    base
}

#[actix_web::test]
async fn a_fhir_response_streamed_past_max_response_bytes_is_a_412_naming_the_key_and_the_limit() {
    // 1 MiB in 16 KiB chunks, with no Content-Length: only counting while reading can stop it.
    let fhir = FhirTestServer::scripted(|_: HttpRequest, _: String| async move {
        let body = bundle_of_size(1024 * 1024).into_bytes();
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(16 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        HttpResponse::Ok()
            .content_type("application/fhir+json")
            .streaming(futures::stream::iter(chunks))
    })
    .await;
    let app = app_calling(&fhir.base_url, |s| s.fhir.max_response_bytes = 64 * 1024).await;
    let (status, outcome, _) = hook_fetching_from(&app, &fhir.base_url).await;
    assert_eq!(status, 412, "{outcome}");
    let diagnostics = diagnostics(&outcome);
    assert!(diagnostics.contains("observations"), "{diagnostics}");
    assert!(
        diagnostics.contains("fhir.max_response_bytes") && diagnostics.contains("65536 bytes"),
        "{diagnostics}"
    );
}

#[actix_web::test]
async fn a_declared_content_length_over_the_cap_is_refused_without_waiting_for_the_body() {
    let base = fhir_server_declaring_a_body_it_never_sends(200 * 1024 * 1024);
    let app = app_calling(&base, |s| s.fhir.timeout_ms = 8_000).await;
    let (status, outcome, took) = hook_fetching_from(&app, &base).await;
    assert_eq!(status, 412, "{outcome}");
    let diagnostics = diagnostics(&outcome);
    assert!(
        diagnostics.contains("fhir.max_response_bytes") && diagnostics.contains("4194304 bytes"),
        "{diagnostics}"
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[actix_web::test]
async fn fhir_responses_over_max_total_bytes_together_are_a_412_naming_the_limit() {
    let fhir = FhirTestServer::scripted(|_: HttpRequest, _: String| async move {
        HttpResponse::Ok()
            .content_type("application/fhir+json")
            .body(bundle_of_size(40 * 1024))
    })
    .await;
    // Five keys of 40 KiB each: every response is under its cap, all of them are not.
    let app = app_calling(&fhir.base_url, |s| {
        s.fhir.max_response_bytes = 64 * 1024;
        s.fhir.max_total_bytes = 100 * 1024;
    })
    .await;
    let (status, outcome, _) = hook_fetching_from(&app, &fhir.base_url).await;
    assert_eq!(status, 412, "{outcome}");
    let diagnostics = diagnostics(&outcome);
    assert!(
        diagnostics.contains("fhir.max_total_bytes") && diagnostics.contains("102400 bytes"),
        "{diagnostics}"
    );
}

// 6: nothing is held open without bound.

use std::net::TcpStream;

/// Sends `bytes` to the app on a raw connection and keeps it open, waiting up to `wait` for
/// the server to answer or close. Returns what came back and when the first of it (or the
/// close) arrived; `None` when nothing happened within `wait`.
async fn send_and_wait(
    app: &TestApp,
    bytes: Vec<u8>,
    wait: Duration,
) -> Option<(String, Duration)> {
    let address = app.address.trim_start_matches("http://").to_owned();
    actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.write_all(&bytes).unwrap();
        let started = Instant::now();
        stream.set_read_timeout(Some(wait)).unwrap();
        let mut buffer = [0u8; 4096];
        let first = match stream.read(&mut buffer) {
            Ok(n) => n,
            Err(_) => return None,
        };
        let answered_after = started.elapsed();
        let mut answer = buffer[..first].to_vec();
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
        }
        Some((
            String::from_utf8_lossy(&answer).into_owned(),
            answered_after,
        ))
    })
    .await
    .unwrap()
}

/// A FHIR server whose every page takes `delay` and always links to one more.
async fn fhir_server_with_endless_slow_pages(delay: Duration) -> FhirTestServer {
    FhirTestServer::scripted(move |request: HttpRequest, base: String| async move {
        actix_web::rt::time::sleep(delay).await;
        let path = request.path().trim_start_matches("/fhir/").to_owned();
        let page: usize = request
            .query_string()
            .split('&')
            .find_map(|p| p.strip_prefix("_page="))
            .and_then(|p| p.parse().ok())
            .unwrap_or(1);
        HttpResponse::Ok()
            .content_type("application/fhir+json")
            .json(json!({"resourceType": "Bundle", "type": "searchset", "entry": [],
                "link": [{"relation": "next", "url": format!("{base}/{path}?patient=pat-1&_page={}", page + 1)}]}))
    })
    .await
}

#[actix_web::test]
async fn a_body_that_stalls_after_its_headers_is_answered_408_within_the_body_timeout() {
    let app = spawn_app_with(|s| s.server.body_timeout_ms = 1_000).await;
    let request = format!(
        "POST /cds-services/{PATIENT_VIEW} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"hook\":\"p"
    );
    let answer = send_and_wait(&app, request.into_bytes(), Duration::from_secs(8)).await;
    let (answer, after) = answer.expect("the server answers or closes within 8 s");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("OperationOutcome"), "{answer}");
    assert!(answer.contains("server.body_timeout_ms"), "{answer}");
    assert!(after < Duration::from_secs(5), "answered after {after:?}");
}

#[actix_web::test]
async fn headers_that_stall_are_cut_off_within_the_configured_header_timeout() {
    let app = spawn_app_with(|s| s.server.header_timeout_ms = 500).await;
    let request = format!("POST /cds-services/{PATIENT_VIEW} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    let answer = send_and_wait(&app, request.into_bytes(), Duration::from_secs(8)).await;
    let (answer, after) = answer.expect("the server answers or closes within 8 s");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // actix-web's own default is 5 s; the configured 0.5 s must be what applies.
    assert!(after < Duration::from_secs(3), "answered after {after:?}");
}

#[actix_web::test]
async fn a_fhir_fallback_with_slow_pages_is_a_412_once_the_fetch_deadline_passes() {
    let fhir = fhir_server_with_endless_slow_pages(Duration::from_secs(1)).await;
    let app = app_calling(&fhir.base_url, |s| s.fhir.deadline_ms = 1_500).await;
    let (status, outcome, took) = hook_fetching_from(&app, &fhir.base_url).await;
    assert_eq!(status, 412, "{outcome}");
    let diagnostics = diagnostics(&outcome);
    assert!(diagnostics.contains("fhir.deadline_ms"), "{diagnostics}");
    assert!(diagnostics.contains("1500 ms"), "{diagnostics}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[actix_web::test]
async fn a_hook_still_unanswered_at_the_hook_deadline_is_a_503() {
    let fhir = fhir_server_with_endless_slow_pages(Duration::from_secs(1)).await;
    let app = app_calling(&fhir.base_url, |s| {
        s.fhir.deadline_ms = 60_000;
        s.server.hook_deadline_ms = 1_000;
    })
    .await;
    let (status, outcome, took) = hook_fetching_from(&app, &fhir.base_url).await;
    assert_eq!(status, 503, "{outcome}");
    assert!(
        diagnostics(&outcome).contains("server.hook_deadline_ms"),
        "{outcome}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

// 17: reports do not carry formulas or control characters through.

use crate::helpers::{cards, fixture_bytes, rule_id};

const ADMIN_TOKEN: &str = "test-admin-token-of-at-least-32-bytes";

#[actix_web::test]
async fn override_reasons_are_neutralised_in_the_csv_and_text_reports() {
    let app = spawn_app_with(|s| s.admin.token = Some(ADMIN_TOKEN.into())).await;
    let response = app.post_hook(PATIENT_VIEW, fixture_bytes(FIXTURE)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let card = cards(&body)
        .iter()
        .find(|c| rule_id(c) == "diuretic-low-magnesium")
        .unwrap()
        .clone();
    let mut entry = an_override();
    entry["card"] = card["uuid"].clone();
    entry["overrideReason"]["reason"]["display"] =
        json!("=HYPERLINK(\"https://evil.example\",\"\u{1b}[31mclick\")");
    let (status, body) = post_feedback(&app, &json!({ "feedback": [entry] })).await;
    assert_eq!(status, 200, "{body}");

    let report = |format: &'static str| {
        let request = app
            .http
            .get(format!("{}/admin/report?format={format}", app.address))
            .header("Authorization", format!("Bearer {ADMIN_TOKEN}"));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let csv = report("csv").await;
    let row = csv
        .lines()
        .find(|l| l.contains("diuretic-low-magnesium"))
        .unwrap_or_else(|| panic!("{csv}"));
    assert!(
        row.ends_with(
            ",\"'=HYPERLINK(\"\"https://evil.example\"\",\"\"\\u{1b}[31mclick\"\") (1)\""
        ),
        "{row}"
    );
    let text = report("text").await;
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("\\u{1b}[31mclick"), "{text}");
}
