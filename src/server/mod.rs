//! The actix-web application: routes, CORS, request tracing and error
//! mapping. [`Application::build`] binds the listener so tests can start the
//! real app on port 0 and talk HTTP to it.

pub mod admin_token;
pub mod errors;
pub mod live_service;
pub mod openapi;
mod request_span;
mod routes;

use std::net::TcpListener;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::Server;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpServer, web};
use chrono::{DateTime, Utc};
use tracing_actix_web::TracingLogger;

use std::sync::Arc;

use crate::auth::{
    AuthConfigError, Authenticator, FhirAccess, FhirServerError, InMemoryReplayCache, ReplayCache,
    SharedReplayCache,
};
use crate::config::{PublicBaseUrlError, Settings};
use crate::invoke::{CdsService, ServiceBuildError};
use crate::store::history::History;
use crate::store::{Store, StoreError};
use admin_token::{AdminToken, AdminTokenTooShort};
use live_service::LiveService;

/// Where the evaluation time comes from.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// A fixed instant (tests and demonstrations).
    Fixed(DateTime<Utc>),
}

impl Clock {
    /// The current time by this clock.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(instant) => *instant,
        }
    }
}

/// How callers are authenticated.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// Every discovery, invocation and feedback request needs a valid CDS Hooks JWT.
    Required(Arc<Authenticator>),
    /// Local trials only (`serve --allow-unauthenticated`): no JWT is checked, a warning is
    /// logged on every request, and only these FHIR servers may be called.
    Disabled {
        /// FHIR servers unauthenticated requests may make the service call.
        trial_access: FhirAccess,
    },
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The CDS service serving now; a reload replaces it (take [`LiveService::current`] once
    /// per request).
    pub service: LiveService,
    /// Body size limit in bytes.
    pub max_body_bytes: usize,
    /// Time allowed to receive a body once the headers are in (`server.body_timeout_ms`).
    pub body_timeout: Duration,
    /// Time allowed to answer a hook invocation (`server.hook_deadline_ms`).
    pub hook_deadline: Duration,
    /// The evaluation time source.
    pub clock: Clock,
    /// Authentication.
    pub auth: AuthMode,
    /// The public base URL; a token's `aud` must be this plus the path called.
    pub public_base_url: String,
    /// The bearer token of the admin endpoints; they are off when `None`.
    pub admin_token: Option<AdminToken>,
    /// Set on SIGTERM: `/ready` answers 503 while requests are still served, so a load
    /// balancer stops sending before the server stops accepting.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// Why the service could not start; the message names the setting to change.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// `admin.token` is too short.
    #[error(transparent)]
    AdminToken(#[from] AdminTokenTooShort),
    /// The database could not be opened (its URL shown without a password).
    #[error("{source} ({url})")]
    Store {
        /// `store.database_url`, its password masked.
        url: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The card history could not be started.
    #[error(transparent)]
    History(StoreError),
    /// The knowledge or the FHIR client.
    #[error(transparent)]
    Service(#[from] ServiceBuildError),
    /// An `auth.trial_fhir_servers` entry cannot be allowed.
    #[error("auth.trial_fhir_servers: {0}")]
    TrialFhirServers(#[source] FhirServerError),
    /// The `[auth]` settings.
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    /// Authentication is required and no client is trusted.
    #[error(
        "authentication is required but no trusted client is configured: add an [[auth.clients]] \
         section to the configuration (see README), or pass --allow-unauthenticated for a local trial"
    )]
    NoTrustedClient,
    /// `server.public_base_url` is not a base URL.
    #[error(transparent)]
    PublicBaseUrl(#[from] PublicBaseUrlError),
    /// `server.bind` cannot be listened on.
    #[error("cannot listen on {bind}: {source}")]
    Listen {
        /// `server.bind`.
        bind: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A bound, not yet running, server.
pub struct Application {
    port: u16,
    server: Server,
    draining: Arc<std::sync::atomic::AtomicBool>,
    shutdown_delay: Duration,
    history: Option<History>,
    service: LiveService,
    reloader: Option<actix_web::rt::task::JoinHandle<()>>,
}

impl Application {
    /// Loads the knowledge, sets up authentication and binds `settings.server.bind`.
    /// Authentication is required unless `allow_unauthenticated`; with it required and no
    /// trusted client configured, start-up fails with a message saying what to configure.
    /// An `admin.token` shorter than 32 bytes, or a `server.public_base_url` that is no
    /// http(s) base URL, fails start-up too.
    pub async fn build(
        settings: &Settings,
        allow_unauthenticated: bool,
        clock: Clock,
    ) -> Result<Application, StartupError> {
        AdminToken::from_setting(settings.admin.token.as_ref())?;
        let store =
            Store::connect(&settings.store)
                .await
                .map_err(|source| StartupError::Store {
                    url: redact_url(&settings.store.database_url),
                    source,
                })?;
        let history = History::start(
            store.clone(),
            &settings.store,
            settings.suppression.clone(),
            clock.now(),
        )
        .await
        .map_err(StartupError::History)?;
        let service = CdsService::from_settings(settings)?.with_history(history, true);
        let auth = if allow_unauthenticated {
            tracing::warn!(
                "authentication is DISABLED (--allow-unauthenticated): for local trials only; any caller can use this service"
            );
            let trial_access = FhirAccess::to_servers(&settings.auth.trial_fhir_servers, true)
                .map_err(StartupError::TrialFhirServers)?;
            AuthMode::Disabled { trial_access }
        } else {
            // With PostgreSQL the replay cache lives in the database, so the instances sharing it
            // share the cache. A SQLite store serves one instance: its cache stays in memory,
            // which spares every hook call a database write.
            let replay: Arc<dyn ReplayCache> = if store.is_single_instance() {
                Arc::new(InMemoryReplayCache::default())
            } else {
                Arc::new(SharedReplayCache::new(
                    store,
                    std::time::Duration::from_millis(settings.store.replay_timeout_ms),
                    settings.store.replay_on_outage,
                ))
            };
            let authenticator = Authenticator::new(&settings.auth, replay).await?;
            if !authenticator.has_clients() {
                return Err(StartupError::NoTrustedClient);
            }
            AuthMode::Required(Arc::new(authenticator))
        };
        Self::bind(settings, service, auth, clock)
    }

    /// Binds the listener for an already-built service and authentication mode; an
    /// `admin.token` shorter than 32 bytes is refused.
    pub fn bind(
        settings: &Settings,
        service: CdsService,
        auth: AuthMode,
        clock: Clock,
    ) -> Result<Application, StartupError> {
        let admin_token = AdminToken::from_setting(settings.admin.token.as_ref())?;
        let listen_error = |source| StartupError::Listen {
            bind: settings.server.bind.clone(),
            source,
        };
        let listener = TcpListener::bind(&settings.server.bind).map_err(listen_error)?;
        let port = listener.local_addr().map_err(listen_error)?.port();
        let live = LiveService::new(service, settings.knowledge.source());
        let state = AppState {
            service: live.clone(),
            max_body_bytes: settings.server.max_body_bytes,
            body_timeout: Duration::from_millis(settings.server.body_timeout_ms),
            hook_deadline: Duration::from_millis(settings.server.hook_deadline_ms),
            clock,
            auth,
            public_base_url: settings.server.public_base_url()?,
            admin_token,
            draining: Arc::default(),
        };
        let draining = state.draining.clone();
        let origins = settings.server.allowed_origins.clone();
        let state_history = live.current().history().cloned();
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(cors(&origins))
                .wrap(from_fn(record_metrics))
                .wrap(TracingLogger::<request_span::RequestSpan>::new())
                .app_data(web::Data::new(state.clone()))
                .configure(routes)
        })
        .client_request_timeout(Duration::from_millis(settings.server.header_timeout_ms))
        .client_disconnect_timeout(Duration::from_millis(settings.server.disconnect_timeout_ms))
        // SIGTERM and SIGINT are handled in `run_until_stopped`: readiness turns 503 first.
        .disable_signals()
        .listen(listener)
        .map_err(listen_error)?;
        if let Some(workers) = settings.server.workers {
            server = server.workers(workers);
        }
        Ok(Application {
            port,
            history: state_history,
            reloader: reload_on_sighup(live.clone()),
            service: live,
            server: server.shutdown_timeout(30).run(),
            draining,
            shutdown_delay: Duration::from_millis(settings.server.shutdown_delay_ms),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The service it answers with, to reload its knowledge.
    pub fn service(&self) -> &LiveService {
        &self.service
    }

    /// Serves until the process is stopped. On SIGHUP the knowledge is reloaded (see
    /// [`LiveService::reload`]). On SIGTERM or SIGINT `/ready` turns 503 at once while
    /// requests are still answered for `server.shutdown_delay_ms`, so a load balancer takes
    /// the instance out first; then the server stops accepting, drains in-flight requests (up
    /// to 30 s), and the history queue is flushed.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stopper = stop_on_signal(
            self.server.handle(),
            self.draining.clone(),
            self.shutdown_delay,
        );
        let result = self.server.await;
        stopper.abort();
        if let Some(reloader) = self.reloader {
            reloader.abort();
        }
        if let Some(history) = self.history {
            let flushed =
                tokio::time::timeout(std::time::Duration::from_secs(10), history.flush()).await;
            match flushed {
                Ok(Ok(())) => {
                    tracing::info!(written = history.written(), "history flushed; stopped")
                }
                _ => tracing::warn!(
                    left = history.queue_depth(),
                    "history could not be flushed before stopping"
                ),
            }
        }
        result
    }
}

/// On the first SIGTERM or SIGINT: readiness turns 503, and after `delay` the server stops
/// gracefully (a second signal stops it at once).
fn stop_on_signal(
    server: actix_web::dev::ServerHandle,
    draining: Arc<std::sync::atomic::AtomicBool>,
    delay: Duration,
) -> actix_web::rt::task::JoinHandle<()> {
    actix_web::rt::spawn(async move {
        stop_signal().await;
        draining.store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(
            delay_ms = delay.as_millis() as u64,
            "stopping: /ready answers 503; requests are answered until the delay ends, then drained"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => server.stop(true).await,
            _ = stop_signal() => server.stop(false).await,
        }
    })
}

/// The next SIGTERM or SIGINT.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Reloads the knowledge of `service` on every SIGHUP, from now on (the handler is in place
/// when this returns, before the service says it listens); a refused reload is logged at
/// warn and the knowledge loaded before keeps serving.
#[cfg(unix)]
fn reload_on_sighup(service: LiveService) -> Option<actix_web::rt::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload the knowledge with POST /admin/knowledge/reload");
            return None;
        }
    };
    Some(actix_web::rt::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the knowledge");
            // The outcome is logged and counted by the reload itself.
            let _ = service.reload().await;
        }
    }))
}

