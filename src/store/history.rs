//! Card history written off the hook's path: issued cards go into a bounded
//! queue that a background task writes in batches. When the database is slow
//! or down, hook calls never wait: the queue keeps the newest entries, drops the
//! oldest with a counter and a warning, and retries the rest.
//!
//! Also the suppression lookup: which rules a clinician snoozed for this patient.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{FeedbackEntry, IssuedCard, Override, Store, StoreError, StoreSettings};

/// How often the writer writes what is queued.
const WRITE_INTERVAL: Duration = Duration::from_millis(200);

/// Override-based suppression settings (`[suppression]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuppressionSettings {
    /// How long an override snoozes its rule for the patient, in days.
    pub period_days: i64,
    /// Override reason codes that snooze a rule (unless the rule has its own list).
    pub snoozing_reasons: Vec<String>,
    /// Per-rule lists of snoozing reason codes, replacing `snoozing_reasons` for that rule.
    pub rules: HashMap<String, Vec<String>>,
}

impl Default for SuppressionSettings {
    fn default() -> Self {
        SuppressionSettings {
            period_days: 30,
            snoozing_reasons: vec!["already-addressed".to_owned()],
            rules: HashMap::new(),
        }
    }
}

impl SuppressionSettings {
    fn snoozes(&self, rule_id: &str, reason_code: &str) -> bool {
        self.rules
            .get(rule_id)
            .unwrap_or(&self.snoozing_reasons)
            .iter()
            .any(|r| r == reason_code)
    }
}

/// A rule snoozed for a patient.
#[derive(Debug, Clone, PartialEq)]
pub struct Snooze {
    /// The rule.
    pub rule_id: String,
    /// The override reason that snoozed it.
    pub reason_code: String,
    /// Until when.
    pub until: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Queue {
    entries: Mutex<VecDeque<IssuedCard>>,
    wake: Notify,
    dropped: AtomicU64,
    written: AtomicU64,
}

/// Overrides by patient hash, kept in memory for a single-instance (SQLite) store.
type OverrideIndex = Arc<std::sync::RwLock<HashMap<String, Vec<Override>>>>;

/// The history: queue, writer and suppression lookup. Cheap to clone.
#[derive(Debug, Clone)]
pub struct History {
    store: Store,
    /// For a SQLite store (one instance by design), the overrides in memory: no database read
    /// on the hook path. `None` for PostgreSQL, whose state other instances share.
    local_overrides: Option<OverrideIndex>,
    queue: Arc<Queue>,
    capacity: usize,
    batch_size: usize,
    lookup_timeout: Duration,
    suppression: SuppressionSettings,
}

impl History {
    /// Starts the background writer on the current runtime.
    pub async fn start(
        store: Store,
        settings: &StoreSettings,
        suppression: SuppressionSettings,
        now: DateTime<Utc>,
    ) -> Result<History, StoreError> {
        let local_overrides = if store.is_single_instance() {
            let mut index: HashMap<String, Vec<Override>> = HashMap::new();
            let since = now - chrono::Duration::days(suppression.period_days);
            for (patient_hash, item) in store.overrides_since(since).await? {
                index.entry(patient_hash).or_default().push(item);
            }
            Some(Arc::new(std::sync::RwLock::new(index)))
        } else {
            None
        };
        let history = History {
            store,
            local_overrides,
            queue: Arc::new(Queue::default()),
            capacity: settings.queue_capacity.max(1),
            batch_size: settings.batch_size.max(1),
            lookup_timeout: Duration::from_millis(settings.lookup_timeout_ms),
            suppression,
        };
        let writer = history.clone();
        tokio::spawn(async move { writer.write_forever().await });
        Ok(history)
    }

