//! FHIR ValueSet files turned into fast membership tests.
//!
//! A value set is read from `compose.include` (explicit concepts, and `is-a`
//! filters, which for ICD-10-CM and ATC mean "this code and every code under
//! it", i.e. a prefix match) and from `expansion.contains`, so a deployment can
//! drop in a terminology server's expansion (for example a VSAC expansion that
//! lists product-level RxNorm codes) without any code change.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

/// A code system whose codes form a prefix hierarchy, so `is-a` is a prefix match.
const PREFIX_HIERARCHY_SYSTEMS: [&str; 2] = [
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://www.whocc.no/atc",
];

/// The code systems the service knows; a value set naming another is rejected at load.
pub const KNOWN_SYSTEMS: [&str; 5] = [
    "http://snomed.info/sct",
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
    "http://www.whocc.no/atc",
    "http://loinc.org",
];

/// RxNorm, whose concept names are also matched as words in product names.
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

/// A loaded, validated value set.
#[derive(Debug, Clone)]
pub struct ValueSet {
    /// `ValueSet.id`, the name rules use.
    pub id: String,
    /// `ValueSet.url`.
    pub url: String,
    /// `ValueSet.title` (or the id).
    pub title: String,
    exact: HashMap<String, HashSet<String>>,
    prefixes: Vec<(String, String)>,
    displays: HashMap<(String, String), String>,
    /// Lower-case ingredient names (RxNorm displays and designations), matched as whole words.
    names: Vec<String>,
    /// The first word of each name, for a cheap test before the whole-word search.
    first_words: HashSet<String>,
}

