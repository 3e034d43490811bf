//! Fetching prefetch data the client did not send, from the EHR's FHIR server
//! (CDS Hooks 2.0 §2: only when the request carries both `fhirServer` and
//! `fhirAuthorization`).
//!
//! Plain HTTP GETs of the rendered template with `Authorization: Bearer` and
//! `Accept: application/fhir+json`, a timeout, no redirects, and `next` links
//! followed up to a bound, but only while they stay under the FHIR server's
//! base URL. The access token is never logged.
//!
//! What one hook request may read is bounded by a [`FetchBudget`]: each response
//! is read chunk by chunk up to `fhir.max_response_bytes` (a larger declared
//! `Content-Length` is refused before any of the body is read), all responses
//! of the request together up to `fhir.max_total_bytes`, and every page of every
//! key must be in by `fhir.deadline_ms` after the fetching started.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use super::access::is_under;
use crate::http_body::{BodyError, read_limited};

/// Settings for FHIR server access.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FhirClientSettings {
    /// Timeout of one HTTP request, in milliseconds.
    pub timeout_ms: u64,
    /// Most pages read per prefetch key (the first page included).
    pub max_pages: usize,
    /// Largest body of one FHIR response, in bytes; a larger one fails its prefetch key.
    pub max_response_bytes: usize,
    /// Most bytes read from the FHIR server for one hook request, all keys and pages together.
    pub max_total_bytes: usize,
    /// Time allowed for all fetches of one hook request (every page of every key), in
    /// milliseconds; keys not fetched by then fail.
    pub deadline_ms: u64,
}

impl Default for FhirClientSettings {
    fn default() -> Self {
        FhirClientSettings {
            timeout_ms: 5_000,
            max_pages: 10,
            max_response_bytes: 4 * 1024 * 1024,
            max_total_bytes: 16 * 1024 * 1024,
            deadline_ms: 4_000,
        }
    }
}

/// Why data could not be fetched.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The request could not be made or timed out.
    #[error("the FHIR server could not be reached: {0}")]
    Unreachable(String),
    /// The server answered with an error status.
    #[error("the FHIR server answered {0}")]
    Status(u16),
    /// A link or template pointed outside the FHIR server.
    #[error("{0} is not under the FHIR server's base URL")]
    OutsideServer(String),
    /// The pagination bound was reached.
    #[error("more than {0} pages; the rest was not read")]
    TooManyPages(usize),
    /// One response is larger than `fhir.max_response_bytes` (the limit, in bytes).
    #[error("a response exceeded the limit fhir.max_response_bytes ({0} bytes) and was dropped")]
    ResponseTooLarge(usize),
    /// The responses of one hook request together are larger than `fhir.max_total_bytes`
    /// (the limit, in bytes).
    #[error(
        "the responses to this hook request exceeded the limit fhir.max_total_bytes ({0} bytes); the rest was not read"
    )]
    TotalTooLarge(usize),
    /// The fetch deadline `fhir.deadline_ms` (in milliseconds) passed first.
    #[error("the fetch deadline fhir.deadline_ms ({0} ms) passed before it was read")]
    DeadlinePassed(u64),
}

/// The HTTP client for FHIR servers could not be built (its TLS backend failed to start).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct HttpClientError(#[source] reqwest::Error);

/// What one hook request may still read from the FHIR server, and until when, shared by
/// the fetches of all its prefetch keys.
#[derive(Debug)]
pub struct FetchBudget {
    max_total_bytes: usize,
    used_bytes: AtomicUsize,
    deadline: Instant,
    deadline_ms: u64,
}

impl FetchBudget {
    /// A budget of `max_total_bytes`, none of it used, that ends `deadline_ms` after `start`.
    pub fn new(max_total_bytes: usize, start: Instant, deadline_ms: u64) -> FetchBudget {
        FetchBudget {
            max_total_bytes,
            used_bytes: AtomicUsize::new(0),
            deadline: start + Duration::from_millis(deadline_ms),
            deadline_ms,
        }
    }

    /// Counts `bytes` more as read; fails once the total is over the budget.
    fn take(&self, bytes: usize) -> Result<(), FetchError> {
        let before = self.used_bytes.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.max_total_bytes {
            return Err(FetchError::TotalTooLarge(self.max_total_bytes));
        }
        Ok(())
    }

    /// Whether `bytes` more would still fit.
    fn fits(&self, bytes: u64) -> bool {
        let used = self.used_bytes.load(Ordering::Relaxed) as u64;
        used.saturating_add(bytes) <= self.max_total_bytes as u64
    }
}

/// An HTTP client for the EHR's FHIR server, shared by all requests.
#[derive(Debug, Clone)]
pub struct FhirClient {
    http: reqwest::Client,
    settings: FhirClientSettings,
}

/// One fetched page.
pub type Page = Vec<u8>;

impl FhirClient {
    /// Builds the client.
    pub fn new(settings: FhirClientSettings) -> Result<FhirClient, HttpClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_millis(settings.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cramp-cds/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(HttpClientError)?;
        Ok(FhirClient { http, settings })
    }

