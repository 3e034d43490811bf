//! `draft_order`: an order being placed (in the hook's draft orders and in
//! scope) whose medication is in a value set, with a dose test, and limited by
//! route, reason and exceptions. An order left out for a safety reason (another
//! route, another accepted use) is kept in `Outcome::skipped` with the reason.

use super::super::evidence::{DoseFact, Evidence, Fact, OrderFact};
use super::super::{Outcome, Scope, matching, order};
use super::{EvalError, valueset};
use crate::fhir::record::DraftOrder;
use crate::knowledge::criteria::{DoseTest, DraftOrderCriterion, Release};
use crate::knowledge::rule::SafetyReason;

/// The draft orders in scope that the criterion matches.
pub fn evaluate(c: &DraftOrderCriterion, scope: &Scope<'_>) -> Result<Outcome, EvalError> {
    let set = valueset(scope, c.valueset)?;
    let mut outcome = Outcome::default();
    for (index, order) in scope.record.draft_orders.iter().enumerate() {
        if !order.in_scope {
            continue;
        }
        let Some(found) = matching::match_medication(set, &order.concept, &order.ingredients)
        else {
            continue;
        };
        if let Some(release) = c.release {
            let extended = scope
                .knowledge
                .products
                .is_extended_release(&order.concept.name());
            if extended != (release == Release::Extended) {
                continue;
            }
        }
        if let Ok(dose) = &order.daily_dose
            && !dose.mg_per_day.is_finite()
        {
            return Err(EvalError::NotFinite {
                what: "the total daily dose".to_owned(),
                reference: order.reference.clone(),
                value: dose.mg_per_day,
            });
        }
        let dose = match (&c.dose, &order.daily_dose) {
            (DoseTest::Any, Ok(dose)) => DoseFact::Daily {
                mg_per_day: dose.mg_per_day,
                working: dose.working.clone(),
            },
            (DoseTest::Any, Err(_)) => DoseFact::NotShown,
            (DoseTest::Above(limit), Ok(dose)) if dose.mg_per_day > *limit => DoseFact::Above {
                mg_per_day: dose.mg_per_day,
                working: dose.working.clone(),
                limit: *limit,
            },
            (DoseTest::Unknown, Err(why)) => DoseFact::Unknown(why.clone()),
            _ => continue,
        };
        if let Some(skip) = safety_skip(c, order, scope)? {
            outcome.skipped.push(skip);
            continue;
        }
        if let Some(wanted) = c.reason {
            let set = valueset(scope, wanted)?;
            let reasons = order::reasons_of(order, scope.record);
            if !reasons
                .iter()
                .any(|(reason, _)| matching::match_concept(set, reason).is_some())
            {
                continue;
            }
        }
        outcome.matched = true;
        outcome
            .evidence
            .push(Evidence::from(Fact::DraftOrder(OrderFact {
                name: order.concept.name(),
                drug: found.drug_name(),
                reference: order.reference.clone(),
                matched: found.how,
                dose,
            })));
        outcome.draft_orders.push(index);
    }
    Ok(outcome)
}

/// Why a draft order that is in the criterion's value set is left out for a safety reason:
/// its route, a medication in `except`, or a reason in `reason_not`.
fn safety_skip(
    c: &DraftOrderCriterion,
    order: &DraftOrder,
    scope: &Scope<'_>,
) -> Result<Option<(SafetyReason, String)>, EvalError> {
    let name = order.concept.name();
    if let Some(except) = c.except {
        let set = valueset(scope, except)?;
        if matching::match_medication(set, &order.concept, &order.ingredients).is_some() {
            return Ok(Some((
                SafetyReason::Indication,
                format!(
                    "{name} ({}) is in \"{}\": another use",
                    order.reference, set.title
                ),
            )));
        }
    }
    if !c.routes.is_empty()
        && let Some(route) = order::route_of(order, &scope.knowledge.products)
        && !c.routes.contains(&route)
    {
        let wanted: Vec<&str> = c.routes.iter().map(|r| r.as_str()).collect();
        return Ok(Some((
            SafetyReason::Route,
            format!(
                "{name} ({}) is given by the {} route; the rule is about {}",
                order.reference,
                route.as_str(),
                wanted.join(" or ")
            ),
        )));
    }
    let Some(reason_not) = c.reason_not else {
        return Ok(None);
    };
    let unwanted = valueset(scope, reason_not)?;
    Ok(order::reasons_of(order, scope.record)
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
        }))
}
