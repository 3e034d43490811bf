//! Evaluating the rules against a [`PatientRecord`] into [`Finding`]s, each
//! carrying the evidence that made it fire. The engine never sees JSON or
//! HTTP. A rule that fails on odd data is reported in
//! [`Evaluation::failures`] and skipped; the other rules still run. Precedence
//! ("yields to") is applied last, so one clinical message gives one card.

mod lab;
mod matching;
mod order;
mod safety;
mod topics;

use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{DateTime, Duration, Utc};

use crate::fhir::record::PatientRecord;
use crate::hooks::Hook;
use crate::knowledge::Knowledge;
use crate::knowledge::criteria::{Criterion, DoseTest, DraftOrderCriterion, LabTest, WhenAbsent};
use crate::knowledge::rule::{Indicator, Rule, SafetyReason};
pub use matching::system_name;
pub use safety::{Quieted, Withheld};

/// The result of one criterion: whether it matched, why, and which draft orders it matched.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Whether the criterion holds.
    pub matched: bool,
    /// Evidence lines (Markdown), for a matched criterion.
    pub evidence: Vec<String>,
    /// Lines that say what was *not* found (from `not`), for a matched criterion. They explain
    /// the rule's own criteria; the criteria of notes, escalations and suggestions drop them, so
    /// a card does not list every caution that did not apply.
    pub absences: Vec<String>,
    /// Indexes into `record.draft_orders` that matched.
    pub draft_orders: Vec<usize>,
    /// Draft orders left out for a safety reason (route, another indication), kept whether
    /// or not the criterion matched, so a rule that stays quiet can say why.
    pub skipped: Vec<(SafetyReason, String)>,
    /// Whether the match rests only on conditions that are not confirmed (verification status
    /// provisional, differential or unconfirmed).
    pub unconfirmed: bool,
}

impl Outcome {
    fn leaf(matched: bool, evidence: Vec<String>) -> Outcome {
        Outcome {
            matched,
            evidence: if matched { evidence } else { Vec::new() },
            ..Default::default()
        }
    }
}

/// A rule that fired, with everything the card needs.
#[derive(Debug)]
pub struct Finding<'k> {
    /// The rule.
    pub rule: &'k Rule,
    /// The indicator after escalations.
    pub indicator: Indicator,
    /// The summary after escalations.
    pub summary: &'k str,
    /// Evidence lines, without duplicates.
    pub evidence: Vec<String>,
    /// Advice notes whose criteria matched.
    pub notes: Vec<&'k str>,
    /// Suggestions to offer, with the actions to include.
    pub suggestions: Vec<PlannedSuggestion>,
    /// Draft orders the rule is about (for delete and update suggestions).
    pub draft_orders: Vec<usize>,
    /// Data problems that bear on this finding.
    pub data_issues: Vec<String>,
    /// Suggestions not offered for a safety reason, and why.
    pub withheld: Vec<Withheld>,
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
            match catch_unwind(AssertUnwindSafe(|| evaluate_rule(rule, &scope))) {
                Ok(RuleResult::Fired(finding)) => evaluation.findings.push(*finding),
                Ok(RuleResult::Quiet(reasons)) => evaluation.quieted.extend(reasons),
                Ok(RuleResult::NotApplicable) => {}
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

fn evaluate_rule<'k>(rule: &'k Rule, scope: &Scope<'_>) -> RuleResult<'k> {
    let fired = evaluate(&rule.when, scope);
    if !fired.matched {
        return quiet_for_skipped_orders(rule, &fired);
    }
    if let Some(quiet) = stay_quiet(rule, scope) {
        return RuleResult::Quiet(vec![quiet]);
    }
    let mut evidence = fired.evidence.clone();
    evidence.extend(fired.absences.iter().cloned());
    let mut indicator = rule.indicator;
    let mut summary = rule.summary.as_str();
    for escalation in &rule.escalations {
        let outcome = evaluate(&escalation.when, scope);
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
        let outcome = evaluate(&note.when, scope);
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
            let outcome = evaluate(when, scope);
            if !outcome.matched {
                continue;
            }
            evidence.extend(outcome.evidence);
            suggestion_drafts = outcome.draft_orders;
            unconfirmed |= outcome.unconfirmed;
        }
        if let Some(unless) = &suggestion.unless
            && evaluate(unless, scope).matched
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
                let outcome = evaluate(when, scope);
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
    let mut seen = std::collections::HashSet::new();
    evidence.retain(|line| seen.insert(line.clone()));
    let mut draft_orders = fired.draft_orders;
    draft_orders.sort_unstable();
    draft_orders.dedup();
    RuleResult::Fired(Box::new(Finding {
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
                .map(|i| format!("{}: {}", i.location, i.problem))
                .collect()
        },
        withheld,
    }))
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
            });
        }
    }
    RuleResult::Quiet(quieted)
}

