//! Laboratory criteria: the latest usable result of an analyte within a
//! look-back window, compared with the result's own reference range (or
//! interpretation) or the default threshold. Results that cannot be used are
//! listed, never guessed.
//!
//! Comparisons are made in the unit the laboratory reported, so a value equal
//! to a limit in its own unit stays equal: the limit is converted into that
//! unit and rounded to the reported precision (the value's own decimals, and at
//! least the decimals that a step of the analyte's canonical precision takes in
//! that unit). 0.70 mmol/L magnesium becomes 1.7 mg/dL and 1.4 meq/L, so
//! 1.7 mg/dL and 1.4 meq/L are not below it, while 1.69 mg/dL is compared with
//! 1.70 and is below it.
//! A `valueQuantity.comparator` bounds the true value on one side: "<0.5" is
//! below 0.50, ">=3.6" is not below 3.5, and "<4.0" cannot be said to be below
//! 3.5: the criterion is undecided (`Outcome::inconclusive`), so neither it nor
//! its `not` matches, and the evidence says why.

use chrono::{DateTime, Duration, Utc};

use super::super::evidence::{
    Amount, Decision, Direction, Evidence, Fact, LabReading, Unusable, UnusableReason,
};
use super::super::{Outcome, Scope};
use super::EvalError;
use crate::fhir::record::{Measured, ObservationEntry};
use crate::knowledge::analyte::Analyte;
use crate::knowledge::criteria::{LabCriterion, LabTest};

struct UsableResult<'a> {
    observation: &'a ObservationEntry,
    time: DateTime<Utc>,
    canonical: f64,
}

/// Evaluates a lab criterion.
pub fn evaluate(criterion: &LabCriterion, scope: &Scope<'_>) -> Result<Outcome, EvalError> {
    let analyte =
        scope
            .knowledge
            .analytes
            .get(criterion.analyte)
            .ok_or(EvalError::MissingKnowledge {
                kind: "analyte",
                index: criterion.analyte,
            })?;
    let (mut results, mut unusable) = usable_results(criterion, analyte, scope)?;
    results.sort_by_key(|r| std::cmp::Reverse(r.time));
    let mut undecided = Vec::new();
    let (matched, mut evidence) = match &criterion.test {
        LabTest::Missing => match results.first() {
            None => (
                true,
                vec![Fact::NoResult {
                    analyte: analyte.display.clone(),
                    within_days: criterion.within_days,
                }],
            ),
            Some(_) => (false, Vec::new()),
        },
        LabTest::Present => match results.first() {
            Some(latest) => (
                true,
                vec![Fact::LabResult {
                    result: reading(analyte, latest),
                    decided_by: None,
                }],
            ),
            None => (false, Vec::new()),
        },
        LabTest::Below(threshold) | LabTest::Above(threshold) => {
            let direction = if matches!(criterion.test, LabTest::Below(_)) {
                Direction::Below
            } else {
                Direction::Above
            };
            let candidates: &[UsableResult<'_>] = if criterion.any_result {
                &results
            } else {
                results.get(..1).unwrap_or(&[])
            };
            let mut found = (false, Vec::new());
            for result in candidates {
                match compare(analyte, result, *threshold, criterion.lab_range, direction) {
                    Comparison::Matched(fact) => {
                        found = (true, vec![fact]);
                        break;
                    }
                    Comparison::NotMatched => {}
                    Comparison::Inconclusive(why) => {
                        undecided.push(Evidence::from(Fact::UnusableResult(why.clone())));
                        unusable.push(why);
                    }
                }
            }
            found
        }
        LabTest::Fall {
            amount,
            within_hours,
        } => find_fall(analyte, &results, *amount, *within_hours, &mut unusable),
    };
    if matched {
        evidence.extend(unusable.into_iter().map(Fact::UnusableResult));
    }
    let mut outcome = Outcome::leaf(matched, evidence.into_iter().map(Evidence::from).collect());
    if !matched {
        outcome.inconclusive = undecided;
    }
    Ok(outcome)
}

