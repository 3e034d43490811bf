//! Persistence: issued cards, feedback and the JWT replay cache, in SQLite (a
//! file, the default) or PostgreSQL (for several instances sharing state).
//! One set of migrations and queries serves both, through sqlx's `Any` driver.
//! Patients are stored only as a keyed hash (HMAC-SHA256), never by id.

pub mod history;
pub mod replay;
pub mod report;
pub mod retention;
pub mod tls;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Row};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations");

/// Store settings (`[store]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite://path` (created on first start unless `create_if_missing` is false) or `postgres://...`.
    pub database_url: String,
    /// Secret key of the patient hash; generated and kept in the database when unset. A
    /// secret: its `Debug` is redacted and it is never serialised.
    #[serde(skip_serializing)]
    pub patient_key: Option<SecretString>,
    /// Most history entries waiting to be written; beyond it the oldest are dropped.
    pub queue_capacity: usize,
    /// Most entries written in one transaction.
    pub batch_size: usize,
    /// How long a hook call waits for the suppression lookup before going on without it, in ms.
    pub lookup_timeout_ms: u64,
    /// How long a hook call waits for its cards to be committed before answering anyway, in ms
    /// (skipped while the database is failing).
    pub record_wait_ms: u64,
    /// How long a JWT replay check in a shared (PostgreSQL) database may take, in ms.
    pub replay_timeout_ms: u64,
    /// What authentication does while the shared replay cache cannot be reached.
    pub replay_on_outage: ReplayOutagePolicy,
    /// Connections in the pool.
    pub max_connections: u32,
    /// Whether a SQLite database that does not exist is created (with a new patient key).
    pub create_if_missing: bool,
    /// Days of card history kept (cards, feedback, overrides); older rows are deleted by a
    /// background job in small batches. 0 keeps everything. Never less than the suppression
    /// window.
    pub retention_days: u32,
    /// Rows deleted per statement by the retention job.
    pub retention_batch: u32,
    /// PEM file of the CA that signed the PostgreSQL server's certificate: the URL's
    /// `sslrootcert`, with `sslmode=verify-full` unless the URL sets a mode.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            database_url: "sqlite://cramp-cds.db".to_owned(),
            patient_key: None,
            queue_capacity: 10_000,
            batch_size: 500,
            lookup_timeout_ms: 100,
            record_wait_ms: 250,
            replay_timeout_ms: 250,
            replay_on_outage: ReplayOutagePolicy::Local,
            max_connections: 8,
            create_if_missing: true,
            retention_days: 400,
            retention_batch: 1000,
            ca_file: None,
        }
    }
}

/// What authentication does while the shared (PostgreSQL) replay cache is down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayOutagePolicy {
    /// Check `jti`s in this instance's memory for the outage: hooks keep answering, and a token
    /// replayed against this instance is still refused (one replayed against another is not).
    #[default]
    Local,
    /// Refuse every call with 503 (never 401, which EHRs read as a credentials problem).
    Refuse,
}

/// A database error, described for logs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The migrations could not be applied.
    #[error("migrations: {0}")]
    Migrations(#[from] sqlx::migrate::MigrateError),
    /// The database holds migrations this build does not know: a newer release set it up.
    #[error(
        "the database schema is newer than this release: migration {0} was applied by a newer cramp-cds. \
         Run the newer release, or restore a backup taken before the upgrade"
    )]
    SchemaNewer(i64),
    /// The PostgreSQL TLS settings cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsSettingError),
    /// `store.database_url` is a `sqlite:` URL without a file path.
    #[error(
        "store.database_url: '{0}' names no database file: write sqlite://path/to/cramp-cds.db"
    )]
    NoDatabaseFile(String),
    /// `store.database_url` is an in-memory SQLite database.
    #[error(
        "store.database_url: '{0}' is an in-memory database, which would lose every card and feedback on restart: \
         name a file, e.g. sqlite://cramp-cds.db"
    )]
    InMemory(String),
    /// The SQLite file does not exist and `store.create_if_missing` is false.
    #[error(
        "store.database_url: there is no database at {0}, and store.create_if_missing is false: restore the \
         database, or set store.create_if_missing = true to start a new, empty one"
    )]
    NotCreated(String),
    /// The SQLite file was deleted or replaced under the running service.
    #[error(
        "the database file {0} was removed or replaced while the service ran; nothing more is written \
         to it: restore it from a backup and restart"
    )]
    FileGone(String),
    /// The directory of a new SQLite file could not be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateDirectory {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Whose cards and feedback these are: the client (JWT issuer) and the tenant its token named.
