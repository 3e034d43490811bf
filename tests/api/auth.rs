//! CDS Hooks JWT authentication: valid ES384 and RS384 tokens pass on every
//! endpoint; every failure is a bare 401 that evaluates nothing and contacts no
//! FHIR server.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::key_server::{KeyServer, Reply, public_jwk};
use crate::helpers::tokens::{
    ISSUER, TENANT, TENANT_ISSUER, Token, bad_tokens, key_file, table_clients,
};
use crate::helpers::{
    FhirTestServer, TestApp, now, request_without_prefetch, resources_of, spawn_authenticated_app,
};

const PATIENT_VIEW: &str = "/cds-services/cramp-numbness-patient-view";

struct Setup {
    app: TestApp,
    jwks: KeyServer,
    fhir: FhirTestServer,
}

async fn setup() -> Setup {
    // The test keys everywhere but at `/rogue-jwks.json`, which holds only a `rogue-key`.
    let jwks = KeyServer::start(Reply::test_keys()).await;
    let rogue_key = public_jwk("es384-other-private.pem", "rogue-key");
    jwks.serve_at("/rogue-jwks.json", Reply::set(&[rogue_key]));
    let fhir = FhirTestServer::start(resources_of("diuretic-low-magnesium-mmol.fire"), 50).await;
    let jwks_url = format!("{}/jwks.json", jwks.base_url);
    let allowed_jku = format!("{}/allowed-jku.json", jwks.base_url);
    let fhir_base = fhir.base_url.clone();
    let app = spawn_authenticated_app(move |s| {
        // The clients of the bad-token table, ISSUER's keys behind a URL.
        s.auth.clients = table_clients();
        let own = &mut s.auth.clients[0];
        assert_eq!(own.issuer, ISSUER);
        own.jwks_file = None;
        own.jwks_url = Some(jwks_url);
        own.allowed_jku = vec![allowed_jku];
        own.fhir_servers = vec![fhir_base];
        own.allow_http_fhir = true;
    })
    .await;
    Setup { app, jwks, fhir }
}

/// A patient-view request without prefetch, so answering it would need the FHIR server.
fn request_needing_fhir(fhir: &FhirTestServer) -> Vec<u8> {
    let body = request_without_prefetch("diuretic-low-magnesium-mmol.fire", &fhir.base_url);
    serde_json::to_vec(&body).unwrap()
}

async fn invoke(setup: &Setup, authorization: Option<String>) -> reqwest::Response {
    let mut request = setup
        .app
        .http
        .post(format!("{}{PATIENT_VIEW}", setup.app.address))
        .header("Content-Type", "application/json")
        .body(request_needing_fhir(&setup.fhir));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    request.send().await.unwrap()
}

async fn assert_rejected(setup: &Setup, authorization: Option<String>, case: &str) {
    let response = invoke(setup, authorization).await;
    assert_eq!(response.status(), 401, "{case}");
    assert_eq!(response.headers()["www-authenticate"], "Bearer", "{case}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["issue"][0]["diagnostics"], "The request is not authenticated.",
        "{case}"
    );
    assert!(
        setup.fhir.received().is_empty(),
        "{case}: the FHIR server was contacted"
    );
}

fn bearer(token: &Token) -> Option<String> {
    Some(token.bearer())
}

