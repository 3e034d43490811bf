//! Authenticating EHRs the CDS Hooks way (2.0 §6): a signed JWT in
//! `Authorization: Bearer`, from a configured trusted issuer, verified with the
//! issuer's JWK Set, addressed to the exact endpoint called, fresh, short-lived
//! and never replayed. Not for deciding what a caller may see: every trusted
//! client gets the same cards. A failure's reason is logged (without the token)
//! and the caller gets a bare 401.

pub mod keys;
pub mod replay;
pub mod shared_replay;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};

pub use crate::fhir::{FhirAccess, FhirServerError};
use keys::{FetchPolicy, KeyFileError, KeySource, KeyStore, KeyStoreError};
pub use replay::{InMemoryReplayCache, ReplayCache, ReplayCacheError};
pub use shared_replay::SharedReplayCache;

use crate::telemetry::escape_for_log;

/// Authentication settings (`[auth]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Signing algorithms accepted (ES384 and RS384 by default; `none` and HS* are never accepted).
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_seconds: i64,
    /// Longest accepted token lifetime (`exp - iat`), in seconds.
    pub max_lifetime_seconds: i64,
    /// Least time between two fetches of a JWK Set URL, and least time a fetched set is used
    /// before it is refetched (even when its cache headers say less), in seconds.
    pub jwks_min_refresh_seconds: u64,
    /// Most time a fetched JWK Set is used before it is refetched (even when its cache headers
    /// say more), in seconds; at most a year. If refetching fails its keys stay in use until
    /// twice this time after their fetch, then they are dropped.
    pub jwks_max_age_seconds: u64,
    /// Timeout of a JWK Set fetch, in milliseconds.
    pub jwks_timeout_ms: u64,
    /// Largest JWK Set response read from a URL, in bytes (256 KiB); a larger one is refused
    /// with a warning and the cached keys stay in use.
    pub jwks_max_bytes: usize,
    /// The trusted CDS clients.
    pub clients: Vec<ClientSettings>,
    /// FHIR servers the service may call for unauthenticated requests (only with `serve --allow-unauthenticated`).
    pub trial_fhir_servers: Vec<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            algorithms: vec!["ES384".to_owned(), "RS384".to_owned()],
            leeway_seconds: 30,
            max_lifetime_seconds: 3600,
            jwks_min_refresh_seconds: 60,
            jwks_max_age_seconds: 3600,
            jwks_timeout_ms: 3000,
            jwks_max_bytes: 256 * 1024,
            clients: Vec::new(),
            trial_fhir_servers: Vec::new(),
        }
    }
}

/// One trusted CDS client (`[[auth.clients]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// A file holding its JWK Set.
    pub jwks_file: Option<String>,
    /// A URL serving its JWK Set.
    pub jwks_url: Option<String>,
    /// `jku` header values honoured for this client; any other `jku` is ignored (the token is
    /// verified with the client's `jwks_file` or `jwks_url`) and never fetched.
    #[serde(default)]
    pub allowed_jku: Vec<String>,
    /// FHIR servers the service may call with this client's `fhirAuthorization`.
    #[serde(default)]
    pub fhir_servers: Vec<String>,
    /// Whether `http` FHIR servers may be listed (test systems only).
    #[serde(default)]
    pub allow_http_fhir: bool,
    /// When set, the token's `tenant` must equal it.
    pub tenant: Option<String>,
}

/// A client whose token was verified.
#[derive(Debug)]
pub struct TrustedClient {
    /// Its issuer.
    pub issuer: String,
    keys: KeySource,
    allowed_jku: Vec<String>,
    tenant: Option<String>,
    /// The FHIR servers it may make the service call.
    pub fhir_access: FhirAccess,
}

/// Who made an authenticated call: the trusted client, and the tenant its token named.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The client whose key verified the token.
    pub client: Arc<TrustedClient>,
    /// The token's `tenant` claim, when it had one.
    pub tenant: Option<String>,
}

