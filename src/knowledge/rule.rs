//! Rule files (`rules/*.toml`): their TOML form and the validated [`Rule`].
//!
//! A rule says when it fires (a criterion), how loud it is (an indicator,
//! raised by escalations), what the card says (summary, advice, conditional
//! notes), where the advice comes from (source), and what the clinician can
//! accept with one click (suggestion templates holding FHIR R4 resources).

use serde::Deserialize;
use toml::de::DeTable;

use super::criteria::{
    CRITERION_SCHEMA, Criterion, CriterionScope, Place, RawCriterion, parse_hooks,
};
use super::diagnostic::{Diagnostic, Problem, join};
use super::keys::{Schema, Shape, check_keys, fields_of, leaves};
use super::topics::{self, IssueTopic};
use crate::hooks::Hook;
use crate::hooks::vocabulary::{ActionType, Indicator, SelectionBehavior};

/// Why a rule stayed quiet, or a suggestion was not offered, although its clinical trigger
/// was there. `cramp-cds evaluate --explain` lists each with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SafetyReason {
    /// The drug is given for another accepted use (reason, condition or product).
    Indication,
    /// The drug is given by a route the rule is not about.
    Route,
    /// The patient's age (under 18, or unknown) rules out a fixed adult dose.
    Age,
    /// Kidney function rules the suggestion out.
    Renal,
    /// The patient already takes a drug of the same class.
    AlreadyOnIt,
    /// The condition behind a treatment suggestion is not confirmed.
    UnconfirmedDiagnosis,
    /// The same order is offered on a more urgent card.
    Duplicate,
    /// The change would be an abrupt large dose reduction (withdrawal risk).
    WithdrawalRisk,
    /// The new dose cannot be given with the product the order names (its strength, or an
    /// extended-release form taken on another schedule).
    Product,
    /// A result it depends on is reported only as a bound ("<0.6") that may be on either side
    /// of the limit. Set by the engine, not written in rule files.
    #[serde(rename = "inconclusive-result")]
    Inconclusive,
}

impl SafetyReason {
    /// The reason as rule files and `--explain` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            SafetyReason::Indication => "indication",
            SafetyReason::Route => "route",
            SafetyReason::Age => "age",
            SafetyReason::Renal => "renal",
            SafetyReason::AlreadyOnIt => "already-on-it",
            SafetyReason::UnconfirmedDiagnosis => "unconfirmed-diagnosis",
            SafetyReason::Duplicate => "duplicate",
            SafetyReason::WithdrawalRisk => "withdrawal-risk",
            SafetyReason::Product => "product",
            SafetyReason::Inconclusive => "inconclusive-result",
        }
    }
}

/// A safety exclusion of a rule: when it matches, the rule stays quiet and says why.
#[derive(Debug)]
pub struct StayQuiet {
    /// The kind of reason.
    pub reason: SafetyReason,
    /// When it applies.
    pub when: Criterion,
    /// Why the rule stays quiet, for people.
    pub explanation: String,
}

/// Where a rule's advice comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSource {
    /// The citation, shown as `card.source.label`.
    pub label: String,
    /// An absolute URL of the source, when it has one.
    pub url: Option<String>,
}

/// A validated rule.
#[derive(Debug)]
pub struct Rule {
    /// The rule id, sent as `card.source.topic.code`.
    pub id: String,
    /// A short name.
    pub title: String,
    /// The file it was read from.
    pub file: String,
    /// The hooks it runs on.
    pub hooks: Vec<Hook>,
    /// The indicator when no escalation applies.
    pub indicator: Indicator,
    /// The card summary when no escalation applies (under 140 characters).
    pub summary: String,
    /// The summary with the decisive facts (`{lab:magnesium}`, `{medication}`, `{order}`,
    /// `{condition}`), used instead of `summary` when every placeholder has a fact and the
    /// filled text fits.
    pub summary_with_facts: Option<String>,
    /// Where the advice comes from.
    pub source: RuleSource,
    /// When the rule fires.
    pub when: Criterion,
    /// Variants, checked in order: each whose criterion matches and whose indicator is at
    /// least the card's so far applies, and a later one overrides an earlier one's summary.
    pub escalations: Vec<Escalation>,
    /// What to do, in Markdown.
    pub advice: String,
    /// Conditional additions to the advice.
    pub notes: Vec<Note>,
    /// One-click suggestions.
    pub suggestions: Vec<SuggestionTemplate>,
    /// Explicit selection behaviour; `any` when unset and there are suggestions.
    pub selection_behavior: Option<SelectionBehavior>,
    /// Safety exclusions: when one matches, the rule stays quiet (reported by `--explain`).
    pub stay_quiet: Vec<StayQuiet>,
    /// Rule ids that, when they fire, silence this rule: the one way precedence is stated.
    pub yields_to: Vec<String>,
    /// Links shown on the card.
    pub links: Vec<LinkTemplate>,
    /// The kinds of facts any of its criteria reads, worked out when it loads.
    pub reads: Vec<IssueTopic>,
}

/// A louder variant of a rule's card, or one at the same level with its own summary.
#[derive(Debug)]
pub struct Escalation {
    /// The raised indicator.
    pub indicator: Indicator,
    /// A summary for the raised card, if different.
    pub summary: Option<String>,
    /// The raised card's summary with the decisive facts (see [`Rule::summary_with_facts`]).
    pub summary_with_facts: Option<String>,
    /// When it applies.
    pub when: Criterion,
}

