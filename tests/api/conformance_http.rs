//! Discovery (CDS Hooks 2.0 §1), the service endpoints, JSON on the wire, CORS and the
//! feedback endpoint's semantics (§5), through the real app.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::{
    PATIENT_VIEW, TestApp, assert_no_null_or_empty, cards, fixture, rule_id, spawn_app,
    spawn_app_with, spawn_authenticated_app, temp_database_url,
};

const HOOKS: [&str; 3] = ["patient-view", "order-select", "order-sign"];

/// A request for `hook` that the service answers: one of the fixtures.
fn request_for(hook: &str) -> Value {
    fixture(match hook {
        "patient-view" => "diuretic-low-magnesium-mmol.fire",
        "order-select" => "diuretic-order-select-low-magnesium.fire",
        "order-sign" => "order-sign-diuretic.quiet",
        other => panic!("no fixture for {other}"),
    })
}

async fn services(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get_json("/cds-services").await;
    assert_eq!(status, 200);
    body["services"].as_array().expect("services array").clone()
}

#[actix_web::test]
async fn discovery_answers_get_only_at_cds_services() {
    let app = spawn_app().await;
    assert_eq!(services(&app).await.len(), 3);
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = app
            .http
            .request(method.clone(), format!("{}/cds-services", app.address))
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
    }
}

#[actix_web::test]
async fn each_discovered_service_has_its_fields_with_their_types() {
    let app = spawn_app().await;
    let known = BTreeSet::from([
        "hook",
        "title",
        "description",
        "id",
        "prefetch",
        "usageRequirements",
        "extension",
    ]);
    let mut hooks = BTreeSet::new();
    for service in services(&app).await {
        let fields: BTreeSet<&str> = service
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(fields.is_subset(&known), "{fields:?}");
        for required in ["hook", "description", "id"] {
            assert!(
                service[required]
                    .as_str()
                    .is_some_and(|s| !s.trim().is_empty()),
                "{required} is a required string: {service}"
            );
        }
        assert!(
            service["title"]
                .as_str()
                .is_some_and(|s| !s.trim().is_empty())
        );
        hooks.insert(service["hook"].as_str().unwrap().to_owned());
        let prefetch = service["prefetch"]
            .as_object()
            .expect("prefetch is an object");
        assert!(!prefetch.is_empty());
        for (key, template) in prefetch {
            assert!(!key.is_empty());
            assert!(
                template.as_str().is_some_and(|t| !t.is_empty()),
                "{key}: {template}"
            );
        }
    }
    assert_eq!(hooks, HOOKS.iter().map(|h| h.to_string()).collect());
}

#[actix_web::test]
async fn usage_requirements_is_a_string_when_sent_and_absent_otherwise() {
    let app = spawn_app().await;
    let mut sent = Vec::new();
    for service in services(&app).await {
        match service.get("usageRequirements") {
            None => {}
            Some(Value::String(text)) if !text.trim().is_empty() => {
                sent.push(service["hook"].as_str().unwrap().to_owned())
            }
            Some(other) => panic!("usageRequirements is not a non-empty string: {other}"),
        }
    }
    assert_eq!(sent, ["patient-view", "order-select"]);
}

#[actix_web::test]
async fn every_discovered_service_answers_at_base_url_cds_services_id() {
    let app = spawn_app().await;
    for service in services(&app).await {
        let id = service["id"].as_str().unwrap();
        let hook = service["hook"].as_str().unwrap();
        let response = app
            .http
            .post(format!("{}/cds-services/{id}", app.address))
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&request_for(hook)).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{id}");
        let body: Value = response.json().await.unwrap();
        assert!(body["cards"].is_array(), "{id}: {body}");
    }
}

