//! The JWT replay cache's rows in the database: a `(issuer, jti)` is inserted once, and
//! rows long past their keep-until are swept. Not for deciding what a database outage
//! means for authentication: that is the authentication module's (`auth/shared_replay.rs`).

use chrono::{DateTime, Utc};

use super::{Store, StoreError};

impl Store {
    /// Records `(issuer, jti)` until `expires_at`; `Ok(true)` when it had not been seen,
    /// `Ok(false)` for a replay.
    pub async fn remember_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO jwt_replay (issuer, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT (issuer, jti) DO NOTHING",
        )
        .bind(issuer)
        .bind(jti)
        .bind(expires_at.timestamp())
        .execute(self.pool())
        .await?
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
    }
}
