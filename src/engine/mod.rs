//! Evaluating the rules against a [`PatientRecord`] into [`Finding`]s, each
//! carrying the evidence that made it fire. The engine never sees JSON or
//! HTTP. A rule that fails on odd data is reported in
//! [`Evaluation::failures`] and skipped; the other rules still run. Precedence
//! ("yields to") is applied last, so one clinical message gives one card.

mod criteria;
pub mod evidence;
mod matching;
mod order;
mod rule;
mod safety;
#[cfg(test)]
pub(crate) mod test_support;
mod topics;

use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{DateTime, Utc};

use crate::fhir::record::{DataIssue, PatientRecord};
use crate::hooks::Hook;
use crate::hooks::vocabulary::Indicator;
use crate::knowledge::Knowledge;
use crate::knowledge::rule::{Rule, SafetyReason};
pub use criteria::EvalError;
pub use evidence::Evidence;
pub use safety::{Quieted, Withheld};

/// The result of one criterion: whether it matched, why, and which draft orders it matched.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Whether the criterion holds.
    pub matched: bool,
    /// Evidence, for a matched criterion.
    pub evidence: Vec<Evidence>,
    /// What was *not* found (from `not`), for a matched criterion. It explains the rule's own
    /// criteria; the criteria of notes, escalations and suggestions drop it, so a card does not
    /// list every caution that did not apply.
    pub absences: Vec<Evidence>,
    /// Indexes into `record.draft_orders` that matched.
    pub draft_orders: Vec<usize>,
    /// Draft orders left out for a safety reason (route, another indication), kept whether
    /// or not the criterion matched, so a rule that stays quiet can say why.
    pub skipped: Vec<(SafetyReason, String)>,
    /// Whether the match rests only on conditions that are not confirmed (verification status
    /// provisional, differential or unconfirmed).
    pub unconfirmed: bool,
    /// For a criterion that did not match: the results that leave it undecided (a bound such as
    /// "<0.6" that may be on either side of the limit). Non-empty means "unknown", not "false":
    /// `not` of an unknown is unknown, so an absence is never claimed on a bound.
    pub inconclusive: Vec<Evidence>,
}

impl Outcome {
    /// Whether the criterion is undecided (neither matched nor ruled out).
    fn is_unknown(&self) -> bool {
        !self.matched && !self.inconclusive.is_empty()
    }

    fn leaf(matched: bool, evidence: Vec<Evidence>) -> Outcome {
        Outcome {
            matched,
            evidence: if matched { evidence } else { Vec::new() },
            ..Default::default()
        }
    }

    /// Adds a matched child's evidence, absences and draft orders.
    fn absorb(&mut self, child: Outcome) {
        self.evidence.extend(child.evidence);
        self.absences.extend(child.absences);
        self.draft_orders.extend(child.draft_orders);
    }
}

/// A rule that fired, with everything the card needs.
#[derive(Debug)]
pub struct Finding<'k> {
    /// The rule.
    pub rule: &'k Rule,
    /// The indicator after escalations.
    pub indicator: Indicator,
    /// A louder indicator an escalation would have given, had a result not been reported
    /// only as a bound that may lie on either side of its limit.
    pub possibly_more_urgent: Option<Indicator>,
    /// The summary after escalations.
    pub summary: &'k str,
    /// The summary template with the decisive facts after escalations, if the rule has one.
    pub summary_with_facts: Option<&'k str>,
    /// Evidence, without duplicates.
    pub evidence: Vec<Evidence>,
    /// Advice notes whose criteria matched.
    pub notes: Vec<&'k str>,
    /// Suggestions to offer, with the actions to include.
    pub suggestions: Vec<PlannedSuggestion>,
    /// Draft orders the rule is about (for delete and update suggestions).
    pub draft_orders: Vec<usize>,
    /// Data problems that bear on this finding (those of the record's topics its rule reads).
    pub data_issues: Vec<DataIssue>,
    /// Suggestions not offered for a safety reason, and why.
    pub withheld: Vec<Withheld>,
}

impl Finding<'_> {
    /// The id of the rule that fired.
    pub fn rule_id(&self) -> &str {
        &self.rule.id
    }
}

/// A suggestion of a finding: which template, and which of its actions.
#[derive(Debug, Clone)]
pub struct PlannedSuggestion {
    /// Index into `rule.suggestions`.
    pub index: usize,
    /// The actions to include.
    pub actions: Vec<PlannedAction>,
}

/// An action of a suggestion, and the draft orders it acts on (update and delete).
#[derive(Debug, Clone)]
pub struct PlannedAction {
    /// Index into the suggestion's `actions`.
    pub index: usize,
    /// Indexes into `record.draft_orders`: those the action's own criterion matched, else the
    /// suggestion's, else the rule's.
    pub draft_orders: Vec<usize>,
}

/// A rule that could not be evaluated.
#[derive(Debug, Clone)]
pub struct RuleFailure {
    /// The rule id.
    pub rule_id: String,
    /// What went wrong.
    pub message: String,
}