/// A paragraph added to the advice when its criterion matches.
#[derive(Debug)]
pub struct Note {
    /// When it is added.
    pub when: Criterion,
    /// The Markdown text.
    pub text: String,
}

/// A suggestion, instantiated per card.
#[derive(Debug)]
pub struct SuggestionTemplate {
    /// `suggestion.label`.
    pub label: String,
    /// `suggestion.isRecommended`.
    pub is_recommended: bool,
    /// Offered only when this matches.
    pub when: Option<Criterion>,
    /// Not offered when this matches.
    pub unless: Option<Criterion>,
    /// When set, a matching `unless` is a safety reason: the card says the suggestion is not
    /// offered, and why.
    pub unless_reason: Option<(SafetyReason, String)>,
    /// The actions, applied together.
    pub actions: Vec<ActionTemplate>,
}

/// One action of a suggestion.
#[derive(Debug)]
pub struct ActionTemplate {
    /// What it does.
    pub action_type: ActionType,
    /// `action.description`.
    pub description: String,
    /// Included only when this matches.
    pub when: Option<Criterion>,
    /// For create: the FHIR R4 resource, without subject (filled per request).
    pub resource: Option<serde_json::Value>,
    /// For update: the dose the draft order is changed to.
    pub set_dose: Option<DoseTemplate>,
}

/// A dose an update action writes into a draft MedicationRequest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoseTemplate {
    /// Dose per administration.
    pub value: f64,
    /// Its unit (`mg`).
    pub unit: String,
    /// Administrations per period.
    pub frequency: u32,
    /// The period.
    pub period: f64,
    /// The period's unit (`d`, `wk`, `h`).
    pub period_unit: String,
    /// The instruction as text.
    pub text: String,
}

/// A link shown on the card.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkTemplate {
    /// What the clinician sees.
    pub label: String,
    /// An absolute URL.
    pub url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    title: String,
    hooks: Vec<String>,
    indicator: Indicator,
    summary: String,
    summary_with_facts: Option<String>,
    source: RuleSource,
    when: RawCriterion,
    #[serde(default)]
    escalate: Vec<RawEscalation>,
    advice: RawAdvice,
    #[serde(default)]
    suggestions: Vec<RawSuggestion>,
    selection_behavior: Option<SelectionBehavior>,
    #[serde(default)]
    stay_quiet: Vec<RawStayQuiet>,
    #[serde(default)]
    yields_to: Vec<String>,
    #[serde(default)]
    links: Vec<LinkTemplate>,
}

