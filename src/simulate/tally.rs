//! Counts over the population as outcomes arrive: patients per rule and indicator, cards per
//! patient, data issues, suppressed cards, failures, and with a comparison the patients who gain or lose a card.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::age_band::AGE_BANDS;
use super::evaluator::Outcome;
use super::issues::normalise;

/// How many failures are kept by example.
const FAILURE_EXAMPLES: usize = 10;

/// The counts of one knowledge's evaluations.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Patients evaluated.
    pub patients: u64,
    /// Patients with a card, by (rule id, indicator).
    pub by_rule: BTreeMap<(String, String), u64>,
    /// Patients by number of cards: 0, 1, 2, 3, 4 or more.
    pub cards_per_patient: [u64; 5],
    /// Cards shown, by indicator.
    pub cards_by_indicator: BTreeMap<String, u64>,
    /// Patients with each (normalised) data issue.
    pub data_issues: HashMap<String, u64>,
    /// Patients whose card of the rule an override suppressed, by rule id.
    pub suppressed: BTreeMap<String, u64>,
    /// Patients in each age band ([`AGE_BANDS`]).
    pub patients_by_age_band: [u64; AGE_BANDS.len()],
    /// Patients with a card of the rule (any indicator) in each age band, by rule id.
    pub by_rule_and_age_band: BTreeMap<String, [u64; AGE_BANDS.len()]>,
    /// Evaluations that failed (the request was refused).
    pub failures: u64,
    /// The first few failures: (patient id, message).
    pub failure_examples: Vec<(String, String)>,
}

impl Tally {
    /// Counts the outcome of evaluating `patient`, whose age band is `age_band`.
    pub fn add(&mut self, patient: &str, age_band: usize, outcome: &Result<Outcome, String>) {
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(message) => {
                self.failures += 1;
                if self.failure_examples.len() < FAILURE_EXAMPLES {
                    self.failure_examples
                        .push((patient.to_owned(), message.clone()));
                }
                return;
            }
        };
        self.patients += 1;
        let rules: BTreeSet<&(String, String)> = outcome.cards.iter().collect();
        for rule in rules {
            *self.by_rule.entry(rule.clone()).or_default() += 1;
        }
        let age_band = age_band.min(AGE_BANDS.len() - 1);
        self.patients_by_age_band[age_band] += 1;
        let rule_ids: BTreeSet<&String> = outcome.cards.iter().map(|(rule, _)| rule).collect();
        for rule in rule_ids {
            self.by_rule_and_age_band.entry(rule.clone()).or_default()[age_band] += 1;
        }
        self.cards_per_patient[outcome.cards.len().min(4)] += 1;
        for (_, indicator) in &outcome.cards {
            *self
                .cards_by_indicator
                .entry(indicator.clone())
                .or_default() += 1;
        }
        let suppressed: BTreeSet<&String> = outcome.suppressed.iter().collect();
        for rule in suppressed {
            *self.suppressed.entry(rule.clone()).or_default() += 1;
        }
        let issues: BTreeSet<String> = outcome.data_issues.iter().map(|i| normalise(i)).collect();
        for issue in issues {
            *self.data_issues.entry(issue).or_default() += 1;
        }
    }
}

/// A patient's card under one knowledge or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Under both.
    Both,
    /// Only under the compared knowledge: the patient gains the card.
    Gained,
    /// Only under the base knowledge: the patient loses the card.
    Lost,
}

impl Side {
    /// The side's name in the patients CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Both => "both",
            Side::Gained => "gained",
            Side::Lost => "lost",
        }
    }
}

/// Per rule, how many patients have its card under each knowledge and who changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleChange {
    /// Patients with the card under the base knowledge.
    pub base: u64,
    /// Patients with the card under the compared knowledge.
    pub compared: u64,
    /// Patients who gain the card.
    pub gained: u64,
    /// Patients who lose the card.
    pub lost: u64,
}

/// The rules of both outcomes with the side each is on: (rule id, indicator, side).
pub fn sides<'a>(base: &'a Outcome, compared: &'a Outcome) -> Vec<(&'a str, &'a str, Side)> {
    let base_rules: BTreeMap<&str, &str> = base
        .cards
        .iter()
        .map(|(r, i)| (r.as_str(), i.as_str()))
        .collect();
    let compared_rules: BTreeMap<&str, &str> = compared
        .cards
        .iter()
        .map(|(r, i)| (r.as_str(), i.as_str()))
        .collect();
    let mut out = Vec::new();
    for (rule, indicator) in &base_rules {
        let side = if compared_rules.contains_key(rule) {
            Side::Both
        } else {
            Side::Lost
        };
        out.push((*rule, *indicator, side));
    }
    for (rule, indicator) in &compared_rules {
        if !base_rules.contains_key(rule) {
            out.push((*rule, *indicator, Side::Gained));
        }
    }
    out
}

/// Counts the changes between the two outcomes of one patient into `changes`.
pub fn add_changes(changes: &mut BTreeMap<String, RuleChange>, base: &Outcome, compared: &Outcome) {
    for (rule, _, side) in sides(base, compared) {
        let change = changes.entry(rule.to_owned()).or_default();
        match side {
            Side::Both => {
                change.base += 1;
                change.compared += 1;
            }
            Side::Gained => {
                change.compared += 1;
                change.gained += 1;
            }
            Side::Lost => {
                change.base += 1;
                change.lost += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(cards: &[(&str, &str)]) -> Outcome {
        Outcome {
            cards: cards
                .iter()
                .map(|(r, i)| (r.to_string(), i.to_string()))
                .collect(),
            data_issues: Vec::new(),
            suppressed: Vec::new(),
        }
    }

    #[test]
    fn cards_per_patient_and_rules_are_counted_once_per_patient() {
        let mut tally = Tally::default();
        tally.add("a", 3, &Ok(outcome(&[("r1", "warning"), ("r2", "info")])));
        tally.add("b", 1, &Ok(outcome(&[])));
        tally.add("c", 1, &Err("bad".to_owned()));
        tally.add("d", 3, &Ok(outcome(&[("r2", "info")])));
        assert_eq!(tally.patients, 3);
        assert_eq!(tally.cards_per_patient, [1, 1, 1, 0, 0]);
        assert_eq!(tally.cards_by_indicator["info"], 2);
        assert_eq!(tally.cards_by_indicator["warning"], 1);
        assert_eq!(tally.patients_by_age_band, [0, 1, 0, 2, 0, 0]);
        assert_eq!(tally.by_rule_and_age_band["r2"], [0, 0, 0, 2, 0, 0]);
        assert_eq!(tally.by_rule_and_age_band["r1"], [0, 0, 0, 1, 0, 0]);
        assert_eq!(tally.by_rule[&("r1".to_owned(), "warning".to_owned())], 1);
        assert_eq!(tally.failures, 1);
    }

    #[test]
    fn a_card_only_under_the_compared_knowledge_is_gained() {
        let mut changes = BTreeMap::new();
        let base = outcome(&[("r1", "warning"), ("r2", "info")]);
        let compared = outcome(&[("r2", "info"), ("r3", "info")]);
        add_changes(&mut changes, &base, &compared);
        assert_eq!(changes["r1"].lost, 1);
        assert_eq!(changes["r2"].gained + changes["r2"].lost, 0);
        assert_eq!(changes["r3"].gained, 1);
    }
}