/// No SIGHUP here: the admin endpoint reloads.
#[cfg(not(unix))]
fn reload_on_sighup(_service: LiveService) -> Option<actix_web::rt::task::JoinHandle<()>> {
    None
}

/// Registers the endpoints.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/cds-services")
                .route(web::get().to(routes::discovery::discovery))
                .default_service(web::to(routes::fallback::method_not_allowed)),
        )
        .service(
            web::resource("/cds-services/{id}")
                .route(web::post().to(routes::invoke::invoke_within_deadline))
                .default_service(web::to(routes::fallback::method_not_allowed)),
        )
        .service(
            web::resource("/cds-services/{id}/feedback")
                .route(web::post().to(routes::feedback::feedback))
                .default_service(web::to(routes::fallback::method_not_allowed)),
        )
        .service(
            web::resource("/admin/report")
                .route(web::get().to(routes::admin::admin_report))
                .default_service(web::to(routes::fallback::method_not_allowed)),
        )
        .service(
            web::resource("/admin/knowledge/reload")
                .route(web::post().to(routes::admin::reload_knowledge))
                .default_service(web::to(routes::fallback::method_not_allowed)),
        )
        .service(
            web::resource("/rules/{id}")
                .route(web::get().to(routes::docs::rule_page))
                .default_service(web::to(routes::fallback::method_not_allowed)),
        )
        .service(
            web::resource("/metrics")
                .route(web::get().to(routes::probes::metrics))
                .default_service(web::to(routes::fallback::method_not_allowed)),
        )
        .service(
            web::resource("/openapi.json")
                .route(web::get().to(routes::docs::openapi))
                .default_service(web::to(routes::fallback::method_not_allowed)),
        )
        .service(
            web::resource("/ready")
                .route(web::get().to(routes::probes::ready))
                .default_service(web::to(routes::fallback::method_not_allowed)),
        )
        .service(
            web::resource("/health")
                .route(web::get().to(routes::probes::health))
                .default_service(web::to(routes::fallback::method_not_allowed)),
        )
        .default_service(web::to(routes::fallback::not_found));
}

