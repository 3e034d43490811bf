//! The edges of token verification (security review, issue 11): replays and `nbf` inside
//! the leeway, forged log lines, key sets that age, shrink or grow past their cap, and the
//! admin token's length. Absurd times and `crit` headers are rows of the one bad-token
//! table (`helpers/tokens.rs`), which `auth.rs` runs over HTTP and against the authenticator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use cramp_cds::auth::{AuthSettings, Authenticator, ClientSettings, InMemoryReplayCache};
use cramp_cds::config::Settings;

use crate::helpers::key_server::{KeyServer, Reply, public_jwk};
use crate::helpers::tokens::{ISSUER, Token, key_file, key_file_client};
use crate::helpers::{TestApp, now, spawn_authenticated_app};

const DISCOVERY: &str = "/cds-services";

/// Key A: the key of `Token::es384`.
fn key_a() -> Value {
    public_jwk("es384-private.pem", "es384-test")
}

/// Key B: another key, with its own `kid`.
fn key_b() -> Value {
    public_jwk("es384-other-private.pem", "es384-other")
}

fn signed_with_b(app: &TestApp) -> Token {
    Token {
        kid: Some("es384-other".into()),
        key: key_file("es384-other-private.pem"),
        ..Token::es384(app, DISCOVERY)
    }
}

/// The real app, trusting one client whose keys are at `jwks_url`.
async fn app_trusting(jwks_url: &str, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let jwks_url = jwks_url.to_owned();
    spawn_authenticated_app(move |s| {
        s.auth.clients = vec![ClientSettings {
            issuer: ISSUER.to_owned(),
            jwks_file: None,
            jwks_url: Some(jwks_url),
            allowed_jku: vec![],
            fhir_servers: vec![],
            allow_http_fhir: false,
            tenant: None,
        }];
        configure(s);
    })
    .await
}

/// The app with the test keys in a file.
async fn app_with_key_file() -> TestApp {
    spawn_authenticated_app(|s| {
        s.auth.clients = vec![file_client()];
    })
    .await
}

fn file_client() -> ClientSettings {
    key_file_client(ISSUER)
}

/// The status of a discovery call with `token`.
async fn discover(app: &TestApp, token: &str) -> u16 {
    app.http
        .get(format!("{}{DISCOVERY}", app.address))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("the app answers")
        .status()
        .as_u16()
}

/// An authenticator trusting the test key file, at `https://cds.example`.
async fn file_authenticator() -> Authenticator {
    let settings = AuthSettings {
        clients: vec![file_client()],
        ..Default::default()
    };
    Authenticator::new(&settings, Arc::new(InMemoryReplayCache::default()))
        .await
        .unwrap()
}

const AUDIENCE: &str = "https://cds.example/cds-services";

#[actix_web::test]
async fn a_used_token_is_refused_again_inside_the_leeway_after_exp() {
    let app = app_with_key_file().await;
    let iat = now().timestamp();
    // Expired ten seconds ago: still inside the 30-second leeway.
    let token = Token::es384(&app, DISCOVERY)
        .with("iat", json!(iat - 100))
        .with("exp", json!(iat - 10))
        .sign();
    assert_eq!(discover(&app, &token).await, 200, "first use");
    assert_eq!(
        discover(&app, &token).await,
        401,
        "replay inside the leeway"
    );
}

#[actix_web::test]
async fn a_token_not_valid_before_a_time_inside_the_leeway_is_accepted() {
    // The table of bad tokens (helpers/tokens.rs) has the nbf past the leeway.
    let app = app_with_key_file().await;
    let iat = now().timestamp();
    let skewed = Token::es384(&app, DISCOVERY).with("nbf", json!(iat + 20));
    assert_eq!(
        discover(&app, &skewed.sign()).await,
        200,
        "nbf inside the leeway"
    );
}

#[actix_web::test]
async fn control_characters_in_a_tokens_header_or_issuer_never_reach_the_failure_message() {
    use base64::Engine;
    let authenticator = file_authenticator().await;
    let forged = "\n2026-11-01T12:00:00Z INFO \x1b[31mforged line\x1b[0m\r";
    let good = || Token::es384_for(AUDIENCE);
    let encode = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let cases: Vec<(&str, String)> = vec![
        (
            "kid",
            Token {
                kid: Some(format!("key{forged}")),
                ..good()
            }
            .sign(),
        ),
        (
            "iss",
            good()
                .with("iss", json!(format!("https://ehr.example{forged}")))
                .sign(),
        ),
        (
            "jku",
            Token {
                jku: Some(format!("https://evil.example/{forged}")),
                kid: Some(format!("key{forged}")),
                ..good()
            }
            .sign(),
        ),
        (
            "alg",
            format!(
                "{}.{}.c2ln",
                encode(json!({"alg": format!("ES384{forged}"), "typ": "JWT", "kid": "es384-test"})),
                encode(good().claims)
            ),
        ),
        (
            "crit",
            good().sign_with(|header| header.crit = Some(vec![forged.to_owned()])),
        ),
    ];
    for (case, token) in cases {
        let failure = authenticator
            .verify(Some(&format!("Bearer {token}")), AUDIENCE, now())
            .await
            .expect_err(case);
        let message = failure.to_string();
        assert!(
            !message.chars().any(char::is_control),
            "{case}: {message:?}"
        );
        assert!(message.contains("forged line"), "{case}: {message:?}");
    }
}

