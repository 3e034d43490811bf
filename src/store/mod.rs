//! Persistence: issued cards, feedback and the JWT replay cache, in SQLite (a
//! file, the default) or PostgreSQL (for several instances sharing state).
//! One set of migrations and queries serves both, through sqlx's `Any` driver.
//! Patients are stored only as a keyed hash (HMAC-SHA256), never by id.

pub mod history;
pub mod report;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

use crate::auth::ReplayCache;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations");

/// Store settings (`[store]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite://path` (created on first start) or `postgres://...`.
    pub database_url: String,
    /// Secret key of the patient hash; generated and kept in the database when unset.
    pub patient_key: Option<String>,
    /// Most history entries waiting to be written; beyond it the oldest are dropped.
    pub queue_capacity: usize,
    /// Most entries written in one transaction.
    pub batch_size: usize,
    /// How long a hook call waits for the suppression lookup before going on without it, in ms.
    pub lookup_timeout_ms: u64,
    /// Connections in the pool.
    pub max_connections: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            database_url: "sqlite://cramp-cds.db".to_owned(),
            patient_key: None,
            queue_capacity: 10_000,
            batch_size: 500,
            lookup_timeout_ms: 100,
            max_connections: 8,
        }
    }
}

/// A database error, described for logs.
#[derive(Debug, thiserror::Error)]
#[error("database: {0}")]
pub struct StoreError(String);

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// A card as it was issued, for history, reports and suppression.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedCard {
    /// `card.uuid`.
    pub card_uuid: String,
    /// The service that issued it.
    pub service_id: String,
    /// `card.source.topic.code`.
    pub rule_id: String,
    /// `card.indicator`.
    pub indicator: String,
    /// The request's `hookInstance`.
    pub hook_instance: String,
    /// The patient's keyed hash.
    pub patient_hash: String,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// Its suggestions' uuids.
    pub suggestion_uuids: Vec<String>,
}

/// One feedback entry, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackEntry {
    /// `card`: the card's uuid.
    pub card_uuid: String,
    /// `accepted` or `overridden`.
    pub outcome: String,
    /// `outcomeTimestamp` as sent (part of the idempotency key).
    pub outcome_timestamp: String,
    /// `outcomeTimestamp` parsed.
    pub outcome_at: DateTime<Utc>,
    /// The service it was sent to.
    pub service_id: String,
    /// `acceptedSuggestions[].id`.
    pub accepted_suggestions: Vec<String>,
    /// `overrideReason.reason.system`.
    pub reason_system: Option<String>,
    /// `overrideReason.reason.code`.
    pub reason_code: Option<String>,
    /// `overrideReason.reason.display`.
    pub reason_display: Option<String>,
    /// `overrideReason.userComment`.
    pub user_comment: Option<String>,
}

/// What storing feedback found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedbackOutcome {
    /// Cards among the feedback this service never issued.
    pub unknown_cards: Vec<String>,
    /// Overrides with a reason, as (patient hash, override), for the suppression index.
    pub overrides: Vec<(String, Override)>,
}

/// An override of a rule for a patient: the reason code and when it was given.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The rule overridden.
    pub rule_id: String,
    /// The reason's code.
    pub reason_code: String,
    /// The latest such override.
    pub at: DateTime<Utc>,
}

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    patient_key: Vec<u8>,
    single_instance: bool,
}

