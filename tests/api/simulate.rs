//! `cramp-cds simulate` (and `synthesize`): a population grouped by patient gives each patient
//! the cards that evaluating the patient's own request gives; bad lines are counted with file
//! and line; `--compare` finds who gains and loses a card; the outputs have their shape.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::helpers::{
    NOW, cramp_cds, edit, evaluate, fixture_path, knowledge_copy, resources_of, rule_id,
};

/// The Bulk export fixture: three fixture patients spread over plain and gzipped files.
fn bulk_dir() -> String {
    format!("{}/fixtures/bulk", env!("CARGO_MANIFEST_DIR"))
}

/// `cramp-cds simulate INPUT --now NOW` with `extra` arguments; fails the test on an error.
fn simulate(input: &str, extra: &[&str]) -> std::process::Output {
    let output = cramp_cds()
        .args(["simulate", input, "--now", NOW, "--jobs", "2"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn simulate_json(input: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--format", "json"];
    args.extend_from_slice(extra);
    serde_json::from_slice(&simulate(input, &args).stdout).unwrap()
}

/// The rules of the cards that `evaluate` gives the fixture request `name`.
fn evaluated_rules(name: &str) -> BTreeSet<String> {
    let output = evaluate(&fixture_path(name), &[], None);
    assert!(output.status.success());
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    body["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|card| rule_id(card).to_owned())
        .collect()
}

/// `cramp-cds synthesize` of `patients` patients from `seed` into `dir/population`.
fn synthesize(dir: &Path, patients: u32, seed: u32) -> std::path::PathBuf {
    let population = dir.join("population");
    let status = cramp_cds()
        .args(["synthesize", "--patients", &patients.to_string()])
        .args(["--seed", &seed.to_string(), "--out"])
        .arg(&population)
        .status()
        .unwrap();
    assert!(status.success());
    population
}

/// The rows of a patients CSV, without the header.
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|line| line.split(',').map(str::to_owned).collect())
        .collect()
}

fn rules_of(rows: &[Vec<String>], patient: &str) -> BTreeSet<String> {
    rows.iter()
        .filter(|row| row[0] == patient)
        .map(|row| row[1].clone())
        .collect()
}

#[test]
fn each_patient_spread_over_files_gets_the_cards_of_its_own_request() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("patients.csv");
    let report = simulate_json(&bulk_dir(), &["--patients-csv", csv.to_str().unwrap()]);
    assert_eq!(report["population"]["patients"], 3, "{report}");
    let rows = csv_rows(&csv);
    for (patient, fixture) in [
        ("pat-a", "diuretic-low-magnesium-mmol.fire"),
        ("pat-b", "cirrhosis-cramps.fire"),
        ("pat-c", "diabetic-paresthesia-no-b12.fire"),
    ] {
        let expected = evaluated_rules(fixture);
        assert!(!expected.is_empty(), "{fixture} fires nothing");
        assert_eq!(rules_of(&rows, patient), expected, "{patient}");
    }
}

#[test]
fn malformed_lines_are_counted_with_file_and_line_and_orphans_are_skipped() {
    let report = simulate_json(&bulk_dir(), &[]);
    let population = &report["population"];
    assert_eq!(population["malformedLines"], 2, "{population}");
    let places: BTreeSet<String> = population["malformed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}:{}: {}",
                m["file"].as_str().unwrap(),
                m["line"],
                m["problem"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        places,
        BTreeSet::from([
            "Observation.000.ndjson:3: no resourceType".to_owned(),
            "Patient.000.ndjson:2: not a JSON object".to_owned(),
        ])
    );
    assert_eq!(population["resourcesWithoutPatient"], 1);
    assert_eq!(report["failures"]["count"], 0);
}

#[test]
fn the_json_report_has_rates_with_intervals_and_the_card_histogram() {
    let report = simulate_json(&bulk_dir(), &[]);
    let rules = report["rules"].as_array().unwrap();
    let magnesium = rules
        .iter()
        .find(|r| r["ruleId"] == "diuretic-low-magnesium")
        .unwrap();
    assert_eq!(magnesium["indicator"], "warning");
    assert_eq!(magnesium["patients"], 1);
    assert_eq!(magnesium["ratePer1000"], 333.33);
    let (low, high) = (
        magnesium["ci95Low"].as_f64().unwrap(),
        magnesium["ci95High"].as_f64().unwrap(),
    );
    assert!(
        low > 0.0 && low < 333.33 && high > 333.33 && high < 1000.0,
        "{magnesium}"
    );
    let buckets: Vec<(String, u64)> = report["cardsPerPatient"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["cards"].as_str().unwrap().to_owned(),
                b["patients"].as_u64().unwrap(),
            )
        })
        .collect();
    let total: u64 = buckets.iter().map(|b| b.1).sum();
    assert_eq!(buckets.len(), 5);
    assert_eq!(buckets[4].0, "4+");
    assert_eq!(total, 3);
    assert_eq!(
        buckets[4].1, 0,
        "no patient has 4 cards: the sum below is exact"
    );
    let cards: u64 = buckets.iter().zip(0..).map(|(b, i)| b.1 * i).sum();
    let burden = &report["chartOpenBurden"];
    let per_1000 = burden["cardsPer1000"].as_f64().unwrap();
    assert!(
        (per_1000 - cards as f64 * 1000.0 / 3.0).abs() < 0.01,
        "{burden}"
    );
    let by_indicator: f64 = burden["byIndicator"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["cardsPer1000"].as_f64().unwrap())
        .sum();
    assert!((by_indicator - per_1000).abs() < 0.02, "{burden}");
    let bands = &report["byAgeBand"];
    let patients: Vec<u64> = bands["bands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["patients"].as_u64().unwrap())
        .collect();
    // pat-a and pat-b were born in 1950, pat-c in 1970.
    assert_eq!(patients, [0, 0, 1, 2, 0, 0], "{bands}");
    let magnesium = bands["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "diuretic-low-magnesium")
        .unwrap();
    assert_eq!(magnesium["patients"], serde_json::json!([0, 0, 0, 1, 0, 0]));
    assert_eq!(magnesium["ratePer1000"][3], 500.0);
    assert!(report.get("comparison").is_none());
}

#[test]
fn compare_reports_who_loses_a_card_when_a_threshold_is_lowered() {
    let knowledge = knowledge_copy();
    edit(
        knowledge.path().join("rules/diuretic-low-magnesium.toml"),
        "below = { value = 0.70",
        "below = { value = 0.50",
    );
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("patients.csv");
    let report = simulate_json(
        &bulk_dir(),
        &[
            "--compare",
            knowledge.path().to_str().unwrap(),
            "--patients-csv",
            csv.to_str().unwrap(),
        ],
    );
    let run = &report["run"];
    assert_eq!(run["evaluatedAt"], NOW, "{run}");
    let (base, compared) = (&run["knowledge"]["hash"], &run["comparedKnowledge"]["hash"]);
    assert!(
        base.is_string() && compared.is_string() && base != compared,
        "{run}"
    );
    let comparison = report["comparison"].as_array().unwrap();
    let magnesium = comparison
        .iter()
        .find(|r| r["ruleId"] == "diuretic-low-magnesium")
        .unwrap();
    assert_eq!(magnesium["base"], 1, "{magnesium}");
    assert_eq!(magnesium["compared"], 0);
    assert_eq!(magnesium["lost"], 1);
    assert_eq!(magnesium["gained"], 0);
    let cirrhosis = comparison
        .iter()
        .find(|r| r["ruleId"] == "cirrhosis-cramps")
        .unwrap();
    assert_eq!(
        (cirrhosis["gained"].as_u64(), cirrhosis["lost"].as_u64()),
        (Some(0), Some(0))
    );
    let rows = csv_rows(&csv);
    assert!(
        rows.contains(
            &["pat-a", "diuretic-low-magnesium", "warning", "lost"]
                .map(String::from)
                .to_vec()
        ),
        "{rows:?}"
    );
    assert!(
        rows.contains(
            &["pat-b", "cirrhosis-cramps", "info", "both"]
                .map(String::from)
                .to_vec()
        )
    );

    // Raising the threshold back the other way round: the same patient gains the card.
    let reverse = cramp_cds()
        .args([
            "simulate",
            &bulk_dir(),
            "--now",
            NOW,
            "--format",
            "json",
            "--compare",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("cds-hooks"))
        .env("CRAMP_CDS_KNOWLEDGE__DIR", knowledge.path())
        .output()
        .unwrap();
    assert!(
        reverse.status.success(),
        "{}",
        String::from_utf8_lossy(&reverse.stderr)
    );
    let reverse: Value = serde_json::from_slice(&reverse.stdout).unwrap();
    let magnesium = reverse["comparison"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "diuretic-low-magnesium")
        .unwrap()
        .clone();
    assert_eq!(
        (magnesium["gained"].as_u64(), magnesium["lost"].as_u64()),
        (Some(1), Some(0))
    );
}

#[test]
fn html_is_one_page_with_inline_svg_and_csv_has_one_row_per_rule() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let output = simulate(
        &bulk_dir(),
        &["--format", "csv", "--html", html.to_str().unwrap()],
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.matches("<svg").count() >= 2, "bars and histogram");
    assert!(page.contains("diuretic-low-magnesium"));
    assert!(!page.contains("<script") && !page.contains("<link") && !page.contains(" src="));
    let csv = String::from_utf8(output.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("rule_id,indicator,patients,population,rate_per_1000,ci95_low,ci95_high")
    );
    assert_eq!(
        lines
            .filter(|l| l.starts_with("diuretic-low-magnesium,warning,1,3,"))
            .count(),
        1
    );
}

#[test]
fn bundles_and_request_files_are_read_too() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("patients.csv");
    let input = format!("{}/fixtures/bulk-bundles", env!("CARGO_MANIFEST_DIR"));
    let report = simulate_json(&input, &["--patients-csv", csv.to_str().unwrap()]);
    assert_eq!(report["population"]["patients"], 2);
    let rows = csv_rows(&csv);
    assert_eq!(
        rules_of(&rows, "pat-a"),
        evaluated_rules("diuretic-low-magnesium-mmol.fire")
    );
    assert_eq!(
        rules_of(&rows, "pat-1"),
        evaluated_rules("diabetic-paresthesia-no-b12.fire")
    );
}

#[test]
fn synthesize_is_deterministic_and_its_population_simulates() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&first, &second] {
        let status = cramp_cds()
            .args(["synthesize", "--patients", "30", "--seed", "7", "--out"])
            .arg(out)
            .status()
            .unwrap();
        assert!(status.success());
    }
    for file in [
        "Patient.ndjson",
        "Observation.ndjson",
        "MedicationRequest.ndjson",
    ] {
        assert_eq!(
            std::fs::read(first.join(file)).unwrap(),
            std::fs::read(second.join(file)).unwrap(),
            "{file}"
        );
    }
    let report = simulate_json(first.to_str().unwrap(), &[]);
    let gzipped = dir.path().join("gz");
    let status = cramp_cds()
        .args([
            "synthesize",
            "--patients",
            "30",
            "--seed",
            "7",
            "--gzip",
            "--out",
        ])
        .arg(&gzipped)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(gzipped.join("Observation.ndjson.gz").exists());
    assert_eq!(simulate_json(gzipped.to_str().unwrap(), &[]), report);
    assert_eq!(report["population"]["patients"], 30);
    assert_eq!(report["population"]["malformedLines"], 0);
    assert_eq!(report["failures"]["count"], 0, "{}", report["failures"]);
    let resources = report["population"]["resources"].as_u64().unwrap();
    assert!((30 * 90..=30 * 120).contains(&resources), "{resources}");
}

