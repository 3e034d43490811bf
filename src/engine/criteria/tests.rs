//! Each criterion kind against small records read from FHIR JSON, through the same reader as
//! requests, with the built-in knowledge: what matches, what does not, and what stays undecided.

use chrono::{TimeZone, Utc};

use super::super::test_support::knowledge;
use super::super::{Outcome, Scope};
use super::evaluate;
use crate::fhir::record::PatientRecord;
use crate::hooks::Hook;
use crate::knowledge::Knowledge;

/// The record of patient `p` holding `resources` (FHIR JSON).
fn record(resources: &[&str]) -> PatientRecord {
    let mut record = PatientRecord::new("p");
    for json in resources {
        let parsed = cramp_fhir_parse::parse_resource(json.as_bytes())
            .unwrap()
            .resource;
        record.add(parsed, json.as_bytes(), "test");
    }
    record.resolve_medication_references();
    record
}

/// `criterion` (as TOML) evaluated against `record` on 2026-11-01 for `hook`.
fn outcome(knowledge: &Knowledge, criterion: &str, record: &PatientRecord, hook: Hook) -> Outcome {
    let criterion = knowledge.criterion(criterion).expect(criterion);
    let scope = Scope {
        knowledge,
        record,
        hook,
        now: Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap(),
    };
    evaluate(&criterion, &scope).unwrap()
}

fn check(criterion: &str, resources: &[&str]) -> Outcome {
    outcome(
        &knowledge(),
        criterion,
        &record(resources),
        Hook::PatientView,
    )
}

fn condition(code: &str, clinical: &str, verification: &str) -> String {
    format!(
        r#"{{"resourceType":"Condition","id":"c","subject":{{"reference":"Patient/p"}},
        "clinicalStatus":{{"coding":[{{"code":"{clinical}"}}]}},
        "verificationStatus":{{"coding":[{{"code":"{verification}"}}]}},
        "code":{{"coding":[{{"system":"http://snomed.info/sct","code":"{code}"}}]}}}}"#
    )
}

fn statement(id: &str, rxnorm: &str, status: &str) -> String {
    format!(
        r#"{{"resourceType":"MedicationStatement","id":"{id}","status":"{status}","subject":{{"reference":"Patient/p"}},
        "medicationCodeableConcept":{{"coding":[{{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"{rxnorm}"}}]}}}}"#
    )
}

fn magnesium(value: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","id":"mg","status":"final","subject":{{"reference":"Patient/p"}},
        "code":{{"coding":[{{"system":"http://loinc.org","code":"19123-9"}}]}},
        "effectiveDateTime":"2026-10-20T08:00:00Z",
        "valueQuantity":{{{value},"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"}}}}"#
    )
}

const CIRRHOSIS: &str = r#"condition = { valueset = "cirrhosis" }"#;
const LOW_MAGNESIUM: &str = r#"lab = { analyte = "magnesium", within_days = 180, below = { value = 0.70, unit = "mmol/L" } }"#;

#[test]
fn a_condition_counts_when_active_and_not_refuted_and_says_when_it_is_unconfirmed() {
    let active = check(CIRRHOSIS, &[&condition("19943007", "active", "confirmed")]);
    assert!(active.matched && !active.unconfirmed);
    assert_eq!(active.evidence.len(), 1);
    assert!(
        !check(
            CIRRHOSIS,
            &[&condition("19943007", "resolved", "confirmed")]
        )
        .matched
    );
    assert!(!check(CIRRHOSIS, &[&condition("19943007", "active", "refuted")]).matched);
    let provisional = check(
        CIRRHOSIS,
        &[&condition("19943007", "active", "provisional")],
    );
    assert!(provisional.matched && provisional.unconfirmed);
    assert!(!check(CIRRHOSIS, &[&condition("44054006", "active", "confirmed")]).matched);
}

#[test]
fn a_medication_counts_while_active_and_ever_counts_a_stopped_one() {
    let diuretic = r#"medication = { valueset = "loop-thiazide-diuretics" }"#;
    assert!(check(diuretic, &[&statement("ms", "4603", "active")]).matched);
    assert!(!check(diuretic, &[&statement("ms", "4603", "stopped")]).matched);
    assert!(!check(diuretic, &[&statement("ms", "4603", "not-taken")]).matched);
    let ever = r#"medication = { valueset = "loop-thiazide-diuretics", ever = true }"#;
    assert!(check(ever, &[&statement("ms", "4603", "stopped")]).matched);
    assert!(!check(ever, &[&statement("ms", "4603", "not-taken")]).matched);
}

