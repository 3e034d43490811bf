//! The simulation's result as data (the JSON shape) and as a readable table or CSV.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::age_band::AGE_BANDS;
use super::partition::{InputCounts, MalformedLine};
use super::tally::{RuleChange, Tally};
use super::wilson::wilson_95;
use crate::knowledge::KnowledgeVersion;
use crate::store::report::csv_cell;

/// How many data issues the report lists.
const TOP_ISSUES: usize = 20;

/// What a simulation found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// What was simulated with what, and when.
    pub run: RunFacts,
    /// What was read.
    pub population: Population,
    /// Per rule and indicator: patients with the card, with the base knowledge.
    pub rules: Vec<RuleRate>,
    /// Cards per 1,000 chart opens (each patient's `patient-view` is one), in all and by
    /// indicator.
    pub chart_open_burden: Burden,
    /// Patients by number of cards.
    pub cards_per_patient: Vec<CardsBucket>,
    /// Per rule, how often its card fires in each age band.
    pub by_age_band: AgeBands,
    /// The most frequent data issues (ids removed), with the number of patients.
    pub data_issues: Vec<IssueCount>,
    /// With `--suppression`: per rule, the patients whose card an override suppressed (not
    /// counted in `rules`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<Vec<SuppressedCount>>,
    /// Evaluations that failed.
    pub failures: Failures,
    /// With `--compare`: per rule, who gains and who loses the card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Vec<RuleComparison>>,
}

/// The knowledge and the evaluation time of a simulation, so a report says what it is of.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFacts {
    /// `--now`, RFC 3339.
    pub evaluated_at: String,
    /// Whether clinicians' overrides in the card history suppressed cards (`--suppression`).
    pub suppression: bool,
    /// The base knowledge.
    pub knowledge: KnowledgeVersion,
    /// With `--compare`: the other knowledge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared_knowledge: Option<KnowledgeVersion>,
}

impl RunFacts {
    /// One line for the text and HTML reports.
    pub fn describe(&self) -> String {
        let mut line = format!(
            "Knowledge {} evaluated as of {}",
            self.knowledge.id(),
            self.evaluated_at
        );
        if let Some(compared) = &self.compared_knowledge {
            let _ = write!(line, ", compared with knowledge {}", compared.id());
        }
        line.push_str(if self.suppression {
            ", with the overrides in the card history suppressing"
        } else {
            ", no suppression"
        });
        line
    }
}

/// The population read.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Population {
    /// Patients evaluated.
    pub patients: u64,
    /// Resources read (malformed lines not included).
    pub resources: u64,
    /// Lines that were not resources.
    pub malformed_lines: u64,
    /// The first few, by file and line.
    pub malformed: Vec<MalformedLine>,
    /// Resources that name no patient (counted, skipped).
    pub resources_without_patient: u64,
    /// Resources of types no prefetch asks for (Encounter, Claim, ...), not read.
    pub resources_not_asked_for: u64,
    /// Patients whose resources were read but who have no Patient resource (skipped).
    pub patients_without_patient_resource: u64,
}

/// One rule and indicator's firing rate.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRate {
    /// The rule.
    pub rule_id: String,
    /// The card's indicator.
    pub indicator: String,
    /// Patients with the card.
    pub patients: u64,
    /// Per 1,000 patients.
    pub rate_per_1000: f64,
    /// The 95 % Wilson score interval, per 1,000: low.
    pub ci95_low: f64,
    /// The 95 % Wilson score interval, per 1,000: high.
    pub ci95_high: f64,
}

/// How many cards a clinician sees per 1,000 chart opens.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Burden {
    /// Every card.
    pub cards_per_1000: f64,
    /// By indicator (`critical`, `warning`, `info`), most urgent first.
    pub by_indicator: Vec<IndicatorBurden>,
}

/// The cards of one indicator per 1,000 chart opens.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndicatorBurden {
    /// The indicator.
    pub indicator: String,
    /// Cards per 1,000 chart opens.
    pub cards_per_1000: f64,
}

