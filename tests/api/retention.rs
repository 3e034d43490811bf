//! Retention of the card history: the background job deletes cards, feedback and overrides
//! older than `store.retention_days` in batches, keeps everything newer, and never cuts into
//! the suppression window.

use chrono::{DateTime, Duration, Utc};
use cramp_cds::store::retention::{Pruned, Retention};
use cramp_cds::store::{ClientScope, FeedbackEntry, IssuedCard, Store, StoreSettings};

use crate::helpers::on_each_database;

const PATIENT_VIEW: &str = "cramp-numbness-patient-view";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-01T12:00:00Z")
        .unwrap()
        .to_utc()
}

/// Issues card `uuid` `days_ago` days before `now()` and overrides it the same day.
async fn card_with_override(store: &Store, uuid: &str, days_ago: i64) {
    let client = ClientScope::local();
    let at = now() - Duration::days(days_ago);
    store
        .write_issued_cards(&[IssuedCard {
            card_uuid: uuid.to_owned(),
            client_scope: client.clone(),
            service_id: PATIENT_VIEW.to_owned(),
            rule_id: "diuretic-low-magnesium".to_owned(),
            indicator: "warning".to_owned(),
            hook_instance: format!("hook-{uuid}"),
            patient_hash: store.patient_hash(&client, "patient-1"),
            issued_at: at,
            knowledge_version: "test+000000000000".to_owned(),
            suggestion_uuids: vec![],
        }])
        .await
        .unwrap();
    let entry = FeedbackEntry {
        card_uuid: uuid.to_owned(),
        outcome: "overridden".to_owned(),
        outcome_timestamp: at.to_rfc3339(),
        outcome_at: at,
        service_id: PATIENT_VIEW.to_owned(),
        accepted_suggestions: vec![],
        reason_system: None,
        reason_code: Some("already-addressed".to_owned()),
        reason_display: None,
        user_comment: None,
    };
    store.write_feedback(&client, &[entry], at).await.unwrap();
}

on_each_database!(the_retention_job_deletes_old_history_in_batches_and_keeps_the_rest);
async fn the_retention_job_deletes_old_history_in_batches_and_keeps_the_rest(url: &str) {
    let store = Store::connect(&StoreSettings {
        database_url: url.to_owned(),
        ..StoreSettings::default()
    })
    .await
    .unwrap();
    for (i, days_ago) in [500, 450, 401, 399, 10].iter().enumerate() {
        card_with_override(&store, &format!("card-{i}"), *days_ago).await;
    }
    let retention = Retention {
        days: 400,
        keep_at_least_days: 30,
        batch: 2,
    };
    // One batch deletes at most `batch` rows of each table.
    let cutoff = retention.cutoff(now()).unwrap();
    let first = store.prune_batch(cutoff, 2).await.unwrap();
    assert_eq!(
        first,
        Pruned {
            cards: 2,
            feedback: 2,
            overrides: 2
        }
    );
    let rest = retention.sweep(&store, now()).await.unwrap();
    assert_eq!(
        rest,
        Pruned {
            cards: 1,
            feedback: 1,
            overrides: 1
        },
        "the third card older than 400 days goes; 399 and 10 days stay"
    );
    let mut connection = {
        use sqlx::Connection;
        sqlx::AnyConnection::connect(url).await.unwrap()
    };
    for (table, count) in [
        ("issued_cards", "SELECT COUNT(*) FROM issued_cards"),
        ("feedback", "SELECT COUNT(*) FROM feedback"),
        ("overrides", "SELECT COUNT(*) FROM overrides"),
    ] {
        let (left,): (i64,) = sqlx::query_as(count)
            .fetch_one(&mut connection)
            .await
            .unwrap();
        assert_eq!(
            left, 2,
            "{table}: the rows of the cards 399 and 10 days old are kept"
        );
    }
    assert_eq!(
        retention.sweep(&store, now()).await.unwrap(),
        Pruned::default(),
        "nothing more to delete"
    );
}

#[test]
fn retention_never_cuts_into_the_suppression_window_and_zero_keeps_everything() {
    let short = Retention {
        days: 7,
        keep_at_least_days: 30,
        batch: 100,
    };
    assert_eq!(short.cutoff(now()), Some(now() - Duration::days(30)));
    let forever = Retention {
        days: 0,
        keep_at_least_days: 30,
        batch: 100,
    };
    assert_eq!(forever.cutoff(now()), None);
}
