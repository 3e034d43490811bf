//! Whether a data issue bears on a finding: the kinds of facts each rule reads are worked out
//! once, when the knowledge loads (`Rule::reads`), so an issue is shown only with the findings it
//! could change: an unrecognised medication with the rules that read medications, an unusable result
//! with the rules that read laboratory results, and so on. Issues about the request as a whole
//! go with every finding.

use crate::fhir::record::DataIssue;
use crate::knowledge::topics::IssueTopic;

/// Whether `issue` bears on a rule that reads `topics`.
pub fn bears_on(issue: &DataIssue, topics: &[IssueTopic]) -> bool {
    issue.topic == IssueTopic::Other || topics.contains(&issue.topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::rule::Rule;
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
        let topics = &rule(&knowledge, "nerve-compression").reads;
        assert_eq!(topics, &vec![IssueTopic::Condition]);
        assert!(!bears_on(&issue(IssueTopic::Medication), topics));
        assert!(!bears_on(&issue(IssueTopic::Observation), topics));
        assert!(bears_on(&issue(IssueTopic::Condition), topics));
        assert!(bears_on(&issue(IssueTopic::Other), topics));
    }

    #[test]
    fn a_rule_that_reads_medications_and_labs_is_shown_their_issues() {
        let knowledge = Knowledge::load(&KnowledgeSource::BuiltIn).unwrap();
        let topics = &rule(&knowledge, "diuretic-low-magnesium").reads;
        assert!(bears_on(&issue(IssueTopic::Medication), topics));
        assert!(bears_on(&issue(IssueTopic::Observation), topics));
    }
}
