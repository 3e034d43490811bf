//! Laboratory criteria: the latest usable result of an analyte within a
//! look-back window, converted to the analyte's canonical unit, compared with
//! the result's own reference range (or interpretation) or the default threshold.
//! Results that cannot be used are listed, never guessed.

use chrono::{DateTime, Duration, Utc};

use super::Outcome;
use crate::fhir::record::{ObservationEntry, PatientRecord};
use crate::knowledge::Knowledge;
use crate::knowledge::analyte::Analyte;
use crate::knowledge::criteria::{LabCriterion, LabTest};

struct UsableResult<'a> {
    observation: &'a ObservationEntry,
    time: DateTime<Utc>,
    canonical: f64,
}

/// Evaluates a lab criterion.
pub fn evaluate(
    criterion: &LabCriterion,
    knowledge: &Knowledge,
    record: &PatientRecord,
    now: DateTime<Utc>,
) -> Outcome {
    let analyte = &knowledge.analytes[criterion.analyte];
    let (mut results, unusable) = usable_results(criterion, knowledge, record, now);
    results.sort_by_key(|r| std::cmp::Reverse(r.time));
    let (matched, mut evidence) = match &criterion.test {
        LabTest::Missing => match results.first() {
            None => {
                let window = match criterion.within_days {
                    Some(days) => format!("in the last {days} days"),
                    None => "on record".to_owned(),
                };
                (
                    true,
                    vec![format!(
                        "No usable {} result {window}",
                        super::lower_first(&analyte.display)
                    )],
                )
            }
            Some(_) => (false, Vec::new()),
        },
        LabTest::Present => match results.first() {
            Some(latest) => (true, vec![describe(analyte, latest, "")]),
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
            candidates
                .iter()
                .map(|r| compare(analyte, r, *threshold, criterion.lab_range, direction))
                .find(|(matched, _)| *matched)
                .unwrap_or((false, Vec::new()))
        }
        LabTest::Fall {
            amount,
            within_hours,
        } => find_fall(analyte, &results, *amount, *within_hours),
    };
    if matched {
        evidence.extend(unusable);
    }
    Outcome::leaf(matched, evidence)
}

/// The results of the analyte in the window that can be compared, and why the others cannot.
fn usable_results<'r>(
    criterion: &LabCriterion,
    knowledge: &Knowledge,
    record: &'r PatientRecord,
    now: DateTime<Utc>,
) -> (Vec<UsableResult<'r>>, Vec<String>) {
    let analyte = &knowledge.analytes[criterion.analyte];
    let set = &knowledge.valuesets[analyte.valueset];
    let window_start = criterion.within_days.map(|days| now - Duration::days(days));
    let mut usable = Vec::new();
    let mut unusable = Vec::new();
    for observation in &record.observations {
        if !observation
            .code
            .codings
            .iter()
            .any(|c| set.match_code(&c.system, &c.code).is_some())
            || !observation.has_usable_status()
        {
            continue;
        }
        let name = format!("{} result {}", analyte.display, observation.reference);
        if let Some(problem) = &observation.unreadable {
            unusable.push(format!("{name} was not used: {problem}"));
            continue;
        }
        let Some(time) = observation.time else {
            unusable.push(format!(
                "{name} was not used: it has no effective time or issued time"
            ));
            continue;
        };
        if window_start.is_some_and(|start| time < start) {
            continue;
        }
        let Some(value) = &observation.value else {
            unusable.push(format!("{name} was not used: it has no valueQuantity"));
            continue;
        };
        let unit = value.unit.as_deref().unwrap_or("");
        let Some(canonical) = analyte.to_canonical(value.value, unit) else {
            unusable.push(format!(
                "{name} ({} {unit}) was not used: the unit '{unit}' cannot be converted to {}",
                value.value, analyte.display_unit
            ));
            continue;
        };
        usable.push(UsableResult {
            observation,
            time,
            canonical,
        });
    }
    (usable, unusable)
}