/// A transaction Bundle as Synthea writes one: every entry has a `urn:uuid:` fullUrl and the
/// references point at those, not at `Patient/id`.
fn transaction_bundle_of(fixture: &str) -> Value {
    let resources = resources_of(fixture);
    let patient_id = resources
        .iter()
        .find(|r| r["resourceType"] == "Patient")
        .and_then(|r| r["id"].as_str())
        .unwrap()
        .to_owned();
    let mut entries: Vec<Value> = resources
        .into_iter()
        .map(|mut resource| {
            if resource.get("subject").is_some() {
                resource["subject"] =
                    serde_json::json!({"reference": format!("urn:uuid:{patient_id}")});
            }
            let full_url = if resource["resourceType"] == "Patient" {
                format!("urn:uuid:{patient_id}")
            } else {
                format!("urn:uuid:{}", resource["id"].as_str().unwrap_or("x"))
            };
            serde_json::json!({"fullUrl": full_url, "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]}})
        })
        .collect();
    for kind in ["Encounter", "Claim"] {
        entries.push(
            serde_json::json!({"fullUrl": format!("urn:uuid:{kind}-1"), "resource": {
            "resourceType": kind, "id": format!("{kind}-1"),
            "patient": {"reference": format!("urn:uuid:{patient_id}")},
            "subject": {"reference": format!("urn:uuid:{patient_id}")}}}),
        );
    }
    serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

#[test]
fn a_transaction_bundle_with_urn_uuid_references_gets_the_cards_of_its_patient() {
    let fixture = "diuretic-low-magnesium-mmol.fire";
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    // Pretty-printed, as Synthea writes it.
    std::fs::write(
        input.join("synthea-like.json"),
        serde_json::to_string_pretty(&transaction_bundle_of(fixture)).unwrap(),
    )
    .unwrap();
    let csv = dir.path().join("patients.csv");
    let report = simulate_json(
        input.to_str().unwrap(),
        &["--patients-csv", csv.to_str().unwrap()],
    );
    let population = &report["population"];
    assert_eq!(population["patients"], 1, "{population}");
    assert_eq!(population["resourcesWithoutPatient"], 0, "{population}");
    assert_eq!(population["resourcesNotAskedFor"], 2, "{population}");
    let rows = csv_rows(&csv);
    let patient = &rows.first().expect("the patient has cards")[0];
    assert_eq!(rules_of(&rows, patient), evaluated_rules(fixture));
}

#[test]
fn one_worker_and_four_give_the_same_report_and_patients_csv() {
    let dir = tempfile::tempdir().unwrap();
    let population = synthesize(dir.path(), 80, 11);
    let run = |jobs: &str| {
        let csv = dir.path().join(format!("patients-{jobs}.csv"));
        let output = cramp_cds()
            .args(["simulate", population.to_str().unwrap(), "--now", NOW])
            .args(["--jobs", jobs, "--format", "json", "--patients-csv"])
            .arg(&csv)
            .output()
            .unwrap();
        assert!(output.status.success());
        (output.stdout, std::fs::read(&csv).unwrap())
    };
    let (one_report, one_csv) = run("1");
    let (four_report, four_csv) = run("4");
    let report: Value = serde_json::from_slice(&one_report).unwrap();
    assert_eq!(report["population"]["patients"], 80);
    assert!(one_csv.len() > 100, "some patients have cards");
    assert_eq!(one_report, four_report);
    assert_eq!(one_csv, four_csv);
}

#[test]
fn written_requests_replayed_give_every_patient_the_same_cards() {
    let dir = tempfile::tempdir().unwrap();
    let population = synthesize(dir.path(), 40, 5);
    let requests = dir.path().join("requests");
    let (from_export, from_requests) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    simulate(
        population.to_str().unwrap(),
        &[
            "--write-requests",
            requests.to_str().unwrap(),
            "--patients-csv",
            from_export.to_str().unwrap(),
        ],
    );
    let written: Vec<_> = std::fs::read_dir(&requests)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(written.len(), 40);
    for path in &written {
        let request: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let patient = request["context"]["patientId"].as_str().unwrap();
        assert_eq!(
            path.file_name().unwrap(),
            format!("{patient}.json").as_str()
        );
        assert_eq!(request["hook"], "patient-view");
    }
    let again = cramp_cds()
        .args(["simulate", population.to_str().unwrap(), "--now", NOW])
        .arg("--write-requests")
        .arg(&requests)
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "the directory is not empty any more"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("needs an empty directory"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let replayed = simulate_json(
        requests.to_str().unwrap(),
        &["--patients-csv", from_requests.to_str().unwrap()],
    );
    assert_eq!(replayed["population"]["patients"], 40);
    assert_eq!(replayed["failures"]["count"], 0, "{}", replayed["failures"]);
    let sorted = |path: &Path| {
        let mut rows = csv_rows(path);
        rows.sort();
        rows
    };
    let rows = sorted(&from_export);
    assert!(!rows.is_empty(), "some patients have cards");
    assert_eq!(rows, sorted(&from_requests));
}