/// The results of the analyte in the window that can be compared, and why the others cannot.
fn usable_results<'r>(
    criterion: &LabCriterion,
    analyte: &Analyte,
    scope: &Scope<'r>,
) -> Result<(Vec<UsableResult<'r>>, Vec<Unusable>), EvalError> {
    let set = super::valueset(scope, analyte.valueset)?;
    let window_start = criterion
        .within_days
        .map(|days| scope.now - Duration::days(days));
    let mut usable = Vec::new();
    let mut unusable = Vec::new();
    for observation in &scope.record.observations {
        if !observation
            .code
            .codings
            .iter()
            .any(|c| set.match_code(&c.system, &c.code).is_some())
            || !observation.has_usable_status()
        {
            continue;
        }
        let not_used = |reason| Unusable {
            analyte: analyte.display.clone(),
            reference: observation.reference.clone(),
            reason,
        };
        if let Some(problem) = &observation.unreadable {
            unusable.push(not_used(UnusableReason::Unreadable(problem.clone())));
            continue;
        }
        let Some(time) = observation.time else {
            unusable.push(not_used(UnusableReason::NoTime));
            continue;
        };
        if window_start.is_some_and(|start| time < start) {
            continue;
        }
        let Some(value) = &observation.value else {
            unusable.push(not_used(UnusableReason::NoValue));
            continue;
        };
        let unit = value.unit.as_deref().unwrap_or("");
        let Some(canonical) = analyte.to_canonical(value.value, unit) else {
            unusable.push(not_used(UnusableReason::Unit {
                value: value.value,
                unit: unit.to_owned(),
                wanted: analyte.display_unit.clone(),
            }));
            continue;
        };
        if !canonical.is_finite() {
            return Err(EvalError::NotFinite {
                what: format!("the {} value", analyte.display.to_lowercase()),
                reference: observation.reference.clone(),
                value: canonical,
            });
        }
        usable.push(UsableResult {
            observation,
            time,
            canonical,
        });
    }
    Ok((usable, unusable))
}

/// A fall that ends at the newest result: an earlier result at most `within_hours` before the
/// newest one that is higher by `amount` or more. A newer result after the low one ends the
/// fall, so the evidence always shows the newest value. `results` is newest first. Results
/// sent with a comparator bound the value on one side only and are not used for a fall.
fn find_fall(
    analyte: &Analyte,
    results: &[UsableResult<'_>],
    amount: f64,
    within_hours: i64,
    unusable: &mut Vec<Unusable>,
) -> (bool, Vec<Fact>) {
    let Some(newest) = results.first() else {
        return (false, Vec::new());
    };
    if has_comparator(newest) {
        unusable.push(Unusable {
            analyte: analyte.display.clone(),
            reference: newest.observation.reference.clone(),
            reason: UnusableReason::BoundForFall {
                result: reading(analyte, newest),
            },
        });
        return (false, Vec::new());
    }
    for earlier in &results[1..] {
        if newest.time - earlier.time > Duration::hours(within_hours) {
            break;
        }
        if has_comparator(earlier) {
            continue;
        }
        let fall = earlier.canonical - newest.canonical;
        if fall >= amount - 1e-9 {
            let hours = (newest.time - earlier.time).num_minutes() as f64 / 60.0;
            return (
                true,
                vec![Fact::LabFall {
                    earlier: reading(analyte, earlier),
                    newest: reading(analyte, newest),
                    fall: amount_of(analyte, fall),
                    hours,
                }],
            );
        }
    }
    (false, Vec::new())
}

fn has_comparator(result: &UsableResult<'_>) -> bool {
    result
        .observation
        .value
        .as_ref()
        .is_some_and(|v| v.comparator.is_some())
}

/// Whether a result is on the tested side of a limit.
enum Comparison {
    /// It is, with its evidence.
    Matched(Fact),
    /// It is not.
    NotMatched,
    /// Its comparator leaves both sides possible.
    Inconclusive(Unusable),
}

/// Where a reported value lies relative to a limit in the same unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// On the tested side (below for `Below`, above for `Above`).
    Beyond,
    /// At the limit or on the other side.
    NotBeyond,
    /// The comparator allows both.
    Unknown,
}