/// The TOML form of a `[[stay_quiet]]` entry of a rule: a safety exclusion.
///
/// - `reason`: `indication`, `route`, `age`, `renal`, `already-on-it`,
///   `unconfirmed-diagnosis`, `duplicate` or `withdrawal-risk`.
/// - `when`: a criterion; when the rule's own `when` matches and this matches too, the rule
///   stays quiet.
/// - `explanation`: why, for people; `cramp-cds evaluate --explain` prints it with the reason.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStayQuiet {
    reason: SafetyReason,
    when: RawCriterion,
    explanation: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalation {
    indicator: Indicator,
    summary: Option<String>,
    summary_with_facts: Option<String>,
    when: RawCriterion,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdvice {
    text: String,
    #[serde(default)]
    notes: Vec<RawNote>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNote {
    when: RawCriterion,
    text: String,
}

/// The TOML form of a `[[suggestions]]` entry.
///
/// - `when` / `unless`: criteria; the suggestion is offered when `when` matches (or is absent)
///   and `unless` does not.
/// - `unless_reason` with `unless_explanation`: makes `unless` a safety exclusion (reasons as in
///   `[[stay_quiet]]`): when it matches, the card lists the suggestion under "Not offered" with
///   the explanation, and `--explain` reports it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuggestion {
    label: String,
    #[serde(default)]
    is_recommended: bool,
    when: Option<RawCriterion>,
    unless: Option<RawCriterion>,
    unless_reason: Option<SafetyReason>,
    unless_explanation: Option<String>,
    actions: Vec<RawAction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    #[serde(rename = "type")]
    action_type: ActionType,
    description: String,
    when: Option<RawCriterion>,
    resource: Option<toml::Value>,
    set_dose: Option<DoseTemplate>,
}

/// Longest summary CDS Hooks allows (it must be shorter than 140 characters).
pub const MAX_SUMMARY_CHARS: usize = 139;

/// The resource types a create suggestion may carry.
pub const CREATABLE_RESOURCE_TYPES: [&str; 2] = ["MedicationRequest", "ServiceRequest"];

/// The keys of a rule file, for the loader's key check and the language reference.
pub const RULE_SCHEMA: Schema = Schema {
    name: "a rule file",
    keys: fields_of::<RawRule>,
    child: rule_child,
};

fn rule_child(key: &str) -> Shape {
    const SOURCE: Schema = Schema {
        name: "a rule's source",
        keys: fields_of::<RuleSource>,
        child: leaves,
    };
    const ESCALATE: Schema = Schema {
        name: "an [[escalate]] entry",
        keys: fields_of::<RawEscalation>,
        child: when_child,
    };
    const ADVICE: Schema = Schema {
        name: "a rule's advice",
        keys: fields_of::<RawAdvice>,
        child: advice_child,
    };
    const SUGGESTION: Schema = Schema {
        name: "a [[suggestions]] entry",
        keys: fields_of::<RawSuggestion>,
        child: suggestion_child,
    };
    const STAY_QUIET: Schema = Schema {
        name: "a [[stay_quiet]] entry",
        keys: fields_of::<RawStayQuiet>,
        child: when_child,
    };
    const LINK: Schema = Schema {
        name: "a [[links]] entry",
        keys: fields_of::<LinkTemplate>,
        child: leaves,
    };
    match key {
        "source" => Shape::Table(SOURCE),
        "when" => Shape::Table(CRITERION_SCHEMA),
        "escalate" => Shape::Tables(ESCALATE),
        "advice" => Shape::Table(ADVICE),
        "suggestions" => Shape::Tables(SUGGESTION),
        "stay_quiet" => Shape::Tables(STAY_QUIET),
        "links" => Shape::Tables(LINK),
        _ => Shape::Value,
    }
}

fn when_child(key: &str) -> Shape {
    match key {
        "when" | "unless" => Shape::Table(CRITERION_SCHEMA),
        _ => Shape::Value,
    }
}

fn advice_child(key: &str) -> Shape {
    const NOTE: Schema = Schema {
        name: "an advice note",
        keys: fields_of::<RawNote>,
        child: when_child,
    };
    match key {
        "notes" => Shape::Tables(NOTE),
        _ => Shape::Value,
    }
}

fn suggestion_child(key: &str) -> Shape {
    const ACTION: Schema = Schema {
        name: "a suggestion action",
        keys: fields_of::<RawAction>,
        child: action_child,
    };
    match key {
        "actions" => Shape::Tables(ACTION),
        other => when_child(other),
    }
}

fn action_child(key: &str) -> Shape {
    const SET_DOSE: Schema = Schema {
        name: "an action's set_dose",
        keys: fields_of::<DoseTemplate>,
        child: leaves,
    };
    match key {
        "set_dose" => Shape::Table(SET_DOSE),
        // `resource` is a FHIR resource: its keys are checked by the FHIR parser instead.
        other => when_child(other),
    }
}

impl Rule {
    /// Parses and validates a rule file. The error names the line, the key path and the
    /// problem; the caller adds the file.
    pub fn from_toml(
        file: &str,
        text: &str,
        scope: &dyn CriterionScope,
    ) -> Result<Rule, Diagnostic> {
        let document = DeTable::parse(text).map_err(|e| Diagnostic::syntax(text, e))?;
        let document = document.get_ref();
        check_keys(document, RULE_SCHEMA, "").map_err(|d| d.locate(text, document))?;
        let raw: RawRule = toml::from_str(text).map_err(|e| Diagnostic::syntax(text, e))?;
        Rule::from_raw(file, raw, scope).map_err(|d| d.locate(text, document))
    }

    fn from_raw(file: &str, raw: RawRule, scope: &dyn CriterionScope) -> Result<Rule, Diagnostic> {
        check_id_and_source(file, &raw)?;
        check_summary(&raw.summary, "summary")?;
        if let Some(template) = &raw.summary_with_facts {
            check_summary_template(template, "summary_with_facts", scope)?;
        }
        let hooks = parse_hooks(&raw.hooks, "hooks")?;
        if hooks.is_empty() {
            return Err(Diagnostic::at("hooks", "hooks must list at least one hook"));
        }
        let criterion =
            |c: RawCriterion, path: &str| c.validate(scope, Place::in_rule(path, &hooks));
        let when = criterion(raw.when, "when")?;
        let escalations = raw
            .escalate
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                if let Some(summary) = &e.summary {
                    check_summary(summary, &format!("escalate[{i}].summary"))?;
                }
                if let Some(template) = &e.summary_with_facts {
                    check_summary_template(
                        template,
                        &format!("escalate[{i}].summary_with_facts"),
                        scope,
                    )?;
                }
                Ok(Escalation {
                    indicator: e.indicator,
                    summary: e.summary,
                    summary_with_facts: e.summary_with_facts,
                    when: criterion(e.when, &format!("escalate[{i}].when"))?,
                })
            })
            .collect::<Result<Vec<_>, Diagnostic>>()?;
        let notes = raw
            .advice
            .notes
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                Ok(Note {
                    when: criterion(n.when, &format!("advice.notes[{i}].when"))?,
                    text: n.text,
                })
            })
            .collect::<Result<Vec<_>, Diagnostic>>()?;
        let suggestions = raw
            .suggestions
            .into_iter()
            .enumerate()
            .map(|(i, s)| validate_suggestion(s, &format!("suggestions[{i}]"), &criterion))
            .collect::<Result<Vec<_>, Diagnostic>>()?;
        let stay_quiet = validate_stay_quiet(raw.stay_quiet, &criterion)?;
        check_links(&raw.links)?;
        if raw.selection_behavior.is_some() && suggestions.is_empty() {
            return Err(Diagnostic::at(
                "selection_behavior",
                "selection_behavior is set but the rule has no suggestions",
            ));
        }
        if let Some((i, own)) = raw
            .yields_to
            .iter()
            .enumerate()
            .find(|(_, id)| **id == raw.id)
        {
            return Err(Diagnostic::at(
                format!("yields_to[{i}]"),
                Problem::Invalid(format!("rule '{own}' cannot yield to itself")),
            ));
        }
        let mut rule = Rule {
            id: raw.id,
            title: raw.title,
            file: file.to_owned(),
            hooks,
            indicator: raw.indicator,
            summary: raw.summary,
            summary_with_facts: raw.summary_with_facts,
            source: raw.source,
            when,
            escalations,
            advice: raw.advice.text.trim().to_owned(),
            notes,
            suggestions,
            selection_behavior: raw.selection_behavior,
            stay_quiet,
            yields_to: raw.yields_to,
            links: raw.links,
            reads: Vec::new(),
        };
        rule.reads = topics::read_by(&rule);
        Ok(rule)
    }
}

