//! Evaluating one criterion of the rule language against the record. Each kind
//! of criterion has its own file; this one dispatches and combines (`all`,
//! `any`, `not`, named criteria, `hook`). Evaluation returns a `Result`: data
//! the engine cannot reason about (a value that is not a finite number once
//! converted) fails the rule, which is reported and skipped, never guessed.

mod age;
mod condition;
mod draft_order;
mod lab;
mod medication;
#[cfg(test)]
mod tests;

use super::evidence::{Evidence, Fact};
use super::{Outcome, Scope};
use crate::knowledge::criteria::Criterion;
use crate::knowledge::describe::describe;

/// Why a criterion could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// A number that is not finite once converted (an absurd value or dose).
    #[error("{what} in {reference} is not a finite number once converted ({value})")]
    NotFinite {
        /// What the number is ("the total daily dose", "the serum magnesium value").
        what: String,
        /// The resource it came from.
        reference: String,
        /// The number as computed.
        value: f64,
    },
    /// The rule refers to a value set or analyte that the knowledge does not have.
    #[error("the rule refers to {kind} number {index}, which the knowledge does not have")]
    MissingKnowledge {
        /// "value set" or "analyte".
        kind: &'static str,
        /// Its index.
        index: usize,
    },
}

/// Evaluates `criterion` against the record in `scope`.
pub fn evaluate(criterion: &Criterion, scope: &Scope<'_>) -> Result<Outcome, EvalError> {
    Ok(match criterion {
        Criterion::All(children) => {
            let mut combined = Outcome {
                matched: true,
                ..Default::default()
            };
            let mut unknown = Vec::new();
            for child in children {
                let mut outcome = evaluate(child, scope)?;
                combined.skipped.append(&mut outcome.skipped);
                if outcome.is_unknown() {
                    unknown.append(&mut outcome.inconclusive);
                    continue;
                }
                if !outcome.matched {
                    // Definitely false, whatever the undecided children are.
                    return Ok(Outcome {
                        skipped: combined.skipped,
                        ..Default::default()
                    });
                }
                combined.unconfirmed |= outcome.unconfirmed;
                combined.absorb(outcome);
            }
            if !unknown.is_empty() {
                return Ok(Outcome {
                    skipped: combined.skipped,
                    inconclusive: unknown,
                    ..Default::default()
                });
            }
            combined
        }
        Criterion::Any(children) => {
            let mut combined = Outcome::default();
            let mut confirmed = false;
            let mut unknown = Vec::new();
            for child in children {
                let mut outcome = evaluate(child, scope)?;
                combined.skipped.append(&mut outcome.skipped);
                if outcome.matched {
                    combined.matched = true;
                    confirmed |= !outcome.unconfirmed;
                    combined.absorb(outcome);
                } else {
                    unknown.append(&mut outcome.inconclusive);
                }
            }
            combined.unconfirmed = combined.matched && !confirmed;
            if combined.matched {
                // Matched by another branch: the undecided results are still shown.
                combined.evidence.extend(unknown);
            } else {
                combined.inconclusive = unknown;
            }
            combined
        }
        Criterion::Not(child) => {
            let outcome = evaluate(child, scope)?;
            if outcome.matched {
                return Ok(Outcome::default());
            }
            if outcome.is_unknown() {
                return Ok(Outcome {
                    inconclusive: outcome.inconclusive,
                    ..Default::default()
                });
            }
            Outcome {
                matched: true,
                absences: vec![Evidence::from(Fact::Absent {
                    description: describe(child, scope.knowledge),
                })],
                ..Default::default()
            }
        }
        Criterion::Hook(hooks) => Outcome::leaf(hooks.contains(&scope.hook), Vec::new()),
        Criterion::Named(named) => {
            let mut outcome = evaluate(&named.criterion, scope)?;
            // What a definition did not find inside itself ("no dialysis", "eGFR not below 30"
            // in a kidney-function band) is how the definition works, not why the card fired.
            outcome.absences.clear();
            // The label the rule author referred to is the one shown: a definition used inside
            // another ("Recent eGFR" inside "Kidney function") does not stack its own.
            for evidence in outcome.evidence.iter_mut().chain(&mut outcome.inconclusive) {
                evidence.labels = vec![named.label.clone()];
            }
            outcome
        }
        Criterion::Condition(c) => condition::evaluate(c, scope)?,
        Criterion::Medication(c) => medication::evaluate(c, scope)?,
        Criterion::DraftOrder(c) => draft_order::evaluate(c, scope)?,
        Criterion::Lab(c) => lab::evaluate(c, scope)?,
        Criterion::Age(c) => age::evaluate(c, scope),
    })
}

/// The value set at `index`, or the error that says the knowledge lacks it.
fn valueset<'a>(
    scope: &Scope<'a>,
    index: usize,
) -> Result<&'a crate::knowledge::valueset::ValueSet, EvalError> {
    scope
        .knowledge
        .valuesets
        .get(index)
        .ok_or(EvalError::MissingKnowledge {
            kind: "value set",
            index,
        })
}
