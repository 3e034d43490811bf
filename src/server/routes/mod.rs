//! The HTTP endpoints, one file per endpoint group: discovery, invocation, feedback, the
//! admin endpoints (report, knowledge reload), operations probes, documents and the
//! fallbacks. Handlers read and check the body, call the
//! [`CdsService`](crate::invoke::CdsService) serving when the request started, and map
//! errors; no clinical logic lives here. This file holds what the groups share:
//! authentication and reading the body.

pub mod admin;
pub mod discovery;
pub mod docs;
pub mod fallback;
pub mod feedback;
pub mod invoke;
pub mod probes;

use actix_web::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{HttpRequest, web};

use futures::StreamExt;

use super::errors::ApiError;
use super::{AppState, AuthMode};
use crate::auth::{AuthFailure, FhirAccess};
use crate::invoke::CdsService;
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
/// else), a service `service` (the snapshot the request uses) knows, a JSON content type and
/// a body within the limit.
async fn accept_service_request(
    state: &AppState,
    service: &CdsService,
    request: &HttpRequest,
    service_id: &str,
    payload: web::Payload,
) -> Result<(Authorized, web::BytesMut), ApiError> {
    let access = authenticate(state, request).await?;
    if service.knowledge.service(service_id).is_none() {
        return Err(ApiError::NotFound(format!(
            "no CDS Service has the id '{service_id}'"
        )));
    }
    require_json(request)?;
    let body = read_body(request, payload, state.max_body_bytes).await?;
    Ok((access, body))
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
