//! `cramp-cds evaluate` gives the same cards as HTTP; `check` accepts the shipped
//! knowledge and names the file and problem of a broken one.

use serde_json::Value;

use crate::helpers::{cramp_cds, edit, evaluate, fixture_path, knowledge_copy, spawn_app};

/// A card without its random uuids.
fn comparable(card: &Value) -> Value {
    let mut card = card.clone();
    card.as_object_mut().unwrap().remove("uuid");
    if let Some(suggestions) = card.get_mut("suggestions").and_then(Value::as_array_mut) {
        for suggestion in suggestions {
            suggestion.as_object_mut().unwrap().remove("uuid");
        }
    }
    card
}

#[actix_web::test]
async fn evaluate_gives_the_same_cards_as_http_for_every_fixture() {
    let app = spawn_app().await;
    let dir = format!("{}/fixtures/requests", env!("CARGO_MANIFEST_DIR"));
    let mut compared = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let (status, http_body) = app.post_fixture(&name).await;
        let output = evaluate(path.to_str().unwrap(), &[], None);
        if status != 200 {
            assert!(
                !output.status.success(),
                "{name}: HTTP {status} but evaluate succeeded"
            );
            continue;
        }
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let cli_body: Value = serde_json::from_slice(&output.stdout).unwrap();
        let http_cards: Vec<Value> = http_body["cards"]
            .as_array()
            .unwrap()
            .iter()
            .map(comparable)
            .collect();
        let cli_cards: Vec<Value> = cli_body["cards"]
            .as_array()
            .unwrap()
            .iter()
            .map(comparable)
            .collect();
        assert_eq!(http_cards, cli_cards, "{name}");
        compared += 1;
    }
    assert!(compared >= 20, "compared only {compared} fixtures");
}

#[test]
fn evaluate_text_format_names_rule_indicator_and_evidence() {
    let output = evaluate(
        &fixture_path("diuretic-low-magnesium-mmol.fire"),
        &["--format", "text"],
        None,
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.starts_with("[warning] diuretic-low-magnesium: "),
        "{text}"
    );
    assert!(
        text.contains("    - Serum magnesium 0.55 mmol/L on 2026-10-02, below the threshold"),
        "{text}"
    );
    assert!(
        text.contains("technical: Serum magnesium on 2026-10-02: LOINC 2601-3"),
        "{text}"
    );
}

#[test]
fn evaluate_text_format_prints_evidence_not_the_advice_bullets() {
    let output = evaluate(
        &fixture_path("gabapentin-oral-solution-in-ml-egfr-50.fire"),
        &["--format", "text"],
        None,
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("total daily dose 1800 mg"), "{text}");
    // The card's advice is a Markdown list; it is not evidence.
    assert!(
        !text.contains("Gabapentin with normal kidney function"),
        "{text}"
    );
}

#[test]
fn check_accepts_the_shipped_knowledge() {
    let output = cramp_cds().arg("check").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("OK"));
}

/// Copies cds-hooks/ to a temporary directory, applies `break_it`, and runs `check` on it.
fn check_broken(break_it: impl FnOnce(&std::path::Path)) -> String {
    let dir = knowledge_copy();
    break_it(dir.path());
    let output = cramp_cds()
        .args(["check", "--knowledge", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "a broken knowledge base was accepted"
    );
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn check_names_the_file_of_an_unknown_value_set() {
    let message = check_broken(|dir| {
        edit(
            dir.join("rules/cirrhosis-cramps.toml"),
            "valueset = \"cirrhosis\"",
            "valueset = \"no-such-set\"",
        );
    });
    assert!(message.contains("rules/cirrhosis-cramps.toml"), "{message}");
    assert!(
        message.contains("unknown value set 'no-such-set'"),
        "{message}"
    );
}

#[test]
fn check_names_the_file_of_a_bad_threshold_unit() {
    let message = check_broken(|dir| {
        edit(
            dir.join("rules/diuretic-low-magnesium.toml"),
            "value = 0.70, unit = \"mmol/L\"",
            "value = 0.70, unit = \"mg/L\"",
        );
    });
    assert!(
        message.contains("rules/diuretic-low-magnesium.toml"),
        "{message}"
    );
    assert!(message.contains("threshold unit 'mg/L'"), "{message}");
}

#[test]
fn check_names_the_file_of_a_missing_citation() {
    let message = check_broken(|dir| {
        edit(
            dir.join("rules/cirrhosis-cramps.toml"),
            "label = \"Guideline Directed Topic Overview (Dr.Oracle Medical Advisory Board & Editors, 2025), cirrhosis section, as cited in What is the initial workup and management for a patient presenting with leg cramps? (Dr.Oracle, 2025)\"",
            "label = \"\"",
        );
    });
    assert!(message.contains("rules/cirrhosis-cramps.toml"), "{message}");
    assert!(message.contains("citation"), "{message}");
}

#[test]
fn check_names_the_file_of_an_invalid_value_set() {
    let message = check_broken(|dir| {
        edit(
            dir.join("valuesets/cirrhosis.json"),
            "\"resourceType\": \"ValueSet\"",
            "\"resourceType\": \"CodeSystem\"",
        );
    });
    assert!(message.contains("valuesets/cirrhosis.json"), "{message}");
}

#[test]
fn serve_refuses_to_start_on_broken_knowledge() {
    let dir = knowledge_copy();
    edit(
        dir.path().join("rules/cirrhosis-cramps.toml"),
        "indicator = \"info\"",
        "indicator = \"loud\"",
    );
    let output = cramp_cds()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("CRAMP_CDS_KNOWLEDGE__DIR", dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("rules/cirrhosis-cramps.toml"), "{message}");
}

#[test]
fn a_deployments_own_expansion_with_product_codes_is_used_without_code_change() {
    let dir = knowledge_copy();
    // A VSAC-style expansion listing a product-level code whose display does not name the ingredient.
    std::fs::write(
        dir.path().join("valuesets/loop-thiazide-diuretics.json"),
        r#"{"resourceType":"ValueSet","id":"loop-thiazide-diuretics","title":"Loop and thiazide diuretics (local expansion)",
            "expansion":{"contains":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"999001","display":"LOCALBRAND 40 MG Oral Tablet"}]}}"#,
    )
    .unwrap();
    let mut request = crate::helpers::fixture("diuretic-low-magnesium-mmol.fire");
    request["prefetch"]["medicationStatements"]["entry"][0]["resource"]["medicationCodeableConcept"] = serde_json::json!({
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "999001", "display": "LOCALBRAND 40 MG Oral Tablet"}]});
    let request_path = dir.path().join("request.json");
    std::fs::write(&request_path, serde_json::to_vec(&request).unwrap()).unwrap();
    let request_path = request_path.to_str().unwrap();
    let output = evaluate(request_path, &["--format", "text"], Some(dir.path()));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("diuretic-low-magnesium"),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("RxNorm 999001"), "{text}");

    // The built-in knowledge does not know that code, so the same request stays quiet there.
    let output = evaluate(request_path, &["--format", "text"], None);
    assert!(!String::from_utf8_lossy(&output.stdout).contains("diuretic-low-magnesium"));
}

