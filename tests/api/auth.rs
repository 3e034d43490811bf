//! CDS Hooks JWT authentication: valid ES384 and RS384 tokens pass on every
//! endpoint; every failure is a bare 401 that evaluates nothing and contacts no
//! FHIR server.

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::helpers::{FhirTestServer, NOW, TestApp, fixture, now, spawn_authenticated_app};

pub(crate) const ISSUER: &str = "https://ehr.example";
const TENANT_ISSUER: &str = "https://tenant-ehr.example";
pub(crate) const PATIENT_VIEW: &str = "/cds-services/cramp-numbness-patient-view";

pub(crate) fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A JWK Set server that records the paths it was asked for. It serves the test keys
/// everywhere but at `/rogue-jwks.json`, which holds only a `rogue-key` of its own.
struct JwksServer {
    base_url: String,
    hits: Arc<Mutex<Vec<String>>>,
}

impl JwksServer {
    async fn start() -> JwksServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let recorded = hits.clone();
        let jwks: Value = serde_json::from_slice(&key_file("jwks.json")).unwrap();
        let rogue_key = EncodingKey::from_ec_pem(&key_file("es384-other-private.pem")).unwrap();
        let mut rogue_jwk = Jwk::from_encoding_key(&rogue_key, Algorithm::ES384).unwrap();
        rogue_jwk.common.key_id = Some("rogue-key".to_owned());
        let rogue_jwks = json!({ "keys": [rogue_jwk] });
        let server = HttpServer::new(move || {
            let recorded = recorded.clone();
            let (jwks, rogue_jwks) = (jwks.clone(), rogue_jwks.clone());
            App::new().default_service(web::to(move |request: HttpRequest| {
                recorded.lock().unwrap().push(request.path().to_owned());
                let body = if request.path() == "/rogue-jwks.json" {
                    rogue_jwks.clone()
                } else {
                    jwks.clone()
                };
                async move { HttpResponse::Ok().json(body) }
            }))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        JwksServer { base_url, hits }
    }

    fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

struct Setup {
    app: TestApp,
    jwks: JwksServer,
    fhir: FhirTestServer,
}

async fn setup() -> Setup {
    let jwks = JwksServer::start().await;
    let fhir = FhirTestServer::start(
        crate::fallback::resources_of("diuretic-low-magnesium-mmol.fire"),
        50,
    )
    .await;
    let jwks_url = format!("{}/jwks.json", jwks.base_url);
    let allowed_jku = format!("{}/allowed-jku.json", jwks.base_url);
    let fhir_base = fhir.base_url.clone();
    let app = spawn_authenticated_app(move |s| {
        s.auth.clients = vec![
            cramp_cds::auth::ClientSettings {
                issuer: ISSUER.to_owned(),
                jwks_file: None,
                jwks_url: Some(jwks_url),
                allowed_jku: vec![allowed_jku],
                fhir_servers: vec![fhir_base],
                allow_http_fhir: true,
                tenant: None,
            },
            cramp_cds::auth::ClientSettings {
                issuer: TENANT_ISSUER.to_owned(),
                jwks_file: Some(format!(
                    "{}/tests/keys/jwks.json",
                    env!("CARGO_MANIFEST_DIR")
                )),
                jwks_url: None,
                allowed_jku: vec![],
                fhir_servers: vec![],
                allow_http_fhir: false,
                tenant: Some("hospital-a".to_owned()),
            },
        ];
    })
    .await;
    Setup { app, jwks, fhir }
}

/// A token under construction; every field can be spoiled by a test.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    pub(crate) typ: Option<String>,
    pub(crate) jku: Option<String>,
    pub(crate) key: Vec<u8>,
    pub(crate) claims: Value,
}

impl Token {
    pub(crate) fn es384(app: &TestApp, path: &str) -> Token {
        let iat = now().timestamp();
        Token {
            alg: Algorithm::ES384,
            kid: Some("es384-test".into()),
            typ: Some("JWT".into()),
            jku: None,
            key: key_file("es384-private.pem"),
            claims: json!({"iss": ISSUER, "aud": format!("{}{path}", app.address), "iat": iat,
                           "exp": iat + 300, "jti": uuid::Uuid::new_v4().to_string()}),
        }
    }

    fn rs384(app: &TestApp, path: &str) -> Token {
        Token {
            alg: Algorithm::RS384,
            kid: Some("rs384-test".into()),
            key: key_file("rs384-private.pem"),
            ..Token::es384(app, path)
        }
    }

    pub(crate) fn sign(&self) -> String {
        self.sign_with(|_| {})
    }

