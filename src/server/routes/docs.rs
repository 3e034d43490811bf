//! Documents the service serves about itself: a rule's page and the OpenAPI description.

use actix_web::{HttpResponse, ResponseError, web};

use crate::server::AppState;
use crate::server::errors::ApiError;

/// `GET /rules/{id}`: how a rule decides, for the clinician who follows a card's link.
pub async fn rule_page(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let knowledge = &state.service.current().knowledge;
    match knowledge.rules.iter().find(|r| r.id == *path) {
        Some(rule) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(crate::docs::rule_html(rule, knowledge)),
        None => ApiError::NotFound(format!("no rule has the id '{path}'")).error_response(),
    }
}

/// `GET /openapi.json`: this service's OpenAPI 3 description, its service ids those of the
/// loaded knowledge.
pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(crate::server::openapi::document(
        &state.service.current().knowledge,
    ))
}