impl Store {
    /// Connects, creates a SQLite file on first start (WAL mode), runs the migrations and
    /// settles the patient-hash key.
    pub async fn connect(settings: &StoreSettings) -> Result<Store, StoreError> {
        install_default_drivers();
        let url = &settings.database_url;
        let is_sqlite = url.starts_with("sqlite:");
        let url = if is_sqlite && !url.contains("mode=") {
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}mode=rwc")
        } else {
            url.clone()
        };
        if is_sqlite
            && let Some(parent) = sqlite_path(&url).and_then(|p| Path::new(p).parent())
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError(format!("cannot create {}: {e}", parent.display())))?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            // Warm connections keep the suppression lookup within its budget on PostgreSQL.
            .min_connections(if is_sqlite {
                0
            } else {
                2.min(settings.max_connections)
            })
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if is_sqlite {
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *connection)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 2000")
                            .execute(&mut *connection)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        MIGRATIONS
            .run(&pool)
            .await
            .map_err(|e| StoreError(format!("migrations: {e}")))?;
        let patient_key = match &settings.patient_key {
            Some(key) if !key.is_empty() => key.as_bytes().to_vec(),
            _ => stored_patient_key(&pool).await?,
        };
        Ok(Store {
            pool,
            patient_key,
            single_instance: is_sqlite,
        })
    }

    /// The keyed hash that stands for a patient id.
    pub fn patient_hash(&self, patient_id: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.patient_key).expect("HMAC takes any key length");
        mac.update(patient_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Writes issued cards in one transaction, many rows per statement (one round trip to
    /// the database per [`ROWS_PER_INSERT`] cards); a card already written is left as it is.
    pub async fn write_issued_cards(&self, cards: &[IssuedCard]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for chunk in cards.chunks(ROWS_PER_INSERT) {
            // The statement is built from constants only; the values are bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(issued_cards_insert(chunk.len())));
            for card in chunk {
                query = query
                    .bind(&card.card_uuid)
                    .bind(&card.service_id)
                    .bind(&card.rule_id)
                    .bind(&card.indicator)
                    .bind(&card.hook_instance)
                    .bind(&card.patient_hash)
                    .bind(card.issued_at.timestamp())
                    .bind(serde_json::to_string(&card.suggestion_uuids).unwrap_or_default());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores feedback; an entry already stored (same card, outcome and timestamp) is left as it is.
    pub async fn write_feedback(
        &self,
        entries: &[FeedbackEntry],
        now: DateTime<Utc>,
    ) -> Result<FeedbackOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut outcome = FeedbackOutcome::default();
        for entry in entries {
            sqlx::query(
                "INSERT INTO feedback (card_uuid, outcome, outcome_timestamp, outcome_at, service_id, accepted_suggestions, \
                 reason_system, reason_code, reason_display, user_comment, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (card_uuid, outcome, outcome_timestamp) DO NOTHING",
            )
            .bind(&entry.card_uuid)
            .bind(&entry.outcome)
            .bind(&entry.outcome_timestamp)
            .bind(entry.outcome_at.timestamp())
            .bind(&entry.service_id)
            .bind(serde_json::to_string(&entry.accepted_suggestions).unwrap_or_default())
            .bind(entry.reason_system.clone())
            .bind(entry.reason_code.clone())
            .bind(entry.reason_display.clone())
            .bind(entry.user_comment.clone())
            .bind(now.timestamp())
            .execute(&mut *tx)
            .await?;
            if entry.outcome == "overridden"
                && let Some(code) = &entry.reason_code
            {
                sqlx::query(
                    "INSERT INTO overrides (patient_hash, rule_id, reason_code, overridden_at, card_uuid) \
                     SELECT patient_hash, rule_id, $1, $2, card_uuid FROM issued_cards WHERE card_uuid = $3 \
                     ON CONFLICT (patient_hash, rule_id, reason_code, card_uuid) DO NOTHING",
                )
                .bind(code)
                .bind(entry.outcome_at.timestamp())
                .bind(&entry.card_uuid)
                .execute(&mut *tx)
                .await?;
            }
            let card =
                sqlx::query("SELECT patient_hash, rule_id FROM issued_cards WHERE card_uuid = $1")
                    .bind(&entry.card_uuid)
                    .fetch_optional(&mut *tx)
                    .await?;
            match card {
                None => {
                    if !outcome.unknown_cards.contains(&entry.card_uuid) {
                        outcome.unknown_cards.push(entry.card_uuid.clone());
                    }
                }
                Some(row) => {
                    if let (true, Some(code)) = (entry.outcome == "overridden", &entry.reason_code)
                    {
                        outcome.overrides.push((
                            row.try_get(0)?,
                            Override {
                                rule_id: row.try_get(1)?,
                                reason_code: code.clone(),
                                at: entry.outcome_at,
                            },
                        ));
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Every override given since `since`, by patient hash (to build an in-memory index).
    pub async fn overrides_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, Override)>, StoreError> {
        let rows = sqlx::query(
            "SELECT patient_hash, rule_id, reason_code, MAX(overridden_at) FROM overrides \
             WHERE overridden_at >= $1 GROUP BY patient_hash, rule_id, reason_code",
        )
        .bind(since.timestamp())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    Override {
                        rule_id: row.try_get(1)?,
                        reason_code: row.try_get(2)?,
                        at: DateTime::from_timestamp(row.try_get::<i64, _>(3)?, 0)
                            .unwrap_or_default(),
                    },
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Whether this is a single-instance (SQLite) database.
    pub fn is_single_instance(&self) -> bool {
        self.single_instance
    }

    /// Overrides (with a reason code) of cards issued for this patient, given since `since`.
    pub async fn overrides_for_patient(
        &self,
        patient_hash: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Override>, StoreError> {
        let rows = sqlx::query(
            "SELECT rule_id, reason_code, MAX(overridden_at) FROM overrides \
             WHERE patient_hash = $1 AND overridden_at >= $2 GROUP BY rule_id, reason_code",
        )
        .bind(patient_hash)
        .bind(since.timestamp())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Override {
                    rule_id: row.try_get(0)?,
                    reason_code: row.try_get(1)?,
                    at: DateTime::from_timestamp(row.try_get::<i64, _>(2)?, 0).unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// The pool, for reports.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// The replay cache in the shared database: a token replayed against any instance is rejected.
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
            .execute(&self.pool)
            .await
            .map_err(|e| e.to_string())?
            .rows_affected();
            if inserted == 0 {
                return Ok(false);
            }
            // Tokens past their expiry are rejected on exp, so their jti need not be kept.
            let _ = sqlx::query("DELETE FROM jwt_replay WHERE expires_at < $1")
                .bind(now.timestamp() - 3600)
                .execute(&self.pool)
                .await;
            Ok(true)
        })
    }
}

/// Cards written by one `INSERT` statement: 8 parameters each stays far below both
/// SQLite's (32,766) and PostgreSQL's (65,535) limits on bound parameters.
pub const ROWS_PER_INSERT: usize = 100;

/// `INSERT INTO issued_cards ... VALUES (...), (...)` for `rows` rows, with `$N` placeholders.
fn issued_cards_insert(rows: usize) -> String {
    const COLUMNS: usize = 8;
    let mut sql = String::from(
        "INSERT INTO issued_cards (card_uuid, service_id, rule_id, indicator, hook_instance, \
         patient_hash, issued_at, suggestion_uuids) VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..COLUMNS {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", row * COLUMNS + column + 1));
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (card_uuid) DO NOTHING");
    sql
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

async fn stored_patient_key(pool: &AnyPool) -> Result<Vec<u8>, StoreError> {
    let generated = hex::encode(uuid::Uuid::new_v4().as_bytes())
        + &hex::encode(uuid::Uuid::new_v4().as_bytes());
    sqlx::query("INSERT INTO service_secrets (name, value) VALUES ('patient_key', $1) ON CONFLICT (name) DO NOTHING")
        .bind(&generated)
        .execute(pool)
        .await?;
    let key: String = sqlx::query("SELECT value FROM service_secrets WHERE name = 'patient_key'")
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    Ok(key.into_bytes())
}