    /// Signs with a header that `edit` may spoil further (e.g. with a `crit` parameter).
    pub(crate) fn sign_with(&self, edit: impl FnOnce(&mut Header)) -> String {
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        header.typ = self.typ.clone();
        header.jku = self.jku.clone();
        edit(&mut header);
        let key = match self.alg {
            Algorithm::ES384 => EncodingKey::from_ec_pem(&self.key).unwrap(),
            Algorithm::RS384 => EncodingKey::from_rsa_pem(&self.key).unwrap(),
            _ => EncodingKey::from_secret(&self.key),
        };
        encode(&header, &self.claims, &key).unwrap()
    }

    pub(crate) fn with(mut self, claim: &str, value: Value) -> Token {
        self.claims[claim] = value;
        self
    }

    pub(crate) fn without(mut self, claim: &str) -> Token {
        self.claims.as_object_mut().unwrap().remove(claim);
        self
    }
}

/// A patient-view request without prefetch, so answering it would need the FHIR server.
fn request_needing_fhir(fhir: &FhirTestServer) -> Vec<u8> {
    let mut body = fixture("diuretic-low-magnesium-mmol.fire");
    body.as_object_mut().unwrap().remove("prefetch");
    body["fhirServer"] = json!(fhir.base_url);
    body["fhirAuthorization"] = json!({"access_token": "fhir-token", "token_type": "Bearer",
        "expires_in": 300, "scope": "patient/*.read", "subject": "cramp-cds"});
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

pub(crate) fn bearer(token: &Token) -> Option<String> {
    Some(format!("Bearer {}", token.sign()))
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
            format!("{}{PATIENT_VIEW}", setup.app.address)
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
    let app = &setup.app;
    let good = Token::es384(app, PATIENT_VIEW);
    let iat = now().timestamp();
    let header_b64 =
        |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none_token = format!(
        "{}.{}.",
        header_b64(json!({"alg": "none", "typ": "JWT", "kid": "es384-test"})),
        header_b64(good.claims.clone())
    );
    let hs256 = Token {
        alg: Algorithm::HS256,
        key: key_file("rs384-public.pem"),
        ..good.clone()
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        ("not a bearer token", Some(format!("Basic {}", good.sign()))),
        ("malformed token", Some("Bearer not.a.jwt".into())),
        ("alg none", Some(format!("Bearer {none_token}"))),
        (
            "HS256 signed with the public key (algorithm confusion)",
            bearer(&hs256),
        ),
        (
            "typ not JWT",
            bearer(&Token {
                typ: Some("at+jwt".into()),
                ..good.clone()
            }),
        ),
        (
            "no kid",
            bearer(&Token {
                kid: None,
                ..good.clone()
            }),
        ),
        (
            "unknown kid",
            bearer(&Token {
                kid: Some("no-such-key".into()),
                ..good.clone()
            }),
        ),
        (
            "right kid, another key's signature",
            bearer(&Token {
                key: key_file("es384-other-private.pem"),
                ..good.clone()
            }),
        ),
        (
            "untrusted issuer",
            bearer(&good.clone().with("iss", json!("https://evil.example"))),
        ),
        (
            "audience of another endpoint",
            bearer(
                &good
                    .clone()
                    .with("aud", json!(format!("{}/cds-services", app.address))),
            ),
        ),
        (
            "audience with another host",
            bearer(
                &good
                    .clone()
                    .with("aud", json!(format!("https://other.example{PATIENT_VIEW}"))),
            ),
        ),
        (
            "expired",
            bearer(
                &good
                    .clone()
                    .with("iat", json!(iat - 600))
                    .with("exp", json!(iat - 120)),
            ),
        ),
        (
            "iat in the future",
            bearer(
                &good
                    .clone()
                    .with("iat", json!(iat + 300))
                    .with("exp", json!(iat + 600)),
            ),
        ),
        (
            "lifetime above the maximum",
            bearer(&good.clone().with("exp", json!(iat + 7200))),
        ),
        ("no jti", bearer(&good.clone().without("jti"))),
        ("no exp", bearer(&good.clone().without("exp"))),
        (
            "tenant mismatch",
            bearer(
                &good
                    .clone()
                    .with("iss", json!(TENANT_ISSUER))
                    .with("tenant", json!("hospital-b")),
            ),
        ),
    ];
    for (case, authorization) in cases {
        assert_rejected(&setup, authorization, case).await;
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
        !setup.jwks.hits().iter().any(|p| p == "/rogue-jwks.json"),
        "{:?}",
        setup.jwks.hits()
    );

    let allowed = Token {
        jku: Some(format!("{}/allowed-jku.json", setup.jwks.base_url)),
        ..Token::es384(&setup.app, PATIENT_VIEW)
    };
    assert_eq!(invoke(&setup, bearer(&allowed)).await.status(), 200);
    assert!(setup.jwks.hits().iter().any(|p| p == "/allowed-jku.json"));
}

#[actix_web::test]
async fn a_matching_tenant_and_a_jwks_file_are_accepted() {
    let setup = setup().await;
    let token = Token::es384(&setup.app, "/cds-services")
        .with("iss", json!(TENANT_ISSUER))
        .with("tenant", json!("hospital-a"));
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
        .hits()
        .iter()
        .filter(|p| *p == "/jwks.json")
        .count();
    assert_eq!(fetches, 1, "{:?}", setup.jwks.hits());
}

#[actix_web::test]
async fn a_fhir_server_off_the_clients_allowlist_is_never_contacted() {
    let setup = setup().await;
    let other = FhirTestServer::start(
        crate::fallback::resources_of("diuretic-low-magnesium-mmol.fire"),
        50,
    )
    .await;
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

#[test]
fn the_fixed_clock_is_the_fixture_time() {
    assert_eq!(now().to_rfc3339(), "2026-11-01T12:00:00+00:00");
    assert_eq!(NOW, "2026-11-01T12:00:00Z");
}

#[actix_web::test]
async fn each_bad_token_fails_for_its_own_reason() {
    use cramp_cds::auth::{AuthSettings, Authenticator, ClientSettings, InMemoryReplayCache};
    let settings = AuthSettings {
        clients: vec![ClientSettings {
            issuer: ISSUER.to_owned(),
            jwks_file: Some(format!(
                "{}/tests/keys/jwks.json",
                env!("CARGO_MANIFEST_DIR")
            )),
            jwks_url: None,
            allowed_jku: vec![],
            fhir_servers: vec![],
            allow_http_fhir: false,
            tenant: Some("hospital-a".to_owned()),
        }],
        ..Default::default()
    };
    let authenticator = Authenticator::new(&settings, Arc::new(InMemoryReplayCache::default()))
        .await
        .unwrap();
    let app = TestApp {
        address: "https://cds.example".into(),
        http: reqwest::Client::new(),
    };
    let audience = format!("https://cds.example{PATIENT_VIEW}");
    let good = Token::es384(&app, PATIENT_VIEW).with("tenant", json!("hospital-a"));
    let iat = now().timestamp();
    let hs256 = Token {
        alg: Algorithm::HS256,
        key: key_file("rs384-public.pem"),
        ..good.clone()
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing_token", None),
        ("malformed", Some("Bearer a.b.c".into())),
        ("algorithm", bearer(&hs256)),
        (
            "typ",
            bearer(&Token {
                typ: None,
                ..good.clone()
            }),
        ),
        (
            "kid_missing",
            bearer(&Token {
                kid: None,
                ..good.clone()
            }),
        ),
        (
            "kid_unknown",
            bearer(&Token {
                kid: Some("nope".into()),
                ..good.clone()
            }),
        ),
        (
            "signature",
            bearer(&Token {
                key: key_file("es384-other-private.pem"),
                ..good.clone()
            }),
        ),
        (
            "issuer",
            bearer(&good.clone().with("iss", json!("https://evil.example"))),
        ),
        (
            "audience",
            bearer(
                &good
                    .clone()
                    .with("aud", json!("https://cds.example/cds-services")),
            ),
        ),
        (
            "expired",
            bearer(
                &good
                    .clone()
                    .with("iat", json!(iat - 600))
                    .with("exp", json!(iat - 60)),
            ),
        ),
        (
            "iat_future",
            bearer(
                &good
                    .clone()
                    .with("iat", json!(iat + 120))
                    .with("exp", json!(iat + 400)),
            ),
        ),
        (
            "lifetime",
            bearer(&good.clone().with("exp", json!(iat + 3601))),
        ),
        ("claims", bearer(&good.clone().without("jti"))),
        (
            "tenant",
            bearer(&good.clone().with("tenant", json!("hospital-b"))),
        ),
    ];
    for (reason, authorization) in cases {
        let failure = authenticator
            .verify(authorization.as_deref(), &audience, now())
            .await
            .expect_err(reason);
        assert_eq!(failure.reason(), reason, "{failure}");
    }
    let token = bearer(&good).unwrap();
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
    // Within the leeway an expired-by-a-little token still passes.
    let skewed = bearer(
        &Token::es384(&app, PATIENT_VIEW)
            .with("tenant", json!("hospital-a"))
            .with("iat", json!(iat - 310))
            .with("exp", json!(iat - 10)),
    )
    .unwrap();
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