/// CORS as the CDS Hooks sandbox needs it: preflights answered without authentication.
fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allowed_headers([header::CONTENT_TYPE, header::AUTHORIZATION, header::ACCEPT])
        .max_age(86_400);
    if origins.iter().any(|o| o == "*") {
        cors = cors.allow_any_origin().send_wildcard();
    } else {
        for origin in origins {
            cors = cors.allowed_origin(origin);
        }
    }
    cors
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Counts and times every request by endpoint kind (never by raw path, to keep labels bounded).
async fn record_metrics(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let endpoint = endpoint_kind(request.path());
    let started = std::time::Instant::now();
    let response = next.call(request).await?;
    let metrics = &crate::metrics::METRICS;
    metrics
        .latency
        .with_label_values(&[endpoint])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[endpoint, response.status().as_str()])
        .inc();
    Ok(response)
}

fn endpoint_kind(path: &str) -> &'static str {
    match path.trim_end_matches('/') {
        "/cds-services" => "discovery",
        p if p.starts_with("/cds-services/") && p.ends_with("/feedback") => "feedback",
        p if p.starts_with("/cds-services/") => "hook",
        "/admin/report" => "admin_report",
        "/admin/knowledge/reload" => "admin_reload",
        p if p.starts_with("/rules/") => "rule_page",
        "/health" => "health",
        "/ready" => "ready",
        "/metrics" => "metrics",
        "/openapi.json" => "openapi",
        _ => "other",
    }
}
