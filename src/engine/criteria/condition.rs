//! `condition`: an active condition in a value set, optionally with an onset
//! long enough ago and a body site in another value set.

use chrono::Duration;

use super::super::evidence::{BodySite, ConditionFact, Evidence, Fact};
use super::super::{Outcome, Scope, matching, safety};
use super::{EvalError, valueset};
use crate::knowledge::criteria::{ConditionCriterion, WhenAbsent};

/// The active conditions that match. The outcome is unconfirmed when every one that
/// matched is provisional, differential or unconfirmed.
pub fn evaluate(c: &ConditionCriterion, scope: &Scope<'_>) -> Result<Outcome, EvalError> {
    let set = valueset(scope, c.valueset)?;
    let sites = c
        .body_site
        .as_ref()
        .map(|test| valueset(scope, test.valueset).map(|set| (test, set)))
        .transpose()?;
    let mut unconfirmed = Vec::new();
    let evidence: Vec<Evidence> = scope
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
            let matched = matching::match_concept(set, &condition.concept)?;
            let site = match sites {
                None => None,
                Some((test, sites)) => match condition
                    .body_sites
                    .iter()
                    .find(|s| matching::match_concept(sites, s).is_some())
                {
                    Some(found) => Some(BodySite::Found(found.name())),
                    None if condition.body_sites.is_empty()
                        && test.when_absent == WhenAbsent::Counts =>
                    {
                        Some(BodySite::NotStated)
                    }
                    None => return None,
                },
            };
            unconfirmed.push(safety::is_unconfirmed(condition));
            Some(Evidence::from(Fact::Condition(ConditionFact {
                name: condition.concept.name(),
                reference: condition.reference.clone(),
                matched,
                clinical_status: condition.clinical_status.clone(),
                tentative_status: condition
                    .verification_status
                    .clone()
                    .filter(|_| condition.is_tentative()),
                onset: condition.onset,
                site,
            })))
        })
        .collect();
    let mut outcome = Outcome::leaf(!evidence.is_empty(), evidence);
    outcome.unconfirmed = !unconfirmed.is_empty() && unconfirmed.iter().all(|u| *u);
    Ok(outcome)
}
