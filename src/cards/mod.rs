//! Findings into CDS Hooks cards: the Markdown detail (evidence, advice,
//! citation), the source with the rule id as its topic, override reasons, and
//! suggestions whose actions carry FHIR R4 resources for this patient.

pub mod evidence;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::engine::Finding;
use crate::fhir::record::PatientRecord;
use crate::hooks::response::{Action, Card, Coding, Link, Source, Suggestion};
use crate::hooks::vocabulary::{ActionType, Indicator, SelectionBehavior};
use crate::knowledge::CardSettings;
use crate::knowledge::rule::DoseTemplate;

/// What the cards need to know about the request.
#[derive(Debug, Clone)]
pub struct CardContext<'a> {
    /// `context.patientId`.
    pub patient_id: &'a str,
    /// `context.encounterId`.
    pub encounter_id: Option<&'a str>,
    /// `context.userId`, the requester of suggested orders when it is a practitioner.
    pub user_id: &'a str,
    /// The evaluation time.
    pub now: DateTime<Utc>,
    /// The service's public base URL; each rule's explanation page is `{base}/rules/{id}`.
    pub public_base_url: &'a str,
}

/// Renders one card per finding.
pub fn render_cards(
    findings: &[Finding<'_>],
    record: &PatientRecord,
    context: &CardContext<'_>,
    settings: &CardSettings,
) -> Vec<Card> {
    findings
        .iter()
        .map(|finding| render_card(finding, record, context, settings))
        .collect()
}

fn render_card(
    finding: &Finding<'_>,
    record: &PatientRecord,
    context: &CardContext<'_>,
    settings: &CardSettings,
) -> Card {
    let rule = finding.rule;
    let suggestions: Vec<Suggestion> = finding
        .suggestions
        .iter()
        .map(|planned| {
            let template = &rule.suggestions[planned.index];
            Suggestion {
                label: template.label.clone(),
                uuid: Uuid::now_v7().to_string(),
                is_recommended: template.is_recommended,
                actions: planned
                    .actions
                    .iter()
                    .flat_map(|a| {
                        render_actions(&template.actions[a.index], &a.draft_orders, record, context)
                    })
                    .collect(),
            }
        })
        .filter(|s| !s.actions.is_empty())
        .collect();
    let selection_behavior = (!suggestions.is_empty())
        .then(|| rule.selection_behavior.unwrap_or(SelectionBehavior::Any));
    let override_reasons = if finding.indicator >= Indicator::Warning {
        settings
            .override_reasons
            .iter()
            .map(|r| Coding {
                system: r.system.clone(),
                code: r.code.clone(),
                display: Some(r.display.clone()),
            })
            .collect()
    } else {
        Vec::new()
    };
    let rule_page = format!(
        "{}/rules/{}",
        context.public_base_url.trim_end_matches('/'),
        rule.id
    );
    let mut links: Vec<Link> = rule
        .links
        .iter()
        .map(|l| Link {
            label: l.label.clone(),
            url: l.url.clone(),
            link_type: "absolute".to_owned(),
        })
        .collect();
    links.push(Link {
        label: "How this rule decides".to_owned(),
        url: rule_page.clone(),
        link_type: "absolute".to_owned(),
    });
    Card {
        // Time-ordered (v7): the history's primary key then grows at its end instead of
        // at random places, which keeps writing the history cheap.
        uuid: Uuid::now_v7().to_string(),
        summary: summary_of(finding),
        detail: Some(render_detail(finding, record, context, settings)),
        indicator: finding.indicator,
        source: Source {
            label: rule.source.label.clone(),
            url: Some(rule.source.url.clone().unwrap_or(rule_page)),
            topic: Some(Coding {
                system: settings.topic_system.clone(),
                code: rule.id.clone(),
                display: Some(rule.title.clone()),
            }),
        },
        suggestions,
        selection_behavior,
        override_reasons,
        links,
        extension: None,
    }
}

/// The summary with the decisive facts when the rule has a template, every placeholder has a
/// fact and the result fits CDS Hooks' limit; else the rule's plain summary.
fn summary_of(finding: &Finding<'_>) -> String {
    finding
        .summary_with_facts
        .and_then(|template| evidence::fill_summary(template, &finding.evidence))
        .filter(|filled| filled.chars().count() <= crate::knowledge::rule::MAX_SUMMARY_CHARS)
        .unwrap_or_else(|| finding.summary.to_owned())
}

/// The card's Markdown: why it fired, what to do, what data was not used, and the source.
pub fn render_detail(
    finding: &Finding<'_>,
    record: &PatientRecord,
    context: &CardContext<'_>,
    settings: &CardSettings,
) -> String {
    let rule = finding.rule;
    let mut detail = String::from("**Why this card**\n\n");
    for line in evidence::all_lines(&finding.evidence) {
        detail.push_str("- ");
        detail.push_str(&line);
        detail.push('\n');
    }
    detail.push_str("\n**What to do**\n\n");
    if let Some(caution) = adult_dose_caution(finding, record, context, settings) {
        detail.push_str(&caution);
    }
    if let Some(louder) = finding.possibly_more_urgent {
        detail.push_str(&format!(
            "**This may be {}.** A result was reported only as a bound that may lie beyond the \
             stricter limit (see the data that could not be used). Get an exact value now, and \
             until then treat the patient as possibly {}.\n\n",
            urgency(louder),
            urgency(louder)
        ));
    }
    // Conditional notes (renal, age and other cautions) come before the advice they qualify.
    for note in &finding.notes {
        detail.push_str(note.trim());
        detail.push_str("\n\n");
    }
    detail.push_str(&rule.advice);
    detail.push('\n');
    if !finding.withheld.is_empty() {
        detail.push_str("\n**Not offered**\n\n");
        for withheld in &finding.withheld {
            detail.push_str(&format!(
                "- {}: not offered because {}.\n",
                withheld.label, withheld.explanation
            ));
        }
    }
    let unusable: Vec<String> = evidence::all_unusable_lines(&finding.evidence)
        .into_iter()
        .chain(finding.data_issues.iter().map(evidence::data_issue))
        .collect();
    push_block(&mut detail, "Data that could not be used", &unusable);
    push_block(
        &mut detail,
        "Technical details",
        &evidence::all_technical_lines(&finding.evidence),
    );
    detail.push_str(&format!(
        "\n*Source: {}.* Rule `{}`.",
        rule.source.label, rule.id
    ));
    detail
}

/// For a patient under the adult age (or of unknown age) on a card whose advice names doses in
/// mg: a caution that they are adult doses. Suggestions are already withheld by the engine.
fn adult_dose_caution(
    finding: &Finding<'_>,
    record: &PatientRecord,
    context: &CardContext<'_>,
    settings: &CardSettings,
) -> Option<String> {
    let names_doses = std::iter::once(finding.rule.advice.as_str())
        .chain(finding.notes.iter().copied())
        .any(|text| text.contains(" mg"));
    if !names_doses {
        return None;
    }
    match record.age_on(context.now.date_naive()) {
        Some(age) if age < settings.adult_age => Some(format!(
            "**The patient is {age}: the doses below are adult doses.** Dose a child by age and \
             weight with paediatric guidance.\n\n"
        )),
        Some(_) => None,
        None => Some(
            "**No birth date is on record: the doses below are adult doses.** Check the \
             patient's age before using them.\n\n"
                .to_owned(),
        ),
    }
}

/// An indicator as a state of the patient, for the "may be" note.
fn urgency(indicator: Indicator) -> &'static str {
    match indicator {
        Indicator::Critical => "critical",
        Indicator::Warning => "more serious",
        Indicator::Info => "relevant",
    }
}

