//! Guards every suggestion passes before it reaches a card, whatever rule made it: no
//! treatment from an unconfirmed diagnosis, no fixed adult dose for a child (or for a patient
//! whose age is unknown), no second order for a drug class the patient already takes, and the
//! same order offered once per response. A rule file needs nothing to get them. What a guard
//! holds back is kept, with its reason, for the card ("Not offered") and for
//! `cramp-cds evaluate --explain`.

use std::collections::HashMap;

use serde_json::Value;

use super::evidence::Evidence;
use super::order::concept_of;
use super::{Finding, PlannedSuggestion, Scope, matching};
use crate::fhir::record::{ConditionEntry, PatientRecord};
use crate::hooks::vocabulary::ActionType;
use crate::knowledge::products::ProductVocabulary;
use crate::knowledge::rule::{Rule, SafetyReason};

/// A suggestion that was not offered, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Withheld {
    /// The suggestion's label.
    pub label: String,
    /// The kind of reason.
    pub reason: SafetyReason,
    /// Why, for people.
    pub explanation: String,
}

/// A rule whose trigger was there but that stayed quiet for a safety reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Quieted {
    /// The rule id.
    pub rule_id: String,
    /// The kind of reason.
    pub reason: SafetyReason,
    /// Why, for people.
    pub explanation: String,
    /// What the exclusion found (for a `[[stay_quiet]]` exclusion).
    pub evidence: Vec<Evidence>,
}

/// Whether a condition's verification status says it is not confirmed.
pub fn is_unconfirmed(condition: &ConditionEntry) -> bool {
    matches!(
        condition.verification_status.as_deref(),
        Some("provisional" | "differential" | "unconfirmed")
    )
}

/// What a planned suggestion would do to medications.
struct Effect<'a> {
    /// It creates, changes or removes a medication order.
    treats: bool,
    /// It writes a dose (a new medication order or a dose update).
    sets_dose: bool,
    /// The medication orders it creates.
    creates: Vec<&'a Value>,
}

fn effect<'a>(rule: &'a Rule, planned: &PlannedSuggestion, record: &PatientRecord) -> Effect<'a> {
    let template = &rule.suggestions[planned.index];
    let mut effect = Effect {
        treats: false,
        sets_dose: false,
        creates: Vec::new(),
    };
    for action in &planned.actions {
        let action_template = &template.actions[action.index];
        match action_template.action_type {
            ActionType::Create => {
                if let Some(resource) = &action_template.resource
                    && resource["resourceType"] == "MedicationRequest"
                {
                    effect.treats = true;
                    effect.sets_dose = true;
                    effect.creates.push(resource);
                }
            }
            ActionType::Update => {
                effect.treats = true;
                effect.sets_dose = true;
            }
            ActionType::Delete => {
                effect.treats |= action.draft_orders.iter().any(|i| {
                    record
                        .draft_orders
                        .get(*i)
                        .is_some_and(|o| o.resource_type == "MedicationRequest")
                });
            }
        }
    }
    effect
}

/// Whether a planned suggestion creates, changes or removes a medication order.
pub(super) fn treats(rule: &Rule, planned: &PlannedSuggestion, record: &PatientRecord) -> bool {
    effect(rule, planned, record).treats
}

/// The first reason a planned suggestion must not be offered, if any. `unconfirmed` says
/// whether the conditions that made the rule (or the suggestion) match are all unconfirmed.
pub(super) fn check_suggestion(
    rule: &Rule,
    planned: &PlannedSuggestion,
    unconfirmed: bool,
    scope: &Scope<'_>,
) -> Option<Withheld> {
    let effect = effect(rule, planned, scope.record);
    let label = &rule.suggestions[planned.index].label;
    let withheld = |reason, explanation: String| {
        Some(Withheld {
            label: label.clone(),
            reason,
            explanation,
        })
    };
    if effect.treats && unconfirmed {
        return withheld(
            SafetyReason::UnconfirmedDiagnosis,
            "the diagnosis it rests on is not confirmed (verification status provisional, \
             differential or unconfirmed); confirm it before treating"
                .to_owned(),
        );
    }
    if effect.sets_dose {
        match scope.record.age_on(scope.now.date_naive()) {
            Some(age) if age < scope.knowledge.cards.adult_age => {
                return withheld(
                    SafetyReason::Age,
                    format!(
                        "the patient is {age}; no fixed adult dose is suggested under {}, \
                         dose by age and weight with paediatric guidance",
                        scope.knowledge.cards.adult_age
                    ),
                );
            }
            None => {
                return withheld(
                    SafetyReason::Age,
                    "the patient's birth date is not in the record, so an adult dose cannot be \
                     checked for age"
                        .to_owned(),
                );
            }
            Some(_) => {}
        }
    }
    if let Some(explanation) =
        dose_not_givable(rule, planned, scope.record, &scope.knowledge.products)
    {
        return withheld(SafetyReason::Product, explanation);
    }
    effect
        .creates
        .iter()
        .find_map(|resource| already_taken(resource, scope))
        .and_then(|explanation| withheld(SafetyReason::AlreadyOnIt, explanation))
}