/// The result of evaluating every rule of a hook.
#[derive(Debug, Default)]
pub struct Evaluation<'k> {
    /// Rules that fired and were not silenced by precedence.
    pub findings: Vec<Finding<'k>>,
    /// Rules that fired but yield to another rule that fired: (rule id, the rule it yields to).
    pub yielded: Vec<(String, String)>,
    /// Rules that failed.
    pub failures: Vec<RuleFailure>,
    /// Rules whose trigger was there but that stayed quiet for a safety reason.
    pub quieted: Vec<Quieted>,
}

/// Evaluates the rules.
pub struct Engine<'k> {
    knowledge: &'k Knowledge,
}

struct Scope<'a> {
    knowledge: &'a Knowledge,
    record: &'a PatientRecord,
    hook: Hook,
    now: DateTime<Utc>,
}

impl<'k> Engine<'k> {
    /// An engine over a knowledge base.
    pub fn new(knowledge: &'k Knowledge) -> Self {
        Engine { knowledge }
    }

    /// Evaluates every rule of `hook` against `record` at time `now`.
    pub fn evaluate(
        &self,
        record: &PatientRecord,
        hook: Hook,
        now: DateTime<Utc>,
    ) -> Evaluation<'k> {
        let scope = Scope {
            knowledge: self.knowledge,
            record,
            hook,
            now,
        };
        let mut evaluation = Evaluation::default();
        for rule in self
            .knowledge
            .rules
            .iter()
            .filter(|r| r.hooks.contains(&hook))
        {
            // A rule that fails on odd data is reported and skipped; `catch_unwind` is only the
            // backstop for a defect in the engine itself.
            match catch_unwind(AssertUnwindSafe(|| rule::evaluate_rule(rule, &scope))) {
                Ok(Ok(RuleResult::Fired(finding))) => evaluation.findings.push(*finding),
                Ok(Ok(RuleResult::Quiet(reasons))) => evaluation.quieted.extend(reasons),
                Ok(Ok(RuleResult::NotApplicable)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(rule_id = %rule.id, %error, "rule could not be evaluated on this record; skipped");
                    evaluation.failures.push(RuleFailure {
                        rule_id: rule.id.clone(),
                        message: error.to_string(),
                    });
                }
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "evaluation failed".to_owned());
                    tracing::error!(rule_id = %rule.id, %message, "rule evaluation failed; skipped");
                    evaluation.failures.push(RuleFailure {
                        rule_id: rule.id.clone(),
                        message,
                    });
                }
            }
        }
        apply_precedence(&mut evaluation);
        // Most urgent first; rule order breaks ties, so the order is stable.
        evaluation
            .findings
            .sort_by_key(|f| std::cmp::Reverse(f.indicator));
        safety::withhold_repeated_orders(&mut evaluation.findings, record);
        evaluation
    }
}

fn apply_precedence(evaluation: &mut Evaluation<'_>) {
    let fired: Vec<String> = evaluation
        .findings
        .iter()
        .map(|f| f.rule.id.clone())
        .collect();
    let mut yielded = Vec::new();
    evaluation.findings.retain(|finding| {
        match finding.rule.yields_to.iter().find(|id| fired.contains(id)) {
            Some(winner) => {
                yielded.push((finding.rule.id.clone(), winner.clone()));
                false
            }
            None => true,
        }
    });
    evaluation.yielded = yielded;
}

/// What evaluating one rule gave.
enum RuleResult<'k> {
    /// It fired.
    Fired(Box<Finding<'k>>),
    /// Its trigger was there (or a draft order was left out) but a safety reason kept it quiet.
    Quiet(Vec<Quieted>),
    /// It does not apply.
    NotApplicable,
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::test_support::{draft, evaluate, knowledge};
    use crate::fhir::record::PatientRecord;

    #[test]
    fn a_rule_that_fails_on_odd_data_is_reported_and_the_other_rules_still_answer() {
        let knowledge = knowledge();
        let mut record = PatientRecord::new("p");
        record.birth_date = NaiveDate::from_ymd_opt(1960, 1, 1);
        // A dose so large that the daily total overflows: the gabapentinoid rule cannot
        // compare it with a limit, and must say so rather than fire or stay silent.
        record.draft_orders.push(draft(
            "gabapentin 300 MG Oral Capsule",
            f64::INFINITY,
            serde_json::json!({"text": "oral"}),
        ));
        record.draft_orders.push(draft(
            "magnesium oxide 400 MG Oral Tablet",
            400.0,
            serde_json::json!({"text": "by mouth"}),
        ));
        let evaluation = evaluate(&knowledge, &record);
        let failed: Vec<&str> = evaluation
            .failures
            .iter()
            .map(|f| f.rule_id.as_str())
            .collect();
        assert!(failed.contains(&"gabapentinoid-dose"), "{failed:?}");
        assert!(
            evaluation.failures[0]
                .message
                .contains("not a finite number"),
            "{:?}",
            evaluation.failures
        );
        let fired: Vec<&str> = evaluation.findings.iter().map(|f| f.rule_id()).collect();
        assert!(fired.contains(&"magnesium-without-deficiency"), "{fired:?}");
        assert!(!fired.contains(&"gabapentinoid-dose"), "{fired:?}");
    }
}
