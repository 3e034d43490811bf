//! Typed evidence into the lines of a card's "Why this card" block (Markdown:
//! the decisive value in bold). The command line prints the same lines, from
//! the same values.

use crate::engine::evidence::{
    Amount, BodySite, ConditionFact, Decision, DoseFact, Evidence, Fact, LabReading, Matched,
    MatchedBy, MedicationFact, OrderFact, Unusable, UnusableReason,
};
use crate::fhir::record::DataIssue;
use crate::knowledge::describe::{lower_first, system_name, trim_number};

/// The Markdown lines of one piece of evidence (a fall gives two), each with the labels of
/// the named criteria it came through.
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

/// The lines of a list of evidence, in order, without repeating a line.
pub fn all_lines(evidence: &[Evidence]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    evidence
        .iter()
        .flat_map(lines)
        .filter(|line| seen.insert(line.clone()))
        .collect()
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
            vec![format!("No usable {} result {window}", lower_first(analyte))]
        }
        Fact::UnusableResult(unusable) => vec![unusable_line(unusable)],
        Fact::Condition(condition) => vec![condition_line(condition)],
        Fact::Medication(medication) => vec![medication_line(medication)],
        Fact::DistinctDrugs(drugs) => {
            vec![format!(
                "{} different drugs: {}",
                drugs.len(),
                drugs.join(", ")
            )]
        }
        Fact::DraftOrder(order) => vec![order_line(order)],
        Fact::Age { years, born } => {
            let born = born
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            vec![format!("Age {years} (born {born})")]
        }
        Fact::Absent { description } => vec![format!("Not found: {description}")],
    }
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

/// A result: name, the value in bold (with the value as reported when it differs), date,
/// `why`, then its codes and reference.
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
    let codes: Vec<String> = result
        .loinc
        .iter()
        .map(|code| format!("LOINC {code}"))
        .collect();
    format!(
        "{} {shown}{preliminary} on {}{why} ({}{}{})",
        result.analyte,
        result.time.format("%Y-%m-%d"),
        codes.join(", "),
        if codes.is_empty() { "" } else { "; " },
        result.reference
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
            "{} was not counted as {}: the laboratory reported a bound, so it may be on either side",
            reading(result, ""),
            decision(tested)
        ),
        UnusableReason::BoundForFall { result } => format!(
            "{} was not used to measure a fall: it gives only a bound, not a value",
            reading(result, "")
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
    format!(
        "Active condition: {} ({}; {}, clinical status {}{tentative}{onset}{site})",
        condition.name,
        matched(&condition.matched),
        condition.reference,
        condition
            .clinical_status
            .as_deref()
            .unwrap_or("not stated"),
    )
}

fn medication_line(medication: &MedicationFact) -> String {
    let state = if medication.active { "Active" } else { "Past" };
    format!(
        "{state} medication: {} ({}, status {}; matched {})",
        medication.name,
        medication.reference,
        medication.status,
        matched(&medication.matched)
    )
}

fn order_line(order: &OrderFact) -> String {
    let dose = match &order.dose {
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
    };
    format!(
        "Order being placed: {} ({}; matched {}{dose})",
        order.name,
        order.reference,
        matched(&order.matched)
    )
}
