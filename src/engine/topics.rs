//! Which kinds of facts a rule reads, so a data issue is shown only with the findings it could
//! change: an unrecognised medication with the rules that read medications, an unusable result
//! with the rules that read laboratory results, and so on. Issues about the request as a whole
//! go with every finding.

use crate::fhir::record::{DataIssue, IssueTopic};
use crate::knowledge::criteria::Criterion;
use crate::knowledge::rule::Rule;

/// The topics of facts any criterion of `rule` reads (its `when`, escalations, notes,
/// suggestions and exclusions).
pub fn read_by(rule: &Rule) -> Vec<IssueTopic> {
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

/// Whether `issue` bears on a rule that reads `topics`.
pub fn bears_on(issue: &DataIssue, topics: &[IssueTopic]) -> bool {
    issue.topic == IssueTopic::Other || topics.contains(&issue.topic)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::{Knowledge, KnowledgeSource};

    fn rule<'k>(knowledge: &'k Knowledge, id: &str) -> &'k Rule {
        knowledge.rules.iter().find(|r| r.id == id).expect(id)
    }

    fn issue(topic: IssueTopic) -> DataIssue {
        DataIssue {
            location: "MedicationStatement/x".into(),
            problem: "odd".into(),
            topic,
        }
    }

    #[test]
    fn a_rule_that_reads_only_conditions_is_not_shown_medication_or_lab_issues() {
        let knowledge = Knowledge::load(&KnowledgeSource::BuiltIn).unwrap();
        let topics = read_by(rule(&knowledge, "nerve-compression"));
        assert_eq!(topics, vec![IssueTopic::Condition]);
        assert!(!bears_on(&issue(IssueTopic::Medication), &topics));
        assert!(!bears_on(&issue(IssueTopic::Observation), &topics));
        assert!(bears_on(&issue(IssueTopic::Condition), &topics));
        assert!(bears_on(&issue(IssueTopic::Other), &topics));
    }

    #[test]
    fn a_rule_that_reads_medications_and_labs_is_shown_their_issues() {
        let knowledge = Knowledge::load(&KnowledgeSource::BuiltIn).unwrap();
        let topics = read_by(rule(&knowledge, "diuretic-low-magnesium"));
        assert!(bears_on(&issue(IssueTopic::Medication), &topics));
        assert!(bears_on(&issue(IssueTopic::Observation), &topics));
    }
}