/// The `--explain` lines of `cramp-cds evaluate` for a fixture, in text format.
fn explain(fixture: &str) -> String {
    let output = evaluate(
        &fixture_path(fixture),
        &["--format", "text", "--explain"],
        None,
    );
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn explain_names_the_indication_that_kept_a_rule_quiet() {
    let text = explain("quinine-for-malaria-reason.quiet");
    assert!(
        text.contains("quiet for safety: quinine-for-cramps (reason indication:"),
        "{text}"
    );
    assert!(text.contains("Plasmodium falciparum malaria"), "{text}");
    let text = explain("baclofen-60mg-with-spinal-cord-injury.quiet");
    assert!(
        text.contains("quiet for safety: baclofen-dose (reason indication:"),
        "{text}"
    );
}

#[test]
fn explain_names_the_route_that_kept_a_rule_quiet() {
    let text = explain("magnesium-sulfate-intravenous-normal-level.quiet");
    assert!(
        text.contains("quiet for safety: magnesium-without-deficiency (reason route:"),
        "{text}"
    );
    assert!(text.contains("intravenous route"), "{text}");
}

#[test]
fn explain_names_every_suggestion_withheld_and_why() {
    let cases = [
        (
            "gabapentin-new-start-900mg-age-15.fire",
            "gabapentinoid-dose",
            "age",
        ),
        (
            "gabapentin-new-start-900mg-no-birth-date.fire",
            "gabapentinoid-dose",
            "age",
        ),
        (
            "furosemide-low-magnesium-already-on-magnesium.fire",
            "diuretic-low-magnesium",
            "already-on-it",
        ),
        (
            "ibuprofen-provisional-cramps-age-72.fire",
            "nsaid-for-cramps-elderly",
            "unconfirmed-diagnosis",
        ),
        (
            "furosemide-low-potassium-and-magnesium-order-no-magnesium.fire",
            "magnesium-without-deficiency",
            "duplicate",
        ),
        (
            "baclofen-continuing-60mg.fire",
            "baclofen-dose",
            "withdrawal-risk",
        ),
        (
            "magnesium-sulfate-intravenous-renal-insufficiency.fire",
            "magnesium-renal-insufficiency",
            "indication",
        ),
    ];
    for (fixture, rule, reason) in cases {
        let text = explain(fixture);
        let line = format!("suggestion withheld: {rule}: ");
        let found = text
            .lines()
            .any(|l| l.starts_with(&line) && l.contains(&format!("(reason {reason}:")));
        assert!(found, "{fixture}: no {reason} line for {rule} in\n{text}");
    }
}

#[test]
fn explain_says_nothing_was_withheld_when_a_safe_suggestion_is_offered() {
    let text = explain("gabapentin-continuing-1800mg-egfr-59.fire");
    assert!(!text.contains("withheld"), "{text}");
    assert!(!text.contains("quiet for safety"), "{text}");
}

#[test]
fn explain_names_the_bound_that_left_a_rule_undecided() {
    let text = explain("magnesium-less-than-0-9-comparator.quiet");
    assert!(
        text.contains("quiet for safety: diuretic-low-magnesium (reason inconclusive-result:"),
        "{text}"
    );
    assert!(
        text.contains("<0.90 mmol/L on 2026-10-02 (Observation/mg-bound) was not counted as below the threshold of 0.70 mmol/L"),
        "{text}"
    );
}
