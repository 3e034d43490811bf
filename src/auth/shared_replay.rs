//! The JWT replay cache in the shared database, so a token replayed against any
//! instance is refused, and what happens while that database is down: the
//! check is bounded by a short timeout and, by policy, either falls back to
//! this instance's memory for the outage or refuses the call with a 503.
//! Never a 401 after a long wait: EHRs read a 401 as bad credentials.
//!
//! This is where authentication meets persistence: the rows are the store's
//! ([`Store::remember_jti`]), the policy of what a miss means is authentication's.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::replay::{InMemoryReplayCache, ReplayCache, ReplayCacheError};
use crate::store::{ReplayOutagePolicy, Store};

/// After a failed check, how long the shared cache is not tried again (each try would cost
/// the whole timeout while the database is down).
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// The shared cache behind a timeout, with the outage policy.
#[derive(Debug)]
pub struct SharedReplayCache {
    shared: Store,
    timeout: Duration,
    policy: ReplayOutagePolicy,
    local: InMemoryReplayCache,
    skip_shared_until: Mutex<Option<Instant>>,
}

impl SharedReplayCache {
    /// Checks `jti`s in `shared`, each within `timeout`; during an outage, follows `policy`.
    pub fn new(shared: Store, timeout: Duration, policy: ReplayOutagePolicy) -> SharedReplayCache {
        SharedReplayCache {
            shared,
            timeout,
            policy,
            local: InMemoryReplayCache::default(),
            skip_shared_until: Mutex::new(None),
        }
    }

    fn shared_is_down(&self) -> bool {
        self.skip_shared_until
            .lock()
            .map(|until| until.is_some_and(|t| Instant::now() < t))
            .unwrap_or(false)
    }

    fn mark_down(&self) {
        if let Ok(mut until) = self.skip_shared_until.lock() {
            *until = Some(Instant::now() + RETRY_AFTER);
        }
    }

    /// The answer while the shared cache is down, for a `jti` this instance has not seen.
    fn during_outage(&self) -> Result<bool, ReplayCacheError> {
        match self.policy {
            ReplayOutagePolicy::Local => Ok(true),
            ReplayOutagePolicy::Refuse => Err(ReplayCacheError::SharedUnreachable),
        }
    }
}

impl ReplayCache for SharedReplayCache {
    fn remember<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, ReplayCacheError>> {
        Box::pin(async move {
            // Every jti is also kept here, so one seen during an outage stays refused after it.
            if !self.local.remember(issuer, jti, expires_at, now).await? {
                return Ok(false);
            }
            if self.shared_is_down() {
                return self.during_outage();
            }
            let checked = tokio::time::timeout(
                self.timeout,
                self.shared.remember_jti(issuer, jti, expires_at, now),
            )
            .await;
            match checked {
                Ok(Ok(fresh)) => Ok(fresh),
                Ok(Err(error)) => {
                    tracing::warn!(%error, policy = ?self.policy, "shared replay cache failed");
                    self.mark_down();
                    self.during_outage()
                }
                Err(_) => {
                    tracing::warn!(timeout_ms = self.timeout.as_millis() as u64, policy = ?self.policy,
                        "shared replay cache timed out");
                    self.mark_down();
                    self.during_outage()
                }
            }
        })
    }
}
