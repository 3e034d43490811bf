//! The [`PatientRecord`]: the clinical facts the engine reads, in plain domain
//! types. This module turns fhir-sdk resources into those facts (statuses kept
//! as codes, dates as chrono values, medications with their referenced
//! Medication resolved) and records every resource it could not use as a
//! [`DataIssue`]. It decides nothing clinical.
//!
//! Only the patient in `context.patientId` is read: a resource whose
//! `subject` (or, for a Patient, whose id) names anyone else is never added and
//! is reported instead. A Condition, MedicationStatement or MedicationRequest
//! cannot be read without a subject (FHIR makes it mandatory); an Observation
//! without a subject is not attributable to the patient either, so it is
//! treated the same way: reported, not used. A patient-scoped search from an
//! EHR always fills `subject`, so only malformed data is affected.

use crate::knowledge::topics::IssueTopic;
use chrono::{DateTime, NaiveDate, Utc};

use cramp_fhir_parse::resources::{
    Condition, ConditionOnset, Medication, MedicationRequest, MedicationRequestMedication,
    MedicationStatement, MedicationStatementMedication, Observation, ObservationEffective,
    ObservationValue, Patient, Resource,
};
use cramp_fhir_parse::types::{CodeableConcept, Quantity, Reference};
use cramp_fhir_parse::{Date, DateTime as FhirDateTime, ParsedResource};

use super::dose::{self, DailyDose};

/// A coding as the record keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Code {
    /// Code system URI.
    pub system: String,
    /// Code.
    pub code: String,
    /// Display, when sent.
    pub display: Option<String>,
}

/// A coded concept: its codings and its free text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Concept {
    /// The codings.
    pub codings: Vec<Code>,
    /// `text`, when sent.
    pub text: Option<String>,
}

impl Concept {
    /// A human name: the text, else the first display, else the first code.
    pub fn name(&self) -> String {
        self.text
            .clone()
            .or_else(|| self.codings.iter().find_map(|c| c.display.clone()))
            .or_else(|| self.codings.first().map(|c| c.code.clone()))
            .unwrap_or_else(|| "(uncoded)".to_owned())
    }
}

/// A number with its unit, as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// The value.
    pub value: f64,
    /// The UCUM code, else the unit text.
    pub unit: Option<String>,
    /// `<`, `<=`, `>=` or `>`, when sent.
    pub comparator: Option<String>,
}

/// A condition from the record.
#[derive(Debug, Clone)]
pub struct ConditionEntry {
    /// `Condition/id`.
    pub reference: String,
    /// `Condition.code`.
    pub concept: Concept,
    /// `clinicalStatus` code, when sent.
    pub clinical_status: Option<String>,
    /// `verificationStatus` code, when sent.
    pub verification_status: Option<String>,
    /// `onsetDateTime` or `onsetPeriod.start`.
    pub onset: Option<DateTime<Utc>>,
    /// `recordedDate`.
    pub recorded: Option<DateTime<Utc>>,
    /// Whether an `abatement[x]` was sent (the condition has ended, unless a clinical status says otherwise).
    pub abated: bool,
    /// `bodySite` entries that carry at least one coding (text-only sites cannot be matched).
    pub body_sites: Vec<Concept>,
}

impl ConditionEntry {
    /// Active: clinical status active, recurrence or relapse, and not refuted or entered in error.
    /// With no clinical status the condition is active unless an abatement says it has ended.
    pub fn is_active(&self) -> bool {
        let clinically_active = match self.clinical_status.as_deref() {
            Some(status) => matches!(status, "active" | "recurrence" | "relapse"),
            None => !self.abated,
        };
        let verified = !matches!(
            self.verification_status.as_deref(),
            Some("refuted" | "entered-in-error")
        );
        clinically_active && verified
    }

    /// Confirmed: `verificationStatus` confirmed, or not sent (problem lists often omit it).
    /// A tentative diagnosis ([`is_tentative`](Self::is_tentative)) is active but not confirmed.
    pub fn is_confirmed(&self) -> bool {
        matches!(
            self.verification_status.as_deref(),
            None | Some("confirmed")
        )
    }

    /// Tentative: `verificationStatus` provisional, differential or unconfirmed. Such a condition
    /// may drive an information or work-up card, never a treatment suggestion.
    pub fn is_tentative(&self) -> bool {
        matches!(
            self.verification_status.as_deref(),
            Some("provisional" | "differential" | "unconfirmed")
        )
    }
}

/// Whether a medication entry is a statement or a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MedicationKind {
    /// MedicationStatement.
    Statement,
    /// MedicationRequest.
    Request,
}

/// A medication on record (not a draft order).
#[derive(Debug, Clone)]
pub struct MedicationEntry {
    /// `MedicationStatement/id` or `MedicationRequest/id`.
    pub reference: String,
    /// Statement or request.
    pub kind: MedicationKind,
    /// The medication, with a referenced Medication resolved.
    pub concept: Concept,
    /// Ingredient concepts of a resolved Medication.
    pub ingredients: Vec<Concept>,
    /// `status`.
    pub status: String,
    /// `intent` (requests only).
    pub intent: Option<String>,
    /// Whether its `medicationReference` is still unresolved (the concept is a placeholder).
    pub unresolved: bool,
}