/// The rule id matches its file name, and the source has a citation and an absolute URL.
fn check_id_and_source(file: &str, raw: &RawRule) -> Result<(), Diagnostic> {
    let expected_id = file
        .rsplit('/')
        .next()
        .and_then(|name| name.strip_suffix(".toml"))
        .unwrap_or_default();
    if raw.id != expected_id {
        return Err(Diagnostic::at(
            "id",
            format!(
                "rule id '{}' does not match the file name '{expected_id}.toml'",
                raw.id
            ),
        ));
    }
    if raw.source.label.trim().is_empty() {
        return Err(Diagnostic::at(
            "source.label",
            "source.label (the citation) is missing",
        ));
    }
    if let Some(url) = &raw.source.url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(Diagnostic::at(
            "source.url",
            format!("source.url '{url}' is not an absolute URL"),
        ));
    }
    Ok(())
}

fn validate_stay_quiet(
    entries: Vec<RawStayQuiet>,
    criterion: &ValidateAt<'_>,
) -> Result<Vec<StayQuiet>, Diagnostic> {
    entries
        .into_iter()
        .enumerate()
        .map(|(i, q)| {
            if q.explanation.trim().is_empty() {
                return Err(Diagnostic::at(
                    format!("stay_quiet[{i}].explanation"),
                    "stay_quiet needs an explanation",
                ));
            }
            Ok(StayQuiet {
                reason: q.reason,
                when: criterion(q.when, &format!("stay_quiet[{i}].when"))?,
                explanation: q.explanation.trim().to_owned(),
            })
        })
        .collect()
}

fn check_links(links: &[LinkTemplate]) -> Result<(), Diagnostic> {
    if let Some((i, link)) = links
        .iter()
        .enumerate()
        .find(|(_, l)| !l.url.starts_with("https://"))
    {
        return Err(Diagnostic::at(
            format!("links[{i}].url"),
            format!("link '{}' must have an absolute https URL", link.label),
        ));
    }
    Ok(())
}

fn check_summary(summary: &str, path: &str) -> Result<(), Diagnostic> {
    let chars = summary.chars().count();
    if chars == 0 || chars > MAX_SUMMARY_CHARS {
        return Err(Diagnostic::at(
            path,
            format!(
                "summary must be 1 to {MAX_SUMMARY_CHARS} characters, it has {chars}: '{summary}'"
            ),
        ));
    }
    Ok(())
}

/// The placeholders a `summary_with_facts` may hold, besides `{lab:ANALYTE}`.
pub const SUMMARY_FACTS: [&str; 3] = ["medication", "order", "condition"];

/// A summary template: balanced placeholders, each `{lab:ANALYTE}` with a known analyte or one
/// of [`SUMMARY_FACTS`], and its fixed text short enough to leave room for the facts.
fn check_summary_template(
    template: &str,
    path: &str,
    scope: &dyn CriterionScope,
) -> Result<(), Diagnostic> {
    let mut fixed = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        fixed.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}').map(|e| e + start) else {
            return Err(Diagnostic::at(
                path,
                format!("an unclosed '{{' in '{template}'"),
            ));
        };
        let placeholder = &rest[start + 1..end];
        let known = match placeholder.split_once(':') {
            Some(("lab", analyte)) => scope.analyte(analyte).is_some(),
            None => SUMMARY_FACTS.contains(&placeholder),
            _ => false,
        };
        if !known {
            return Err(Diagnostic::at(
                path,
                format!(
                    "unknown placeholder '{{{placeholder}}}': use {{lab:ANALYTE}} with an analyte of analytes.toml, {{medication}}, {{order}} or {{condition}}"
                ),
            ));
        }
        rest = &rest[end + 1..];
    }
    fixed.push_str(rest);
    if fixed.contains('}') {
        return Err(Diagnostic::at(
            path,
            format!("a stray '}}' in '{template}'"),
        ));
    }
    check_summary(&fixed, path)
}

type ValidateAt<'a> = dyn Fn(RawCriterion, &str) -> Result<Criterion, Diagnostic> + 'a;

fn validate_suggestion(
    raw: RawSuggestion,
    path: &str,
    criterion: &ValidateAt<'_>,
) -> Result<SuggestionTemplate, Diagnostic> {
    let label = raw.label.clone();
    let fail = |key: &str, message: String| Diagnostic::at(join(path, key), message);
    if raw.actions.is_empty() {
        return Err(fail(
            "actions",
            format!("suggestion '{label}' has no actions"),
        ));
    }
    let optional =
        |c: Option<RawCriterion>, key: &str| c.map(|c| criterion(c, &join(path, key))).transpose();
    let when = optional(raw.when, "when")?;
    let unless = optional(raw.unless, "unless")?;
    let unless_reason = match (raw.unless_reason, raw.unless_explanation) {
        (None, None) => None,
        (Some(reason), Some(explanation)) if unless.is_some() && !explanation.trim().is_empty() => {
            Some((reason, explanation.trim().to_owned()))
        }
        _ => {
            return Err(fail(
                "unless_reason",
                format!(
                    "suggestion '{label}': unless_reason and unless_explanation go together, with an unless"
                ),
            ));
        }
    };
    let actions = raw
        .actions
        .into_iter()
        .enumerate()
        .map(|(i, action)| {
            validate_action(
                action,
                &join(path, &format!("actions[{i}]")),
                &label,
                criterion,
            )
        })
        .collect::<Result<Vec<_>, Diagnostic>>()?;
    Ok(SuggestionTemplate {
        label: raw.label,
        is_recommended: raw.is_recommended,
        when,
        unless,
        unless_reason,
        actions,
    })
}