#[actix_web::test]
async fn a_key_set_streamed_past_the_size_cap_is_refused() {
    // 1 MiB, in chunks with no Content-Length; the default cap is 256 KiB.
    let keys = KeyServer::start(Reply::padded_and_streamed(&[key_a()], 1024 * 1024)).await;
    let app = app_trusting(&keys.url, |_| {}).await;
    let token = Token::es384(&app, DISCOVERY).sign();
    assert_eq!(discover(&app, &token).await, 401);
    assert_eq!(keys.hits(), 1);
}

#[actix_web::test]
async fn a_key_set_of_exactly_the_configured_cap_is_read_and_one_byte_more_is_refused() {
    const CAP: usize = 4096;
    for (size, status) in [(CAP, 200), (CAP + 1, 401)] {
        let keys = KeyServer::start(Reply::padded_and_streamed(&[key_a()], size)).await;
        assert_eq!(keys.body_everywhere().len(), size);
        let app = app_trusting(&keys.url, |s| s.auth.jwks_max_bytes = CAP).await;
        let token = Token::es384(&app, DISCOVERY).sign();
        assert_eq!(discover(&app, &token).await, status, "{size} bytes");
    }
}

/// How long a test waits for a background key refresh before it gives up.
const REFRESH_DEADLINE: Duration = Duration::from_secs(8);

#[actix_web::test]
async fn a_key_dropped_from_the_served_set_is_refused_once_the_cached_set_is_past_its_max_age() {
    let keys = KeyServer::start(Reply::set(&[key_a()]).cached_for("max-age=1")).await;
    let app = app_trusting(&keys.url, |s| s.auth.jwks_min_refresh_seconds = 1).await;
    let signed_with_a = || Token::es384(&app, DISCOVERY).sign();
    assert_eq!(discover(&app, &signed_with_a()).await, 200, "key A, served");

    keys.serve(Reply::set(&[key_b()]).cached_for("max-age=1"));
    let switched = Instant::now();
    while discover(&app, &signed_with_a()).await == 200 {
        assert!(
            switched.elapsed() < REFRESH_DEADLINE,
            "key A still accepted {:?} after the server dropped it ({} fetches)",
            switched.elapsed(),
            keys.hits()
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        discover(&app, &signed_with_b(&app).sign()).await,
        200,
        "key B"
    );
}

#[actix_web::test]
async fn a_refetch_past_the_size_cap_keeps_the_cached_keys() {
    let keys = KeyServer::start(Reply::set(&[key_a()]).cached_for("max-age=1")).await;
    let app = app_trusting(&keys.url, |s| s.auth.jwks_min_refresh_seconds = 1).await;
    let signed_with_a = || Token::es384(&app, DISCOVERY).sign();
    assert_eq!(discover(&app, &signed_with_a()).await, 200, "key A, served");

    keys.serve(Reply::padded_and_streamed(&[key_b()], 1024 * 1024));
    let switched = Instant::now();
    while keys.hits() < 2 {
        assert!(
            switched.elapsed() < REFRESH_DEADLINE,
            "the set was not refetched after its max-age"
        );
        assert_eq!(discover(&app, &signed_with_a()).await, 200, "key A, cached");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(discover(&app, &signed_with_a()).await, 200, "key A, kept");
    assert_eq!(
        discover(&app, &signed_with_b(&app).sign()).await,
        401,
        "key B, only in the oversized set"
    );
}

#[actix_web::test]
async fn cached_keys_are_dropped_once_the_key_server_stays_down_past_twice_the_max_age() {
    let keys = KeyServer::start(Reply::set(&[key_a()])).await;
    let app = app_trusting(&keys.url, |s| {
        s.auth.jwks_min_refresh_seconds = 1;
        s.auth.jwks_max_age_seconds = 1;
    })
    .await;
    let signed_with_a = || Token::es384(&app, DISCOVERY).sign();
    assert_eq!(discover(&app, &signed_with_a()).await, 200, "key A, served");

    keys.serve(Reply::down());
    let down = Instant::now();
    while discover(&app, &signed_with_a()).await == 200 {
        assert!(
            down.elapsed() < REFRESH_DEADLINE,
            "key A still accepted {:?} after its key server went down",
            down.elapsed()
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(keys.hits() >= 2, "refetches were tried: {}", keys.hits());
}

#[actix_web::test]
async fn the_service_refuses_to_start_with_an_admin_token_shorter_than_32_bytes() {
    use cramp_cds::server::{Application, Clock};
    let mut settings = Settings::default();
    settings.server.bind = "127.0.0.1:0".to_owned();
    settings.store.database_url = crate::helpers::temp_database_url();
    settings.admin.token = Some("s".repeat(31).into());
    let refused = Application::build(&settings, true, Clock::Fixed(now())).await;
    let message = refused
        .err()
        .expect("a 31-byte admin token is refused")
        .to_string();
    assert!(message.contains("admin.token"), "{message}");
    assert!(message.contains("32"), "{message}");

    settings.admin.token = Some("s".repeat(32).into());
    let started = Application::build(&settings, true, Clock::Fixed(now())).await;
    assert!(started.is_ok(), "a 32-byte admin token is accepted");
}
