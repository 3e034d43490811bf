//! Loading and validating the knowledge under `cds-hooks/`: service
//! definitions, value sets, analytes and units, shared criteria, rules and card
//! settings. Everything is checked once at load; a broken file stops start-up
//! with a [`KnowledgeError`] naming the file and the problem. Not for
//! evaluating rules (see `engine`).

pub mod analyte;
pub mod criteria;
pub mod describe;
pub mod diagnostic;
pub mod keys;
pub mod products;
pub mod rule;
pub mod services;
pub mod source;
pub mod topics;
pub mod valueset;
pub mod version;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use crate::hooks::Hook;
use analyte::{ANALYTE_SCHEMA, Analyte, AnalyteError, RawAnalyte};
use criteria::{CRITERION_SCHEMA, Criterion, CriterionScope, NamedCriterion, Place, RawCriterion};
use diagnostic::{Diagnostic, NameKind, Problem, nearest};
use keys::{Schema, Shape, check_keys, fields_of, leaves};
use rule::{RULE_SCHEMA, Rule};
use services::{SERVICES_SCHEMA, Service, ServiceError, ServicesFile};
use source::KnowledgeFile;
pub use source::KnowledgeSource;
use valueset::{VALUESET_SCHEMA, ValueSet, ValueSetError};
pub use version::KnowledgeVersion;

/// A knowledge file that could not be loaded, and why. Every variant names the file,
/// relative to the knowledge root.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    /// A file the knowledge needs is not there.
    #[error("{file}: the file is missing")]
    Missing {
        /// The file.
        file: String,
    },
    /// A file or directory could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file or directory.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not UTF-8 text.
    #[error("{file}: the file is not UTF-8 text")]
    NotUtf8 {
        /// The file.
        file: String,
        /// Where the bytes stop being UTF-8.
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// A TOML file (a rule, `analytes.toml`, `definitions.toml`, `cards.toml`) has a problem
    /// at a line and key path.
    #[error("{file}: {source}")]
    Toml {
        /// The file.
        file: String,
        /// Where and what.
        #[source]
        source: Box<Diagnostic>,
    },
    /// A value set file cannot be used.
    #[error("{file}: {source}")]
    ValueSet {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: ValueSetError,
    },
    /// An analyte entry cannot be used.
    #[error("{file}: {source}")]
    Analyte {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: AnalyteError,
    },
    /// `services.json` is not JSON of the expected shape.
    #[error("{file}: {source}")]
    Json {
        /// The file.
        file: String,
        /// What the JSON reader said.
        #[source]
        source: serde_json::Error,
    },
    /// A service definition cannot be used.
    #[error("{file}: {source}")]
    Service {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: ServiceError,
    },
    /// Rules yield to each other in a circle, so none of them could be said to win.
    #[error("{file}: precedence cycle: {}; remove one yields_to", cycle.join(" yields to "))]
    PrecedenceCycle {
        /// The file of the first rule of the cycle.
        file: String,
        /// The rule ids, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// Anything else that spans files (a duplicate id, a missing prefetch template).
    #[error("{file}: {problem}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong.
        problem: String,
    },
}

impl KnowledgeError {
    /// An error about `file`, said in words.
    pub fn new(file: impl Into<String>, problem: impl Into<String>) -> Self {
        KnowledgeError::Invalid {
            file: file.into(),
            problem: problem.into(),
        }
    }

    /// The file the error is about.
    pub fn file(&self) -> &str {
        match self {
            KnowledgeError::Missing { file }
            | KnowledgeError::Read { file, .. }
            | KnowledgeError::NotUtf8 { file, .. }
            | KnowledgeError::Toml { file, .. }
            | KnowledgeError::ValueSet { file, .. }
            | KnowledgeError::Analyte { file, .. }
            | KnowledgeError::Json { file, .. }
            | KnowledgeError::Service { file, .. }
            | KnowledgeError::PrecedenceCycle { file, .. }
            | KnowledgeError::Invalid { file, .. } => file,
        }
    }

    fn toml(file: &str, source: Diagnostic) -> Self {
        KnowledgeError::Toml {
            file: file.to_owned(),
            source: Box::new(source),
        }
    }
}

/// Settings shared by every card (`cards.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardSettings {
    /// The code system of `card.source.topic`.
    pub topic_system: String,
    /// Offered on warning and critical cards.
    pub override_reasons: Vec<OverrideReason>,
    /// The age from which a fixed adult dose may be suggested; below it (or with no birth date)
    /// no dose is suggested and dose advice carries a caution.
    pub adult_age: u32,
}

/// A reason a clinician can give for overriding a card.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideReason {
    /// Code system.
    pub system: String,
    /// Code.
    pub code: String,
    /// What the clinician sees.
    pub display: String,
}

/// The keys of `cards.toml`.
pub const CARDS_SCHEMA: Schema = Schema {
    name: "cards.toml",
    keys: fields_of::<CardSettings>,
    child: cards_child,
};