impl MedicationEntry {
    /// Active: a statement active, intended or on-hold; a request active or on-hold with intent order, plan or original-order.
    pub fn is_active(&self) -> bool {
        match self.kind {
            MedicationKind::Statement => {
                matches!(self.status.as_str(), "active" | "intended" | "on-hold")
            }
            MedicationKind::Request => {
                matches!(self.status.as_str(), "active" | "on-hold") && self.is_order_intent()
            }
        }
    }

    /// Whether the patient has taken, or is taking, the drug: the basis of a "trial" of it.
    /// Every active entry counts. A statement also counts when completed or stopped, never
    /// when not-taken, entered-in-error, unknown or only intended. A request (with an order,
    /// plan or original-order intent) also counts when completed or stopped; a cancelled one
    /// does not, because FHIR defines `cancelled` as withdrawn before any administration, and
    /// neither do draft, unknown or entered-in-error requests.
    pub fn counts_as_trial(&self) -> bool {
        if self.is_active() {
            return true;
        }
        let taken_before = matches!(self.status.as_str(), "completed" | "stopped");
        match self.kind {
            MedicationKind::Statement => taken_before,
            MedicationKind::Request => taken_before && self.is_order_intent(),
        }
    }

    fn is_order_intent(&self) -> bool {
        matches!(
            self.intent.as_deref(),
            Some("order" | "plan" | "original-order")
        )
    }
}

/// A laboratory observation from the record.
#[derive(Debug, Clone)]
pub struct ObservationEntry {
    /// `Observation/id`.
    pub reference: String,
    /// `Observation.code`.
    pub code: Concept,
    /// `status`.
    pub status: String,
    /// `valueQuantity`, when it is one.
    pub value: Option<Measured>,
    /// The clinically relevant time: effectiveDateTime, effectiveInstant, effectivePeriod.end, else issued.
    pub time: Option<DateTime<Utc>>,
    /// `referenceRange[0].low`.
    pub range_low: Option<Measured>,
    /// `referenceRange[0].high`.
    pub range_high: Option<Measured>,
    /// `interpretation` codes (L, LL, H, HH, N, ...).
    pub interpretation: Vec<String>,
    /// Why the result cannot be used, when the JSON had a field the parser could not read.
    pub unreadable: Option<String>,
}

impl ObservationEntry {
    /// Status final, amended, corrected or preliminary.
    pub fn has_usable_status(&self) -> bool {
        matches!(
            self.status.as_str(),
            "final" | "amended" | "corrected" | "preliminary"
        )
    }

    /// Status preliminary: usable, but the evidence says so.
    pub fn is_preliminary(&self) -> bool {
        self.status == "preliminary"
    }
}

/// An unsigned order from `context.draftOrders`.
#[derive(Debug, Clone)]
pub struct DraftOrder {
    /// `MedicationRequest/id` (the form `selections` uses).
    pub reference: String,
    /// The resource type.
    pub resource_type: String,
    /// The medication (MedicationRequest) or the service (ServiceRequest).
    pub concept: Concept,
    /// Ingredient concepts of a referenced Medication (MedicationRequest).
    pub ingredients: Vec<Concept>,
    /// Whether its `medicationReference` is still unresolved (the concept is a placeholder).
    pub unresolved: bool,
    /// Whether the order is in scope: named in `selections` (order-select) or any draft (order-sign).
    pub in_scope: bool,
    /// The resource as sent, for update and delete suggestions.
    pub resource: serde_json::Value,
    /// The total daily dose (medication orders), or why it cannot be computed.
    pub daily_dose: Result<DailyDose, String>,
}

/// Something in the data the service could not use, reported rather than guessed.
#[derive(Debug, Clone, PartialEq)]
pub struct DataIssue {
    /// The kind of fact it bears on.
    pub topic: IssueTopic,
    /// Where it came from (a prefetch key, a resource reference, or `context.draftOrders`).
    pub location: String,
    /// What was wrong.
    pub problem: String,
}

/// The clinical facts about one patient that the rules read.
#[derive(Debug, Clone, Default)]
pub struct PatientRecord {
    /// `context.patientId`: only for attributing resources while the record is built (a
    /// resource about another patient is refused); the rules never read it.
    pub(super) patient_id: String,
    /// `Patient.birthDate`.
    pub birth_date: Option<NaiveDate>,
    /// Conditions.
    pub conditions: Vec<ConditionEntry>,
    /// Medications on record.
    pub medications: Vec<MedicationEntry>,
    /// Laboratory observations.
    pub observations: Vec<ObservationEntry>,
    /// Draft orders (order-select and order-sign).
    pub draft_orders: Vec<DraftOrder>,
    /// Data that could not be used.
    pub issues: Vec<DataIssue>,
    /// Medication resources from the data, by id and by Bundle `fullUrl`, to resolve references.
    medications_by_id: Vec<(MedicationKey, Medication)>,
    /// Statements, requests and draft orders whose Medication reference is resolved once all data is in.
    pending_references: Vec<(PendingTarget, String)>,
}