/// An `[auth]` configuration the authenticator cannot start with; the message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// An `auth.algorithms` entry that is no JWS algorithm.
    #[error("auth.algorithms: '{0}' is not a JWS algorithm")]
    UnknownAlgorithm(String),
    /// An `auth.algorithms` entry that is symmetric (HS*).
    #[error("auth.algorithms: '{0}' is symmetric, which CDS Hooks forbids")]
    SymmetricAlgorithm(String),
    /// The `auth.jwks_*` settings.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
    /// One `[[auth.clients]]` entry.
    #[error("auth.clients '{issuer}': {problem}")]
    Client {
        /// The entry's issuer.
        issuer: String,
        /// What is wrong with it.
        #[source]
        problem: ClientConfigError,
    },
}

/// What is wrong with one `[[auth.clients]]` entry.
#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    /// Another entry has the same issuer.
    #[error("the issuer is listed twice")]
    DuplicateIssuer,
    /// Neither or both of `jwks_file` and `jwks_url`.
    #[error("set exactly one of jwks_file and jwks_url")]
    KeySource,
    /// `jwks_url` is not an absolute http(s) URL.
    #[error("jwks_url '{0}' is not an absolute URL")]
    JwksUrl(String),
    /// `jwks_file` cannot be used.
    #[error(transparent)]
    JwksFile(#[from] KeyFileError),
    /// A `fhir_servers` entry cannot be allowed.
    #[error(transparent)]
    FhirServer(#[from] FhirServerError),
}

/// Why a request was not authenticated (logged, never sent). Its message may quote the
/// (unauthenticated) token, so every quoted value goes through [`escape_for_log`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    MissingToken,
    /// The token is not a well-formed JWT, or its `alg` is unknown (such as `none`).
    #[error("malformed token: {}", escape_for_log(.0))]
    Malformed(String),
    /// The `alg` is not in the allowlist.
    #[error("algorithm {0} is not allowed")]
    AlgorithmNotAllowed(String),
    /// `typ` is not `JWT`.
    #[error("typ header is not JWT")]
    WrongType,
    /// The header has a `crit` parameter: it names extensions that must be understood, and
    /// this service understands none (RFC 7515 §4.1.11; an empty list is itself invalid).
    #[error("crit header names extensions this service does not understand: [{}]", escape_for_log(.0))]
    CriticalHeader(String),
    /// No `kid` header.
    #[error("no kid header")]
    MissingKeyId,
    /// `iss` is not a trusted client.
    #[error("issuer '{}' is not a trusted client", escape_for_log(.0))]
    UnknownIssuer(String),
    /// No key with this `kid`.
    #[error("no key with kid '{}'", escape_for_log(.0))]
    UnknownKey(String),
    /// The signature does not verify with the key.
    #[error("invalid signature")]
    BadSignature,
    /// `aud` is not this endpoint.
    #[error("audience is not this endpoint")]
    WrongAudience,
    /// A required claim is missing or ill-formed.
    #[error("claims: {}", escape_for_log(.0))]
    BadClaims(String),
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `iat` is after `exp`.
    #[error("token issued after it expires")]
    IssuedAfterExpiry,
    /// A time claim (named) is outside the years 1970 to 9999.
    #[error("{0} is outside the accepted range of times")]
    TimeOutOfRange(&'static str),
    /// `exp - iat` is above the maximum.
    #[error("token lifetime above the maximum")]
    LifetimeTooLong,
    /// `tenant` does not match the client's.
    #[error("tenant does not match")]
    TenantMismatch,
    /// The `jti` was seen before.
    #[error("jti replayed")]
    Replayed,
    /// The replay cache could not be consulted.
    #[error("replay cache unavailable: {}", escape_for_log(.0))]
    ReplayCacheUnavailable(String),
}

impl AuthFailure {
    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::MissingToken => "missing_token",
            AuthFailure::Malformed(_) => "malformed",
            AuthFailure::AlgorithmNotAllowed(_) => "algorithm",
            AuthFailure::WrongType => "typ",
            AuthFailure::CriticalHeader(_) => "crit",
            AuthFailure::MissingKeyId => "kid_missing",
            AuthFailure::UnknownIssuer(_) => "issuer",
            AuthFailure::UnknownKey(_) => "kid_unknown",
            AuthFailure::BadSignature => "signature",
            AuthFailure::WrongAudience => "audience",
            AuthFailure::BadClaims(_) => "claims",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "nbf",
            AuthFailure::IssuedInFuture => "iat_future",
            AuthFailure::IssuedAfterExpiry => "iat_after_exp",
            AuthFailure::TimeOutOfRange(_) => "time_range",
            AuthFailure::LifetimeTooLong => "lifetime",
            AuthFailure::TenantMismatch => "tenant",
            AuthFailure::Replayed => "replay",
            AuthFailure::ReplayCacheUnavailable(_) => "replay_cache",
        }
    }
}

