//! Typed evidence into the lines of a card: the short clinical line of "Why
//! this card" (Markdown, the decisive value in bold), and the line of
//! "Technical details" with the resource ids and how each code matched, for
//! the informaticist checking why a card fired. Results that could not be used
//! go to "Data that could not be used". The command line prints the same lines,
//! from the same values.

use crate::engine::evidence::{
    Amount, BodySite, ConditionFact, Decision, DoseFact, Evidence, Fact, LabReading, Matched,
    MatchedBy, MedicationFact, Unusable, UnusableReason,
};
use crate::fhir::record::DataIssue;
use crate::knowledge::describe::{lower_first, system_name, trim_number};

/// The clinical lines of one piece of evidence (a fall gives two; a result that could not be
/// used gives none), each with the labels of the named criteria it came through.
pub fn lines(evidence: &Evidence) -> Vec<String> {
    let prefix: String = evidence
        .labels
        .iter()
        .map(|label| format!("{label}: "))
        .collect();
    fact_lines(&evidence.fact)
        .into_iter()
        .map(|line| format!("{prefix}{line}"))
        .collect()
}

/// The clinical lines of a list of evidence, in order, without repeating a line.
pub fn all_lines(evidence: &[Evidence]) -> Vec<String> {
    unique(evidence.iter().flat_map(lines))
}

/// The technical lines (resource ids, codes, how each matched) of a list of evidence.
pub fn all_technical_lines(evidence: &[Evidence]) -> Vec<String> {
    unique(evidence.iter().flat_map(|e| technical_lines(&e.fact)))
}

/// The lines of the results that could not be used.
pub fn all_unusable_lines(evidence: &[Evidence]) -> Vec<String> {
    unique(evidence.iter().filter_map(|e| match &e.fact {
        Fact::UnusableResult(unusable) => Some(unusable_line(unusable)),
        _ => None,
    }))
}

fn unique(lines: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    lines.filter(|line| seen.insert(line.clone())).collect()
}

/// A data issue as one line: where, and what was wrong.
pub fn data_issue(issue: &DataIssue) -> String {
    format!("{}: {}", issue.location, issue.problem)
}

fn fact_lines(fact: &Fact) -> Vec<String> {
    match fact {
        Fact::LabResult { result, decided_by } => {
            let why = decided_by
                .as_ref()
                .map(|d| format!(", {}", decision(d)))
                .unwrap_or_default();
            vec![reading(result, &why)]
        }
        Fact::LabFall {
            earlier,
            newest,
            fall,
            hours,
        } => vec![
            reading(earlier, ""),
            reading(
                newest,
                &format!(", a fall of {} in {hours:.0} hours", amount(fall)),
            ),
        ],
        Fact::NoResult {
            analyte,
            within_days,
        } => {
            let window = match within_days {
                Some(days) => format!("in the last {days} days"),
                None => "on record".to_owned(),
            };
            vec![format!(
                "No usable {} result {window}",
                lower_first(analyte)
            )]
        }
        Fact::UnusableResult(_) => Vec::new(),
        Fact::Condition(condition) => vec![condition_line(condition)],
        Fact::Medication(medication) => {
            let state = if medication.active { "Active" } else { "Past" };
            vec![format!("{state} medication: {}", medication.name)]
        }
        Fact::DistinctDrugs(drugs) => {
            vec![format!(
                "{} different drugs: {}",
                drugs.len(),
                drugs.join(", ")
            )]
        }
        Fact::DraftOrder(order) => vec![format!(
            "Order being placed: {}{}",
            order.name,
            dose_text(&order.dose)
        )],
        Fact::Age { years, born } => {
            let born = born
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            vec![format!("Age {years} (born {born})")]
        }
        Fact::Absent { description } => vec![format!("Not found: {description}")],
    }
}

/// Where the facts came from: resource ids, LOINC codes, status, and how a code matched.
fn technical_lines(fact: &Fact) -> Vec<String> {
    match fact {
        Fact::LabResult { result, .. } => vec![reading_source(result)],
        Fact::LabFall {
            earlier, newest, ..
        } => vec![reading_source(earlier), reading_source(newest)],
        Fact::Condition(condition) => vec![format!(
            "{} ({}; {}, clinical status {})",
            condition.name,
            matched(&condition.matched),
            condition.reference,
            condition.clinical_status.as_deref().unwrap_or("not stated"),
        )],
        Fact::Medication(medication) => vec![medication_line(medication)],
        Fact::DraftOrder(order) => vec![format!(
            "{} ({}; matched {})",
            order.name,
            order.reference,
            matched(&order.matched)
        )],
        Fact::NoResult { .. }
        | Fact::UnusableResult(_)
        | Fact::DistinctDrugs(_)
        | Fact::Age { .. }
        | Fact::Absent { .. } => Vec::new(),
    }
}

/// "Serum magnesium on 2026-10-02: LOINC 2601-3; Observation/mg-low".
fn reading_source(result: &LabReading) -> String {
    let mut source: Vec<String> = result
        .loinc
        .iter()
        .map(|code| format!("LOINC {code}"))
        .collect();
    source.push(result.reference.clone());
    format!(
        "{} on {}: {}",
        result.analyte,
        result.time.format("%Y-%m-%d"),
        source.join("; ")
    )
}

/// "0.49 mmol/L" with the analyte's decimals.
pub fn amount(amount: &Amount) -> String {
    format!("{:.*} {}", amount.decimals, amount.value, amount.unit)
}

