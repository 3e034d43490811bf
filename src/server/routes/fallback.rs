//! Answers for what has no endpoint: an unknown path, or a known path with the wrong method.

use actix_web::{HttpRequest, HttpResponse, ResponseError};

use crate::server::errors::ApiError;

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