/// How a Medication resource in the data can be referred to.
#[derive(Debug, Clone, Default)]
struct MedicationKey {
    id: Option<String>,
    full_url: Option<String>,
}

impl MedicationKey {
    /// Whether `reference` (`Medication/id`, an absolute URL ending so, or a `fullUrl`) names this Medication.
    fn is_named_by(&self, reference: &str) -> bool {
        if self.full_url.as_deref() == Some(reference) {
            return true;
        }
        let Some(id) = self.id.as_deref() else {
            return false;
        };
        let mut segments = reference.rsplit('/');
        let last = segments.next();
        let resource_type = segments.next();
        last == Some(id) && resource_type.is_none_or(|t| t == "Medication")
    }
}

/// Where a resolved Medication goes.
#[derive(Debug, Clone, Copy)]
enum PendingTarget {
    /// Index into `medications`.
    Medication(usize),
    /// Index into `draft_orders`.
    DraftOrder(usize),
}

impl PatientRecord {
    /// An empty record for `patient_id`.
    pub fn new(patient_id: impl Into<String>) -> Self {
        PatientRecord {
            patient_id: patient_id.into(),
            ..Default::default()
        }
    }

    /// Adds a parsed resource from the patient's data. `raw` is its JSON, used to
    /// spot fields the typed parser dropped without an error.
    pub fn add(&mut self, parsed: ParsedResource, raw: &[u8], location: &str) {
        self.add_entry(parsed, raw, location, None);
    }