/// The most recent pair of results at most `within_hours` apart where the later is lower by `amount` or more.
/// `results` is newest first.
fn find_fall(
    analyte: &Analyte,
    results: &[UsableResult<'_>],
    amount: f64,
    within_hours: i64,
) -> (bool, Vec<String>) {
    for (i, later) in results.iter().enumerate() {
        for earlier in &results[i + 1..] {
            if later.time - earlier.time > Duration::hours(within_hours) {
                break;
            }
            let fall = earlier.canonical - later.canonical;
            if fall >= amount - 1e-9 {
                let hours = (later.time - earlier.time).num_minutes() as f64 / 60.0;
                return (
                    true,
                    vec![
                        describe(analyte, earlier, ""),
                        describe(
                            analyte,
                            later,
                            &format!(", a fall of {} in {hours:.0} hours", analyte.format(fall)),
                        ),
                    ],
                );
            }
        }
    }
    (false, Vec::new())
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Below,
    Above,
}

fn compare(
    analyte: &Analyte,
    result: &UsableResult<'_>,
    threshold: f64,
    lab_range: bool,
    direction: Direction,
) -> (bool, Vec<String>) {
    let observation = result.observation;
    let range_limit = match direction {
        Direction::Below => observation.range_low.as_ref(),
        Direction::Above => observation.range_high.as_ref(),
    }
    .and_then(|limit| analyte.to_canonical(limit.value, limit.unit.as_deref().unwrap_or("")));
    let word = match direction {
        Direction::Below => "below",
        Direction::Above => "above",
    };
    if lab_range && let Some(limit) = range_limit {
        let matched = match direction {
            Direction::Below => result.canonical < limit,
            Direction::Above => result.canonical > limit,
        };
        if !matched {
            // Evidence of a criterion that did not match is never shown: skip building it.
            return (false, Vec::new());
        }
        let why = format!(
            ", {word} the laboratory's reference limit of {}",
            analyte.format(limit)
        );
        return (matched, vec![describe(analyte, result, &why)]);
    }
    if lab_range {
        let flags: Vec<&str> = observation
            .interpretation
            .iter()
            .map(String::as_str)
            .filter(|c| matches!(*c, "L" | "LL" | "H" | "HH" | "N"))
            .collect();
        if !flags.is_empty() {
            let matched = flags.iter().any(|f| match direction {
                Direction::Below => matches!(*f, "L" | "LL"),
                Direction::Above => matches!(*f, "H" | "HH"),
            });
            if !matched {
                return (false, Vec::new());
            }
            let why = format!(", flagged {} by the laboratory", flags.join("/"));
            return (matched, vec![describe(analyte, result, &why)]);
        }
    }
    let matched = match direction {
        Direction::Below => result.canonical < threshold,
        Direction::Above => result.canonical > threshold,
    };
    if !matched {
        return (false, Vec::new());
    }
    let why = format!(", {word} the threshold of {}", analyte.format(threshold));
    (matched, vec![describe(analyte, result, &why)])
}

fn describe(analyte: &Analyte, result: &UsableResult<'_>, why: &str) -> String {
    let observation = result.observation;
    let value = observation.value.as_ref();
    let reported = value
        .map(|v| {
            format!(
                "{}{} {}",
                v.comparator.as_deref().unwrap_or(""),
                v.value,
                v.unit.as_deref().unwrap_or("")
            )
        })
        .unwrap_or_default();
    let canonical = analyte.format(result.canonical);
    let same_unit = value.and_then(|v| v.unit.as_deref()) == Some(analyte.canonical_unit.as_str());
    let shown = if same_unit {
        format!("**{canonical}**")
    } else {
        format!("**{canonical}** (reported as {})", reported.trim())
    };
    let codes: Vec<String> = observation
        .code
        .codings
        .iter()
        .filter(|c| c.system == "http://loinc.org")
        .map(|c| format!("LOINC {}", c.code))
        .collect();
    format!(
        "{} {shown} on {}{why} ({}{}{})",
        analyte.display,
        result.time.format("%Y-%m-%d"),
        codes.join(", "),
        if codes.is_empty() { "" } else { "; " },
        observation.reference
    )
}
