//! The HTTP endpoints: discovery, invocation and liveness. Handlers read and
//! check the body, call the [`CdsService`](crate::invoke::CdsService), and map
//! errors; no clinical logic lives here.

use actix_web::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};
use serde_json::json;

use super::errors::ApiError;
use super::{AppState, AuthMode};
use crate::auth::{AuthFailure, FhirAccess};
use crate::hooks::response::CdsResponse;
use crate::store::ClientScope;

/// An authenticated caller: the FHIR servers it may make the service contact, and the scope
/// its cards, feedback and suppression belong to.
struct Authorized {
    fhir_access: FhirAccess,
    client: ClientScope,
}

/// Authenticates the request as CDS Hooks requires, before anything else is done.
async fn authenticate(state: &AppState, request: &HttpRequest) -> Result<Authorized, ApiError> {
    match &state.auth {
        AuthMode::Disabled { trial_access } => {
            tracing::warn!(
                path = request.path(),
                "unauthenticated request accepted (authentication disabled)"
            );
            Ok(Authorized {
                fhir_access: trial_access.clone(),
                client: ClientScope::local(),
            })
        }
        AuthMode::Required(authenticator) => {
            let audience = format!("{}{}", state.public_base_url, request.path());
            let header = request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match authenticator
                .verify(header, &audience, state.clock.now())
                .await
            {
                Ok(caller) => Ok(Authorized {
                    fhir_access: caller.client.fhir_access.clone(),
                    client: ClientScope::of(&caller.client.issuer, caller.tenant.as_deref()),
                }),
                Err(AuthFailure::ReplayCacheUnavailable(reason)) => {
                    // Not the caller's fault: a 401 would send the EHR looking for a key problem.
                    tracing::error!(%reason, "authentication could not check the replay cache; answered 503");
                    Err(ApiError::Unavailable(
                        "the service cannot verify tokens right now; send the request again"
                            .to_owned(),
                    ))
                }
                Err(failure) => {
                    crate::metrics::METRICS
                        .auth_failures
                        .with_label_values(&[failure.reason()])
                        .inc();
                    tracing::warn!(path = request.path(), reason = failure.reason(), detail = %failure, "authentication failed");
                    Err(ApiError::Unauthorized)
                }
            }
        }
    }
}

/// What every POST to a service needs, in order: an authenticated caller (before anything
/// else), a known service, a JSON content type and a body within the limit.
async fn accept_service_request(
    state: &AppState,
    request: &HttpRequest,
    service_id: &str,
    payload: web::Payload,
) -> Result<(Authorized, web::BytesMut), ApiError> {
    let access = authenticate(state, request).await?;
    if state.service.knowledge.service(service_id).is_none() {
        return Err(ApiError::NotFound(format!(
            "no CDS Service has the id '{service_id}'"
        )));
    }
    require_json(request)?;
    let body = read_body(request, payload, state.max_body_bytes).await?;
    Ok((access, body))
}

/// `GET /cds-services`: the service definitions.
#[utoipa::path(get, path = "/cds-services", tag = "CDS Hooks", security(("cds_hooks_jwt" = [])),
    responses(
        (status = 200, description = "The CDS Services", body = super::openapi::DiscoveryResponse),
        (status = 401, description = "No valid CDS Hooks JWT", body = super::openapi::OperationOutcome)
    ))]
pub async fn discovery(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &request).await?;
    let services: Vec<_> = state
        .service
        .knowledge
        .services
        .iter()
        .map(|s| &s.definition)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "services": services })))
}

/// `POST /cds-services/{id}`: a hook invocation.
#[utoipa::path(post, path = "/cds-services/{id}", tag = "CDS Hooks", security(("cds_hooks_jwt" = [])),
    params(("id" = super::openapi::ServiceId, Path, description = "The service id")),
    request_body(content = super::openapi::HookRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Cards (possibly none)", body = CdsResponse),
        (status = 400, description = "Malformed request; the OperationOutcome names the field", body = super::openapi::OperationOutcome),
        (status = 401, description = "No valid CDS Hooks JWT", body = super::openapi::OperationOutcome),
        (status = 404, description = "Unknown service", body = super::openapi::OperationOutcome),
        (status = 412, description = "Required data is neither prefetched nor obtainable from the FHIR server", body = super::openapi::OperationOutcome),
        (status = 413, description = "Body over the limit", body = super::openapi::OperationOutcome),
        (status = 408, description = "The body did not arrive within server.body_timeout_ms", body = super::openapi::OperationOutcome),
        (status = 415, description = "Not JSON", body = super::openapi::OperationOutcome),
        (status = 500, description = "Internal failure", body = super::openapi::OperationOutcome),
        (status = 503, description = "Not answered within server.hook_deadline_ms, or tokens cannot be verified right now; send again", body = super::openapi::OperationOutcome)
    ))]
