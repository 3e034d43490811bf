//! `products.toml`: the words and codes that tell how a draft order is given and what kind of
//! product it is, when the order does not code it: the SNOMED CT route codes, the words of a
//! route's text, the words of a product name that imply a route ("Oral Tablet", "Injectable
//! Solution"), and the words that mark an extended-release product. Vocabulary a deployment may
//! need to extend for its EHR's local product names, so it is data, checked when it loads.

use serde::Deserialize;

use super::criteria::Route;
use super::keys::{Schema, Shape, fields_of, leaves};

/// The product vocabulary.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductVocabulary {
    /// The routes, in the order they are tried (the first that matches wins).
    pub routes: Vec<RouteWords>,
    /// Words or phrases of a product name that mark it extended release ("24 HR", "ER").
    pub extended_release_words: Vec<String>,
}

/// How one route is recognised.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteWords {
    /// The route.
    pub route: Route,
    /// SNOMED CT codes of `dosageInstruction.route` that mean it.
    #[serde(default)]
    pub snomed: Vec<String>,
    /// Words or phrases of the route's text or display that mean it ("IV", "by mouth").
    #[serde(default)]
    pub words: Vec<String>,
    /// Words or phrases of a product name that imply it ("injectable", "tablet").
    #[serde(default)]
    pub product_words: Vec<String>,
}

/// The keys of `products.toml`.
pub const PRODUCTS_SCHEMA: Schema = Schema {
    name: "products.toml",
    keys: fields_of::<ProductVocabulary>,
    child: products_child,
};

fn products_child(key: &str) -> Shape {
    const ROUTE: Schema = Schema {
        name: "a [[routes]] entry",
        keys: fields_of::<RouteWords>,
        child: leaves,
    };
    match key {
        "routes" => Shape::Tables(ROUTE),
        _ => Shape::Value,
    }
}

impl ProductVocabulary {
    /// Checks the vocabulary: every word is lower case and not empty, every SNOMED CT code is
    /// numeric, and no route is listed twice.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = Vec::new();
        for (i, entry) in self.routes.iter().enumerate() {
            if seen.contains(&entry.route) {
                return Err(format!(
                    "routes[{i}]: the route '{}' is listed twice",
                    entry.route.as_str()
                ));
            }
            seen.push(entry.route);
            if let Some(code) = entry
                .snomed
                .iter()
                .find(|c| c.is_empty() || !c.chars().all(|ch| ch.is_ascii_digit()))
            {
                return Err(format!(
                    "routes[{i}].snomed: '{code}' is not a SNOMED CT code (digits only)"
                ));
            }
            check_words(&entry.words, &format!("routes[{i}].words"))?;
            check_words(&entry.product_words, &format!("routes[{i}].product_words"))?;
        }
        check_words(&self.extended_release_words, "extended_release_words")
    }

    /// The route a SNOMED CT route code means.
    pub fn route_of_code(&self, code: &str) -> Option<Route> {
        self.routes
            .iter()
            .find(|r| r.snomed.iter().any(|c| c == code))
            .map(|r| r.route)
    }

    /// The route a route's text or display names (whole words or phrases, any case).
    pub fn route_of_text(&self, text: &str) -> Option<Route> {
        let words = words_of(text);
        self.routes
            .iter()
            .find(|r| r.words.iter().any(|w| has_phrase(&words, w)))
            .map(|r| r.route)
    }

    /// The route a product name implies (a word or phrase of `product_words` starting a word
    /// of the name, so "inhal" finds "Inhalation" and "tablet" finds "Tablets").
    pub fn route_of_product(&self, name: &str) -> Option<Route> {
        let words = words_of(name);
        self.routes
            .iter()
            .find(|r| r.product_words.iter().any(|w| starts_phrase(&words, w)))
            .map(|r| r.route)
    }

    /// Whether a product name marks an extended-release product.
    pub fn is_extended_release(&self, name: &str) -> bool {
        let words = words_of(name);
        self.extended_release_words
            .iter()
            .any(|w| has_phrase(&words, w))
    }
}

fn check_words(words: &[String], path: &str) -> Result<(), String> {
    match words
        .iter()
        .find(|w| w.trim().is_empty() || w.to_lowercase() != **w)
    {
        Some(word) => Err(format!(
            "{path}: '{word}' must be a lower-case word or phrase, not empty"
        )),
        None => Ok(()),
    }
}

/// The lower-case words of a text, split at anything that is not a letter or a digit.
fn words_of(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether the words of `phrase` appear, in order and whole, in `words`.
fn has_phrase(words: &[String], phrase: &str) -> bool {
    let wanted = words_of(phrase);
    !wanted.is_empty() && words.windows(wanted.len()).any(|w| w == wanted.as_slice())
}

/// Like [`has_phrase`], but the last word of `phrase` need only start a word.
fn starts_phrase(words: &[String], phrase: &str) -> bool {
    let wanted = words_of(phrase);
    let Some((last, first)) = wanted.split_last() else {
        return false;
    };
    words
        .windows(wanted.len())
        .any(|w| w[..first.len()] == *first && w[first.len()].starts_with(last.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary() -> ProductVocabulary {
        toml::from_str(include_str!("../../cds-hooks/products.toml")).unwrap()
    }

    #[test]
    fn the_shipped_vocabulary_is_valid() {
        vocabulary().check().unwrap();
    }

    #[test]
    fn routes_are_read_from_codes_text_and_product_names() {
        let v = vocabulary();
        assert_eq!(v.route_of_code("47625008"), Some(Route::Intravenous));
        assert_eq!(v.route_of_code("1"), None);
        assert_eq!(v.route_of_text("IV push"), Some(Route::Intravenous));
        assert_eq!(v.route_of_text("by mouth"), Some(Route::Oral));
        assert_eq!(v.route_of_text("IM"), Some(Route::Intramuscular));
        assert_eq!(v.route_of_text("given"), None);
        assert_eq!(
            v.route_of_product("magnesium sulfate 500 MG/ML Injectable Solution"),
            Some(Route::Intravenous)
        );
        assert_eq!(
            v.route_of_product("naproxen 500 MG Oral Tablet"),
            Some(Route::Oral)
        );
        assert_eq!(
            v.route_of_product("diclofenac sodium 10 MG/ML Topical Gel"),
            Some(Route::Topical)
        );
        assert_eq!(v.route_of_product("magnesium"), None);
    }

    #[test]
    fn extended_release_is_read_from_whole_words() {
        let v = vocabulary();
        assert!(v.is_extended_release("24 HR gabapentin 600 MG Extended Release Oral Tablet"));
        assert!(v.is_extended_release("Lyrica CR 165 MG tablet"));
        assert!(v.is_extended_release("Gralise 600 mg"));
        assert!(!v.is_extended_release("gabapentin 300 MG Oral Capsule"));
        assert!(!v.is_extended_release("Cerebyx 50 MG/ML"));
    }

    #[test]
    fn a_broken_vocabulary_names_the_key() {
        let mut v = vocabulary();
        v.extended_release_words.push("ER".into());
        assert!(
            v.check()
                .unwrap_err()
                .starts_with("extended_release_words: 'ER'")
        );
        let mut v = vocabulary();
        v.routes[0].snomed.push("abc".into());
        assert!(v.check().unwrap_err().contains("routes[0].snomed: 'abc'"));
        let mut v = vocabulary();
        let first = v.routes[0].clone();
        v.routes.push(first);
        assert!(v.check().unwrap_err().contains("listed twice"));
    }
}
