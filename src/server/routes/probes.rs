//! Operations probes: metrics, readiness and liveness. None of them needs a token.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::server::AppState;

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let metrics = &crate::metrics::METRICS;
    if let Some(history) = state.service.current().history() {
        metrics.queue_depth.set(history.queue_depth() as i64);
        metrics.queue_dropped.set(history.dropped() as i64);
        metrics.queue_written.set(history.written() as i64);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}

/// `GET /ready`: whether the knowledge is loaded (and which version: `knowledge.version`)
/// and the database takes a write (a store that answers reads but cannot write, or whose
/// file was deleted, is not ready).
#[utoipa::path(get, path = "/ready", tag = "Operations",
    responses((status = 200, description = "Ready", body = crate::server::openapi::Readiness),
              (status = 503, description = "Not ready", body = crate::server::openapi::Readiness)))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().json(json!({
            "status": "draining",
            "reason": "the service is stopping (SIGTERM): requests are still answered until it stops accepting"
        }));
    }
    let service = state.service.current();
    let knowledge = &service.knowledge;
    let database = match service.history() {
        Some(history) => {
            let probe = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                history.store().probe_write(),
            );
            match probe.await {
                Ok(Ok(())) => Ok("writable"),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("unreachable: a write did not finish within 2 s".to_owned()),
            }
        }
        None => Ok("not configured"),
    };
    let body = json!({
        "status": if database.is_ok() { "ready" } else { "not ready" },
        "knowledge": {"loaded": true, "rules": knowledge.rules.len(), "services": knowledge.services.len(),
                      "valueSets": knowledge.valuesets.len(), "version": &knowledge.version},
        "database": match &database { Ok(state) => state.to_string(), Err(problem) => problem.clone() },
    });
    if database.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /health`: the process is up.
#[utoipa::path(get, path = "/health", tag = "Operations",
    responses((status = 200, description = "Alive", body = crate::server::openapi::Health)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}
