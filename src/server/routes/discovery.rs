//! `GET /cds-services`: the service definitions the EHR discovers, each with an `extension`
//! naming the knowledge version that answers it.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::authenticate;
use crate::knowledge::services::ServiceDefinition;
use crate::server::AppState;
use crate::server::errors::ApiError;

/// `GET /cds-services`: the service definitions.
#[utoipa::path(get, path = "/cds-services", tag = "CDS Hooks", security(("cds_hooks_jwt" = [])),
    responses(
        (status = 200, description = "The CDS Services", body = crate::server::openapi::DiscoveryResponse),
        (status = 401, description = "No valid CDS Hooks JWT", body = crate::server::openapi::OperationOutcome)
    ))]
pub async fn discovery(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authenticate(&state, &request).await?;
    let knowledge = &state.service.current().knowledge;
    let extension = knowledge.version.extension();
    let services: Vec<_> = knowledge
        .services
        .iter()
        .map(|s| ServiceDefinition {
            // Each service's `extension` names the knowledge it answers from.
            extension: Some(extension.clone()),
            ..s.definition.clone()
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "services": services })))
}