/// When a dose update cannot be given with the product its draft order names: a dose that is
/// not a whole number of the product's tablets or capsules (100 mg from a 300 mg capsule), or an
/// extended-release product moved to a schedule of several doses a day. The update would then
/// be an order a pharmacy cannot fill as written; the card says to choose the product.
fn dose_not_givable(
    rule: &Rule,
    planned: &PlannedSuggestion,
    record: &PatientRecord,
    products: &ProductVocabulary,
) -> Option<String> {
    let template = &rule.suggestions[planned.index];
    for action in &planned.actions {
        let Some(dose) = &template.actions[action.index].set_dose else {
            continue;
        };
        for order in action
            .draft_orders
            .iter()
            .filter_map(|i| record.draft_orders.get(*i))
        {
            let name = order.concept.name();
            let lower = name.to_lowercase();
            let extended = products.is_extended_release(&name);
            if extended && dose.frequency > 1 {
                return Some(format!(
                    "{name} is an extended-release product, which is not taken {} times a day; \
                     choose an immediate-release product for the new dose",
                    dose.frequency
                ));
            }
            let solid = ["tablet", "capsule"].iter().any(|w| lower.contains(w));
            if let Some(strength) = crate::fhir::dose::strength_mg(&name)
                && solid
                && dose.unit.eq_ignore_ascii_case("mg")
            {
                let units = dose.value / strength;
                if (units - units.round()).abs() > 1e-6 || units.round() < 1.0 {
                    return Some(format!(
                        "{} mg a dose cannot be given with {name}; change the order to a \
                         product of a strength that gives it",
                        crate::knowledge::describe::trim_number(dose.value)
                    ));
                }
            }
        }
    }
    None
}

/// When the patient already takes an active medication in a value set that also holds the
/// medication `resource` would order: says which, and in which set.
fn already_taken(resource: &Value, scope: &Scope<'_>) -> Option<String> {
    let ordered = concept_of(&resource["medicationCodeableConcept"]);
    for set in &scope.knowledge.valuesets {
        if matching::match_medication(set, &ordered, &[]).is_none() {
            continue;
        }
        let drafted = scope.record.draft_orders.iter().find(|o| {
            o.resource_type == "MedicationRequest"
                && matching::match_medication(set, &o.concept, &o.ingredients).is_some()
        });
        if let Some(drafted) = drafted {
            return Some(format!(
                "an order for {} ({}) is being placed in this session (\"{}\"), so a second \
                 order is not offered",
                drafted.concept.name(),
                drafted.reference,
                set.title
            ));
        }
        let taken = scope.record.medications.iter().find(|m| {
            m.is_active() && matching::match_medication(set, &m.concept, &m.ingredients).is_some()
        });
        if let Some(taken) = taken {
            return Some(format!(
                "the patient already takes {} ({}, status {}; \"{}\"), so a second order is not offered",
                taken.concept.name(),
                taken.reference,
                taken.status,
                set.title
            ));
        }
    }
    None
}

/// A created order's identity: its type, its codes (system|code, in order), and for a
/// referral its performer type, since referrals share one generic code.
fn created_order_key(resource: &Value) -> String {
    let concept = if resource["resourceType"] == "MedicationRequest" {
        &resource["medicationCodeableConcept"]
    } else {
        &resource["code"]
    };
    let mut codes: Vec<String> = concept["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}|{}",
                c["system"].as_str().unwrap_or_default(),
                c["code"].as_str().unwrap_or_default()
            )
        })
        .collect();
    codes.sort();
    format!(
        "create {} {} {}",
        resource["resourceType"].as_str().unwrap_or_default(),
        codes.join(","),
        resource["performerType"]
    )
}

/// What makes two suggested actions the same order: a created resource's identity, or the
/// draft order an update or delete acts on.
fn order_keys(
    finding: &Finding<'_>,
    planned: &PlannedSuggestion,
    action: usize,
    record: &PatientRecord,
) -> Vec<String> {
    let template = &finding.rule.suggestions[planned.index].actions[planned.actions[action].index];
    match template.action_type {
        ActionType::Create => {
            let Some(resource) = &template.resource else {
                return Vec::new();
            };
            vec![created_order_key(resource)]
        }
        kind => planned.actions[action]
            .draft_orders
            .iter()
            .filter_map(|i| record.draft_orders.get(*i))
            .map(|o| format!("{kind:?} {}", o.reference))
            .collect(),
    }
}

