//! Retention of the card history: rows older than `store.retention_days` are deleted by a
//! background job in small batches, with a pause between batches, so a hook call's write
//! never waits behind a long delete. Issued cards, their feedback and overrides go; the
//! suppression window (`suppression.period_days`) is always kept, whatever the setting.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Store, StoreError};

/// How often the job looks for expired rows.
const SWEEP_INTERVAL: Duration = Duration::from_secs(600);
/// The pause between two batches of one sweep.
const BATCH_PAUSE: Duration = Duration::from_millis(100);

/// Rows deleted by one sweep, by table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Issued cards.
    pub cards: u64,
    /// Feedback entries.
    pub feedback: u64,
    /// Overrides (the suppression index).
    pub overrides: u64,
}

impl Pruned {
    fn total(&self) -> u64 {
        self.cards + self.feedback + self.overrides
    }
}

/// What the job keeps: `days` of history (never less than `keep_at_least_days`, the
/// suppression window), deleted `batch` rows at a time. `days = 0` keeps everything.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Days of history kept.
    pub days: u32,
    /// Days that are always kept (the suppression window).
    pub keep_at_least_days: u32,
    /// Rows per delete statement.
    pub batch: u32,
}

impl Retention {
    /// The oldest time kept as of `now`, or `None` when everything is kept.
    pub fn cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.days > 0).then(|| {
            now - chrono::Duration::days(i64::from(self.days.max(self.keep_at_least_days)))
        })
    }

    /// Deletes every row older than the cutoff as of `now`, batch by batch.
    pub async fn sweep(&self, store: &Store, now: DateTime<Utc>) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned::default();
        let Some(cutoff) = self.cutoff(now) else {
            return Ok(pruned);
        };
        loop {
            let batch = store.prune_batch(cutoff, self.batch.max(1)).await?;
            pruned.cards += batch.cards;
            pruned.feedback += batch.feedback;
            pruned.overrides += batch.overrides;
            if batch.total() == 0 {
                return Ok(pruned);
            }
            tokio::time::sleep(BATCH_PAUSE).await;
        }
    }

    /// Sweeps every ten minutes, the first time at once, for as long as the service runs.
    pub fn spawn(self, store: Store) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                ticks.tick().await;
                match self.sweep(&store, Utc::now()).await {
                    Ok(pruned) if pruned.total() > 0 => tracing::info!(
                        cards = pruned.cards,
                        feedback = pruned.feedback,
                        overrides = pruned.overrides,
                        retention_days = self.days,
                        "history pruned"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "history pruning failed; will retry"),
                }
            }
        })
    }
}
