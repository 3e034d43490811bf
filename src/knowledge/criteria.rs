//! The criteria language of the rules: its TOML form and its validated form.
//!
//! A criterion is one of `all`, `any`, `not` (combinators), `hook`,
//! `condition`, `medication`, `draft_order`, `lab`, `age`, or `ref` (a named
//! criterion from `definitions.toml`). Validation resolves value sets,
//! analytes and references once, at load time, and converts thresholds into
//! the analyte's canonical unit, so evaluation never looks anything up by name.

use std::sync::Arc;

use serde::Deserialize;

use super::diagnostic::{Diagnostic, NameKind, Problem, join, nearest};
use super::keys::{Schema, Shape, fields_of, leaves};
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
    /// When set, where the condition is (`Condition.bodySite`) must also match.
    pub body_site: Option<BodySiteTest>,
}

/// A test on a condition's `bodySite`.
#[derive(Debug, Clone)]
pub struct BodySiteTest {
    /// Index of the value set of body structures that count.
    pub valueset: usize,
    /// Whether a condition that names no coded body site counts.
    pub when_absent: WhenAbsent,
}

/// What a body-site test does with a condition that names no coded body site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenAbsent {
    /// The condition counts (e.g. numbness of unstated site, which is usually in the feet).
    Counts,
    /// The condition does not count: only a stated site in the value set does.
    DoesNotCount,
}

/// Matches medications on record.
#[derive(Debug, Clone)]
pub struct MedicationCriterion {
    /// Index of the value set.
    pub valueset: usize,
    /// Whether past medications count too (those taken at some time: completed or stopped,
    /// never not-taken, cancelled or entered-in-error; see `MedicationEntry::counts_as_trial`),
    /// not only active ones.
    pub ever: bool,
    /// How many different drugs of the value set must be found (1 by default).
    pub min_distinct: usize,
}

/// Matches a draft order in scope, optionally on its total daily dose.
#[derive(Debug, Clone)]
pub struct DraftOrderCriterion {
    /// Index of the value set.
    pub valueset: usize,
    /// What is tested on the order's total daily dose.
    pub dose: DoseTest,
    /// Only orders given by one of these routes count; an order whose route cannot be told
    /// counts. Empty: any route.
    pub routes: Vec<Route>,
    /// Only orders whose reason (reasonCode, or a reasonReference to a Condition in the
    /// record) is in this value set count.
    pub reason: Option<usize>,
    /// Orders whose reason is in this value set do not count (another accepted use).
    pub reason_not: Option<usize>,
    /// Orders whose medication is also in this value set do not count (e.g. a laxative
    /// magnesium product among magnesium products).
    pub except: Option<usize>,
    /// Only extended-release (or only immediate-release) products count, as `products.toml`
    /// tells them from the product name. `None`: either.
    pub release: Option<Release>,
}

/// Whether a product releases its drug over hours (extended) or at once (immediate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Release {
    /// Extended release (24 HR, ER, CR; Gralise, Lyrica CR).
    Extended,
    /// Any other product.
    Immediate,
}

/// How a medication is given, as far as rules distinguish it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// By mouth.
    Oral,
    /// Into a vein.
    Intravenous,
    /// Into a muscle.
    Intramuscular,
    /// Under the skin.
    Subcutaneous,
    /// On the skin (patch, gel, cream).
    Topical,
    /// Any other route (rectal, inhaled, ophthalmic ...).
    Other,
}

impl Route {
    /// The route's name as rule files spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Oral => "oral",
            Route::Intravenous => "intravenous",
            Route::Intramuscular => "intramuscular",
            Route::Subcutaneous => "subcutaneous",
            Route::Topical => "topical",
            Route::Other => "other",
        }
    }
}

/// A test on a draft order's total daily dose, in milligrams.
#[derive(Debug, Clone, PartialEq)]
pub enum DoseTest {
    /// Any dose, known or not.
    Any,
    /// The dose is known and above this many mg a day.
    Above(f64),
    /// The dose could not be computed from the order.
    Unknown,
}