#[actix_web::test]
async fn every_answer_is_json_with_a_json_content_type() {
    let app = spawn_app().await;
    let url = |path: &str| format!("{}{path}", app.address);
    let hook = |body: Vec<u8>| {
        app.http
            .post(url(&format!("/cds-services/{PATIENT_VIEW}")))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let answers = [
        (
            "discovery",
            app.http.get(url("/cds-services")).send().await.unwrap(),
        ),
        (
            "cards",
            hook(serde_json::to_vec(&request_for("patient-view")).unwrap())
                .await
                .unwrap(),
        ),
        ("400", hook(b"{".to_vec()).await.unwrap()),
        (
            "404",
            app.http
                .get(url("/cds-services/nowhere/at/all"))
                .send()
                .await
                .unwrap(),
        ),
        (
            "405",
            app.http
                .get(url(&format!("/cds-services/{PATIENT_VIEW}")))
                .send()
                .await
                .unwrap(),
        ),
        (
            "415",
            app.http
                .post(url(&format!("/cds-services/{PATIENT_VIEW}")))
                .header("Content-Type", "text/plain")
                .body("{}")
                .send()
                .await
                .unwrap(),
        ),
    ];
    for (what, response) in answers {
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(
            content_type.starts_with("application/json")
                || content_type.starts_with("application/fhir+json"),
            "{what}: {content_type}"
        );
        let body: Result<Value, _> = response.json().await;
        assert!(
            body.is_ok_and(|b| b.is_object()),
            "{what}: not a JSON object"
        );
    }
}

#[actix_web::test]
async fn discovery_answers_have_no_null_or_empty_members() {
    let app = spawn_app().await;
    let (_, discovery) = app.get_json("/cds-services").await;
    assert_no_null_or_empty(&discovery, "discovery");
}

#[actix_web::test]
async fn cors_headers_are_on_answers_and_on_error_answers() {
    const ORIGIN: &str = "https://sandbox.cds-hooks.org";
    async fn allow_origin(response: reqwest::Response) -> (u16, Option<String>) {
        let status = response.status().as_u16();
        let header = response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (status, header)
    }
    let app = spawn_app().await;
    let hook = |body: &'static str| {
        app.http
            .post(format!("{}/cds-services/{PATIENT_VIEW}", app.address))
            .header("Origin", ORIGIN)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let discovery = app
        .http
        .get(format!("{}/cds-services", app.address))
        .header("Origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(allow_origin(discovery).await, (200, Some("*".to_owned())));
    assert_eq!(
        allow_origin(hook("{").await.unwrap()).await,
        (400, Some("*".to_owned()))
    );

    // With authentication required, a browser can read the 401 too.
    let secured =
        spawn_authenticated_app(|s| s.auth.clients = crate::helpers::tokens::table_clients()).await;
    let refused = secured
        .http
        .get(format!("{}/cds-services", secured.address))
        .header("Origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(allow_origin(refused).await, (401, Some("*".to_owned())));
}

#[actix_web::test]
async fn feedback_semantics_accepted_needs_suggestions_and_an_override_keeps_its_comment() {
    let database_url = temp_database_url();
    let url = database_url.clone();
    let app = spawn_app_with(move |s| s.store.database_url = url).await;
    let (_, body) = app
        .post_hook_json(PATIENT_VIEW, &fixture("cirrhosis-cramps.fire"))
        .await;
    let card = cards(&body)
        .iter()
        .find(|c| rule_id(c) == "cirrhosis-cramps")
        .expect("the cirrhosis card")
        .clone();
    let suggestion = card["suggestions"][0]["uuid"].clone();
    let reason = card["overrideReasons"][0].clone();
    let entry = |outcome: &str, extra: Value| {
        let mut entry = json!({"card": card["uuid"], "outcome": outcome,
            "outcomeTimestamp": "2026-11-01T12:01:00Z"});
        entry
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({ "feedback": [entry] })
    };

    // accepted without acceptedSuggestions, or with an empty list: a 400 naming the field.
    for extra in [json!({}), json!({"acceptedSuggestions": []})] {
        let (status, body) = app
            .post_feedback(PATIENT_VIEW, &entry("accepted", extra))
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            body["issue"][0]["expression"][0],
            "feedback[0].acceptedSuggestions"
        );
    }
    let (status, body) = app
        .post_feedback(PATIENT_VIEW, &entry("rejected", json!({})))
        .await;
    assert_eq!(
        (status, &body["issue"][0]["expression"][0]),
        (400, &json!("feedback[0].outcome"))
    );

    let accepted = entry(
        "accepted",
        json!({"acceptedSuggestions": [{"id": suggestion}]}),
    );
    let (status, body) = app.post_feedback(PATIENT_VIEW, &accepted).await;
    assert_eq!((status, &body["stored"]), (200, &json!(1)), "{body}");

    // An override with a reason the card offered and a comment; and one with only a comment.
    let mut overridden = entry(
        "overridden",
        json!({"overrideReason": {"reason": reason, "userComment": "Seen by hepatology this week"}}),
    );
    let (status, _) = app.post_feedback(PATIENT_VIEW, &overridden).await;
    assert_eq!(status, 200);
    overridden["feedback"][0]["outcomeTimestamp"] = json!("2026-11-01T12:02:00Z");
    overridden["feedback"][0]["overrideReason"] = json!({"userComment": "No reason listed fits"});
    let (status, _) = app.post_feedback(PATIENT_VIEW, &overridden).await;
    assert_eq!(status, 200);

    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let mut connection = sqlx::AnyConnection::connect(&format!("{database_url}?mode=ro"))
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT outcome, accepted_suggestions, reason_code, user_comment FROM feedback \
         ORDER BY outcome_timestamp, outcome",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    let stored: Vec<(String, String, Option<String>, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert_eq!(stored[0].0, "accepted");
    assert!(
        stored[0].1.contains(suggestion.as_str().unwrap()),
        "{stored:?}"
    );
    assert_eq!(stored[1].0, "overridden");
    assert_eq!(stored[1].2.as_deref(), reason["code"].as_str());
    assert_eq!(stored[1].3.as_deref(), Some("Seen by hepatology this week"));
    assert_eq!(stored[2].2, None);
    assert_eq!(stored[2].3.as_deref(), Some("No reason listed fits"));
}