pub async fn invoke(
    state: web::Data<AppState>,
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let service_id = path.into_inner();
    let (caller, body) = accept_service_request(&state, &request, &service_id, payload).await?;
    let invocation = AssertUnwindSafe(state.service.invoke(
        &service_id,
        &body,
        state.clock.now(),
        &caller.fhir_access,
        &caller.client,
    ))
    .catch_unwind()
    .await
    .map_err(|_| {
        tracing::error!(service = %service_id, "hook evaluation panicked; answered 500");
        ApiError::Internal
    })?
    .map_err(|e| {
        // Messages may quote request values (patient ids among them): only at debug, escaped.
        let part = match &e {
            crate::invoke::InvokeError::UnknownService(_) => "service".to_owned(),
            crate::invoke::InvokeError::BadRequest(request) => request.field.clone(),
            crate::invoke::InvokeError::MissingData { keys, .. } => keys.join(","),
        };
        tracing::info!(service = %service_id, part = %crate::telemetry::escape_for_log(&part), "hook request refused");
        tracing::debug!(error = %crate::telemetry::escape_for_log(&e.to_string()), "hook request refused");
        ApiError::from(e)
    })?;
    if !invocation.failures.is_empty() {
        tracing::warn!(
            service = %service_id,
            failed_rules = ?invocation.failures.iter().map(|f| &f.rule_id).collect::<Vec<_>>(),
            "some rules failed and were skipped"
        );
    }
    Ok(HttpResponse::Ok().json(invocation.response))
}

/// `POST /cds-services/{id}/feedback`: what the clinician did with cards.
#[utoipa::path(post, path = "/cds-services/{id}/feedback", tag = "CDS Hooks", security(("cds_hooks_jwt" = [])),
    params(("id" = super::openapi::ServiceId, Path, description = "The service id")),
    request_body(content = super::openapi::FeedbackRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored (idempotent)", body = super::openapi::FeedbackResponse),
        (status = 400, description = "Malformed feedback; the OperationOutcome names the field", body = super::openapi::OperationOutcome),
        (status = 401, description = "No valid CDS Hooks JWT", body = super::openapi::OperationOutcome),
        (status = 404, description = "Unknown service", body = super::openapi::OperationOutcome),
        (status = 408, description = "The body did not arrive within server.body_timeout_ms", body = super::openapi::OperationOutcome),
        (status = 413, description = "Body over the limit", body = super::openapi::OperationOutcome),
        (status = 415, description = "Not JSON", body = super::openapi::OperationOutcome),
        (status = 503, description = "Not stored (the database cannot take the write); send again", body = super::openapi::OperationOutcome)
    ))]
pub async fn feedback(
    state: web::Data<AppState>,
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let service_id = path.into_inner();
    let (caller, body) = accept_service_request(&state, &request, &service_id, payload).await?;
    let entries = crate::hooks::feedback::parse_feedback(&body, &service_id, state.clock.now())
        .map_err(|e| ApiError::BadRequest {
            field: e.field,
            message: e.message,
        })?;
    let history = state.service.history().ok_or(ApiError::Internal)?;
    let unknown = history
        .store_feedback(&caller.client, &entries, state.clock.now())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "feedback could not be stored");
            ApiError::Unavailable("the feedback could not be stored; send it again".to_owned())
        })?;
    if !unknown.is_empty() {
        tracing::info!(service = %service_id, unknown = unknown.len(), "feedback for cards this service never issued");
    }
    Ok(HttpResponse::Ok().json(json!({ "stored": entries.len(), "unknownCards": unknown })))
}