/// A titled list, when there is anything to list.
fn push_block(detail: &mut String, title: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    detail.push_str(&format!("\n**{title}**\n\n"));
    for line in lines {
        detail.push_str("- ");
        detail.push_str(line);
        detail.push('\n');
    }
}

fn render_actions(
    template: &crate::knowledge::rule::ActionTemplate,
    draft_orders: &[usize],
    record: &PatientRecord,
    context: &CardContext<'_>,
) -> Vec<Action> {
    match template.action_type {
        ActionType::Create => {
            let Some(resource) = &template.resource else {
                return Vec::new();
            };
            vec![Action {
                action_type: ActionType::Create,
                description: template.description.clone(),
                resource: Some(for_patient(resource, context)),
                resource_id: None,
            }]
        }
        ActionType::Delete => draft_orders
            .iter()
            .filter_map(|index| record.draft_orders.get(*index))
            .map(|order| Action {
                action_type: ActionType::Delete,
                description: format!("{} ({})", template.description, order.concept.name()),
                resource: None,
                resource_id: Some(order.reference.clone()),
            })
            .collect(),
        ActionType::Update => {
            let Some(dose) = &template.set_dose else {
                return Vec::new();
            };
            draft_orders
                .iter()
                .filter_map(|index| record.draft_orders.get(*index))
                .filter(|order| order.resource_type == "MedicationRequest")
                .map(|order| Action {
                    action_type: ActionType::Update,
                    description: format!("{} ({})", template.description, order.concept.name()),
                    resource: Some(with_dose(&order.resource, dose, &order.concept.name())),
                    resource_id: Some(order.reference.clone()),
                })
                .collect()
        }
    }
}

