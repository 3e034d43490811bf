//! FHIR ValueSet files turned into fast membership tests.
//!
//! A value set is read from `compose.include` (explicit concepts, and `is-a`
//! filters, which for ICD-10-CM and ATC mean "this code and every code under
//! it", i.e. a prefix match) and from `expansion.contains`, so a deployment can
//! drop in a terminology server's expansion (for example a VSAC expansion that
//! lists product-level RxNorm codes) without any code change.
//!
//! Medication value sets also carry the names a drug goes by: the RxNorm
//! ingredient displays, and `designation`s of those concepts marked as a synonym,
//! a brand name or an abbreviation. Product-level RxNorm codes (SCD, SBD, GPCK,
//! BPCK) listed in `expansion.contains` are tied to the ingredient their RxNorm
//! name contains, so evidence can say "branded product of furosemide".
//! It does not resolve anything against a terminology server.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use super::keys::{Schema, Shape, fields_of, leaves};

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

/// The code system of `designation.use` codes this service reads: `synonym`,
/// `brand-name`, `abbreviation` and `other-drug`.
pub const DESIGNATION_USE_SYSTEM: &str = "https://cramp-cds.org/fhir/CodeSystem/designation-use";

/// The extension on an `expansion.contains` entry that names the declared source
/// (an `expansion.parameter` named `source`) the code was taken from.
pub const PRODUCT_SOURCE_EXTENSION: &str =
    "https://cramp-cds.org/fhir/StructureDefinition/product-source";

/// The shortest designation accepted: shorter ones would match too many words.
const MIN_DESIGNATION_CHARS: usize = 3;

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
    /// Product-level RxNorm codes from `expansion.contains`, by code.
    products: HashMap<String, Product>,
    /// The names of the drugs (ingredient displays and designations), matched as whole words.
    names: Vec<DrugName>,
    /// The first word of each name, for a cheap test before the whole-word search.
    first_words: HashSet<String>,
}

/// What a name of a drug is, as the value set declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// The RxNorm display of an ingredient concept ("furosemide").
    IngredientName,
    /// Another name of the ingredient (`designation.use` absent or `synonym`: "torasemide").
    Synonym,
    /// A brand (`designation.use` `brand-name`: "Lasix").
    BrandName,
    /// A common abbreviation (`designation.use` `abbreviation`: "HCTZ").
    Abbreviation,
    /// The name of another drug that contains this ingredient's name
    /// (`designation.use` `other-drug`: "gabapentin enacarbil", a prodrug dosed
    /// differently): a text or product name containing it is not this ingredient.
    OtherDrug,
}

impl NameKind {
    /// The kind for a `designation.use` code (none means a synonym).
    fn from_use(code: Option<&str>) -> Result<NameKind, String> {
        match code {
            None | Some("synonym") => Ok(NameKind::Synonym),
            Some("brand-name") => Ok(NameKind::BrandName),
            Some("abbreviation") => Ok(NameKind::Abbreviation),
            Some("other-drug") => Ok(NameKind::OtherDrug),
            Some(other) => Err(format!(
                "designation use '{other}' is not one of synonym, brand-name, abbreviation, other-drug"
            )),
        }
    }

    /// The kind in words, for evidence.
    pub fn label(self) -> &'static str {
        match self {
            NameKind::IngredientName => "ingredient name",
            NameKind::Synonym => "ingredient synonym",
            NameKind::BrandName => "brand name",
            NameKind::Abbreviation => "abbreviation",
            NameKind::OtherDrug => "name of another drug",
        }
    }
}

/// A name a drug of the value set goes by.
#[derive(Debug, Clone, PartialEq)]
pub struct DrugName {
    /// The name as the value set writes it ("Lasix").
    pub written: String,
    /// The name in lower case, matched as a whole word.
    lower: String,
    /// What the name is.
    pub kind: NameKind,
    /// The ingredient it stands for: the lower-case display of its concept.
    pub ingredient: String,
}

