//! `age`: the patient's age at evaluation time, from `Patient.birthDate`.

use super::super::evidence::{Evidence, Fact};
use super::super::{Outcome, Scope};
use crate::knowledge::criteria::AgeCriterion;

/// Whether the age is in the criterion's range; no birth date never matches.
pub fn evaluate(c: &AgeCriterion, scope: &Scope<'_>) -> Outcome {
    let Some(age) = scope.record.age_on(scope.now.date_naive()) else {
        return Outcome::default();
    };
    let matched = c.at_least.is_none_or(|min| age >= min) && c.below.is_none_or(|max| age < max);
    Outcome::leaf(
        matched,
        vec![Evidence::from(Fact::Age {
            years: age,
            born: scope.record.birth_date,
        })],
    )
}
