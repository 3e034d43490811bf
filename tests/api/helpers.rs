//! Starting the real application (and a FHIR test server) for tests.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use cramp_cds::config::Settings;
use cramp_cds::server::{Application, Clock};

/// The evaluation time every fixture is written for.
pub const NOW: &str = "2026-11-01T12:00:00Z";

/// A running application.
pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
}

pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc)
}

/// Starts the app on a free port with default settings and the fixed clock.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the app with settings changed by `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings::default();
    settings.server.bind = "127.0.0.1:0".to_owned();
    settings.server.workers = Some(1);
    settings.fhir.timeout_ms = 2_000;
    // The same public URL `evaluate` uses by default, so cards compare equal.
    settings.server.public_base_url = Some("http://127.0.0.1:8080".to_owned());
    configure(&mut settings);
    start(&settings, true, now()).await
}

/// Starts the app (authentication off) with its clock at `at`.
pub async fn spawn_app_at(at: DateTime<Utc>, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings::default();
    settings.server.workers = Some(1);
    configure(&mut settings);
    start(&settings, true, at).await
}

/// A new SQLite database in a temporary directory that lives as long as the test process.
pub fn temp_database_url() -> String {
    let dir = tempfile::tempdir().unwrap().keep();
    format!("sqlite://{}/cramp-cds-test.db", dir.display())
}

/// A PostgreSQL database URL with a fresh schema, when CRAMP_CDS_TEST_POSTGRES_URL is set.
pub async fn postgres_database_url() -> Option<String> {
    let base = std::env::var("CRAMP_CDS_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    sqlx::any::install_default_drivers();
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::AnyPool::connect(&base)
        .await
        .expect("test PostgreSQL reachable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!(
        "{base}{separator}options=-c%20search_path%3D{schema}"
    ))
}

/// Starts the app with authentication required, as `serve` runs it by default.
pub async fn spawn_authenticated_app(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings::default();
    settings.server.workers = Some(1);
    settings.fhir.timeout_ms = 2_000;
    configure(&mut settings);
    start(&settings, false, now()).await
}

async fn start(settings: &Settings, allow_unauthenticated: bool, at: DateTime<Utc>) -> TestApp {
    let mut settings = settings.clone();
    if settings.store.database_url == cramp_cds::store::StoreSettings::default().database_url {
        settings.store.database_url = temp_database_url();
    }
    // Pick the port first so the public base URL (the JWT audience) can name it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    settings.server.bind = format!("127.0.0.1:{port}");
    if settings.server.public_base_url.is_none() {
        settings.server.public_base_url = Some(format!("http://127.0.0.1:{port}"));
    }
    let app = Application::build(&settings, allow_unauthenticated, Clock::Fixed(at))
        .await
        .expect("app starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        http: reqwest::Client::new(),
    }
}

impl TestApp {
    /// POSTs a JSON body to a service.
    pub async fn post_hook(
        &self,
        service: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/cds-services/{service}", self.address))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// POSTs a fixture to the service of its hook and returns the status and JSON body.
    pub async fn post_fixture(&self, name: &str) -> (u16, Value) {
        let service = service_for(&fixture(name));
        let response = self.post_hook(&service, fixture_bytes(name)).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }
}

/// A fixture request's bytes, exactly as stored.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/fixtures/requests/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fixture request as JSON.
pub fn fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(name)).expect("fixture is JSON")
}

/// The service id that answers a request's hook.
pub fn service_for(body: &Value) -> String {
    format!("cramp-numbness-{}", body["hook"].as_str().expect("hook"))
}

/// The cards of a response body.
pub fn cards(body: &Value) -> &Vec<Value> {
    body["cards"].as_array().expect("cards array")
}

/// The rule id of a card.
pub fn rule_id(card: &Value) -> &str {
    card["source"]["topic"]["code"]
        .as_str()
        .expect("topic code")
}

/// One request the FHIR test server received.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub accept: Option<String>,
}

/// A FHIR server on loopback that serves resources by type, `page_size` per page.
pub struct FhirTestServer {
    pub base_url: String,
    pub received: Arc<Mutex<Vec<ReceivedRequest>>>,
}

struct FhirData {
    base_url: String,
    resources: HashMap<String, Vec<Value>>,
    page_size: usize,
    received: Arc<Mutex<Vec<ReceivedRequest>>>,
}

impl FhirTestServer {
    /// Serves `resources` (each with resourceType and id) under `/fhir`.
    pub async fn start(resources: Vec<Value>, page_size: usize) -> FhirTestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!(
            "http://127.0.0.1:{}/fhir",
            listener.local_addr().unwrap().port()
        );
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut by_type: HashMap<String, Vec<Value>> = HashMap::new();
        for resource in resources {
            let resource_type = resource["resourceType"].as_str().unwrap().to_owned();
            by_type.entry(resource_type).or_default().push(resource);
        }
        let data = web::Data::new(FhirData {
            base_url: base_url.clone(),
            resources: by_type,
            page_size,
            received: received.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(serve_fhir))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        FhirTestServer { base_url, received }
    }

