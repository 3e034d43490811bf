//! `POST /cds-services/{id}/feedback`: what the clinician did with the cards.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::accept_service_request;
use crate::server::AppState;
use crate::server::errors::ApiError;

/// `POST /cds-services/{id}/feedback`: what the clinician did with cards.
#[utoipa::path(post, path = "/cds-services/{id}/feedback", tag = "CDS Hooks", security(("cds_hooks_jwt" = [])),
    params(("id" = crate::server::openapi::ServiceId, Path, description = "The service id")),
    request_body(content = crate::server::openapi::FeedbackRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored (idempotent)", body = crate::server::openapi::FeedbackResponse),
        (status = 400, description = "Malformed feedback; the OperationOutcome names the field", body = crate::server::openapi::OperationOutcome),
        (status = 401, description = "No valid CDS Hooks JWT", body = crate::server::openapi::OperationOutcome),
        (status = 404, description = "Unknown service", body = crate::server::openapi::OperationOutcome),
        (status = 408, description = "The body did not arrive within server.body_timeout_ms", body = crate::server::openapi::OperationOutcome),
        (status = 413, description = "Body over the limit", body = crate::server::openapi::OperationOutcome),
        (status = 415, description = "Not JSON", body = crate::server::openapi::OperationOutcome),
        (status = 503, description = "Not stored (the database cannot take the write); send again", body = crate::server::openapi::OperationOutcome)
    ))]
pub async fn feedback(
    state: web::Data<AppState>,
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let service_id = path.into_inner();
    let service = state.service.current();
    let (caller, body) =
        accept_service_request(&state, &service, &request, &service_id, payload).await?;
    let entries = crate::hooks::feedback::parse_feedback(&body, &service_id, state.clock.now())
        .map_err(|e| ApiError::BadRequest {
            field: e.field,
            message: e.message,
        })?;
    let history = service.history().ok_or(ApiError::Internal)?;
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
