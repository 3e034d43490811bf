//! Card history: issued cards go into a bounded queue that a background task
//! writes as soon as they arrive, in one transaction with whatever else arrived
//! meanwhile (group commit). A hook call waits for its own cards' commit, at
//! most `store.record_wait_ms`, so feedback for a card survives a crash of the
//! service right after the answer. While the database is failing, hook calls
//! do not wait at all: the queue keeps the newest entries, drops the oldest
//! with a counter and a warning, and retries the rest.
//!
//! Also the suppression lookup: which rules a clinician snoozed for this patient.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};

use super::retention::Retention;
use super::{ClientScope, FeedbackEntry, IssuedCard, Override, Store, StoreError, StoreSettings};

/// How often the writer looks at the queue when nothing wakes it (it is woken on every record).
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

/// The cards of one hook answer, and who waits for their commit.
#[derive(Debug)]
struct Issue {
    cards: Vec<IssuedCard>,
    committed: Option<oneshot::Sender<()>>,
}

/// The hook answers waiting to be written, oldest first, and how many cards they hold
/// (kept as they come and go: the hook path never counts the queue).
#[derive(Debug, Default)]
struct Waiting {
    issues: VecDeque<Issue>,
    cards: usize,
}

impl Waiting {
    fn push_back(&mut self, issue: Issue) {
        self.cards += issue.cards.len();
        self.issues.push_back(issue);
    }

    /// Puts a batch that could not be written back before newer answers, in its order.
    fn put_back(&mut self, batch: Vec<Issue>) {
        for issue in batch.into_iter().rev() {
            self.cards += issue.cards.len();
            self.issues.push_front(issue);
        }
    }

    /// Drops the oldest answers until at most `capacity` cards wait (the newest answer always
    /// stays); returns how many cards were dropped.
    fn drop_oldest_beyond(&mut self, capacity: usize) -> u64 {
        let mut dropped = 0;
        while self.cards > capacity && self.issues.len() > 1 {
            if let Some(oldest) = self.issues.pop_front() {
                self.cards -= oldest.cards.len();
                dropped += oldest.cards.len() as u64;
            }
        }
        dropped
    }

    /// Takes whole answers from the front, at most `batch_size` cards but at least one answer.
    fn take_batch(&mut self, batch_size: usize) -> Vec<Issue> {
        let mut cards = 0;
        let mut take = 0;
        for issue in &self.issues {
            if take > 0 && cards + issue.cards.len() > batch_size {
                break;
            }
            cards += issue.cards.len();
            take += 1;
        }
        self.cards -= cards;
        self.issues.drain(..take).collect()
    }
}

#[derive(Debug, Default)]
struct Queue {
    waiting: Mutex<Waiting>,
    /// Held while a batch is taken from the queue and written, so a flush that holds it sees
    /// every card not yet committed (none is in flight elsewhere).
    writing: tokio::sync::Mutex<()>,
    wake: Notify,
    dropped: AtomicU64,
    written: AtomicU64,
    /// A write failed or a hook's wait for its commit ran out, and no batch has been
    /// committed since: hooks do not wait (a database that fails or hangs costs one wait).
    stalled: std::sync::atomic::AtomicBool,
}

/// Resolves when the cards it was issued for are committed; an error when they were dropped.
pub type Committed = oneshot::Receiver<()>;

/// Overrides by patient hash, kept in memory for a single-instance (SQLite) store.
type OverrideIndex = Arc<std::sync::RwLock<HashMap<String, Vec<Override>>>>;

