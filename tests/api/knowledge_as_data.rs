//! Adding a rule is data only: a copy of the built-in knowledge plus one more rule (a new
//! analyte, its value set, the rule file) passes `cramp-cds check --knowledge DIR`, and the
//! new card fires through `cramp-cds evaluate --config` for its firing request and not for
//! its quiet one, with no Rust change and no rule count written down here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::helpers::{NOW, copy_dir};

const RULE_ID: &str = "hypocalcaemia-cramps";

const LAB_CALCIUM: &str = r#"{
  "resourceType": "ValueSet",
  "id": "lab-calcium",
  "url": "https://cramp-cds.org/fhir/ValueSet/lab-calcium",
  "title": "Serum calcium",
  "status": "active",
  "compose": { "include": [ { "system": "http://loinc.org", "concept": [
    { "code": "17861-6", "display": "Calcium [Mass/volume] in Serum or Plasma" },
    { "code": "2000-8", "display": "Calcium [Moles/volume] in Serum or Plasma" } ] } ] }
}
"#;

const CALCIUM_ANALYTE: &str = r#"
[calcium]
display = "Serum calcium"
valueset = "lab-calcium"
canonical_unit = "mmol/L"
decimals = 2
[calcium.units]
"mmol/L" = 1.0
"mg/dL" = 0.2495
"#;

const RULE: &str = r#"id = "hypocalcaemia-cramps"
title = "Muscle cramps with low serum calcium"
hooks = ["patient-view"]
indicator = "warning"
summary = "Muscle cramps with a low serum calcium: confirm with an albumin-adjusted calcium and correct it"

[source]
label = "Your local guideline on hypocalcaemia"

[when]
all = [
  { condition = { valueset = "muscle-cramp" } },
  { lab = { analyte = "calcium", within_days = 180, below = { value = 2.10, unit = "mmol/L" } } },
]

[advice]
text = "Low calcium can cause cramps and tetany: check albumin, magnesium and vitamin D, and correct the calcium."
"#;

fn cramp_cds() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cramp-cds"))
}

/// The built-in knowledge plus the calcium rule, in `dir`.
fn knowledge_with_one_more_rule(dir: &Path) -> PathBuf {
    let knowledge = dir.join("knowledge");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("cds-hooks"),
        &knowledge,
    );
    std::fs::write(knowledge.join("valuesets/lab-calcium.json"), LAB_CALCIUM).unwrap();
    let analytes = std::fs::read_to_string(knowledge.join("analytes.toml")).unwrap();
    std::fs::write(knowledge.join("analytes.toml"), analytes + CALCIUM_ANALYTE).unwrap();
    std::fs::write(knowledge.join(format!("rules/{RULE_ID}.toml")), RULE).unwrap();
    knowledge
}

fn searchset(resources: Vec<Value>) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": resources.len(),
        "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>(),
    })
}

/// A patient-view request for a patient with leg cramps and one serum calcium result.
fn request(calcium_mmol_per_l: f64) -> Value {
    let active = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]});
    let confirmed = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]});
    json!({
        "hookInstance": "8c1f8a52-3f9e-4c39-9d4e-6c1c2b1f0a01",
        "hook": "patient-view",
        "context": {"userId": "Practitioner/example", "patientId": "pat-1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "pat-1", "birthDate": "1960-04-12", "gender": "female"},
            "conditions": searchset(vec![json!({
                "resourceType": "Condition", "id": "c-cramp",
                "subject": {"reference": "Patient/pat-1"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "449918009", "display": "Cramp in lower leg"}]},
                "clinicalStatus": active, "verificationStatus": confirmed,
                "onsetDateTime": "2026-09-01"
            })]),
            "medicationStatements": searchset(vec![]),
            "medicationRequests": searchset(vec![]),
            "observations": searchset(vec![json!({
                "resourceType": "Observation", "id": "ca-1", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2000-8", "display": "Calcium [Moles/volume] in Serum or Plasma"}]},
                "subject": {"reference": "Patient/pat-1"},
                "effectiveDateTime": "2026-10-20T08:00:00Z",
                "valueQuantity": {"value": calcium_mmol_per_l, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}
            })]),
        }
    })
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The number of rules `check` reports for a knowledge directory (or the built-in one).
fn rules_checked(knowledge: Option<&Path>) -> usize {
    let mut command = cramp_cds();
    command.arg("check");
    if let Some(dir) = knowledge {
        command.args(["--knowledge", dir.to_str().unwrap()]);
    }
    let stdout = succeeded(&command.output().unwrap());
    assert!(stdout.contains("OK"), "{stdout}");
    let before_rules = stdout.split(" rules").next().unwrap();
    before_rules
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no rule count in {stdout}"))
}

fn rules_that_fire(config: &Path, dir: &Path, name: &str, request: &Value) -> Vec<String> {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(request).unwrap()).unwrap();
    let stdout = succeeded(
        &cramp_cds()
            .args([
                "evaluate",
                "--config",
                config.to_str().unwrap(),
                "--request",
                path.to_str().unwrap(),
                "--now",
                NOW,
            ])
            .output()
            .unwrap(),
    );
    let response: Value = serde_json::from_str(&stdout).unwrap();
    response["cards"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|card| card["source"]["topic"]["code"].as_str())
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_rule_added_as_data_passes_check_and_fires_through_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let knowledge = knowledge_with_one_more_rule(dir.path());

    assert_eq!(
        rules_checked(Some(&knowledge)),
        rules_checked(None) + 1,
        "check counts the added rule"
    );

    let config = dir.path().join("cramp-cds.toml");
    std::fs::write(
        &config,
        format!(
            "[knowledge]\ndir = {}\n",
            toml_string(knowledge.to_str().unwrap())
        ),
    )
    .unwrap();

    let fired = rules_that_fire(
        &config,
        dir.path(),
        &format!("{RULE_ID}.fire"),
        &request(1.95),
    );
    assert!(fired.iter().any(|r| r == RULE_ID), "{fired:?}");
    let fired = rules_that_fire(
        &config,
        dir.path(),
        &format!("{RULE_ID}.quiet"),
        &request(2.35),
    );
    assert!(!fired.iter().any(|r| r == RULE_ID), "{fired:?}");
}

#[test]
fn the_added_analytes_codes_reach_the_prefetch_template_of_the_services_that_read_it() {
    use cramp_cds::hooks::Hook;
    use cramp_cds::knowledge::{Knowledge, KnowledgeSource};

    let dir = tempfile::tempdir().unwrap();
    let knowledge = Knowledge::load(&KnowledgeSource::Directory(knowledge_with_one_more_rule(
        dir.path(),
    )))
    .unwrap();
    for service in &knowledge.services {
        let observations = &service.definition.prefetch["observations"];
        let asks_for_calcium = observations.contains("http://loinc.org|2000-8")
            && observations.contains("http://loinc.org|17861-6");
        assert_eq!(
            asks_for_calcium,
            service.hook == Hook::PatientView,
            "{}: {observations}",
            service.definition.id
        );
    }
}

/// A TOML basic string holding `text`.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
