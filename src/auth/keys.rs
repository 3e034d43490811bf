//! The clients' public keys: JWK Sets from files (read once at start) or from
//! URLs (fetched on first use and cached for as long as the key server's cache
//! headers say, kept between `auth.jwks_min_refresh_seconds` and
//! `auth.jwks_max_age_seconds`). A set past its age is refetched in the
//! background while its keys still answer, so no request waits on a key server
//! that is up; an unknown `kid` refetches at once, at most once per interval. A
//! key server that is down leaves the cached keys in use for up to twice the
//! maximum age after they were fetched, then they are dropped; it never takes
//! the service down. Not for choosing which source a token's keys come from:
//! that is the authenticator's.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use reqwest::header::{CACHE_CONTROL, DATE, EXPIRES, HeaderMap, HeaderValue};

use crate::http_body::{BodyError, read_limited};
use crate::telemetry::escape_for_log;

/// Where a client's keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// A JWK Set read from a file at start.
    File(String),
    /// A JWK Set served at a URL.
    Url(String),
}

/// The longest `auth.jwks_max_age_seconds` accepted: a year.
const LONGEST_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);

/// A key-fetch policy or client that cannot be used (`auth.jwks_*` settings).
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// `auth.jwks_max_age_seconds` is zero or above a year.
    #[error("auth.jwks_max_age_seconds must be between 1 and {} (a year)", LONGEST_MAX_AGE.as_secs())]
    MaxAgeOutOfRange,
    /// `auth.jwks_min_refresh_seconds` is above `auth.jwks_max_age_seconds`.
    #[error(
        "auth.jwks_min_refresh_seconds ({min_refresh}) must not be above auth.jwks_max_age_seconds ({max_age})"
    )]
    RefreshAboveMaxAge {
        /// The minimum refresh interval, in seconds.
        min_refresh: u64,
        /// The maximum age, in seconds.
        max_age: u64,
    },
    /// The HTTP client for JWK Set URLs could not be built.
    #[error("cannot build the JWKS client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// A JWK Set file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read.
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a JWK Set.
    #[error("{path}: not a JWK Set: {source}")]
    NotAJwkSet {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Why a JWK Set URL gave no set (logged; the cached keys stay in use).
#[derive(Debug, thiserror::Error)]
enum JwksFetchError {
    /// The key server did not answer in time.
    #[error("timed out")]
    TimedOut(#[source] reqwest::Error),
    /// The key server could not be reached (the cause is kept, not printed: it names the URL).
    #[error("unreachable")]
    Unreachable(#[source] reqwest::Error),
    /// The key server answered with an error status.
    #[error("answered {0}")]
    Status(reqwest::StatusCode),
    /// The body is over `auth.jwks_max_bytes`.
    #[error("larger than auth.jwks_max_bytes ({0} bytes)")]
    TooLarge(usize),
    /// The body could not be read.
    #[error("{0}")]
    Read(#[source] reqwest::Error),
    /// The body is not a JWK Set.
    #[error("not a JWK Set: {0}")]
    NotAJwkSet(#[source] serde_json::Error),
}

/// How JWK Set URLs are fetched and how long their keys are trusted.
#[derive(Debug, Clone, Copy)]
pub struct FetchPolicy {
    /// Timeout of one fetch.
    pub timeout: Duration,
    /// Least time between two fetches of one URL, and the least time a fetched set is
    /// used before it is refetched (whatever its cache headers say).
    pub min_refresh: Duration,
    /// Most time a fetched set is used before it is refetched (whatever its cache headers
    /// say). When refetching fails its keys stay in use until twice this time after they
    /// were fetched, then they are dropped.
    pub max_age: Duration,
    /// Largest JWK Set body accepted, in bytes; a larger one is refused whatever its
    /// `Content-Length` says, and the cached keys stay in use.
    pub max_bytes: usize,
}

impl FetchPolicy {
    /// How long a set whose response declared `declared` (see [`declared_lifetime`]) is
    /// used before a refetch: `max_age` when nothing was declared, and never less than
    /// `min_refresh` nor more than `max_age`.
    fn freshness(&self, declared: Option<Duration>) -> Duration {
        declared
            .unwrap_or(self.max_age)
            .min(self.max_age)
            .max(self.min_refresh)
    }

    /// How long a fetched set's keys may be used at all, refetching or not.
    fn usable_for(&self) -> Duration {
        self.max_age.saturating_mul(2)
    }
}

/// The lifetime a JWK Set response declares for itself (RFC 9111 §4.2.1), from its
/// headers and the time `now` it was received: zero for `Cache-Control: no-store` or
/// `no-cache` (the floor then applies), else `max-age`, else `Expires` minus `Date` (or
/// minus `now`; an unreadable `Expires` is in the past). `None` when it declares nothing.
fn declared_lifetime(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let mut max_age = None;
    for directive in headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
    {
        let (name, argument) = match directive.split_once('=') {
            Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") {
            // An unreadable max-age is stale at once (RFC 9111 §4.2.1).
            let seconds = argument.and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
            max_age = Some(Duration::from_secs(seconds));
        }
    }
    if max_age.is_some() {
        return max_age;
    }
    let http_date = |value: &HeaderValue| {
        DateTime::parse_from_rfc2822(value.to_str().ok()?.trim())
            .ok()
            .map(|d| d.with_timezone(&Utc))
    };
    let Some(expires) = http_date(headers.get(EXPIRES)?) else {
        return Some(Duration::ZERO);
    };
    let received = headers.get(DATE).and_then(http_date).unwrap_or(now);
    Some((expires - received).to_std().unwrap_or(Duration::ZERO))
}

/// A JWK Set with each usable key decoded once, when the set is read.
struct DecodedSet {
    keys: HashMap<String, Arc<DecodingKey>>,
}

impl DecodedSet {
    /// Keys without a `kid` or that jsonwebtoken cannot use are left out: a token must
    /// name its key, and an unusable key could never verify one.
    fn new(set: &JwkSet) -> DecodedSet {
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, Arc::new(key)))
            })
            .collect();
        DecodedSet { keys }
    }
}

/// One source's keys and when they were fetched.
#[derive(Default)]
struct CachedSet {
    set: Option<DecodedSet>,
    /// When the set is due for a refetch; `None` for a file, which never is.
    fresh_until: Option<Instant>,
    /// When the set's keys stop being used; `None` for a file, which never does.
    usable_until: Option<Instant>,
    last_fetch_attempt: Option<Instant>,
}

/// What the cache holds for a `kid`.
enum Lookup {
    /// A usable key; `refetch` when its set is past its age and may be refetched now.
    Found {
        key: Arc<DecodingKey>,
        refetch: bool,
    },
    /// No usable set holds it.
    Missing,
}

/// Cached key sets, by source. Looking up a cached key takes a shared read lock and
/// no allocation; only an unknown `kid` or a set past its age leads to a fetch.
pub struct KeyStore {
    shared: Arc<Shared>,
}

/// What a background refresh needs too.
struct Shared {
    http: reqwest::Client,
    policy: FetchPolicy,
    sets: RwLock<HashMap<KeySource, CachedSet>>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// A store that fetches URLs as `policy` says; a policy whose maximum age is zero,
    /// above a year or below its minimum refresh interval is refused.
    pub fn new(policy: FetchPolicy) -> Result<KeyStore, KeyStoreError> {
        if policy.max_age.is_zero() || policy.max_age > LONGEST_MAX_AGE {
            return Err(KeyStoreError::MaxAgeOutOfRange);
        }
        if policy.min_refresh > policy.max_age {
            return Err(KeyStoreError::RefreshAboveMaxAge {
                min_refresh: policy.min_refresh.as_secs(),
                max_age: policy.max_age.as_secs(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(KeyStoreError::HttpClient)?;
        Ok(KeyStore {
            shared: Arc::new(Shared {
                http,
                policy,
                sets: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// Reads a JWK Set file now, so a broken file stops start-up.
    pub async fn load_file(&self, path: &str) -> Result<(), KeyFileError> {
        let bytes = std::fs::read(path).map_err(|source| KeyFileError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        let set: JwkSet =
            serde_json::from_slice(&bytes).map_err(|source| KeyFileError::NotAJwkSet {
                path: path.to_owned(),
                source,
            })?;
        self.shared.write_sets().insert(
            KeySource::File(path.to_owned()),
            CachedSet {
                set: Some(DecodedSet::new(&set)),
                ..CachedSet::default()
            },
        );
        Ok(())
    }

    /// The key with `kid` from `source`. A URL source is fetched when it has no usable set
    /// or its set lacks `kid` (then this waits for the fetch), and refetched in the
    /// background when its set is past its age (then this answers from the cached set).
    pub async fn key(&self, source: &KeySource, kid: &str) -> Option<Arc<DecodingKey>> {
        let KeySource::Url(url) = source else {
            return match self.shared.lookup(source, kid, Instant::now()) {
                Lookup::Found { key, .. } => Some(key),
                Lookup::Missing => None,
            };
        };
        match self.shared.lookup(source, kid, Instant::now()) {
            Lookup::Found { key, refetch } => {
                if refetch && self.shared.claim_fetch(source) {
                    self.refetch_in_background(source.clone(), url.clone())
                        .await;
                }
                Some(key)
            }
            Lookup::Missing => {
                if !self.shared.claim_fetch(source) {
                    return None;
                }
                self.shared.fetch_into_cache(source, url).await;
                match self.shared.lookup(source, kid, Instant::now()) {
                    Lookup::Found { key, .. } => Some(key),
                    Lookup::Missing => None,
                }
            }
        }
    }

    /// Refetches on a task of its own; outside a Tokio runtime (no task to spawn) it
    /// refetches here instead.
    async fn refetch_in_background(&self, source: KeySource, url: String) {
        let shared = self.shared.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { shared.fetch_into_cache(&source, &url).await });
            }
            Err(_) => shared.fetch_into_cache(&source, &url).await,
        }
    }
}

impl Shared {
    fn lookup(&self, source: &KeySource, kid: &str, now: Instant) -> Lookup {
        let sets = self
            .sets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(cached) = sets.get(source) else {
            return Lookup::Missing;
        };
        if cached.usable_until.is_some_and(|until| now >= until) {
            return Lookup::Missing;
        }
        let Some(key) = cached.set.as_ref().and_then(|set| set.keys.get(kid)) else {
            return Lookup::Missing;
        };
        let refetch = cached.fresh_until.is_some_and(|until| now >= until)
            && self.may_fetch_again(cached, now);
        Lookup::Found {
            key: key.clone(),
            refetch,
        }
    }

    fn may_fetch_again(&self, cached: &CachedSet, now: Instant) -> bool {
        cached
            .last_fetch_attempt
            .is_none_or(|at| now.saturating_duration_since(at) >= self.policy.min_refresh)
    }

    /// Claims the next fetch of `source` under the lock, so concurrent callers fetch once
    /// and a URL is fetched at most once per `min_refresh`.
    fn claim_fetch(&self, source: &KeySource) -> bool {
        let now = Instant::now();
        let mut sets = self.write_sets();
        let cached = sets.entry(source.clone()).or_default();
        if !self.may_fetch_again(cached, now) {
            return false;
        }
        cached.last_fetch_attempt = Some(now);
        true
    }

    /// Fetches `url` and caches its set; on failure the cached set stays as it was, and
    /// its keys stay in use until they are past their usable time.
    async fn fetch_into_cache(&self, source: &KeySource, url: &str) {
        match self.fetch(url).await {
            Ok((set, declared)) => {
                let decoded = DecodedSet::new(&set);
                let fresh_for = self.policy.freshness(declared);
                let now = Instant::now();
                tracing::debug!(jwks_url = %escape_for_log(url), keys = decoded.keys.len(),
                    fresh_for_seconds = fresh_for.as_secs(), "JWK Set fetched");
                let mut sets = self.write_sets();
                let cached = sets.entry(source.clone()).or_default();
                cached.set = Some(decoded);
                cached.fresh_until = Some(now + fresh_for);
                cached.usable_until = Some(now + self.policy.usable_for().max(fresh_for));
            }
            Err(e) => {
                let usable_for = self
                    .read_sets()
                    .get(source)
                    .filter(|cached| cached.set.is_some())
                    .and_then(|cached| cached.usable_until)
                    .map(|until| until.saturating_duration_since(Instant::now()));
                let (url, error) = (escape_for_log(url), escape_for_log(&e.to_string()));
                match usable_for {
                    Some(left) if !left.is_zero() => tracing::warn!(
                        jwks_url = %url, error = %error, usable_for_seconds = left.as_secs(),
                        "JWK Set could not be fetched; keeping the cached keys until twice auth.jwks_max_age_seconds after their fetch"
                    ),
                    Some(_) => tracing::warn!(
                        jwks_url = %url, error = %error,
                        "JWK Set could not be fetched and its cached keys are past twice auth.jwks_max_age_seconds: its tokens are refused until it answers"
                    ),
                    None => tracing::warn!(jwks_url = %url, error = %error,
                        "JWK Set could not be fetched; no cached keys"),
                }
            }
        }
    }

    fn read_sets(&self) -> std::sync::RwLockReadGuard<'_, HashMap<KeySource, CachedSet>> {
        self.sets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_sets(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<KeySource, CachedSet>> {
        self.sets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The set at `url` and the lifetime its response declared.
    async fn fetch(&self, url: &str) -> Result<(JwkSet, Option<Duration>), JwksFetchError> {
        let response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    JwksFetchError::TimedOut(e)
                } else {
                    JwksFetchError::Unreachable(e)
                }
            })?;
        if !response.status().is_success() {
            return Err(JwksFetchError::Status(response.status()));
        }
        let declared = declared_lifetime(response.headers(), Utc::now());
        let max_bytes = self.policy.max_bytes;
        let body = read_limited(response, max_bytes, |_| Ok::<(), Infallible>(()))
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => JwksFetchError::TooLarge(max_bytes),
                BodyError::Read(e) => JwksFetchError::Read(e),
                BodyError::Refused(never) => match never {},
            })?;
        let set = serde_json::from_slice(&body).map_err(JwksFetchError::NotAJwkSet)?;
        Ok((set, declared))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(reqwest::header::HeaderName, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_static(value));
        }
        map
    }

    fn policy() -> FetchPolicy {
        FetchPolicy {
            timeout: Duration::from_secs(3),
            min_refresh: Duration::from_secs(60),
            max_age: Duration::from_secs(3600),
            max_bytes: 1024,
        }
    }

    #[test]
    fn cache_headers_set_a_key_sets_age_between_the_floor_and_the_maximum() {
        let now = DateTime::parse_from_rfc3339("2026-11-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let age = |pairs: &[(reqwest::header::HeaderName, &'static str)]| {
            policy().freshness(declared_lifetime(&headers(pairs), now))
        };
        let secs = Duration::from_secs;
        assert_eq!(age(&[]), secs(3600), "nothing declared: the maximum");
        assert_eq!(age(&[(CACHE_CONTROL, "public, max-age=600")]), secs(600));
        assert_eq!(age(&[(CACHE_CONTROL, "max-age=\"900\"")]), secs(900));
        assert_eq!(
            age(&[(CACHE_CONTROL, "max-age=86400")]),
            secs(3600),
            "clamped"
        );
        assert_eq!(age(&[(CACHE_CONTROL, "max-age=1")]), secs(60), "the floor");
        assert_eq!(age(&[(CACHE_CONTROL, "max-age=soon")]), secs(60));
        assert_eq!(age(&[(CACHE_CONTROL, "no-store")]), secs(60));
        assert_eq!(age(&[(CACHE_CONTROL, "max-age=600, No-Cache")]), secs(60));
        assert_eq!(
            age(&[(CACHE_CONTROL, "private"), (CACHE_CONTROL, "max-age=300")]),
            secs(300),
            "directives over two header lines"
        );
        assert_eq!(
            age(&[
                (DATE, "Sun, 01 Nov 2026 11:00:00 GMT"),
                (EXPIRES, "Sun, 01 Nov 2026 11:20:00 GMT")
            ]),
            secs(1200),
            "Expires against the response's Date"
        );
        assert_eq!(
            age(&[(EXPIRES, "Sun, 01 Nov 2026 12:10:00 GMT")]),
            secs(600),
            "Expires against the time received"
        );
        assert_eq!(
            age(&[(EXPIRES, "0")]),
            secs(60),
            "an invalid Expires is past"
        );
        assert_eq!(
            age(&[
                (CACHE_CONTROL, "max-age=120"),
                (EXPIRES, "Sun, 01 Nov 2026 14:00:00 GMT")
            ]),
            secs(120),
            "max-age wins over Expires"
        );
    }

    #[test]
    fn stale_keys_are_usable_up_to_twice_the_maximum_age() {
        assert_eq!(policy().usable_for(), Duration::from_secs(7200));
    }

    #[test]
    fn a_maximum_age_of_zero_or_below_the_refresh_interval_is_refused() {
        let zero = FetchPolicy {
            max_age: Duration::ZERO,
            ..policy()
        };
        let message = KeyStore::new(zero).unwrap_err().to_string();
        assert!(message.contains("auth.jwks_max_age_seconds"), "{message}");
        let below = FetchPolicy {
            max_age: Duration::from_secs(30),
            ..policy()
        };
        let message = KeyStore::new(below).unwrap_err().to_string();
        assert!(
            message.contains("auth.jwks_min_refresh_seconds"),
            "{message}"
        );
    }
}
