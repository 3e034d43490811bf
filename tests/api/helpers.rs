//! What the tests share: starting the real application (in process, or the binary) and
//! test servers on ports the system picked, fixtures, databases, and (in `tokens`) the test
//! keys, tokens and the one table of bad tokens.

pub mod key_server;
pub mod private_postgres;
pub mod tokens;

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

/// The public base URL of an app started without one of its own: the origin tokens name in
/// their audience (the app listens elsewhere, on the port the system picked).
pub const PUBLIC_BASE_URL: &str = "https://cds.example";

/// The CDS Hooks service of the patient-view hook.
pub const PATIENT_VIEW: &str = "cramp-numbness-patient-view";

/// A running application.
pub struct TestApp {
    /// Where it listens, `http://127.0.0.1:PORT`.
    pub address: String,
    /// Its `server.public_base_url`: what a token's audience starts with.
    pub public_base_url: String,
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

/// The test PostgreSQL server, from CRAMP_CDS_TEST_POSTGRES_URL. A test that needs it is
/// `#[ignore]`d (run with `--include-ignored`); run without the variable it fails, saying so.
pub fn postgres_server_url() -> String {
    std::env::var("CRAMP_CDS_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect(
            "this test needs PostgreSQL: set CRAMP_CDS_TEST_POSTGRES_URL, \
             e.g. postgres://postgres@127.0.0.1:5432/test",
        )
}

/// A database URL on the test PostgreSQL server with a fresh schema of its own.
pub async fn postgres_database_url() -> String {
    let server = postgres_server_url();
    with_fresh_schema(&server, &server).await
}

/// Creates a fresh schema on the PostgreSQL server at `server` and returns `connect_to` (the
/// same server, maybe by another way) with that schema as its search path.
pub async fn with_fresh_schema(server: &str, connect_to: &str) -> String {
    sqlx::any::install_default_drivers();
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::AnyPool::connect(server)
        .await
        .unwrap_or_else(|e| panic!("the test PostgreSQL server is not reachable: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .unwrap();
    let separator = if connect_to.contains('?') { '&' } else { '?' };
    format!("{connect_to}{separator}options=-c%20search_path%3D{schema}")
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
    // Port 0: the listener the app binds is the one it serves on, so no other process can
    // take the port in between. Tokens name the public base URL, not the port.
    settings.server.bind = "127.0.0.1:0".to_owned();
    let public_base_url = settings
        .server
        .public_base_url
        .get_or_insert_with(|| PUBLIC_BASE_URL.to_owned())
        .clone();
    let app = Application::build(&settings, allow_unauthenticated, Clock::Fixed(at))
        .await
        .expect("app starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        public_base_url,
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

    /// POSTs `body` to a service and returns the status and the JSON body (null when none).
    pub async fn post_hook_json(&self, service: &str, body: &Value) -> (u16, Value) {
        let response = self
            .post_hook(service, serde_json::to_vec(body).unwrap())
            .await;
        status_and_json(response).await
    }

    /// POSTs a fixture to the service of its hook and returns the status and JSON body.
    pub async fn post_fixture(&self, name: &str) -> (u16, Value) {
        let service = service_for(&fixture(name));
        let response = self.post_hook(&service, fixture_bytes(name)).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }
}

/// A response's status and JSON body (null when it has none).
pub async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A fixture request's bytes, exactly as stored.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fixture request as JSON.
pub fn fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(name)).expect("fixture is JSON")
}

/// The `fhirAuthorization` access token of [`request_without_prefetch`].
pub const FHIR_TOKEN: &str = "test-access-token";

/// The resources of a fixture's prefetch, flattened.
pub fn resources_of(fixture_name: &str) -> Vec<Value> {
    let request = fixture(fixture_name);
    let mut resources = Vec::new();
    for (_, value) in request["prefetch"].as_object().unwrap() {
        if value["resourceType"] == "Bundle" {
            for entry in value["entry"].as_array().into_iter().flatten() {
                resources.push(entry["resource"].clone());
            }
        } else if !value.is_null() {
            resources.push(value.clone());
        }
    }
    resources
}

/// The app, allowed (in trial mode) to call `fhir_base` and nothing else.
pub async fn app_allowed_to_call(fhir_base: &str) -> TestApp {
    let base = fhir_base.to_owned();
    spawn_app_with(move |s| s.auth.trial_fhir_servers = vec![base]).await
}

/// A fixture request without its prefetch, naming `fhir_server` and a bearer token for it.
pub fn request_without_prefetch(fixture_name: &str, fhir_server: &str) -> Value {
    let mut request = fixture(fixture_name);
    request.as_object_mut().unwrap().remove("prefetch");
    request["fhirServer"] = json!(fhir_server);
    request["fhirAuthorization"] = json!({"access_token": FHIR_TOKEN, "token_type": "Bearer",
        "expires_in": 300, "scope": "patient/*.read", "subject": "cramp-cds"});
    request
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

/// The real binary, serving on the port the system picked, with its history in
/// `database_url`.
pub struct ServiceProcess {
    pub child: std::process::Child,
    pub base: String,
}

/// The port in the service's start-up log line (`cramp-cds listening`, logged as JSON with
/// its `port`), if `line` is that line.
fn listening_port(line: &str) -> Option<u16> {
    let entry: Value = serde_json::from_str(line).ok()?;
    let fields = &entry["fields"];
    let message = fields["message"].as_str()?;
    if !message.contains("listening") {
        return None;
    }
    fields["port"].as_u64()?.try_into().ok()
}

impl ServiceProcess {
    pub async fn start_on(database_url: &str) -> ServiceProcess {
        Self::start_with(database_url, &[]).await
    }

    /// [`start_on`](Self::start_on), with more environment variables (settings).
    pub async fn start_with(database_url: &str, env: &[(&str, &str)]) -> ServiceProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cramp-cds"))
            .args(["serve", "--allow-unauthenticated", "--bind", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .env("CRAMP_CDS_STORE__DATABASE_URL", database_url)
            .env("CRAMP_CDS_LOG__FORMAT", "json")
            .env("CRAMP_CDS_LOG__LEVEL", "info")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Read the log to its end (a full pipe would stall the service), keeping it for the
        // message if the service never says where it listens.
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_sender, port) = std::sync::mpsc::channel();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(port) = listening_port(&line) {
                    let _ = port_sender.send(port);
                }
                kept.lock().unwrap().push(line);
            }
        });
        let port = actix_web::rt::task::spawn_blocking(move || {
            port.recv_timeout(std::time::Duration::from_secs(60))
        })
        .await
        .unwrap();
        let Ok(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the service did not log the port it listens on; its log:\n{}",
                log.lock().unwrap().join("\n")
            );
        };
        let base = format!("http://127.0.0.1:{port}");
        let health = reqwest::Client::new()
            .get(format!("{base}/health"))
            .send()
            .await;
        assert!(
            health.is_ok_and(|r| r.status() == 200),
            "the service at {base} does not answer /health"
        );
        ServiceProcess { child, base }
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
        status_and_json(response).await
    }

    /// GETs `path` and returns the status and the JSON body (null when none).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        status_and_json(response).await
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestApp {
    /// POSTs a JSON body to `path` with `Authorization: Bearer TOKEN`.
    pub async fn post_with_token(
        &self,
        path: &str,
        token: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.address))
            .header("Content-Type", "application/json")
            .header("Authorization", format!("Bearer {token}"))
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// GETs `path` (no authentication).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent")
    }

    /// GETs `path` and returns the status and the JSON body (null when none).
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.get(path).await;
        status_and_json(response).await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }

    /// GETs `/admin/report` with the admin token and returns the status and JSON body.
    pub async fn admin_report(&self, admin_token: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}/admin/report", self.address))
            .header("Authorization", format!("Bearer {admin_token}"))
            .send()
            .await
            .unwrap();
        status_and_json(response).await
    }

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
        status_and_json(response).await
    }
}