/// One action of the suggestion `label`, found at `at` (`suggestions[0].actions[1]`).
fn validate_action(
    action: RawAction,
    at: &str,
    label: &str,
    criterion: &ValidateAt<'_>,
) -> Result<ActionTemplate, Diagnostic> {
    let fail = |path: &str, message: String| Diagnostic::at(path, message);
    let when = action
        .when
        .map(|c| criterion(c, &join(at, "when")))
        .transpose()?;
    match (action.action_type, &action.set_dose) {
        (ActionType::Update, None) => {
            return Err(fail(
                at,
                format!("suggestion '{label}': an update action needs set_dose"),
            ));
        }
        (ActionType::Update, Some(dose)) => {
            if dose.unit != "mg" || dose.value <= 0.0 || dose.period <= 0.0 || dose.frequency == 0 {
                return Err(fail(
                    &format!("{at}.set_dose"),
                    format!(
                        "suggestion '{label}': set_dose needs a positive value in mg, frequency and period"
                    ),
                ));
            }
            if !matches!(dose.period_unit.as_str(), "h" | "d" | "wk") {
                return Err(fail(
                    &format!("{at}.set_dose.period_unit"),
                    format!("suggestion '{label}': set_dose.period_unit must be h, d or wk"),
                ));
            }
        }
        (_, Some(_)) => {
            return Err(fail(
                &format!("{at}.set_dose"),
                format!("suggestion '{label}': only update actions take set_dose"),
            ));
        }
        (_, None) => {}
    }
    let resource = match (action.action_type, action.resource) {
        (ActionType::Create, Some(resource)) => Some(
            validate_resource_template(resource).map_err(|e| fail(&format!("{at}.resource"), e))?,
        ),
        (ActionType::Create, None) => {
            return Err(fail(
                at,
                format!("suggestion '{label}': a create action needs a resource"),
            ));
        }
        (_, Some(_)) => {
            return Err(fail(
                &format!("{at}.resource"),
                format!(
                    "suggestion '{label}': only create actions carry a resource; update and delete act on the draft order"
                ),
            ));
        }
        (_, None) => None,
    };
    Ok(ActionTemplate {
        action_type: action.action_type,
        description: action.description,
        when,
        resource,
        set_dose: action.set_dose,
    })
}

