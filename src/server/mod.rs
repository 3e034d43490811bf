//! The actix-web application: routes, CORS, request tracing and error
//! mapping. [`Application::build`] binds the listener so tests can start the
//! real app on port 0 and talk HTTP to it.

pub mod errors;
mod routes;

use std::net::TcpListener;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::{Method, header};
use actix_web::{App, HttpServer, web};
use chrono::{DateTime, Utc};
use tracing_actix_web::TracingLogger;

use crate::config::Settings;
use crate::invoke::CdsService;

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

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The CDS service.
    pub service: CdsService,
    /// Body size limit in bytes.
    pub max_body_bytes: usize,
    /// The evaluation time source.
    pub clock: Clock,
}

/// A bound, not yet running, server.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds `settings.server.bind` and builds the server.
    pub fn build(settings: &Settings, service: CdsService) -> std::io::Result<Application> {
        Self::build_with_clock(settings, service, Clock::System)
    }

    /// Like [`Application::build`], with the evaluation time taken from `clock`.
    pub fn build_with_clock(
        settings: &Settings,
        service: CdsService,
        clock: Clock,
    ) -> std::io::Result<Application> {
        let listener = TcpListener::bind(&settings.server.bind)?;
        let port = listener.local_addr()?.port();
        let state = AppState {
            service,
            max_body_bytes: settings.server.max_body_bytes,
            clock,
        };
        let origins = settings.server.allowed_origins.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(cors(&origins))
                .wrap(TracingLogger::default())
                .app_data(web::Data::new(state.clone()))
                .configure(routes)
        })
        .listen(listener)?;
        if let Some(workers) = settings.server.workers {
            server = server.workers(workers);
        }
        Ok(Application {
            port,
            server: server.run(),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the process is stopped.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Registers the endpoints.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/cds-services")
                .route(web::get().to(routes::discovery))
                .default_service(web::to(routes::method_not_allowed)),
        )
        .service(
            web::resource("/cds-services/{id}")
                .route(web::post().to(routes::invoke))
                .default_service(web::to(routes::method_not_allowed)),
        )
        .service(
            web::resource("/rules/{id}")
                .route(web::get().to(routes::rule_page))
                .default_service(web::to(routes::method_not_allowed)),
        )
        .service(
            web::resource("/health")
                .route(web::get().to(routes::health))
                .default_service(web::to(routes::method_not_allowed)),
        )
        .default_service(web::to(routes::not_found));
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
