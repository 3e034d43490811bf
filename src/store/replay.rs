//! The JWT replay cache in the shared database, so a token replayed against any
//! instance is refused, and what happens while that database is down: the
//! check is bounded by a short timeout and, by policy, either falls back to
//! this instance's memory for the outage or refuses the call with a 503.
//! Never a 401 after a long wait: EHRs read a 401 as bad credentials.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::{ReplayOutagePolicy, Store};
use crate::auth::{InMemoryReplayCache, ReplayCache};

/// After a failed check, how long the shared cache is not tried again (each try would cost
/// the whole timeout while the database is down).
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// The replay cache rows in the shared database.
impl ReplayCache for Store {
    fn remember<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let inserted = sqlx::query(
                "INSERT INTO jwt_replay (issuer, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT (issuer, jti) DO NOTHING",
            )
            .bind(issuer)
            .bind(jti)
            .bind(expires_at.timestamp())
            .execute(self.pool())
            .await
            .map_err(|e| e.to_string())?
            .rows_affected();
            if inserted == 0 {
                return Ok(false);
            }
            // Entries past their keep-until are refused on exp anyway, so they need not be kept.
            let _ = sqlx::query("DELETE FROM jwt_replay WHERE expires_at < $1")
                .bind(now.timestamp() - 3600)
                .execute(self.pool())
                .await;
            Ok(true)
        })
    }
}

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
    fn during_outage(&self) -> Result<bool, String> {
        match self.policy {
            ReplayOutagePolicy::Local => Ok(true),
            ReplayOutagePolicy::Refuse => Err(
                "the shared replay cache is unreachable (store.replay_on_outage = refuse)"
                    .to_owned(),
            ),
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
    ) -> BoxFuture<'a, Result<bool, String>> {
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
                self.shared.remember(issuer, jti, expires_at, now),
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
