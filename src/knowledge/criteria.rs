//! The criteria language of the rules: its TOML form and its validated form.
//!
//! A criterion is one of `all`, `any`, `not` (combinators), `hook`,
//! `condition`, `medication`, `draft_order`, `lab`, `age`, or `ref` (a named
//! criterion from `definitions.toml`). Validation resolves value sets,
//! analytes and references once, at load time, and converts thresholds into
//! the analyte's canonical unit, so evaluation never looks anything up by name.

use std::sync::Arc;

use serde::Deserialize;

use crate::hooks::Hook;

/// A validated criterion.
#[derive(Debug, Clone)]
pub enum Criterion {
    /// Every child matches.
    All(Vec<Criterion>),
    /// At least one child matches.
    Any(Vec<Criterion>),
    /// The child does not match.
    Not(Box<Criterion>),
    /// The request is for one of these hooks.
    Hook(Vec<Hook>),
    /// An active condition in a value set.
    Condition(ConditionCriterion),
    /// An active medication on record in a value set.
    Medication(MedicationCriterion),
    /// A draft order in scope (selected for order-select, any for order-sign) in a value set.
    DraftOrder(DraftOrderCriterion),
    /// A test on the latest laboratory result of an analyte.
    Lab(LabCriterion),
    /// The patient's age.
    Age(AgeCriterion),
    /// A named criterion from `definitions.toml`.
    Named(Arc<NamedCriterion>),
}

/// A criterion defined once in `definitions.toml` and referred to by name.
#[derive(Debug)]
pub struct NamedCriterion {
    /// Its name.
    pub name: String,
    /// What it means, for people.
    pub description: String,
    /// A short name that prefixes its evidence lines (e.g. `Renal insufficiency`).
    pub label: String,
    /// Its definition.
    pub criterion: Criterion,
}

/// Matches an active condition coded in a value set.
#[derive(Debug, Clone)]
pub struct ConditionCriterion {
    /// Index of the value set.
    pub valueset: usize,
    /// When set, the condition's onset must be at least this many days before now.
    pub onset_at_least_days_ago: Option<i64>,
}

/// Matches an active medication on record.
#[derive(Debug, Clone)]
pub struct MedicationCriterion {
    /// Index of the value set.
    pub valueset: usize,
}

/// Matches a draft order in scope.
#[derive(Debug, Clone)]
pub struct DraftOrderCriterion {
    /// Index of the value set.
    pub valueset: usize,
}

/// A test on the latest result of an analyte within a look-back window.
#[derive(Debug, Clone)]
pub struct LabCriterion {
    /// Index of the analyte.
    pub analyte: usize,
    /// Look-back window in days from the evaluation time.
    pub within_days: i64,
    /// What is tested.
    pub test: LabTest,
    /// Whether the result's own reference range (or interpretation) wins over the threshold.
    pub lab_range: bool,
}

/// What a lab criterion tests.
#[derive(Debug, Clone, PartialEq)]
pub enum LabTest {
    /// A usable result exists in the window.
    Present,
    /// No usable result exists in the window.
    Missing,
    /// The latest result is below this value (canonical unit).
    Below(f64),
    /// The latest result is above this value (canonical unit).
    Above(f64),
}

/// Matches on the patient's age in whole years.
#[derive(Debug, Clone)]
pub struct AgeCriterion {
    /// Minimum age, inclusive.
    pub at_least: Option<u32>,
    /// Maximum age, exclusive.
    pub below: Option<u32>,
}

