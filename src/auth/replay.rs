//! The JWT replay cache: a `jti` is accepted once per issuer for as long as
//! the caller says the token can be accepted (its `exp` plus the leeway). In
//! memory here; the shared database one ([`super::shared_replay`]) lets several
//! instances reject a token replayed against any of them.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

/// Why the replay cache could not say whether a `jti` was seen.
#[derive(Debug, thiserror::Error)]
pub enum ReplayCacheError {
    /// A thread panicked while holding the in-memory cache.
    #[error("replay cache poisoned")]
    Poisoned,
    /// The shared cache could not be reached and `store.replay_on_outage = refuse`.
    #[error("the shared replay cache is unreachable (store.replay_on_outage = refuse)")]
    SharedUnreachable,
    /// The shared cache's database failed the check.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Remembers the `jti`s it has seen.
pub trait ReplayCache: Send + Sync + std::fmt::Debug {
    /// Records `(issuer, jti)` until `expires_at`; `Ok(true)` when it had not been seen, `Ok(false)` for a replay.
    fn remember<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, ReplayCacheError>>;
}

/// A replay cache in this process's memory. Expired entries are dropped at most once a
/// minute, or when the cache has doubled since the last sweep, so a sweep never runs per request.
#[derive(Debug, Default)]
pub struct InMemoryReplayCache {
    state: Mutex<ReplayState>,
}

#[derive(Debug, Default)]
struct ReplayState {
    seen: HashMap<(String, String), DateTime<Utc>>,
    next_sweep: Option<DateTime<Utc>>,
    sweep_above: usize,
}

impl ReplayState {
    fn sweep_if_due(&mut self, now: DateTime<Utc>) {
        let due_by_time = self.next_sweep.is_none_or(|at| now >= at);
        let due_by_size = self.seen.len() > self.sweep_above.max(4096);
        if due_by_time || due_by_size {
            self.seen.retain(|_, expiry| *expiry > now);
            self.next_sweep = Some(now + chrono::Duration::seconds(60));
            self.sweep_above = self.seen.len() * 2;
        }
    }
}

impl ReplayCache for InMemoryReplayCache {
    fn remember<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, ReplayCacheError>> {
        let result = (|| {
            let mut state = self.state.lock().map_err(|_| ReplayCacheError::Poisoned)?;
            state.sweep_if_due(now);
            let key = (issuer.to_owned(), jti.to_owned());
            match state.seen.get(&key) {
                Some(expiry) if *expiry > now => Ok(false),
                _ => {
                    state.seen.insert(key, expires_at);
                    Ok(true)
                }
            }
        })();
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[tokio::test]
    async fn a_jti_is_accepted_once_per_issuer_until_it_expires() {
        let cache = InMemoryReplayCache::default();
        let now = Utc::now();
        let exp = now + Duration::minutes(5);
        assert!(cache.remember("a", "1", exp, now).await.unwrap());
        assert!(!cache.remember("a", "1", exp, now).await.unwrap());
        assert!(
            cache.remember("b", "1", exp, now).await.unwrap(),
            "another issuer"
        );
        let later = exp + Duration::seconds(1);
        assert!(
            cache
                .remember("a", "1", later + Duration::minutes(5), later)
                .await
                .unwrap()
        );
    }
}