/// The kind of an RxNorm product, read from the shape of its RxNorm name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductKind {
    /// Semantic clinical drug (SCD): "furosemide 40 MG Oral Tablet".
    ClinicalDrug,
    /// Semantic branded drug (SBD): "furosemide 40 MG Oral Tablet [Lasix]".
    BrandedDrug,
    /// Generic pack (GPCK): "{...} Pack".
    GenericPack,
    /// Branded pack (BPCK): "{...} Pack [Brand]".
    BrandedPack,
}

impl ProductKind {
    /// RxNorm names packs in braces and brands in square brackets at the end.
    fn of_rxnorm_name(name: &str) -> ProductKind {
        let pack = name.trim_start().starts_with('{');
        let branded = name.trim_end().ends_with(']');
        match (pack, branded) {
            (true, true) => ProductKind::BrandedPack,
            (true, false) => ProductKind::GenericPack,
            (false, true) => ProductKind::BrandedDrug,
            (false, false) => ProductKind::ClinicalDrug,
        }
    }

    /// The kind in words, for evidence.
    pub fn label(self) -> &'static str {
        match self {
            ProductKind::ClinicalDrug => "clinical drug (SCD)",
            ProductKind::BrandedDrug => "branded drug (SBD)",
            ProductKind::GenericPack => "generic pack (GPCK)",
            ProductKind::BrandedPack => "branded pack (BPCK)",
        }
    }
}

/// A product-level RxNorm code of the value set.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// SCD, SBD, GPCK or BPCK.
    pub kind: ProductKind,
    /// The value set's ingredients its RxNorm name contains, in value set order
    /// (more than one for a combination product; none for a set without ingredient names).
    pub ingredients: Vec<String>,
}

/// How a coding or a name matched a value set.
#[derive(Debug, Clone, PartialEq)]
pub enum CodeMatch {
    /// The code is listed in the value set.
    Exact,
    /// The code sits under a listed class (ICD-10-CM or ATC `is-a`): the class code.
    UnderClass(String),
    /// The code is a product-level RxNorm code of the expansion.
    Product(Product),
}

/// A FHIR ValueSet as this service reads it.
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

/// `compose.include.concept`. For RxNorm ingredient concepts the display is the
/// ingredient name and each `designation` is another name of the same ingredient.
#[derive(Deserialize)]
struct RawConcept {
    code: String,
    display: Option<String>,
    #[serde(default)]
    designation: Vec<RawDesignation>,
}

/// `designation`: `value` is the name, matched as a whole word, case-insensitively,
/// in a medication's coding displays and text. `use` (optional) says what it is:
/// a Coding of system [`DESIGNATION_USE_SYSTEM`] with code `synonym` (the default
/// when `use` is absent), `brand-name`, `abbreviation`, or `other-drug` (the name of
/// another drug that contains the ingredient's name, such as "gabapentin enacarbil":
/// a text containing it never matches this ingredient). A value must have at least
/// three characters and a letter; brand names and abbreviations are only accepted on
/// RxNorm concepts, and one brand name or abbreviation may not stand for two ingredients.
#[derive(Deserialize)]
struct RawDesignation {
    value: String,
    #[serde(rename = "use")]
    use_: Option<RawCoding>,
}

#[derive(Deserialize)]
struct RawCoding {
    system: Option<String>,
    code: Option<String>,
}

#[derive(Deserialize)]
struct RawFilter {
    property: String,
    op: String,
    value: String,
}

