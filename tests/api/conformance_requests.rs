//! What the service accepts and asks for: prefetch templates and their tokens (CDS Hooks 2.0
//! §3 and the Hook Library's token rules), `fhirAuthorization`, and the order-select context.

use serde_json::{Value, json};

use crate::helpers::{
    FHIR_TOKEN, FhirTestServer, TestApp, fixture, knowledge_copy, now, spawn_app, spawn_app_with,
};

/// A copy of the shipped knowledge whose services.json `edit` changed, and its directory.
fn knowledge_with(edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let dir = knowledge_copy();
    let path = dir.path().join("services.json");
    let mut services: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut services);
    std::fs::write(&path, serde_json::to_vec_pretty(&services).unwrap()).unwrap();
    dir
}

/// The service entry of `services.json` for `hook`.
fn service_of<'a>(services: &'a mut Value, hook: &str) -> &'a mut Value {
    services["services"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["hook"] == hook)
        .unwrap_or_else(|| panic!("no {hook} service"))
}

/// Why the app does not start on `knowledge`.
async fn start_up_refusal(knowledge: &std::path::Path) -> String {
    let mut settings = cramp_cds::config::Settings::default();
    settings.server.bind = "127.0.0.1:0".to_owned();
    settings.knowledge.dir = Some(knowledge.to_owned());
    settings.store.database_url = crate::helpers::temp_database_url();
    let built = cramp_cds::server::Application::build(
        &settings,
        true,
        cramp_cds::server::Clock::Fixed(now()),
    )
    .await;
    match built {
        Ok(_) => panic!("the app started on knowledge it should refuse"),
        Err(error) => error.to_string(),
    }
}

/// The templates these tests add to every service: each token form CDS Hooks 2.0 allows.
const TOKEN_TEMPLATES: [(&str, &str); 4] = [
    ("encounter", "Encounter/{{context.encounterId}}"),
    ("practitioner", "Practitioner/{{userPractitionerId}}"),
    (
        "practitionerRole",
        "PractitionerRole/{{userPractitionerRoleId}}",
    ),
    (
        "encountersOfUser",
        "Encounter?participant={{context.userId}}&patient={{context.patientId}}",
    ),
];

/// The app on knowledge whose three services also ask for [`TOKEN_TEMPLATES`], allowed to
/// call `fhir`.
async fn app_with_token_templates(fhir: &FhirTestServer) -> (TestApp, tempfile::TempDir) {
    let knowledge = knowledge_with(|services| {
        for hook in ["patient-view", "order-select", "order-sign"] {
            let prefetch = service_of(services, hook)["prefetch"]
                .as_object_mut()
                .unwrap();
            for (key, template) in TOKEN_TEMPLATES {
                prefetch.insert(key.to_owned(), json!(template));
            }
        }
    });
    let (dir, base) = (knowledge.path().to_owned(), fhir.base_url.clone());
    let app = spawn_app_with(move |s| {
        s.knowledge.dir = Some(dir);
        s.auth.trial_fhir_servers = vec![base];
    })
    .await;
    (app, knowledge)
}

async fn fhir_server_with_user_and_encounter() -> FhirTestServer {
    FhirTestServer::start(
        vec![
            json!({"resourceType": "Encounter", "id": "enc-1", "status": "in-progress",
                   "subject": {"reference": "Patient/pat-1"}}),
            json!({"resourceType": "Practitioner", "id": "prac-1"}),
            json!({"resourceType": "PractitionerRole", "id": "role-1"}),
        ],
        50,
    )
    .await
}

/// `name`'s request with its prefetch kept, a FHIR server to fetch the rest from, and `context`
/// members set.
fn request_fetching_the_rest(
    name: &str,
    fhir: &FhirTestServer,
    context: &[(&str, Value)],
) -> Value {
    let mut request = fixture(name);
    request["fhirServer"] = json!(fhir.base_url);
    request["fhirAuthorization"] = json!({"access_token": FHIR_TOKEN, "token_type": "Bearer",
        "expires_in": 300, "scope": "patient/*.read user/*.read", "subject": "cramp-cds"});
    for (field, value) in context {
        match value {
            Value::Null => {
                request["context"].as_object_mut().unwrap().remove(*field);
            }
            value => request["context"][*field] = value.clone(),
        }
    }
    request
}