/// The first `[[stay_quiet]]` exclusion of the rule that matches, as a [`Quieted`].
fn stay_quiet(rule: &Rule, scope: &Scope<'_>) -> Option<Quieted> {
    rule.stay_quiet.iter().find_map(|exclusion| {
        let outcome = evaluate(&exclusion.when, scope);
        outcome.matched.then(|| {
            let found = if outcome.evidence.is_empty() {
                String::new()
            } else {
                format!(" ({})", outcome.evidence.join("; "))
            };
            Quieted {
                rule_id: rule.id.clone(),
                reason: exclusion.reason,
                explanation: format!("{}{found}", exclusion.explanation),
            }
        })
    })
}

fn evaluate(criterion: &Criterion, scope: &Scope<'_>) -> Outcome {
    match criterion {
        Criterion::All(children) => {
            let mut combined = Outcome {
                matched: true,
                ..Default::default()
            };
            for child in children {
                let outcome = evaluate(child, scope);
                combined.skipped.extend(outcome.skipped);
                if !outcome.matched {
                    return Outcome {
                        skipped: combined.skipped,
                        ..Default::default()
                    };
                }
                combined.unconfirmed |= outcome.unconfirmed;
                combined.evidence.extend(outcome.evidence);
                combined.absences.extend(outcome.absences);
                combined.draft_orders.extend(outcome.draft_orders);
            }
            combined
        }
        Criterion::Any(children) => {
            let mut combined = Outcome::default();
            let mut confirmed = false;
            for child in children {
                let outcome = evaluate(child, scope);
                combined.skipped.extend(outcome.skipped);
                if outcome.matched {
                    combined.matched = true;
                    confirmed |= !outcome.unconfirmed;
                    combined.evidence.extend(outcome.evidence);
                    combined.absences.extend(outcome.absences);
                    combined.draft_orders.extend(outcome.draft_orders);
                }
            }
            combined.unconfirmed = combined.matched && !confirmed;
            combined
        }
        Criterion::Not(child) => {
            if evaluate(child, scope).matched {
                return Outcome::default();
            }
            Outcome {
                matched: true,
                absences: vec![format!("Not found: {}", describe(child, scope.knowledge))],
                ..Default::default()
            }
        }
        Criterion::Hook(hooks) => Outcome::leaf(hooks.contains(&scope.hook), Vec::new()),
        Criterion::Named(named) => {
            let mut outcome = evaluate(&named.criterion, scope);
            for line in outcome.evidence.iter_mut().chain(&mut outcome.absences) {
                *line = format!("{}: {line}", named.label);
            }
            outcome
        }
        Criterion::Condition(c) => {
            let set = &scope.knowledge.valuesets[c.valueset];
            let mut unconfirmed = Vec::new();
            let evidence: Vec<String> = scope
                .record
                .conditions
                .iter()
                .filter(|condition| condition.is_active())
                .filter(|condition| {
                    c.onset_at_least_days_ago.is_none_or(|days| {
                        condition
                            .onset
                            .or(condition.recorded)
                            .is_some_and(|onset| onset <= scope.now - Duration::days(days))
                    })
                })
                .filter_map(|condition| {
                    let how = matching::match_concept(set, &condition.concept)?;
                    let site = match &c.body_site {
                        None => String::new(),
                        Some(test) => {
                            let sites = &scope.knowledge.valuesets[test.valueset];
                            match condition
                                .body_sites
                                .iter()
                                .find(|s| matching::match_concept(sites, s).is_some())
                            {
                                Some(found) => format!(", body site {}", found.name()),
                                None if condition.body_sites.is_empty()
                                    && test.when_absent == WhenAbsent::Counts =>
                                {
                                    ", no body site stated".to_owned()
                                }
                                None => return None,
                            }
                        }
                    };
                    unconfirmed.push(safety::is_unconfirmed(condition));
                    let onset = condition
                        .onset
                        .map(|o| format!(", onset {}", o.format("%Y-%m-%d")))
                        .unwrap_or_default();
                    let tentative = match condition.verification_status.as_deref() {
                        Some(status) if condition.is_tentative() => {
                            format!(", verification status {status}")
                        }
                        _ => String::new(),
                    };
                    Some(format!(
                        "Active condition: {} ({how}; {}, clinical status {}{tentative}{onset}{site})",
                        condition.concept.name(),
                        condition.reference,
                        condition.clinical_status.as_deref().unwrap_or("not stated"),
                    ))
                })
                .collect();
            let mut outcome = Outcome::leaf(!evidence.is_empty(), evidence);
            outcome.unconfirmed = !unconfirmed.is_empty() && unconfirmed.iter().all(|u| *u);
            outcome
        }
        Criterion::Medication(c) => {
            let set = &scope.knowledge.valuesets[c.valueset];
            let mut drugs: Vec<String> = Vec::new();
            let mut evidence = Vec::new();
            for medication in &scope.record.medications {
                let counts = if c.ever {
                    medication.counts_as_trial()
                } else {
                    medication.is_active()
                };
                if !counts {
                    continue;
                }
                let Some(found) =
                    matching::match_medication(set, &medication.concept, &medication.ingredients)
                else {
                    continue;
                };
                if !drugs.contains(&found.drug) {
                    drugs.push(found.drug);
                }
                let state = if medication.is_active() {
                    "Active"
                } else {
                    "Past"
                };
                evidence.push(format!(
                    "{state} medication: {} ({}, status {}; matched {})",
                    medication.concept.name(),
                    medication.reference,
                    medication.status,
                    found.how
                ));
            }
            let matched = drugs.len() >= c.min_distinct;
            if matched && c.min_distinct > 1 {
                evidence.push(format!(
                    "{} different drugs: {}",
                    drugs.len(),
                    drugs.join(", ")
                ));
            }
            Outcome::leaf(matched, evidence)
        }
        Criterion::DraftOrder(c) => draft_orders(c, scope),
        Criterion::Lab(c) => lab::evaluate(c, scope.knowledge, scope.record, scope.now),
        Criterion::Age(c) => {
            let Some(age) = scope.record.age_on(scope.now.date_naive()) else {
                return Outcome::default();
            };
            let matched =
                c.at_least.is_none_or(|min| age >= min) && c.below.is_none_or(|max| age < max);
            let born = scope
                .record
                .birth_date
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            Outcome::leaf(matched, vec![format!("Age {age} (born {born})")])
        }
    }
}

