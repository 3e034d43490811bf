//! `medication`: an active (or, with `ever`, a current or past) medication in a
//! value set, optionally at least `min_distinct` different drugs of it.

use super::super::evidence::{Evidence, Fact, MedicationFact};
use super::super::{Outcome, Scope, matching};
use super::{EvalError, valueset};
use crate::knowledge::criteria::MedicationCriterion;

/// The medications that match, and the different drugs among them.
pub fn evaluate(c: &MedicationCriterion, scope: &Scope<'_>) -> Result<Outcome, EvalError> {
    let set = valueset(scope, c.valueset)?;
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
        evidence.push(Evidence::from(Fact::Medication(MedicationFact {
            active: medication.is_active(),
            name: medication.concept.name(),
            reference: medication.reference.clone(),
            status: medication.status.clone(),
            matched: found.how,
        })));
    }
    let matched = drugs.len() >= c.min_distinct;
    if matched && c.min_distinct > 1 {
        evidence.push(Evidence::from(Fact::DistinctDrugs(drugs)));
    }
    Ok(Outcome::leaf(matched, evidence))
}
