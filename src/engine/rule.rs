//! One rule against the record: its criteria, its `[[stay_quiet]]` exclusions,
//! escalations, conditional notes and suggestions (each checked by the safety
//! guards), into a [`Finding`] or the reason it stayed quiet.

use super::criteria::{EvalError, evaluate};
use super::evidence::{Decision, Direction, DoseFact, Evidence, Fact, LabReading};
use super::{
    Finding, Outcome, PlannedAction, PlannedSuggestion, Quieted, RuleResult, Scope, Withheld,
    safety, topics,
};
use crate::knowledge::rule::{Rule, SafetyReason};

/// Evaluates one rule: its criteria, then its exclusions, escalations, notes and suggestions.
pub(super) fn evaluate_rule<'k>(
    rule: &'k Rule,
    scope: &Scope<'_>,
) -> Result<RuleResult<'k>, EvalError> {
    let fired = evaluate(&rule.when, scope)?;
    if fired.is_unknown() {
        // Neither fired nor ruled out: say so (--explain), never guess either way.
        return Ok(RuleResult::Quiet(vec![Quieted {
            rule_id: rule.id.clone(),
            reason: SafetyReason::Inconclusive,
            explanation: "a result it depends on was reported only as a bound that may be on \
                          either side of its limit"
                .to_owned(),
            evidence: fired.inconclusive,
        }]));
    }
    if !fired.matched {
        return Ok(quiet_for_skipped_orders(rule, &fired));
    }
    if let Some(quiet) = stay_quiet(rule, scope)? {
        return Ok(RuleResult::Quiet(vec![quiet]));
    }
    let mut evidence = fired.evidence.clone();
    evidence.extend(fired.absences.iter().cloned());
    let mut indicator = rule.indicator;
    let mut summary = rule.summary.as_str();
    let mut summary_with_facts = rule.summary_with_facts.as_deref();
    let mut possibly = None;
    for escalation in &rule.escalations {
        let outcome = evaluate(&escalation.when, scope)?;
        // A bound that may be on the severe side is shown, and the card says it may be more
        // urgent than its indicator, so the reader knows why it was not escalated.
        if outcome.is_unknown() && escalation.indicator > indicator {
            possibly = possibly.max(Some(escalation.indicator));
        }
        evidence.extend(outcome.inconclusive.iter().cloned());
        // One at the card's level so far restates the summary only (a fact that changes
        // what to do first, not how urgent it is); a later, louder one overrides it.
        if outcome.matched && escalation.indicator >= indicator {
            indicator = escalation.indicator;
            if let Some(s) = &escalation.summary {
                summary = s;
                summary_with_facts = escalation.summary_with_facts.as_deref();
            }
            evidence.extend(outcome.evidence);
        }
    }
    let mut notes = Vec::new();
    for note in &rule.notes {
        let outcome = evaluate(&note.when, scope)?;
        if outcome.matched {
            notes.push(note.text.as_str());
            evidence.extend(outcome.evidence);
        }
    }
    let mut suggestions = Vec::new();
    let mut withheld = Vec::new();
    for (index, suggestion) in rule.suggestions.iter().enumerate() {
        let mut suggestion_drafts = Vec::new();
        let mut unconfirmed = fired.unconfirmed;
        let mut undecided = false;
        if let Some(when) = &suggestion.when {
            let outcome = evaluate(when, scope)?;
            if outcome.is_unknown() {
                // Offered only if it is right whichever side the true value lies on: a test
                // or an ECG, never a medication order.
                evidence.extend(outcome.inconclusive.iter().cloned());
                undecided = true;
            } else if !outcome.matched {
                continue;
            }
            evidence.extend(outcome.evidence);
            suggestion_drafts = outcome.draft_orders;
            unconfirmed |= outcome.unconfirmed;
        }
        if let Some(unless) = &suggestion.unless {
            let outcome = evaluate(unless, scope)?;
            if outcome.is_unknown() {
                // What would hold the suggestion back cannot be ruled out: hold it back.
                evidence.extend(outcome.inconclusive.iter().cloned());
                let what = suggestion
                    .unless_reason
                    .as_ref()
                    .map(|(_, explanation)| format!(" ({explanation})"))
                    .unwrap_or_default();
                withheld.push(Withheld {
                    label: suggestion.label.clone(),
                    reason: SafetyReason::Inconclusive,
                    explanation: format!(
                        "a result reported only as a bound leaves open what would make it unsafe{what}"
                    ),
                });
                continue;
            }
            if outcome.matched {
                if let Some((reason, explanation)) = &suggestion.unless_reason {
                    withheld.push(Withheld {
                        label: suggestion.label.clone(),
                        reason: *reason,
                        explanation: explanation.clone(),
                    });
                }
                continue;
            }
        }
        let mut actions = Vec::new();
        for (action_index, action) in suggestion.actions.iter().enumerate() {
            let mut targets = Vec::new();
            if let Some(when) = &action.when {
                let outcome = evaluate(when, scope)?;
                if !outcome.matched {
                    continue;
                }
                targets = outcome.draft_orders;
            }
            if targets.is_empty() {
                targets = if suggestion_drafts.is_empty() {
                    fired.draft_orders.clone()
                } else {
                    suggestion_drafts.clone()
                };
            }
            targets.sort_unstable();
            targets.dedup();
            actions.push(PlannedAction {
                index: action_index,
                draft_orders: targets,
            });
        }
        if actions.is_empty() {
            continue;
        }
        let planned = PlannedSuggestion { index, actions };
        if undecided && safety::treats(rule, &planned, scope.record) {
            withheld.push(Withheld {
                label: suggestion.label.clone(),
                reason: SafetyReason::Inconclusive,
                explanation: "a result it depends on was reported only as a bound (a value \
                              sent with \"<\" or \">\"), which may be on either side of the \
                              limit; see the data that could not be used"
                    .to_owned(),
            });
            continue;
        }
        match safety::check_suggestion(rule, &planned, unconfirmed, scope) {
            Some(reason) => withheld.push(reason),
            None => suggestions.push(planned),
        }
    }
    let evidence = without_repeats(evidence);
    let mut draft_orders = fired.draft_orders;
    draft_orders.sort_unstable();
    draft_orders.dedup();
    Ok(RuleResult::Fired(Box::new(Finding {
        rule,
        indicator,
        possibly_more_urgent: possibly,
        summary,
        summary_with_facts,
        evidence,
        notes,
        suggestions,
        draft_orders,
        data_issues: {
            let topics = &rule.reads;
            scope
                .record
                .issues
                .iter()
                .filter(|issue| topics::bears_on(issue, topics))
                .cloned()
                .collect()
        },
        withheld,
    })))
}

