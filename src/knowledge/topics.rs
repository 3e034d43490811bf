//! The kinds of facts ([`IssueTopic`]) the rule language reads, and which of them a rule
//! reads, worked out once when the rule loads: a data issue (an unrecognised medication, an
//! unusable result) is then shown only with the findings of rules that read its kind.

use super::criteria::Criterion;
use super::rule::Rule;

/// What kind of fact a [`DataIssue`] bears on, so an issue can be shown with the findings it
/// could change (an unrecognised medication with the medication rules, and so on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueTopic {
    /// A medication on record or a draft order: unresolved reference, unrecognisable drug.
    Medication,
    /// A laboratory result.
    Observation,
    /// A condition.
    Condition,
    /// The Patient resource (birth date, identity).
    Patient,
    /// A whole document, a Bundle entry of unknown type, or the request itself.
    Other,
}

impl IssueTopic {
    /// The topic of a resource type (`Observation` is [`IssueTopic::Observation`]).
    pub fn of_resource_type(resource_type: &str) -> IssueTopic {
        match resource_type {
            "Observation" => IssueTopic::Observation,
            "Condition" => IssueTopic::Condition,
            "Patient" => IssueTopic::Patient,
            "Medication" | "MedicationStatement" | "MedicationRequest" => IssueTopic::Medication,
            _ => IssueTopic::Other,
        }
    }
}

/// The topics of facts any criterion of `rule` reads (its `when`, escalations, notes,
/// suggestions and exclusions).
pub(super) fn read_by(rule: &Rule) -> Vec<IssueTopic> {
    let mut topics = Vec::new();
    collect(&rule.when, &mut topics);
    for escalation in &rule.escalations {
        collect(&escalation.when, &mut topics);
    }
    for note in &rule.notes {
        collect(&note.when, &mut topics);
    }
    for exclusion in &rule.stay_quiet {
        collect(&exclusion.when, &mut topics);
    }
    for suggestion in &rule.suggestions {
        for criterion in suggestion.when.iter().chain(&suggestion.unless) {
            collect(criterion, &mut topics);
        }
        for action in &suggestion.actions {
            if let Some(when) = &action.when {
                collect(when, &mut topics);
            }
        }
    }
    topics
}

fn collect(criterion: &Criterion, topics: &mut Vec<IssueTopic>) {
    let topic = match criterion {
        Criterion::All(children) | Criterion::Any(children) => {
            children.iter().for_each(|c| collect(c, topics));
            return;
        }
        Criterion::Not(child) => return collect(child, topics),
        Criterion::Named(named) => return collect(&named.criterion, topics),
        Criterion::Hook(_) => return,
        Criterion::Condition(_) => IssueTopic::Condition,
        Criterion::Medication(_) | Criterion::DraftOrder(_) => IssueTopic::Medication,
        Criterion::Lab(_) => IssueTopic::Observation,
        Criterion::Age(_) => IssueTopic::Patient,
    };
    if !topics.contains(&topic) {
        topics.push(topic);
    }
}