fn decision(decision: &Decision) -> String {
    match decision {
        Decision::Threshold { direction, limit } => {
            format!("{} the threshold of {}", direction.as_str(), amount(limit))
        }
        Decision::LabLimit { direction, limit } => format!(
            "{} the laboratory's reference limit of {}",
            direction.as_str(),
            amount(limit)
        ),
        Decision::Flags(flags) => format!("flagged {} by the laboratory", flags.join("/")),
    }
}

/// A result: name, the value in bold (with the value as reported when it differs), date and
/// `why`.
fn reading(result: &LabReading, why: &str) -> String {
    let comparator = result.comparator().unwrap_or("");
    let canonical = amount(&result.canonical);
    let shown = if result.in_canonical_unit && comparator.is_empty() {
        format!("**{canonical}**")
    } else {
        let reported = result
            .reported
            .as_ref()
            .map(|v| {
                format!(
                    "{comparator}{} {}",
                    v.value,
                    v.unit.as_deref().unwrap_or("")
                )
            })
            .unwrap_or_default();
        format!(
            "**{comparator}{canonical}** (reported as {})",
            reported.trim()
        )
    };
    let preliminary = if result.preliminary {
        " (preliminary result)"
    } else {
        ""
    };
    format!(
        "{} {shown}{preliminary} on {}{why}",
        result.analyte,
        result.time.format("%Y-%m-%d"),
    )
}

fn unusable_line(unusable: &Unusable) -> String {
    let name = format!("{} result {}", unusable.analyte, unusable.reference);
    match &unusable.reason {
        UnusableReason::Unreadable(problem) => format!("{name} was not used: {problem}"),
        UnusableReason::NoTime => {
            format!("{name} was not used: it has no effective time or issued time")
        }
        UnusableReason::NoValue => format!("{name} was not used: it has no valueQuantity"),
        UnusableReason::Unit {
            value,
            unit,
            wanted,
        } => format!(
            "{name} ({value} {unit}) was not used: the unit '{unit}' cannot be converted to {wanted}"
        ),
        UnusableReason::Inconclusive {
            result,
            decision: tested,
        } => format!(
            "{} ({}) was not counted as {}: the laboratory reported a bound, so it may be on either side",
            reading(result, ""),
            result.reference,
            decision(tested)
        ),
        UnusableReason::BoundForFall { result } => format!(
            "{} ({}) was not used to measure a fall: it gives only a bound, not a value",
            reading(result, ""),
            result.reference
        ),
    }
}

/// How a code or a name matched, in words.
pub fn matched(matched: &Matched) -> String {
    let prefix = if matched.through_ingredient {
        "ingredient "
    } else {
        ""
    };
    let coding = |system: &str, code: &str, display: &Option<String>| match display {
        Some(d) => format!("{} {code} \"{d}\"", system_name(system)),
        None => format!("{} {code}", system_name(system)),
    };
    let how = match &matched.by {
        MatchedBy::Code {
            system,
            code,
            display,
        } => coding(system, code, display),
        MatchedBy::Class {
            system,
            code,
            class,
        } => format!("{} {code} (class {class})", system_name(system)),
        MatchedBy::Product {
            system,
            code,
            display,
            kind,
            ingredients,
        } => {
            let of = if ingredients.is_empty() {
                String::new()
            } else {
                let quoted: Vec<String> = ingredients.iter().map(|i| format!("\"{i}\"")).collect();
                format!(" of {}", quoted.join(" and "))
            };
            format!(
                "product code {}, a {}{of}",
                coding(system, code, display),
                kind.label()
            )
        }
        MatchedBy::Name {
            kind,
            written,
            ingredient,
            place,
            text,
        } => {
            let stands_for = ingredient
                .as_ref()
                .map(|i| format!(" (\"{i}\")"))
                .unwrap_or_default();
            format!(
                "{} \"{written}\"{stands_for} in the {place} \"{text}\"",
                kind.label()
            )
        }
    };
    format!("{prefix}{how}")
}

fn condition_line(condition: &ConditionFact) -> String {
    let tentative = condition
        .tentative_status
        .as_ref()
        .map(|status| format!(", verification status {status}"))
        .unwrap_or_default();
    let onset = condition
        .onset
        .map(|o| format!(", onset {}", o.format("%Y-%m-%d")))
        .unwrap_or_default();
    let site = match &condition.site {
        None => String::new(),
        Some(BodySite::Found(name)) => format!(", body site {name}"),
        Some(BodySite::NotStated) => ", no body site stated".to_owned(),
    };
    let details = format!("{tentative}{onset}{site}");
    match details.strip_prefix(", ") {
        Some(details) => format!("Active condition: {} ({details})", condition.name),
        None => format!("Active condition: {}", condition.name),
    }
}

fn medication_line(medication: &MedicationFact) -> String {
    format!(
        "{} ({}, status {}; matched {})",
        medication.name,
        medication.reference,
        medication.status,
        matched(&medication.matched)
    )
}

fn dose_text(dose: &DoseFact) -> String {
    match dose {
        DoseFact::NotShown => String::new(),
        DoseFact::Daily {
            mg_per_day,
            working,
        } => format!(
            "; total daily dose {} mg ({working})",
            trim_number(*mg_per_day)
        ),
        DoseFact::Above {
            mg_per_day,
            working,
            limit,
        } => format!(
            "; total daily dose **{} mg** ({working}), above {} mg",
            trim_number(*mg_per_day),
            trim_number(*limit)
        ),
        DoseFact::Unknown(why) => format!("; the total daily dose could not be computed: {why}"),
    }
}
