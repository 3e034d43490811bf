//! The clients' public keys: JWK Sets from files (read once at start) or from
//! URLs (fetched on first use, cached, and refreshed on an unknown `kid` at most
//! once per interval). A key server that is down leaves the cached keys in use
//! and never takes the service down.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use tokio::sync::Mutex;

/// Where a client's keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// A JWK Set read from a file at start.
    File(String),
    /// A JWK Set served at a URL.
    Url(String),
}

#[derive(Debug)]
struct CachedSet {
    set: Option<JwkSet>,
    last_fetch_attempt: Option<Instant>,
}

/// Cached key sets, by source.
#[derive(Debug)]
pub struct KeyStore {
    http: reqwest::Client,
    min_refresh: Duration,
    sets: Mutex<HashMap<KeySource, CachedSet>>,
}

impl KeyStore {
    /// A store that fetches with `timeout` and refetches a URL at most once per `min_refresh`.
    pub fn new(timeout: Duration, min_refresh: Duration) -> Result<KeyStore, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
        Ok(KeyStore {
            http,
            min_refresh,
            sets: Mutex::new(HashMap::new()),
        })
    }

    /// Reads a JWK Set file now, so a broken file stops start-up.
    pub async fn load_file(&self, path: &str) -> Result<(), String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
        let set: JwkSet =
            serde_json::from_slice(&bytes).map_err(|e| format!("{path}: not a JWK Set: {e}"))?;
        self.sets.lock().await.insert(
            KeySource::File(path.to_owned()),
            CachedSet {
                set: Some(set),
                last_fetch_attempt: None,
            },
        );
        Ok(())
    }

    /// The key with `kid` from `source`, fetching or refreshing a URL source when needed.
    pub async fn key(&self, source: &KeySource, kid: &str) -> Option<Jwk> {
        let mut sets = self.sets.lock().await;
        let cached = sets.entry(source.clone()).or_insert(CachedSet {
            set: None,
            last_fetch_attempt: None,
        });
        if let Some(key) = find(cached.set.as_ref(), kid) {
            return Some(key);
        }
        let KeySource::Url(url) = source else {
            return None;
        };
        if cached
            .last_fetch_attempt
            .is_some_and(|t| t.elapsed() < self.min_refresh)
        {
            return None;
        }
        cached.last_fetch_attempt = Some(Instant::now());
        match self.fetch(url).await {
            Ok(set) => cached.set = Some(set),
            Err(e) => {
                tracing::warn!(jwks_url = %url, error = %e, "JWK Set could not be fetched; keeping cached keys")
            }
        }
        find(cached.set.as_ref(), kid)
    }

    async fn fetch(&self, url: &str) -> Result<JwkSet, String> {
        let response = self
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
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| format!("not a JWK Set: {e}"))
    }
}

fn find(set: Option<&JwkSet>, kid: &str) -> Option<Jwk> {
    set?.keys
        .iter()
        .find(|k| k.common.key_id.as_deref() == Some(kid))
        .cloned()
}
