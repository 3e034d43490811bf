//! `GET /admin/report`: the override-rate report, behind the admin bearer token.

use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::server::AppState;
use crate::server::errors::ApiError;
use crate::store::report::parse_since;

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
        .map(parse_since)
        .transpose()
        .map_err(|e| ApiError::BadRequest {
            field: "since".to_owned(),
            message: e.to_string(),
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