/// A test on the results of an analyte within a look-back window.
#[derive(Debug, Clone)]
pub struct LabCriterion {
    /// Index of the analyte.
    pub analyte: usize,
    /// Look-back window in days from the evaluation time; any time when `None`.
    pub within_days: Option<i64>,
    /// Whether `Below`/`Above` test only the latest result or any result in the window.
    pub any_result: bool,
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
    /// Two results at most `within_hours` apart, the later lower by at least `amount` (canonical unit).
    Fall {
        /// The fall, in the canonical unit.
        amount: f64,
        /// The most hours between the two results.
        within_hours: i64,
    },
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
    medication: Option<RawMedicationCriterion>,
    draft_order: Option<RawDraftOrderCriterion>,
    lab: Option<RawLabCriterion>,
    age: Option<RawAgeCriterion>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    /// Only meaningful in `definitions.toml`: what it means.
    pub description: Option<String>,
    /// Only meaningful in `definitions.toml`: a short name that prefixes its evidence.
    pub label: Option<String>,
}

/// The TOML form of a `condition` criterion.
///
/// - `valueset` (required): the value set the condition's code must be in.
/// - `onset_at_least_days_ago`: the onset (else the recorded date) is at least this many days ago.
/// - `body_site`: a [`RawBodySiteTest`]; the condition must also be at a site in its value set.
///
/// Only active conditions count (clinical status active, recurrence or relapse, or none and
/// no abatement; not refuted or entered in error).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConditionCriterion {
    valueset: String,
    onset_at_least_days_ago: Option<i64>,
    body_site: Option<RawBodySiteTest>,
}

/// The TOML form of a condition's body-site test, e.g.
/// `body_site = { valueset = "body-site-lower-limb", when_absent = "counts" }`.
///
/// - `valueset` (required): body structure codes (SNOMED CT) that count; a condition counts
///   when any of its coded `bodySite` entries is in it.
/// - `when_absent` (required, so each rule says it explicitly): `"counts"` or
///   `"does-not-count"`, what a condition with no coded `bodySite` does. A `bodySite` with
///   only text is treated as absent, since it cannot be matched.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBodySiteTest {
    valueset: String,
    when_absent: WhenAbsent,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMedicationCriterion {
    valueset: String,
    #[serde(default)]
    ever: bool,
    min_distinct: Option<usize>,
}

