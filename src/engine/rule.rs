//! One rule against the record: its criteria, its `[[stay_quiet]]` exclusions,
//! escalations, conditional notes and suggestions (each checked by the safety
//! guards), into a [`Finding`] or the reason it stayed quiet.

use super::criteria::{EvalError, evaluate};
use super::evidence::Evidence;
use super::{
    Finding, Outcome, PlannedAction, PlannedSuggestion, Quieted, RuleResult, Scope, Withheld,
    safety, topics,
};
use crate::knowledge::rule::Rule;

/// Evaluates one rule: its criteria, then its exclusions, escalations, notes and suggestions.
pub(super) fn evaluate_rule<'k>(
    rule: &'k Rule,
    scope: &Scope<'_>,
) -> Result<RuleResult<'k>, EvalError> {
    let fired = evaluate(&rule.when, scope)?;
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
    for escalation in &rule.escalations {
        let outcome = evaluate(&escalation.when, scope)?;
        if outcome.matched && escalation.indicator > indicator {
            indicator = escalation.indicator;
            if let Some(s) = &escalation.summary {
                summary = s;
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
        if let Some(when) = &suggestion.when {
            let outcome = evaluate(when, scope)?;
            if !outcome.matched {
                continue;
            }
            evidence.extend(outcome.evidence);
            suggestion_drafts = outcome.draft_orders;
            unconfirmed |= outcome.unconfirmed;
        }
        if let Some(unless) = &suggestion.unless
            && evaluate(unless, scope)?.matched
        {
            if let Some((reason, explanation)) = &suggestion.unless_reason {
                withheld.push(Withheld {
                    label: suggestion.label.clone(),
                    reason: *reason,
                    explanation: explanation.clone(),
                });
            }
            continue;
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
        match safety::check_suggestion(rule, &planned, unconfirmed, scope) {
            Some(reason) => withheld.push(reason),
            None => suggestions.push(planned),
        }
    }
    let mut seen: Vec<Evidence> = Vec::new();
    evidence.retain(|item| {
        if seen.contains(item) {
            false
        } else {
            seen.push(item.clone());
            true
        }
    });
    let mut draft_orders = fired.draft_orders;
    draft_orders.sort_unstable();
    draft_orders.dedup();
    Ok(RuleResult::Fired(Box::new(Finding {
        rule,
        indicator,
        summary,
        evidence,
        notes,
        suggestions,
        draft_orders,
        data_issues: {
            let topics = topics::read_by(rule);
            scope
                .record
                .issues
                .iter()
                .filter(|issue| topics::bears_on(issue, &topics))
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

