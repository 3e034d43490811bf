//! Every HTTP error in one place: each maps to a status and a FHIR
//! OperationOutcome body that says what was wrong (and names the field, in
//! `expression`), without internals.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::invoke::InvokeError;

/// An error answered over HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; `field` names the part.
    #[error("{message}")]
    BadRequest {
        /// JSON path of the field, or `body`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// 401: the request is not authenticated; the reason is logged, not sent.
    #[error("The request is not authenticated.")]
    Unauthorized,
    /// 404: no such service or path.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 408: the request body did not arrive within `server.body_timeout_ms` (in milliseconds).
    #[error("the request body was not received within the limit server.body_timeout_ms ({0} ms)")]
    RequestTimeout(u64),
    /// 412: required data could not be obtained.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413: the body is over the limit.
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// 415: not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 503: a dependency (the database) is unavailable; the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// 500: something failed inside; the details are logged, not sent.
    #[error("internal error")]
    Internal,
}

impl From<InvokeError> for ApiError {
    fn from(error: InvokeError) -> Self {
        match error {
            InvokeError::UnknownService(_) => ApiError::NotFound(error.to_string()),
            InvokeError::BadRequest(e) => ApiError::BadRequest {
                field: e.field,
                message: e.message,
            },
            InvokeError::MissingData { .. } => ApiError::PreconditionFailed(error.to_string()),
        }
    }
}

impl ApiError {
    fn issue_code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "invalid",
            ApiError::Unauthorized => "login",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed(_) => "not-supported",
            ApiError::RequestTimeout(_) => "timeout",
            ApiError::PreconditionFailed(_) => "incomplete",
            ApiError::PayloadTooLarge(_) => "too-costly",
            ApiError::UnsupportedMediaType(_) => "structure",
            ApiError::Unavailable(_) => "transient",
            ApiError::Internal => "exception",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (diagnostics, expression) = match self {
            ApiError::BadRequest { field, message } => {
                (format!("{field}: {message}"), Some(field.clone()))
            }
            other => (other.to_string(), None),
        };
        let mut issue = json!({
            "severity": "error",
            "code": self.issue_code(),
            "diagnostics": diagnostics,
        });
        if let Some(expression) = expression {
            issue["expression"] = json!([expression]);
        }
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"));
        }
        response
            .content_type("application/json")
            .json(json!({ "resourceType": "OperationOutcome", "issue": [issue] }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn an_internal_error_is_a_500_that_reveals_nothing() {
        let response = ApiError::Internal.error_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response.into_body().try_into_bytes().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["resourceType"], "OperationOutcome");
        assert_eq!(json["issue"][0]["diagnostics"], "internal error");
    }

    #[test]
    fn a_body_timeout_is_a_408_naming_the_setting_and_its_value() {
        let response = ApiError::RequestTimeout(1_000).error_response();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        let body = response.into_body().try_into_bytes().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["issue"][0]["code"], "timeout");
        let diagnostics = json["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(
            diagnostics.contains("server.body_timeout_ms (1000 ms)"),
            "{diagnostics}"
        );
    }

    #[test]
    fn a_bad_request_names_the_field_in_expression() {
        let error = ApiError::BadRequest {
            field: "context.patientId".into(),
            message: "is required".into(),
        };
        let body = error.error_response().into_body().try_into_bytes().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["issue"][0]["expression"][0], "context.patientId");
        assert_eq!(json["issue"][0]["code"], "invalid");
    }
}