    /// Stores feedback (after writing any queued cards, so they count as issued) and keeps the
    /// in-memory override index current. Returns the cards this service never issued.
    pub async fn store_feedback(
        &self,
        entries: &[FeedbackEntry],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        self.flush().await;
        let outcome = self.store.write_feedback(entries, now).await?;
        if let Some(index) = &self.local_overrides
            && let Ok(mut index) = index.write()
        {
            for (patient_hash, item) in outcome.overrides {
                index.entry(patient_hash).or_default().push(item);
            }
        }
        Ok(outcome.unknown_cards)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The keyed hash of a patient id.
    pub fn patient_hash(&self, patient_id: &str) -> String {
        self.store.patient_hash(patient_id)
    }

    /// Queues issued cards; never waits. When the queue is full, the oldest entries are dropped.
    pub fn record(&self, cards: Vec<IssuedCard>) {
        if cards.is_empty() {
            return;
        }
        let mut dropped = 0;
        if let Ok(mut entries) = self.queue.entries.lock() {
            for card in cards {
                if entries.len() >= self.capacity {
                    entries.pop_front();
                    dropped += 1;
                }
                entries.push_back(card);
            }
        }
        if dropped > 0 {
            let total = self.queue.dropped.fetch_add(dropped, Ordering::Relaxed) + dropped;
            tracing::warn!(dropped, total, "history queue full; oldest entries dropped");
        }
        // The writer runs every WRITE_INTERVAL; it is woken early only when a full batch waits,
        // so a busy service writes a few large transactions a second, not one per card.
        if self.queue_depth() >= self.batch_size {
            self.queue.wake.notify_one();
        }
    }

    /// Entries waiting to be written.
    pub fn queue_depth(&self) -> usize {
        self.queue.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Entries dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// Entries written.
    pub fn written(&self) -> u64 {
        self.queue.written.load(Ordering::Relaxed)
    }

    /// Writes everything queued now; returns whether the queue ended empty.
    pub async fn flush(&self) -> bool {
        loop {
            match self.write_batch().await {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(()) => return false,
            }
        }
    }

    /// Rules snoozed for this patient at `now`. A slow or failing database means none,
    /// after at most the lookup timeout: the hook call goes on.
    pub async fn snoozes(&self, patient_hash: &str, now: DateTime<Utc>) -> Vec<Snooze> {
        let period = chrono::Duration::days(self.suppression.period_days);
        let overrides = if let Some(index) = &self.local_overrides {
            index
                .read()
                .map(|index| index.get(patient_hash).cloned().unwrap_or_default())
                .unwrap_or_default()
        } else {
            self.database_overrides(patient_hash, now - period).await
        };
        overrides
            .into_iter()
            .filter(|o| self.suppression.snoozes(&o.rule_id, &o.reason_code))
            .map(|o| Snooze {
                until: o.at + period,
                rule_id: o.rule_id,
                reason_code: o.reason_code,
            })
            .filter(|s| s.until > now)
            .collect()
    }

    async fn database_overrides(&self, patient_hash: &str, since: DateTime<Utc>) -> Vec<Override> {
        let lookup = self.store.overrides_for_patient(patient_hash, since);
        match tokio::time::timeout(self.lookup_timeout, lookup).await {
            Ok(Ok(overrides)) => overrides,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "suppression lookup failed; no card is suppressed");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!("suppression lookup timed out; no card is suppressed");
                Vec::new()
            }
        }
    }

    async fn write_forever(&self) {
        loop {
            let _ = tokio::time::timeout(WRITE_INTERVAL, self.queue.wake.notified()).await;
            // Write full batches back to back, then wait for the next interval.
            loop {
                match self.write_batch().await {
                    Ok(n) if n == self.batch_size => continue,
                    Ok(_) => break,
                    Err(()) => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                }
            }
        }
    }

    /// Writes up to one batch; on failure the batch goes back to the front of the queue.
    async fn write_batch(&self) -> Result<usize, ()> {
        let batch: Vec<IssuedCard> = match self.queue.entries.lock() {
            Ok(mut entries) => {
                let n = entries.len().min(self.batch_size);
                entries.drain(..n).collect()
            }
            Err(_) => return Err(()),
        };
        if batch.is_empty() {
            return Ok(0);
        }
        match self.store.write_issued_cards(&batch).await {
            Ok(()) => {
                self.queue
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                Ok(batch.len())
            }
            Err(e) => {
                tracing::warn!(error = %e, entries = batch.len(), "history write failed; will retry");
                self.record_front(batch);
                Err(())
            }
        }
    }

    /// Puts a failed batch back before newer entries, dropping the oldest beyond capacity.
    fn record_front(&self, batch: Vec<IssuedCard>) {
        let mut dropped = 0;
        if let Ok(mut entries) = self.queue.entries.lock() {
            for card in batch.into_iter().rev() {
                entries.push_front(card);
            }
            while entries.len() > self.capacity {
                entries.pop_front();
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.queue.dropped.fetch_add(dropped, Ordering::Relaxed);
            tracing::warn!(
                dropped,
                "history queue full while the database is unavailable; oldest entries dropped"
            );
        }
    }
}
