//! Criteria in words: how the catalog, the rule pages and the evidence of an
//! absence ("Not found: ...") describe a criterion of the rule language, and the
//! small wording helpers they share.

use crate::knowledge::Knowledge;
use crate::knowledge::criteria::{Criterion, DoseTest, LabTest, WhenAbsent};

/// Human names of the code systems, for evidence.
pub fn system_name(system: &str) -> &str {
    match system {
        "http://snomed.info/sct" => "SNOMED CT",
        "http://hl7.org/fhir/sid/icd-10-cm" => "ICD-10-CM",
        "http://www.nlm.nih.gov/research/umls/rxnorm" => "RxNorm",
        "http://www.whocc.no/atc" => "ATC",
        "http://loinc.org" => "LOINC",
        other => other,
    }
}

/// A number without needless decimals (30, 7.5).
pub fn trim_number(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A short description of a criterion, for evidence of absence.
pub fn describe(criterion: &Criterion, knowledge: &Knowledge) -> String {
    match criterion {
        Criterion::All(children) => join(children, " and ", knowledge),
        Criterion::Any(children) => join(children, " or ", knowledge),
        Criterion::Not(child) => format!("not ({})", describe(child, knowledge)),
        Criterion::Hook(hooks) => format!(
            "the hook is {}",
            hooks
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        Criterion::Named(named) => named.description.clone(),
        Criterion::Condition(c) => {
            let site = c.body_site.as_ref().map_or(String::new(), |site| {
                let absent = match site.when_absent {
                    WhenAbsent::Counts => " or with no site stated",
                    WhenAbsent::DoesNotCount => "",
                };
                let title = &knowledge.valuesets[site.valueset].title;
                format!(" at a site in \"{title}\"{absent}")
            });
            format!(
                "an active condition in \"{}\"{site}",
                knowledge.valuesets[c.valueset].title
            )
        }
        Criterion::Medication(c) => {
            let which = if c.ever {
                "a current or past"
            } else {
                "an active"
            };
            let count = if c.min_distinct > 1 {
                format!("{} different drugs", c.min_distinct)
            } else {
                format!("{which} medication")
            };
            format!("{count} in \"{}\"", knowledge.valuesets[c.valueset].title)
        }
        Criterion::DraftOrder(c) => {
            let dose = match c.dose {
                DoseTest::Any => String::new(),
                DoseTest::Above(limit) => format!(" above {} mg a day", trim_number(limit)),
                DoseTest::Unknown => " whose daily dose cannot be computed".to_owned(),
            };
            let mut limits = Vec::new();
            if !c.routes.is_empty() {
                let routes: Vec<&str> = c.routes.iter().map(|r| r.as_str()).collect();
                limits.push(format!("given by the {} route", routes.join(" or ")));
            }
            if let Some(set) = c.reason {
                limits.push(format!(
                    "ordered for a reason in \"{}\"",
                    knowledge.valuesets[set].title
                ));
            }
            if let Some(set) = c.reason_not {
                limits.push(format!(
                    "not ordered for a reason in \"{}\"",
                    knowledge.valuesets[set].title
                ));
            }
            match c.release {
                Some(crate::knowledge::criteria::Release::Extended) => {
                    limits.push("an extended-release product".to_owned())
                }
                Some(crate::knowledge::criteria::Release::Immediate) => {
                    limits.push("an immediate-release product".to_owned())
                }
                None => {}
            }
            if let Some(set) = c.except {
                limits.push(format!("not in \"{}\"", knowledge.valuesets[set].title));
            }
            let limits = if limits.is_empty() {
                String::new()
            } else {
                format!(" ({})", limits.join(", "))
            };
            format!(
                "an order being placed in \"{}\"{dose}{limits}",
                knowledge.valuesets[c.valueset].title
            )
        }
        Criterion::Lab(c) => {
            let analyte = &knowledge.analytes[c.analyte];
            let name = lower_first(&analyte.display);
            let window = match c.within_days {
                Some(days) => format!("in the last {days} days"),
                None => "ever".to_owned(),
            };
            let range = if c.lab_range {
                " (or the laboratory's own limit)"
            } else {
                ""
            };
            match &c.test {
                LabTest::Present => format!("a {name} result {window}"),
                LabTest::Missing => format!("no {name} result {window}"),
                LabTest::Below(t) | LabTest::Above(t) => {
                    let which = if c.any_result { "any" } else { "the latest" };
                    let direction = if matches!(c.test, LabTest::Below(_)) {
                        "below"
                    } else {
                        "above"
                    };
                    format!(
                        "{which} {name} {window} is {direction} {}{range}",
                        analyte.format(*t)
                    )
                }
                LabTest::Fall {
                    amount,
                    within_hours,
                } => format!(
                    "{name} fell by at least {} between two results at most {within_hours} hours apart {window}",
                    analyte.format(*amount)
                ),
            }
        }
        Criterion::Age(c) => match (c.at_least, c.below) {
            (Some(min), Some(max)) => format!("age {min} to {}", max - 1),
            (Some(min), None) => format!("age {min} or more"),
            (None, Some(max)) => format!("age under {max}"),
            (None, None) => "any age".to_owned(),
        },
    }
}

fn join(children: &[Criterion], separator: &str, knowledge: &Knowledge) -> String {
    children
        .iter()
        .map(|child| match child {
            Criterion::All(_) | Criterion::Any(_) => format!("({})", describe(child, knowledge)),
            _ => describe(child, knowledge),
        })
        .collect::<Vec<_>>()
        .join(separator)
}

/// "Serum magnesium" becomes "serum magnesium"; "HbA1c" and "eGFR" stay as they are.
pub fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(text.chars().skip(1)).collect()
        }
        _ => text.to_owned(),
    }
}