/// `GET /admin/report`: the override-rate report, for the admin bearer token only.
pub async fn admin_report(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    let Some(expected) = &state.admin_token else {
        return Err(ApiError::NotFound(
            "the admin endpoints are off: set admin.token".to_owned(),
        ));
    };
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !expected.matches(presented) {
        tracing::warn!("admin report refused: wrong or missing admin token");
        return Err(ApiError::Unauthorized);
    }
    let since = query
        .since
        .as_deref()
        .map(crate::cli::parse_since)
        .transpose()
        .map_err(|message| ApiError::BadRequest {
            field: "since".to_owned(),
            message,
        })?;
    let history = state.service.history().ok_or(ApiError::Internal)?;
    if let Err(e) = history.flush().await {
        tracing::warn!(error = %e, "report built without the cards still queued");
    }
    let report = history.store().report(since).await.map_err(|e| {
        tracing::error!(error = %e, "report failed");
        ApiError::Unavailable("the report could not be built".to_owned())
    })?;
    Ok(match query.format.as_deref() {
        Some("csv") => HttpResponse::Ok()
            .content_type("text/csv")
            .body(report.to_csv()),
        Some("text") => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(report.to_text()),
        _ => HttpResponse::Ok().json(report),
    })
}

/// Query of `GET /admin/report`.
#[derive(Debug, serde::Deserialize)]
pub struct ReportQuery {
    since: Option<String>,
    format: Option<String>,
}

/// `GET /rules/{id}`: how a rule decides, for the clinician who follows a card's link.
pub async fn rule_page(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let knowledge = &state.service.knowledge;
    match knowledge.rules.iter().find(|r| r.id == *path) {
        Some(rule) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(crate::docs::rule_html(rule, knowledge)),
        None => ApiError::NotFound(format!("no rule has the id '{path}'")).error_response(),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let metrics = &crate::metrics::METRICS;
    if let Some(history) = state.service.history() {
        metrics.queue_depth.set(history.queue_depth() as i64);
        metrics.queue_dropped.set(history.dropped() as i64);
        metrics.queue_written.set(history.written() as i64);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}

/// `GET /ready`: whether the knowledge is loaded and the database takes a write (a store
/// that answers reads but cannot write, or whose file was deleted, is not ready).
#[utoipa::path(get, path = "/ready", tag = "Operations",
    responses((status = 200, description = "Ready", body = super::openapi::Readiness),
              (status = 503, description = "Not ready", body = super::openapi::Readiness)))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let knowledge = &state.service.knowledge;
    let database = match state.service.history() {
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
                      "valueSets": knowledge.valuesets.len()},
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
    responses((status = 200, description = "Alive", body = super::openapi::Health)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /openapi.json`: this service's OpenAPI 3 description.
pub async fn openapi() -> HttpResponse {
    use utoipa::OpenApi;
    HttpResponse::Ok().json(super::openapi::ApiDoc::openapi())
}

/// Any path that does not exist.
pub async fn not_found(request: HttpRequest) -> HttpResponse {
    ApiError::NotFound(format!("no endpoint at {}", request.path())).error_response()
}

/// A known path called with the wrong method.
pub async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    ApiError::MethodNotAllowed(format!(
        "{} is not supported on {}",
        request.method(),
        request.path()
    ))
    .error_response()
}

fn require_json(request: &HttpRequest) -> Result<(), ApiError> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else if essence.is_empty() {
        Err(ApiError::UnsupportedMediaType(
            "the request has no Content-Type; send application/json".to_owned(),
        ))
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type '{essence}' is not supported; send application/json"
        )))
    }
}

/// Reads the body up to `limit` bytes, within `server.body_timeout_ms` (taken from the app
/// state), so a client that stalls after its headers is answered 408 rather than held open.
async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let timeout = request.app_data::<web::Data<AppState>>().map_or_else(
        || {
            let default = crate::config::ServerSettings::default().body_timeout_ms;
            std::time::Duration::from_millis(default)
        },
        |state| state.body_timeout,
    );
    let read = async {
        let mut body = web::BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadRequest {
                field: "body".to_owned(),
                message: format!("the request body could not be read: {e}"),
            })?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| Err(ApiError::RequestTimeout(timeout.as_millis() as u64)))
}