/// The draft orders in scope that a `draft_order` criterion matches.
fn draft_orders(c: &DraftOrderCriterion, scope: &Scope<'_>) -> Outcome {
    let set = &scope.knowledge.valuesets[c.valueset];
    let mut outcome = Outcome::default();
    for (index, order) in scope.record.draft_orders.iter().enumerate() {
        if !order.in_scope {
            continue;
        }
        let Some(found) = matching::match_medication(set, &order.concept, &order.ingredients)
        else {
            continue;
        };
        let dose = match (&c.dose, &order.daily_dose) {
            (DoseTest::Any, Ok(dose)) => Some(format!(
                "; total daily dose {} mg ({})",
                trim_number(dose.mg_per_day),
                dose.working
            )),
            (DoseTest::Any, Err(_)) => Some(String::new()),
            (DoseTest::Above(limit), Ok(dose)) if dose.mg_per_day > *limit => Some(format!(
                "; total daily dose **{} mg** ({}), above {} mg",
                trim_number(dose.mg_per_day),
                dose.working,
                trim_number(*limit)
            )),
            (DoseTest::Unknown, Err(why)) => Some(format!(
                "; the total daily dose could not be computed: {why}"
            )),
            _ => None,
        };
        let Some(dose) = dose else { continue };
        if let Some(skip) = safety_skip(c, order, scope) {
            outcome.skipped.push(skip);
            continue;
        }
        if let Some(wanted) = c.reason {
            let set = &scope.knowledge.valuesets[wanted];
            let reasons = order::reasons_of(order, scope.record);
            if !reasons
                .iter()
                .any(|(reason, _)| matching::match_concept(set, reason).is_some())
            {
                continue;
            }
        }
        outcome.matched = true;
        outcome.evidence.push(format!(
            "Order being placed: {} ({}; matched {}{dose})",
            order.concept.name(),
            order.reference,
            found.how
        ));
        outcome.draft_orders.push(index);
    }
    outcome
}