/// `expansion`: `contains` lists codes (for medications, product-level RxNorm codes:
/// SCD, SBD, GPCK, BPCK, each with its RxNorm name as `display`). When the expansion
/// declares where its codes come from, as `parameter`s named `source` whose
/// `valueString` starts with a source id and a colon ("S1: repository@commit path"),
/// every entry must name one of those ids in a [`PRODUCT_SOURCE_EXTENSION`] extension.
#[derive(Deserialize)]
struct RawExpansion {
    #[serde(default)]
    parameter: Vec<RawParameter>,
    #[serde(default)]
    contains: Vec<RawContains>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawParameter {
    name: String,
    value_string: Option<String>,
}

/// `expansion.contains`. An RxNorm entry needs its RxNorm name as `display`; when the
/// value set has ingredient names, that name must contain one of them (this ties the
/// product to its ingredient and catches a code listed in the wrong value set).
#[derive(Deserialize)]
struct RawContains {
    system: Option<String>,
    code: Option<String>,
    display: Option<String>,
    #[serde(default)]
    extension: Vec<RawExtension>,
    #[serde(default)]
    contains: Vec<RawContains>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawExtension {
    url: String,
    value_string: Option<String>,
}

/// A value set file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ValueSetError {
    /// The file is not JSON of a ValueSet's shape.
    #[error("not a valid ValueSet: {0}")]
    Json(#[source] serde_json::Error),
    /// The ValueSet is well-formed but cannot be used, and why.
    #[error("{0}")]
    Invalid(String),
}

/// The keys of a value set file the loader reads (other FHIR elements are ignored), for the
/// language reference.
pub const VALUESET_SCHEMA: Schema = Schema {
    name: "a value set file",
    keys: fields_of::<RawValueSet>,
    child: valueset_child,
};

fn valueset_child(key: &str) -> Shape {
    const COMPOSE: Schema = Schema {
        name: "a value set's compose",
        keys: fields_of::<RawCompose>,
        child: compose_child,
    };
    const EXPANSION: Schema = Schema {
        name: "a value set's expansion",
        keys: fields_of::<RawExpansion>,
        child: expansion_child,
    };
    match key {
        "compose" => Shape::Table(COMPOSE),
        "expansion" => Shape::Table(EXPANSION),
        _ => Shape::Value,
    }
}

fn compose_child(key: &str) -> Shape {
    const INCLUDE: Schema = Schema {
        name: "a compose.include entry",
        keys: fields_of::<RawInclude>,
        child: include_child,
    };
    match key {
        "include" => Shape::Tables(INCLUDE),
        _ => Shape::Value,
    }
}

fn include_child(key: &str) -> Shape {
    const CONCEPT: Schema = Schema {
        name: "a compose.include.concept entry",
        keys: fields_of::<RawConcept>,
        child: concept_child,
    };
    const FILTER: Schema = Schema {
        name: "a compose.include.filter entry",
        keys: fields_of::<RawFilter>,
        child: leaves,
    };
    match key {
        "concept" => Shape::Tables(CONCEPT),
        "filter" => Shape::Tables(FILTER),
        _ => Shape::Value,
    }
}

fn concept_child(key: &str) -> Shape {
    const DESIGNATION: Schema = Schema {
        name: "a concept designation",
        keys: fields_of::<RawDesignation>,
        child: designation_child,
    };
    match key {
        "designation" => Shape::Tables(DESIGNATION),
        _ => Shape::Value,
    }
}

fn designation_child(key: &str) -> Shape {
    const CODING: Schema = Schema {
        name: "a designation's use",
        keys: fields_of::<RawCoding>,
        child: leaves,
    };
    match key {
        "use" => Shape::Table(CODING),
        _ => Shape::Value,
    }
}

fn expansion_child(key: &str) -> Shape {
    const PARAMETER: Schema = Schema {
        name: "an expansion parameter",
        keys: fields_of::<RawParameter>,
        child: leaves,
    };
    const CONTAINS: Schema = Schema {
        name: "an expansion.contains entry",
        keys: fields_of::<RawContains>,
        child: contains_child,
    };
    match key {
        "parameter" => Shape::Tables(PARAMETER),
        "contains" => Shape::Tables(CONTAINS),
        _ => Shape::Value,
    }
}

fn contains_child(key: &str) -> Shape {
    const EXTENSION: Schema = Schema {
        name: "an expansion.contains extension",
        keys: fields_of::<RawExtension>,
        child: leaves,
    };
    match key {
        "extension" => Shape::Tables(EXTENSION),
        "contains" => expansion_child("contains"),
        _ => Shape::Value,
    }
}

impl ValueSet {
    /// Reads and validates a FHIR ValueSet JSON document. The error says what is wrong.
    pub fn from_json(bytes: &[u8]) -> Result<ValueSet, ValueSetError> {
        let raw: RawValueSet = serde_json::from_slice(bytes).map_err(ValueSetError::Json)?;
        ValueSet::from_raw(raw).map_err(ValueSetError::Invalid)
    }