    /// A server on loopback whose base URL ends in `/fhir` and whose every answer, to any
    /// path, comes from `respond(request, base_url)`.
    pub async fn scripted<F, Fut>(respond: F) -> FhirTestServer
    where
        F: Fn(HttpRequest, String) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = HttpResponse> + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!(
            "http://127.0.0.1:{}/fhir",
            listener.local_addr().unwrap().port()
        );
        let received = Arc::new(Mutex::new(Vec::new()));
        let (log, base) = (received.clone(), base_url.clone());
        let server = HttpServer::new(move || {
            let (respond, log, base) = (respond.clone(), log.clone(), base.clone());
            App::new().default_service(web::to(move |request: HttpRequest| {
                log.lock().unwrap().push(ReceivedRequest::of(&request));
                respond(request, base.clone())
            }))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        FhirTestServer { base_url, received }
    }

    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.received.lock().unwrap().clone()
    }
}

impl ReceivedRequest {
    fn of(request: &HttpRequest) -> ReceivedRequest {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        ReceivedRequest {
            path: request.path().to_owned(),
            query: request.query_string().to_owned(),
            authorization: header("authorization"),
            accept: header("accept"),
        }
    }
}

async fn serve_fhir(request: HttpRequest, data: web::Data<FhirData>) -> HttpResponse {
    data.received
        .lock()
        .unwrap()
        .push(ReceivedRequest::of(&request));
    let path = request.path().trim_start_matches("/fhir/");
    let (resource_type, id) = match path.split_once('/') {
        Some((t, id)) => (t, Some(id)),
        None => (path, None),
    };
    let all = data
        .resources
        .get(resource_type)
        .cloned()
        .unwrap_or_default();
    if let Some(id) = id {
        return match all.into_iter().find(|r| r["id"] == id) {
            Some(resource) => HttpResponse::Ok().json(resource),
            None => HttpResponse::NotFound().json(json!({"resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "not-found"}]})),
        };
    }
    let query = request.query_string();
    let page: usize = query
        .split('&')
        .find_map(|p| p.strip_prefix("_page="))
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    let start = (page - 1) * data.page_size;
    let entries: Vec<Value> = all
        .iter()
        .skip(start)
        .take(data.page_size)
        .map(|r| json!({"resource": r, "search": {"mode": "match"}}))
        .collect();
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": all.len(), "entry": entries});
    if start + data.page_size < all.len() {
        let base_query: String = query
            .split('&')
            .filter(|p| !p.starts_with("_page="))
            .collect::<Vec<_>>()
            .join("&");
        bundle["link"] = json!([{"relation": "next",
            "url": format!("{}/{resource_type}?{base_query}&_page={}", data.base_url, page + 1)}]);
    }
    HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(bundle)
}

/// A trusted client whose keys are the test JWK Set file (`tests/keys/jwks.json`).
pub fn key_file_client(issuer: &str) -> cramp_cds::auth::ClientSettings {
    cramp_cds::auth::ClientSettings {
        issuer: issuer.to_owned(),
        jwks_file: Some(format!(
            "{}/tests/keys/jwks.json",
            env!("CARGO_MANIFEST_DIR")
        )),
        jwks_url: None,
        allowed_jku: vec![],
        fhir_servers: vec![],
        allow_http_fhir: false,
        tenant: None,
    }
}

/// A fresh ES384 CDS Hooks JWT from `issuer` (optionally for `tenant`) for the exact URL
/// `audience`, issued at the fixture time, valid five minutes, signed with the test key.
pub fn es384_token(issuer: &str, tenant: Option<&str>, audience: &str) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let key = EncodingKey::from_ec_pem(
        &std::fs::read(format!(
            "{}/tests/keys/es384-private.pem",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let mut header = Header::new(Algorithm::ES384);
    header.kid = Some("es384-test".into());
    let iat = now().timestamp();
    let mut claims = json!({"iss": issuer, "aud": audience,
        "iat": iat, "exp": iat + 300, "jti": uuid::Uuid::new_v4().to_string()});
    if let Some(tenant) = tenant {
        claims["tenant"] = json!(tenant);
    }
    encode(&header, &claims, &key).unwrap()
}

/// The real binary, serving on a free port with its history in `database_url`.
pub struct ServiceProcess {
    pub child: std::process::Child,
    pub base: String,
}

impl ServiceProcess {
    pub async fn start_on(database_url: &str) -> ServiceProcess {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cramp-cds"))
            .args([
                "serve",
                "--allow-unauthenticated",
                "--bind",
                &format!("127.0.0.1:{port}"),
            ])
            .env("CRAMP_CDS_STORE__DATABASE_URL", database_url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client.get(format!("{base}/health")).send().await.is_ok() {
                return ServiceProcess { child, base };
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the service did not start");
    }

    /// POSTs JSON to `path` and returns the status and the JSON body (null when none).
    pub async fn post(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestApp {
    /// POSTs feedback to a service and returns the status and the JSON body (null when none).
    pub async fn post_feedback(&self, service: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/cds-services/{service}/feedback", self.address))
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(body).unwrap())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}