/// Checks that a suggested resource is a valid FHIR R4 draft MedicationRequest or
/// ServiceRequest once a subject is filled in, and returns it as JSON.
fn validate_resource_template(resource: toml::Value) -> Result<serde_json::Value, String> {
    let mut json = serde_json::to_value(&resource)
        .map_err(|e| format!("suggestion resource cannot be turned into JSON: {e}"))?;
    let object = json
        .as_object_mut()
        .ok_or("a suggestion resource must be a table")?;
    let resource_type = object
        .get("resourceType")
        .and_then(|t| t.as_str())
        .unwrap_or_default()
        .to_owned();
    if !CREATABLE_RESOURCE_TYPES.contains(&resource_type.as_str()) {
        return Err(format!(
            "a suggestion resource must be a MedicationRequest or ServiceRequest, not '{resource_type}'"
        ));
    }
    if object.get("status").and_then(|s| s.as_str()) != Some("draft") {
        return Err(format!(
            "suggested {resource_type} must have status 'draft'"
        ));
    }
    if resource_type == "MedicationRequest" && !object.contains_key("dosageInstruction") {
        return Err("a suggested MedicationRequest needs a structured dosageInstruction".into());
    }
    let mut probe = json.clone();
    if let Some(o) = probe.as_object_mut() {
        o.insert(
            "subject".into(),
            serde_json::json!({"reference": "Patient/example"}),
        );
    }
    let bytes = serde_json::to_vec(&probe).map_err(|e| e.to_string())?;
    cramp_fhir_parse::parse_resource(&bytes)
        .map_err(|e| format!("suggested resource is not valid FHIR R4: {e}"))?;
    Ok(json)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::knowledge::criteria::{NamedCriterion, Route};

    /// Knows one value set, `drugs`, and nothing else.
    struct OneValueSet;

    impl CriterionScope for OneValueSet {
        fn valueset(&self, id: &str) -> Option<usize> {
            (id == "drugs").then_some(0)
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

    fn rule(extra: &str, when: &str) -> Result<Rule, String> {
        let text = format!(
            r#"id = "r"
title = "R"
hooks = ["order-sign"]
indicator = "info"
summary = "S"
source = {{ label = "L" }}
when = {when}
advice = {{ text = "A" }}
{extra}"#
        );
        Rule::from_toml("rules/r.toml", &text, &OneValueSet).map_err(|e| e.to_string())
    }

    #[test]
    fn stay_quiet_and_route_keys_are_read() {
        let rule = rule(
            r#"[[stay_quiet]]
reason = "indication"
when = { condition = { valueset = "drugs" } }
explanation = "another use""#,
            r#"{ draft_order = { valueset = "drugs", route = ["oral", "intravenous"], reason_not = "drugs" } }"#,
        )
        .unwrap();
        assert_eq!(rule.stay_quiet.len(), 1);
        assert_eq!(rule.stay_quiet[0].reason, SafetyReason::Indication);
        let Criterion::DraftOrder(order) = &rule.when else {
            panic!("not a draft order criterion");
        };
        assert_eq!(order.routes, vec![Route::Oral, Route::Intravenous]);
        assert_eq!(order.reason_not, Some(0));
    }

    #[test]
    fn route_and_oral_only_together_are_refused() {
        let error = rule(
            "",
            r#"{ draft_order = { valueset = "drugs", route = ["oral"], oral_only = true } }"#,
        )
        .unwrap_err();
        assert!(error.contains("route or oral_only"), "{error}");
    }

    #[test]
    fn an_unknown_reason_value_set_is_named() {
        let error = rule(
            "",
            r#"{ draft_order = { valueset = "drugs", reason = "nowhere" } }"#,
        )
        .unwrap_err();
        assert!(error.contains("unknown value set 'nowhere'"), "{error}");
    }

    #[test]
    fn unless_reason_needs_an_unless_and_an_explanation() {
        let error = rule(
            r#"[[suggestions]]
label = "Cancel"
unless_reason = "renal"
[[suggestions.actions]]
type = "delete"
description = "Remove it""#,
            r#"{ draft_order = { valueset = "drugs" } }"#,
        )
        .unwrap_err();
        assert!(
            error.contains("unless_reason and unless_explanation"),
            "{error}"
        );
    }
}

/// Every validation error of a rule file, with the key path it names.
#[cfg(test)]
mod validation_messages {
    use std::sync::Arc;

    use super::*;
    use crate::knowledge::criteria::NamedCriterion;

    /// Knows the value set `drugs`, the analyte `mg` (unit `mmol/L`) and the name of one
    /// named criterion, `renal-insufficiency`.
    struct SmallScope;

    impl CriterionScope for SmallScope {
        fn valueset(&self, id: &str) -> Option<usize> {
            (id == "drugs").then_some(0)
        }
        fn analyte(&self, id: &str) -> Option<usize> {
            (id == "mg").then_some(0)
        }
        fn threshold(&self, _: usize, value: f64, unit: &str) -> Option<f64> {
            (unit == "mmol/L").then_some(value)
        }
        fn named(&self, _: &str) -> Option<Arc<NamedCriterion>> {
            None
        }
        fn valueset_ids(&self) -> Vec<&str> {
            vec!["drugs"]
        }
        fn analyte_ids(&self) -> Vec<&str> {
            vec!["mg"]
        }
        fn analyte_units(&self, _: usize) -> Vec<&str> {
            vec!["mmol/L"]
        }
        fn named_ids(&self) -> Vec<&str> {
            vec!["renal-insufficiency"]
        }
    }

    const BASE: &str = r#"id = "r"
title = "R"
hooks = ["order-sign"]
indicator = "info"
summary = "S"
source = { label = "L" }
when = { draft_order = { valueset = "drugs" } }
advice = { text = "A" }
"#;

    /// The base rule with `from` replaced by `to`, plus `extra` at the end; its error.
    fn error(from: &str, to: &str, extra: &str) -> String {
        assert!(BASE.contains(from), "{from}");
        let text = format!("{}{extra}", BASE.replacen(from, to, 1));
        match Rule::from_toml("rules/r.toml", &text, &SmallScope) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    fn when(criterion: &str) -> String {
        error(
            r#"when = { draft_order = { valueset = "drugs" } }"#,
            &format!("when = {criterion}"),
            "",
        )
    }

    fn suggestion(body: &str) -> String {
        error("", "", &format!("[[suggestions]]\nlabel = \"X\"\n{body}"))
    }

    fn assert_says(error: &str, expected: &str) {
        assert!(
            error.contains(expected),
            "expected '{expected}' in '{error}'"
        );
    }

    #[test]
    fn a_summary_with_facts_is_checked_for_its_placeholders() {
        let with = |template: &str| {
            error(
                "summary = \"S\"",
                &format!("summary = \"S\"\nsummary_with_facts = \"{template}\""),
                "",
            )
        };
        let long = "x".repeat(MAX_SUMMARY_CHARS + 1);
        for (error, expected) in [
            (
                with("Low {lab:magnesum}"),
                "line 6: summary_with_facts: unknown placeholder '{lab:magnesum}'",
            ),
            (
                with("On {medications}"),
                "unknown placeholder '{medications}': use {lab:ANALYTE}",
            ),
            (with("On {order"), "an unclosed '{' in 'On {order'"),
            (with("On order}"), "a stray '}' in 'On order}'"),
            (
                with(&format!("{long}{{order}}")),
                "summary must be 1 to 139 characters, it has 140",
            ),
        ] {
            assert_says(&error, expected);
        }
        let text = BASE.replacen(
            "summary = \"S\"",
            "summary = \"S\"\nsummary_with_facts = \"Mg {lab:mg} with {order} for {condition} on {medication}\"",
            1,
        );
        let rule = Rule::from_toml("rules/r.toml", &text, &SmallScope).unwrap();
        assert_eq!(
            rule.summary_with_facts.as_deref(),
            Some("Mg {lab:mg} with {order} for {condition} on {medication}")
        );
    }

    #[test]
    fn rule_level_errors_name_their_key() {
        let long = "x".repeat(MAX_SUMMARY_CHARS + 1);
        for (error, expected) in [
            (
                error("id = \"r\"", "id = \"q\"", ""),
                "line 1: id: rule id 'q' does not match the file name 'r.toml'",
            ),
            (
                error("label = \"L\"", "label = \" \"", ""),
                "line 6: source.label: source.label (the citation) is missing",
            ),
            (
                error(
                    "label = \"L\"",
                    "label = \"L\", url = \"www.example.org\"",
                    "",
                ),
                "source.url: source.url 'www.example.org' is not an absolute URL",
            ),
            (
                error("summary = \"S\"", &format!("summary = \"{long}\""), ""),
                "line 5: summary: summary must be 1 to 139 characters, it has 140",
            ),
            (
                error("hooks = [\"order-sign\"]", "hooks = []", ""),
                "line 3: hooks: hooks must list at least one hook",
            ),
            (
                error("hooks = [\"order-sign\"]", "hooks = [\"order-sing\"]", ""),
                "hooks[0]: unknown hook 'order-sing'; did you mean 'order-sign'?",
            ),
            (
                error(
                    "",
                    "",
                    "[[escalate]]\nindicator = \"warning\"\nsummary = \"\"\nwhen = { age = { at_least = 1 } }\n",
                ),
                "line 11: escalate[0].summary: summary must be 1 to 139 characters, it has 0",
            ),
            (
                error(
                    "",
                    "",
                    "[[stay_quiet]]\nreason = \"age\"\nwhen = { age = { below = 18 } }\nexplanation = \" \"\n",
                ),
                "stay_quiet[0].explanation: stay_quiet needs an explanation",
            ),
            (
                error(
                    "",
                    "",
                    "[[links]]\nlabel = \"Guide\"\nurl = \"http://example.org\"\n",
                ),
                "links[0].url: link 'Guide' must have an absolute https URL",
            ),
            (
                error("", "", "selection_behavior = \"any\"\n"),
                "selection_behavior: selection_behavior is set but the rule has no suggestions",
            ),
            (
                error("", "", "yields_to = [\"r\"]\n"),
                "yields_to[0]: rule 'r' cannot yield to itself",
            ),
            (
                error("", "", "wins_over = [\"other\"]\n"),
                "line 9: wins_over: 'wins_over' is no longer part of the rule language: state precedence once, as yields_to",
            ),
            (
                error("", "", "titel = \"R\"\n"),
                "line 9: titel: unknown key 'titel' in a rule file; did you mean 'title'?",
            ),
            (
                error("indicator = \"info\"", "indicator = \"loud\"", ""),
                "line 4: unknown variant `loud`, expected one of `info`, `warning`, `critical`",
            ),
        ] {
            assert_says(&error, expected);
        }
    }

    #[test]
    fn suggestion_errors_name_the_suggestion_and_action() {
        let dose = "set_dose = { value = 10, unit = \"mg\", frequency = 1, period = 1, period_unit = \"d\", text = \"10 mg daily\" }";
        for (error, expected) in [
            (
                suggestion("actions = []\n"),
                "suggestions[0].actions: suggestion 'X' has no actions",
            ),
            (
                suggestion("[[suggestions.actions]]\ntype = \"update\"\ndescription = \"D\"\n"),
                "suggestions[0].actions[0]: suggestion 'X': an update action needs set_dose",
            ),
            (
                suggestion(&format!(
                    "[[suggestions.actions]]\ntype = \"update\"\ndescription = \"D\"\n{}\n",
                    dose.replace("\"mg\"", "\"g\"")
                )),
                "suggestions[0].actions[0].set_dose: suggestion 'X': set_dose needs a positive value in mg, frequency and period",
            ),
            (
                suggestion(&format!(
                    "[[suggestions.actions]]\ntype = \"update\"\ndescription = \"D\"\n{}\n",
                    dose.replace("\"d\"", "\"mo\"")
                )),
                "suggestions[0].actions[0].set_dose.period_unit: suggestion 'X': set_dose.period_unit must be h, d or wk",
            ),
            (
                suggestion(&format!(
                    "[[suggestions.actions]]\ntype = \"delete\"\ndescription = \"D\"\n{dose}\n"
                )),
                "suggestions[0].actions[0].set_dose: suggestion 'X': only update actions take set_dose",
            ),
            (
                suggestion("[[suggestions.actions]]\ntype = \"create\"\ndescription = \"D\"\n"),
                "suggestions[0].actions[0]: suggestion 'X': a create action needs a resource",
            ),
            (
                suggestion(
                    "[[suggestions.actions]]\ntype = \"delete\"\ndescription = \"D\"\nresource = { resourceType = \"ServiceRequest\" }\n",
                ),
                "suggestions[0].actions[0].resource: suggestion 'X': only create actions carry a resource",
            ),
            (
                suggestion(
                    "[[suggestions.actions]]\ntype = \"create\"\ndescription = \"D\"\nresource = { resourceType = \"Patient\" }\n",
                ),
                "suggestions[0].actions[0].resource: a suggestion resource must be a MedicationRequest or ServiceRequest, not 'Patient'",
            ),
            (
                suggestion(
                    "[[suggestions.actions]]\ntype = \"create\"\ndescription = \"D\"\nresource = { resourceType = \"ServiceRequest\", status = \"active\", intent = \"proposal\" }\n",
                ),
                "suggested ServiceRequest must have status 'draft'",
            ),
            (
                suggestion(
                    "[[suggestions.actions]]\ntype = \"create\"\ndescription = \"D\"\nresource = { resourceType = \"MedicationRequest\", status = \"draft\", intent = \"proposal\" }\n",
                ),
                "a suggested MedicationRequest needs a structured dosageInstruction",
            ),
            (
                suggestion(
                    "[[suggestions.actions]]\ntype = \"create\"\ndescription = \"D\"\nresource = { resourceType = \"ServiceRequest\", status = \"draft\", intent = 7 }\n",
                ),
                "suggestions[0].actions[0].resource: suggested resource is not valid FHIR R4",
            ),
            (
                suggestion(
                    "unless_reason = \"renal\"\n[[suggestions.actions]]\ntype = \"delete\"\ndescription = \"D\"\n",
                ),
                "suggestions[0].unless_reason: suggestion 'X': unless_reason and unless_explanation go together, with an unless",
            ),
            (
                suggestion(
                    "when = { medication = { valueset = \"drugz\" } }\n[[suggestions.actions]]\ntype = \"delete\"\ndescription = \"D\"\n",
                ),
                "suggestions[0].when.medication.valueset: unknown value set 'drugz'; did you mean 'drugs'?",
            ),
        ] {
            assert_says(&error, expected);
        }
    }

    #[test]
    fn criterion_errors_name_the_criterion_path() {
        for (error, expected) in [
            (
                when("{ }"),
                "line 7: when: a criterion needs one of all, any, not, hook, condition, medication, draft_order, lab, age or ref",
            ),
            (
                when("{ hook = [\"order-sign\"], age = { at_least = 1 } }"),
                "when: a criterion has exactly one kind, found hook and age",
            ),
            (
                when("{ all = [] }"),
                "when.all: 'all' needs at least one criterion",
            ),
            (
                when("{ any = [ { age = { at_least = 1 } }, { not = { age = { } } } ] }"),
                "when.any[1].not.age: an age criterion needs at_least or below",
            ),
            (
                when("{ medication = { valueset = \"drugs\", min_distinct = 0 } }"),
                "when.medication.min_distinct: medication min_distinct must be at least 1",
            ),
            (
                when("{ medication = { valueset = \"drug\" } }"),
                "when.medication.valueset: unknown value set 'drug'; did you mean 'drugs'?",
            ),
            (
                when(
                    "{ condition = { valueset = \"drugs\", body_site = { valueset = \"drugss\", when_absent = \"counts\" } } }",
                ),
                "when.condition.body_site.valueset: unknown value set 'drugss'; did you mean 'drugs'?",
            ),
            (
                when(
                    "{ draft_order = { valueset = \"drugs\", daily_dose_above = { value = 1, unit = \"mg\" }, daily_dose_unknown = true } }",
                ),
                "when.draft_order: draft_order: use daily_dose_above or daily_dose_unknown, not both",
            ),
            (
                when("{ draft_order = { valueset = \"drugs\", route = [] } }"),
                "when.draft_order.route: draft_order: route needs at least one route",
            ),
            (
                when(
                    "{ draft_order = { valueset = \"drugs\", daily_dose_above = { value = 1, unit = \"mL\" } } }",
                ),
                "when.draft_order.daily_dose_above.unit: daily dose unit 'mL' is not supported; use mg, g or ug",
            ),
            (
                when("{ draft_order = { valueset = \"drugs\", except = \"drugz\" } }"),
                "when.draft_order.except: unknown value set 'drugz'; did you mean 'drugs'?",
            ),
            (
                when("{ lab = { analyte = \"mgg\" } }"),
                "when.lab.analyte: unknown analyte 'mgg'; did you mean 'mg'?",
            ),
            (
                when("{ lab = { analyte = \"mg\", within_days = 0 } }"),
                "when.lab.within_days: lab criterion on 'mg': within_days must be positive, got 0",
            ),
            (
                when("{ lab = { analyte = \"mg\", below = { value = 0.7, unit = \"mol/L\" } } }"),
                "when.lab.below.unit: threshold unit 'mol/L' is not a known unit of analyte 'mg' (see analytes.toml); did you mean 'mmol/L'?",
            ),
            (
                when(
                    "{ lab = { analyte = \"mg\", fall = { value = 1, unit = \"mmol/L\", within_hours = 0 } } }",
                ),
                "when.lab.fall.within_hours: lab criterion on 'mg': fall.within_hours must be positive",
            ),
            (
                when(
                    "{ lab = { analyte = \"mg\", below = { value = 1, unit = \"mmol/L\" }, missing = true } }",
                ),
                "when.lab: lab criterion on 'mg': use one of below, above, fall or missing",
            ),
            (
                when("{ lab = { analyte = \"mg\", missing = true, any_result = true } }"),
                "when.lab.any_result: lab criterion on 'mg': any_result applies only to below and above",
            ),
            (
                when("{ lab = { analyte = \"mg\", bellow = { value = 1, unit = \"mmol/L\" } } }"),
                "when.lab.bellow: unknown key 'bellow' in a lab criterion; did you mean 'below'?",
            ),
            (
                when("{ ref = \"renal-insuficiency\" }"),
                "when.ref: unknown named criterion 'renal-insuficiency'; did you mean 'renal-insufficiency'?",
            ),
            (
                when(
                    "{ all = [ { draft_order = { valueset = \"drugs\" } }, { hook = [\"patient-view\"] } ] }",
                ),
                "when.all[1].hook[0]: hook 'patient-view' is not one of the rule's hooks (order-sign), so this part never matches",
            ),
        ] {
            assert_says(&error, expected);
        }
    }

    #[test]
    fn a_draft_order_in_a_rule_that_only_runs_on_patient_view_can_never_fire() {
        let error = error("hooks = [\"order-sign\"]", "hooks = [\"patient-view\"]", "");
        assert_says(
            &error,
            "line 7: when.draft_order: a draft_order criterion in a rule that only runs on patient-view can never match: only order-select and order-sign carry draft orders",
        );
        let text = BASE.replacen(
            "hooks = [\"order-sign\"]",
            "hooks = [\"patient-view\", \"order-select\"]",
            1,
        );
        assert!(Rule::from_toml("rules/r.toml", &text, &SmallScope).is_ok());
    }
}
