//! `POST /cds-services/{id}`: a hook invocation, answered with cards.

use actix_web::{HttpRequest, HttpResponse, web};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;

use super::accept_service_request;
use crate::fhir::FetchTally;
use crate::hooks::response::CdsResponse;
use crate::invoke::FindingReport;
use crate::server::AppState;
use crate::server::errors::ApiError;

/// `POST /cds-services/{id}`: a hook invocation.
#[utoipa::path(post, path = "/cds-services/{id}", tag = "CDS Hooks", security(("cds_hooks_jwt" = [])),
    params(("id" = crate::server::openapi::ServiceId, Path, description = "The service id")),
    request_body(content = crate::server::openapi::HookRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Cards (possibly none)", body = CdsResponse),
        (status = 400, description = "Malformed request; the OperationOutcome names the field", body = crate::server::openapi::OperationOutcome),
        (status = 401, description = "No valid CDS Hooks JWT", body = crate::server::openapi::OperationOutcome),
        (status = 404, description = "Unknown service", body = crate::server::openapi::OperationOutcome),
        (status = 412, description = "Required data is neither prefetched nor obtainable from the FHIR server", body = crate::server::openapi::OperationOutcome),
        (status = 413, description = "Body over the limit", body = crate::server::openapi::OperationOutcome),
        (status = 408, description = "The body did not arrive within server.body_timeout_ms", body = crate::server::openapi::OperationOutcome),
        (status = 415, description = "Not JSON", body = crate::server::openapi::OperationOutcome),
        (status = 500, description = "Internal failure", body = crate::server::openapi::OperationOutcome),
        (status = 503, description = "Not answered within server.hook_deadline_ms, or tokens cannot be verified right now; send again", body = crate::server::openapi::OperationOutcome)
    ))]
pub async fn invoke(
    state: web::Data<AppState>,
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let service_id = path.into_inner();
    // One knowledge from start to end, whatever a reload swaps in meanwhile.
    let service = state.service.current();
    let (caller, body) =
        accept_service_request(&state, &service, &request, &service_id, payload).await?;
    let answer = AssertUnwindSafe(service.answer(
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
    })?;
    count_fetches(&answer.fhir_fetches);
    let invocation = answer.result.map_err(|e| {
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
    count_cards(&invocation.findings);
    Ok(HttpResponse::Ok().json(invocation.response))
}

/// `cramp_cds_fhir_fetches_total{outcome}`: the prefetch keys fetched from the FHIR server.
fn count_fetches(fetches: &FetchTally) {
    let counter = &crate::metrics::METRICS.fhir_fetches;
    for (outcome, count) in [("ok", fetches.ok), ("error", fetches.failed)] {
        if count > 0 {
            counter.with_label_values(&[outcome]).inc_by(count);
        }
    }
}

/// `cramp_cds_cards_total{rule,indicator}`: the cards answered.
fn count_cards(findings: &[FindingReport]) {
    for finding in findings {
        crate::metrics::METRICS
            .cards
            .with_label_values(&[finding.rule_id.as_str(), finding.indicator.as_str()])
            .inc();
    }
}

/// [`invoke`] within `server.hook_deadline_ms`: an invocation still running then is
/// dropped and answered 503, a backstop over the body timeout and the FHIR fetch deadline.
pub async fn invoke_within_deadline(
    state: web::Data<AppState>,
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let deadline = state.hook_deadline;
    match tokio::time::timeout(deadline, invoke(state, path, request, payload)).await {
        Ok(answer) => answer,
        Err(_) => {
            let limit = deadline.as_millis();
            tracing::warn!(
                limit_ms = limit as u64,
                "hook not answered within server.hook_deadline_ms; answered 503"
            );
            Err(ApiError::Unavailable(format!(
                "the hook was not answered within the limit server.hook_deadline_ms ({limit} ms); send it again"
            )))
        }
    }
}