/// The TOML form of `draft_order`: a draft order in scope whose medication (or service) is in
/// `valueset`.
///
/// - `daily_dose_above = { value, unit }`: its total daily dose is known and above this
///   (`mg`, `g` or `ug`); `daily_dose_unknown = true`: the dose cannot be computed.
/// - `route = ["oral", ...]`: only orders given by one of these routes count (`oral`,
///   `intravenous`, `intramuscular`, `subcutaneous`, `topical`, `other`); an order whose
///   route cannot be told from its dosage route or product name counts. An order left out
///   for its route is reported by `cramp-cds evaluate --explain` (reason `route`).
///   `oral_only = true` is the older spelling of `route = ["oral"]`.
/// - `reason = "value-set"`: only orders whose `reasonCode`, or a `reasonReference` to a
///   Condition in the record, is in that value set count.
/// - `reason_not = "value-set"`: orders whose reason is in that value set do not count (they
///   are for another accepted use); reported by `--explain` (reason `indication`).
/// - `except = "value-set"`: orders whose medication is also in that value set do not count
///   (e.g. a laxative or antacid product); reported by `--explain` (reason `indication`).
/// - `release = "extended" | "immediate"`: only extended-release (or only other) products
///   count, as `products.toml` tells them from the product name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDraftOrderCriterion {
    valueset: String,
    daily_dose_above: Option<RawThreshold>,
    #[serde(default)]
    daily_dose_unknown: bool,
    #[serde(default)]
    oral_only: bool,
    route: Option<Vec<Route>>,
    reason: Option<String>,
    reason_not: Option<String>,
    except: Option<String>,
    release: Option<Release>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabCriterion {
    analyte: String,
    within_days: Option<i64>,
    #[serde(default)]
    any_result: bool,
    below: Option<RawThreshold>,
    above: Option<RawThreshold>,
    fall: Option<RawFall>,
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
struct RawFall {
    value: f64,
    unit: String,
    within_hours: i64,
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
    /// Every value set id, for suggesting the nearest one to an unknown id.
    fn valueset_ids(&self) -> Vec<&str> {
        Vec::new()
    }
    /// Every analyte id, for suggestions.
    fn analyte_ids(&self) -> Vec<&str> {
        Vec::new()
    }
    /// The units an analyte lists, for suggestions.
    fn analyte_units(&self, _analyte: usize) -> Vec<&str> {
        Vec::new()
    }
    /// Every named criterion, for suggestions.
    fn named_ids(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// Where a criterion is being validated: its key path, and the hooks of the rule it belongs
/// to (`None` in `definitions.toml`, whose criteria serve rules of any hook).
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// The key path, e.g. `when.all[1]`.
    pub path: &'a str,
    /// The hooks the rule runs on.
    pub hooks: Option<&'a [Hook]>,
}

impl<'a> Place<'a> {
    /// A place in a rule that runs on `hooks`.
    pub fn in_rule(path: &'a str, hooks: &'a [Hook]) -> Self {
        Place {
            path,
            hooks: Some(hooks),
        }
    }

    /// A place in `definitions.toml`.
    pub fn in_definitions(path: &'a str) -> Self {
        Place { path, hooks: None }
    }

    fn error(&self, key: &str, problem: impl Into<Problem>) -> Diagnostic {
        Diagnostic::at(join(self.path, key), problem)
    }
}

/// The keys of a criterion, for the loader's key check and the language reference.
pub const CRITERION_SCHEMA: Schema = Schema {
    name: "a criterion",
    keys: fields_of::<RawCriterion>,
    child: criterion_child,
};

fn criterion_child(key: &str) -> Shape {
    const CONDITION: Schema = Schema {
        name: "a condition criterion",
        keys: fields_of::<RawConditionCriterion>,
        child: condition_child,
    };
    const MEDICATION: Schema = Schema {
        name: "a medication criterion",
        keys: fields_of::<RawMedicationCriterion>,
        child: leaves,
    };
    const DRAFT_ORDER: Schema = Schema {
        name: "a draft_order criterion",
        keys: fields_of::<RawDraftOrderCriterion>,
        child: draft_order_child,
    };
    const LAB: Schema = Schema {
        name: "a lab criterion",
        keys: fields_of::<RawLabCriterion>,
        child: lab_child,
    };
    const AGE: Schema = Schema {
        name: "an age criterion",
        keys: fields_of::<RawAgeCriterion>,
        child: leaves,
    };
    match key {
        "all" | "any" => Shape::Tables(CRITERION_SCHEMA),
        "not" => Shape::Table(CRITERION_SCHEMA),
        "condition" => Shape::Table(CONDITION),
        "medication" => Shape::Table(MEDICATION),
        "draft_order" => Shape::Table(DRAFT_ORDER),
        "lab" => Shape::Table(LAB),
        "age" => Shape::Table(AGE),
        _ => Shape::Value,
    }
}

fn condition_child(key: &str) -> Shape {
    const BODY_SITE: Schema = Schema {
        name: "a condition's body_site",
        keys: fields_of::<RawBodySiteTest>,
        child: leaves,
    };
    match key {
        "body_site" => Shape::Table(BODY_SITE),
        _ => Shape::Value,
    }
}

const THRESHOLD: Schema = Schema {
    name: "a threshold",
    keys: fields_of::<RawThreshold>,
    child: leaves,
};

fn draft_order_child(key: &str) -> Shape {
    match key {
        "daily_dose_above" => Shape::Table(THRESHOLD),
        _ => Shape::Value,
    }
}

fn lab_child(key: &str) -> Shape {
    const FALL: Schema = Schema {
        name: "a lab fall",
        keys: fields_of::<RawFall>,
        child: leaves,
    };
    match key {
        "below" | "above" => Shape::Table(THRESHOLD),
        "fall" => Shape::Table(FALL),
        _ => Shape::Value,
    }
}

/// The hooks a rule file may name, for suggestions.
const HOOK_NAMES: [&str; 3] = ["patient-view", "order-select", "order-sign"];

/// Parses hook names; an unknown one is named with the nearest hook.
pub fn parse_hooks(names: &[String], path: &str) -> Result<Vec<Hook>, Diagnostic> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            name.parse::<Hook>().map_err(|_| {
                Diagnostic::at(
                    format!("{path}[{i}]"),
                    Problem::Unknown {
                        kind: NameKind::Hook,
                        name: name.clone(),
                        suggestion: nearest(name, HOOK_NAMES),
                    },
                )
            })
        })
        .collect()
}

