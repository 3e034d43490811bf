//! Evaluates simulated requests with exactly the code path of `serve`: the service built from
//! the settings, [`CdsService::invoke`] with no FHIR server (`FhirAccess::none()`: a request
//! file that names one is answered from its prefetch alone) and no history, so no suppression,
//! unless the service was given a read-only one ([`crate::store::history::History::snapshot`]).

use std::cell::RefCell;
use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::spill::PatientGroup;
use crate::auth::FhirAccess;
use crate::hooks::Hook;
use crate::invoke::CdsService;
use crate::store::ClientScope;

/// What one evaluation produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The cards: (rule id, indicator).
    pub cards: Vec<(String, String)>,
    /// The data issues, as the invocation reported them.
    pub data_issues: Vec<String>,
    /// The rules whose cards a clinician's override snoozed (with suppression on).
    pub suppressed: Vec<String>,
}

/// A service and the id of its `patient-view` service.
#[derive(Debug, Clone)]
pub struct Evaluator {
    service: CdsService,
    patient_view: usize,
    scope: ClientScope,
}

thread_local! {
    /// One runtime per worker thread: `invoke` is async but does no I/O when the prefetch is
    /// complete.
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

impl Evaluator {
    /// An evaluator over `service`, which must have a `patient-view` service.
    pub fn new(service: CdsService) -> Result<Evaluator, String> {
        let patient_view = service
            .knowledge
            .services
            .iter()
            .position(|s| s.hook == Hook::PatientView)
            .ok_or("the knowledge has no patient-view service")?;
        Ok(Evaluator {
            service,
            patient_view,
            scope: ClientScope::local(),
        })
    }

    /// Evaluates as the client `scope`'s calls (whose overrides suppress, with a history).
    pub fn with_scope(mut self, scope: ClientScope) -> Evaluator {
        self.scope = scope;
        self
    }

    /// The resource types the `patient-view` request carries: those its prefetch templates
    /// read or search, with Patient and Medication (referenced by medications). Others in
    /// the input are not read.
    pub fn resource_types_asked_for(&self) -> Vec<String> {
        let service = &self.service.knowledge.services[self.patient_view];
        service
            .templates
            .iter()
            .map(|(_, template)| template.resource_type.clone())
            .chain(["Patient".to_owned(), "Medication".to_owned()])
            .collect()
    }

    /// The `patient-view` request of `group`, as an EHR would send it.
    pub fn patient_view_body(
        &self,
        group: &PatientGroup,
        medications: &HashMap<String, String>,
    ) -> Vec<u8> {
        let service = &self.service.knowledge.services[self.patient_view];
        super::request::patient_view_request(service, group, medications)
    }

    /// Evaluates a `patient-view` request `body` (see [`Evaluator::patient_view_body`]) as of
    /// `now`.
    pub fn evaluate_patient_view(
        &self,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Outcome, String> {
        let service = &self.service.knowledge.services[self.patient_view];
        self.evaluate(&service.definition.id, body, now)
    }

    /// Evaluates a CDS Hooks request file's bytes with the service of its hook.
    pub fn evaluate_request(&self, body: &[u8], now: DateTime<Utc>) -> Result<Outcome, String> {
        let hook: Hook = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["hook"].as_str().map(str::to_owned))
            .ok_or("the request has no hook")?
            .parse()?;
        let service = self
            .service
            .knowledge
            .services
            .iter()
            .find(|s| s.hook == hook)
            .ok_or_else(|| format!("no service answers {hook}"))?;
        self.evaluate(&service.definition.id, body, now)
    }

    fn evaluate(
        &self,
        service_id: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Outcome, String> {
        RUNTIME.with(|cell| {
            let mut runtime = cell.borrow_mut();
            if runtime.is_none() {
                *runtime = Some(
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("cannot start the runtime: {e}"))?,
                );
            }
            let runtime = runtime.as_ref().ok_or("no runtime")?;
            let invocation = runtime
                .block_on(self.service.invoke(
                    service_id,
                    body,
                    now,
                    &FhirAccess::none(),
                    &self.scope,
                ))
                .map_err(|e| e.to_string())?;
            Ok(Outcome {
                cards: invocation
                    .findings
                    .iter()
                    .map(|f| (f.rule_id.clone(), f.indicator.as_str().to_owned()))
                    .collect(),
                data_issues: invocation.data_issues,
                suppressed: invocation
                    .suppressed
                    .into_iter()
                    .map(|snooze| snooze.rule_id)
                    .collect(),
            })
        })
    }
}
