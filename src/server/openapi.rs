//! The OpenAPI 3 description of the public endpoints, served at
//! `/openapi.json` ([`document`]). Response schemas are derived from the types the service
//! actually serialises; request schemas describe the CDS Hooks 2.0 shapes the
//! service accepts (it reads them leniently, so they are documentation, and the
//! service's own validation is authoritative).

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::hooks::response::{Action, Card, CdsResponse, Coding, Link, Source, Suggestion};
use crate::hooks::vocabulary::{ActionType, Indicator, SelectionBehavior};
use crate::knowledge::Knowledge;
use crate::knowledge::services::ServiceDefinition;

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "cramp-cds",
        description = "CDS Hooks 2.0 service: muscle cramps and numbness. Every endpoint but health, readiness, metrics, rule pages and this document requires a CDS Hooks JWT (Authorization: Bearer).",
        license(name = "Proprietary")
    ),
    paths(
        super::routes::discovery::discovery,
        super::routes::invoke::invoke,
        super::routes::feedback::feedback,
        super::routes::probes::health,
        super::routes::probes::ready,
    ),
    components(schemas(
        DiscoveryResponse, ServiceDefinition, ServiceId, HookName, HookRequest, HookContext, FhirAuthorization,
        CdsResponse, Card, Source, Coding, Suggestion, Action, Link, Indicator,
        SelectionBehavior, ActionType, FeedbackRequest, FeedbackItem, AcceptedSuggestion,
        OverrideReasonGiven, FeedbackResponse, OperationOutcome, OperationOutcomeIssue, Health, Readiness
    )),
    modifiers(&CdsHooksJwt),
    tags((name = "CDS Hooks", description = "Discovery, invocation and feedback (CDS Hooks 2.0)"),
         (name = "Operations", description = "Liveness and readiness"))
)]
pub struct ApiDoc;

struct CdsHooksJwt;

impl Modify for CdsHooksJwt {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "cds_hooks_jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of a service that loaded `knowledge`: [`ApiDoc`], with the
/// `ServiceId` schema listing the ids of the services that knowledge defines.
pub fn document(knowledge: &Knowledge) -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    let ids = knowledge.services.iter().map(|s| s.definition.id.clone());
    let service_id = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "The services this deployment offers (its knowledge's ids).",
        ))
        .enum_values(Some(ids))
        .build();
    document
        .components
        .get_or_insert_with(Default::default)
        .schemas
        .insert("ServiceId".to_owned(), RefOr::T(Schema::Object(service_id)));
    document
}

/// A service id; [`document`] replaces this schema with the ids of the loaded knowledge.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ServiceId(String);

/// A CDS Hooks hook.
#[derive(ToSchema, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)]
pub enum HookName {
    /// A chart is opened.
    PatientView,
    /// An order is being chosen.
    OrderSelect,
    /// Orders are about to be signed.
    OrderSign,
}

/// `GET /cds-services`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DiscoveryResponse {
    services: Vec<ServiceDefinition>,
}

/// A CDS Hooks request.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct HookRequest {
    /// The hook; must be the service's hook.
    hook: HookName,
    /// A UUID for this hook call.
    hook_instance: String,
    /// The EHR's FHIR base URL (required with fhirAuthorization).
    fhir_server: Option<String>,
    /// An OAuth token for the FHIR server.
    fhir_authorization: Option<FhirAuthorization>,
    /// The hook's context.
    context: HookContext,
    /// Prefetch results by key: a resource, a Bundle, an OperationOutcome or null.
    #[schema(value_type = Option<Object>)]
    prefetch: Option<serde_json::Value>,
}

/// The hook context.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct HookContext {
    /// `Practitioner/id`, `PractitionerRole/id` (patient-view also `Patient/id`, `RelatedPerson/id`).
    user_id: String,
    /// The patient's id.
    patient_id: String,
    /// The encounter's id.
    encounter_id: Option<String>,
    /// order-select: references of the selected draft orders.
    selections: Option<Vec<String>>,
    /// order-select and order-sign: a Bundle of draft orders.
    #[schema(value_type = Option<Object>)]
    draft_orders: Option<serde_json::Value>,
}

/// `fhirAuthorization`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FhirAuthorization {
    access_token: String,
    token_type: String,
    expires_in: Option<i64>,
    scope: Option<String>,
    subject: Option<String>,
    patient: Option<String>,
}

/// A feedback request.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FeedbackRequest {
    feedback: Vec<FeedbackItem>,
}

/// One feedback entry.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct FeedbackItem {
    /// The card's uuid.
    card: String,
    /// `accepted` or `overridden`.
    #[schema(example = "overridden")]
    outcome: String,
    /// Required when accepted.
    accepted_suggestions: Option<Vec<AcceptedSuggestion>>,
    override_reason: Option<OverrideReasonGiven>,
    /// RFC 3339 date-time.
    outcome_timestamp: String,
}

/// An accepted suggestion.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AcceptedSuggestion {
    id: String,
}

/// Why a card was overridden.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct OverrideReasonGiven {
    reason: Option<Coding>,
    user_comment: Option<String>,
}

/// The feedback response.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct FeedbackResponse {
    stored: i64,
    unknown_cards: Vec<String>,
}

/// A FHIR OperationOutcome: every error body.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct OperationOutcome {
    #[schema(example = "OperationOutcome")]
    resource_type: String,
    issue: Vec<OperationOutcomeIssue>,
}

/// An issue of an OperationOutcome.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OperationOutcomeIssue {
    severity: String,
    code: String,
    diagnostics: String,
    /// The field that was wrong (400 only).
    expression: Option<Vec<String>>,
}

/// `GET /health`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    #[schema(example = "ok")]
    status: String,
}

/// `GET /ready`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Readiness {
    status: String,
    #[schema(value_type = Object)]
    knowledge: serde_json::Value,
    database: String,
}
