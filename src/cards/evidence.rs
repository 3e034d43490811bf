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
        Fact::Absent { description } => vec![absence_line(description)],
    }
}

/// What a rule looked for and did not find: "No active medication in "Baclofen" on record"
/// for a medication or condition, "Not found: ..." for anything else (a lab criterion).
fn absence_line(description: &str) -> String {
    match description
        .strip_prefix("an active ")
        .or_else(|| description.strip_prefix("a current or past "))
    {
        Some(rest) if rest.starts_with("medication") || rest.starts_with("condition") => {
            let which = if description.starts_with("an active") {
                "active"
            } else {
                "current or past"
            };
            format!("No {which} {rest} on record")
        }
        _ => format!("Not found: {description}"),
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

/// The value as the laboratory sent it: comparator, number and unit ("<1.2 mg/dL"); the
/// canonical value when nothing was sent.
/// In the canonical unit the number has at least the analyte's decimals (0.6 mmol/L of
/// magnesium reads "0.60") and never fewer than were sent (2.45 mmol/L of potassium stays 2.45).
fn as_sent(result: &LabReading) -> String {
    match &result.reported {
        Some(v) => {
            let sent = format!("{}", v.value);
            let sent_decimals = sent.split_once('.').map_or(0, |(_, f)| f.len());
            let number = if result.in_canonical_unit {
                format!(
                    "{:.*}",
                    sent_decimals.max(result.canonical.decimals),
                    v.value
                )
            } else {
                sent
            };
            // The canonical unit as people read it ("mL/min/1.73 m²", not the UCUM code).
            let unit = if result.in_canonical_unit {
                result.canonical.unit.as_str()
            } else {
                v.unit.as_deref().unwrap_or("")
            };
            format!("{}{number} {unit}", v.comparator.as_deref().unwrap_or(""))
                .trim()
                .to_owned()
        }
        None => amount(&result.canonical),
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

/// A result: name, the value in bold (with the value as reported when it differs), date and
/// `why`.
fn reading(result: &LabReading, why: &str) -> String {
    let comparator = result.comparator().unwrap_or("");
    let canonical = amount(&result.canonical);
    // In the canonical unit the value is shown as sent, never rounded: 2.45 mmol/L is not
    // "2.5 mmol/L, below the threshold of 2.5".
    let shown = if result.in_canonical_unit {
        format!("**{}**", as_sent(result))
    } else {
        format!(
            "**{comparator}{canonical}** (reported as {})",
            as_sent(result)
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

/// A summary template filled with the facts of a finding, or `None` when a placeholder has no
/// fact to fill it (the caller then uses the plain summary). Placeholders:
/// `{lab:ANALYTE}` the decisive result of that analyte ("0.49 mmol/L on 2026-11-20"),
/// `{medication}` the first matched medication's drug, `{order}` the first draft order's drug
/// and daily dose, `{condition}` the first matched condition.
pub fn fill_summary(template: &str, evidence: &[Evidence]) -> Option<String> {
    let mut filled = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        filled.push_str(&rest[..start]);
        let end = rest[start..].find('}')? + start;
        filled.push_str(&summary_fact(&rest[start + 1..end], evidence)?);
        rest = &rest[end + 1..];
    }
    filled.push_str(rest);
    // A fact at the start ("gabapentin 1800 mg a day ordered ...") begins the sentence.
    let mut chars = filled.chars();
    let first = chars.next()?;
    Some(first.to_uppercase().chain(chars).collect())
}

/// The short form of the fact a placeholder names.
fn summary_fact(placeholder: &str, evidence: &[Evidence]) -> Option<String> {
    let facts = || evidence.iter().map(|e| &e.fact);
    match placeholder.split_once(':') {
        Some(("lab", analyte)) => facts().find_map(|fact| match fact {
            Fact::LabResult { result, .. } | Fact::LabFall { newest: result, .. }
                if result.analyte_id == analyte =>
            {
                Some(format!(
                    "{} on {}",
                    as_sent(result),
                    result.time.format("%Y-%m-%d")
                ))
            }
            _ => None,
        }),
        None if placeholder == "medication" => facts().find_map(|fact| match fact {
            Fact::Medication(m) => Some(m.drug.clone().unwrap_or_else(|| m.name.clone())),
            _ => None,
        }),
        None if placeholder == "order" => facts().find_map(|fact| match fact {
            Fact::DraftOrder(order) => {
                let drug = order.drug.clone().unwrap_or_else(|| order.name.clone());
                Some(match order.dose {
                    DoseFact::Daily { mg_per_day, .. } | DoseFact::Above { mg_per_day, .. } => {
                        format!("{drug} {} mg a day", trim_number(mg_per_day))
                    }
                    DoseFact::NotShown | DoseFact::Unknown(_) => drug,
                })
            }
            _ => None,
        }),
        None if placeholder == "condition" => facts().find_map(|fact| match fact {
            Fact::Condition(c) => Some(c.name.clone()),
            _ => None,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::evidence::MedicationFact;
    use crate::engine::test_support::magnesium_below;

    fn magnesium(value: f64, comparator: Option<&str>) -> Evidence {
        magnesium_below(value, comparator, 0.70)
    }

    fn furosemide() -> Evidence {
        Evidence::from(Fact::Medication(MedicationFact {
            active: true,
            name: "furosemide 40 MG Oral Tablet".into(),
            drug: Some("furosemide".into()),
            reference: "MedicationStatement/ms".into(),
            status: "active".into(),
            matched: Matched {
                by: MatchedBy::Code {
                    system: "http://www.nlm.nih.gov/research/umls/rxnorm".into(),
                    code: "4603".into(),
                    display: None,
                },
                through_ingredient: false,
            },
        }))
    }

    #[test]
    fn a_summary_template_is_filled_with_the_decisive_facts() {
        let evidence = [furosemide(), magnesium(0.49, None)];
        assert_eq!(
            fill_summary(
                "Magnesium {lab:magnesium} on {medication}: correct it",
                &evidence
            )
            .as_deref(),
            Some("Magnesium 0.49 mmol/L on 2026-11-20 on furosemide: correct it")
        );
        assert_eq!(
            fill_summary("Magnesium {lab:magnesium}", &[magnesium(0.6, Some("<"))]).as_deref(),
            Some("Magnesium <0.60 mmol/L on 2026-11-20")
        );
    }

    #[test]
    fn a_placeholder_without_its_fact_gives_no_filled_summary() {
        let evidence = [magnesium(0.49, None)];
        assert_eq!(fill_summary("{lab:potassium} low", &evidence), None);
        assert_eq!(fill_summary("on {medication}", &evidence), None);
        assert_eq!(fill_summary("{unknown}", &evidence), None);
        assert_eq!(fill_summary("unclosed {lab:magnesium", &evidence), None);
        assert_eq!(
            fill_summary("no placeholder", &evidence).as_deref(),
            Some("No placeholder")
        );
        assert_eq!(fill_summary("", &evidence), None);
    }

    #[test]
    fn the_clinical_line_leaves_ids_and_codes_to_the_technical_line() {
        let evidence = [furosemide(), magnesium(0.49, None)];
        let clinical = all_lines(&evidence).join("\n");
        let technical = all_technical_lines(&evidence).join("\n");
        assert!(!clinical.contains("MedicationStatement/ms"), "{clinical}");
        assert!(!clinical.contains("LOINC"), "{clinical}");
        assert!(
            clinical.contains("**0.49 mmol/L** on 2026-11-20, below the threshold of 0.70 mmol/L"),
            "{clinical}"
        );
        assert!(
            technical.contains("MedicationStatement/ms, status active; matched RxNorm 4603"),
            "{technical}"
        );
        assert!(
            technical.contains("LOINC 19123-9; Observation/mg"),
            "{technical}"
        );
    }
}
