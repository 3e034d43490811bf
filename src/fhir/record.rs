//! The [`PatientRecord`]: the clinical facts the engine reads, in plain domain
//! types. This module turns fhir-sdk resources into those facts (statuses kept
//! as codes, dates as chrono values, medications with their referenced
//! Medication resolved) and records every resource it could not use as a
//! [`DataIssue`]. It decides nothing clinical.

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

    /// Whether any coding has this system and code.
    pub fn has_code(&self, system: &str, code: &str) -> bool {
        self.codings
            .iter()
            .any(|c| c.system == system && c.code == code)
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
}

impl ConditionEntry {
    /// Active: clinical status active, recurrence or relapse (or absent), and not refuted or entered in error.
    pub fn is_active(&self) -> bool {
        let clinically_active = self
            .clinical_status
            .as_deref()
            .is_none_or(|s| matches!(s, "active" | "recurrence" | "relapse"));
        let verified = !matches!(
            self.verification_status.as_deref(),
            Some("refuted" | "entered-in-error")
        );
        clinically_active && verified
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
}

impl MedicationEntry {
    /// Active: a statement active, intended or on-hold; a request active or on-hold with intent order, plan or original-order.
    pub fn is_active(&self) -> bool {
        match self.kind {
            MedicationKind::Statement => {
                matches!(self.status.as_str(), "active" | "intended" | "on-hold")
            }
            MedicationKind::Request => {
                matches!(self.status.as_str(), "active" | "on-hold")
                    && matches!(
                        self.intent.as_deref(),
                        Some("order" | "plan" | "original-order")
                    )
            }
        }
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
    /// Whether the order is in scope: named in `selections` (order-select) or any draft (order-sign).
    pub in_scope: bool,
    /// The resource as sent, for update and delete suggestions.
    pub resource: serde_json::Value,
    /// The total daily dose (medication orders), or why it cannot be computed.
    pub daily_dose: Result<DailyDose, String>,
    /// Whether it is taken by mouth, when the order or product name says.
    pub oral: Option<bool>,
}

/// Something in the data the service could not use, reported rather than guessed.
#[derive(Debug, Clone, PartialEq)]
pub struct DataIssue {
    /// Where it came from (a prefetch key, a resource reference, or `context.draftOrders`).
    pub location: String,
    /// What was wrong.
    pub problem: String,
}

/// The clinical facts about one patient that the rules read.
#[derive(Debug, Clone, Default)]
pub struct PatientRecord {
    /// `context.patientId`.
    pub patient_id: String,
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
    /// Medication resources from the data, by id, to resolve references.
    medications_by_id: Vec<(String, Medication)>,
    /// Statements and requests whose Medication reference is resolved once all data is in.
    pending_references: Vec<(usize, String)>,
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
        match parsed {
            ParsedResource::Patient(patient) => self.add_patient(&patient),
            ParsedResource::Condition(condition) => self.add_condition(&condition),
            ParsedResource::Observation(observation) => self.add_observation(&observation, raw),
            ParsedResource::MedicationStatement(statement) => self.add_statement(&statement),
            ParsedResource::MedicationRequest(request) => self.add_request(&request),
            ParsedResource::Medication(medication) => {
                if let Some(id) = medication.id.clone() {
                    self.medications_by_id.push((id, medication));
                }
            }
            ParsedResource::OperationOutcome(outcome) => {
                let text = outcome
                    .issue
                    .iter()
                    .flatten()
                    .filter_map(|i| i.diagnostics.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                self.issues.push(DataIssue {
                    location: location.to_owned(),
                    problem: format!("the client sent an OperationOutcome: {text}"),
                });
            }
            ParsedResource::ServiceRequest(_) | ParsedResource::Other { .. } => {}
        }
    }

    /// Records a resource that could not be read.
    pub fn add_issue(&mut self, location: impl Into<String>, problem: impl Into<String>) {
        self.issues.push(DataIssue {
            location: location.into(),
            problem: problem.into(),
        });
    }

    /// Resolves `medicationReference`s against Medication resources in the data. Call once all data is added.
    pub fn resolve_medication_references(&mut self) {
        for (index, reference) in std::mem::take(&mut self.pending_references) {
            let id = reference.rsplit('/').next().unwrap_or_default();
            let found = self
                .medications_by_id
                .iter()
                .find(|(mid, _)| mid == id)
                .map(|(_, m)| m.clone());
            match found {
                Some(medication) => {
                    let (concept, ingredients) = medication_concepts(&medication);
                    let entry = &mut self.medications[index];
                    entry.concept = concept;
                    entry.ingredients = ingredients;
                }
                None => {
                    let location = self.medications[index].reference.clone();
                    self.add_issue(
                        location,
                        format!("medicationReference '{reference}' could not be resolved; the medication is unknown"),
                    );
                }
            }
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
            },
            pending,
        );
    }

    fn push_medication(&mut self, entry: MedicationEntry, pending: Option<String>) {
        if let Some(reference) = pending {
            self.pending_references
                .push((self.medications.len(), reference));
        }
        self.medications.push(entry);
    }

    /// Adds a draft order from `context.draftOrders`.
    pub fn add_draft_order(
        &mut self,
        parsed: &ParsedResource,
        resource: serde_json::Value,
        selections: Option<&[String]>,
    ) {
        let (resource_type, id, concept) = match parsed {
            ParsedResource::MedicationRequest(request) => {
                let concept = match &request.medication {
                    MedicationRequestMedication::CodeableConcept(c) => self::concept(Some(c)),
                    MedicationRequestMedication::Reference(r) => {
                        resolve_reference(r, &request.contained).0
                    }
                };
                ("MedicationRequest", request.id.clone(), concept)
            }
            ParsedResource::ServiceRequest(request) => (
                "ServiceRequest",
                request.id.clone(),
                concept(request.code.as_ref()),
            ),
            _ => return,
        };
        let reference = reference(resource_type, id.as_deref());
        let in_scope = selections.is_none_or(|s| s.contains(&reference));
        let (daily_dose, oral) = if resource_type == "MedicationRequest" {
            (dose::daily_dose(&resource), dose::is_oral(&resource))
        } else {
            (Err("not a medication order".to_owned()), None)
        };
        self.draft_orders.push(DraftOrder {
            reference,
            resource_type: resource_type.to_owned(),
            concept,
            in_scope,
            resource,
            daily_dose,
            oral,
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

    fn record_with(json: &str) -> PatientRecord {
        let mut record = PatientRecord::new("p");
        let parsed = cramp_fhir_parse::parse_resource(json.as_bytes()).unwrap();
        record.add(parsed.resource, json.as_bytes(), "test");
        record.resolve_medication_references();
        record
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
            "effectiveDateTime":"2026-10-01T10:00:00","valueQuantity":{"value":0.5,"unit":"mmol/L"}}"#,
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
                "effectiveDateTime":"2026-10-01T10:00:00Z","valueQuantity":{value}}}"#
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
}