/// A rule that did not fire because draft orders were left out for a safety reason.
fn quiet_for_skipped_orders<'k>(rule: &Rule, fired: &Outcome) -> RuleResult<'k> {
    if fired.skipped.is_empty() {
        return RuleResult::NotApplicable;
    }
    let mut quieted: Vec<Quieted> = Vec::new();
    for (reason, explanation) in &fired.skipped {
        if !quieted
            .iter()
            .any(|q| q.reason == *reason && &q.explanation == explanation)
        {
            quieted.push(Quieted {
                rule_id: rule.id.clone(),
                reason: *reason,
                explanation: explanation.clone(),
                evidence: Vec::new(),
            });
        }
    }
    RuleResult::Quiet(quieted)
}

/// The first `[[stay_quiet]]` exclusion of the rule that matches, as a [`Quieted`].
fn stay_quiet(rule: &Rule, scope: &Scope<'_>) -> Result<Option<Quieted>, EvalError> {
    for exclusion in &rule.stay_quiet {
        let outcome = evaluate(&exclusion.when, scope)?;
        if outcome.matched {
            return Ok(Some(Quieted {
                rule_id: rule.id.clone(),
                reason: exclusion.reason,
                explanation: exclusion.explanation.clone(),
                evidence: outcome.evidence,
            }));
        }
    }
    Ok(None)
}