fn cards_child(key: &str) -> Shape {
    const OVERRIDE_REASON: Schema = Schema {
        name: "an [[override_reasons]] entry",
        keys: fields_of::<OverrideReason>,
        child: leaves,
    };
    match key {
        "override_reasons" => Shape::Tables(OVERRIDE_REASON),
        _ => Shape::Value,
    }
}

/// Every kind of knowledge file, by its top-level table: a rule file, a named criterion of
/// `definitions.toml`, an `analytes.toml` entry, `cards.toml`, a value set file and
/// `services.json`, and `knowledge.toml`. The one list of accepted keys: the loader checks files against it, and a
/// test checks that `docs/rule-language.md` documents every key in it.
pub const KNOWLEDGE_SCHEMAS: [Schema; 8] = [
    RULE_SCHEMA,
    CRITERION_SCHEMA,
    ANALYTE_SCHEMA,
    CARDS_SCHEMA,
    products::PRODUCTS_SCHEMA,
    VALUESET_SCHEMA,
    SERVICES_SCHEMA,
    version::VERSION_SCHEMA,
];

/// The whole validated knowledge base.
#[derive(Debug)]
pub struct Knowledge {
    /// The CDS Services, in discovery order.
    pub services: Vec<Service>,
    /// Value sets, addressed by index from criteria.
    pub valuesets: Vec<ValueSet>,
    /// Analytes, addressed by index from criteria.
    pub analytes: Vec<Analyte>,
    /// Named criteria from `definitions.toml`.
    pub definitions: Vec<Arc<NamedCriterion>>,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
    /// Card settings.
    pub cards: CardSettings,
    /// How routes and extended-release products are told from product names and route text.
    pub products: products::ProductVocabulary,
    /// Which knowledge this is: its content hash and `knowledge.toml`'s version.
    pub version: KnowledgeVersion,
}

impl Knowledge {
    /// Parses and validates one criterion (its TOML inline-table form, e.g.
    /// `{ lab = { analyte = "magnesium", below = { value = 0.7, unit = "mmol/L" } } }` written
    /// as `lab = { ... }`) against this knowledge, as if in the `when` of a rule running on
    /// every hook. For tools and tests that evaluate one criterion.
    pub fn criterion(&self, text: &str) -> Result<Criterion, Diagnostic> {
        let raw: criteria::RawCriterion =
            toml::from_str(text).map_err(|e| Diagnostic::syntax(text, e))?;
        let scope = Scope {
            valuesets: &self.valuesets,
            analytes: &self.analytes,
            definitions: &self.definitions,
        };
        let hooks = [Hook::PatientView, Hook::OrderSelect, Hook::OrderSign];
        raw.validate(&scope, criteria::Place::in_rule("when", &hooks))
    }
}

struct Scope<'a> {
    valuesets: &'a [ValueSet],
    analytes: &'a [Analyte],
    definitions: &'a [Arc<NamedCriterion>],
}

impl CriterionScope for Scope<'_> {
    fn valueset(&self, id: &str) -> Option<usize> {
        self.valuesets
            .iter()
            .position(|v| v.id == id || v.url == id)
    }
    fn analyte(&self, id: &str) -> Option<usize> {
        self.analytes.iter().position(|a| a.id == id)
    }
    fn threshold(&self, analyte: usize, value: f64, unit: &str) -> Option<f64> {
        self.analytes.get(analyte)?.to_canonical(value, unit)
    }
    fn named(&self, name: &str) -> Option<Arc<NamedCriterion>> {
        self.definitions.iter().find(|d| d.name == name).cloned()
    }
    fn valueset_ids(&self) -> Vec<&str> {
        self.valuesets.iter().map(|v| v.id.as_str()).collect()
    }
    fn analyte_ids(&self) -> Vec<&str> {
        self.analytes.iter().map(|a| a.id.as_str()).collect()
    }
    fn analyte_units(&self, analyte: usize) -> Vec<&str> {
        self.analytes
            .get(analyte)
            .map(|a| a.units().collect())
            .unwrap_or_default()
    }
    fn named_ids(&self) -> Vec<&str> {
        self.definitions.iter().map(|d| d.name.as_str()).collect()
    }
}

/// The files of a knowledge base, looked up by path.
struct Files(Vec<KnowledgeFile>);

impl Files {
    fn get(&self, path: &str) -> Result<&KnowledgeFile, KnowledgeError> {
        self.0
            .iter()
            .find(|f| f.path == path)
            .ok_or_else(|| KnowledgeError::Missing {
                file: path.to_owned(),
            })
    }

    fn under<'a>(&'a self, dir: &'a str, ext: &'a str) -> impl Iterator<Item = &'a KnowledgeFile> {
        self.0
            .iter()
            .filter(move |f| f.path.starts_with(dir) && f.path.ends_with(ext))
    }
}

fn text(f: &KnowledgeFile) -> Result<String, KnowledgeError> {
    String::from_utf8(f.contents.clone()).map_err(|source| KnowledgeError::NotUtf8 {
        file: f.path.clone(),
        source,
    })
}