/// The TOML form of a criterion: exactly one of its keys is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCriterion {
    all: Option<Vec<RawCriterion>>,
    any: Option<Vec<RawCriterion>>,
    not: Option<Box<RawCriterion>>,
    hook: Option<Vec<String>>,
    condition: Option<RawConditionCriterion>,
    medication: Option<RawValueSetCriterion>,
    draft_order: Option<RawValueSetCriterion>,
    lab: Option<RawLabCriterion>,
    age: Option<RawAgeCriterion>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    /// Only meaningful in `definitions.toml`: what it means.
    pub description: Option<String>,
    /// Only meaningful in `definitions.toml`: a short name that prefixes its evidence.
    pub label: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConditionCriterion {
    valueset: String,
    onset_at_least_days_ago: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValueSetCriterion {
    valueset: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabCriterion {
    analyte: String,
    within_days: i64,
    below: Option<RawThreshold>,
    above: Option<RawThreshold>,
    #[serde(default)]
    missing: bool,
    #[serde(default = "yes")]
    lab_range: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThreshold {
    value: f64,
    unit: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgeCriterion {
    at_least: Option<u32>,
    below: Option<u32>,
}

/// What validation needs to resolve names.
pub trait CriterionScope {
    /// Index of a value set by id.
    fn valueset(&self, id: &str) -> Option<usize>;
    /// Index of an analyte by id.
    fn analyte(&self, id: &str) -> Option<usize>;
    /// Converts a threshold into the analyte's canonical unit; `None` for an unknown unit.
    fn threshold(&self, analyte: usize, value: f64, unit: &str) -> Option<f64>;
    /// A named criterion by name.
    fn named(&self, name: &str) -> Option<Arc<NamedCriterion>>;
}

impl RawCriterion {
    /// Validates the criterion. The error names the part that is wrong.
    pub fn validate(self, scope: &dyn CriterionScope) -> Result<Criterion, String> {
        let set: Vec<&str> = [
            ("all", self.all.is_some()),
            ("any", self.any.is_some()),
            ("not", self.not.is_some()),
            ("hook", self.hook.is_some()),
            ("condition", self.condition.is_some()),
            ("medication", self.medication.is_some()),
            ("draft_order", self.draft_order.is_some()),
            ("lab", self.lab.is_some()),
            ("age", self.age.is_some()),
            ("ref", self.reference.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        match set.len() {
            1 => {}
            0 => return Err("a criterion needs one of all, any, not, hook, condition, medication, draft_order, lab, age or ref".into()),
            _ => return Err(format!("a criterion has exactly one kind, found {}", set.join(" and "))),
        }
        let valueset = |id: &str| {
            scope
                .valueset(id)
                .ok_or_else(|| format!("unknown value set '{id}'"))
        };
        if let Some(children) = self.all {
            return Ok(Criterion::All(validate_children(children, scope, "all")?));
        }
        if let Some(children) = self.any {
            return Ok(Criterion::Any(validate_children(children, scope, "any")?));
        }
        if let Some(child) = self.not {
            return Ok(Criterion::Not(Box::new(child.validate(scope)?)));
        }
        if let Some(hooks) = self.hook {
            let hooks = hooks
                .iter()
                .map(|h| h.parse::<Hook>())
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Criterion::Hook(hooks));
        }
        if let Some(c) = self.condition {
            return Ok(Criterion::Condition(ConditionCriterion {
                valueset: valueset(&c.valueset)?,
                onset_at_least_days_ago: c.onset_at_least_days_ago,
            }));
        }
        if let Some(c) = self.medication {
            return Ok(Criterion::Medication(MedicationCriterion {
                valueset: valueset(&c.valueset)?,
            }));
        }
        if let Some(c) = self.draft_order {
            return Ok(Criterion::DraftOrder(DraftOrderCriterion {
                valueset: valueset(&c.valueset)?,
            }));
        }
        if let Some(lab) = self.lab {
            return validate_lab(lab, scope).map(Criterion::Lab);
        }
        if let Some(age) = self.age {
            if age.at_least.is_none() && age.below.is_none() {
                return Err("an age criterion needs at_least or below".into());
            }
            return Ok(Criterion::Age(AgeCriterion {
                at_least: age.at_least,
                below: age.below,
            }));
        }
        let name = self.reference.unwrap_or_default();
        scope
            .named(&name)
            .map(Criterion::Named)
            .ok_or_else(|| format!("unknown named criterion '{name}' (see definitions.toml)"))
    }
}

fn validate_children(
    children: Vec<RawCriterion>,
    scope: &dyn CriterionScope,
    kind: &str,
) -> Result<Vec<Criterion>, String> {
    if children.is_empty() {
        return Err(format!("'{kind}' needs at least one criterion"));
    }
    children.into_iter().map(|c| c.validate(scope)).collect()
}

fn validate_lab(lab: RawLabCriterion, scope: &dyn CriterionScope) -> Result<LabCriterion, String> {
    let analyte = scope
        .analyte(&lab.analyte)
        .ok_or_else(|| format!("unknown analyte '{}' (see analytes.toml)", lab.analyte))?;
    if lab.within_days <= 0 {
        return Err(format!(
            "lab criterion on '{}': within_days must be positive, got {}",
            lab.analyte, lab.within_days
        ));
    }
    let convert = |threshold: RawThreshold| {
        scope
            .threshold(analyte, threshold.value, &threshold.unit)
            .ok_or_else(|| {
                format!(
                    "threshold unit '{}' is not a known unit of analyte '{}' (see analytes.toml)",
                    threshold.unit, lab.analyte
                )
            })
    };
    let test = match (lab.below, lab.above, lab.missing) {
        (None, None, false) => LabTest::Present,
        (None, None, true) => LabTest::Missing,
        (Some(below), None, false) => LabTest::Below(convert(below)?),
        (None, Some(above), false) => LabTest::Above(convert(above)?),
        _ => {
            return Err(format!(
                "lab criterion on '{}': use one of below, above or missing",
                lab.analyte
            ));
        }
    };
    Ok(LabCriterion {
        analyte,
        within_days: lab.within_days,
        test,
        lab_range: lab.lab_range,
    })
}
