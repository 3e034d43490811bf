//! Measures how the card history grows: writes `CARDS` issued cards shaped like the service's
//! own (uuids, a patient hash, two suggestion uuids, one feedback entry for every tenth card)
//! into a fresh SQLite database through the store, then prints its size per million cards.
//! Usage: cargo run --release --example history_growth [CARDS]

use chrono::{Duration, Utc};
use cramp_cds::store::{ClientScope, FeedbackEntry, IssuedCard, Store, StoreSettings};

#[tokio::main]
async fn main() {
    let cards: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("growth.db");
    let store = Store::connect(&StoreSettings {
        database_url: format!("sqlite://{}", path.display()),
        ..StoreSettings::default()
    })
    .await
    .unwrap();
    let client = ClientScope::of("https://ehr.hospital.example", Some("hospital-a"));
    let rules = [
        "diuretic-low-magnesium",
        "cirrhosis-cramps",
        "gabapentinoid-dose",
        "numbness-reversible-causes",
    ];
    let start = Utc::now() - Duration::days(30);
    let batch = 500;
    for chunk in 0..cards.div_ceil(batch) {
        let issued: Vec<IssuedCard> = (chunk * batch..((chunk + 1) * batch).min(cards))
            .map(|n| IssuedCard {
                card_uuid: uuid::Uuid::now_v7().to_string(),
                client_scope: client.clone(),
                service_id: "cramp-numbness-patient-view".to_owned(),
                rule_id: rules[n % rules.len()].to_owned(),
                indicator: "warning".to_owned(),
                hook_instance: uuid::Uuid::new_v4().to_string(),
                patient_hash: store.patient_hash(&client, &format!("patient-{}", n % 50_000)),
                issued_at: start + Duration::seconds(n as i64),
                knowledge_version: "2026.12.1+7168dc9990cc".to_owned(),
                suggestion_uuids: vec![
                    uuid::Uuid::new_v4().to_string(),
                    uuid::Uuid::new_v4().to_string(),
                ],
            })
            .collect();
        store.write_issued_cards(&issued).await.unwrap();
        let feedback: Vec<FeedbackEntry> = issued
            .iter()
            .step_by(10)
            .map(|card| FeedbackEntry {
                card_uuid: card.card_uuid.clone(),
                outcome: "overridden".to_owned(),
                outcome_timestamp: card.issued_at.to_rfc3339(),
                outcome_at: card.issued_at,
                service_id: card.service_id.clone(),
                accepted_suggestions: vec![],
                reason_system: Some(
                    "https://cramp-cds.org/fhir/CodeSystem/override-reason".to_owned(),
                ),
                reason_code: Some("already-addressed".to_owned()),
                reason_display: Some("Already addressed".to_owned()),
                user_comment: None,
            })
            .collect();
        store
            .write_feedback(&client, &feedback, card_time(&issued))
            .await
            .unwrap();
    }
    drop(store);
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes += entry.unwrap().metadata().unwrap().len();
    }
    println!(
        "{cards} cards (a feedback entry for every tenth): {:.1} MB on disk, {:.0} MB per million cards, {:.0} bytes a card",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 * 1e6 / cards as f64,
        bytes as f64 / cards as f64
    );
}

fn card_time(cards: &[IssuedCard]) -> chrono::DateTime<Utc> {
    cards.last().map(|c| c.issued_at).unwrap_or_else(Utc::now)
}