/// Feedback from one client never reaches another's cards, and suppression never crosses clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ClientScope(String);

impl ClientScope {
    /// Unauthenticated calls (local trials) and the command line.
    pub fn local() -> ClientScope {
        ClientScope::default()
    }

    /// A trusted client's calls, for one tenant (or none).
    pub fn of(issuer: &str, tenant: Option<&str>) -> ClientScope {
        // JSON keeps the two parts apart whatever characters they hold.
        ClientScope(serde_json::json!([issuer, tenant]).to_string())
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A card as it was issued, for history, reports and suppression.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedCard {
    /// `card.uuid`.
    pub card_uuid: String,
    /// The client it was issued to.
    pub client_scope: ClientScope,
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
    /// The version of the knowledge that made it ([`KnowledgeVersion::id`](crate::knowledge::KnowledgeVersion::id)).
    pub knowledge_version: String,
    /// Its suggestions' uuids.
    pub suggestion_uuids: Vec<String>,
}

pub use crate::hooks::feedback::FeedbackEntry;

/// What storing feedback found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedbackOutcome {
    /// Cards among the feedback this service never issued to this client.
    pub unknown_cards: Vec<String>,
    /// Overrides with a reason, as (patient hash, override), for the suppression index.
    pub overrides: Vec<(String, Override)>,
}

/// An override of a rule for a patient: the reason code and when it was received.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The rule overridden.
    pub rule_id: String,
    /// The reason's code.
    pub reason_code: String,
    /// When the service received the latest such override.
    pub at: DateTime<Utc>,
}

/// A SQLite database file and the identity (device, inode) it had when the service opened it.
#[derive(Debug, Clone)]
struct DatabaseFile {
    path: String,
    identity: (u64, u64),
}

impl DatabaseFile {
    fn open(path: &str) -> Result<DatabaseFile, StoreError> {
        Ok(DatabaseFile {
            path: path.to_owned(),
            identity: file_identity(path).ok_or_else(|| StoreError::FileGone(path.to_owned()))?,
        })
    }

    /// Whether the file is still the one opened: connections to a deleted file go on writing to
    /// it silently, and the rows are gone with it.
    fn check(&self) -> Result<(), StoreError> {
        match file_identity(&self.path) {
            Some(identity) if identity == self.identity => Ok(()),
            _ => Err(StoreError::FileGone(self.path.clone())),
        }
    }
}

fn file_identity(path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.dev(), metadata.ino()))
}

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    patient_key: SecretSlice<u8>,
    single_instance: bool,
    file: Option<DatabaseFile>,
}

