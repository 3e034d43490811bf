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
    let set = &knowledge.valuesets[analyte.valueset];
    let window_start = now - Duration::days(criterion.within_days);
    let mut unusable = Vec::new();
    let mut latest: Option<UsableResult<'_>> = None;
    for observation in &record.observations {
        if !observation
            .code
            .codings
            .iter()
            .any(|c| set.match_code(&c.system, &c.code).is_some())
        {
            continue;
        }
        if !observation.has_usable_status() {
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
        if time < window_start {
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
                value.value, analyte.canonical_unit
            ));
            continue;
        };
        if latest.as_ref().is_none_or(|l| time > l.time) {
            latest = Some(UsableResult {
                observation,
                time,
                canonical,
            });
        }
    }
    let window = format!("in the last {} days", criterion.within_days);
    let (matched, mut evidence) = match (&criterion.test, &latest) {
        (LabTest::Missing, None) => (
            true,
            vec![format!(
                "No usable {} result {window}",
                analyte.display.to_lowercase()
            )],
        ),
        (LabTest::Missing, Some(_)) | (_, None) => (false, Vec::new()),
        (LabTest::Present, Some(result)) => (true, vec![describe(analyte, result, "")]),
        (LabTest::Below(threshold), Some(result)) => compare(
            analyte,
            result,
            *threshold,
            criterion.lab_range,
            Direction::Below,
        ),
        (LabTest::Above(threshold), Some(result)) => compare(
            analyte,
            result,
            *threshold,
            criterion.lab_range,
            Direction::Above,
        ),
    };
    if matched {
        evidence.extend(unusable);
    }
    Outcome::leaf(matched, evidence)
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
            let why = format!(", flagged {} by the laboratory", flags.join("/"));
            return (matched, vec![describe(analyte, result, &why)]);
        }
    }
    let matched = match direction {
        Direction::Below => result.canonical < threshold,
        Direction::Above => result.canonical > threshold,
    };
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
