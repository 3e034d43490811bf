//! The CDS Service definitions of `services.json`, as discovery lists them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
}

/// The file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesFile {
    /// The services.
    pub services: Vec<ServiceDefinition>,
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
}

impl Service {
    /// Validates a definition: a known hook, a URL-safe id, and well-formed templates.
    pub fn from_definition(definition: ServiceDefinition) -> Result<Service, String> {
        let hook: Hook = definition.hook.parse()?;
        if definition.id.is_empty()
            || !definition
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(format!(
                "service id '{}' must be non-empty and URL-safe",
                definition.id
            ));
        }
        if definition.description.trim().is_empty() {
            return Err(format!("service '{}' has no description", definition.id));
        }
        let templates = definition
            .prefetch
            .iter()
            .map(|(key, text)| {
                PrefetchTemplate::parse(text, hook)
                    .map(|t| (key.clone(), t))
                    .map_err(|e| format!("service '{}' prefetch '{key}': {e}", definition.id))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Service {
            definition,
            hook,
            templates,
            needed_resource_types: Default::default(),
        })
    }
}