/// Parses a TOML file whose top level maps names to tables of `schema` (`analytes.toml`,
/// `definitions.toml`), checking every key first.
fn read_named_tables<T: for<'de> Deserialize<'de>>(
    file: &str,
    text: &str,
    schema: Schema,
) -> Result<BTreeMap<String, T>, KnowledgeError> {
    let document = DeTable::parse(text)
        .map_err(|e| KnowledgeError::toml(file, Diagnostic::syntax(text, e)))?;
    let document = document.get_ref();
    for (name, value) in document {
        if let DeValue::Table(table) = value.get_ref() {
            check_keys(table, schema, name.get_ref())
                .map_err(|d| KnowledgeError::toml(file, d.locate(text, document)))?;
        }
    }
    toml::from_str(text).map_err(|e| KnowledgeError::toml(file, Diagnostic::syntax(text, e)))
}

/// Parses a TOML file whose top level is a table of `schema`, checking every key first.
fn read_table<T: for<'de> Deserialize<'de>>(
    file: &str,
    text: &str,
    schema: Schema,
) -> Result<T, KnowledgeError> {
    let document = DeTable::parse(text)
        .map_err(|e| KnowledgeError::toml(file, Diagnostic::syntax(text, e)))?;
    check_keys(document.get_ref(), schema, "")
        .map_err(|d| KnowledgeError::toml(file, d.locate(text, document.get_ref())))?;
    toml::from_str(text).map_err(|e| KnowledgeError::toml(file, Diagnostic::syntax(text, e)))
}

impl Knowledge {
    /// Loads and validates everything from `source`.
    pub fn load(source: &KnowledgeSource) -> Result<Knowledge, KnowledgeError> {
        Knowledge::from_files(source.files()?)
    }

    /// Loads and validates a knowledge base from its files (paths relative to its root).
    pub fn from_files(files: Vec<KnowledgeFile>) -> Result<Knowledge, KnowledgeError> {
        let version = KnowledgeVersion::of(&files)?;
        let files = Files(files);
        let valuesets = load_valuesets(&files)?;
        let analytes = load_analytes(&files, &valuesets)?;
        let definitions = load_definitions(&files, &valuesets, &analytes)?;
        let scope = Scope {
            valuesets: &valuesets,
            analytes: &analytes,
            definitions: &definitions,
        };
        let mut rules: Vec<Rule> = Vec::new();
        for f in files.under("rules/", ".toml") {
            let rule = Rule::from_toml(&f.path, &text(f)?, &scope)
                .map_err(|source| KnowledgeError::toml(&f.path, source))?;
            rules.push(rule);
        }
        check_precedence(&rules, &files)?;

        let cards_file = files.get("cards.toml")?;
        let cards: CardSettings = read_table(&cards_file.path, &text(cards_file)?, CARDS_SCHEMA)?;
        if cards
            .override_reasons
            .iter()
            .any(|r| r.display.trim().is_empty())
        {
            return Err(KnowledgeError::new(
                &cards_file.path,
                "every override reason needs a display",
            ));
        }
        if !(1..=25).contains(&cards.adult_age) {
            return Err(KnowledgeError::new(
                &cards_file.path,
                format!(
                    "adult_age must be 1 to 25 (years), it is {}",
                    cards.adult_age
                ),
            ));
        }

        let products_file = files.get("products.toml")?;
        let products: products::ProductVocabulary = read_table(
            &products_file.path,
            &text(products_file)?,
            products::PRODUCTS_SCHEMA,
        )?;
        products
            .check()
            .map_err(|problem| KnowledgeError::new(&products_file.path, problem))?;

        let services_file = files.get("services.json")?;
        let services = load_services(services_file)?;
        let mut knowledge = Knowledge {
            services: Vec::new(),
            valuesets,
            analytes,
            definitions,
            rules,
            cards,
            products,
            version,
        };
        // What each hook's rules read depends only on the knowledge: work it out once, not per call.
        for mut service in services {
            service.needed_resource_types = knowledge.needed_resource_types(service.hook);
            service
                .derive_codes(&knowledge.observation_codes(service.hook))
                .map_err(|source| KnowledgeError::Service {
                    file: services_file.path.clone(),
                    source,
                })?;
            knowledge.services.push(service);
        }
        knowledge.check_prefetch_covers_rules(&services_file.path)?;
        Ok(knowledge)
    }