/// Why a draft order that is in the criterion's value set is left out for a safety reason:
/// its route, a medication in `except`, or a reason in `reason_not`.
fn safety_skip(
    c: &DraftOrderCriterion,
    order: &crate::fhir::record::DraftOrder,
    scope: &Scope<'_>,
) -> Option<(SafetyReason, String)> {
    let name = order.concept.name();
    if let Some(except) = c.except {
        let set = &scope.knowledge.valuesets[except];
        if let Some(found) = matching::match_medication(set, &order.concept, &order.ingredients) {
            return Some((
                SafetyReason::Indication,
                format!(
                    "{name} ({}) is in \"{}\" ({}): another use",
                    order.reference, set.title, found.how
                ),
            ));
        }
    }
    if !c.routes.is_empty()
        && let Some(route) = order::route_of(order)
        && !c.routes.contains(&route)
    {
        let wanted: Vec<&str> = c.routes.iter().map(|r| r.as_str()).collect();
        return Some((
            SafetyReason::Route,
            format!(
                "{name} ({}) is given by the {} route; the rule is about {}",
                order.reference,
                route.as_str(),
                wanted.join(" or ")
            ),
        ));
    }
    let unwanted = &scope.knowledge.valuesets[c.reason_not?];
    order::reasons_of(order, scope.record)
        .into_iter()
        .find(|(reason, _)| matching::match_concept(unwanted, reason).is_some())
        .map(|(_, described)| {
            (
                SafetyReason::Indication,
                format!(
                    "{name} ({}) is ordered for another accepted use: {described} (in \"{}\")",
                    order.reference, unwanted.title
                ),
            )
        })
}

