//! Records and knowledge for the engine's unit tests.

use chrono::{TimeZone, Utc};

use super::{Engine, Evaluation};
use crate::fhir::dose::DailyDose;
use crate::fhir::record::{Code, Concept, DraftOrder, PatientRecord};
use crate::hooks::Hook;
use crate::knowledge::{Knowledge, KnowledgeSource};

pub fn knowledge() -> Knowledge {
    Knowledge::load(&KnowledgeSource::BuiltIn).expect("the shipped knowledge loads")
}

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

pub fn evaluate<'k>(knowledge: &'k Knowledge, record: &PatientRecord) -> Evaluation<'k> {
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
    Engine::new(knowledge).evaluate(record, Hook::OrderSign, now)
}
