//! One hook invocation from request bytes to a response: validate the
//! request, gather the patient's data, evaluate the rules, render the cards.
//! The HTTP server and `cramp-cds evaluate` both call [`CdsService::invoke`],
//! so what holds for one holds for the other.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::auth::FhirAccess;
use crate::cards::{CardContext, render_cards};
use crate::engine::{Engine, RuleFailure};
use crate::fhir::{FhirClient, GatherError, gather};
use crate::hooks::response::CdsResponse;
use crate::hooks::{RequestError, parse_hook_call};
use crate::knowledge::Knowledge;

/// Why an invocation could not be answered with cards.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    /// No service has this id.
    #[error("no CDS Service has the id '{0}'")]
    UnknownService(String),
    /// The request is malformed or does not fit the hook.
    #[error(transparent)]
    BadRequest(#[from] RequestError),
    /// Data the rules need could not be obtained (HTTP 412).
    #[error("required data is missing for prefetch keys {}: {reason}", keys.join(", "))]
    MissingData {
        /// The prefetch keys.
        keys: Vec<String>,
        /// Why.
        reason: String,
    },
}

impl From<GatherError> for InvokeError {
    fn from(error: GatherError) -> Self {
        match error {
            GatherError::MissingData { keys, reason } => InvokeError::MissingData { keys, reason },
            GatherError::BadRequest(e) => InvokeError::BadRequest(e),
        }
    }
}

/// A successful invocation: the response and what happened along the way.
#[derive(Debug)]
pub struct Invocation {
    /// The response body.
    pub response: CdsResponse,
    /// Rules that fired but yielded to another: (rule id, winner).
    pub yielded: Vec<(String, String)>,
    /// Rules that failed and were skipped.
    pub failures: Vec<RuleFailure>,
    /// Data problems found in the request.
    pub data_issues: Vec<String>,
}

/// The CDS service: knowledge plus FHIR access.
#[derive(Debug, Clone)]
pub struct CdsService {
    /// The loaded knowledge.
    pub knowledge: Arc<Knowledge>,
    fhir: FhirClient,
    public_base_url: String,
}

impl CdsService {
    /// A service over `knowledge`, fetching missing data with `fhir`; cards link to rule
    /// pages under `public_base_url`.
    pub fn new(knowledge: Arc<Knowledge>, fhir: FhirClient, public_base_url: String) -> Self {
        CdsService {
            knowledge,
            fhir,
            public_base_url,
        }
    }

    /// Answers the request `body` sent to service `service_id`, as of `now`, calling only
    /// the FHIR servers `access` permits.
    pub async fn invoke(
        &self,
        service_id: &str,
        body: &[u8],
        now: DateTime<Utc>,
        access: &FhirAccess,
    ) -> Result<Invocation, InvokeError> {
        let service = self
            .knowledge
            .service(service_id)
            .ok_or_else(|| InvokeError::UnknownService(service_id.to_owned()))?;
        let call = parse_hook_call(body, service.hook)?;
        let needed = self.knowledge.needed_resource_types(service.hook);
        let record = gather(&call, service, &needed, &self.fhir, access)
            .instrument(tracing::debug_span!("gather_patient_data"))
            .await?;
        let evaluation = {
            let _span = tracing::debug_span!("evaluate_rules").entered();
            Engine::new(&self.knowledge).evaluate(&record, call.hook, now)
        };
        let context = CardContext {
            patient_id: &call.context.patient_id,
            encounter_id: call.context.encounter_id.as_deref(),
            user_id: &call.context.user_id,
            now,
            public_base_url: &self.public_base_url,
        };
        let cards = {
            let _span = tracing::debug_span!("render_cards").entered();
            render_cards(
                &evaluation.findings,
                &record,
                &context,
                &self.knowledge.cards,
            )
        };
        tracing::debug!(
            hook = %call.hook,
            cards = cards.len(),
            data_issues = record.issues.len(),
            "hook evaluated"
        );
        Ok(Invocation {
            response: CdsResponse { cards },
            yielded: evaluation.yielded,
            failures: evaluation.failures,
            data_issues: record
                .issues
                .iter()
                .map(|i| format!("{}: {}", i.location, i.problem))
                .collect(),
        })
    }
}