/// Compares a value as sent (with its comparator) with `limit`, both in the reported unit.
fn side_of(value: f64, comparator: Option<&str>, limit: f64, direction: Direction) -> Side {
    let equal = (value - limit).abs() <= 1e-9 * value.abs().max(limit.abs()).max(1.0);
    // Mirror "above" onto "below" so one table serves both directions.
    let (value, limit, comparator) = match direction {
        Direction::Below => (value, limit, comparator),
        Direction::Above => (
            -value,
            -limit,
            comparator.map(|c| match c {
                "<" => ">",
                "<=" => ">=",
                ">" => "<",
                ">=" => "<=",
                other => other,
            }),
        ),
    };
    let below = value < limit && !equal;
    let at_or_below = below || equal;
    match comparator {
        None => {
            if below {
                Side::Beyond
            } else {
                Side::NotBeyond
            }
        }
        // The true value is under `value`.
        Some("<") if at_or_below => Side::Beyond,
        // The true value is at most `value`.
        Some("<=") if below => Side::Beyond,
        // The true value is over (or at least) `value`.
        Some(">" | ">=") if !below => Side::NotBeyond,
        Some(_) => Side::Unknown,
    }
}

/// `limit` (a canonical value) in the reported `unit`, rounded to the precision of the
/// reported `value`; `None` when the unit is not one of the analyte's.
fn limit_in_unit(analyte: &Analyte, canonical_limit: f64, unit: &str, value: f64) -> Option<f64> {
    let offset = analyte.to_canonical(0.0, unit)?;
    let factor = analyte.to_canonical(1.0, unit)? - offset;
    if factor <= 0.0 {
        return None;
    }
    let in_unit = (canonical_limit - offset) / factor;
    // One step of the canonical precision, in the reported unit: 0.01 mmol/L is 0.024 mg/dL,
    // so magnesium in mg/dL is compared to at least one decimal.
    let step = 10f64.powi(-(analyte.decimals as i32)) / factor;
    let unit_decimals = (-step.log10() + 1e-9).floor().max(0.0) as i32;
    let decimals = unit_decimals.max(decimals_of(value));
    let scale = 10f64.powi(decimals);
    Some((in_unit * scale).round() / scale)
}

/// The decimals of a value as sent (`1.7` has one; trailing zeros of `1.70` are not kept by
/// the parser, which only makes the comparison coarser by that zero).
fn decimals_of(value: f64) -> i32 {
    let text = format!("{value}");
    let decimals = text
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len());
    decimals.min(9) as i32
}

/// A laboratory limit (`referenceRange.low/high`) in the result's unit: as sent when the
/// units agree, else converted and rounded like a threshold.
fn range_limit_in_unit(analyte: &Analyte, limit: &Measured, unit: &str, value: f64) -> Option<f64> {
    let limit_unit = limit.unit.as_deref().unwrap_or("");
    if limit_unit.trim().eq_ignore_ascii_case(unit.trim()) {
        return Some(limit.value);
    }
    let canonical = analyte.to_canonical(limit.value, limit_unit)?;
    limit_in_unit(analyte, canonical, unit, value)
}

