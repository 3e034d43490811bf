//! Loading and validating the knowledge under `cds-hooks/`: service
//! definitions, value sets, analytes and units, shared criteria, rules and card
//! settings. Everything is checked once at load; a broken file stops start-up
//! with a [`KnowledgeError`] naming the file and the problem. Not for
//! evaluating rules (see `engine`).

pub mod analyte;
pub mod criteria;
pub mod describe;
pub mod rule;
pub mod services;
pub mod source;
pub mod valueset;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Deserialize;

use crate::hooks::Hook;
use analyte::{Analyte, RawAnalyte};
use criteria::{Criterion, CriterionScope, NamedCriterion, RawCriterion};
use rule::Rule;
use services::{Service, ServicesFile};
use source::KnowledgeFile;
pub use source::KnowledgeSource;
use valueset::ValueSet;

/// A knowledge file that could not be loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct KnowledgeError {
    /// The file, relative to the knowledge root.
    pub file: String,
    /// What is wrong with it.
    pub problem: String,
}

impl KnowledgeError {
    /// An error about `file`.
    pub fn new(file: impl Into<String>, problem: impl Into<String>) -> Self {
        KnowledgeError {
            file: file.into(),
            problem: problem.into(),
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
    /// Where it was loaded from.
    pub source: KnowledgeSource,
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
}

impl Knowledge {
    /// Loads and validates everything from `source`.
    pub fn load(source: &KnowledgeSource) -> Result<Knowledge, KnowledgeError> {
        let files = source.files()?;
        let file = |path: &str| -> Result<&KnowledgeFile, KnowledgeError> {
            files
                .iter()
                .find(|f| f.path == path)
                .ok_or_else(|| KnowledgeError::new(path, "the file is missing"))
        };
        let text = |f: &KnowledgeFile| -> Result<String, KnowledgeError> {
            String::from_utf8(f.contents.clone())
                .map_err(|_| KnowledgeError::new(&f.path, "the file is not UTF-8 text"))
        };

        let mut valuesets: Vec<ValueSet> = Vec::new();
        for f in files
            .iter()
            .filter(|f| f.path.starts_with("valuesets/") && f.path.ends_with(".json"))
        {
            let set =
                ValueSet::from_json(&f.contents).map_err(|e| KnowledgeError::new(&f.path, e))?;
            if valuesets.iter().any(|v| v.id == set.id) {
                return Err(KnowledgeError::new(
                    &f.path,
                    format!("value set id '{}' is used twice", set.id),
                ));
            }
            valuesets.push(set);
        }

        let analytes_file = file("analytes.toml")?;
        let raw_analytes: BTreeMap<String, RawAnalyte> = toml::from_str(&text(analytes_file)?)
            .map_err(|e| KnowledgeError::new(&analytes_file.path, e.to_string()))?;
        let analytes = raw_analytes
            .into_iter()
            .map(|(id, raw)| {
                Analyte::from_raw(&id, raw, |vs| valuesets.iter().position(|v| v.id == vs))
                    .map_err(|e| KnowledgeError::new(&analytes_file.path, e))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let definitions_file = file("definitions.toml")?;
        let raw_definitions: BTreeMap<String, RawCriterion> =
            toml::from_str(&text(definitions_file)?)
                .map_err(|e| KnowledgeError::new(&definitions_file.path, e.to_string()))?;
        let mut definitions: Vec<Arc<NamedCriterion>> = Vec::new();
        for (name, mut raw) in raw_definitions {
            let description = raw.description.take().unwrap_or_else(|| name.clone());
            let label = raw.label.take().unwrap_or_else(|| name.clone());
            let scope = Scope {
                valuesets: &valuesets,
                analytes: &analytes,
                definitions: &definitions,
            };
            let criterion = raw
                .validate(&scope)
                .map_err(|e| KnowledgeError::new(&definitions_file.path, format!("{name}: {e}")))?;
            definitions.push(Arc::new(NamedCriterion {
                name,
                description,
                label,
                criterion,
            }));
        }

        let scope = Scope {
            valuesets: &valuesets,
            analytes: &analytes,
            definitions: &definitions,
        };
        let mut rules: Vec<Rule> = Vec::new();
        for f in files
            .iter()
            .filter(|f| f.path.starts_with("rules/") && f.path.ends_with(".toml"))
        {
            let rule = Rule::from_toml(&f.path, &text(f)?, &scope)
                .map_err(|e| KnowledgeError::new(&f.path, e))?;
            rules.push(rule);
        }
        // "A wins over B" is stored as "B yields to A", so precedence has one mechanism.
        let wins: Vec<(String, String)> = rules
            .iter()
            .flat_map(|r| {
                r.wins_over
                    .iter()
                    .map(|loser| (loser.clone(), r.id.clone()))
            })
            .collect();
        for (loser, winner) in wins {
            let Some(rule) = rules.iter_mut().find(|r| r.id == loser) else {
                let file = rules
                    .iter()
                    .find(|r| r.id == winner)
                    .map(|r| r.file.clone())
                    .unwrap_or_default();
                return Err(KnowledgeError::new(
                    file,
                    format!("wins_over names rule '{loser}', which does not exist"),
                ));
            };
            if !rule.yields_to.contains(&winner) {
                rule.yields_to.push(winner);
            }
        }
        for rule in &rules {
            if let Some(unknown) = rule
                .yields_to
                .iter()
                .find(|id| !rules.iter().any(|r| &r.id == *id))
            {
                return Err(KnowledgeError::new(
                    &rule.file,
                    format!("yields_to names rule '{unknown}', which does not exist"),
                ));
            }
        }

        let cards_file = file("cards.toml")?;
        let cards: CardSettings = toml::from_str(&text(cards_file)?)
            .map_err(|e| KnowledgeError::new(&cards_file.path, e.to_string()))?;
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

        let services_file = file("services.json")?;
        let raw_services: ServicesFile = serde_json::from_slice(&services_file.contents)
            .map_err(|e| KnowledgeError::new(&services_file.path, e.to_string()))?;
        let mut services = Vec::new();
        for definition in raw_services.services {
            let service = Service::from_definition(definition)
                .map_err(|e| KnowledgeError::new(&services_file.path, e))?;
            if services
                .iter()
                .any(|s: &Service| s.definition.id == service.definition.id)
            {
                return Err(KnowledgeError::new(
                    &services_file.path,
                    format!("service id '{}' is listed twice", service.definition.id),
                ));
            }
            services.push(service);
        }

        let mut knowledge = Knowledge {
            services: Vec::new(),
            valuesets,
            analytes,
            definitions,
            rules,
            cards,
            source: source.clone(),
        };
        // What each hook's rules read depends only on the knowledge: work it out once, not per call.
        for mut service in services {
            service.needed_resource_types = knowledge.needed_resource_types(service.hook);
            knowledge.services.push(service);
        }
        knowledge.check_prefetch_covers_rules(&services_file.path)?;
        Ok(knowledge)
    }

    /// The service with this id.
    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.definition.id == id)
    }

    /// The FHIR resource types the rules of `hook` read from the record.
    pub fn needed_resource_types(&self, hook: Hook) -> BTreeSet<&'static str> {
        let mut needed = BTreeSet::new();
        for rule in self.rules.iter().filter(|r| r.hooks.contains(&hook)) {
            let mut visit = |c: &Criterion| collect_needs(c, &mut needed);
            visit(&rule.when);
            rule.escalations.iter().for_each(|e| visit(&e.when));
            rule.notes.iter().for_each(|n| visit(&n.when));
            for s in &rule.suggestions {
                s.when.iter().chain(s.unless.iter()).for_each(&mut visit);
                s.actions
                    .iter()
                    .filter_map(|a| a.when.as_ref())
                    .for_each(&mut visit);
            }
        }
        needed
    }

    /// Every service must be able to fetch each resource type its hook's rules read,
    /// and its Observation template must ask for every LOINC code the analytes use.
    fn check_prefetch_covers_rules(&self, file: &str) -> Result<(), KnowledgeError> {
        let mut loinc_codes: HashMap<&str, ()> = HashMap::new();
        for analyte in &self.analytes {
            for (_, code) in self.valuesets[analyte.valueset].listed_codes() {
                loinc_codes.insert(code, ());
            }
        }
        for service in &self.services {
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
                    && let Some(code) = loinc_codes
                        .keys()
                        .find(|code| !template.text.contains(&format!("|{code}")))
                {
                    return Err(KnowledgeError::new(
                        file,
                        format!(
                            "service '{}' prefetch '{key}' does not ask for LOINC {code}, which an analyte uses",
                            service.definition.id
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn collect_needs(criterion: &Criterion, needed: &mut BTreeSet<&'static str>) {
    match criterion {
        Criterion::All(children) | Criterion::Any(children) => {
            children.iter().for_each(|c| collect_needs(c, needed))
        }
        Criterion::Not(child) => collect_needs(child, needed),
        Criterion::Named(named) => collect_needs(&named.criterion, needed),
        Criterion::Condition(_) => {
            needed.insert("Condition");
        }
        Criterion::Medication(_) => {
            needed.insert("MedicationStatement");
            needed.insert("MedicationRequest");
        }
        Criterion::Lab(_) => {
            needed.insert("Observation");
        }
        Criterion::Age(_) => {
            needed.insert("Patient");
        }
        Criterion::Hook(_) | Criterion::DraftOrder(_) => {}
    }
}