/// Offers each order once across the response: `findings` are most urgent first, so an order
/// stays on the first card that suggests it; later cards lose that action (and a suggestion
/// left without actions), and say on which card the order is.
pub(super) fn withhold_repeated_orders(findings: &mut [Finding<'_>], record: &PatientRecord) {
    let mut offered: HashMap<String, String> = HashMap::new();
    for finding in findings.iter_mut() {
        let mut kept = Vec::new();
        let mut offered_here = Vec::new();
        for mut planned in std::mem::take(&mut finding.suggestions) {
            let mut elsewhere = None;
            let mut actions = Vec::new();
            for (i, action) in planned.actions.iter().enumerate() {
                let keys = order_keys(finding, &planned, i, record);
                match keys.iter().find_map(|k| offered.get(k)) {
                    Some(card) => elsewhere = Some(card.clone()),
                    None => actions.push(action.clone()),
                }
            }
            let label = finding.rule.suggestions[planned.index].label.clone();
            if let Some(card) = elsewhere {
                let explanation = if actions.is_empty() {
                    format!("the same order is offered on the card \"{card}\"")
                } else {
                    format!(
                        "one of its orders is already offered on the card \"{card}\" (the rest of it is offered here)"
                    )
                };
                finding.withheld.push(Withheld {
                    label,
                    reason: SafetyReason::Duplicate,
                    explanation,
                });
            }
            planned.actions = actions;
            if planned.actions.is_empty() {
                continue;
            }
            for i in 0..planned.actions.len() {
                offered_here.extend(order_keys(finding, &planned, i, record));
            }
            kept.push(planned);
        }
        finding.suggestions = kept;
        // Alternatives on one card may share an order (labs with either treatment): only
        // later cards count as repeats.
        for key in offered_here {
            offered
                .entry(key)
                .or_insert_with(|| finding.summary.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use crate::engine::Evaluation;
    use crate::engine::test_support::{draft, evaluate, knowledge};
    use crate::fhir::record::PatientRecord;
    use crate::knowledge::rule::SafetyReason;

    fn gabapentin_900_for(birth_date: Option<NaiveDate>) -> PatientRecord {
        let mut record = PatientRecord::new("p");
        record.birth_date = birth_date;
        record.draft_orders.push(draft(
            "gabapentin 300 MG Oral Capsule",
            900.0,
            serde_json::json!({"text": "oral"}),
        ));
        record
    }

    fn withheld_reasons(evaluation: &Evaluation<'_>, rule: &str) -> Vec<SafetyReason> {
        evaluation
            .findings
            .iter()
            .filter(|f| f.rule.id == rule)
            .flat_map(|f| f.withheld.iter().map(|w| w.reason))
            .collect()
    }

    #[test]
    fn a_dose_update_is_withheld_under_18_and_without_a_birth_date_but_offered_at_18() {
        let knowledge = knowledge();
        let child = gabapentin_900_for(NaiveDate::from_ymd_opt(2011, 3, 2));
        let unknown = gabapentin_900_for(None);
        let adult = gabapentin_900_for(NaiveDate::from_ymd_opt(2008, 11, 1));
        for record in [&child, &unknown] {
            let evaluation = evaluate(&knowledge, record);
            assert_eq!(
                withheld_reasons(&evaluation, "gabapentinoid-dose"),
                vec![SafetyReason::Age]
            );
            assert!(evaluation.findings[0].suggestions.is_empty());
        }
        let evaluation = evaluate(&knowledge, &adult);
        assert!(withheld_reasons(&evaluation, "gabapentinoid-dose").is_empty());
        assert_eq!(evaluation.findings[0].suggestions.len(), 1);
    }

    #[test]
    fn an_intravenous_magnesium_order_keeps_the_supplement_rule_quiet_for_its_route() {
        let knowledge = knowledge();
        let mut record = PatientRecord::new("p");
        record.birth_date = NaiveDate::from_ymd_opt(1960, 1, 1);
        record.draft_orders.push(draft(
            "magnesium sulfate 500 MG/ML Injectable Solution",
            2000.0,
            serde_json::json!({"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]}),
        ));
        let evaluation = evaluate(&knowledge, &record);
        assert!(evaluation.findings.is_empty());
        let quiet: Vec<_> = evaluation
            .quieted
            .iter()
            .map(|q| (q.rule_id.as_str(), q.reason))
            .collect();
        assert_eq!(
            quiet,
            vec![("magnesium-without-deficiency", SafetyReason::Route)]
        );
    }

    #[test]
    fn an_oral_magnesium_order_without_a_level_fires_and_asks_for_one() {
        let knowledge = knowledge();
        let mut record = PatientRecord::new("p");
        record.birth_date = NaiveDate::from_ymd_opt(1960, 1, 1);
        record.draft_orders.push(draft(
            "magnesium oxide 400 MG Oral Tablet",
            400.0,
            serde_json::json!({"text": "by mouth"}),
        ));
        let evaluation = evaluate(&knowledge, &record);
        assert!(evaluation.quieted.is_empty());
        let finding = &evaluation.findings[0];
        assert_eq!(finding.rule.id, "magnesium-without-deficiency");
        let labels: Vec<&str> = finding
            .suggestions
            .iter()
            .map(|s| finding.rule.suggestions[s.index].label.as_str())
            .collect();
        assert_eq!(
            labels,
            vec!["Order serum magnesium (none in the last 180 days)"]
        );
    }
}