fn hook_list(hooks: &[Hook]) -> String {
    hooks
        .iter()
        .map(|h| h.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl RawCriterion {
    /// The kind keys that are set (exactly one in a valid criterion).
    fn kinds(&self) -> Vec<&'static str> {
        [
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
        .collect()
    }

    /// Validates the criterion found at `place`. The error names the key path of the part
    /// that is wrong and, for an unknown name, the nearest known one.
    pub fn validate(
        self,
        scope: &dyn CriterionScope,
        place: Place<'_>,
    ) -> Result<Criterion, Diagnostic> {
        let kinds = self.kinds();
        match kinds.len() {
            1 => {}
            0 => {
                return Err(Diagnostic::at(
                    place.path,
                    "a criterion needs one of all, any, not, hook, condition, medication, draft_order, lab, age or ref",
                ));
            }
            _ => {
                return Err(Diagnostic::at(
                    place.path,
                    format!(
                        "a criterion has exactly one kind, found {}",
                        kinds.join(" and ")
                    ),
                ));
            }
        }
        let valueset = |id: &str, key: &str| {
            scope.valueset(id).ok_or_else(|| {
                Diagnostic::at(
                    join(place.path, key),
                    Problem::Unknown {
                        kind: NameKind::ValueSet,
                        name: id.to_owned(),
                        suggestion: nearest(id, scope.valueset_ids()),
                    },
                )
            })
        };
        if let Some(children) = self.all {
            return validate_children(children, scope, place, "all").map(Criterion::All);
        }
        if let Some(children) = self.any {
            return validate_children(children, scope, place, "any").map(Criterion::Any);
        }
        if let Some(child) = self.not {
            let path = join(place.path, "not");
            let child = child.validate(
                scope,
                Place {
                    path: &path,
                    ..place
                },
            )?;
            return Ok(Criterion::Not(Box::new(child)));
        }
        if let Some(names) = self.hook {
            return validate_hook(&names, place).map(Criterion::Hook);
        }
        if let Some(c) = self.condition {
            return validate_condition(c, &valueset).map(Criterion::Condition);
        }
        if let Some(c) = self.medication {
            return validate_medication(c, place, &valueset).map(Criterion::Medication);
        }
        if let Some(c) = self.draft_order {
            return validate_draft_order(c, place, &valueset).map(Criterion::DraftOrder);
        }
        if let Some(lab) = self.lab {
            return validate_lab(lab, scope, place).map(Criterion::Lab);
        }
        if let Some(age) = self.age {
            return validate_age(age, place).map(Criterion::Age);
        }
        let name = self.reference.unwrap_or_default();
        scope.named(&name).map(Criterion::Named).ok_or_else(|| {
            place.error(
                "ref",
                Problem::Unknown {
                    kind: NameKind::NamedCriterion,
                    name: name.clone(),
                    suggestion: nearest(&name, scope.named_ids()),
                },
            )
        })
    }
}

fn validate_children(
    children: Vec<RawCriterion>,
    scope: &dyn CriterionScope,
    place: Place<'_>,
    kind: &str,
) -> Result<Vec<Criterion>, Diagnostic> {
    if children.is_empty() {
        return Err(place.error(kind, format!("'{kind}' needs at least one criterion")));
    }
    children
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let path = format!("{}[{i}]", join(place.path, kind));
            c.validate(
                scope,
                Place {
                    path: &path,
                    ..place
                },
            )
        })
        .collect()
}

type FindValueSet<'a> = dyn Fn(&str, &str) -> Result<usize, Diagnostic> + 'a;

fn validate_hook(names: &[String], place: Place<'_>) -> Result<Vec<Hook>, Diagnostic> {
    let path = join(place.path, "hook");
    let hooks = parse_hooks(names, &path)?;
    if let Some(declared) = place.hooks
        && let Some((i, hook)) = hooks
            .iter()
            .enumerate()
            .find(|(_, h)| !declared.contains(h))
    {
        return Err(Diagnostic::at(
            format!("{path}[{i}]"),
            Problem::NeverFires(format!(
                "hook '{hook}' is not one of the rule's hooks ({}), so this part never matches",
                hook_list(declared)
            )),
        ));
    }
    Ok(hooks)
}

fn validate_condition(
    c: RawConditionCriterion,
    valueset: &FindValueSet<'_>,
) -> Result<ConditionCriterion, Diagnostic> {
    let body_site = match c.body_site {
        Some(site) => Some(BodySiteTest {
            valueset: valueset(&site.valueset, "condition.body_site.valueset")?,
            when_absent: site.when_absent,
        }),
        None => None,
    };
    Ok(ConditionCriterion {
        valueset: valueset(&c.valueset, "condition.valueset")?,
        onset_at_least_days_ago: c.onset_at_least_days_ago,
        body_site,
    })
}

