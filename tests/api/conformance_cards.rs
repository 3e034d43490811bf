//! CDS Hooks 2.0 §4 on every response the fixtures get: the response object, cards, sources,
//! Codings, suggestions, actions, links and extensions, one requirement per test (the table in
//! `docs/conformance.md` names them). Each test also checks that the fixtures exercise what it
//! checks, so it cannot pass on an empty set.

use std::collections::BTreeSet;

use serde_json::Value;
use tokio::sync::OnceCell;

use crate::helpers::{
    assert_no_null_or_empty, cards, fixture, fixture_path, rule_id, service_for, spawn_app,
};

/// One fixture's request and the 200 answer it got.
struct Exchange {
    fixture: String,
    request: Value,
    response: Value,
}

/// Every fixture that is answered with 200, sent once to the real app and shared by the tests.
async fn exchanges() -> &'static [Exchange] {
    static EXCHANGES: OnceCell<Vec<Exchange>> = OnceCell::const_new();
    EXCHANGES
        .get_or_init(|| async {
            let dir = std::path::Path::new(&fixture_path("x"))
                .parent()
                .unwrap()
                .to_owned();
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
                .filter(|n| !n.ends_with(".missing"))
                .collect();
            names.sort();
            let app = spawn_app().await;
            let mut exchanges = Vec::new();
            for name in names {
                let request = fixture(&name);
                let (status, response) = app.post_hook_json(&service_for(&request), &request).await;
                assert_eq!(status, 200, "{name}: {response}");
                exchanges.push(Exchange {
                    fixture: name,
                    request,
                    response,
                });
            }
            assert!(exchanges.len() > 300, "the fixtures are all read");
            exchanges
        })
        .await
}

/// Every card of every exchange, with its exchange.
async fn every_card() -> Vec<(&'static Exchange, &'static Value)> {
    exchanges()
        .await
        .iter()
        .flat_map(|e| cards(&e.response).iter().map(move |c| (e, c)))
        .collect()
}

fn suggestions(card: &Value) -> &[Value] {
    card.get("suggestions")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn actions(card: &Value) -> impl Iterator<Item = &Value> {
    suggestions(card)
        .iter()
        .flat_map(|s| s["actions"].as_array().unwrap())
}

fn keys(object: &Value) -> BTreeSet<&str> {
    object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn non_empty_string<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| panic!("{what} is not a non-empty string: {value}"))
}

fn absolute_url(text: &str, what: &str) -> url::Url {
    let url =
        url::Url::parse(text).unwrap_or_else(|e| panic!("{what} '{text}' is no absolute URL: {e}"));
    assert!(matches!(url.scheme(), "http" | "https"), "{what} '{text}'");
    assert!(url.has_host(), "{what} '{text}'");
    url
}

/// The references (`Type/id`) of the request's draft orders.
fn draft_order_references(request: &Value) -> Vec<String> {
    request["context"]["draftOrders"]["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let r = &e["resource"];
            Some(format!(
                "{}/{}",
                r["resourceType"].as_str()?,
                r["id"].as_str()?
            ))
        })
        .collect()
}

fn draft_order<'a>(request: &'a Value, reference: &str) -> Option<&'a Value> {
    request["context"]["draftOrders"]["entry"]
        .as_array()?
        .iter()
        .map(|e| &e["resource"])
        .find(|r| {
            r["resourceType"]
                .as_str()
                .zip(r["id"].as_str())
                .is_some_and(|(t, id)| format!("{t}/{id}") == reference)
        })
}

#[actix_web::test]
async fn a_response_has_cards_and_no_null_or_empty_members() {
    let mut empty = 0;
    for exchange in exchanges().await {
        let body = &exchange.response;
        // `systemActions` is optional; this service sends none, so it is absent, never [] or null.
        assert_eq!(
            keys(body),
            BTreeSet::from(["cards"]),
            "{}",
            exchange.fixture
        );
        let cards = cards(body);
        if cards.is_empty() {
            empty += 1;
        }
        for (i, card) in cards.iter().enumerate() {
            assert_no_null_or_empty(card, &format!("{}: cards[{i}]", exchange.fixture));
        }
    }
    assert!(
        empty > 0,
        "no guidance is an empty cards array, which some fixtures get"
    );
}