#[derive(Debug, Deserialize)]
struct UnverifiedIssuer {
    iss: Option<String>,
}

/// The claims CDS Hooks requires; `jti` and `iat` are required here because
/// jsonwebtoken does not enforce them. `nbf` is honoured when present.
#[derive(Debug, Deserialize)]
struct CdsClaims {
    iss: String,
    exp: i64,
    iat: i64,
    nbf: Option<i64>,
    jti: String,
    tenant: Option<String>,
}

/// The seconds since the epoch a time claim may hold: 1970 to the end of 9999. A claim
/// outside is refused before any arithmetic, so `exp - iat` and `exp + leeway` cannot overflow.
const TIME_CLAIM_RANGE: std::ops::RangeInclusive<i64> = 0..=253_402_300_799;

/// Verifies CDS Hooks JWTs.
#[derive(Debug)]
pub struct Authenticator {
    algorithms: Vec<Algorithm>,
    leeway: i64,
    max_lifetime: i64,
    clients: Vec<Arc<TrustedClient>>,
    keys: KeyStore,
    replay: Arc<dyn ReplayCache>,
}

impl Authenticator {
    /// Builds the authenticator from settings, reading JWK Set files now (a broken file is an error).
    pub async fn new(
        settings: &AuthSettings,
        replay: Arc<dyn ReplayCache>,
    ) -> Result<Authenticator, AuthConfigError> {
        let mut algorithms = Vec::new();
        for name in &settings.algorithms {
            let algorithm: Algorithm = name
                .parse()
                .map_err(|_| AuthConfigError::UnknownAlgorithm(name.clone()))?;
            if matches!(
                algorithm,
                Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
            ) {
                return Err(AuthConfigError::SymmetricAlgorithm(name.clone()));
            }
            algorithms.push(algorithm);
        }
        let keys = KeyStore::new(FetchPolicy {
            timeout: Duration::from_millis(settings.jwks_timeout_ms),
            min_refresh: Duration::from_secs(settings.jwks_min_refresh_seconds),
            max_age: Duration::from_secs(settings.jwks_max_age_seconds),
            max_bytes: settings.jwks_max_bytes,
        })?;
        let mut clients = Vec::new();
        let mut issuers = HashSet::new();
        for client in &settings.clients {
            if !issuers.insert(client.issuer.clone()) {
                return Err(AuthConfigError::Client {
                    issuer: client.issuer.clone(),
                    problem: ClientConfigError::DuplicateIssuer,
                });
            }
            let trusted = Self::trusted_client(client, &keys)
                .await
                .map_err(|problem| AuthConfigError::Client {
                    issuer: client.issuer.clone(),
                    problem,
                })?;
            clients.push(Arc::new(trusted));
        }
        Ok(Authenticator {
            algorithms,
            leeway: settings.leeway_seconds,
            max_lifetime: settings.max_lifetime_seconds,
            clients,
            keys,
            replay,
        })
    }

