//! Every rule fires and stays quiet as the catalog says, through HTTP, for every
//! fixture in `fixtures/expectations.toml`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::helpers::{cards, rule_id, spawn_app};
use crate::invocation::assert_spec_shaped;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    fires: Option<String>,
    indicator: Option<String>,
    #[serde(default)]
    evidence: Vec<String>,
    suggestions: Option<Vec<String>>,
    quiet: Option<String>,
    #[serde(default)]
    also_fires: Vec<String>,
    #[serde(default)]
    absent: Vec<String>,
    /// Text the fired card's detail must not contain (advice that does not apply to this patient).
    #[serde(default)]
    detail_lacks: Vec<String>,
    /// Text the fired card's summary must contain.
    summary: Option<String>,
}

/// The expectations of `fixtures/expectations.toml` and of every file under
/// `fixtures/expectations/`; a fixture named twice is an error.
fn expectations() -> BTreeMap<String, Expectation> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec![std::path::PathBuf::from(format!(
        "{root}/fixtures/expectations.toml"
    ))];
    if let Ok(entries) = std::fs::read_dir(format!("{root}/fixtures/expectations")) {
        let mut more: Vec<_> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        more.sort();
        files.extend(more);
    }
    let mut all = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed: BTreeMap<String, Expectation> =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (name, expectation) in parsed {
            assert!(
                all.insert(name.clone(), expectation).is_none(),
                "{name} is expected twice ({})",
                file.display()
            );
        }
    }
    all
}

fn card_of<'a>(cards: &'a [Value], rule: &str) -> Option<&'a Value> {
    cards.iter().find(|c| rule_id(c) == rule)
}

#[actix_web::test]
async fn every_fixture_gives_exactly_the_cards_its_expectation_names() {
    let app = spawn_app().await;
    for (fixture, expected) in expectations() {
        let (status, body) = app.post_fixture(&fixture).await;
        if fixture.ends_with(".missing") {
            assert_eq!(status, 412, "{fixture}");
            continue;
        }
        assert_eq!(status, 200, "{fixture}: {body}");
        let cards = cards(&body);
        cards.iter().for_each(assert_spec_shaped);
        if let Some(rule) = &expected.fires {
            let card = card_of(cards, rule)
                .unwrap_or_else(|| panic!("{fixture}: {rule} did not fire: {body}"));
            assert_eq!(
                card["indicator"],
                expected.indicator.as_deref().unwrap(),
                "{fixture}"
            );
            if let Some(text) = &expected.summary {
                let summary = card["summary"].as_str().unwrap();
                assert!(
                    summary.contains(text.as_str()),
                    "{fixture}: summary {summary:?} lacks {text:?}"
                );
            }
            let detail = card["detail"].as_str().unwrap();
            for evidence in &expected.evidence {
                assert!(
                    detail.contains(evidence.as_str()),
                    "{fixture}: missing {evidence:?} in\n{detail}"
                );
            }
            for text in &expected.detail_lacks {
                assert!(
                    !detail.contains(text.as_str()),
                    "{fixture}: unexpected {text:?} in\n{detail}"
                );
            }
            if let Some(labels) = &expected.suggestions {
                let actual: Vec<&str> = card["suggestions"]
                    .as_array()
                    .map(|s| s.iter().map(|s| s["label"].as_str().unwrap()).collect())
                    .unwrap_or_default();
                assert_eq!(&actual, labels, "{fixture}");
            }
        }
        if let Some(rule) = &expected.quiet {
            assert!(
                card_of(cards, rule).is_none(),
                "{fixture}: {rule} fired: {body}"
            );
        }
        for rule in &expected.also_fires {
            assert!(
                card_of(cards, rule).is_some(),
                "{fixture}: {rule} did not fire"
            );
        }
        for rule in &expected.absent {
            assert!(card_of(cards, rule).is_none(), "{fixture}: {rule} fired");
        }
    }
}

