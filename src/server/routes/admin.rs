//! The admin endpoints, behind the admin bearer token (`admin.token`): `GET /admin/report`,
//! the override-rate report, and `POST /admin/knowledge/reload`, which loads the knowledge
//! directory again and serves it without a restart.

use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::server::AppState;
use crate::server::errors::ApiError;
use crate::server::live_service::{ReloadError, Reloaded};
use crate::store::report::{ReportGrouping, parse_since};

/// Lets the request through only with `Authorization: Bearer {admin.token}`: 404 when the
/// admin endpoints are off, 401 otherwise (logged at warn, naming `endpoint`).
fn require_admin_token(
    state: &AppState,
    request: &HttpRequest,
    endpoint: &str,
) -> Result<(), ApiError> {
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
        tracing::warn!(
            endpoint,
            "admin request refused: wrong or missing admin token"
        );
        return Err(ApiError::Unauthorized);
    }
    Ok(())
}

/// `GET /admin/report`: the override-rate report, for the admin bearer token only;
/// `?by=knowledge-version` gives one row per knowledge version and rule.
pub async fn admin_report(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    require_admin_token(&state, &request, "report")?;
    let since = query
        .since
        .as_deref()
        .map(parse_since)
        .transpose()
        .map_err(|e| ApiError::BadRequest {
            field: "since".to_owned(),
            message: e.to_string(),
        })?;
    let grouping = match query.by.as_deref() {
        None => ReportGrouping::Rule,
        Some(by) => ReportGrouping::parse(by).ok_or_else(|| ApiError::BadRequest {
            field: "by".to_owned(),
            message: format!("'{by}' is not a grouping: use rule or knowledge-version"),
        })?,
    };
    let service = state.service.current();
    let history = service.history().ok_or(ApiError::Internal)?;
    if let Err(e) = history.flush().await {
        tracing::warn!(error = %e, "report built without the cards still queued");
    }
    let report = history
        .store()
        .report_by(since, grouping)
        .await
        .map_err(|e| {
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
    by: Option<String>,
}

/// `POST /admin/knowledge/reload`, for the admin bearer token only: loads and validates the
/// knowledge directory and serves it from the next request on. Answers 200
/// `{"outcome": "reloaded" | "unchanged", "previous": V, "current": V}`; 422
/// `{"error": "FILE: PROBLEM", "file": FILE, "current": V}` when the new knowledge is broken
/// (the old one keeps serving); 409 `{"error": .., "current": V}` on the built-in knowledge,
/// which cannot change. `V` is `{"version", "released", "hash"}`.
pub async fn reload_knowledge(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    require_admin_token(&state, &request, "knowledge reload")?;
    Ok(match state.service.reload().await {
        Ok(Reloaded::Replaced { previous, current }) => HttpResponse::Ok()
            .json(json!({"outcome": "reloaded", "previous": previous, "current": current})),
        Ok(Reloaded::Unchanged { current }) => HttpResponse::Ok()
            .json(json!({"outcome": "unchanged", "previous": current, "current": current})),
        Err(refused @ ReloadError::BuiltIn { .. }) => {
            let current = state.service.current().knowledge.version.clone();
            HttpResponse::Conflict().json(json!({"error": refused.to_string(), "current": current}))
        }
        Err(ReloadError::Invalid { source, current }) => HttpResponse::UnprocessableEntity()
            .json(json!({"error": source.to_string(), "file": source.file(), "current": current})),
        Err(ReloadError::Failed(reason)) => {
            tracing::error!(%reason, "knowledge reload failed");
            return Err(ApiError::Internal);
        }
    })
}