    /// One configured client, its JWK Set file read now.
    async fn trusted_client(
        client: &ClientSettings,
        keys: &KeyStore,
    ) -> Result<TrustedClient, ClientConfigError> {
        let source = match (&client.jwks_file, &client.jwks_url) {
            (Some(file), None) => {
                keys.load_file(file).await?;
                KeySource::File(file.clone())
            }
            (None, Some(url)) => {
                if !url.starts_with("https://") && !url.starts_with("http://") {
                    return Err(ClientConfigError::JwksUrl(url.clone()));
                }
                KeySource::Url(url.clone())
            }
            _ => return Err(ClientConfigError::KeySource),
        };
        Ok(TrustedClient {
            issuer: client.issuer.clone(),
            keys: source,
            allowed_jku: client.allowed_jku.clone(),
            tenant: client.tenant.clone(),
            fhir_access: FhirAccess::to_servers(&client.fhir_servers, client.allow_http_fhir)?,
        })
    }

    /// Whether any client is configured.
    pub fn has_clients(&self) -> bool {
        !self.clients.is_empty()
    }

    /// Verifies the `Authorization` header of a request to `audience` (the exact URL called).
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        audience: &str,
        now: DateTime<Utc>,
    ) -> Result<Caller, AuthFailure> {
        let token = authorization
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(AuthFailure::MissingToken)?;
        let header = decode_header(token).map_err(|e| AuthFailure::Malformed(e.to_string()))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthFailure::AlgorithmNotAllowed(format!(
                "{:?}",
                header.alg
            )));
        }
        if !header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("JWT"))
        {
            return Err(AuthFailure::WrongType);
        }
        if let Some(crit) = &header.crit {
            return Err(AuthFailure::CriticalHeader(crit.join(", ")));
        }
        let kid = header.kid.clone().ok_or(AuthFailure::MissingKeyId)?;
        let issuer = jsonwebtoken::dangerous::insecure_decode_claims::<UnverifiedIssuer>(token)
            .map_err(|e| AuthFailure::Malformed(e.to_string()))?
            .iss
            .unwrap_or_default();
        let client = self
            .clients
            .iter()
            .find(|c| c.issuer == issuer)
            .cloned()
            .ok_or_else(|| AuthFailure::UnknownIssuer(issuer.clone()))?;
        // A jku off the allowlist is never fetched: the client's own keys decide (the public
        // sandbox always sends one).
        let source = match &header.jku {
            Some(jku) if client.allowed_jku.contains(jku) => KeySource::Url(jku.clone()),
            Some(jku) => {
                tracing::debug!(jku = %escape_for_log(jku), issuer = %escape_for_log(&issuer),
                    "jku off the client's allowlist ignored; verifying with its configured keys");
                client.keys.clone()
            }
            None => client.keys.clone(),
        };
        let key = self
            .keys
            .key(&source, &kid)
            .await
            .ok_or_else(|| AuthFailure::UnknownKey(kid.clone()))?;

        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false; // checked below against the service's clock
        validation.set_audience(&[audience]);
        validation.set_issuer(&[&client.issuer]);
        validation.set_required_spec_claims(&["iss", "aud"]);
        let claims = decode::<CdsClaims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => AuthFailure::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidAudience => AuthFailure::WrongAudience,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm
                | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat => AuthFailure::BadSignature,
                _ => AuthFailure::BadClaims(e.to_string()),
            })?
            .claims;

        self.check_times(&claims, now.timestamp())?;
        if claims.jti.trim().is_empty() {
            return Err(AuthFailure::BadClaims("jti is empty".to_owned()));
        }
        if let Some(tenant) = &client.tenant
            && claims.tenant.as_deref() != Some(tenant.as_str())
        {
            return Err(AuthFailure::TenantMismatch);
        }
        // The token is accepted until `exp + leeway`, so its jti must be kept as long.
        let keep_until = Utc
            .timestamp_opt(claims.exp.saturating_add(self.leeway), 0)
            .single()
            .ok_or_else(|| AuthFailure::BadClaims("exp out of range".to_owned()))?;
        let fresh = self
            .replay
            .remember(&claims.iss, &claims.jti, keep_until, now)
            .await
            .map_err(|e| AuthFailure::ReplayCacheUnavailable(e.to_string()))?;
        if !fresh {
            return Err(AuthFailure::Replayed);
        }
        Ok(Caller {
            client,
            tenant: claims.tenant,
        })
    }

    /// Checks the time claims against `now` (seconds since the epoch), allowing the leeway:
    /// all in range, not expired, valid already (`nbf`), not issued in the future, not issued
    /// after expiry, and not living longer than the maximum.
    fn check_times(&self, claims: &CdsClaims, now: i64) -> Result<(), AuthFailure> {
        let times = [
            ("exp", Some(claims.exp)),
            ("iat", Some(claims.iat)),
            ("nbf", claims.nbf),
        ];
        for (name, time) in times {
            if time.is_some_and(|t| !TIME_CLAIM_RANGE.contains(&t)) {
                return Err(AuthFailure::TimeOutOfRange(name));
            }
        }
        if claims.exp <= now.saturating_sub(self.leeway) {
            return Err(AuthFailure::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Err(AuthFailure::NotYetValid);
        }
        if claims.iat > now.saturating_add(self.leeway) {
            return Err(AuthFailure::IssuedInFuture);
        }
        if claims.iat > claims.exp {
            return Err(AuthFailure::IssuedAfterExpiry);
        }
        if claims
            .exp
            .checked_sub(claims.iat)
            .is_none_or(|lifetime| lifetime > self.max_lifetime)
        {
            return Err(AuthFailure::LifetimeTooLong);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    fn settings_with(client: ClientSettings) -> AuthSettings {
        AuthSettings {
            clients: vec![client],
            ..AuthSettings::default()
        }
    }

    fn client(issuer: &str) -> ClientSettings {
        ClientSettings {
            issuer: issuer.to_owned(),
            jwks_file: None,
            jwks_url: None,
            allowed_jku: Vec::new(),
            fhir_servers: Vec::new(),
            allow_http_fhir: false,
            tenant: None,
        }
    }

    async fn refusal(settings: &AuthSettings) -> AuthConfigError {
        Authenticator::new(settings, Arc::new(InMemoryReplayCache::default()))
            .await
            .expect_err("refused")
    }

    #[tokio::test]
    async fn an_unreadable_key_file_names_the_client_and_file_and_keeps_the_io_error_as_source() {
        let settings = settings_with(ClientSettings {
            jwks_file: Some("/no/such/jwks.json".to_owned()),
            ..client("https://ehr.example")
        });
        let error = refusal(&settings).await;
        let message = error.to_string();
        assert!(
            message.starts_with(
                "auth.clients 'https://ehr.example': /no/such/jwks.json: cannot read:"
            ),
            "{message}"
        );
        let problem = error.source().expect("the client's problem");
        let cause = problem.source().expect("the file's problem");
        let io = cause
            .downcast_ref::<std::io::Error>()
            .expect("the io error itself");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn a_client_fhir_server_over_http_is_refused_naming_the_opt_in() {
        let settings = settings_with(ClientSettings {
            jwks_url: Some("https://ehr.example/jwks".to_owned()),
            fhir_servers: vec!["http://ehr.example/fhir".to_owned()],
            ..client("https://ehr.example")
        });
        let error = refusal(&settings).await;
        assert!(matches!(
            &error,
            AuthConfigError::Client {
                problem: ClientConfigError::FhirServer(FhirServerError::HttpNotAllowed(_)),
                ..
            }
        ));
        assert!(error.to_string().contains("allow_http_fhir"), "{error}");
    }

    #[tokio::test]
    async fn a_client_listed_twice_or_without_exactly_one_key_source_is_refused() {
        let twice = AuthSettings {
            clients: vec![
                ClientSettings {
                    jwks_url: Some("https://a.example/jwks".to_owned()),
                    ..client("a")
                },
                ClientSettings {
                    jwks_url: Some("https://a.example/jwks".to_owned()),
                    ..client("a")
                },
            ],
            ..AuthSettings::default()
        };
        assert!(matches!(
            refusal(&twice).await,
            AuthConfigError::Client {
                problem: ClientConfigError::DuplicateIssuer,
                ..
            }
        ));
        let neither = settings_with(client("b"));
        assert_eq!(
            refusal(&neither).await.to_string(),
            "auth.clients 'b': set exactly one of jwks_file and jwks_url"
        );
    }
}