#[test]
fn every_rule_has_two_firing_and_two_quiet_fixtures_and_every_fixture_an_expectation() {
    let expectations = expectations();
    let dir = format!("{}/fixtures/requests", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry
            .unwrap()
            .path()
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            expectations.contains_key(&name),
            "{name} has no expectation"
        );
    }
    let service =
        cramp_cds::invoke::CdsService::from_settings(&cramp_cds::config::Settings::default())
            .unwrap();
    for rule in &service.knowledge.rules {
        let firing = expectations
            .values()
            .filter(|e| e.fires.as_deref() == Some(&rule.id))
            .count();
        let quiet = expectations
            .values()
            .filter(|e| e.quiet.as_deref() == Some(&rule.id))
            .count();
        assert!(firing >= 2, "{} has {firing} firing fixtures", rule.id);
        assert!(quiet >= 2, "{} has {quiet} quiet fixtures", rule.id);
    }
}

/// What an order creates, for telling two suggestions of the same order apart: the resource
/// type, its codes and (for referrals, which share one SNOMED code) its performer type.
fn created_order(resource: &Value) -> String {
    let code = resource
        .get("medicationCodeableConcept")
        .or_else(|| resource.get("code"))
        .map(|c| c["coding"].clone())
        .unwrap_or_default();
    format!(
        "{} {} {}",
        resource["resourceType"], code, resource["performerType"]
    )
}

/// Whole patients (fixtures named `whole-patient-*`): exactly one card per rule the expectation
/// names (no card beyond the distinct problems), most urgent first, and no order suggested on two
/// cards.
#[actix_web::test]
async fn a_whole_patient_gets_one_card_per_problem_most_urgent_first_and_no_order_twice() {
    let app = spawn_app().await;
    let whole: Vec<(String, Expectation)> = expectations()
        .into_iter()
        .filter(|(name, _)| name.starts_with("whole-patient-"))
        .collect();
    assert!(whole.len() >= 2, "whole-patient fixtures exist");
    for (fixture, expected) in whole {
        let (status, body) = app.post_fixture(&fixture).await;
        assert_eq!(status, 200, "{fixture}");
        let cards = cards(&body);
        let mut named: Vec<&str> = expected.fires.iter().map(String::as_str).collect();
        named.extend(expected.also_fires.iter().map(String::as_str));
        named.sort_unstable();
        let mut fired: Vec<&str> = cards.iter().map(rule_id).collect();
        fired.sort_unstable();
        assert_eq!(fired, named, "{fixture}: one card per named problem");
        let rank = |c: &Value| match c["indicator"].as_str().unwrap() {
            "critical" => 0,
            "warning" => 1,
            _ => 2,
        };
        assert!(
            cards.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
            "{fixture}: cards are ordered by urgency"
        );
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for card in cards {
            let mut on_this_card = std::collections::BTreeSet::new();
            for suggestion in card["suggestions"].as_array().into_iter().flatten() {
                for action in suggestion["actions"].as_array().into_iter().flatten() {
                    if action["type"] == "create" {
                        on_this_card.insert(created_order(&action["resource"]));
                    }
                }
            }
            for order in on_this_card {
                if let Some(other) = seen.insert(order.clone(), rule_id(card).to_owned()) {
                    panic!(
                        "{fixture}: {order} is suggested by {other} and {}",
                        rule_id(card)
                    );
                }
            }
        }
    }
}

#[actix_web::test]
async fn each_dose_update_targets_only_its_own_draft_order_and_is_valid_r4() {
    let app = spawn_app().await;
    let (_, body) = app
        .post_fixture("gabapentin-and-pregabalin-new-starts.fire")
        .await;
    let card = card_of(cards(&body), "gabapentinoid-dose").unwrap();
    let suggestions = card["suggestions"].as_array().unwrap();
    let targets: Vec<(&str, f64)> = suggestions
        .iter()
        .flat_map(|s| s["actions"].as_array().unwrap())
        .map(|a| {
            assert_eq!(a["type"], "update");
            let dose =
                a["resource"]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"]
                    .as_f64()
                    .unwrap();
            (a["resourceId"].as_str().unwrap(), dose)
        })
        .collect();
    assert_eq!(
        targets,
        [
            ("MedicationRequest/draft-gabapentin", 300.0),
            ("MedicationRequest/draft-pregabalin", 50.0)
        ]
    );
}