/// A number without needless decimals (30, 7.5).
pub fn trim_number(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A short description of a criterion, for evidence of absence.
pub fn describe(criterion: &Criterion, knowledge: &Knowledge) -> String {
    match criterion {
        Criterion::All(children) => join(children, " and ", knowledge),
        Criterion::Any(children) => join(children, " or ", knowledge),
        Criterion::Not(child) => format!("not ({})", describe(child, knowledge)),
        Criterion::Hook(hooks) => format!(
            "the hook is {}",
            hooks
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        Criterion::Named(named) => named.description.clone(),
        Criterion::Condition(c) => {
            let site = c.body_site.as_ref().map_or(String::new(), |site| {
                let absent = match site.when_absent {
                    WhenAbsent::Counts => " or with no site stated",
                    WhenAbsent::DoesNotCount => "",
                };
                let title = &knowledge.valuesets[site.valueset].title;
                format!(" at a site in \"{title}\"{absent}")
            });
            format!(
                "an active condition in \"{}\"{site}",
                knowledge.valuesets[c.valueset].title
            )
        }
        Criterion::Medication(c) => {
            let which = if c.ever {
                "a current or past"
            } else {
                "an active"
            };
            let count = if c.min_distinct > 1 {
                format!("{} different drugs", c.min_distinct)
            } else {
                format!("{which} medication")
            };
            format!("{count} in \"{}\"", knowledge.valuesets[c.valueset].title)
        }
        Criterion::DraftOrder(c) => {
            let dose = match c.dose {
                DoseTest::Any => String::new(),
                DoseTest::Above(limit) => format!(" above {} mg a day", trim_number(limit)),
                DoseTest::Unknown => " whose daily dose cannot be computed".to_owned(),
            };
            let mut limits = Vec::new();
            if !c.routes.is_empty() {
                let routes: Vec<&str> = c.routes.iter().map(|r| r.as_str()).collect();
                limits.push(format!("given by the {} route", routes.join(" or ")));
            }
            if let Some(set) = c.reason {
                limits.push(format!(
                    "ordered for a reason in \"{}\"",
                    knowledge.valuesets[set].title
                ));
            }
            if let Some(set) = c.reason_not {
                limits.push(format!(
                    "not ordered for a reason in \"{}\"",
                    knowledge.valuesets[set].title
                ));
            }
            if let Some(set) = c.except {
                limits.push(format!("not in \"{}\"", knowledge.valuesets[set].title));
            }
            let limits = if limits.is_empty() {
                String::new()
            } else {
                format!(" ({})", limits.join(", "))
            };
            format!(
                "an order being placed in \"{}\"{dose}{limits}",
                knowledge.valuesets[c.valueset].title
            )
        }
        Criterion::Lab(c) => {
            let analyte = &knowledge.analytes[c.analyte];
            let name = lower_first(&analyte.display);
            let window = match c.within_days {
                Some(days) => format!("in the last {days} days"),
                None => "ever".to_owned(),
            };
            let range = if c.lab_range {
                " (or the laboratory's own limit)"
            } else {
                ""
            };
            match &c.test {
                LabTest::Present => format!("a {name} result {window}"),
                LabTest::Missing => format!("no {name} result {window}"),
                LabTest::Below(t) | LabTest::Above(t) => {
                    let which = if c.any_result { "any" } else { "the latest" };
                    let direction = if matches!(c.test, LabTest::Below(_)) {
                        "below"
                    } else {
                        "above"
                    };
                    format!(
                        "{which} {name} {window} is {direction} {}{range}",
                        analyte.format(*t)
                    )
                }
                LabTest::Fall {
                    amount,
                    within_hours,
                } => format!(
                    "{name} fell by at least {} between two results at most {within_hours} hours apart {window}",
                    analyte.format(*amount)
                ),
            }
        }
        Criterion::Age(c) => match (c.at_least, c.below) {
            (Some(min), Some(max)) => format!("age {min} to {}", max - 1),
            (Some(min), None) => format!("age {min} or more"),
            (None, Some(max)) => format!("age under {max}"),
            (None, None) => "any age".to_owned(),
        },
    }
}

fn join(children: &[Criterion], separator: &str, knowledge: &Knowledge) -> String {
    children
        .iter()
        .map(|child| match child {
            Criterion::All(_) | Criterion::Any(_) => format!("({})", describe(child, knowledge)),
            _ => describe(child, knowledge),
        })
        .collect::<Vec<_>>()
        .join(separator)
}

/// "Serum magnesium" becomes "serum magnesium"; "HbA1c" and "eGFR" stay as they are.
pub(crate) fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(text.chars().skip(1)).collect()
        }
        _ => text.to_owned(),
    }
}