#[test]
fn min_distinct_counts_different_drugs_not_statements() {
    let two = r#"medication = { valueset = "loop-thiazide-diuretics", min_distinct = 2 }"#;
    let furosemide = statement("a", "4603", "active");
    let again = statement("b", "4603", "active");
    let hctz = statement("c", "5487", "active");
    assert!(!check(two, &[&furosemide, &again]).matched);
    assert!(check(two, &[&furosemide, &hctz]).matched);
}

#[test]
fn a_lab_below_a_threshold_is_compared_in_the_reported_unit() {
    assert!(check(LOW_MAGNESIUM, &[&magnesium(r#""value":1.6"#)]).matched);
    // 1.7 mg/dL is 0.70 mmol/L: equal, not below.
    assert!(!check(LOW_MAGNESIUM, &[&magnesium(r#""value":1.7"#)]).matched);
    let missing = r#"lab = { analyte = "magnesium", within_days = 180, missing = true }"#;
    assert!(check(missing, &[]).matched);
    assert!(!check(missing, &[&magnesium(r#""value":1.7"#)]).matched);
}

#[test]
fn a_bound_on_both_sides_of_the_limit_leaves_a_lab_and_its_not_undecided() {
    let bound = magnesium(r#""value":2.0,"comparator":"<""#);
    let lab = check(LOW_MAGNESIUM, &[&bound]);
    assert!(!lab.matched && lab.is_unknown());
    let not = check(&format!("not = {{ {LOW_MAGNESIUM} }}"), &[&bound]);
    assert!(
        !not.matched && not.is_unknown(),
        "not of undecided is undecided"
    );
    // With a branch that holds, `any` matches and still shows the bound.
    let any = check(
        &format!("any = [ {{ {LOW_MAGNESIUM} }}, {{ {CIRRHOSIS} }} ]"),
        &[&bound, &condition("19943007", "active", "confirmed")],
    );
    assert!(any.matched);
    assert_eq!(any.evidence.len(), 2);
    // With a branch that is false, `all` is false, not undecided.
    let all = check(
        &format!("all = [ {{ {LOW_MAGNESIUM} }}, {{ {CIRRHOSIS} }} ]"),
        &[&bound],
    );
    assert!(!all.matched && !all.is_unknown());
}

#[test]
fn age_reads_the_birth_date_and_an_unknown_age_never_matches() {
    let older = r#"age = { at_least = 65 }"#;
    let patient =
        |born: &str| format!(r#"{{"resourceType":"Patient","id":"p","birthDate":"{born}"}}"#);
    assert!(check(older, &[&patient("1950-04-12")]).matched);
    assert!(!check(older, &[&patient("1970-04-12")]).matched);
    assert!(!check(older, &[]).matched);
}

#[test]
fn a_hook_criterion_matches_only_its_hooks() {
    let knowledge = knowledge();
    let record = record(&[]);
    let criterion = r#"hook = ["order-select"]"#;
    assert!(outcome(&knowledge, criterion, &record, Hook::OrderSelect).matched);
    assert!(!outcome(&knowledge, criterion, &record, Hook::PatientView).matched);
}

#[test]
fn a_named_criterion_labels_its_evidence_and_keeps_its_own_absences_to_itself() {
    let egfr = r#"{"resourceType":"Observation","id":"e","status":"final","subject":{"reference":"Patient/p"},
        "code":{"coding":[{"system":"http://loinc.org","code":"98979-8"}]},"effectiveDateTime":"2026-10-20T08:00:00Z",
        "valueQuantity":{"value":25,"unit":"mL/min/{1.73_m2}","system":"http://unitsofmeasure.org","code":"mL/min/{1.73_m2}"}}"#;
    let named = check(r#"ref = "renal-insufficiency""#, &[egfr]);
    assert!(named.matched);
    // A definition inside another ("Recent eGFR" inside "Kidney function") shows only the outer.
    let normal = egfr.replace(r#""value":25"#, r#""value":75"#);
    let band = check(r#"ref = "kidney-function-60-or-more""#, &[&normal]);
    assert!(band.matched);
    assert!(
        band.evidence
            .iter()
            .all(|e| e.labels == ["Kidney function"]),
        "{:?}",
        band.evidence
    );
    assert!(band.absences.is_empty());
    assert!(
        named
            .evidence
            .iter()
            .all(|e| e.labels == ["Renal insufficiency"]),
        "{:?}",
        named.evidence
    );
    assert!(named.absences.is_empty());
}