fn compare(
    analyte: &Analyte,
    result: &UsableResult<'_>,
    threshold: f64,
    lab_range: bool,
    direction: Direction,
) -> Comparison {
    let observation = result.observation;
    let Some(value) = observation.value.as_ref() else {
        return Comparison::NotMatched;
    };
    let unit = value.unit.as_deref().unwrap_or("");
    let range_limit = match direction {
        Direction::Below => observation.range_low.as_ref(),
        Direction::Above => observation.range_high.as_ref(),
    }
    .and_then(|limit| {
        let canonical = analyte.to_canonical(limit.value, limit.unit.as_deref().unwrap_or(""))?;
        Some((
            range_limit_in_unit(analyte, limit, unit, value.value)?,
            canonical,
        ))
    });
    let (limit, decision) = if lab_range && let Some((limit, canonical)) = range_limit {
        let decision = Decision::LabLimit {
            direction,
            limit: amount_of(analyte, canonical),
        };
        (limit, decision)
    } else {
        if lab_range && let Some(flagged) = compare_flags(analyte, result, direction) {
            return flagged;
        }
        let Some(limit) = limit_in_unit(analyte, threshold, unit, value.value) else {
            return Comparison::NotMatched;
        };
        let decision = Decision::Threshold {
            direction,
            limit: amount_of(analyte, threshold),
        };
        (limit, decision)
    };
    match side_of(value.value, value.comparator.as_deref(), limit, direction) {
        Side::Beyond => Comparison::Matched(Fact::LabResult {
            result: reading(analyte, result),
            decided_by: Some(decision),
        }),
        Side::NotBeyond => Comparison::NotMatched,
        Side::Unknown => Comparison::Inconclusive(Unusable {
            analyte: analyte.display.clone(),
            reference: observation.reference.clone(),
            reason: UnusableReason::Inconclusive {
                result: reading(analyte, result),
                decision,
            },
        }),
    }
}

/// The laboratory's interpretation flags decide when there is no reference range; `None` when
/// there are no flags either.
fn compare_flags(
    analyte: &Analyte,
    result: &UsableResult<'_>,
    direction: Direction,
) -> Option<Comparison> {
    let flags: Vec<String> = result
        .observation
        .interpretation
        .iter()
        .filter(|c| matches!(c.as_str(), "L" | "LL" | "H" | "HH" | "N"))
        .cloned()
        .collect();
    if flags.is_empty() {
        return None;
    }
    let matched = flags.iter().any(|f| match direction {
        Direction::Below => matches!(f.as_str(), "L" | "LL"),
        Direction::Above => matches!(f.as_str(), "H" | "HH"),
    });
    if !matched {
        return Some(Comparison::NotMatched);
    }
    Some(Comparison::Matched(Fact::LabResult {
        result: reading(analyte, result),
        decided_by: Some(Decision::Flags(flags)),
    }))
}

/// A canonical value of the analyte as an [`Amount`].
fn amount_of(analyte: &Analyte, value: f64) -> Amount {
    Amount {
        value,
        unit: analyte.display_unit.clone(),
        decimals: analyte.decimals,
    }
}