/// How a coding or a name matched a value set.
#[derive(Debug, Clone, PartialEq)]
pub enum CodeMatch {
    /// The code is listed in the value set.
    Exact,
    /// The code sits under a listed class (ICD-10-CM or ATC `is-a`): the class code.
    UnderClass(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawValueSet {
    resource_type: String,
    id: Option<String>,
    url: Option<String>,
    title: Option<String>,
    compose: Option<RawCompose>,
    expansion: Option<RawExpansion>,
}

#[derive(Deserialize)]
struct RawCompose {
    #[serde(default)]
    include: Vec<RawInclude>,
    #[serde(default)]
    exclude: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawInclude {
    system: Option<String>,
    #[serde(default)]
    concept: Vec<RawConcept>,
    #[serde(default)]
    filter: Vec<RawFilter>,
    #[serde(rename = "valueSet", default)]
    value_set: Vec<String>,
}

#[derive(Deserialize)]
struct RawConcept {
    code: String,
    display: Option<String>,
    #[serde(default)]
    designation: Vec<RawDesignation>,
}

#[derive(Deserialize)]
struct RawDesignation {
    value: String,
}

#[derive(Deserialize)]
struct RawFilter {
    property: String,
    op: String,
    value: String,
}

#[derive(Deserialize)]
struct RawExpansion {
    #[serde(default)]
    contains: Vec<RawContains>,
}

#[derive(Deserialize)]
struct RawContains {
    system: Option<String>,
    code: Option<String>,
    display: Option<String>,
    #[serde(default)]
    contains: Vec<RawContains>,
}

impl ValueSet {
    /// Reads and validates a FHIR ValueSet JSON document. The error says what is wrong.
    pub fn from_json(bytes: &[u8]) -> Result<ValueSet, String> {
        let raw: RawValueSet =
            serde_json::from_slice(bytes).map_err(|e| format!("not a valid ValueSet: {e}"))?;
        if raw.resource_type != "ValueSet" {
            return Err(format!(
                "resourceType is '{}', expected 'ValueSet'",
                raw.resource_type
            ));
        }
        let id = raw.id.ok_or("ValueSet.id is missing")?;
        let mut set = ValueSet {
            title: raw.title.unwrap_or_else(|| id.clone()),
            url: raw.url.unwrap_or_default(),
            id,
            exact: HashMap::new(),
            prefixes: Vec::new(),
            displays: HashMap::new(),
            names: Vec::new(),
            first_words: HashSet::new(),
        };
        if let Some(compose) = raw.compose {
            if !compose.exclude.is_empty() {
                return Err("compose.exclude is not supported; list the codes to include".into());
            }
            for include in compose.include {
                set.add_include(include)?;
            }
        }
        if let Some(expansion) = raw.expansion {
            set.add_contains(&expansion.contains)?;
        }
        if set.exact.is_empty() && set.prefixes.is_empty() {
            return Err(
                "the value set has no codes (compose.include or expansion.contains)".into(),
            );
        }
        set.first_words = set
            .names
            .iter()
            .filter_map(|n| words(n).next())
            .map(str::to_owned)
            .collect();
        Ok(set)
    }

    fn add_include(&mut self, include: RawInclude) -> Result<(), String> {
        if !include.value_set.is_empty() {
            return Err("compose.include.valueSet is not supported; list codes directly".into());
        }
        let system = include.system.ok_or("compose.include.system is missing")?;
        check_system(&system)?;
        for concept in include.concept {
            self.add_code(&system, &concept.code, concept.display.as_deref())?;
            if system == RXNORM {
                self.names.extend(
                    concept
                        .designation
                        .into_iter()
                        .map(|d| d.value.to_lowercase()),
                );
            }
        }
        for filter in include.filter {
            if filter.property != "concept" || filter.op != "is-a" {
                return Err(format!(
                    "filter '{} {} {}' is not supported; use property 'concept' with op 'is-a'",
                    filter.property, filter.op, filter.value
                ));
            }
            if !PREFIX_HIERARCHY_SYSTEMS.contains(&system.as_str()) {
                return Err(format!(
                    "an is-a filter on {system} needs a terminology server; list its codes instead"
                ));
            }
            self.prefixes.push((system.clone(), filter.value));
        }
        Ok(())
    }

    fn add_contains(&mut self, contains: &[RawContains]) -> Result<(), String> {
        for entry in contains {
            if let (Some(system), Some(code)) = (&entry.system, &entry.code) {
                check_system(system)?;
                self.add_code(system, code, entry.display.as_deref())?;
            }
            self.add_contains(&entry.contains)?;
        }
        Ok(())
    }

    fn add_code(&mut self, system: &str, code: &str, display: Option<&str>) -> Result<(), String> {
        if code.trim().is_empty() {
            return Err(format!("an empty code is listed for {system}"));
        }
        self.exact
            .entry(system.to_owned())
            .or_default()
            .insert(code.to_owned());
        if let Some(display) = display {
            self.displays
                .insert((system.to_owned(), code.to_owned()), display.to_owned());
            if system == RXNORM {
                self.names.push(display.to_lowercase());
            }
        }
        Ok(())
    }

    /// Whether `system|code` is in the value set, and how.
    pub fn match_code(&self, system: &str, code: &str) -> Option<CodeMatch> {
        if self
            .exact
            .get(system)
            .is_some_and(|codes| codes.contains(code))
        {
            return Some(CodeMatch::Exact);
        }
        self.prefixes
            .iter()
            .find(|(s, prefix)| s == system && code.starts_with(prefix.as_str()))
            .map(|(_, prefix)| CodeMatch::UnderClass(prefix.clone()))
    }

    /// The first ingredient name of the value set found as a whole word in `text` (case-insensitive).
    pub fn match_name(&self, text: &str) -> Option<&str> {
        let lower = text.to_lowercase();
        // Most texts share no word with any name: skip the substring searches for them.
        if !words(&lower).any(|w| self.first_words.contains(w)) {
            return None;
        }
        self.names
            .iter()
            .find(|name| contains_word(&lower, name))
            .map(String::as_str)
    }

    /// The display the value set gives for a code, if any.
    pub fn display(&self, system: &str, code: &str) -> Option<&str> {
        self.displays
            .get(&(system.to_owned(), code.to_owned()))
            .map(String::as_str)
    }

    /// Every `is-a` class, as `(system, class code)`.
    pub fn classes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.prefixes.iter().map(|(s, c)| (s.as_str(), c.as_str()))
    }

    /// Every explicitly listed code, as `(system, code)`.
    pub fn listed_codes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.exact.iter().flat_map(|(system, codes)| {
            codes
                .iter()
                .map(move |code| (system.as_str(), code.as_str()))
        })
    }
}

fn check_system(system: &str) -> Result<(), String> {
    if KNOWN_SYSTEMS.contains(&system) {
        Ok(())
    } else {
        Err(format!(
            "code system '{system}' is not one the service matches ({})",
            KNOWN_SYSTEMS.join(", ")
        ))
    }
}

/// The words of a text: runs of letters and digits.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// Whether `needle` occurs in `haystack` with no letter or digit directly before or after it.
pub fn contains_word(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    haystack.match_indices(needle).any(|(start, _)| {
        let before = haystack[..start].chars().next_back();
        let after = haystack[start + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diuretics() -> ValueSet {
        ValueSet::from_json(
            br#"{"resourceType":"ValueSet","id":"d","compose":{"include":[
            {"system":"http://www.nlm.nih.gov/research/umls/rxnorm","concept":[{"code":"4603","display":"furosemide"}]},
            {"system":"http://www.whocc.no/atc","filter":[{"property":"concept","op":"is-a","value":"C03C"}]}]}}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_listed_code_matches_exactly_and_a_class_by_prefix() {
        let set = diuretics();
        assert_eq!(
            set.match_code("http://www.nlm.nih.gov/research/umls/rxnorm", "4603"),
            Some(CodeMatch::Exact)
        );
        assert_eq!(
            set.match_code("http://www.whocc.no/atc", "C03CA01"),
            Some(CodeMatch::UnderClass("C03C".into()))
        );
        assert_eq!(set.match_code("http://www.whocc.no/atc", "C03DA01"), None);
    }

    #[test]
    fn an_ingredient_name_matches_only_as_a_whole_word() {
        let set = diuretics();
        assert_eq!(
            set.match_name("Furosemide 40 MG Oral Tablet"),
            Some("furosemide")
        );
        assert_eq!(set.match_name("furosemideX 40"), None);
    }

    #[test]
    fn an_expansion_contributes_codes() {
        let set = ValueSet::from_json(br#"{"resourceType":"ValueSet","id":"x","expansion":{"contains":[
            {"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"313988","display":"furosemide 40 MG Oral Tablet"}]}}"#).unwrap();
        assert_eq!(
            set.match_code("http://www.nlm.nih.gov/research/umls/rxnorm", "313988"),
            Some(CodeMatch::Exact)
        );
    }

    #[test]
    fn an_unknown_code_system_is_rejected() {
        let err = ValueSet::from_json(
            br#"{"resourceType":"ValueSet","id":"x","compose":{"include":[{"system":"urn:local","concept":[{"code":"1"}]}]}}"#,
        )
        .unwrap_err();
        assert!(err.contains("urn:local"), "{err}");
    }
}
