//! The span every request is logged in: tracing-actix-web's fields, but with
//! the path alone as `http.target` (a query string can carry a token, as a
//! misbehaving client's `?access_token=` does) and every header-derived or
//! error text escaped for a text log. Not for logging bodies or headers.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Version;
use actix_web::http::header::USER_AGENT;
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing::field::{Empty, display};
use tracing_actix_web::{RequestId, RootSpanBuilder};

use crate::telemetry::escape_for_log;

/// The root span builder of every request (see the module documentation).
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let connection = request.connection_info();
        let method = request.method().as_str();
        let route = escape_for_log(
            &request
                .match_pattern()
                .unwrap_or_else(|| "default".to_owned()),
        );
        let user_agent = request
            .headers()
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::info_span!(
            "HTTP request",
            http.method = %method,
            http.route = %route,
            http.flavor = %flavor(request.version()),
            http.scheme = %escape_for_log(connection.scheme()),
            http.host = %escape_for_log(connection.host()),
            http.client_ip = %escape_for_log(connection.realip_remote_addr().unwrap_or("")),
            http.user_agent = %escape_for_log(user_agent),
            http.target = %target(request),
            http.status_code = Empty,
            otel.name = %format!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = Empty,
            request_id = %request_id,
            exception.message = Empty,
            exception.details = Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let (status, error) = match outcome {
            Ok(response) => (
                response.status(),
                response.response().error().map(Error::as_response_error),
            ),
            Err(error) => (
                error.as_response_error().status_code(),
                Some(error.as_response_error()),
            ),
        };
        span.record("http.status_code", status.as_u16());
        let Some(error) = error else {
            span.record("otel.status_code", "OK");
            return;
        };
        span.record(
            "exception.message",
            display(escape_for_log(&error.to_string())),
        );
        span.record(
            "exception.details",
            display(escape_for_log(&format!("{error:?}"))),
        );
        let failed = !status.is_client_error();
        span.record("otel.status_code", if failed { "ERROR" } else { "OK" });
    }
}

/// The HTTP version as tracing-actix-web's default span names it.
fn flavor(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2.0",
        Version::HTTP_3 => "3.0",
        _ => "other",
    }
}

/// The path called, without its query string (marked when there was one).
fn target(request: &ServiceRequest) -> String {
    let path = escape_for_log(request.path());
    if request.query_string().is_empty() {
        path
    } else {
        format!("{path}?[query redacted]")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use actix_web::{App, HttpResponse, test, web};
    use tracing_actix_web::TracingLogger;

    use super::*;

    /// A log sink for one test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[actix_web::test]
    async fn a_token_in_the_query_string_never_reaches_the_request_log() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(
            App::new()
                .wrap(TracingLogger::<RequestSpan>::new())
                .route(
                    "/cds-services",
                    web::get().to(|| async {
                        tracing::warn!("authentication failed");
                        HttpResponse::Unauthorized().finish()
                    }),
                )
                .route(
                    "/cds-services/{id}",
                    web::post().to(|| async {
                        Err::<HttpResponse, _>(actix_web::error::ErrorNotFound(
                            "no CDS Service has the id 'x\nFORGED LINE'",
                        ))
                    }),
                ),
        )
        .await;
        let request = test::TestRequest::get()
            .uri("/cds-services?access_token=eyJhbGciOiJFUzM4NCJ9.SECRET-CLAIMS.SIGNATURE&x=1")
            .to_request();
        test::call_service(&app, request).await;
        let request = test::TestRequest::post()
            .uri("/cds-services/x%0AFORGED?jwt=SECRET-CLAIMS")
            .to_request();
        test::call_service(&app, request).await;

        let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
        assert!(logs.contains("authentication failed"), "{logs}");
        assert!(logs.contains("http.flavor=1.1"), "{logs}");
        assert!(
            logs.contains("http.target=/cds-services?[query redacted]"),
            "{logs}"
        );
        assert!(!logs.contains("SECRET-CLAIMS"), "{logs}");
        assert!(!logs.contains("access_token"), "{logs}");
        assert!(
            !logs.contains("\nFORGED LINE"),
            "an error's text is escaped: {logs}"
        );
    }
}