    fn from_raw(raw: RawValueSet) -> Result<ValueSet, String> {
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
            products: HashMap::new(),
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
        set.check_names()?;
        if let Some(expansion) = raw.expansion {
            let sources = declared_sources(&expansion.parameter)?;
            set.add_contains(&expansion.contains, &sources)?;
        }
        if set.exact.is_empty() && set.prefixes.is_empty() {
            return Err(
                "the value set has no codes (compose.include or expansion.contains)".into(),
            );
        }
        set.first_words = set
            .names
            .iter()
            .filter_map(|n| words(&n.lower).next())
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
            self.add_concept_names(&system, &concept)?;
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

    /// The ingredient name and designations of an RxNorm ingredient concept.
    fn add_concept_names(&mut self, system: &str, concept: &RawConcept) -> Result<(), String> {
        let mut designations = Vec::new();
        for designation in &concept.designation {
            let kind = designation_kind(designation)
                .map_err(|e| format!("{e} (code {} of {system})", concept.code))?;
            check_designation_value(&designation.value)
                .map_err(|e| format!("{e} (code {} of {system})", concept.code))?;
            designations.push((designation.value.trim().to_owned(), kind));
        }
        if system != RXNORM {
            return match designations.iter().find(|(_, k)| *k != NameKind::Synonym) {
                Some((value, kind)) => Err(format!(
                    "the {} '{value}' is on code {} of {system}; only RxNorm concepts name drugs",
                    kind.label(),
                    concept.code
                )),
                None => Ok(()),
            };
        }
        let Some(display) = concept.display.as_deref() else {
            if designations.is_empty() {
                return Ok(());
            }
            return Err(format!(
                "RxNorm code {} has designations but no display (its ingredient name)",
                concept.code
            ));
        };
        let ingredient = display.to_lowercase();
        let names = std::iter::once((display.to_owned(), NameKind::IngredientName))
            .chain(designations)
            .map(|(written, kind)| DrugName {
                lower: written.to_lowercase(),
                written,
                kind,
                ingredient: ingredient.clone(),
            });
        self.names.extend(names);
        Ok(())
    }

    /// A brand name or abbreviation stands for one ingredient only.
    fn check_names(&self) -> Result<(), String> {
        for name in &self.names {
            if !matches!(name.kind, NameKind::BrandName | NameKind::Abbreviation) {
                continue;
            }
            if let Some(other) = self
                .names
                .iter()
                .find(|o| o.lower == name.lower && o.ingredient != name.ingredient)
            {
                return Err(format!(
                    "the {} '{}' stands for both '{}' and '{}'",
                    name.kind.label(),
                    name.written,
                    name.ingredient,
                    other.ingredient
                ));
            }
        }
        Ok(())
    }

    fn add_contains(
        &mut self,
        contains: &[RawContains],
        sources: &HashSet<String>,
    ) -> Result<(), String> {
        for entry in contains {
            if let (Some(system), Some(code)) = (&entry.system, &entry.code) {
                check_system(system)?;
                check_entry_source(entry, code, sources)?;
                self.add_code(system, code, entry.display.as_deref())?;
                if system == RXNORM {
                    self.add_product(code, entry.display.as_deref())?;
                }
            }
            self.add_contains(&entry.contains, sources)?;
        }
        Ok(())
    }

    /// Ties a product code of the expansion to the ingredients its RxNorm name contains.
    fn add_product(&mut self, code: &str, display: Option<&str>) -> Result<(), String> {
        let name = display.ok_or_else(|| {
            format!("expansion code RxNorm {code} has no display (its RxNorm name is needed)")
        })?;
        let lower = name.to_lowercase();
        let found = self.names_in(&lower);
        let mut ingredients: Vec<String> = Vec::new();
        for drug in found.iter().filter(|n| !is_part_of_another(n, &found)) {
            if !ingredients.contains(&drug.ingredient) {
                ingredients.push(drug.ingredient.clone());
            }
        }
        if ingredients.is_empty() && !self.names.is_empty() {
            return Err(format!(
                "expansion code RxNorm {code} \"{name}\" names no ingredient of this value set"
            ));
        }
        let product = Product {
            kind: ProductKind::of_rxnorm_name(name),
            ingredients,
        };
        self.products.insert(code.to_owned(), product);
        Ok(())
    }

    fn add_code(&mut self, system: &str, code: &str, display: Option<&str>) -> Result<(), String> {
        if code.trim().is_empty() {
            return Err(format!("an empty code is listed for {system}"));
        }
        let key = (system.to_owned(), code.to_owned());
        if let (Some(old), Some(new)) = (self.displays.get(&key), display)
            && old != new
        {
            return Err(format!(
                "{system} code {code} is listed twice, as \"{old}\" and as \"{new}\""
            ));
        }
        self.exact
            .entry(system.to_owned())
            .or_default()
            .insert(code.to_owned());
        if let Some(display) = display {
            self.displays.insert(key, display.to_owned());
        }
        Ok(())
    }

    /// Whether `system|code` is in the value set, and how.
    pub fn match_code(&self, system: &str, code: &str) -> Option<CodeMatch> {
        if system == RXNORM
            && let Some(product) = self.products.get(code)
        {
            return Some(CodeMatch::Product(product.clone()));
        }
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

    /// The longest name of a drug of the value set found as a whole word in `text`
    /// (case-insensitive; the first in value set order among equally long ones), so
    /// "insulin glargine" wins over "insulin" and "metoprolol succinate" over "metoprolol".
    pub fn match_name(&self, text: &str) -> Option<&DrugName> {
        let lower = text.to_lowercase();
        // Most texts share no word with any name: skip the substring searches for them.
        if !words(&lower).any(|w| self.first_words.contains(w)) {
            return None;
        }
        self.names_in(&lower)
            .into_iter()
            .fold(None, |best: Option<&DrugName>, name| match best {
                Some(b) if b.lower.len() >= name.lower.len() => Some(b),
                _ => Some(name),
            })
    }

    /// The names found as whole words in a lower-case text, leaving out the
    /// ingredients an `other-drug` name found in it rules out.
    fn names_in(&self, lower: &str) -> Vec<&DrugName> {
        let found: Vec<&DrugName> = self
            .names
            .iter()
            .filter(|n| contains_word(lower, &n.lower))
            .collect();
        let ruled_out: Vec<&str> = found
            .iter()
            .filter(|n| n.kind == NameKind::OtherDrug)
            .map(|n| n.ingredient.as_str())
            .collect();
        found
            .into_iter()
            .filter(|n| {
                n.kind != NameKind::OtherDrug && !ruled_out.contains(&n.ingredient.as_str())
            })
            .collect()
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

    /// Every name a drug of the value set goes by, in value set order.
    pub fn names(&self) -> impl Iterator<Item = &DrugName> {
        self.names.iter()
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

/// What a designation is, from its `use`.
fn designation_kind(designation: &RawDesignation) -> Result<NameKind, String> {
    let Some(use_) = &designation.use_ else {
        return Ok(NameKind::Synonym);
    };
    if use_.system.as_deref() != Some(DESIGNATION_USE_SYSTEM) {
        return Err(format!(
            "designation '{}' has a use outside {DESIGNATION_USE_SYSTEM}",
            designation.value
        ));
    }
    NameKind::from_use(use_.code.as_deref())
}

/// A designation is a name that can be matched as a word without matching everything.
fn check_designation_value(value: &str) -> Result<(), String> {
    let value = value.trim();
    if value.chars().count() < MIN_DESIGNATION_CHARS || !value.chars().any(char::is_alphabetic) {
        return Err(format!(
            "designation '{value}' is too short to match safely (at least {MIN_DESIGNATION_CHARS} characters with a letter)"
        ));
    }
    Ok(())
}

/// The source ids an expansion declares (`parameter` `source`, "S1: where").
fn declared_sources(parameters: &[RawParameter]) -> Result<HashSet<String>, String> {
    let mut ids = HashSet::new();
    for parameter in parameters.iter().filter(|p| p.name == "source") {
        let text = parameter.value_string.as_deref().unwrap_or_default();
        let Some((id, place)) = text.split_once(':') else {
            return Err(format!(
                "expansion source '{text}' should read 'ID: where the codes come from'"
            ));
        };
        if id.trim().is_empty() || place.trim().is_empty() {
            return Err(format!("expansion source '{text}' needs an id and a place"));
        }
        ids.insert(id.trim().to_owned());
    }
    Ok(ids)
}

/// When sources are declared, an entry names one of them.
fn check_entry_source(
    entry: &RawContains,
    code: &str,
    sources: &HashSet<String>,
) -> Result<(), String> {
    let named = entry
        .extension
        .iter()
        .filter(|e| e.url == PRODUCT_SOURCE_EXTENSION)
        .filter_map(|e| e.value_string.as_deref())
        .next();
    match named {
        None if sources.is_empty() => Ok(()),
        None => Err(format!(
            "expansion code {code} does not name its source (extension {PRODUCT_SOURCE_EXTENSION})"
        )),
        Some(id) if sources.contains(id) => Ok(()),
        Some(id) => Err(format!(
            "expansion code {code} names source '{id}', which the expansion does not declare"
        )),
    }
}

/// Whether a matched name is only a word of a longer matched name of another
/// ingredient ("insulin" inside "insulin glargine").
fn is_part_of_another(name: &DrugName, found: &[&DrugName]) -> bool {
    found.iter().any(|other| {
        other.ingredient != name.ingredient
            && other.lower.len() > name.lower.len()
            && contains_word(&other.lower, &name.lower)
    })
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
            set.match_name("Furosemide 40 MG Oral Tablet")
                .map(|n| n.ingredient.as_str()),
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
            Some(CodeMatch::Product(Product {
                kind: ProductKind::ClinicalDrug,
                ingredients: vec![]
            }))
        );
    }

    #[test]
    fn an_unknown_code_system_is_rejected() {
        let err = ValueSet::from_json(
            br#"{"resourceType":"ValueSet","id":"x","compose":{"include":[{"system":"urn:local","concept":[{"code":"1"}]}]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("urn:local"), "{err}");
    }

    const FUROSEMIDE_SET: &str = r#"{"resourceType":"ValueSet","id":"loop","compose":{"include":[
        {"system":"http://www.nlm.nih.gov/research/umls/rxnorm","concept":[
          {"code":"4603","display":"furosemide","designation":[
            {"use":{"system":"https://cramp-cds.org/fhir/CodeSystem/designation-use","code":"brand-name"},"value":"Lasix"}]},
          {"code":"5487","display":"hydrochlorothiazide","designation":[
            {"use":{"system":"https://cramp-cds.org/fhir/CodeSystem/designation-use","code":"abbreviation"},"value":"HCTZ"}]}]}]},
      "expansion":{"parameter":[{"name":"source","valueString":"S1: somewhere@abc file.csv"}],"contains":[
        {"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"200809","display":"furosemide 40 MG Oral Tablet [Lasix]",
         "extension":[{"url":"https://cramp-cds.org/fhir/StructureDefinition/product-source","valueString":"S1"}]},
        {"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"900001","display":"furosemide 20 MG / hydrochlorothiazide 25 MG Oral Tablet (invented for this test)",
         "extension":[{"url":"https://cramp-cds.org/fhir/StructureDefinition/product-source","valueString":"S1"}]}]}}"#;

    fn furosemide_set() -> ValueSet {
        ValueSet::from_json(FUROSEMIDE_SET.as_bytes()).unwrap()
    }

    fn rejected(json: &str) -> String {
        ValueSet::from_json(json.as_bytes())
            .unwrap_err()
            .to_string()
    }

    fn with_designation(designation: &str) -> String {
        format!(
            r#"{{"resourceType":"ValueSet","id":"x","compose":{{"include":[{{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","concept":[{{"code":"4603","display":"furosemide","designation":[{designation}]}}]}}]}}}}"#
        )
    }

    #[test]
    fn a_brand_name_matches_as_a_whole_word_whatever_its_case() {
        let set = furosemide_set();
        let found = set.match_name("LASIX 40 MG TAB").unwrap();
        assert_eq!(found.kind, NameKind::BrandName);
        assert_eq!(found.ingredient, "furosemide");
        assert_eq!(found.written, "Lasix");
        assert!(set.match_name("Lasixon 40 mg").is_none());
        assert!(set.match_name("xLasix 40 mg").is_none());
    }

    #[test]
    fn an_abbreviation_matches_next_to_punctuation_but_not_inside_a_word() {
        let set = furosemide_set();
        let found = set.match_name("lisinopril/HCTZ 20/12.5").unwrap();
        assert_eq!(found.kind, NameKind::Abbreviation);
        assert_eq!(found.ingredient, "hydrochlorothiazide");
        assert!(set.match_name("PHCTZ 25").is_none());
    }

    #[test]
    fn a_product_code_is_tied_to_the_ingredients_its_rxnorm_name_contains() {
        let set = furosemide_set();
        assert_eq!(
            set.match_code(RXNORM, "200809"),
            Some(CodeMatch::Product(Product {
                kind: ProductKind::BrandedDrug,
                ingredients: vec!["furosemide".into()]
            }))
        );
        let Some(CodeMatch::Product(combination)) = set.match_code(RXNORM, "900001") else {
            panic!("the combination product is not a product of the set");
        };
        assert_eq!(combination.kind, ProductKind::ClinicalDrug);
        assert_eq!(
            combination.ingredients,
            vec!["furosemide".to_owned(), "hydrochlorothiazide".to_owned()]
        );
        assert_eq!(set.match_code(RXNORM, "314077"), None);
    }

    #[test]
    fn rxnorm_names_tell_packs_and_brands_apart() {
        assert_eq!(
            ProductKind::of_rxnorm_name("{9 (gabapentin 300 MG Oral Tablet) } Pack"),
            ProductKind::GenericPack
        );
        assert_eq!(
            ProductKind::of_rxnorm_name("{9 (x) } Pack [Gralise Starter]"),
            ProductKind::BrandedPack
        );
        assert_eq!(
            ProductKind::of_rxnorm_name("furosemide 40 MG Oral Tablet"),
            ProductKind::ClinicalDrug
        );
    }

    #[test]
    fn the_longest_matching_name_wins() {
        let set = ValueSet::from_json(
            br#"{"resourceType":"ValueSet","id":"ins","compose":{"include":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","concept":[
            {"code":"253182","display":"insulin, regular, human","designation":[{"value":"insulin"}]},
            {"code":"274783","display":"insulin glargine"}]}]},
            "expansion":{"contains":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"285018","display":"insulin glargine 100 UNT/ML Injectable Solution [Lantus]"}]}}"#,
        )
        .unwrap();
        let found = set.match_name("Insulin glargine 20 units").unwrap();
        assert_eq!(found.ingredient, "insulin glargine");
        let Some(CodeMatch::Product(product)) = set.match_code(RXNORM, "285018") else {
            panic!("285018 is not a product of the set");
        };
        assert_eq!(product.ingredients, vec!["insulin glargine".to_owned()]);
    }

    #[test]
    fn the_bare_word_magnesium_is_not_a_magnesium_salt() {
        let set = ValueSet::from_json(
            br#"{"resourceType":"ValueSet","id":"mg","compose":{"include":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","concept":[
            {"code":"6582","display":"magnesium oxide","designation":[{"use":{"system":"https://cramp-cds.org/fhir/CodeSystem/designation-use","code":"abbreviation"},"value":"MgO"}]},
            {"code":"6574","display":"magnesium (element)"}]}]}}"#,
        )
        .unwrap();
        assert!(set.match_name("esomeprazole magnesium 40 MG").is_none());
        assert!(
            set.match_name("pitavastatin magnesium 2 MG Oral Tablet")
                .is_none()
        );
        assert_eq!(
            set.match_name("MgO 400 mg").map(|n| n.kind),
            Some(NameKind::Abbreviation)
        );
    }

    #[test]
    fn a_designation_use_outside_the_service_code_system_is_rejected() {
        let err = rejected(&with_designation(
            r#"{"use":{"system":"http://snomed.info/sct","code":"900000000000013009"},"value":"Lasix"}"#,
        ));
        assert!(
            err.contains("Lasix") && err.contains("designation-use"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_designation_use_is_rejected() {
        let err = rejected(&with_designation(
            r#"{"use":{"system":"https://cramp-cds.org/fhir/CodeSystem/designation-use","code":"nickname"},"value":"Lasix"}"#,
        ));
        assert!(err.contains("nickname"), "{err}");
    }

    #[test]
    fn a_designation_too_short_to_match_safely_is_rejected() {
        let err = rejected(&with_designation(r#"{"value":"Mg"}"#));
        assert!(err.contains("'Mg'") && err.contains("too short"), "{err}");
    }

    #[test]
    fn a_brand_name_on_a_concept_that_is_not_rxnorm_is_rejected() {
        let err = rejected(
            r#"{"resourceType":"ValueSet","id":"x","compose":{"include":[{"system":"http://www.whocc.no/atc","concept":[{"code":"C03CA01","display":"furosemide","designation":[{"use":{"system":"https://cramp-cds.org/fhir/CodeSystem/designation-use","code":"brand-name"},"value":"Lasix"}]}]}]}}"#,
        );
        assert!(err.contains("only RxNorm"), "{err}");
    }

    #[test]
    fn a_brand_name_standing_for_two_ingredients_is_rejected() {
        let brand = r#"{"use":{"system":"https://cramp-cds.org/fhir/CodeSystem/designation-use","code":"brand-name"},"value":"Maxzide"}"#;
        let err = rejected(&format!(
            r#"{{"resourceType":"ValueSet","id":"x","compose":{{"include":[{{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","concept":[
            {{"code":"5487","display":"hydrochlorothiazide","designation":[{brand}]}},
            {{"code":"10763","display":"triamterene","designation":[{brand}]}}]}}]}}}}"#
        ));
        assert!(
            err.contains("Maxzide") && err.contains("triamterene"),
            "{err}"
        );
    }

    #[test]
    fn a_product_naming_no_ingredient_of_the_set_is_rejected() {
        let json = FUROSEMIDE_SET.replace(
            "furosemide 40 MG Oral Tablet [Lasix]",
            "lisinopril 20 MG Oral Tablet",
        );
        let err = rejected(&json);
        assert!(
            err.contains("200809") && err.contains("names no ingredient"),
            "{err}"
        );
    }

    #[test]
    fn a_product_code_without_its_rxnorm_name_is_rejected() {
        let json =
            FUROSEMIDE_SET.replace(r#","display":"furosemide 40 MG Oral Tablet [Lasix]""#, "");
        let err = rejected(&json);
        assert!(
            err.contains("200809") && err.contains("no display"),
            "{err}"
        );
    }

    #[test]
    fn each_product_names_a_source_the_expansion_declares() {
        let undeclared =
            FUROSEMIDE_SET.replacen(r#""valueString":"S1"}"#, r#""valueString":"S9"}"#, 1);
        let err = rejected(&undeclared);
        assert!(err.contains("'S9'"), "{err}");
        let unnamed = FUROSEMIDE_SET.replacen(
            r#""extension":[{"url":"https://cramp-cds.org/fhir/StructureDefinition/product-source","valueString":"S1"}]"#,
            r#""note":"no source""#,
            1,
        );
        let err = rejected(&unnamed);
        assert!(err.contains("does not name its source"), "{err}");
    }

    #[test]
    fn a_code_listed_twice_under_two_names_is_rejected() {
        let json = FUROSEMIDE_SET.replace(r#""code":"900001""#, r#""code":"200809""#);
        let err = rejected(&json);
        assert!(
            err.contains("200809") && err.contains("listed twice"),
            "{err}"
        );
    }

    #[test]
    fn an_other_drug_name_keeps_its_look_alike_ingredient_from_matching() {
        let set = ValueSet::from_json(
            &with_designation(
                r#"{"use":{"system":"https://cramp-cds.org/fhir/CodeSystem/designation-use","code":"other-drug"},"value":"furosemide enacarbil"}"#,
            )
            .into_bytes(),
        )
        .unwrap();
        assert!(
            set.match_name("Furosemide enacarbil 600 mg (invented)")
                .is_none()
        );
        assert_eq!(
            set.match_name("furosemide 40 mg").map(|n| n.kind),
            Some(NameKind::IngredientName)
        );
    }
}
