//! Synthetic patient-view requests of a chosen size, for benchmarks and load
//! tests: a realistic mix of conditions, medication statements and requests,
//! and laboratory observations (many of them the analytes the rules read), with
//! a diuretic and a low magnesium so at least one rule fires; and whole populations
//! ([`write_population`]).

use serde_json::{Value, json};

/// A whole synthetic population written as a Bulk Data export (`cramp-cds synthesize`).
pub use crate::simulate::population::{PopulationSpec, Written, write_population};

const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const SNOMED: &str = "http://snomed.info/sct";
const LOINC: &str = "http://loinc.org";

/// A patient-view request (JSON bytes) whose prefetch holds about `resources` resources.
pub fn patient_view_request(resources: usize) -> Vec<u8> {
    let resources = resources.max(4);
    let conditions_n = (resources / 10).max(1);
    let statements_n = (resources / 10).max(1);
    let requests_n = (resources / 10).max(1);
    let observations_n = resources
        .saturating_sub(1 + conditions_n + statements_n + requests_n)
        .max(1);
    let patient = json!({"resourceType": "Patient", "id": "synthetic-1", "birthDate": "1948-02-03", "gender": "male"});
    let condition_codes = [
        ("38341003", "Hypertensive disorder"),
        ("55300003", "Cramp"),
        ("44054006", "Diabetes mellitus type 2"),
        ("195967001", "Asthma"),
        ("233604007", "Pneumonia"),
    ];
    let conditions: Vec<Value> = (0..conditions_n)
        .map(|i| {
            let (code, display) = condition_codes[i % condition_codes.len()];
            json!({"resourceType": "Condition", "id": format!("c-{i}"), "subject": {"reference": "Patient/synthetic-1"},
                   "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": if i % 7 == 6 { "resolved" } else { "active" }}]},
                   "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                   "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
                   "onsetDateTime": format!("20{:02}-0{}-15", 10 + i % 15, 1 + i % 9)})
        })
        .collect();
    let drugs = [
        ("313988", "furosemide 40 MG Oral Tablet"),
        ("617312", "atorvastatin 40 MG Oral Tablet"),
        ("314076", "lisinopril 10 MG Oral Tablet"),
        ("860975", "metformin hydrochloride 500 MG Oral Tablet"),
        ("197361", "amlodipine 5 MG Oral Tablet"),
    ];
    let medication = |i: usize| {
        let (code, display) = drugs[i % drugs.len()];
        json!({"coding": [{"system": RXNORM, "code": code, "display": display}], "text": display})
    };
    let statements: Vec<Value> = (0..statements_n)
        .map(|i| json!({"resourceType": "MedicationStatement", "id": format!("ms-{i}"), "status": if i % 5 == 4 { "stopped" } else { "active" },
                        "subject": {"reference": "Patient/synthetic-1"}, "medicationCodeableConcept": medication(i)}))
        .collect();
    let requests: Vec<Value> = (0..requests_n)
        .map(|i| json!({"resourceType": "MedicationRequest", "id": format!("mr-{i}"), "status": "active", "intent": "order",
                        "subject": {"reference": "Patient/synthetic-1"}, "medicationCodeableConcept": medication(i + 1),
                        "authoredOn": "2026-06-01",
                        "dosageInstruction": [{"text": "1 tablet daily", "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                                               "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet", "system": "http://unitsofmeasure.org", "code": "{tbl}"}}]}]}))
        .collect();
    let labs = [
        (
            "2601-3",
            "Magnesium [Moles/volume] in Serum or Plasma",
            0.62,
            "mmol/L",
        ),
        (
            "2823-3",
            "Potassium [Moles/volume] in Serum or Plasma",
            4.1,
            "mmol/L",
        ),
        ("98979-8", "eGFR (CKD-EPI 2021)", 64.0, "mL/min/{1.73_m2}"),
        (
            "2345-7",
            "Glucose [Mass/volume] in Serum or Plasma",
            104.0,
            "mg/dL",
        ),
        (
            "2951-2",
            "Sodium [Moles/volume] in Serum or Plasma",
            139.0,
            "mmol/L",
        ),
        (
            "4548-4",
            "Hemoglobin A1c/Hemoglobin.total in Blood",
            7.1,
            "%",
        ),
    ];
    let observations: Vec<Value> = (0..observations_n)
        .map(|i| {
            let (code, display, value, unit) = labs[i % labs.len()];
            let day = 1 + (i * 7) % 300;
            json!({"resourceType": "Observation", "id": format!("o-{i}"), "status": "final",
                   "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                   "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                   "subject": {"reference": "Patient/synthetic-1"},
                   "effectiveDateTime": format!("2026-{:02}-{:02}T08:00:00Z", 1 + (300 - day) / 31 % 10, 1 + day % 28),
                   "valueQuantity": {"value": value + (i % 5) as f64 * 0.01, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
                   "referenceRange": [{"text": "see laboratory"}]})
        })
        .collect();
    let bundle = |entries: Vec<Value>| {
        json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(),
               "entry": entries.into_iter().map(|r| json!({"fullUrl": format!("urn:uuid:{}", r["id"].as_str().unwrap_or_default()), "resource": r})).collect::<Vec<_>>()})
    };
    let request = json!({
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/example", "patientId": "synthetic-1"},
        "prefetch": {
            "patient": patient,
            "conditions": bundle(conditions),
            "medicationStatements": bundle(statements),
            "medicationRequests": bundle(requests),
            "observations": bundle(observations),
        }
    });
    serde_json::to_vec(&request).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_has_about_the_asked_number_of_resources() {
        for n in [10, 100, 1000] {
            let request: Value = serde_json::from_slice(&patient_view_request(n)).unwrap();
            let prefetch = request["prefetch"].as_object().unwrap();
            let count: usize = prefetch
                .values()
                .map(|v| v["entry"].as_array().map_or(1, Vec::len))
                .sum();
            assert_eq!(count, n);
        }
    }
}