#[actix_web::test]
async fn every_card_and_suggestion_uuid_in_a_response_is_a_distinct_string() {
    let mut responses_with_several = 0;
    for exchange in exchanges().await {
        let cards = cards(&exchange.response);
        let mut uuids = Vec::new();
        for card in cards {
            uuids.push(non_empty_string(&card["uuid"], "card.uuid"));
            for suggestion in suggestions(card) {
                uuids.push(non_empty_string(&suggestion["uuid"], "suggestion.uuid"));
            }
        }
        for uuid in &uuids {
            assert!(
                uuid::Uuid::parse_str(uuid).is_ok(),
                "{}: {uuid}",
                exchange.fixture
            );
        }
        let distinct: BTreeSet<&&str> = uuids.iter().collect();
        assert_eq!(
            distinct.len(),
            uuids.len(),
            "{}: {uuids:?}",
            exchange.fixture
        );
        if uuids.len() > 1 {
            responses_with_several += 1;
        }
    }
    assert!(responses_with_several > 0);
}

#[actix_web::test]
async fn override_reasons_are_codings_with_system_code_and_display() {
    let mut reasons_seen = 0;
    for (exchange, card) in every_card().await {
        let Some(reasons) = card.get("overrideReasons") else {
            continue;
        };
        let reasons = reasons.as_array().expect("overrideReasons is an array");
        for reason in reasons {
            reasons_seen += 1;
            assert!(
                keys(reason).is_subset(&BTreeSet::from(["system", "code", "display"])),
                "{}: {reason}",
                exchange.fixture
            );
            absolute_url(non_empty_string(&reason["system"], "system"), "system");
            non_empty_string(&reason["code"], "code");
            non_empty_string(
                &reason["display"],
                "display (required for override reasons)",
            );
        }
        let codes: BTreeSet<&str> = reasons
            .iter()
            .map(|r| r["code"].as_str().unwrap())
            .collect();
        assert_eq!(
            codes.len(),
            reasons.len(),
            "{}: codes repeat",
            exchange.fixture
        );
    }
    assert!(reasons_seen > 0);
}

#[actix_web::test]
async fn the_source_topic_is_a_coding_with_system_code_and_display() {
    for (exchange, card) in every_card().await {
        let topic = &card["source"]["topic"];
        assert!(
            keys(topic).is_subset(&BTreeSet::from(["system", "code", "display"])),
            "{}: {topic}",
            exchange.fixture
        );
        absolute_url(
            non_empty_string(&topic["system"], "topic.system"),
            "topic.system",
        );
        non_empty_string(&topic["code"], "topic.code");
        non_empty_string(&topic["display"], "topic.display");
    }
}

#[actix_web::test]
async fn source_urls_are_absolute_and_the_same_for_every_patient() {
    let mut by_rule: std::collections::BTreeMap<&str, BTreeSet<&str>> = Default::default();
    for (exchange, card) in every_card().await {
        let source = &card["source"];
        non_empty_string(&source["label"], "source.label");
        let url = non_empty_string(&source["url"], "source.url");
        absolute_url(url, "source.url");
        let patient = exchange.request["context"]["patientId"].as_str().unwrap();
        assert!(
            !url.contains(&format!("/{patient}")) && !url.contains(&format!("={patient}")),
            "{}: the source url {url} is about this patient",
            exchange.fixture
        );
        by_rule.entry(rule_id(card)).or_default().insert(url);
    }
    assert!(by_rule.len() > 5, "many rules fire");
    for (rule, urls) in by_rule {
        assert_eq!(urls.len(), 1, "{rule} has source urls {urls:?}");
    }
}

#[actix_web::test]
async fn cards_carry_no_source_icon() {
    let all = every_card().await;
    assert!(!all.is_empty());
    for (exchange, card) in all {
        assert!(
            keys(&card["source"]).is_subset(&BTreeSet::from(["label", "url", "topic"])),
            "{}: {}",
            exchange.fixture,
            card["source"]
        );
    }
}

#[actix_web::test]
async fn links_have_a_label_an_absolute_url_and_type_absolute_without_app_context() {
    for (exchange, card) in every_card().await {
        let links = card["links"].as_array().expect("links is an array");
        assert!(!links.is_empty(), "{}", exchange.fixture);
        for link in links {
            assert_eq!(
                keys(link),
                BTreeSet::from(["label", "url", "type"]),
                "{}: {link}",
                exchange.fixture
            );
            non_empty_string(&link["label"], "link.label");
            absolute_url(non_empty_string(&link["url"], "link.url"), "link.url");
            assert_eq!(link["type"], "absolute", "{}: {link}", exchange.fixture);
        }
    }
}