    /// Resolves a relative template URL (or an absolute link) against the server base,
    /// refusing anything not under it by [`is_under`] once resolved (so `..` segments are
    /// applied first, and `/fhirX` is not under `/fhir`).
    pub fn resolve(base: &Url, target: &str) -> Result<Url, FetchError> {
        let mut base_dir = base.clone();
        if !base_dir.path().ends_with('/') {
            base_dir.set_path(&format!("{}/", base_dir.path()));
        }
        let url = base_dir
            .join(target)
            .map_err(|_| FetchError::OutsideServer(target.to_owned()))?;
        if !is_under(&url, base) {
            return Err(FetchError::OutsideServer(target.to_owned()));
        }
        Ok(url)
    }

    /// A fresh budget for one hook request, from these settings, starting now.
    pub fn budget(&self) -> FetchBudget {
        FetchBudget::new(
            self.settings.max_total_bytes,
            Instant::now(),
            self.settings.deadline_ms,
        )
    }

    /// GETs `target` (relative to `base`, or an absolute link under it) and follows `next`
    /// links, returning every page's body, within `budget` and before its deadline.
    pub async fn fetch_all(
        &self,
        base: &Url,
        target: &str,
        access_token: &str,
        budget: &FetchBudget,
    ) -> Result<Vec<Page>, FetchError> {
        tokio::time::timeout_at(
            budget.deadline,
            self.fetch_pages(base, target, access_token, budget),
        )
        .await
        .unwrap_or(Err(FetchError::DeadlinePassed(budget.deadline_ms)))
    }

    async fn fetch_pages(
        &self,
        base: &Url,
        target: &str,
        access_token: &str,
        budget: &FetchBudget,
    ) -> Result<Vec<Page>, FetchError> {
        let mut pages = Vec::new();
        let mut next = Some(Self::resolve(base, target)?);
        while let Some(url) = next.take() {
            if pages.len() >= self.settings.max_pages {
                return Err(FetchError::TooManyPages(self.settings.max_pages));
            }
            let body = self.get(&url, access_token, budget).await?;
            next = next_link(&body)
                .map(|link| Self::resolve(base, &link))
                .transpose()?;
            pages.push(body);
        }
        Ok(pages)
    }

    async fn get(
        &self,
        url: &Url,
        access_token: &str,
        budget: &FetchBudget,
    ) -> Result<Page, FetchError> {
        tracing::debug!(path = url.path(), "fetching from the FHIR server");
        let response = self
            .http
            .get(url.clone())
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/fhir+json")
            .send()
            .await
            .map_err(|e| FetchError::Unreachable(describe(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let limit = self.settings.max_response_bytes;
        // A declared length over the response limit says so before the budget does.
        let declared = response.content_length();
        if declared.is_some_and(|length| length <= limit as u64 && !budget.fits(length)) {
            return Err(FetchError::TotalTooLarge(budget.max_total_bytes));
        }
        read_limited(response, limit, |bytes| budget.take(bytes))
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => FetchError::ResponseTooLarge(limit),
                BodyError::Read(e) => FetchError::Unreachable(describe(&e)),
                BodyError::Refused(e) => e,
            })
    }
}

/// A reqwest error without the URL (which may carry patient identifiers).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    if error.is_connect() {
        return "connection failed".to_owned();
    }
    let text = error.to_string();
    match error.url() {
        Some(url) => text.replace(url.as_str(), "[url]"),
        None => text,
    }
}

#[derive(Deserialize)]
struct LinksOnly {
    #[serde(default)]
    link: Vec<Link>,
}

#[derive(Deserialize)]
struct Link {
    relation: Option<String>,
    url: Option<String>,
}

fn next_link(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<LinksOnly>(body)
        .ok()?
        .link
        .into_iter()
        .find(|l| l.relation.as_deref() == Some("next"))
        .and_then(|l| l.url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_resolves_under_the_base_and_a_foreign_link_is_refused() {
        let base = Url::parse("https://ehr.example/fhir").unwrap();
        let url = FhirClient::resolve(&base, "Condition?patient=1").unwrap();
        assert_eq!(url.as_str(), "https://ehr.example/fhir/Condition?patient=1");
        assert!(FhirClient::resolve(&base, "https://evil.example/fhir/Condition").is_err());
        assert!(FhirClient::resolve(&base, "https://ehr.example/other/Condition").is_err());
        assert!(FhirClient::resolve(&base, "https://ehr.example/fhir/Condition?page=2").is_ok());
    }

    #[test]
    fn a_budget_counts_bytes_across_responses_and_refuses_past_its_total() {
        let budget = FetchBudget::new(100, Instant::now(), 1_000);
        assert!(budget.fits(100));
        assert!(budget.take(60).is_ok());
        assert!(!budget.fits(41));
        assert!(budget.take(40).is_ok());
        assert!(matches!(
            budget.take(1),
            Err(FetchError::TotalTooLarge(100))
        ));
    }

    #[test]
    fn a_link_to_a_sibling_of_the_base_path_or_up_out_of_it_is_refused() {
        let base = Url::parse("https://ehr.example/fhir").unwrap();
        for target in [
            "https://ehr.example/fhirX/Observation",
            "/fhirX/Observation",
            "../fhirX/Observation",
            "Patient/../../r4-evil/steal",
            "Patient/%2e%2e/%2e%2e/r4-evil",
            "Patient/..%2f..%2fadmin",
            "//evil.example/fhir/Patient",
        ] {
            assert!(FhirClient::resolve(&base, target).is_err(), "{target}");
        }
        let url = FhirClient::resolve(&base, "Patient/../Observation?patient=1").unwrap();
        assert_eq!(
            url.as_str(),
            "https://ehr.example/fhir/Observation?patient=1"
        );
    }
}