fn validate_medication(
    c: RawMedicationCriterion,
    place: Place<'_>,
    valueset: &FindValueSet<'_>,
) -> Result<MedicationCriterion, Diagnostic> {
    let min_distinct = c.min_distinct.unwrap_or(1);
    if min_distinct == 0 {
        return Err(place.error(
            "medication.min_distinct",
            "medication min_distinct must be at least 1",
        ));
    }
    Ok(MedicationCriterion {
        valueset: valueset(&c.valueset, "medication.valueset")?,
        ever: c.ever,
        min_distinct,
    })
}

fn validate_age(age: RawAgeCriterion, place: Place<'_>) -> Result<AgeCriterion, Diagnostic> {
    if age.at_least.is_none() && age.below.is_none() {
        return Err(place.error("age", "an age criterion needs at_least or below"));
    }
    Ok(AgeCriterion {
        at_least: age.at_least,
        below: age.below,
    })
}

fn validate_draft_order(
    c: RawDraftOrderCriterion,
    place: Place<'_>,
    valueset: &FindValueSet<'_>,
) -> Result<DraftOrderCriterion, Diagnostic> {
    if let Some(declared) = place.hooks
        && !declared.iter().any(|h| h.has_draft_orders())
    {
        return Err(place.error(
            "draft_order",
            Problem::NeverFires(format!(
                "a draft_order criterion in a rule that only runs on {} can never match: only order-select and order-sign carry draft orders",
                hook_list(declared)
            )),
        ));
    }
    let dose = match (c.daily_dose_above, c.daily_dose_unknown) {
        (None, false) => DoseTest::Any,
        (None, true) => DoseTest::Unknown,
        (Some(limit), false) => DoseTest::Above(
            milligrams(&limit).map_err(|e| place.error("draft_order.daily_dose_above.unit", e))?,
        ),
        (Some(_), true) => {
            return Err(place.error(
                "draft_order",
                "draft_order: use daily_dose_above or daily_dose_unknown, not both",
            ));
        }
    };
    let routes = match (c.route, c.oral_only) {
        (Some(_), true) => {
            return Err(place.error(
                "draft_order",
                "draft_order: use route or oral_only, not both",
            ));
        }
        (Some(routes), false) if routes.is_empty() => {
            return Err(place.error(
                "draft_order.route",
                "draft_order: route needs at least one route",
            ));
        }
        (Some(routes), false) => routes,
        (None, true) => vec![Route::Oral],
        (None, false) => Vec::new(),
    };
    let optional = |id: Option<String>, key: &str| {
        id.map(|id| valueset(&id, &format!("draft_order.{key}")))
            .transpose()
    };
    Ok(DraftOrderCriterion {
        valueset: valueset(&c.valueset, "draft_order.valueset")?,
        dose,
        routes,
        reason: optional(c.reason, "reason")?,
        reason_not: optional(c.reason_not, "reason_not")?,
        except: optional(c.except, "except")?,
        release: c.release,
    })
}

fn validate_lab(
    lab: RawLabCriterion,
    scope: &dyn CriterionScope,
    place: Place<'_>,
) -> Result<LabCriterion, Diagnostic> {
    let analyte = scope.analyte(&lab.analyte).ok_or_else(|| {
        place.error(
            "lab.analyte",
            Problem::Unknown {
                kind: NameKind::Analyte,
                name: lab.analyte.clone(),
                suggestion: nearest(&lab.analyte, scope.analyte_ids()),
            },
        )
    })?;
    if let Some(days) = lab.within_days
        && days <= 0
    {
        return Err(place.error(
            "lab.within_days",
            format!(
                "lab criterion on '{}': within_days must be positive, got {days}",
                lab.analyte
            ),
        ));
    }
    let convert = |threshold: RawThreshold, key: &str| {
        scope
            .threshold(analyte, threshold.value, &threshold.unit)
            .ok_or_else(|| {
                place.error(
                    &format!("lab.{key}.unit"),
                    Problem::UnknownUnit {
                        suggestion: nearest(&threshold.unit, scope.analyte_units(analyte)),
                        unit: threshold.unit,
                        analyte: lab.analyte.clone(),
                    },
                )
            })
    };
    let test = match (lab.below, lab.above, lab.fall, lab.missing) {
        (None, None, None, false) => LabTest::Present,
        (None, None, None, true) => LabTest::Missing,
        (Some(below), None, None, false) => LabTest::Below(convert(below, "below")?),
        (None, Some(above), None, false) => LabTest::Above(convert(above, "above")?),
        (None, None, Some(fall), false) => fall_test(fall, &lab.analyte, place, &convert)?,
        _ => {
            return Err(place.error(
                "lab",
                format!(
                    "lab criterion on '{}': use one of below, above, fall or missing",
                    lab.analyte
                ),
            ));
        }
    };
    if lab.any_result && !matches!(test, LabTest::Below(_) | LabTest::Above(_)) {
        return Err(place.error(
            "lab.any_result",
            format!(
                "lab criterion on '{}': any_result applies only to below and above",
                lab.analyte
            ),
        ));
    }
    Ok(LabCriterion {
        analyte,
        within_days: lab.within_days,
        any_result: lab.any_result,
        test,
        lab_range: lab.lab_range,
    })
}