impl Store {
    /// Connects, creates a SQLite file on first start when allowed (WAL mode), runs the
    /// migrations and settles the patient-hash key. The running service never creates a
    /// database file: a file deleted under it is reported, not silently replaced.
    pub async fn connect(settings: &StoreSettings) -> Result<Store, StoreError> {
        install_default_drivers();
        let url = settings.database_url.as_str();
        let is_sqlite = url.starts_with("sqlite:");
        let file = if is_sqlite {
            let path = sqlite_path(url)?;
            if file_identity(path).is_none() {
                create_sqlite_file(path, settings.create_if_missing).await?;
            }
            Some(DatabaseFile::open(path)?)
        } else {
            None
        };
        let url = if is_sqlite && !url.contains("mode=") {
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}mode=rw")
        } else if is_sqlite {
            url.to_owned()
        } else {
            tls::postgres_url(url, settings.ca_file.as_deref())?
        };
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            // Warm connections keep the suppression lookup within its budget on PostgreSQL.
            .min_connections(if is_sqlite {
                0
            } else {
                2.min(settings.max_connections)
            })
            .acquire_timeout(Duration::from_secs(5))
            // A broken connection shows on use, and a connection that saw an error is closed
            // (`settle`); a test query per acquire would cost a round trip on every write.
            .test_before_acquire(false)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if is_sqlite {
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *connection)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 2000")
                            .execute(&mut *connection)
                            .await?;
                        // Card history commits without a sync; feedback raises it to FULL.
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *connection)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        // On PostgreSQL the migrator holds an advisory lock: of several replicas starting at
        // once, one applies the migrations and the others wait, then find nothing to do.
        MIGRATIONS.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::VersionMissing(version) => {
                StoreError::SchemaNewer(version)
            }
            other => StoreError::Migrations(other),
        })?;
        let patient_key = match &settings.patient_key {
            Some(key) if !key.expose_secret().is_empty() => {
                SecretSlice::from(key.expose_secret().as_bytes().to_vec())
            }
            _ => stored_patient_key(&pool).await?,
        };
        Ok(Store {
            pool,
            patient_key,
            single_instance: is_sqlite,
            file,
        })
    }

    /// Deletes up to `limit` rows older than `cutoff` from each history table: issued cards,
    /// their feedback, and overrides.
    pub async fn prune_batch(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<retention::Pruned, StoreError> {
        let mut connection = self.writer().await?;
        let cutoff = cutoff.timestamp();
        let limit = i64::from(limit);
        // Feedback and overrides first: they name the cards.
        const STATEMENTS: [&str; 3] = [
            "DELETE FROM feedback WHERE card_uuid IN \
             (SELECT card_uuid FROM feedback WHERE received_at < $1 LIMIT $2)",
            "DELETE FROM overrides WHERE card_uuid IN \
             (SELECT card_uuid FROM overrides WHERE overridden_at < $1 LIMIT $2)",
            "DELETE FROM issued_cards WHERE card_uuid IN \
             (SELECT card_uuid FROM issued_cards WHERE issued_at < $1 LIMIT $2)",
        ];
        let result: Result<retention::Pruned, sqlx::Error> = async {
            let mut deleted = [0; 3];
            for (statement, count) in STATEMENTS.iter().zip(&mut deleted) {
                *count = sqlx::query(*statement)
                    .bind(cutoff)
                    .bind(limit)
                    .execute(&mut *connection)
                    .await?
                    .rows_affected();
            }
            let [feedback, overrides, cards] = deleted;
            Ok(retention::Pruned {
                cards,
                feedback,
                overrides,
            })
        }
        .await;
        Self::settle(connection, result)
    }

    /// The keyed hash that stands for a patient id of one client: the same id sent by two
    /// EHRs is two patients, and the local scope keeps the hash of earlier versions.
    pub fn patient_hash(&self, client: &ClientScope, patient_id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.patient_key.expose_secret())
            .expect("HMAC takes any key length");
        if !client.as_str().is_empty() {
            mac.update(&(client.as_str().len() as u64).to_be_bytes());
            mac.update(client.as_str().as_bytes());
        }
        mac.update(patient_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A pooled connection for a write, after checking the database file is still the one opened.
    async fn writer(&self) -> Result<PoolConnection<Any>, StoreError> {
        if let Some(file) = &self.file {
            file.check()?;
        }
        Ok(self.pool.acquire().await?)
    }

    /// Ends a write: a connection that saw an error is closed, never reused (after a failed
    /// commit SQLite and the driver can disagree on whether a transaction is open, and later
    /// "commits" on it would acknowledge rows that are never written).
    fn settle<T>(
        mut connection: PoolConnection<Any>,
        result: Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        if result.is_err() {
            connection.close_on_drop();
        }
        result.map_err(StoreError::from)
    }

    /// Writes issued cards in one transaction, many rows per statement (one round trip to
    /// the database per [`ROWS_PER_INSERT`] cards); a card already written is left as it is.
    ///
    /// The commit survives a crash of this process, not necessarily of the machine: SQLite
    /// syncs the WAL at checkpoints rather than at each commit (`synchronous = NORMAL`), and
    /// PostgreSQL commits asynchronously (`synchronous_commit = off`). Feedback, which is
    /// acknowledged to the EHR, is always synced before its 200.
    pub async fn write_issued_cards(&self, cards: &[IssuedCard]) -> Result<(), StoreError> {
        let mut connection = self.writer().await?;
        let result = insert_issued_cards(&mut connection, cards, self.single_instance).await;
        Self::settle(connection, result)
    }

    /// Stores feedback from `client`, received at `now`; an entry already stored (same card,
    /// outcome and timestamp) is left as it is. Returns when the transaction is committed.
    pub async fn write_feedback(
        &self,
        client: &ClientScope,
        entries: &[FeedbackEntry],
        now: DateTime<Utc>,
    ) -> Result<FeedbackOutcome, StoreError> {
        let mut connection = self.writer().await?;
        let result =
            insert_feedback(&mut connection, client, entries, now, self.single_instance).await;
        Self::settle(connection, result)
    }

    /// Proves the database takes a write now: for readiness.
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        let mut connection = self.writer().await?;
        let result = sqlx::query(
            "INSERT INTO service_secrets (name, value) VALUES ('readiness_probe', $1) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(Utc::now().to_rfc3339())
        .execute(&mut *connection)
        .await
        .map(|_| ());
        Self::settle(connection, result)
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

    /// Whether the database answers a read.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

async fn insert_issued_cards(
    connection: &mut AnyConnection,
    cards: &[IssuedCard],
    sqlite: bool,
) -> Result<(), sqlx::Error> {
    // One statement is atomic by itself: a batch of one chunk needs no explicit transaction
    // (on SQLite; PostgreSQL takes its commit setting inside one).
    if sqlite && cards.len() <= ROWS_PER_INSERT {
        return issued_cards_statement(cards)
            .execute(connection)
            .await
            .map(|_| ());
    }
    let mut tx = connection.begin().await?;
    if !sqlite {
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
    }
    for chunk in cards.chunks(ROWS_PER_INSERT) {
        issued_cards_statement(chunk).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// The multi-row `INSERT` of `cards` (at most [`ROWS_PER_INSERT`]), its values bound.
fn issued_cards_statement(
    cards: &[IssuedCard],
) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments> {
    // The statement is built from constants only; the values are bound.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(issued_cards_insert(cards.len())));
    for card in cards {
        query = query
            .bind(&card.card_uuid)
            .bind(card.client_scope.as_str())
            .bind(&card.service_id)
            .bind(&card.rule_id)
            .bind(&card.indicator)
            .bind(&card.hook_instance)
            .bind(&card.patient_hash)
            .bind(card.issued_at.timestamp())
            .bind(&card.knowledge_version)
            .bind(serde_json::to_string(&card.suggestion_uuids).unwrap_or_default());
    }
    query
}

async fn insert_feedback(
    connection: &mut AnyConnection,
    client: &ClientScope,
    entries: &[FeedbackEntry],
    now: DateTime<Utc>,
    sqlite: bool,
) -> Result<FeedbackOutcome, sqlx::Error> {
    if sqlite {
        sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *connection)
            .await?;
    }
    let mut tx = connection.begin().await?;
    let mut outcome = FeedbackOutcome::default();
    for entry in entries {
        sqlx::query(
            "INSERT INTO feedback (client_scope, card_uuid, outcome, outcome_timestamp, outcome_at, service_id, \
             accepted_suggestions, reason_system, reason_code, reason_display, user_comment, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (client_scope, card_uuid, outcome, outcome_timestamp) DO NOTHING",
        )
        .bind(client.as_str())
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
        let card = sqlx::query(
            "SELECT patient_hash, rule_id FROM issued_cards WHERE card_uuid = $1 AND client_scope = $2",
        )
        .bind(&entry.card_uuid)
        .bind(client.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(card) = card else {
            if !outcome.unknown_cards.contains(&entry.card_uuid) {
                outcome.unknown_cards.push(entry.card_uuid.clone());
            }
            continue;
        };
        if entry.outcome == "overridden"
            && let Some(code) = &entry.reason_code
        {
            let patient_hash: String = card.try_get(0)?;
            let rule_id: String = card.try_get(1)?;
            // The snooze counts from receipt: a client's clock (or a timestamp in 2100) never
            // decides how long a rule stays quiet.
            sqlx::query(
                "INSERT INTO overrides (patient_hash, rule_id, reason_code, overridden_at, card_uuid) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (patient_hash, rule_id, reason_code, card_uuid) DO NOTHING",
            )
            .bind(&patient_hash)
            .bind(&rule_id)
            .bind(code)
            .bind(now.timestamp())
            .bind(&entry.card_uuid)
            .execute(&mut *tx)
            .await?;
            outcome.overrides.push((
                patient_hash,
                Override {
                    rule_id,
                    reason_code: code.clone(),
                    at: now,
                },
            ));
        }
    }
    tx.commit().await?;
    if sqlite {
        // Back to the connection's usual mode; a failure only leaves it syncing more.
        let _ = sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *connection)
            .await;
    }
    Ok(outcome)
}

/// Creates a SQLite database file, loudly: a new file means a new patient key and no history.
async fn create_sqlite_file(path: &str, allowed: bool) -> Result<(), StoreError> {
    if !allowed {
        return Err(StoreError::NotCreated(path.to_owned()));
    }
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDirectory {
            path: parent.to_owned(),
            source,
        })?;
    }
    tracing::warn!(
        path,
        "no database file: creating a new, empty one (new patient key unless store.patient_key is set; \
         no card history or suppression state). Set store.create_if_missing = false once deployed."
    );
    let mut connection = AnyConnection::connect(&format!("sqlite://{path}?mode=rwc")).await?;
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&mut connection)
        .await?;
    connection.close().await?;
    Ok(())
}

/// Cards written by one `INSERT` statement: 10 parameters each stays far below both
/// SQLite's (32,766) and PostgreSQL's (65,535) limits on bound parameters.
pub const ROWS_PER_INSERT: usize = 100;

/// `INSERT INTO issued_cards ... VALUES (...), (...)` for `rows` rows, with `$N` placeholders.
fn issued_cards_insert(rows: usize) -> String {
    const COLUMNS: usize = 10;
    let mut sql = String::from(
        "INSERT INTO issued_cards (card_uuid, client_scope, service_id, rule_id, indicator, hook_instance, \
         patient_hash, issued_at, knowledge_version, suggestion_uuids) VALUES ",
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

/// The file a `sqlite:` URL names; an empty path or an in-memory database is refused by name
/// (each pooled connection would get a database of its own, without the tables).
fn sqlite_path(url: &str) -> Result<&str, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() {
        return Err(StoreError::NoDatabaseFile(url.to_owned()));
    }
    if path == ":memory:" || rest.contains("mode=memory") {
        return Err(StoreError::InMemory(url.to_owned()));
    }
    Ok(path)
}

async fn stored_patient_key(pool: &AnyPool) -> Result<SecretSlice<u8>, StoreError> {
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
    Ok(SecretSlice::from(key.into_bytes()))
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn a_sqlite_url_without_a_file_or_in_memory_is_refused_by_kind() {
        assert!(matches!(
            sqlite_path("sqlite://"),
            Err(StoreError::NoDatabaseFile(_))
        ));
        assert!(matches!(
            sqlite_path("sqlite::memory:"),
            Err(StoreError::InMemory(_))
        ));
        assert_eq!(
            sqlite_path("sqlite://data/cds.db?mode=rwc").ok(),
            Some("data/cds.db")
        );
    }

    #[tokio::test]
    async fn a_directory_that_cannot_be_created_keeps_the_io_error_as_source() {
        let blocker =
            std::env::temp_dir().join(format!("cramp-cds-blocker-{}", uuid::Uuid::new_v4()));
        std::fs::write(&blocker, b"a file, not a directory").unwrap();
        let path = blocker.join("sub").join("cds.db");
        let error = create_sqlite_file(path.to_str().unwrap(), true)
            .await
            .expect_err("refused");
        let _ = std::fs::remove_file(&blocker);
        assert!(
            matches!(error, StoreError::CreateDirectory { .. }),
            "{error}"
        );
        assert!(error.to_string().starts_with("cannot create "), "{error}");
        assert!(
            error
                .source()
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .is_some()
        );
    }
}
