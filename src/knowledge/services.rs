//! The CDS Service definitions of `services.json`, as discovery lists them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::keys::{Schema, Shape, fields_of, leaves};
use crate::hooks::Hook;
use crate::hooks::template::PrefetchTemplate;

/// One CDS Service, as listed by `GET /cds-services`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceDefinition {
    /// The hook it answers.
    pub hook: String,
    /// A human-friendly name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What it does.
    pub description: String,
    /// Its id: the service lives at `{base}/cds-services/{id}`.
    pub id: String,
    /// Prefetch templates by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(required = false)]
    pub prefetch: BTreeMap<String, String>,
    /// Preconditions, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_requirements: Option<String>,
    /// Extensions (CDS Hooks 2.0 §3.1): discovery puts `org.cramp-cds.knowledge` here, the
    /// version of the knowledge the service answers from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub extension: Option<serde_json::Value>,
}

/// A service entry of `services.json`: its discovery definition, plus which prefetch
/// templates have their codes filled in by the loader.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawService {
    hook: String,
    title: Option<String>,
    description: String,
    id: String,
    #[serde(default)]
    prefetch: BTreeMap<String, String>,
    usage_requirements: Option<String>,
    /// Prefetch keys whose `code` search parameter is derived from the analytes the
    /// service's rules read (never shown in discovery).
    #[serde(default)]
    codes_from_rules: Vec<String>,
}

/// The file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesFile {
    /// The services.
    pub services: Vec<RawService>,
}

/// The keys of `services.json` the loader reads, for the language reference.
pub const SERVICES_SCHEMA: Schema = Schema {
    name: "services.json",
    keys: fields_of::<ServicesFile>,
    child: services_child,
};

fn services_child(key: &str) -> Shape {
    const SERVICE: Schema = Schema {
        name: "a service entry",
        keys: fields_of::<RawService>,
        child: leaves,
    };
    match key {
        "services" => Shape::Tables(SERVICE),
        _ => Shape::Value,
    }
}

/// A service definition that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The hook is not one this service answers.
    #[error("service '{service}': {problem}")]
    Hook {
        /// The service id.
        service: String,
        /// What the hook parser said.
        problem: String,
    },
    /// The id cannot be part of a URL.
    #[error("service id '{0}' must be non-empty and URL-safe")]
    Id(String),
    /// The description is empty.
    #[error("service '{0}' has no description")]
    NoDescription(String),
    /// A prefetch template does not parse.
    #[error("service '{service}' prefetch '{key}': {problem}")]
    Template {
        /// The service id.
        service: String,
        /// The prefetch key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// `codesFromRules` names a key that is not a plain Observation search.
    #[error(
        "service '{service}' codesFromRules names prefetch '{key}', which must be an Observation search without a code parameter (the loader adds it)"
    )]
    DerivedCodes {
        /// The service id.
        service: String,
        /// The prefetch key.
        key: String,
    },
}

/// A service definition with its hook and templates parsed.
#[derive(Debug, Clone)]
pub struct Service {
    /// The definition as discovery shows it.
    pub definition: ServiceDefinition,
    /// The hook, parsed.
    pub hook: Hook,
    /// The prefetch templates, parsed, in key order.
    pub templates: Vec<(String, PrefetchTemplate)>,
    /// The FHIR resource types the rules of this hook read (filled in once the rules are loaded).
    pub needed_resource_types: std::collections::BTreeSet<&'static str>,
    /// Prefetch keys whose Observation codes the loader derives from the rules.
    pub codes_from_rules: Vec<String>,
}

impl Service {
    /// Validates a service entry: a known hook, a URL-safe id, and well-formed templates.
    pub fn from_raw(raw: RawService) -> Result<Service, ServiceError> {
        let definition = ServiceDefinition {
            hook: raw.hook,
            title: raw.title,
            description: raw.description,
            id: raw.id,
            prefetch: raw.prefetch,
            usage_requirements: raw.usage_requirements,
            extension: None,
        };
        let mut service = Service::from_definition(definition)?;
        for key in &raw.codes_from_rules {
            let plain_observation_search = service
                .templates
                .iter()
                .find(|(k, _)| k == key)
                .is_some_and(|(_, t)| {
                    t.resource_type == "Observation"
                        && t.text.contains('?')
                        && !t.text.contains("code=")
                });
            if !plain_observation_search {
                return Err(ServiceError::DerivedCodes {
                    service: service.definition.id.clone(),
                    key: key.clone(),
                });
            }
        }
        service.codes_from_rules = raw.codes_from_rules;
        Ok(service)
    }

    /// Validates a definition: a known hook, a URL-safe id, and well-formed templates.
    pub fn from_definition(definition: ServiceDefinition) -> Result<Service, ServiceError> {
        let hook: Hook = definition
            .hook
            .parse()
            .map_err(|problem| ServiceError::Hook {
                service: definition.id.clone(),
                problem,
            })?;
        if definition.id.is_empty()
            || !definition
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(ServiceError::Id(definition.id.clone()));
        }
        if definition.description.trim().is_empty() {
            return Err(ServiceError::NoDescription(definition.id.clone()));
        }
        let templates = definition
            .prefetch
            .iter()
            .map(|(key, text)| {
                PrefetchTemplate::parse(text, hook)
                    .map(|t| (key.clone(), t))
                    .map_err(|problem| ServiceError::Template {
                        service: definition.id.clone(),
                        key: key.clone(),
                        problem,
                    })
            })
            .collect::<Result<Vec<_>, ServiceError>>()?;
        Ok(Service {
            definition,
            hook,
            templates,
            needed_resource_types: Default::default(),
            codes_from_rules: Vec::new(),
        })
    }

    /// Fills the `code` parameter of each derived prefetch template with `codes`
    /// (`system|code`), or drops the template when the rules read no result.
    pub fn derive_codes(&mut self, codes: &[String]) -> Result<(), ServiceError> {
        for key in self.codes_from_rules.clone() {
            let Some(text) = self.definition.prefetch.get(&key).cloned() else {
                continue;
            };
            if codes.is_empty() {
                self.definition.prefetch.remove(&key);
                self.templates.retain(|(k, _)| *k != key);
                continue;
            }
            // The codes go right after the first search parameter (`patient=...`).
            let codes = format!("code={}", codes.join(","));
            let text = match text.split_once('&') {
                Some((first, rest)) => format!("{first}&{codes}&{rest}"),
                None => format!("{text}&{codes}"),
            };
            let template = PrefetchTemplate::parse(&text, self.hook).map_err(|problem| {
                ServiceError::Template {
                    service: self.definition.id.clone(),
                    key: key.clone(),
                    problem,
                }
            })?;
            self.definition.prefetch.insert(key.clone(), text);
            if let Some((_, t)) = self.templates.iter_mut().find(|(k, _)| *k == key) {
                *t = template;
            }
        }
        Ok(())
    }
}