    /// Like [`add`](Self::add), for a Bundle entry whose `fullUrl` other resources may reference.
    pub fn add_entry(
        &mut self,
        parsed: ParsedResource,
        raw: &[u8],
        location: &str,
        full_url: Option<&str>,
    ) {
        if let Err(issue) = self.check_patient(&parsed, location) {
            self.issues.push(issue);
            return;
        }
        match parsed {
            ParsedResource::Patient(patient) => self.add_patient(&patient),
            ParsedResource::Condition(condition) => self.add_condition(&condition),
            ParsedResource::Observation(observation) => self.add_observation(&observation, raw),
            ParsedResource::MedicationStatement(statement) => self.add_statement(&statement),
            ParsedResource::MedicationRequest(request) => self.add_request(&request),
            ParsedResource::Medication(medication) => self.add_medication(medication, full_url),
            ParsedResource::OperationOutcome(outcome) => {
                let text = outcome
                    .issue
                    .iter()
                    .flatten()
                    .filter_map(|i| i.diagnostics.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                self.add_issue(
                    IssueTopic::Other,
                    location,
                    format!("the client sent an OperationOutcome: {text}"),
                );
            }
            ParsedResource::ServiceRequest(_) | ParsedResource::Other { .. } => {}
        }
    }

    /// Records data that could not be used, and the kind of fact it bears on.
    pub fn add_issue(
        &mut self,
        topic: IssueTopic,
        location: impl Into<String>,
        problem: impl Into<String>,
    ) {
        self.issues.push(DataIssue {
            topic,
            location: location.into(),
            problem: problem.into(),
        });
    }

    /// Refuses a resource about another patient: its `subject` (a Patient: its id) must be
    /// `Patient/<context.patientId>`. The issue names the resource and what it points to.
    fn check_patient(&self, parsed: &ParsedResource, location: &str) -> Result<(), DataIssue> {
        let (resource_type, id, subject) = match parsed {
            ParsedResource::Patient(patient) => {
                let id = patient.id.as_deref();
                if id.is_none_or(|id| id == self.patient_id) {
                    return Ok(());
                }
                return Err(self.other_patient_issue(
                    "Patient",
                    id,
                    &format!("Patient/{}", id.unwrap_or_default()),
                    location,
                ));
            }
            ParsedResource::Condition(c) => ("Condition", c.id.as_deref(), Some(&c.subject)),
            ParsedResource::Observation(o) => ("Observation", o.id.as_deref(), o.subject.as_ref()),
            ParsedResource::MedicationStatement(s) => {
                ("MedicationStatement", s.id.as_deref(), Some(&s.subject))
            }
            ParsedResource::MedicationRequest(r) => {
                ("MedicationRequest", r.id.as_deref(), Some(&r.subject))
            }
            ParsedResource::ServiceRequest(r) => {
                ("ServiceRequest", r.id.as_deref(), Some(&r.subject))
            }
            _ => return Ok(()),
        };
        match subject.and_then(|s| s.reference.as_deref()) {
            Some(target) if names_patient(target, &self.patient_id) => Ok(()),
            Some(target) => Err(self.other_patient_issue(resource_type, id, target, location)),
            None => Err(DataIssue {
                topic: IssueTopic::of_resource_type(resource_type),
                location: location.to_owned(),
                problem: format!(
                    "{} was not used: it has no subject reference, so it cannot be attributed to Patient/{}",
                    reference(resource_type, id),
                    self.patient_id
                ),
            }),
        }
    }

    fn other_patient_issue(
        &self,
        resource_type: &str,
        id: Option<&str>,
        target: &str,
        location: &str,
    ) -> DataIssue {
        DataIssue {
            topic: IssueTopic::of_resource_type(resource_type),
            location: location.to_owned(),
            problem: format!(
                "{} was not used: it is about '{target}', not this patient (Patient/{})",
                reference(resource_type, id),
                self.patient_id
            ),
        }
    }

    fn add_medication(&mut self, medication: Medication, full_url: Option<&str>) {
        let key = MedicationKey {
            id: medication.id.clone(),
            full_url: full_url.map(str::to_owned),
        };
        if key.id.is_some() || key.full_url.is_some() {
            self.medications_by_id.push((key, medication));
        }
    }

    /// Takes the Medication resources gathered in `other` (for references to resolve); the
    /// rest of `other`, its issues included, is dropped.
    pub fn take_medications_from(&mut self, other: PatientRecord) {
        self.medications_by_id.extend(other.medications_by_id);
    }

    /// Adds a Medication sent among `context.draftOrders`, for draft orders that reference it.
    pub fn add_draft_medication(&mut self, parsed: ParsedResource, full_url: Option<&str>) {
        if let ParsedResource::Medication(medication) = parsed {
            self.add_medication(medication, full_url);
        }
    }

    /// Resolves `medicationReference`s (of statements, requests and draft orders) against the
    /// Medication resources in the data, then reports every medication that cannot be
    /// recognised. Call once all data, draft orders included, is added.
    pub fn resolve_medication_references(&mut self) {
        for (target, reference) in std::mem::take(&mut self.pending_references) {
            let found = self
                .medications_by_id
                .iter()
                .find(|(key, _)| key.is_named_by(&reference))
                .map(|(_, m)| medication_concepts(m));
            let Some((concept, ingredients)) = found else {
                let location = match target {
                    PendingTarget::Medication(i) => self.medications[i].reference.clone(),
                    PendingTarget::DraftOrder(i) => self.draft_orders[i].reference.clone(),
                };
                self.add_issue(
                    IssueTopic::Medication,
                    location,
                    format!("medicationReference '{reference}' could not be resolved (not contained, not in the prefetch, not among the draft orders); the medication is unknown"),
                );
                continue;
            };
            match target {
                PendingTarget::Medication(i) => {
                    let entry = &mut self.medications[i];
                    entry.concept = concept;
                    entry.ingredients = ingredients;
                    entry.unresolved = false;
                }
                PendingTarget::DraftOrder(i) => {
                    let order = &mut self.draft_orders[i];
                    order.concept = concept;
                    order.ingredients = ingredients;
                    order.unresolved = false;
                }
            }
        }
        self.report_unrecognisable_medications();
    }

    /// Reports medications that nothing can match on: no RxNorm or ATC coding, no display and
    /// no text (an unresolved reference is reported where it is resolved).
    fn report_unrecognisable_medications(&mut self) {
        let on_record = self
            .medications
            .iter()
            .filter(|m| !m.unresolved && !is_recognisable(&m.concept, &m.ingredients))
            .map(|m| m.reference.clone());
        let drafts = self
            .draft_orders
            .iter()
            .filter(|d| d.resource_type == "MedicationRequest")
            .filter(|d| !d.unresolved && !is_recognisable(&d.concept, &d.ingredients))
            .map(|d| d.reference.clone());
        let unrecognisable: Vec<String> = on_record.chain(drafts).collect();
        for location in unrecognisable {
            self.add_issue(
                IssueTopic::Medication,
                location,
                "the medication cannot be recognised: it has no RxNorm or ATC code, no display and no text, so no rule can tell which drug it is",
            );
        }
    }

    fn add_patient(&mut self, patient: &Patient) {
        self.birth_date = patient.birth_date.as_ref().and_then(date_to_naive);
    }

    fn add_condition(&mut self, condition: &Condition) {
        let onset = match &condition.onset {
            Some(ConditionOnset::DateTime(dt)) => datetime_to_utc(dt),
            Some(ConditionOnset::Period(p)) => p.start.as_ref().and_then(datetime_to_utc),
            _ => None,
        };
        self.conditions.push(ConditionEntry {
            reference: reference("Condition", condition.id.as_deref()),
            concept: concept(condition.code.as_ref()),
            clinical_status: first_code(condition.clinical_status.as_ref()),
            verification_status: first_code(condition.verification_status.as_ref()),
            onset,
            recorded: condition.recorded_date.as_ref().and_then(datetime_to_utc),
            abated: condition.abatement.is_some(),
            body_sites: condition
                .body_site
                .iter()
                .flatten()
                .map(|site| concept(Some(site)))
                .filter(|site| !site.codings.is_empty())
                .collect(),
        });
    }

    fn add_observation(&mut self, observation: &Observation, raw: &[u8]) {
        let effective = match &observation.effective {
            Some(ObservationEffective::DateTime(dt)) => datetime_to_utc(dt),
            Some(ObservationEffective::Instant(i)) => Some(instant_to_utc(i)),
            Some(ObservationEffective::Period(p)) => p
                .end
                .as_ref()
                .or(p.start.as_ref())
                .and_then(datetime_to_utc),
            _ => None,
        };
        let time = effective.or_else(|| observation.issued.as_ref().map(instant_to_utc));
        let value = match &observation.value {
            Some(ObservationValue::Quantity(q)) => measured(q),
            _ => None,
        };
        let mut unreadable = None;
        if observation.effective.is_none() && contains_key_prefix(raw, b"\"effective") {
            unreadable = Some(
                "its effective[x] could not be read (for example a dateTime without a timezone)"
                    .to_owned(),
            );
        }
        if observation.value.is_none() && contains_value_key(raw) {
            unreadable = Some("its value[x] could not be read (for example a number sent as a string, or an unknown comparator)".to_owned());
        }
        let range = observation.reference_range.iter().flatten().next();
        self.observations.push(ObservationEntry {
            reference: reference("Observation", observation.id.as_deref()),
            code: concept(Some(&observation.code)),
            status: observation.status.to_string(),
            value,
            time,
            range_low: range.and_then(|r| r.low.as_ref()).and_then(measured),
            range_high: range.and_then(|r| r.high.as_ref()).and_then(measured),
            interpretation: observation
                .interpretation
                .iter()
                .flatten()
                .flat_map(|c| c.coding.iter().flatten())
                .filter_map(|c| c.code.clone())
                .collect(),
            unreadable,
        });
    }

    fn add_statement(&mut self, statement: &MedicationStatement) {
        let reference_text = reference("MedicationStatement", statement.id.as_deref());
        let (concept, ingredients, pending) = match &statement.medication {
            MedicationStatementMedication::CodeableConcept(c) => (concept(Some(c)), vec![], None),
            MedicationStatementMedication::Reference(r) => {
                resolve_reference(r, &statement.contained)
            }
        };
        self.push_medication(
            MedicationEntry {
                reference: reference_text,
                kind: MedicationKind::Statement,
                concept,
                ingredients,
                status: statement.status.clone(),
                intent: None,
                unresolved: pending.is_some(),
            },
            pending,
        );
    }

    fn add_request(&mut self, request: &MedicationRequest) {
        let reference_text = reference("MedicationRequest", request.id.as_deref());
        let (concept, ingredients, pending) = match &request.medication {
            MedicationRequestMedication::CodeableConcept(c) => (concept(Some(c)), vec![], None),
            MedicationRequestMedication::Reference(r) => resolve_reference(r, &request.contained),
        };
        self.push_medication(
            MedicationEntry {
                reference: reference_text,
                kind: MedicationKind::Request,
                concept,
                ingredients,
                status: request.status.clone(),
                intent: Some(request.intent.clone()),
                unresolved: pending.is_some(),
            },
            pending,
        );
    }

    fn push_medication(&mut self, entry: MedicationEntry, pending: Option<String>) {
        if let Some(reference) = pending {
            self.pending_references
                .push((PendingTarget::Medication(self.medications.len()), reference));
        }
        self.medications.push(entry);
    }

    /// Adds a draft order from `context.draftOrders`; `location` names it in a reported issue.
    /// An order about another patient is reported and not added.
    pub fn add_draft_order(
        &mut self,
        parsed: &ParsedResource,
        resource: serde_json::Value,
        selections: Option<&[String]>,
        location: &str,
    ) {
        if let Err(issue) = self.check_patient(parsed, location) {
            self.issues.push(issue);
            return;
        }
        let (resource_type, id, (concept, ingredients, pending)) = match parsed {
            ParsedResource::MedicationRequest(request) => {
                let medication = match &request.medication {
                    MedicationRequestMedication::CodeableConcept(c) => {
                        (self::concept(Some(c)), vec![], None)
                    }
                    MedicationRequestMedication::Reference(r) => {
                        resolve_reference(r, &request.contained)
                    }
                };
                ("MedicationRequest", request.id.clone(), medication)
            }
            ParsedResource::ServiceRequest(request) => (
                "ServiceRequest",
                request.id.clone(),
                (concept(request.code.as_ref()), vec![], None),
            ),
            _ => return,
        };
        if let Some(target) = pending.clone() {
            self.pending_references
                .push((PendingTarget::DraftOrder(self.draft_orders.len()), target));
        }
        let reference = reference(resource_type, id.as_deref());
        let in_scope = selections.is_none_or(|s| s.contains(&reference));
        let daily_dose = if resource_type == "MedicationRequest" {
            dose::daily_dose(&resource)
        } else {
            Err("not a medication order".to_owned())
        };
        self.draft_orders.push(DraftOrder {
            reference,
            resource_type: resource_type.to_owned(),
            concept,
            ingredients,
            unresolved: pending.is_some(),
            in_scope,
            resource,
            daily_dose,
        });
    }

    /// The patient's age in whole years on `on`.
    pub fn age_on(&self, on: NaiveDate) -> Option<u32> {
        on.years_since(self.birth_date?)
    }
}

fn resolve_reference(
    reference: &Reference,
    contained: &[Resource],
) -> (Concept, Vec<Concept>, Option<String>) {
    let Some(target) = reference.reference.as_deref() else {
        return (
            Concept {
                codings: vec![],
                text: reference.display.clone(),
            },
            vec![],
            None,
        );
    };
    if let Some(local) = target.strip_prefix('#') {
        let medication = contained.iter().find_map(|r| match r {
            Resource::Medication(m) if m.id.as_deref() == Some(local) => Some(m),
            _ => None,
        });
        if let Some(medication) = medication {
            let (concept, ingredients) = medication_concepts(medication);
            return (concept, ingredients, None);
        }
    }
    let placeholder = Concept {
        codings: vec![],
        text: reference.display.clone(),
    };
    (placeholder, vec![], Some(target.to_owned()))
}

fn medication_concepts(medication: &Medication) -> (Concept, Vec<Concept>) {
    let ingredients = medication
        .ingredient
        .iter()
        .flatten()
        .filter_map(|i| match &i.item {
            cramp_fhir_parse::resources::MedicationIngredientItem::CodeableConcept(c) => {
                Some(concept(Some(c)))
            }
            _ => None,
        })
        .collect();
    (concept(medication.code.as_ref()), ingredients)
}

/// Whether a subject reference names the patient: `Patient/<id>`, or an absolute URL ending so.
fn names_patient(target: &str, patient_id: &str) -> bool {
    let relative = format!("Patient/{patient_id}");
    target == relative || target.ends_with(&format!("/{relative}"))
}

/// Whether anything in a medication can be matched: an RxNorm or ATC coding, a display or a text.
fn is_recognisable(concept: &Concept, ingredients: &[Concept]) -> bool {
    let matchable = |c: &Concept| {
        c.text.as_deref().is_some_and(|t| !t.trim().is_empty())
            || c.codings.iter().any(|coding| {
                matches!(
                    coding.system.as_str(),
                    "http://www.nlm.nih.gov/research/umls/rxnorm" | "http://www.whocc.no/atc"
                ) || coding
                    .display
                    .as_deref()
                    .is_some_and(|d| !d.trim().is_empty())
            })
    };
    matchable(concept) || ingredients.iter().any(matchable)
}

fn reference(resource_type: &str, id: Option<&str>) -> String {
    format!("{resource_type}/{}", id.unwrap_or("(no id)"))
}

/// Converts a CodeableConcept into a [`Concept`].
pub fn concept(codeable: Option<&CodeableConcept>) -> Concept {
    let Some(codeable) = codeable else {
        return Concept::default();
    };
    Concept {
        codings: codeable
            .coding
            .iter()
            .flatten()
            .filter_map(|c| {
                Some(Code {
                    system: c.system.clone()?,
                    code: c.code.clone()?,
                    display: c.display.clone(),
                })
            })
            .collect(),
        text: codeable.text.clone(),
    }
}

fn first_code(codeable: Option<&CodeableConcept>) -> Option<String> {
    codeable?
        .coding
        .iter()
        .flatten()
        .find_map(|c| c.code.clone())
}

fn measured(quantity: &Quantity) -> Option<Measured> {
    let ucum = quantity.system.as_deref() == Some("http://unitsofmeasure.org");
    let unit = if ucum {
        quantity.code.clone().or_else(|| quantity.unit.clone())
    } else {
        quantity.unit.clone().or_else(|| quantity.code.clone())
    };
    Some(Measured {
        value: quantity.value?,
        unit,
        comparator: quantity.comparator.map(|c| c.to_string()),
    })
}

fn instant_to_utc(instant: &cramp_fhir_parse::Instant) -> DateTime<Utc> {
    DateTime::from_timestamp(instant.0.unix_timestamp(), instant.0.nanosecond()).unwrap_or_default()
}

fn datetime_to_utc(value: &FhirDateTime) -> Option<DateTime<Utc>> {
    match value {
        FhirDateTime::DateTime(instant) => Some(instant_to_utc(instant)),
        FhirDateTime::Date(date) => date_to_naive(date)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc()),
    }
}

