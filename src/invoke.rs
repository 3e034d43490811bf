//! One hook invocation from request bytes to a response: validate the
//! request, gather the patient's data, evaluate the rules, render the cards.
//! The HTTP server and `cramp-cds evaluate` both call [`CdsService::invoke`],
//! so what holds for one holds for the other.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::auth::FhirAccess;
use crate::cards::{CardContext, render_cards};
use crate::config::{PublicBaseUrlError, Settings};
use crate::engine::{Engine, Evidence, Quieted, RuleFailure, Withheld};
use crate::fhir::{FetchTally, FhirClient, GatherError, HttpClientError, gather};
use crate::hooks::response::CdsResponse;
use crate::hooks::vocabulary::Indicator;
use crate::hooks::{RequestError, parse_hook_call};
use crate::knowledge::{Knowledge, KnowledgeError};
use crate::store::history::{History, Snooze};
use crate::store::{ClientScope, IssuedCard};

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

/// Why the service could not be built from the settings.
#[derive(Debug, thiserror::Error)]
pub enum ServiceBuildError {
    /// A knowledge file is broken (the message names it).
    #[error("knowledge error in {0}")]
    Knowledge(#[source] KnowledgeError),
    /// The FHIR client could not be built.
    #[error(transparent)]
    FhirClient(#[from] HttpClientError),
    /// `server.public_base_url` (the base of the cards' rule links) is not a base URL.
    #[error(transparent)]
    PublicBaseUrl(#[from] PublicBaseUrlError),
}

/// What the engine found behind one card, as typed values: for the edge (metrics, history)
/// and the command line, which never read them back out of the card.
#[derive(Debug, Clone)]
pub struct FindingReport {
    /// The rule that fired.
    pub rule_id: String,
    /// The card's indicator.
    pub indicator: Indicator,
    /// The evidence the card shows.
    pub evidence: Vec<Evidence>,
}

/// A successful invocation: the response and what happened along the way.
#[derive(Debug)]
pub struct Invocation {
    /// The response body.
    pub response: CdsResponse,
    /// One report per card of `response`, in the same order.
    pub findings: Vec<FindingReport>,
    /// Rules that fired but yielded to another: (rule id, winner).
    pub yielded: Vec<(String, String)>,
    /// Rules that failed and were skipped.
    pub failures: Vec<RuleFailure>,
    /// Rules that stayed quiet for a safety reason although their trigger was there.
    pub quieted: Vec<Quieted>,
    /// Suggestions held back for a safety reason: (rule id, what and why).
    pub withheld: Vec<(String, Withheld)>,
    /// Data problems found in the request.
    pub data_issues: Vec<String>,
    /// Cards not shown because a clinician snoozed their rule for this patient.
    pub suppressed: Vec<Snooze>,
}

/// An invocation's answer, and what it did on the way that the edge may count (the core
/// keeps no metrics).
#[derive(Debug)]
pub struct Answer {
    /// The invocation, or why it could not be answered with cards.
    pub result: Result<Invocation, InvokeError>,
    /// Prefetch keys fetched from the FHIR server, whatever the result.
    pub fhir_fetches: FetchTally,
}

/// The CDS service: knowledge plus FHIR access.
#[derive(Debug, Clone)]
pub struct CdsService {
    /// The loaded knowledge.
    pub knowledge: Arc<Knowledge>,
    fhir: FhirClient,
    public_base_url: String,
    history: Option<History>,
    record_cards: bool,
}

impl CdsService {
    /// A service over `knowledge`, fetching missing data with `fhir`; cards link to rule
    /// pages under `public_base_url`.
    pub fn new(knowledge: Arc<Knowledge>, fhir: FhirClient, public_base_url: String) -> Self {
        CdsService {
            knowledge,
            fhir,
            public_base_url,
            history: None,
            record_cards: false,
        }
    }

    /// The service the settings describe: the configured knowledge, a FHIR client and the
    /// public base URL of the cards' rule links. The composition root of `serve` and
    /// `evaluate`; a broken knowledge file is named in the error.
    pub fn from_settings(settings: &Settings) -> Result<CdsService, ServiceBuildError> {
        let knowledge =
            Knowledge::load(&settings.knowledge.source()).map_err(ServiceBuildError::Knowledge)?;
        let fhir = FhirClient::new(settings.fhir.clone())?;
        Ok(CdsService::new(
            Arc::new(knowledge),
            fhir,
            settings.server.public_base_url()?,
        ))
    }

    /// The same service answering from `knowledge` instead (a reload): the same FHIR client,
    /// history and rule-link base.
    pub fn with_knowledge(&self, knowledge: Arc<Knowledge>) -> CdsService {
        CdsService {
            knowledge,
            ..self.clone()
        }
    }

    /// Uses `history` for suppression, and records issued cards in it when `record_cards`.
    pub fn with_history(mut self, history: History, record_cards: bool) -> Self {
        self.history = Some(history);
        self.record_cards = record_cards;
        self
    }

    /// The history, when the service has one.
    pub fn history(&self) -> Option<&History> {
        self.history.as_ref()
    }

    /// Answers the request `body` that `client` sent to service `service_id`, as of `now`,
    /// calling only the FHIR servers `access` permits.
    pub async fn invoke(
        &self,
        service_id: &str,
        body: &[u8],
        now: DateTime<Utc>,
        access: &FhirAccess,
        client: &ClientScope,
    ) -> Result<Invocation, InvokeError> {
        self.answer(service_id, body, now, access, client)
            .await
            .result
    }

    /// [`invoke`](Self::invoke), also telling what the invocation fetched on the way.
    pub async fn answer(
        &self,
        service_id: &str,
        body: &[u8],
        now: DateTime<Utc>,
        access: &FhirAccess,
        client: &ClientScope,
    ) -> Answer {
        let mut fhir_fetches = FetchTally::default();
        let result = self
            .answer_counting(service_id, body, now, access, client, &mut fhir_fetches)
            .await;
        Answer {
            result,
            fhir_fetches,
        }
    }

    async fn answer_counting(
        &self,
        service_id: &str,
        body: &[u8],
        now: DateTime<Utc>,
        access: &FhirAccess,
        client: &ClientScope,
        fhir_fetches: &mut FetchTally,
    ) -> Result<Invocation, InvokeError> {
        let service = self
            .knowledge
            .service(service_id)
            .ok_or_else(|| InvokeError::UnknownService(service_id.to_owned()))?;
        let call = parse_hook_call(body, service.hook)?;
        let gathered = gather(
            &call,
            service,
            &service.needed_resource_types,
            &self.fhir,
            access,
        )
        .instrument(tracing::debug_span!("gather_patient_data"))
        .await;
        *fhir_fetches = gathered.fetches;
        let record = gathered.record?;
        let mut evaluation = {
            let _span = tracing::debug_span!("evaluate_rules").entered();
            Engine::new(&self.knowledge).evaluate(&record, call.hook, now)
        };
        let patient_hash = self
            .history
            .as_ref()
            .map(|h| h.patient_hash(client, &call.context.patient_id));
        let mut suppressed = Vec::new();
        if let (Some(history), Some(hash)) = (&self.history, &patient_hash)
            && evaluation
                .findings
                .iter()
                .any(|f| f.indicator < Indicator::Critical)
        {
            let snoozes = history.snoozes(hash, now).await;
            evaluation.findings.retain(|finding| {
                let snooze = snoozes.iter().find(|s| s.rule_id == finding.rule.id);
                match snooze {
                    // Critical cards are never suppressed.
                    Some(snooze) if finding.indicator < Indicator::Critical => {
                        suppressed.push(snooze.clone());
                        false
                    }
                    _ => true,
                }
            });
        }
        let context = CardContext {
            patient_id: &call.context.patient_id,
            encounter_id: call.context.encounter_id.as_deref(),
            user_id: &call.context.user_id,
            now,
            public_base_url: &self.public_base_url,
        };
        let cards = {
            let _span = tracing::debug_span!("render_cards").entered();
            let mut cards = render_cards(
                &evaluation.findings,
                &record,
                &context,
                &self.knowledge.cards,
            );
            // Every card names the knowledge that made it.
            let version = self.knowledge.version.extension();
            for card in &mut cards {
                card.extension = Some(version.clone());
            }
            cards
        };
        let findings: Vec<FindingReport> = evaluation
            .findings
            .iter()
            .map(|f| FindingReport {
                rule_id: f.rule_id().to_owned(),
                indicator: f.indicator,
                evidence: f.evidence.clone(),
            })
            .collect();
        tracing::debug!(
            hook = %call.hook,
            cards = cards.len(),
            suppressed = suppressed.len(),
            data_issues = record.issues.len(),
            "hook evaluated"
        );
        if self.record_cards
            && let (Some(history), Some(hash)) = (&self.history, patient_hash)
        {
            // Feedback on these cards must find them even if the service dies right after
            // answering: wait (briefly) for their commit.
            let knowledge_version = self.knowledge.version.id();
            history
                .record_and_wait(
                    cards
                        .iter()
                        .zip(&findings)
                        .map(|(card, finding)| IssuedCard {
                            card_uuid: card.uuid.clone(),
                            client_scope: client.clone(),
                            service_id: service_id.to_owned(),
                            rule_id: finding.rule_id.clone(),
                            indicator: card.indicator.as_str().to_owned(),
                            hook_instance: call.hook_instance.clone(),
                            patient_hash: hash.clone(),
                            issued_at: now,
                            knowledge_version: knowledge_version.clone(),
                            suggestion_uuids: card
                                .suggestions
                                .iter()
                                .map(|s| s.uuid.clone())
                                .collect(),
                        })
                        .collect(),
                )
                .await;
        }
        let withheld = evaluation
            .findings
            .iter()
            .flat_map(|f| f.withheld.iter().map(|w| (f.rule.id.clone(), w.clone())))
            .collect();
        Ok(Invocation {
            response: CdsResponse { cards },
            findings,
            yielded: evaluation.yielded,
            failures: evaluation.failures,
            quieted: evaluation.quieted,
            withheld,
            data_issues: record
                .issues
                .iter()
                .map(|i| format!("{}: {}", i.location, i.problem))
                .collect(),
            suppressed,
        })
    }
}