/// A `fall`: its amount converted into the canonical unit (a difference, so an offset cancels).
fn fall_test(
    fall: RawFall,
    analyte: &str,
    place: Place<'_>,
    convert: &dyn Fn(RawThreshold, &str) -> Result<f64, Diagnostic>,
) -> Result<LabTest, Diagnostic> {
    if fall.within_hours <= 0 {
        return Err(place.error(
            "lab.fall.within_hours",
            format!("lab criterion on '{analyte}': fall.within_hours must be positive"),
        ));
    }
    let zero = convert(
        RawThreshold {
            value: 0.0,
            unit: fall.unit.clone(),
        },
        "fall",
    )?;
    let amount = convert(
        RawThreshold {
            value: fall.value,
            unit: fall.unit,
        },
        "fall",
    )? - zero;
    Ok(LabTest::Fall {
        amount,
        within_hours: fall.within_hours,
    })
}

/// Converts a dose threshold to milligrams; doses are compared in mg.
fn milligrams(threshold: &RawThreshold) -> Result<f64, String> {
    match threshold.unit.as_str() {
        "mg" => Ok(threshold.value),
        "g" => Ok(threshold.value * 1000.0),
        "ug" | "mcg" => Ok(threshold.value / 1000.0),
        other => Err(format!(
            "daily dose unit '{other}' is not supported; use mg, g or ug"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Knows one value set per name in `valuesets`, and nothing else.
    struct ValueSetsOnly(&'static [&'static str]);

    impl CriterionScope for ValueSetsOnly {
        fn valueset(&self, id: &str) -> Option<usize> {
            self.0.iter().position(|v| *v == id)
        }
        fn analyte(&self, _: &str) -> Option<usize> {
            None
        }
        fn threshold(&self, _: usize, _: f64, _: &str) -> Option<f64> {
            None
        }
        fn named(&self, _: &str) -> Option<Arc<NamedCriterion>> {
            None
        }
    }

    fn condition(toml_text: &str) -> Result<Criterion, String> {
        let raw: RawCriterion = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        raw.validate(
            &ValueSetsOnly(&["numbness", "lower-limb"]),
            Place::in_definitions("when"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_body_site_test_is_read_with_what_an_absent_site_does() {
        let criterion = condition(
            r#"condition = { valueset = "numbness", body_site = { valueset = "lower-limb", when_absent = "does-not-count" } }"#,
        )
        .unwrap();
        let Criterion::Condition(c) = criterion else {
            panic!("not a condition criterion");
        };
        let site = c.body_site.unwrap();
        assert_eq!(site.valueset, 1);
        assert_eq!(site.when_absent, WhenAbsent::DoesNotCount);
    }

    #[test]
    fn a_body_site_test_must_say_what_an_absent_site_does() {
        let error = condition(
            r#"condition = { valueset = "numbness", body_site = { valueset = "lower-limb" } }"#,
        )
        .unwrap_err();
        assert!(error.contains("when_absent"), "{error}");
    }

    #[test]
    fn a_body_site_test_names_an_unknown_value_set() {
        let error = condition(
            r#"condition = { valueset = "numbness", body_site = { valueset = "arm", when_absent = "counts" } }"#,
        )
        .unwrap_err();
        assert!(
            error.contains("body_site") && error.contains("'arm'"),
            "{error}"
        );
    }
}