/// The result as evidence: as reported and as compared.
fn reading(analyte: &Analyte, result: &UsableResult<'_>) -> LabReading {
    let observation = result.observation;
    let reported: Option<Measured> = observation.value.clone();
    let in_canonical_unit = reported
        .as_ref()
        .and_then(|v| v.unit.as_deref())
        .is_some_and(|u| u.trim().eq_ignore_ascii_case(&analyte.canonical_unit));
    LabReading {
        analyte: analyte.display.clone(),
        reference: observation.reference.clone(),
        loinc: observation
            .code
            .codings
            .iter()
            .filter(|c| c.system == "http://loinc.org")
            .map(|c| c.code.clone())
            .collect(),
        time: result.time,
        reported,
        canonical: amount_of(analyte, result.canonical),
        in_canonical_unit,
        preliminary: observation.is_preliminary(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::analyte::RawAnalyte;

    fn magnesium() -> Analyte {
        let raw: RawAnalyte = toml::from_str(
            r#"display = "Serum magnesium"
valueset = "lab-magnesium"
canonical_unit = "mmol/L"
decimals = 2
units = { "mmol/L" = 1.0, "mg/dL" = 0.4114, "meq/L" = 0.5 }"#,
        )
        .unwrap();
        Analyte::from_raw("magnesium", raw, |_| Some(0)).unwrap()
    }

    fn below(value: f64, unit: &str, threshold: f64) -> bool {
        let limit = limit_in_unit(&magnesium(), threshold, unit, value).unwrap();
        side_of(value, None, limit, Direction::Below) == Side::Beyond
    }

    #[test]
    fn a_magnesium_equal_to_the_threshold_in_its_own_unit_is_not_below_it() {
        assert!(!below(1.7, "mg/dL", 0.70));
        assert!(!below(1.4, "meq/L", 0.70));
        assert!(!below(0.7, "mmol/L", 0.70));
        assert!(!below(1.2, "mg/dL", 0.50));
        assert!(!below(1.0, "meq/L", 0.50));
    }

    #[test]
    fn a_magnesium_one_step_under_the_threshold_in_its_own_unit_is_below_it() {
        assert!(below(1.6, "mg/dL", 0.70));
        assert!(below(1.69, "mg/dL", 0.70));
        assert!(below(1.3, "meq/L", 0.70));
        assert!(below(0.69, "mmol/L", 0.70));
        assert!(below(1.0, "mg/dL", 0.50));
        assert!(!below(1.8, "mg/dL", 0.70));
        assert!(!below(0.71, "mmol/L", 0.70));
    }

    #[test]
    fn a_less_than_result_at_or_under_the_limit_is_below_it() {
        assert_eq!(side_of(0.5, Some("<"), 0.5, Direction::Below), Side::Beyond);
        assert_eq!(side_of(0.5, Some("<"), 0.7, Direction::Below), Side::Beyond);
        assert_eq!(
            side_of(0.5, Some("<="), 0.5, Direction::Below),
            Side::Unknown
        );
        assert_eq!(
            side_of(0.4, Some("<="), 0.5, Direction::Below),
            Side::Beyond
        );
    }

    #[test]
    fn a_bound_on_the_wrong_side_of_the_limit_is_inconclusive() {
        assert_eq!(
            side_of(4.0, Some("<"), 3.5, Direction::Below),
            Side::Unknown
        );
        assert_eq!(
            side_of(3.0, Some(">"), 3.5, Direction::Below),
            Side::Unknown
        );
        assert_eq!(
            side_of(3.0, Some("<"), 3.5, Direction::Above),
            Side::NotBeyond
        );
        assert_eq!(side_of(4.0, Some(">"), 3.5, Direction::Above), Side::Beyond);
        assert_eq!(
            side_of(3.5, Some(">="), 3.5, Direction::Above),
            Side::Unknown
        );
    }

    #[test]
    fn a_greater_than_result_at_or_over_the_limit_is_not_below_it() {
        assert_eq!(
            side_of(3.6, Some(">="), 3.5, Direction::Below),
            Side::NotBeyond
        );
        assert_eq!(
            side_of(3.5, Some(">"), 3.5, Direction::Below),
            Side::NotBeyond
        );
        assert_eq!(
            side_of(3.5, Some(">="), 3.5, Direction::Below),
            Side::NotBeyond
        );
    }

    #[test]
    fn the_limit_is_rounded_to_the_decimals_of_the_reported_value() {
        let mg = magnesium();
        assert_eq!(limit_in_unit(&mg, 0.70, "mg/dL", 1.7), Some(1.7));
        assert_eq!(limit_in_unit(&mg, 0.70, "mg/dL", 1.69), Some(1.70));
        assert_eq!(limit_in_unit(&mg, 0.50, "mg/dL", 1.0), Some(1.2));
        assert_eq!(limit_in_unit(&mg, 0.70, "mmol/L", 0.5), Some(0.70));
        assert_eq!(limit_in_unit(&mg, 0.70, "mg/L", 17.0), None);
        assert_eq!(decimals_of(1.0), 0);
        assert_eq!(decimals_of(0.055), 3);
    }
}