/// Declares a module named after the test body `async fn $body(database_url: &str)` with one
/// test of it per store: `on_sqlite`, always run, and `on_postgresql`, ignored unless run with
/// `--include-ignored` (it then needs CRAMP_CDS_TEST_POSTGRES_URL, and fails without it).
macro_rules! on_each_database {
    ($body:ident) => {
        mod $body {
            #[actix_web::test]
            async fn on_sqlite() {
                super::$body(&crate::helpers::temp_database_url()).await;
            }

            #[actix_web::test]
            #[ignore = "needs PostgreSQL: set CRAMP_CDS_TEST_POSTGRES_URL"]
            async fn on_postgresql() {
                super::$body(&crate::helpers::postgres_database_url().await).await;
            }
        }
    };
}
pub(crate) use on_each_database;

/// The `cramp-cds` binary under test.
pub fn cramp_cds() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_cramp-cds"))
}

/// The path of a fixture request.
pub fn fixture_path(name: &str) -> String {
    format!(
        "{}/fixtures/requests/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `cramp-cds evaluate --request REQUEST --now NOW` with `extra` arguments (e.g. `--format
/// text`), and the knowledge of `knowledge_dir` when one is given.
pub fn evaluate(
    request: &str,
    extra: &[&str],
    knowledge_dir: Option<&std::path::Path>,
) -> std::process::Output {
    let mut command = cramp_cds();
    command
        .args(["evaluate", "--request", request, "--now", NOW])
        .args(extra);
    if let Some(dir) = knowledge_dir {
        command.env("CRAMP_CDS_KNOWLEDGE__DIR", dir);
    }
    command.output().unwrap()
}

/// A copy of the shipped knowledge (`cds-hooks/`) in a temporary directory, to change.
pub fn knowledge_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cds-hooks"),
        dir.path(),
    );
    dir
}

/// Copies the directory `from` (recursively) to `to`.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Replaces the first `from` in the file at `path` by `to`; `from` must be there.
pub fn edit(path: std::path::PathBuf, from: &str, to: &str) {
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Fails at the first `null`, empty string, empty array or empty object in `value` (CDS Hooks
/// 2.0: optional members are left out, not sent empty), naming where it is under `path`.
pub fn assert_no_null_or_empty(value: &Value, path: &str) {
    match value {
        Value::Null => panic!("null at {path}"),
        Value::String(s) => assert!(!s.is_empty(), "empty string at {path}"),
        Value::Array(items) => {
            assert!(!items.is_empty(), "empty array at {path}");
            for (i, item) in items.iter().enumerate() {
                assert_no_null_or_empty(item, &format!("{path}[{i}]"));
            }
        }
        Value::Object(map) => {
            assert!(!map.is_empty(), "empty object at {path}");
            for (key, item) in map {
                assert_no_null_or_empty(item, &format!("{path}.{key}"));
            }
        }
        _ => {}
    }
}