/// The draft order with its dosage replaced by `dose`; everything else (id, medication, route) kept.
/// Known deviations from R4 (no intent, category as an object) are repaired so the result is valid R4.
/// For a liquid with its concentration in the name (`product`, e.g. "gabapentin 50 MG/ML Oral
/// Solution") a dose in mg is written in mL, with the mg in the text, so the order is measured
/// as it is given and mg and mL cannot be mixed up.
fn with_dose(order: &serde_json::Value, dose: &DoseTemplate, product: &str) -> serde_json::Value {
    let mut updated = order.clone();
    let route = order["dosageInstruction"][0]["route"].clone();
    let Some(object) = updated.as_object_mut() else {
        return updated;
    };
    let lower = product.to_lowercase();
    let liquid = !["tablet", "capsule"].iter().any(|w| lower.contains(w));
    let (value, unit, text) = match crate::fhir::dose::concentration_mg_per_ml(product) {
        Some(per_ml) if liquid && dose.unit.eq_ignore_ascii_case("mg") => {
            let ml = (dose.value / per_ml * 100.0).round() / 100.0;
            let trim = crate::knowledge::describe::trim_number;
            let text = format!(
                "{} mL ({} mg at {} mg/mL) a dose; {}",
                trim(ml),
                trim(dose.value),
                trim(per_ml),
                dose.text
            );
            (ml, "mL".to_owned(), text)
        }
        _ => (dose.value, dose.unit.clone(), dose.text.clone()),
    };
    let mut instruction = serde_json::json!({
        "text": text,
        "timing": { "repeat": {
            "frequency": dose.frequency,
            "period": dose.period,
            "periodUnit": dose.period_unit,
        }},
        "doseAndRate": [{ "doseQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        }}],
    });
    if !route.is_null() {
        instruction["route"] = route;
    }
    object.insert("dosageInstruction".into(), serde_json::json!([instruction]));
    object
        .entry("intent")
        .or_insert_with(|| serde_json::Value::String("proposal".to_owned()));
    if let Some(category) = object.get_mut("category")
        && category.is_object()
    {
        *category = serde_json::Value::Array(vec![category.take()]);
    }
    updated
}

/// Fills a suggested resource in for this patient: subject, encounter, requester and authoring date.
fn for_patient(template: &serde_json::Value, context: &CardContext<'_>) -> serde_json::Value {
    let mut resource = template.clone();
    if let Some(object) = resource.as_object_mut() {
        object.insert(
            "subject".into(),
            serde_json::json!({ "reference": format!("Patient/{}", context.patient_id) }),
        );
        if let Some(encounter) = context.encounter_id {
            object.insert(
                "encounter".into(),
                serde_json::json!({ "reference": format!("Encounter/{encounter}") }),
            );
        }
        if context.user_id.starts_with("Practitioner") {
            object.insert(
                "requester".into(),
                serde_json::json!({ "reference": context.user_id }),
            );
        }
        object.insert(
            "authoredOn".into(),
            serde_json::Value::String(context.now.format("%Y-%m-%d").to_string()),
        );
    }
    resource
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dose(value: f64) -> DoseTemplate {
        DoseTemplate {
            value,
            unit: "mg".into(),
            frequency: 2,
            period: 1.0,
            period_unit: "d".into(),
            text: "200 mg by mouth twice a day".into(),
        }
    }

    #[test]
    fn a_dose_update_of_an_oral_solution_is_written_in_millilitres() {
        let order = serde_json::json!({"resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order"});
        let updated = with_dose(&order, &dose(200.0), "gabapentin 50 MG/ML Oral Solution");
        let quantity = &updated["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"];
        assert_eq!(quantity["value"], 4.0);
        assert_eq!(quantity["code"], "mL");
        let text = updated["dosageInstruction"][0]["text"].as_str().unwrap();
        assert!(
            text.starts_with("4 mL (200 mg at 50 mg/mL) a dose;"),
            "{text}"
        );
    }

    #[test]
    fn a_dose_update_of_a_tablet_stays_in_milligrams() {
        let order = serde_json::json!({"resourceType": "MedicationRequest", "id": "d1"});
        let updated = with_dose(&order, &dose(600.0), "gabapentin 600 MG Oral Tablet");
        let quantity = &updated["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"];
        assert_eq!(quantity["value"], 600.0);
        assert_eq!(quantity["code"], "mg");
        assert_eq!(updated["intent"], "proposal");
    }
}