impl Burden {
    /// One line for the text and HTML reports.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .by_indicator
            .iter()
            .map(|b| format!("{} {:.1}", b.indicator, b.cards_per_1000))
            .collect();
        format!(
            "Cards per 1,000 chart opens: {:.1} ({})",
            self.cards_per_1000,
            parts.join(", ")
        )
    }
}

/// The rules' rates by age band (at the evaluation time).
#[derive(Debug, Clone, Serialize)]
pub struct AgeBands {
    /// The bands and their patients.
    pub bands: Vec<AgeBandCount>,
    /// Per rule (any indicator), in band order.
    pub rules: Vec<RuleByAgeBand>,
}

/// One age band.
#[derive(Debug, Clone, Serialize)]
pub struct AgeBandCount {
    /// `0-17`, `18-44`, `45-64`, `65-79`, `80+` or `unknown` (no readable birth date).
    pub band: String,
    /// Patients in the band.
    pub patients: u64,
}

/// One rule's card by age band.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleByAgeBand {
    /// The rule.
    pub rule_id: String,
    /// Patients with the card, per band.
    pub patients: Vec<u64>,
    /// Per 1,000 patients of the band (0 for an empty band).
    pub rate_per_1000: Vec<f64>,
}

/// Patients with a number of cards.
#[derive(Debug, Clone, Serialize)]
pub struct CardsBucket {
    /// "0", "1", "2", "3" or "4+".
    pub cards: String,
    /// Patients.
    pub patients: u64,
}

/// A rule and how many patients' cards of it were suppressed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuppressedCount {
    /// The rule.
    pub rule_id: String,
    /// Patients.
    pub patients: u64,
}

/// A data issue and how many patients have it.
#[derive(Debug, Clone, Serialize)]
pub struct IssueCount {
    /// The issue, ids removed.
    pub issue: String,
    /// Patients.
    pub patients: u64,
}

/// Failed evaluations.
#[derive(Debug, Clone, Serialize)]
pub struct Failures {
    /// How many.
    pub count: u64,
    /// The first few: patient id and message.
    pub examples: Vec<FailureExample>,
}

/// One failed evaluation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureExample {
    /// The patient.
    pub patient_id: String,
    /// Why it failed.
    pub message: String,
}

/// One rule under two knowledge directories.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleComparison {
    /// The rule.
    pub rule_id: String,
    /// The counts.
    #[serde(flatten)]
    pub change: RuleChange,
}

