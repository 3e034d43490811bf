//! Records and knowledge for the engine's unit tests.

use chrono::{TimeZone, Utc};

use super::evidence::{Amount, Decision, Direction, Evidence, Fact, LabReading};
use super::{Engine, Evaluation};
use crate::fhir::dose::DailyDose;
use crate::fhir::record::Measured;
use crate::fhir::record::{Code, Concept, DraftOrder, PatientRecord};
use crate::hooks::Hook;
use crate::knowledge::{Knowledge, KnowledgeSource};

/// The built-in knowledge.
pub fn knowledge() -> Knowledge {
    Knowledge::load(&KnowledgeSource::BuiltIn).expect("the shipped knowledge loads")
}

/// A draft MedicationRequest named `name` with a computed daily dose and the given route.
pub fn draft(name: &str, mg_per_day: f64, route: serde_json::Value) -> DraftOrder {
    DraftOrder {
        reference: "MedicationRequest/draft".into(),
        resource_type: "MedicationRequest".into(),
        concept: Concept {
            codings: vec![Code {
                system: "http://www.nlm.nih.gov/research/umls/rxnorm".into(),
                code: "0".into(),
                display: Some(name.into()),
            }],
            text: None,
        },
        ingredients: Vec::new(),
        unresolved: false,
        in_scope: true,
        resource: serde_json::json!({"resourceType": "MedicationRequest",
            "dosageInstruction": [{"route": route}]}),
        daily_dose: Ok(DailyDose {
            mg_per_day,
            working: "test".into(),
        }),
    }
}

/// Evaluates `record` for order-sign at the fixture time.
pub fn evaluate<'k>(knowledge: &'k Knowledge, record: &PatientRecord) -> Evaluation<'k> {
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
    Engine::new(knowledge).evaluate(record, Hook::OrderSign, now)
}

/// Evidence of a serum magnesium of `value` mmol/L (sent with `comparator`) on 2026-11-20,
/// found below the threshold `limit`.
pub fn magnesium_below(value: f64, comparator: Option<&str>, limit: f64) -> Evidence {
    let mmol = |value| Amount {
        value,
        unit: "mmol/L".into(),
        decimals: 2,
    };
    Evidence::from(Fact::LabResult {
        result: LabReading {
            analyte_id: "magnesium".into(),
            analyte: "Serum magnesium".into(),
            reference: "Observation/mg".into(),
            loinc: vec!["19123-9".into()],
            time: Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap(),
            reported: Some(Measured {
                value,
                unit: Some("mmol/L".into()),
                comparator: comparator.map(str::to_owned),
            }),
            canonical: mmol(value),
            in_canonical_unit: true,
            preliminary: false,
        },
        decided_by: Some(Decision::Threshold {
            direction: Direction::Below,
            limit: mmol(limit),
        }),
    })
}