/// Converts a FHIR date (year, year-month or full date) to its first day.
fn date_to_naive(date: &Date) -> Option<NaiveDate> {
    match date {
        Date::Year(year) => NaiveDate::from_ymd_opt(*year, 1, 1),
        Date::YearMonth(year, month) => NaiveDate::from_ymd_opt(*year, *month as u32, 1),
        Date::Date(d) => NaiveDate::from_ymd_opt(d.year(), d.month() as u32, u32::from(d.day())),
    }
}

/// Whether a top-level-looking JSON key starting with `prefix` (quote included) occurs in `raw`.
fn contains_key_prefix(raw: &[u8], prefix: &[u8]) -> bool {
    raw.windows(prefix.len()).any(|w| w == prefix)
}

/// Whether `raw` has a `value[x]` key (`"value` followed by an upper-case letter).
fn contains_value_key(raw: &[u8]) -> bool {
    raw.windows(7)
        .any(|w| &w[..6] == b"\"value" && w[6].is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FHIR resource from its JSON.
    fn resource(json: &[u8]) -> ParsedResource {
        cramp_fhir_parse::parse_resource(json).unwrap().resource
    }

    /// The record of patient `p` with `json` added from a source `test`.
    fn record_with(json: &str) -> PatientRecord {
        let mut record = PatientRecord::new("p");
        record.add(resource(json.as_bytes()), json.as_bytes(), "test");
        record.resolve_medication_references();
        record
    }

    /// Adds the draft order `json` (a MedicationRequest) at `location`.
    fn add_draft_order(record: &mut PatientRecord, json: &[u8], location: &str) {
        let value = serde_json::from_slice(json).unwrap();
        record.add_draft_order(&resource(json), value, None, location);
    }

    #[test]
    fn a_refuted_condition_is_not_active() {
        let record = record_with(
            r#"{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p"},
            "verificationStatus":{"coding":[{"code":"refuted"}]},"code":{"text":"cirrhosis"}}"#,
        );
        assert!(!record.conditions[0].is_active());
    }

    #[test]
    fn an_effective_date_time_without_timezone_marks_the_observation_unreadable() {
        let record = record_with(
            r#"{"resourceType":"Observation","id":"o","status":"final","code":{"text":"Mg"},
            "subject":{"reference":"Patient/p"},"effectiveDateTime":"2026-10-01T10:00:00","valueQuantity":{"value":0.5,"unit":"mmol/L"}}"#,
        );
        let observation = &record.observations[0];
        assert!(observation.time.is_none());
        assert!(
            observation
                .unreadable
                .as_deref()
                .unwrap()
                .contains("effective")
        );
    }

    #[test]
    fn an_unknown_comparator_or_a_string_value_marks_the_observation_unreadable() {
        for value in [
            r#"{"value":0.5,"comparator":"about","unit":"mmol/L"}"#,
            r#"{"value":"0.5","unit":"mmol/L"}"#,
        ] {
            let json = format!(
                r#"{{"resourceType":"Observation","id":"o","status":"final","code":{{"text":"Mg"}},
                "subject":{{"reference":"Patient/p"}},"effectiveDateTime":"2026-10-01T10:00:00Z","valueQuantity":{value}}}"#
            );
            let record = record_with(&json);
            let observation = &record.observations[0];
            assert!(observation.value.is_none(), "{value}");
            assert!(
                observation
                    .unreadable
                    .as_deref()
                    .unwrap()
                    .contains("value[x]"),
                "{value}"
            );
        }
    }

    #[test]
    fn a_contained_medication_is_resolved() {
        let record = record_with(
            r##"{"resourceType":"MedicationStatement","id":"s","status":"active","subject":{"reference":"Patient/p"},
            "contained":[{"resourceType":"Medication","id":"m","code":{"text":"Furosemide 40 MG Oral Tablet"}}],
            "medicationReference":{"reference":"#m"}}"##,
        );
        assert_eq!(
            record.medications[0].concept.name(),
            "Furosemide 40 MG Oral Tablet"
        );
    }

    #[test]
    fn a_resource_about_another_patient_is_reported_and_not_used() {
        let record = record_with(
            r#"{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/someone-else"},
            "code":{"text":"cirrhosis"}}"#,
        );
        assert!(record.conditions.is_empty());
        assert_eq!(record.issues.len(), 1);
        assert_eq!(record.issues[0].topic, IssueTopic::Condition);
        assert!(record.issues[0].problem.contains("Condition/c"));
        assert!(record.issues[0].problem.contains("'Patient/someone-else'"));
    }

    #[test]
    fn an_absolute_subject_reference_to_the_patient_is_accepted() {
        let record = record_with(
            r#"{"resourceType":"Condition","id":"c","subject":{"reference":"https://ehr.example/fhir/Patient/p"},
            "code":{"text":"cirrhosis"}}"#,
        );
        assert_eq!(record.conditions.len(), 1);
        assert!(record.issues.is_empty());
    }

    #[test]
    fn an_observation_without_a_subject_is_not_attributed_to_the_patient() {
        let record = record_with(
            r#"{"resourceType":"Observation","id":"o","status":"final","code":{"text":"Mg"},
            "effectiveDateTime":"2026-10-01T10:00:00Z","valueQuantity":{"value":0.5,"unit":"mmol/L"}}"#,
        );
        assert!(record.observations.is_empty());
        assert_eq!(record.issues[0].topic, IssueTopic::Observation);
        assert!(record.issues[0].problem.contains("no subject"));
    }

    #[test]
    fn another_patients_patient_resource_gives_no_birth_date() {
        let record = record_with(r#"{"resourceType":"Patient","id":"q","birthDate":"1940-01-01"}"#);
        assert!(record.birth_date.is_none());
        assert_eq!(record.issues[0].topic, IssueTopic::Patient);
    }

    #[test]
    fn an_abated_condition_without_clinical_status_is_not_active() {
        let record = record_with(
            r#"{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p"},
            "abatementDateTime":"2026-01-01","code":{"text":"cramp"}}"#,
        );
        assert!(!record.conditions[0].is_active());
    }

    #[test]
    fn a_provisional_condition_is_active_but_not_confirmed() {
        let record = record_with(
            r#"{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p"},
            "verificationStatus":{"coding":[{"code":"provisional"}]},"code":{"text":"cirrhosis"}}"#,
        );
        let condition = &record.conditions[0];
        assert!(condition.is_active());
        assert!(!condition.is_confirmed());
        assert!(condition.is_tentative());
    }

    #[test]
    fn coded_body_sites_are_read_and_text_only_sites_are_dropped() {
        let record = record_with(
            r#"{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p"},
            "bodySite":[{"coding":[{"system":"http://snomed.info/sct","code":"7769000"}]},{"text":"hand"}],
            "code":{"text":"numbness"}}"#,
        );
        let sites = &record.conditions[0].body_sites;
        assert_eq!(sites.len(), 1);
        let codes: Vec<(&str, &str)> = sites[0]
            .codings
            .iter()
            .map(|c| (c.system.as_str(), c.code.as_str()))
            .collect();
        assert_eq!(codes, [("http://snomed.info/sct", "7769000")]);
    }

    fn statement(status: &str) -> MedicationEntry {
        MedicationEntry {
            reference: "MedicationStatement/s".into(),
            kind: MedicationKind::Statement,
            concept: Concept::default(),
            ingredients: vec![],
            status: status.into(),
            intent: None,
            unresolved: false,
        }
    }

    #[test]
    fn not_taken_and_entered_in_error_statements_are_no_trial_of_a_drug() {
        for status in ["not-taken", "entered-in-error", "unknown"] {
            assert!(!statement(status).counts_as_trial(), "{status}");
        }
        for status in ["active", "completed", "stopped", "on-hold"] {
            assert!(statement(status).counts_as_trial(), "{status}");
        }
        assert!(!statement("stopped").is_active());
    }

    #[test]
    fn a_cancelled_request_is_no_trial_but_a_completed_order_is() {
        let request = |status: &str| MedicationEntry {
            kind: MedicationKind::Request,
            intent: Some("order".into()),
            ..statement(status)
        };
        assert!(!request("cancelled").counts_as_trial());
        assert!(!request("entered-in-error").counts_as_trial());
        assert!(request("completed").counts_as_trial());
        assert!(!request("completed").is_active());
    }

    #[test]
    fn a_medication_reference_resolves_from_a_bundle_full_url() {
        let mut record = PatientRecord::new("p");
        let medication =
            br#"{"resourceType":"Medication","code":{"text":"Lasix 40 MG Oral Tablet"}}"#;
        record.add_entry(
            resource(medication),
            medication,
            "prefetch.m",
            Some("urn:uuid:med-1"),
        );
        let statement = br#"{"resourceType":"MedicationStatement","id":"s","status":"active",
            "subject":{"reference":"Patient/p"},"medicationReference":{"reference":"urn:uuid:med-1"}}"#;
        record.add(resource(statement), statement, "prefetch.s");
        record.resolve_medication_references();
        assert_eq!(
            record.medications[0].concept.name(),
            "Lasix 40 MG Oral Tablet"
        );
        assert!(record.issues.is_empty(), "{:?}", record.issues);
    }

    #[test]
    fn a_reference_to_a_resource_of_another_type_is_not_resolved() {
        let key = MedicationKey {
            id: Some("m1".into()),
            full_url: None,
        };
        assert!(key.is_named_by("Medication/m1"));
        assert!(key.is_named_by("https://ehr.example/fhir/Medication/m1"));
        assert!(!key.is_named_by("Substance/m1"));
    }

    #[test]
    fn an_unresolvable_reference_and_an_uncoded_medication_are_reported() {
        let record = record_with(
            r#"{"resourceType":"MedicationStatement","id":"s","status":"active","subject":{"reference":"Patient/p"},
            "medicationReference":{"reference":"Medication/missing"}}"#,
        );
        assert_eq!(record.issues.len(), 1);
        assert_eq!(record.issues[0].topic, IssueTopic::Medication);
        assert!(record.issues[0].problem.contains("could not be resolved"));
        let record = record_with(
            r#"{"resourceType":"MedicationStatement","id":"s","status":"active","subject":{"reference":"Patient/p"},
            "medicationCodeableConcept":{"coding":[{"system":"urn:oid:1.2.3","code":"99"}]}}"#,
        );
        assert_eq!(record.issues.len(), 1);
        assert!(record.issues[0].problem.contains("cannot be recognised"));
    }

    #[test]
    fn a_draft_order_resolves_a_medication_sent_among_the_draft_orders() {
        let mut record = PatientRecord::new("p");
        let medication = br#"{"resourceType":"Medication","id":"m1","code":{"text":"Qualaquin 324 MG Oral Capsule"}}"#;
        record.add_draft_medication(resource(medication), None);
        let order = br#"{"resourceType":"MedicationRequest","id":"d","status":"draft","intent":"order",
            "subject":{"reference":"Patient/p"},"medicationReference":{"reference":"Medication/m1"}}"#;
        add_draft_order(&mut record, order, "context.draftOrders.entry[1]");
        record.resolve_medication_references();
        assert_eq!(
            record.draft_orders[0].concept.name(),
            "Qualaquin 324 MG Oral Capsule"
        );
        assert!(record.issues.is_empty(), "{:?}", record.issues);
    }

    #[test]
    fn a_draft_order_for_another_patient_is_reported_and_not_added() {
        let mut record = PatientRecord::new("p");
        let order =
            br#"{"resourceType":"MedicationRequest","id":"d","status":"draft","intent":"order",
            "subject":{"reference":"Patient/q"},"medicationCodeableConcept":{"text":"quinine"}}"#;
        add_draft_order(&mut record, order, "context.draftOrders.entry[0]");
        assert!(record.draft_orders.is_empty());
        assert_eq!(record.issues[0].location, "context.draftOrders.entry[0]");
    }
}