    /// The service with this id.
    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.definition.id == id)
    }

    /// Calls `visit` with every criterion the rules of `hook` state (not descending).
    fn visit_criteria(&self, hook: Hook, mut visit: impl FnMut(&Criterion)) {
        for rule in self.rules.iter().filter(|r| r.hooks.contains(&hook)) {
            visit(&rule.when);
            rule.escalations.iter().for_each(|e| visit(&e.when));
            rule.notes.iter().for_each(|n| visit(&n.when));
            rule.stay_quiet.iter().for_each(|q| visit(&q.when));
            for s in &rule.suggestions {
                s.when.iter().chain(s.unless.iter()).for_each(&mut visit);
                s.actions
                    .iter()
                    .filter_map(|a| a.when.as_ref())
                    .for_each(&mut visit);
            }
        }
    }

    /// The FHIR resource types the rules of `hook` read from the record.
    pub fn needed_resource_types(&self, hook: Hook) -> BTreeSet<&'static str> {
        let mut needed = BTreeSet::new();
        let mut analytes = BTreeSet::new();
        self.visit_criteria(hook, |c| collect_needs(c, &mut needed, &mut analytes));
        needed
    }

    /// The analytes (by index) the rules of `hook` read results of.
    pub fn analytes_read(&self, hook: Hook) -> BTreeSet<usize> {
        let mut needed = BTreeSet::new();
        let mut analytes = BTreeSet::new();
        self.visit_criteria(hook, |c| collect_needs(c, &mut needed, &mut analytes));
        analytes
    }

    /// The Observation codes (`system|code`) of the analytes the rules of `hook` read, in
    /// analyte order and each analyte's codes sorted.
    pub fn observation_codes(&self, hook: Hook) -> Vec<String> {
        let mut codes = Vec::new();
        for analyte in self.analytes_read(hook) {
            let mut listed: Vec<String> = self.valuesets[self.analytes[analyte].valueset]
                .listed_codes()
                .map(|(system, code)| format!("{system}|{code}"))
                .collect();
            listed.sort();
            for code in listed {
                if !codes.contains(&code) {
                    codes.push(code);
                }
            }
        }
        codes
    }

    /// Every service must be able to fetch each resource type its hook's rules read,
    /// and its Observation template must ask for every code of the analytes they read.
    fn check_prefetch_covers_rules(&self, file: &str) -> Result<(), KnowledgeError> {
        for service in &self.services {
            let codes = self.observation_codes(service.hook);
            for needed in service.needed_resource_types.iter().copied() {
                let template = service
                    .templates
                    .iter()
                    .find(|(_, t)| t.resource_type == needed);
                let Some((key, template)) = template else {
                    return Err(KnowledgeError::new(
                        file,
                        format!(
                            "service '{}' has no prefetch template for {needed}, which its rules read",
                            service.definition.id
                        ),
                    ));
                };
                if needed == "Observation"
                    && let Some(code) = codes.iter().find(|code| !template.text.contains(*code))
                {
                    return Err(KnowledgeError::new(
                        file,
                        format!(
                            "service '{}' prefetch '{key}' does not ask for {code}, which its rules read (list the key in codesFromRules to have the codes derived)",
                            service.definition.id
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn load_valuesets(files: &Files) -> Result<Vec<ValueSet>, KnowledgeError> {
    let mut valuesets: Vec<ValueSet> = Vec::new();
    for f in files.under("valuesets/", ".json") {
        let set = ValueSet::from_json(&f.contents).map_err(|source| KnowledgeError::ValueSet {
            file: f.path.clone(),
            source,
        })?;
        if valuesets.iter().any(|v| v.id == set.id) {
            return Err(KnowledgeError::new(
                &f.path,
                format!("value set id '{}' is used twice", set.id),
            ));
        }
        valuesets.push(set);
    }
    Ok(valuesets)
}

fn load_analytes(files: &Files, valuesets: &[ValueSet]) -> Result<Vec<Analyte>, KnowledgeError> {
    let file = files.get("analytes.toml")?;
    let text = text(file)?;
    let mut raw: BTreeMap<String, RawAnalyte> =
        read_named_tables(&file.path, &text, ANALYTE_SCHEMA)?;
    let find = |id: &str| valuesets.iter().position(|v| v.id == id);
    let mut analytes = Vec::new();
    // In file order, so derived prefetch codes follow the order the author wrote.
    for id in names_in_file_order(&text) {
        let Some(entry) = raw.remove(&id) else {
            continue;
        };
        if find(entry.valueset()).is_none() {
            let diagnostic = Diagnostic::at(
                format!("{id}.valueset"),
                Problem::Unknown {
                    kind: NameKind::ValueSet,
                    name: entry.valueset().to_owned(),
                    suggestion: nearest(entry.valueset(), valuesets.iter().map(|v| v.id.as_str())),
                },
            );
            let document = DeTable::parse(&text)
                .map_err(|e| KnowledgeError::toml(&file.path, Diagnostic::syntax(&text, e)))?;
            return Err(KnowledgeError::toml(
                &file.path,
                diagnostic.locate(&text, document.get_ref()),
            ));
        }
        let analyte =
            Analyte::from_raw(&id, entry, find).map_err(|source| KnowledgeError::Analyte {
                file: file.path.clone(),
                source,
            })?;
        analytes.push(analyte);
    }
    Ok(analytes)
}

/// The top-level keys of a TOML file in the order they are written.
fn names_in_file_order(text: &str) -> Vec<String> {
    let Ok(document) = DeTable::parse(text) else {
        return Vec::new();
    };
    let mut names: Vec<(usize, String)> = document
        .get_ref()
        .iter()
        .map(|(k, _)| (k.span().start, k.get_ref().to_string()))
        .collect();
    names.sort();
    names.into_iter().map(|(_, name)| name).collect()
}

fn load_definitions(
    files: &Files,
    valuesets: &[ValueSet],
    analytes: &[Analyte],
) -> Result<Vec<Arc<NamedCriterion>>, KnowledgeError> {
    let file = files.get("definitions.toml")?;
    let text = text(file)?;
    let raw: BTreeMap<String, RawCriterion> =
        read_named_tables(&file.path, &text, CRITERION_SCHEMA)?;
    let mut definitions: Vec<Arc<NamedCriterion>> = Vec::new();
    for (name, mut raw) in raw {
        let description = raw.description.take().unwrap_or_else(|| name.clone());
        let label = raw.label.take().unwrap_or_else(|| name.clone());
        let scope = Scope {
            valuesets,
            analytes,
            definitions: &definitions,
        };
        let criterion = raw
            .validate(&scope, Place::in_definitions(&name))
            .map_err(|d| {
                let located = match DeTable::parse(&text) {
                    Ok(document) => d.locate(&text, document.get_ref()),
                    Err(_) => d,
                };
                KnowledgeError::toml(&file.path, located)
            })?;
        definitions.push(Arc::new(NamedCriterion {
            name,
            description,
            label,
            criterion,
        }));
    }
    Ok(definitions)
}

fn load_services(file: &KnowledgeFile) -> Result<Vec<Service>, KnowledgeError> {
    let raw: ServicesFile =
        serde_json::from_slice(&file.contents).map_err(|source| KnowledgeError::Json {
            file: file.path.clone(),
            source,
        })?;
    let mut services: Vec<Service> = Vec::new();
    for entry in raw.services {
        let service = Service::from_raw(entry).map_err(|source| KnowledgeError::Service {
            file: file.path.clone(),
            source,
        })?;
        if services
            .iter()
            .any(|s| s.definition.id == service.definition.id)
        {
            return Err(KnowledgeError::new(
                &file.path,
                format!("service id '{}' is listed twice", service.definition.id),
            ));
        }
        services.push(service);
    }
    Ok(services)
}

/// Every `yields_to` names a rule that exists, and no rules yield to each other in a circle.
fn check_precedence(rules: &[Rule], files: &Files) -> Result<(), KnowledgeError> {
    for rule in rules {
        if let Some((i, unknown)) = rule
            .yields_to
            .iter()
            .enumerate()
            .find(|(_, id)| !rules.iter().any(|r| &r.id == *id))
        {
            let diagnostic = Diagnostic::at(
                format!("yields_to[{i}]"),
                Problem::Unknown {
                    kind: NameKind::Rule,
                    name: unknown.clone(),
                    suggestion: nearest(unknown, rules.iter().map(|r| r.id.as_str())),
                },
            );
            let located = files
                .get(&rule.file)
                .ok()
                .and_then(|f| String::from_utf8(f.contents.clone()).ok())
                .and_then(|text| {
                    DeTable::parse(&text)
                        .ok()
                        .map(|document| diagnostic.clone().locate(&text, document.get_ref()))
                })
                .unwrap_or(diagnostic);
            return Err(KnowledgeError::toml(&rule.file, located));
        }
    }
    if let Some(cycle) = precedence_cycle(rules) {
        let file = rules
            .iter()
            .find(|r| r.id == cycle[0])
            .map(|r| r.file.clone())
            .unwrap_or_default();
        return Err(KnowledgeError::PrecedenceCycle { file, cycle });
    }
    Ok(())
}

/// A circle of `yields_to` (the first rule repeated at the end), if there is one.
fn precedence_cycle(rules: &[Rule]) -> Option<Vec<String>> {
    fn visit<'a>(
        id: &'a str,
        rules: &'a [Rule],
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|p| *p == id) {
            let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
            cycle.push(id.to_owned());
            return Some(cycle);
        }
        if done.contains(id) {
            return None;
        }
        path.push(id);
        let rule = rules.iter().find(|r| r.id == id)?;
        for next in &rule.yields_to {
            if let Some(cycle) = visit(next, rules, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(id);
        None
    }
    let mut done = BTreeSet::new();
    rules
        .iter()
        .find_map(|r| visit(&r.id, rules, &mut Vec::new(), &mut done))
}

fn collect_needs(
    criterion: &Criterion,
    needed: &mut BTreeSet<&'static str>,
    analytes: &mut BTreeSet<usize>,
) {
    match criterion {
        Criterion::All(children) | Criterion::Any(children) => children
            .iter()
            .for_each(|c| collect_needs(c, needed, analytes)),
        Criterion::Not(child) => collect_needs(child, needed, analytes),
        Criterion::Named(named) => collect_needs(&named.criterion, needed, analytes),
        Criterion::Condition(_) => {
            needed.insert("Condition");
        }
        Criterion::Medication(_) => {
            needed.insert("MedicationStatement");
            needed.insert("MedicationRequest");
        }
        Criterion::Lab(lab) => {
            needed.insert("Observation");
            analytes.insert(lab.analyte);
        }
        Criterion::Age(_) => {
            needed.insert("Patient");
        }
        Criterion::Hook(_) | Criterion::DraftOrder(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in knowledge with `file` edited: `from` replaced by `to` (once).
    fn edited(file: &str, from: &str, to: &str) -> Vec<KnowledgeFile> {
        let mut files = KnowledgeSource::BuiltIn.files().unwrap();
        let f = files.iter_mut().find(|f| f.path == file).unwrap();
        let text = String::from_utf8(f.contents.clone()).unwrap();
        assert!(text.contains(from), "'{from}' is not in {file}");
        f.contents = text.replacen(from, to, 1).into_bytes();
        files
    }

    fn load_error(file: &str, from: &str, to: &str) -> String {
        Knowledge::from_files(edited(file, from, to))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_adult_age_outside_1_to_25_is_refused_naming_cards_toml() {
        for bad in ["adult_age = 0", "adult_age = 40"] {
            let error = load_error("cards.toml", "adult_age = 18", bad);
            assert!(error.starts_with("cards.toml"), "{error}");
            assert!(error.contains("adult_age must be 1 to 25"), "{error}");
        }
        let error = load_error("cards.toml", "adult_age = 18\n", "");
        assert!(error.contains("adult_age"), "{error}");
    }

    fn line_of(file: &str, needle: &str) -> usize {
        let files = KnowledgeSource::BuiltIn.files().unwrap();
        let text = String::from_utf8(
            files
                .iter()
                .find(|f| f.path == file)
                .unwrap()
                .contents
                .clone(),
        )
        .unwrap();
        diagnostic::line_of_offset(&text, text.find(needle).unwrap())
    }

    fn built_in() -> Knowledge {
        Knowledge::load(&KnowledgeSource::BuiltIn).unwrap()
    }

    #[test]
    fn precedence_is_the_yields_to_of_each_rule_and_nothing_else() {
        let knowledge = built_in();
        let pairs: BTreeSet<(&str, &str)> = knowledge
            .rules
            .iter()
            .flat_map(|r| r.yields_to.iter().map(|w| (r.id.as_str(), w.as_str())))
            .collect();
        // The pair once stated as `wins_over` on magnesium-renal-insufficiency.
        assert!(pairs.contains(&(
            "magnesium-without-deficiency",
            "magnesium-renal-insufficiency"
        )));
        for rule in &knowledge.rules {
            let file = KnowledgeSource::BuiltIn
                .files()
                .unwrap()
                .into_iter()
                .find(|f| f.path == rule.file)
                .unwrap();
            let raw: toml::Table = toml::from_str(&text(&file).unwrap()).unwrap();
            let written: Vec<&str> = raw
                .get("yields_to")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            assert_eq!(rule.yields_to, written, "{}", rule.id);
        }
    }

    #[test]
    fn wins_over_is_refused_and_yields_to_is_named_instead() {
        let error = load_error(
            "rules/magnesium-renal-insufficiency.toml",
            "indicator = \"critical\"\n",
            "indicator = \"critical\"\nwins_over = [\"magnesium-without-deficiency\"]\n",
        );
        assert!(
            error.starts_with("rules/magnesium-renal-insufficiency.toml: line 5: wins_over: "),
            "{error}"
        );
        assert!(error.contains("yields_to"), "{error}");
    }

    #[test]
    fn a_precedence_cycle_is_refused_naming_its_rules() {
        let error = load_error(
            "rules/magnesium-renal-insufficiency.toml",
            "indicator = \"critical\"\n",
            "indicator = \"critical\"\nyields_to = [\"magnesium-without-deficiency\"]\n",
        );
        assert_eq!(
            error,
            "rules/magnesium-renal-insufficiency.toml: precedence cycle: magnesium-renal-insufficiency yields to magnesium-without-deficiency yields to magnesium-renal-insufficiency; remove one yields_to"
        );
    }

    #[test]
    fn a_longer_precedence_cycle_is_refused_too() {
        let mut files = edited(
            "rules/cirrhosis-cramps.toml",
            "indicator = ",
            "yields_to = [\"diuretic-electrolyte-monitoring\"]\nindicator = ",
        );
        let f = files
            .iter_mut()
            .find(|f| f.path == "rules/diuretic-low-potassium.toml")
            .unwrap();
        let text = String::from_utf8(f.contents.clone()).unwrap();
        f.contents = text
            .replacen(
                "indicator = ",
                "yields_to = [\"cramps-electrolytes-missing\"]\nindicator = ",
                1,
            )
            .into_bytes();
        let error = Knowledge::from_files(files).unwrap_err();
        let KnowledgeError::PrecedenceCycle { cycle, .. } = &error else {
            panic!("{error}");
        };
        assert_eq!(cycle.first(), cycle.last(), "{error}");
        assert!(cycle.len() >= 3, "{error}");
    }

    #[test]
    fn a_rule_cannot_yield_to_itself() {
        let error = load_error(
            "rules/insulin-potassium-drop.toml",
            "yields_to = [\"diuretic-low-potassium\"]",
            "yields_to = [\"insulin-potassium-drop\"]",
        );
        assert!(error.contains("cannot yield to itself"), "{error}");
    }

    #[test]
    fn yields_to_an_unknown_rule_names_the_nearest_rule() {
        let error = load_error(
            "rules/insulin-potassium-drop.toml",
            "yields_to = [\"diuretic-low-potassium\"]",
            "yields_to = [\"diuretic-low-potasium\"]",
        );
        let line = line_of("rules/insulin-potassium-drop.toml", "yields_to");
        assert_eq!(
            error,
            format!(
                "rules/insulin-potassium-drop.toml: line {line}: yields_to[0]: unknown rule 'diuretic-low-potasium'; did you mean 'diuretic-low-potassium'?"
            )
        );
    }

    #[test]
    fn an_unknown_value_set_names_file_line_path_and_the_nearest_value_set() {
        let file = "rules/diuretic-low-magnesium.toml";
        let error = load_error(file, "analyte = \"magnesium\"", "analyte = \"magnesum\"");
        assert!(error.starts_with(&format!("{file}: line ")), "{error}");
        assert!(
            error.contains(".lab.analyte: unknown analyte 'magnesum'; did you mean 'magnesium'?"),
            "{error}"
        );
        let error = load_error(
            "rules/cirrhosis-cramps.toml",
            "valueset = \"cirrhosis\"",
            "valueset = \"cirrosis\"",
        );
        let line = line_of("rules/cirrhosis-cramps.toml", "valueset = \"cirrhosis\"");
        assert!(
            error.starts_with(&format!("rules/cirrhosis-cramps.toml: line {line}: when.")),
            "{error}"
        );
        assert!(
            error.ends_with(
                "condition.valueset: unknown value set 'cirrosis'; did you mean 'cirrhosis'?"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_criterion_path_counts_the_position_in_all() {
        // The rule's `when` is an `all`; its second entry is the low-magnesium lab test.
        let file = "rules/diuretic-low-magnesium.toml";
        let error = load_error(
            file,
            "value = 0.70, unit = \"mmol/L\"",
            "value = 0.70, unit = \"mmol/dL\"",
        );
        let line = line_of(file, "value = 0.70, unit = \"mmol/L\"");
        assert!(
            error.starts_with(&format!("{file}: line {line}: when.")),
            "{error}"
        );
        assert!(
            error.contains(".lab.below.unit: threshold unit 'mmol/dL' is not a known unit of analyte 'magnesium' (see analytes.toml); did you mean"),
            "{error}"
        );
        assert!(
            error.contains("when.all[1]") || error.contains("when.any["),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_key_names_the_nearest_key() {
        let error = load_error(
            "rules/diuretic-low-magnesium.toml",
            "within_days",
            "within_dayz",
        );
        assert!(
            error.contains(
                "lab.within_dayz: unknown key 'within_dayz' in a lab criterion; did you mean 'within_days'?"
            ),
            "{error}"
        );
        let error = load_error("cards.toml", "topic_system", "topic_sytem");
        assert_eq!(
            error,
            format!(
                "cards.toml: line {}: topic_sytem: unknown key 'topic_sytem' in cards.toml; did you mean 'topic_system'?",
                line_of("cards.toml", "topic_system")
            )
        );
        let error = load_error(
            "analytes.toml",
            "canonical_unit = \"%\"",
            "canonical_units = \"%\"",
        );
        assert!(
            error.contains("hba1c.canonical_units: unknown key 'canonical_units' in an analyte; did you mean 'canonical_unit'?"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_named_criterion_names_the_nearest_one() {
        let error = load_error(
            "rules/magnesium-renal-insufficiency.toml",
            "ref = \"renal-insufficiency\"",
            "ref = \"renal-insuficiency\"",
        );
        assert!(
            error.contains(
                "ref: unknown named criterion 'renal-insuficiency'; did you mean 'renal-insufficiency'?"
            ),
            "{error}"
        );
    }

    #[test]
    fn an_analyte_naming_an_unknown_value_set_names_the_nearest_one() {
        let error = load_error(
            "analytes.toml",
            "valueset = \"lab-magnesium\"",
            "valueset = \"lab-magnesum\"",
        );
        assert_eq!(
            error,
            format!(
                "analytes.toml: line {}: magnesium.valueset: unknown value set 'lab-magnesum'; did you mean 'lab-magnesium'?",
                line_of("analytes.toml", "valueset = \"lab-magnesium\"")
            )
        );
    }

    #[test]
    fn a_definition_error_names_the_definition_path() {
        let error = load_error(
            "definitions.toml",
            "condition = { valueset = \"renal-insufficiency-conditions\" }",
            "condition = { valueset = \"renal-insufficiency-condition\" }",
        );
        assert!(
            error.contains("renal-insufficiency.any[1].condition.valueset: unknown value set 'renal-insufficiency-condition'; did you mean 'renal-insufficiency-conditions'?"),
            "{error}"
        );
    }

    #[test]
    fn a_type_error_names_the_line() {
        let file = "rules/cirrhosis-cramps.toml";
        let error = load_error(file, "indicator = \"", "indicator = \"loud");
        assert!(
            error.starts_with(&format!("{file}: line {}: ", line_of(file, "indicator = "))),
            "{error}"
        );
    }

    #[test]
    fn a_draft_order_criterion_in_a_patient_view_only_rule_is_refused() {
        let error = load_error(
            "rules/cirrhosis-cramps.toml",
            "valueset = \"cirrhosis\"",
            "valueset = \"cirrhosis\" } }, { draft_order = { valueset = \"quinine\"",
        );
        assert!(
            error.contains("draft_order: a draft_order criterion in a rule that only runs on patient-view can never match"),
            "{error}"
        );
    }

    #[test]
    fn a_hook_criterion_naming_a_hook_the_rule_does_not_run_on_is_refused() {
        let error = load_error(
            "rules/cirrhosis-cramps.toml",
            "valueset = \"cirrhosis\"",
            "valueset = \"cirrhosis\" } }, { hook = [\"order-sign\"] }, { condition = { valueset = \"cirrhosis\"",
        );
        assert!(
            error.contains("hook[0]: hook 'order-sign' is not one of the rule's hooks (patient-view), so this part never matches"),
            "{error}"
        );
        let error = load_error(
            "rules/cirrhosis-cramps.toml",
            "hooks = [\"patient-view\"]",
            "hooks = [\"patient-veiw\"]",
        );
        assert!(
            error.contains("hooks[0]: unknown hook 'patient-veiw'; did you mean 'patient-view'?"),
            "{error}"
        );
    }

    #[test]
    fn observation_codes_in_discovery_are_those_of_the_analytes_each_services_rules_read() {
        let knowledge = built_in();
        let raw: serde_json::Value = serde_json::from_slice(
            &KnowledgeSource::BuiltIn
                .files()
                .unwrap()
                .into_iter()
                .find(|f| f.path == "services.json")
                .unwrap()
                .contents,
        )
        .unwrap();
        for (service, raw) in knowledge
            .services
            .iter()
            .zip(raw["services"].as_array().unwrap())
        {
            let written = raw["prefetch"]["observations"].as_str().unwrap();
            assert!(!written.contains("code="), "services.json types the codes");
            let template = &service.definition.prefetch["observations"];
            let codes: BTreeSet<&str> = template
                .split_once("code=")
                .unwrap()
                .1
                .split('&')
                .next()
                .unwrap()
                .split(',')
                .collect();
            let mut expected = BTreeSet::new();
            for analyte in knowledge.analytes_read(service.hook) {
                let set = &knowledge.valuesets[knowledge.analytes[analyte].valueset];
                for (system, code) in set.listed_codes() {
                    expected.insert(format!("{system}|{code}"));
                }
            }
            assert!(!expected.is_empty());
            assert_eq!(
                codes,
                expected.iter().map(String::as_str).collect(),
                "{}",
                service.definition.id
            );
            assert!(template.starts_with("Observation?patient={{context.patientId}}&code="));
            assert!(template.ends_with("&_sort=-date"), "{template}");
        }
        let patient_view = knowledge.service("cramp-numbness-patient-view").unwrap();
        assert_eq!(
            knowledge.analytes_read(patient_view.hook).len(),
            knowledge.analytes.len(),
            "the chart review reads every analyte"
        );
    }

    #[test]
    fn a_derived_code_list_cannot_be_typed_as_well() {
        let error = load_error(
            "services.json",
            "&_sort=-date",
            "&code=http://loinc.org|2601-3&_sort=-date",
        );
        assert!(
            error.contains("codesFromRules names prefetch 'observations'"),
            "{error}"
        );
    }

    #[test]
    fn every_key_the_loader_accepts_is_in_the_rule_language_reference() {
        let reference = include_str!("../../docs/rule-language.md");
        let missing: Vec<String> = keys::every_key(&KNOWLEDGE_SCHEMAS)
            .into_iter()
            .filter(|(_, key)| !reference.contains(&format!("`{key}`")))
            .map(|(table, key)| format!("{key} ({table})"))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/rule-language.md does not document: {}",
            missing.join(", ")
        );
    }

    #[test]
    fn the_key_list_reaches_into_criteria_suggestions_and_value_sets() {
        let keys = keys::every_key(&KNOWLEDGE_SCHEMAS);
        for (table, key) in [
            ("a rule file", "yields_to"),
            ("a lab criterion", "within_days"),
            ("a lab fall", "within_hours"),
            ("a suggestion action", "set_dose"),
            ("an action's set_dose", "period_unit"),
            ("a condition's body_site", "when_absent"),
            ("an analyte", "canonical_unit"),
            ("a compose.include.concept entry", "designation"),
            ("a service entry", "codesFromRules"),
        ] {
            assert!(keys.contains(&(table, key)), "{table}: {key}");
        }
        assert!(!keys.iter().any(|(_, key)| *key == "wins_over"));
    }
}