#[actix_web::test]
async fn a_sandbox_draft_is_repaired_in_its_update_so_it_is_valid_r4() {
    let app = spawn_app().await;
    let mut body: Value = crate::helpers::fixture("sandbox-quinine-order-select.fire");
    let order = &mut body["context"]["draftOrders"]["entry"][0]["resource"];
    order["medicationCodeableConcept"] = serde_json::json!({"text": "Baclofen 10 MG Oral Tablet",
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "202109", "display": "Baclofen 10 MG Oral Tablet [Lioresal]"}]});
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = serde_json::json!(2);
    order["dosageInstruction"][0]["timing"]["repeat"]["frequency"] = serde_json::json!(2);
    let response = app
        .post_hook(
            "cramp-numbness-order-select",
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    let body: Value = response.json().await.unwrap();
    let card = card_of(cards(&body), "baclofen-dose").expect("40 mg a day new start fires");
    assert_spec_shaped(card);
    let resource = &card["suggestions"][0]["actions"][0]["resource"];
    assert_eq!(resource["intent"], "proposal");
    assert!(resource["category"].is_array());
    assert_eq!(resource["id"], "request-123");
}

#[actix_web::test]
async fn cirrhosis_cramps_offers_one_of_baclofen_or_albumin() {
    let app = spawn_app().await;
    let (_, body) = app.post_fixture("cirrhosis-cramps.fire").await;
    let card = card_of(cards(&body), "cirrhosis-cramps").unwrap();
    assert_eq!(card["selectionBehavior"], "at-most-one");
    let (_, body) = app
        .post_fixture("alcoholic-cirrhosis-nocturnal-leg-cramps-icd.fire")
        .await;
    let card = card_of(cards(&body), "cirrhosis-cramps").unwrap();
    let lab_actions = card["suggestions"][2]["actions"].as_array().unwrap();
    let codes: Vec<&str> = lab_actions
        .iter()
        .map(|a| a["resource"]["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["2823-3", "19123-9"]);
}

#[actix_web::test]
async fn every_card_links_to_its_rule_page_and_the_page_explains_the_rule() {
    let app = spawn_app().await;
    let (_, body) = app.post_fixture("quinine-order-sign.fire").await;
    let card = card_of(cards(&body), "quinine-for-cramps").unwrap();
    // source.url is the cited source (the FDA communication); the rule page is always a link.
    let rule_page = "http://127.0.0.1:8080/rules/quinine-for-cramps";
    assert!(
        card["source"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://www.fda.gov/")
    );
    let links = card["links"].as_array().unwrap();
    assert!(links.iter().any(|l| l["url"] == rule_page), "{links:?}");
    assert_eq!(card["links"][0]["type"], "absolute");
    let page = app
        .http
        .get(format!("{}/rules/quinine-for-cramps", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<h2>quinine-for-cramps</h2>"), "{html}");
    assert!(html.contains("FDA"));
    let missing = app
        .http
        .get(format!("{}/rules/no-such-rule", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[test]
fn docs_rules_md_matches_the_knowledge() {
    let service =
        cramp_cds::invoke::CdsService::from_settings(&cramp_cds::config::Settings::default())
            .unwrap();
    let expected = cramp_cds::docs::catalog_markdown(&service.knowledge);
    let path = format!("{}/docs/rules.md", env!("CARGO_MANIFEST_DIR"));
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/rules.md is out of date: run `cargo run -- docs > docs/rules.md`"
    );
}