#[actix_web::test]
async fn is_recommended_is_a_boolean_and_only_one_is_recommended_unless_any() {
    let mut recommended_seen = 0;
    for (exchange, card) in every_card().await {
        let recommended = suggestions(card)
            .iter()
            .filter_map(|s| s.get("isRecommended"))
            .inspect(|flag| {
                // Optional: sent only when true.
                assert_eq!(**flag, Value::Bool(true), "{}", exchange.fixture);
            })
            .count();
        recommended_seen += recommended;
        if card["selectionBehavior"] != "any" {
            assert!(
                recommended <= 1,
                "{}: {recommended} recommended",
                exchange.fixture
            );
        }
    }
    assert!(recommended_seen > 0);
}

#[actix_web::test]
async fn delete_actions_name_a_resource_id_and_carry_no_resource() {
    let mut deletes = 0;
    for (exchange, card) in every_card().await {
        for action in actions(card).filter(|a| a["type"] == "delete") {
            deletes += 1;
            assert!(
                action.get("resource").is_none(),
                "{}: {action}",
                exchange.fixture
            );
            let target = non_empty_string(&action["resourceId"], "resourceId");
            assert!(
                draft_order_references(&exchange.request)
                    .iter()
                    .any(|r| r == target),
                "{}: {target} is not a draft order of the request",
                exchange.fixture
            );
        }
    }
    assert!(deletes > 0);
}

#[actix_web::test]
async fn update_actions_carry_the_whole_draft_order() {
    let mut updates = 0;
    for (exchange, card) in every_card().await {
        for action in actions(card).filter(|a| a["type"] == "update") {
            updates += 1;
            let resource = &action["resource"];
            let reference = format!(
                "{}/{}",
                non_empty_string(&resource["resourceType"], "resourceType"),
                non_empty_string(&resource["id"], "id")
            );
            let draft = draft_order(&exchange.request, &reference).unwrap_or_else(|| {
                panic!("{}: {reference} is not a draft order", exchange.fixture)
            });
            let missing: Vec<&str> = keys(draft).difference(&keys(resource)).copied().collect();
            assert!(
                missing.is_empty(),
                "{}: the update of {reference} lacks {missing:?}",
                exchange.fixture
            );
        }
    }
    assert!(updates > 0);
}

#[actix_web::test]
async fn create_actions_carry_a_new_resource_for_the_patient() {
    let mut creates = 0;
    for (exchange, card) in every_card().await {
        let request_text = exchange.request.to_string();
        let patient = exchange.request["context"]["patientId"].as_str().unwrap();
        for action in actions(card).filter(|a| a["type"] == "create") {
            creates += 1;
            let resource = &action["resource"];
            non_empty_string(&resource["resourceType"], "resourceType");
            assert_eq!(
                resource["subject"]["reference"],
                format!("Patient/{patient}"),
                "{}",
                exchange.fixture
            );
            if let Some(id) = resource.get("id") {
                let id = non_empty_string(id, "id");
                assert!(
                    !request_text.contains(&format!("\"id\":\"{id}\"")),
                    "{}: a create reuses the id {id} of a resource the request holds",
                    exchange.fixture
                );
            }
        }
    }
    assert!(creates > 0);
}

#[actix_web::test]
async fn extensions_are_objects_under_reverse_domain_keys() {
    fn check(extension: &Value, what: &str) {
        let object = extension
            .as_object()
            .unwrap_or_else(|| panic!("{what}: extension is not an object: {extension}"));
        assert!(!object.is_empty(), "{what}");
        for (key, value) in object {
            let labels: Vec<&str> = key.split('.').collect();
            assert!(
                labels.len() >= 2
                    && ["org", "com", "net", "io"].contains(&labels[0])
                    && labels.iter().all(|l| !l.is_empty()),
                "{what}: '{key}' is not a reverse-domain name"
            );
            assert!(
                value.is_object(),
                "{what}: {key} is not a pre-coordinated object"
            );
        }
    }
    let mut seen = 0;
    for (exchange, card) in every_card().await {
        if let Some(extension) = card.get("extension") {
            seen += 1;
            check(extension, &exchange.fixture);
        }
    }
    assert!(seen > 0, "cards name their knowledge in an extension");
    let app = spawn_app().await;
    let (_, discovery) = app.get_json("/cds-services").await;
    for service in discovery["services"].as_array().unwrap() {
        check(&service["extension"], service["id"].as_str().unwrap());
    }
}

#[actix_web::test]
async fn details_are_markdown_without_raw_html() {
    for (exchange, card) in every_card().await {
        let detail = non_empty_string(&card["detail"], "detail");
        assert!(
            detail.starts_with("**Why this card**\n\n- "),
            "{}",
            exchange.fixture
        );
        let html = detail.match_indices('<').find(|(at, _)| {
            detail[at + 1..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '!')
        });
        assert!(
            html.is_none(),
            "{}: raw HTML in\n{detail}",
            exchange.fixture
        );
    }
}