/// The overrides of the suppression period before `now`, by patient hash.
async fn override_index(
    store: &Store,
    suppression: &SuppressionSettings,
    now: DateTime<Utc>,
) -> Result<OverrideIndex, StoreError> {
    let mut index: HashMap<String, Vec<Override>> = HashMap::new();
    let since = now - chrono::Duration::days(suppression.period_days);
    for (patient_hash, item) in store.overrides_since(since).await? {
        index.entry(patient_hash).or_default().push(item);
    }
    Ok(Arc::new(std::sync::RwLock::new(index)))
}

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
    record_wait: Duration,
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
            Some(override_index(&store, &suppression, now).await?)
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
            record_wait: Duration::from_millis(settings.record_wait_ms),
            suppression,
        };
        let writer = history.clone();
        tokio::spawn(async move { writer.write_forever().await });
        Retention {
            days: settings.retention_days,
            keep_at_least_days: u32::try_from(history.suppression.period_days.max(0))
                .unwrap_or(u32::MAX),
            batch: settings.retention_batch,
        }
        .spawn(history.store.clone());
        Ok(history)
    }

    /// A read-only history for simulations: the overrides that snooze a rule at `now`, read
    /// once into memory (for SQLite and PostgreSQL alike); no writer and no retention task
    /// start, so nothing is written or deleted. Use it with `record_cards` off.
    pub async fn snapshot(
        store: Store,
        suppression: SuppressionSettings,
        now: DateTime<Utc>,
    ) -> Result<History, StoreError> {
        let defaults = StoreSettings::default();
        Ok(History {
            local_overrides: Some(override_index(&store, &suppression, now).await?),
            store,
            queue: Arc::new(Queue::default()),
            capacity: 1,
            batch_size: 1,
            lookup_timeout: Duration::from_millis(defaults.lookup_timeout_ms),
            record_wait: Duration::ZERO,
            suppression,
        })
    }

    /// Stores feedback from `client` once every card issued before it is committed, so each
    /// card it names counts as issued, and keeps the in-memory override index current.
    /// Returns the cards this service never issued to that client. An error means nothing was
    /// acknowledged: the caller answers 503 and the EHR sends it again.
    pub async fn store_feedback(
        &self,
        client: &ClientScope,
        entries: &[FeedbackEntry],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        self.flush().await?;
        let outcome = self.store.write_feedback(client, entries, now).await?;
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

    /// The keyed hash of a patient id of `client`.
    pub fn patient_hash(&self, client: &ClientScope, patient_id: &str) -> String {
        self.store.patient_hash(client, patient_id)
    }

    /// Queues issued cards and wakes the writer; never waits. When the queue is full, the
    /// oldest entries are dropped.
    pub fn record(&self, cards: Vec<IssuedCard>) -> Committed {
        let (committed, receiver) = oneshot::channel();
        if cards.is_empty() {
            let _ = committed.send(());
            return receiver;
        }
        let dropped = match self.queue.waiting.lock() {
            Ok(mut waiting) => {
                waiting.push_back(Issue {
                    cards,
                    committed: Some(committed),
                });
                waiting.drop_oldest_beyond(self.capacity)
            }
            Err(_) => 0,
        };
        if dropped > 0 {
            let total = self.queue.dropped.fetch_add(dropped, Ordering::Relaxed) + dropped;
            tracing::warn!(dropped, total, "history queue full; oldest entries dropped");
        }
        self.queue.wake.notify_one();
        receiver
    }

    /// Records issued cards and waits for their commit, at most `store.record_wait_ms`, and not
    /// at all while the database is failing. Returns whether they were committed.
    pub async fn record_and_wait(&self, cards: Vec<IssuedCard>) -> bool {
        let committed = self.record(cards);
        if self.queue.stalled.load(Ordering::Relaxed) {
            return false;
        }
        match tokio::time::timeout(self.record_wait, committed).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                self.queue.stalled.store(true, Ordering::Relaxed);
                false
            }
        }
    }

    /// Entries waiting to be written.
    pub fn queue_depth(&self) -> usize {
        self.queue.waiting.lock().map(|w| w.cards).unwrap_or(0)
    }

    /// Entries dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// Entries written.
    pub fn written(&self) -> u64 {
        self.queue.written.load(Ordering::Relaxed)
    }

    /// Writes everything queued now, including a batch another task was writing; an error
    /// when the database would not take it.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let _writing = self.queue.writing.lock().await;
        loop {
            if self.write_batch_locked().await? == 0 {
                return Ok(());
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
            // Write batches back to back until the queue is empty: what arrives while one is
            // written goes into the next, so a busy service commits few, large transactions.
            loop {
                let written = {
                    let _writing = self.queue.writing.lock().await;
                    self.write_batch_locked().await
                };
                match written {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                }
            }
        }
    }

    /// Writes up to one batch (whole hook answers, at least one); on failure the batch goes back
    /// to the front of the queue. The caller holds `queue.writing`.
    async fn write_batch_locked(&self) -> Result<usize, StoreError> {
        let batch = match self.queue.waiting.lock() {
            Ok(mut waiting) => waiting.take_batch(self.batch_size),
            Err(_) => return Ok(0),
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let cards: Vec<IssuedCard> = batch.iter().flat_map(|i| i.cards.clone()).collect();
        match self.store.write_issued_cards(&cards).await {
            Ok(()) => {
                self.queue
                    .written
                    .fetch_add(cards.len() as u64, Ordering::Relaxed);
                self.queue.stalled.store(false, Ordering::Relaxed);
                for issue in batch {
                    if let Some(committed) = issue.committed {
                        let _ = committed.send(());
                    }
                }
                Ok(cards.len())
            }
            Err(e) => {
                tracing::warn!(error = %e, entries = cards.len(), "history write failed; will retry");
                self.queue.stalled.store(true, Ordering::Relaxed);
                self.record_front(batch);
                Err(e)
            }
        }
    }

    /// Puts a failed batch back before newer entries, dropping the oldest beyond capacity.
    fn record_front(&self, batch: Vec<Issue>) {
        let dropped = match self.queue.waiting.lock() {
            Ok(mut waiting) => {
                waiting.put_back(batch);
                waiting.drop_oldest_beyond(self.capacity)
            }
            Err(_) => 0,
        };
        if dropped > 0 {
            self.queue.dropped.fetch_add(dropped, Ordering::Relaxed);
            tracing::warn!(
                dropped,
                "history queue full while the database is unavailable; oldest entries dropped"
            );
        }
    }
}