const ONE_FIXTURE_PER_HOOK: [(&str, &str); 3] = [
    (
        "cramp-numbness-patient-view",
        "diuretic-low-magnesium-mmol.fire",
    ),
    (
        "cramp-numbness-order-select",
        "diuretic-order-select-low-magnesium.fire",
    ),
    ("cramp-numbness-order-sign", "order-sign-diuretic.quiet"),
];

fn fetched(fhir: &FhirTestServer) -> Vec<String> {
    let mut fetched: Vec<String> = fhir
        .received()
        .iter()
        .map(|r| match r.query.as_str() {
            "" => r.path.clone(),
            query => format!("{}?{query}", r.path),
        })
        .collect();
    fetched.sort();
    fetched
}

#[actix_web::test]
async fn prefetch_tokens_for_user_patient_and_encounter_are_substituted_for_each_hook() {
    for (service, name) in ONE_FIXTURE_PER_HOOK {
        let fhir = fhir_server_with_user_and_encounter().await;
        let (app, _knowledge) = app_with_token_templates(&fhir).await;
        let (_, discovery) = app.get_json("/cds-services").await;
        let listed = discovery["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == service)
            .unwrap();
        for (key, template) in TOKEN_TEMPLATES {
            assert_eq!(listed["prefetch"][key], template, "{service}");
        }
        let request = request_fetching_the_rest(
            name,
            &fhir,
            &[
                ("userId", json!("Practitioner/prac-1")),
                ("encounterId", json!("enc-1")),
            ],
        );
        let (status, body) = app.post_hook_json(service, &request).await;
        assert_eq!(status, 200, "{service}: {body}");
        assert_eq!(
            fetched(&fhir),
            [
                "/fhir/Encounter/enc-1",
                "/fhir/Encounter?participant=Practitioner/prac-1&patient=pat-1",
                "/fhir/Practitioner/prac-1",
            ],
            "{service}: the templates the request could fill, filled, and nothing else \
             (userPractitionerRoleId has no value for a Practitioner user)"
        );
        for received in fhir.received() {
            assert_eq!(
                received.authorization.as_deref(),
                Some(&*format!("Bearer {FHIR_TOKEN}"))
            );
        }
    }
}

#[actix_web::test]
async fn a_template_whose_token_the_request_cannot_fill_is_not_fetched() {
    for (service, name) in ONE_FIXTURE_PER_HOOK {
        let fhir = fhir_server_with_user_and_encounter().await;
        let (app, _knowledge) = app_with_token_templates(&fhir).await;
        // No encounterId, and a PractitionerRole user: the Encounter read and the Practitioner
        // read cannot be filled; they are skipped, not sent with an empty id, and not an error.
        let request = request_fetching_the_rest(
            name,
            &fhir,
            &[
                ("userId", json!("PractitionerRole/role-1")),
                ("encounterId", Value::Null),
            ],
        );
        let (status, body) = app.post_hook_json(service, &request).await;
        assert_eq!(status, 200, "{service}: {body}");
        assert_eq!(
            fetched(&fhir),
            [
                "/fhir/Encounter?participant=PractitionerRole/role-1&patient=pat-1",
                "/fhir/PractitionerRole/role-1",
            ],
            "{service}"
        );
    }
}

#[actix_web::test]
async fn templates_with_tokens_outside_cds_hooks_2_0_stop_start_up() {
    let cases = [
        (
            "order-select",
            "MedicationRequest?_id={{context.selections}}",
            "not allowed",
        ),
        (
            "order-select",
            "MedicationRequest?_id={{context.draftOrders}}",
            "not allowed",
        ),
        (
            "order-sign",
            "MedicationRequest?_id={{context.draftOrders}}",
            "not allowed",
        ),
        (
            "order-sign",
            "MedicationRequest?_id={{context.draftOrders.entry.resource.id}}",
            "not allowed",
        ),
        (
            "patient-view",
            "Medication/{{context.medication.id}}",
            "not allowed",
        ),
        ("patient-view", "Patient/{{patientId}}", "unknown token"),
        (
            "patient-view",
            "Observation?patient={{context.patientId}}&date=gt{{today() - 90 days}}",
            "unknown token",
        ),
        (
            "patient-view",
            "Condition?patient={{%patient.id}}",
            "unknown token",
        ),
        (
            "patient-view",
            "Condition?patient={{context.patientId}",
            "unclosed token",
        ),
    ];
    for (hook, template, problem) in cases {
        let knowledge = knowledge_with(|services| {
            service_of(services, hook)["prefetch"]["extra"] = json!(template);
        });
        let message = start_up_refusal(knowledge.path()).await;
        assert!(
            message.contains("prefetch 'extra'"),
            "{template}: {message}"
        );
        assert!(message.contains(problem), "{template}: {message}");
    }
}

#[actix_web::test]
async fn a_service_for_a_hook_this_service_does_not_answer_stops_start_up() {
    for hook in [
        "appointment-book",
        "encounter-start",
        "encounter-discharge",
        "order-dispatch",
    ] {
        let knowledge = knowledge_with(|services| {
            service_of(services, "order-sign")["hook"] = json!(hook);
        });
        let message = start_up_refusal(knowledge.path()).await;
        assert!(
            message.contains(&format!("unknown hook '{hook}'")),
            "{message}"
        );
    }
}

#[actix_web::test]
async fn shipped_prefetch_templates_use_only_the_recommended_query_subset() {
    let app = spawn_app().await;
    let (_, discovery) = app.get_json("/cds-services").await;
    let mut searches = 0;
    for service in discovery["services"].as_array().unwrap() {
        for (key, template) in service["prefetch"].as_object().unwrap() {
            let template = template.as_str().unwrap();
            let Some((resource_type, query)) = template.split_once('?') else {
                // An instance read: Type/{{token}}.
                let (resource_type, id) = template.split_once('/').expect("a read or a search");
                assert!(
                    resource_type.chars().all(|c| c.is_ascii_alphabetic()),
                    "{key}: {template}"
                );
                assert_eq!(id, "{{context.patientId}}", "{key}: {template}");
                continue;
            };
            searches += 1;
            assert!(
                resource_type.chars().all(|c| c.is_ascii_alphabetic()),
                "{key}: {template}"
            );
            for parameter in query.split('&') {
                let (name, value) = parameter.split_once('=').expect("name=value");
                match name {
                    // A reference search on the patient in context.
                    "patient" | "subject" => assert_eq!(value, "{{context.patientId}}", "{key}"),
                    // A token search: system|code, or a list of them.
                    "code" => assert!(
                        value.split(',').all(|t| t.split_once('|').is_some_and(
                            |(system, code)| system.starts_with("http") && !code.is_empty()
                        )),
                        "{key}: {value}"
                    ),
                    "_sort" | "_count" => assert!(!value.is_empty()),
                    other => {
                        panic!("{key}: '{other}' is outside the recommended subset: {template}")
                    }
                }
            }
        }
    }
    assert!(searches > 0);
}

#[actix_web::test]
async fn fhir_authorization_needs_a_bearer_access_token_and_every_field_is_read() {
    let app = spawn_app().await;
    let service = "cramp-numbness-patient-view";
    let secret = "a-secret-access-token";
    let with = |authorization: Value| {
        let mut request = fixture("diuretic-low-magnesium-mmol.fire");
        request["fhirServer"] = json!("https://ehr.example/fhir");
        request["fhirAuthorization"] = authorization;
        request
    };
    let full = json!({"access_token": secret, "token_type": "Bearer", "expires_in": 300,
        "scope": "patient/*.read", "subject": "cramp-cds", "patient": "pat-1"});
    let changed = |field: &str, value: Value| {
        let mut authorization = full.clone();
        match value {
            Value::Null => {
                authorization.as_object_mut().unwrap().remove(field);
            }
            value => authorization[field] = value,
        }
        authorization
    };
    let refused = [
        (
            changed("token_type", json!("MAC")),
            "fhirAuthorization.token_type",
        ),
        (
            changed("access_token", json!(" ")),
            "fhirAuthorization.access_token",
        ),
        (changed("access_token", Value::Null), "fhirAuthorization"),
        (changed("token_type", Value::Null), "fhirAuthorization"),
        (changed("expires_in", json!("300")), "fhirAuthorization"),
        (
            changed("scope", json!(["patient/*.read"])),
            "fhirAuthorization",
        ),
        (changed("subject", json!(7)), "fhirAuthorization"),
        (
            changed("patient", json!({"id": "pat-1"})),
            "fhirAuthorization",
        ),
        (json!("a string"), "fhirAuthorization"),
    ];
    for (authorization, field) in refused {
        let (status, body) = app
            .post_hook_json(service, &with(authorization.clone()))
            .await;
        assert_eq!(status, 400, "{authorization}: {body}");
        assert_eq!(
            body["issue"][0]["expression"][0], field,
            "{authorization}: {body}"
        );
        assert!(
            !body.to_string().contains(secret),
            "the token is never echoed: {body}"
        );
    }
    // Every field given (patient too): accepted, and the prefetch is complete, so no call out.
    let (status, body) = app.post_hook_json(service, &with(full.clone())).await;
    assert_eq!(status, 200, "{body}");
    // Without fhirServer, fhirAuthorization is refused (fhirServer is then required).
    let mut request = with(changed("patient", Value::Null));
    request.as_object_mut().unwrap().remove("fhirServer");
    let (status, body) = app.post_hook_json(service, &request).await;
    assert_eq!(
        (status, &body["issue"][0]["expression"][0]),
        (400, &json!("fhirServer"))
    );
}

#[actix_web::test]
async fn order_select_selections_must_name_draft_orders() {
    let app = spawn_app().await;
    let service = "cramp-numbness-order-select";
    let with_selections = |selections: Value| {
        let mut request = fixture("diuretic-order-select-low-magnesium.fire");
        request["context"]["selections"] = selections;
        request
    };
    let refused = [
        (json!([]), "context.selections"),
        (
            json!("MedicationRequest/draft-furosemide"),
            "context.selections",
        ),
        (json!([7]), "context.selections"),
        (json!(["draft-furosemide"]), "context.selections[0]"),
        (
            json!([
                "MedicationRequest/draft-furosemide",
                "MedicationRequest/elsewhere"
            ]),
            "context.selections[1]",
        ),
        (
            json!(["ServiceRequest/draft-furosemide"]),
            "context.selections[0]",
        ),
    ];
    for (selections, field) in refused {
        let (status, body) = app
            .post_hook_json(service, &with_selections(selections.clone()))
            .await;
        assert_eq!(status, 400, "{selections}: {body}");
        assert_eq!(
            body["issue"][0]["expression"][0], field,
            "{selections}: {body}"
        );
    }
    let (status, body) = app
        .post_hook_json(
            service,
            &with_selections(json!(["MedicationRequest/draft-furosemide"])),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body["cards"].as_array().unwrap().is_empty(),
        "the selected diuretic is evaluated"
    );

    // A selection may be any of the hook's order types; one this service does not evaluate
    // (a NutritionOrder) is still among draftOrders, so the call is answered, with no card
    // about the unselected diuretic.
    let mut request = with_selections(json!(["NutritionOrder/diet-1"]));
    request["context"]["draftOrders"]["entry"]
        .as_array_mut()
        .unwrap()
        .push(json!({"resource": {"resourceType": "NutritionOrder", "id": "diet-1", "status": "draft",
            "intent": "order", "patient": {"reference": "Patient/pat-1"}, "dateTime": "2026-11-01"}}));
    let (status, body) = app.post_hook_json(service, &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"cards": []}));
}