impl Report {
    /// The report of `tally` over the input `counts` of the `run`, with the comparison's
    /// `changes`.
    pub fn new(
        run: RunFacts,
        counts: &InputCounts,
        without_patient_resource: u64,
        tally: &Tally,
        changes: Option<&BTreeMap<String, RuleChange>>,
    ) -> Report {
        let n = tally.patients;
        let per_1000 = |x: f64| (x * 1000.0 * 100.0).round() / 100.0;
        let per_1000_patients = |count: u64| {
            if n == 0 {
                0.0
            } else {
                per_1000(count as f64 / n as f64)
            }
        };
        let rules = tally
            .by_rule
            .iter()
            .map(|((rule, indicator), &patients)| {
                let (low, high) = wilson_95(patients, n);
                RuleRate {
                    rule_id: rule.clone(),
                    indicator: indicator.clone(),
                    patients,
                    rate_per_1000: per_1000_patients(patients),
                    ci95_low: per_1000(low),
                    ci95_high: per_1000(high),
                }
            })
            .collect();
        let chart_open_burden = Burden {
            cards_per_1000: per_1000_patients(tally.cards_by_indicator.values().sum()),
            by_indicator: ["critical", "warning", "info"]
                .iter()
                .map(|indicator| IndicatorBurden {
                    indicator: (*indicator).to_owned(),
                    cards_per_1000: per_1000_patients(
                        tally
                            .cards_by_indicator
                            .get(*indicator)
                            .copied()
                            .unwrap_or(0),
                    ),
                })
                .collect(),
        };
        let by_age_band = AgeBands {
            bands: AGE_BANDS
                .iter()
                .zip(tally.patients_by_age_band)
                .map(|(band, patients)| AgeBandCount {
                    band: (*band).to_owned(),
                    patients,
                })
                .collect(),
            rules: tally
                .by_rule_and_age_band
                .iter()
                .map(|(rule_id, with_card)| RuleByAgeBand {
                    rule_id: rule_id.clone(),
                    patients: with_card.to_vec(),
                    rate_per_1000: with_card
                        .iter()
                        .zip(tally.patients_by_age_band)
                        .map(|(&with, all)| {
                            if all == 0 {
                                0.0
                            } else {
                                per_1000(with as f64 / all as f64)
                            }
                        })
                        .collect(),
                })
                .collect(),
        };
        let cards_per_patient = ["0", "1", "2", "3", "4+"]
            .iter()
            .zip(tally.cards_per_patient)
            .map(|(cards, patients)| CardsBucket {
                cards: (*cards).to_owned(),
                patients,
            })
            .collect();
        let mut data_issues: Vec<IssueCount> = tally
            .data_issues
            .iter()
            .map(|(issue, &patients)| IssueCount {
                issue: issue.clone(),
                patients,
            })
            .collect();
        data_issues.sort_by(|a, b| b.patients.cmp(&a.patients).then(a.issue.cmp(&b.issue)));
        data_issues.truncate(TOP_ISSUES);
        let suppressed = run.suppression.then(|| {
            tally
                .suppressed
                .iter()
                .map(|(rule_id, &patients)| SuppressedCount {
                    rule_id: rule_id.clone(),
                    patients,
                })
                .collect()
        });
        Report {
            run,
            suppressed,
            population: Population {
                patients: n,
                resources: counts.resources,
                malformed_lines: counts.malformed,
                malformed: counts.malformed_examples.clone(),
                resources_without_patient: counts.without_patient,
                resources_not_asked_for: counts.not_asked_for,
                patients_without_patient_resource: without_patient_resource,
            },
            rules,
            chart_open_burden,
            cards_per_patient,
            by_age_band,
            data_issues,
            failures: Failures {
                count: tally.failures,
                examples: tally
                    .failure_examples
                    .iter()
                    .map(|(patient_id, message)| FailureExample {
                        patient_id: patient_id.clone(),
                        message: message.clone(),
                    })
                    .collect(),
            },
            comparison: changes.map(|changes| {
                changes
                    .iter()
                    .map(|(rule_id, change)| RuleComparison {
                        rule_id: rule_id.clone(),
                        change: change.clone(),
                    })
                    .collect()
            }),
        }
    }

