use crate::helpers::spawn_app;

#[actix_web::test]
async fn discovery_lists_the_three_services_with_their_prefetch_templates() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/cds-services").await;
    assert_eq!(status, 200);
    let services = body["services"].as_array().unwrap();
    let ids: Vec<&str> = services.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "cramp-numbness-patient-view",
            "cramp-numbness-order-select",
            "cramp-numbness-order-sign"
        ]
    );
    for service in services {
        let id = service["id"].as_str().unwrap();
        let hook = service["hook"].as_str().unwrap();
        assert_eq!(id, format!("cramp-numbness-{hook}"));
        assert!(service["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(
            service["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
        let prefetch = service["prefetch"].as_object().unwrap();
        assert_eq!(prefetch["patient"], "Patient/{{context.patientId}}");
        for key in ["conditions", "medicationStatements", "medicationRequests"] {
            assert!(
                prefetch[key]
                    .as_str()
                    .unwrap()
                    .contains("patient={{context.patientId}}")
            );
        }
        let observations = prefetch["observations"].as_str().unwrap();
        assert!(observations.contains("http://loinc.org|19123-9"));
        assert!(observations.contains("http://loinc.org|2601-3"));
        assert!(observations.ends_with("&_sort=-date"), "newest first");
    }
}

#[actix_web::test]
async fn a_cors_preflight_is_answered_without_authentication() {
    let app = spawn_app().await;
    let response = app
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/cds-services/cramp-numbness-patient-view", app.address),
        )
        .header("Origin", "https://sandbox.cds-hooks.org")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    for method in ["GET", "POST", "OPTIONS"] {
        assert!(methods.contains(method), "{methods}");
    }
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
}

#[actix_web::test]
async fn health_answers_ok() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
}