/// The evidence without repeats: an identical item is kept once, and one result found below
/// (or above) two thresholds (the rule's and an escalation's), or one order above two dose
/// limits, is kept once, with the stricter limit, where it first appeared.
fn without_repeats(evidence: Vec<Evidence>) -> Vec<Evidence> {
    let mut kept: Vec<Evidence> = Vec::new();
    for item in evidence {
        // The same fact reached through a named criterion and directly is shown once, under
        // the name.
        if let Some(earlier) = kept.iter_mut().find(|k| k.fact == item.fact) {
            if earlier.labels.is_empty() {
                earlier.labels = item.labels;
            }
            continue;
        }
        if let Some(earlier) = kept
            .iter_mut()
            .find(|k| same_result_two_thresholds(k, &item))
        {
            if stricter(&item, earlier) {
                *earlier = item;
            }
            continue;
        }
        kept.push(item);
    }
    kept
}

/// The threshold a lab result was found beyond: direction and limit.
fn threshold_of(evidence: &Evidence) -> Option<(&LabReading, Direction, f64)> {
    match &evidence.fact {
        Fact::LabResult {
            result,
            decided_by: Some(Decision::Threshold { direction, limit }),
        } => Some((result, *direction, limit.value)),
        _ => None,
    }
}

/// A draft order and how much its dose line says: the limit it is above, else less than any
/// limit for a plain daily dose, and least for no dose. A dose that could not be computed says
/// why, and is never merged.
fn dose_limit_of(evidence: &Evidence) -> Option<(&str, f64)> {
    match &evidence.fact {
        Fact::DraftOrder(order) => match order.dose {
            DoseFact::Above { limit, .. } => Some((order.reference.as_str(), limit)),
            DoseFact::Daily { .. } => Some((order.reference.as_str(), f64::MIN)),
            DoseFact::NotShown => Some((order.reference.as_str(), f64::NEG_INFINITY)),
            DoseFact::Unknown(_) => None,
        },
        _ => None,
    }
}

fn same_result_two_thresholds(a: &Evidence, b: &Evidence) -> bool {
    if a.labels != b.labels {
        return false;
    }
    match (threshold_of(a), threshold_of(b)) {
        (Some((ra, da, _)), Some((rb, db, _))) => return ra == rb && da == db,
        (None, None) => {}
        _ => return false,
    }
    matches!((dose_limit_of(a), dose_limit_of(b)), (Some((ra, _)), Some((rb, _))) if ra == rb)
}

/// Whether `a`'s threshold is stricter than `b`'s (lower for below, higher for above; a
/// higher dose limit exceeded).
fn stricter(a: &Evidence, b: &Evidence) -> bool {
    match (threshold_of(a), threshold_of(b)) {
        (Some((_, Direction::Below, la)), Some((_, _, lb))) => la < lb,
        (Some((_, Direction::Above, la)), Some((_, _, lb))) => la > lb,
        _ => match (dose_limit_of(a), dose_limit_of(b)) {
            (Some((_, la)), Some((_, lb))) => la > lb,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_support::magnesium_below;

    fn below(limit: f64) -> Evidence {
        magnesium_below(0.41, None, limit)
    }

    #[test]
    fn one_result_below_two_thresholds_is_shown_once_with_the_stricter() {
        assert_eq!(
            without_repeats(vec![below(0.70), below(0.50)]),
            vec![below(0.50)]
        );
        assert_eq!(
            without_repeats(vec![below(0.50), below(0.70)]),
            vec![below(0.50)]
        );
        assert_eq!(
            without_repeats(vec![below(0.70), below(0.70)]),
            vec![below(0.70)]
        );
    }
}
