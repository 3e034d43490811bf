//! The clients' public keys: JWK Sets from files (read once at start) or from
//! URLs (fetched on first use, cached, and refreshed on an unknown `kid` at most
//! once per interval). A key server that is down leaves the cached keys in use
//! and never takes the service down.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;

use crate::telemetry::escape_for_log;

/// Where a client's keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// A JWK Set read from a file at start.
    File(String),
    /// A JWK Set served at a URL.
    Url(String),
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

#[derive(Default)]
struct CachedSet {
    set: Option<DecodedSet>,
    last_fetch_attempt: Option<Instant>,
}

/// How JWK Set URLs are fetched.
#[derive(Debug, Clone, Copy)]
pub struct FetchPolicy {
    /// Timeout of one fetch.
    pub timeout: Duration,
    /// Least time between two fetches of one URL.
    pub min_refresh: Duration,
    /// Largest JWK Set body accepted, in bytes; a larger one is refused whatever its
    /// `Content-Length` says, and the cached keys stay in use.
    pub max_bytes: usize,
}

/// Cached key sets, by source. Looking up a cached key takes a shared read lock and
/// no allocation; only an unknown `kid` from a URL source leads to a fetch.
pub struct KeyStore {
    http: reqwest::Client,
    policy: FetchPolicy,
    sets: RwLock<HashMap<KeySource, CachedSet>>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// A store that fetches URLs as `policy` says.
    pub fn new(policy: FetchPolicy) -> Result<KeyStore, String> {
        let http = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
        Ok(KeyStore {
            http,
            policy,
            sets: RwLock::new(HashMap::new()),
        })
    }

    /// Reads a JWK Set file now, so a broken file stops start-up.
    pub async fn load_file(&self, path: &str) -> Result<(), String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
        let set: JwkSet =
            serde_json::from_slice(&bytes).map_err(|e| format!("{path}: not a JWK Set: {e}"))?;
        self.write_sets().insert(
            KeySource::File(path.to_owned()),
            CachedSet {
                set: Some(DecodedSet::new(&set)),
                last_fetch_attempt: None,
            },
        );
        Ok(())
    }

    /// The key with `kid` from `source`, fetching or refreshing a URL source when needed.
    pub async fn key(&self, source: &KeySource, kid: &str) -> Option<Arc<DecodingKey>> {
        if let Some(key) = self.cached(source, kid) {
            return Some(key);
        }
        let KeySource::Url(url) = source else {
            return None;
        };
        {
            // Claim the refresh under the lock, so concurrent misses fetch once.
            let mut sets = self.write_sets();
            let cached = sets.entry(source.clone()).or_default();
            if cached
                .last_fetch_attempt
                .is_some_and(|t| t.elapsed() < self.policy.min_refresh)
            {
                return None;
            }
            cached.last_fetch_attempt = Some(Instant::now());
        }
        match self.fetch(url).await {
            Ok(set) => {
                let decoded = DecodedSet::new(&set);
                self.write_sets().entry(source.clone()).or_default().set = Some(decoded);
            }
            Err(e) => {
                tracing::warn!(jwks_url = %escape_for_log(url), error = %escape_for_log(&e),
                    "JWK Set could not be fetched; keeping cached keys")
            }
        }
        self.cached(source, kid)
    }

    fn cached(&self, source: &KeySource, kid: &str) -> Option<Arc<DecodingKey>> {
        let sets = self
            .sets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sets.get(source)?.set.as_ref()?.keys.get(kid).cloned()
    }

    fn write_sets(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<KeySource, CachedSet>> {
        self.sets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn fetch(&self, url: &str) -> Result<JwkSet, String> {
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "timed out".to_owned()
                } else {
                    "unreachable".to_owned()
                }
            })?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let max_bytes = self.policy.max_bytes;
        let too_large = || format!("larger than auth.jwks_max_bytes ({max_bytes} bytes)");
        let declared = response.content_length();
        if declared.is_some_and(|length| length > max_bytes as u64) {
            return Err(too_large());
        }
        // Counted as it arrives: a missing or false Content-Length cannot lift the cap.
        let mut body = Vec::with_capacity(declared.map_or(8 * 1024, |l| l as usize).min(max_bytes));
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("not a JWK Set: {e}"))
    }
}
