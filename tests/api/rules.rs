//! The two rules fire and stay quiet as the catalog says, through HTTP.

use crate::helpers::{cards, rule_id, spawn_app};
use crate::invocation::assert_spec_shaped;

/// (fixture, rule that must fire, indicator, strings the detail must contain)
const FIRE: &[(&str, &str, &str, &[&str])] = &[
    (
        "diuretic-low-magnesium-mmol.fire",
        "diuretic-low-magnesium",
        "warning",
        &[
            "**0.55 mmol/L**",
            "on 2026-10-02",
            "below the threshold of 0.70 mmol/L",
            "LOINC 2601-3",
        ],
    ),
    (
        "diuretic-low-magnesium-mgdl.fire",
        "diuretic-low-magnesium",
        "warning",
        &[
            "**0.62 mmol/L** (reported as 1.5 mg/dL)",
            "LOINC 19123-9",
            "MedicationRequest/mr-hctz",
            "\"hydrochlorothiazide\"",
        ],
    ),
    (
        "diuretic-low-magnesium-meq.fire",
        "diuretic-low-magnesium",
        "warning",
        &["**0.60 mmol/L** (reported as 1.2 mEq/L)"],
    ),
    (
        "diuretic-severe-low-magnesium.critical.fire",
        "diuretic-low-magnesium",
        "critical",
        &["**0.41 mmol/L**", "below the threshold of 0.50 mmol/L"],
    ),
    (
        "diuretic-low-magnesium-renal-insufficiency.fire",
        "diuretic-low-magnesium",
        "warning",
        &[
            "Renal insufficiency: eGFR **22 mL/min/1.73 m²**",
            "toxic levels",
        ],
    ),
    (
        "diuretic-order-select-low-magnesium.fire",
        "diuretic-low-magnesium",
        "warning",
        &["Order being placed: furosemide 40 MG Oral Tablet (MedicationRequest/draft-furosemide"],
    ),
    (
        "cirrhosis-cramps.fire",
        "cirrhosis-cramps",
        "info",
        &[
            "Active condition: Cirrhosis of liver (SNOMED CT 19943007",
            "Active condition: Cramp (SNOMED CT 55300003",
        ],
    ),
    (
        "alcoholic-cirrhosis-nocturnal-leg-cramps-icd.fire",
        "cirrhosis-cramps",
        "info",
        &[
            "ICD-10-CM K70.31 (class K70.3)",
            "ICD-10-CM G47.62",
            "No usable serum potassium result in the last 30 days",
        ],
    ),
    (
        "cirrhosis-cramps-low-potassium.fire",
        "cirrhosis-cramps",
        "warning",
        &[
            "Serum potassium **3.1 mmol/L**",
            "below the threshold of 3.5 mmol/L",
        ],
    ),
];

const QUIET: &[&str] = &[
    "diuretic-stopped-low-magnesium.quiet",
    "diuretic-magnesium-older-than-180-days.quiet",
    "diuretic-normal-magnesium.quiet",
    "diuretic-magnesium-at-threshold.quiet",
    "diuretic-low-magnesium-entered-in-error.quiet",
    "diuretic-magnesium-within-lab-range.quiet",
    "diuretic-magnesium-unknown-unit.quiet",
    "diuretic-order-select-not-selected.quiet",
    "cirrhosis-refuted-with-cramps.quiet",
    "cirrhosis-without-cramps.quiet",
    "cirrhosis-with-resolved-cramps.quiet",
    "cirrhosis-cramps-entered-in-error.quiet",
    "order-sign-diuretic.quiet",
];

#[actix_web::test]
async fn every_firing_fixture_gives_its_rule_with_the_expected_indicator_and_evidence() {
    let app = spawn_app().await;
    for (fixture, rule, indicator, evidence) in FIRE {
        let (status, body) = app.post_fixture(fixture).await;
        assert_eq!(status, 200, "{fixture}");
        let cards = cards(&body);
        assert_eq!(cards.len(), 1, "{fixture}: {body}");
        let card = &cards[0];
        assert_spec_shaped(card);
        assert_eq!(rule_id(card), *rule, "{fixture}");
        assert_eq!(card["indicator"], *indicator, "{fixture}");
        let detail = card["detail"].as_str().unwrap();
        for expected in *evidence {
            assert!(
                detail.contains(expected),
                "{fixture}: missing {expected:?} in\n{detail}"
            );
        }
    }
}

#[actix_web::test]
async fn every_quiet_fixture_gives_no_card() {
    let app = spawn_app().await;
    for fixture in QUIET {
        let (status, body) = app.post_fixture(fixture).await;
        assert_eq!(status, 200, "{fixture}");
        assert!(cards(&body).is_empty(), "{fixture}: {body}");
    }
}

#[actix_web::test]
async fn renal_insufficiency_replaces_the_supplement_suggestion_with_a_warning() {
    let app = spawn_app().await;
    let (_, body) = app
        .post_fixture("diuretic-low-magnesium-renal-insufficiency.fire")
        .await;
    let card = &cards(&body)[0];
    assert!(
        card.get("suggestions").is_none(),
        "no magnesium supplement: {card}"
    );
    let (_, body) = app.post_fixture("diuretic-low-magnesium-mmol.fire").await;
    assert_eq!(cards(&body)[0]["suggestions"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn an_unconvertible_unit_is_reported_not_guessed() {
    // Quiet because the only result is unusable; the unusable result is named when another result fires.
    let app = spawn_app().await;
    let (_, body) = app
        .post_fixture("diuretic-magnesium-unknown-unit.quiet")
        .await;
    assert!(cards(&body).is_empty());
}

#[actix_web::test]
async fn cirrhosis_cramps_offers_one_of_baclofen_or_albumin_and_labs_only_when_missing() {
    let app = spawn_app().await;
    let (_, body) = app.post_fixture("cirrhosis-cramps.fire").await;
    let card = &cards(&body)[0];
    assert_eq!(card["selectionBehavior"], "at-most-one");
    let labels: Vec<&str> = card["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels.len(),
        2,
        "recent electrolytes: no lab suggestion: {labels:?}"
    );
    assert!(labels[0].contains("baclofen 10 mg"));
    assert!(labels[1].contains("albumin 20 g"));

    let (_, body) = app
        .post_fixture("alcoholic-cirrhosis-nocturnal-leg-cramps-icd.fire")
        .await;
    let suggestions = cards(&body)[0]["suggestions"].as_array().unwrap().clone();
    assert_eq!(suggestions.len(), 3);
    let lab_actions = suggestions[2]["actions"].as_array().unwrap();
    let codes: Vec<&str> = lab_actions
        .iter()
        .map(|a| a["resource"]["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["2823-3", "19123-9"]);
}