#[actix_web::test]
async fn valid_es384_and_rs384_tokens_pass_on_discovery_and_invocation() {
    let setup = setup().await;
    for token in [
        Token::es384(&setup.app, "/cds-services"),
        Token::rs384(&setup.app, "/cds-services"),
    ] {
        let response = setup
            .app
            .http
            .get(format!("{}/cds-services", setup.app.address))
            .header("Authorization", bearer(&token).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    for token in [
        Token::es384(&setup.app, PATIENT_VIEW),
        Token::rs384(&setup.app, PATIENT_VIEW),
    ] {
        let response = invoke(&setup, bearer(&token)).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["cards"][0]["source"]["topic"]["code"],
            "diuretic-low-magnesium"
        );
    }
    assert!(
        !setup.fhir.received().is_empty(),
        "an authenticated caller's FHIR server is used"
    );
    let audience_array = Token::es384(&setup.app, PATIENT_VIEW).with(
        "aud",
        json!([
            "https://other.example/cds-services",
            format!("{}{PATIENT_VIEW}", setup.app.public_base_url)
        ]),
    );
    assert_eq!(
        invoke(&setup, bearer(&audience_array)).await.status(),
        200,
        "aud as an array"
    );
}

#[actix_web::test]
async fn every_bad_token_is_a_401_that_evaluates_nothing() {
    let setup = setup().await;
    let audience = format!("{}{PATIENT_VIEW}", setup.app.public_base_url);
    for bad in bad_tokens(&audience) {
        assert_rejected(&setup, bad.authorization, bad.case).await;
    }
}

#[actix_web::test]
async fn a_replayed_jti_is_rejected() {
    let setup = setup().await;
    let token = Token::es384(&setup.app, "/cds-services").sign();
    let get = || {
        setup
            .app
            .http
            .get(format!("{}/cds-services", setup.app.address))
            .header("Authorization", format!("Bearer {token}"))
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(get().await.unwrap().status(), 401);
}

#[actix_web::test]
async fn a_jku_off_the_allowlist_is_ignored_for_the_clients_own_keys_and_never_fetched() {
    let setup = setup().await;
    let rogue_jku = Some(format!("{}/rogue-jwks.json", setup.jwks.base_url));
    let rogue_key = Token {
        jku: rogue_jku.clone(),
        kid: Some("rogue-key".into()),
        key: key_file("es384-other-private.pem"),
        ..Token::es384(&setup.app, PATIENT_VIEW)
    };
    assert_rejected(
        &setup,
        bearer(&rogue_key),
        "signed by a key only the jku off the allowlist holds",
    )
    .await;
    let configured_key = Token {
        jku: rogue_jku,
        ..Token::es384(&setup.app, PATIENT_VIEW)
    };
    assert_eq!(
        invoke(&setup, bearer(&configured_key)).await.status(),
        200,
        "signed by a key of the client's own JWK Set, the jku ignored"
    );
    assert!(
        !setup.jwks.paths().iter().any(|p| p == "/rogue-jwks.json"),
        "{:?}",
        setup.jwks.paths()
    );

    let allowed = Token {
        jku: Some(format!("{}/allowed-jku.json", setup.jwks.base_url)),
        ..Token::es384(&setup.app, PATIENT_VIEW)
    };
    assert_eq!(invoke(&setup, bearer(&allowed)).await.status(), 200);
    assert!(setup.jwks.paths().iter().any(|p| p == "/allowed-jku.json"));
}

#[actix_web::test]
async fn a_matching_tenant_and_a_jwks_file_are_accepted() {
    let setup = setup().await;
    let token = Token::es384(&setup.app, "/cds-services")
        .with("iss", json!(TENANT_ISSUER))
        .with("tenant", json!(TENANT));
    let response = setup
        .app
        .http
        .get(format!("{}/cds-services", setup.app.address))
        .header("Authorization", bearer(&token).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[actix_web::test]
async fn an_unknown_kid_refetches_the_key_set_at_most_once_per_interval() {
    let setup = setup().await;
    for _ in 0..3 {
        let token = Token {
            kid: Some("rotated-away".into()),
            ..Token::es384(&setup.app, PATIENT_VIEW)
        };
        assert_eq!(invoke(&setup, bearer(&token)).await.status(), 401);
    }
    let fetches = setup
        .jwks
        .paths()
        .iter()
        .filter(|p| *p == "/jwks.json")
        .count();
    assert_eq!(fetches, 1, "{:?}", setup.jwks.paths());
}

#[actix_web::test]
async fn a_fhir_server_off_the_clients_allowlist_is_never_contacted() {
    let setup = setup().await;
    let other = FhirTestServer::start(resources_of("diuretic-low-magnesium-mmol.fire"), 50).await;
    let mut body: Value = serde_json::from_slice(&request_needing_fhir(&setup.fhir)).unwrap();
    body["fhirServer"] = json!(other.base_url);
    let response = setup
        .app
        .http
        .post(format!("{}{PATIENT_VIEW}", setup.app.address))
        .header("Content-Type", "application/json")
        .header(
            "Authorization",
            bearer(&Token::es384(&setup.app, PATIENT_VIEW)).unwrap(),
        )
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 412);
    assert!(other.received().is_empty(), "{:?}", other.received());
}

#[actix_web::test]
async fn cors_preflights_stay_unauthenticated() {
    let setup = setup().await;
    let response = setup
        .app
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}{PATIENT_VIEW}", setup.app.address),
        )
        .header("Origin", "https://sandbox.cds-hooks.org")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

#[actix_web::test]
async fn serve_refuses_to_start_with_authentication_required_and_no_clients() {
    let settings = cramp_cds::config::Settings::default();
    let result = cramp_cds::server::Application::build(
        &settings,
        false,
        cramp_cds::server::Clock::Fixed(now()),
    )
    .await;
    let message = result.err().expect("refused").to_string();
    assert!(message.contains("[[auth.clients]]"), "{message}");
    assert!(message.contains("--allow-unauthenticated"), "{message}");
}

#[actix_web::test]
async fn a_symmetric_algorithm_in_the_configuration_is_refused() {
    let settings = cramp_cds::auth::AuthSettings {
        algorithms: vec!["HS256".into()],
        ..Default::default()
    };
    let result = cramp_cds::auth::Authenticator::new(
        &settings,
        Arc::new(cramp_cds::auth::InMemoryReplayCache::default()),
    )
    .await;
    assert!(result.unwrap_err().to_string().contains("symmetric"));
}

#[actix_web::test]
async fn each_bad_token_fails_for_its_own_reason() {
    use cramp_cds::auth::{AuthSettings, Authenticator, InMemoryReplayCache};
    let settings = AuthSettings {
        clients: table_clients(),
        ..Default::default()
    };
    let authenticator = Authenticator::new(&settings, Arc::new(InMemoryReplayCache::default()))
        .await
        .unwrap();
    let audience = format!("https://cds.example{PATIENT_VIEW}");
    for bad in bad_tokens(&audience) {
        let failure = authenticator
            .verify(bad.authorization.as_deref(), &audience, now())
            .await
            .expect_err(bad.case);
        assert_eq!(failure.reason(), bad.reason, "{}: {failure}", bad.case);
    }
    let token = Token::es384_for(&audience).bearer();
    assert!(
        authenticator
            .verify(Some(&token), &audience, now())
            .await
            .is_ok()
    );
    let replay = authenticator
        .verify(Some(&token), &audience, now())
        .await
        .unwrap_err();
    assert_eq!(replay.reason(), "replay");
    let tenant_bound = Token::es384_for(&audience)
        .with("iss", json!(TENANT_ISSUER))
        .with("tenant", json!(TENANT))
        .bearer();
    assert!(
        authenticator
            .verify(Some(&tenant_bound), &audience, now())
            .await
            .is_ok(),
        "the tenant-bound client with its tenant"
    );
    // Within the leeway an expired-by-a-little token still passes.
    let iat = now().timestamp();
    let skewed = Token::es384_for(&audience)
        .with("iat", json!(iat - 310))
        .with("exp", json!(iat - 10))
        .bearer();
    assert!(
        authenticator
            .verify(Some(&skewed), &audience, now())
            .await
            .is_ok()
    );
}

#[actix_web::test]
async fn the_sandbox_example_configuration_loads_and_trusts_the_sandbox() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sandbox.toml");
    let settings = cramp_cds::config::Settings::load(Some(&path)).unwrap();
    let client = &settings.auth.clients[0];
    assert_eq!(client.issuer, "https://sandbox.cds-hooks.org");
    assert_eq!(settings.auth.algorithms, ["ES384", "RS384"]);
    let authenticator = cramp_cds::auth::Authenticator::new(
        &settings.auth,
        Arc::new(cramp_cds::auth::InMemoryReplayCache::default()),
    )
    .await
    .unwrap();
    assert!(authenticator.has_clients());
}

#[actix_web::test]
async fn the_feedback_endpoint_needs_a_token_for_its_own_url() {
    let setup = setup().await;
    let path = "/cds-services/cramp-numbness-patient-view/feedback";
    let body = json!({"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-01T12:00:00Z"}]});
    let send = |authorization: Option<String>| {
        let mut request = setup
            .app
            .http
            .post(format!("{}{path}", setup.app.address))
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&body).unwrap());
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        request.send()
    };
    assert_eq!(send(None).await.unwrap().status(), 401);
    let wrong_audience = Token::es384(&setup.app, PATIENT_VIEW);
    assert_eq!(send(bearer(&wrong_audience)).await.unwrap().status(), 401);
    for token in [
        Token::es384(&setup.app, path),
        Token::rs384(&setup.app, path),
    ] {
        assert_eq!(send(bearer(&token)).await.unwrap().status(), 200);
    }
}