    /// The report as readable text tables.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let p = &self.population;
        let _ = writeln!(out, "{}", self.run.describe());
        let _ = writeln!(
            out,
            "Patients: {}   resources: {} ({} of types no prefetch asks for, not read)   malformed lines: {}   resources without a patient: {}   patients without a Patient resource: {}",
            p.patients,
            p.resources,
            p.resources_not_asked_for,
            p.malformed_lines,
            p.resources_without_patient,
            p.patients_without_patient_resource
        );
        for m in &p.malformed {
            let _ = writeln!(out, "  malformed: {}:{}: {}", m.file, m.line, m.problem);
        }
        if self.failures.count > 0 {
            let _ = writeln!(out, "Failed evaluations: {}", self.failures.count);
            for f in &self.failures.examples {
                let _ = writeln!(out, "  {}: {}", f.patient_id, f.message);
            }
        }
        let _ = writeln!(
            out,
            "\nCards by rule (per 1,000 patients, 95 % Wilson interval)"
        );
        let width = self
            .rules
            .iter()
            .map(|r| r.rule_id.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            out,
            "{:<width$}  {:<8}  {:>9}  {:>9}  {:>19}",
            "rule", "card", "patients", "per 1000", "95 % CI"
        );
        for r in &self.rules {
            let _ = writeln!(
                out,
                "{:<width$}  {:<8}  {:>9}  {:>9.2}  {:>8.2} to {:>7.2}",
                r.rule_id, r.indicator, r.patients, r.rate_per_1000, r.ci95_low, r.ci95_high
            );
        }
        let _ = writeln!(out, "\n{}", self.chart_open_burden.describe());
        let _ = writeln!(out, "\nCards per patient");
        for b in &self.cards_per_patient {
            let _ = writeln!(out, "  {:>2}: {}", b.cards, b.patients);
        }
        let _ = writeln!(
            out,
            "\nCards by age band (per 1,000 patients of the band, any indicator)"
        );
        let band_width = width.max("patients".len());
        let _ = write!(out, "{:<band_width$}", "rule");
        for band in &self.by_age_band.bands {
            let _ = write!(out, "  {:>9}", band.band);
        }
        let _ = write!(out, "\n{:<band_width$}", "patients");
        for band in &self.by_age_band.bands {
            let _ = write!(out, "  {:>9}", band.patients);
        }
        out.push('\n');
        for rule in &self.by_age_band.rules {
            let _ = write!(out, "{:<band_width$}", rule.rule_id);
            for rate in &rule.rate_per_1000 {
                let _ = write!(out, "  {rate:>9.2}");
            }
            out.push('\n');
        }
        if let Some(suppressed) = &self.suppressed {
            let _ = writeln!(
                out,
                "\nSuppressed by an override (patients, not counted above): {}",
                if suppressed.is_empty() { "none" } else { "" }
            );
            for s in suppressed {
                let _ = writeln!(out, "  {:>8}  {}", s.patients, s.rule_id);
            }
        }
        if !self.data_issues.is_empty() {
            let _ = writeln!(out, "\nTop data issues (patients)");
            for i in &self.data_issues {
                let _ = writeln!(out, "  {:>8}  {}", i.patients, i.issue);
            }
        }
        if let Some(comparison) = &self.comparison {
            let _ = writeln!(
                out,
                "\nComparison (patients with the card: base, compared, gained, lost)"
            );
            let width = comparison
                .iter()
                .map(|r| r.rule_id.len())
                .max()
                .unwrap_or(4)
                .max(4);
            for r in comparison {
                let _ = writeln!(
                    out,
                    "{:<width$}  {:>9}  {:>9}  +{:<8}  -{:<8}",
                    r.rule_id, r.change.base, r.change.compared, r.change.gained, r.change.lost
                );
            }
        }
        out
    }

    /// The report as CSV, one row per rule and indicator (with the comparison's columns when
    /// there is one).
    pub fn to_csv(&self) -> String {
        let mut out =
            String::from("rule_id,indicator,patients,population,rate_per_1000,ci95_low,ci95_high");
        let comparison = self.comparison.as_ref();
        if comparison.is_some() {
            out.push_str(",compared_patients,gained,lost");
        }
        out.push('\n');
        for r in &self.rules {
            let _ = write!(
                out,
                "{},{},{},{},{},{},{}",
                csv_cell(&r.rule_id),
                r.indicator,
                r.patients,
                self.population.patients,
                r.rate_per_1000,
                r.ci95_low,
                r.ci95_high
            );
            if let Some(comparison) = comparison {
                let change = comparison
                    .iter()
                    .find(|c| c.rule_id == r.rule_id)
                    .map(|c| c.change.clone())
                    .unwrap_or_default();
                let _ = write!(
                    out,
                    ",{},{},{}",
                    change.compared, change.gained, change.lost
                );
            }
            out.push('\n');
        }
        if let Some(comparison) = comparison {
            // Rules that fire only under the compared knowledge have no base row above.
            for c in comparison.iter().filter(|c| c.change.base == 0) {
                let _ = writeln!(
                    out,
                    "{},,0,{},0,0,0,{},{},{}",
                    csv_cell(&c.rule_id),
                    self.population.patients,
                    c.change.compared,
                    c.change.gained,
                    c.change.lost
                );
            }
        }
        out
    }
}
