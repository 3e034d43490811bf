//! Matching coded things against value sets, saying how they matched: by an
//! exact code, under a class (ATC, ICD-10-CM), by a product-level RxNorm code of
//! the value set's expansion, or by a name of the drug (ingredient name, synonym,
//! brand name, abbreviation) as a whole word in a product's display or text.
//! It does not decide whether a medication is active; the engine does.

use super::evidence::{Matched, MatchedBy};
use crate::fhir::record::{Code, Concept};
use crate::knowledge::describe::system_name;
use crate::knowledge::valueset::{CodeMatch, DrugName, Product, ValueSet};

/// How a concept matched a value set.
pub fn match_concept(set: &ValueSet, concept: &Concept) -> Option<Matched> {
    concept
        .codings
        .iter()
        .find_map(|coding| match_coding(set, coding).map(|found| found.how))
}

/// How a medication matched, and which drug of the value set it is.
#[derive(Debug, Clone, PartialEq)]
pub struct MedicationMatch {
    /// The drug, for counting different drugs: the ingredient's name, or the class code.
    pub drug: String,
    /// How it matched.
    pub how: Matched,
}

/// The display sent with the coding or, when none was sent, the value set's own (RxNorm)
/// name for the code.
fn display_of(set: &ValueSet, coding: &Code) -> Option<String> {
    coding
        .display
        .as_deref()
        .or_else(|| set.display(&coding.system, &coding.code))
        .map(str::to_owned)
}

fn direct(by: MatchedBy) -> Matched {
    Matched {
        by,
        through_ingredient: false,
    }
}

/// One coding against the value set: the drug it names and how it matched.
fn match_coding(set: &ValueSet, coding: &Code) -> Option<MedicationMatch> {
    match set.match_code(&coding.system, &coding.code)? {
        CodeMatch::Exact => Some(MedicationMatch {
            drug: set
                .display(&coding.system, &coding.code)
                .map(str::to_lowercase)
                .unwrap_or_else(|| coding.code.clone()),
            how: direct(MatchedBy::Code {
                system: coding.system.clone(),
                code: coding.code.clone(),
                display: display_of(set, coding),
            }),
        }),
        CodeMatch::UnderClass(class) => Some(MedicationMatch {
            drug: class.clone(),
            how: direct(MatchedBy::Class {
                system: coding.system.clone(),
                code: coding.code.clone(),
                class,
            }),
        }),
        CodeMatch::Product(product) => Some(product_match(set, coding, &product)),
    }
}

/// A product-level code: the evidence names the kind of product and its ingredients.
fn product_match(set: &ValueSet, coding: &Code, product: &Product) -> MedicationMatch {
    MedicationMatch {
        drug: product
            .ingredients
            .first()
            .cloned()
            .unwrap_or_else(|| coding.code.clone()),
        how: direct(MatchedBy::Product {
            system: coding.system.clone(),
            code: coding.code.clone(),
            display: display_of(set, coding),
            kind: product.kind,
            ingredients: product.ingredients.clone(),
        }),
    }
}

/// A name of the drug found in a display or text: the evidence says which kind of name.
fn name_match(name: &DrugName, place: &str, text: &str) -> MedicationMatch {
    let ingredient =
        (name.written.to_lowercase() != name.ingredient).then(|| name.ingredient.clone());
    MedicationMatch {
        drug: name.ingredient.clone(),
        how: direct(MatchedBy::Name {
            kind: name.kind,
            written: name.written.clone(),
            ingredient,
            place: place.to_owned(),
            text: text.to_owned(),
        }),
    }
}

/// Like [`match_concept`] for a medication and its ingredients (codes first), then
/// falls back to a name of the drug as a whole word in each coding's display and
/// in the text.
pub fn match_medication(
    set: &ValueSet,
    concept: &Concept,
    ingredients: &[Concept],
) -> Option<MedicationMatch> {
    let candidates = std::iter::once((concept, false)).chain(ingredients.iter().map(|i| (i, true)));
    for (candidate, through_ingredient) in candidates {
        if let Some(mut found) = candidate.codings.iter().find_map(|c| match_coding(set, c)) {
            found.how.through_ingredient = through_ingredient;
            return Some(found);
        }
    }
    let named = concept
        .codings
        .iter()
        .filter_map(|c| {
            let display = c.display.as_deref()?;
            Some((
                display,
                format!("{} {} display", system_name(&c.system), c.code),
            ))
        })
        .chain(concept.text.as_deref().map(|t| (t, "text".to_owned())))
        .chain(
            ingredients
                .iter()
                .filter_map(|i| i.text.as_deref().map(|t| (t, "ingredient text".to_owned()))),
        );
    for (text, place) in named {
        if let Some(name) = set.match_name(text) {
            return Some(name_match(name, &place, text));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::valueset::{NameKind, ProductKind, RXNORM};

    fn loop_diuretics() -> ValueSet {
        ValueSet::from_json(
            br#"{"resourceType":"ValueSet","id":"loop","compose":{"include":[
            {"system":"http://www.nlm.nih.gov/research/umls/rxnorm","concept":[
              {"code":"4603","display":"furosemide","designation":[
                {"use":{"system":"https://cramp-cds.org/fhir/CodeSystem/designation-use","code":"brand-name"},"value":"Lasix"}]},
              {"code":"5487","display":"hydrochlorothiazide","designation":[
                {"use":{"system":"https://cramp-cds.org/fhir/CodeSystem/designation-use","code":"abbreviation"},"value":"HCTZ"}]}]},
            {"system":"http://www.whocc.no/atc","filter":[{"property":"concept","op":"is-a","value":"C03C"}]}]},
            "expansion":{"contains":[
              {"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"200809","display":"furosemide 40 MG Oral Tablet [Lasix]"},
              {"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"823982","display":"hydrochlorothiazide 12.5 MG / lisinopril 20 MG Oral Tablet [Zestoretic]"}]}}"#,
        )
        .unwrap()
    }

    fn coded(system: &str, code: &str, display: Option<&str>) -> Concept {
        Concept {
            codings: vec![Code {
                system: system.into(),
                code: code.into(),
                display: display.map(str::to_owned),
            }],
            text: None,
        }
    }

    fn text_only(text: &str) -> Concept {
        Concept {
            codings: vec![],
            text: Some(text.into()),
        }
    }

    #[test]
    fn a_product_code_sent_without_display_is_named_from_the_value_set() {
        let found =
            match_medication(&loop_diuretics(), &coded(RXNORM, "200809", None), &[]).unwrap();
        assert_eq!(found.drug, "furosemide");
        assert_eq!(
            found.how.by,
            MatchedBy::Product {
                system: RXNORM.into(),
                code: "200809".into(),
                display: Some("furosemide 40 MG Oral Tablet [Lasix]".into()),
                kind: ProductKind::BrandedDrug,
                ingredients: vec!["furosemide".into()],
            }
        );
    }

    #[test]
    fn a_combination_product_counts_for_the_ingredient_of_the_value_set() {
        let found =
            match_medication(&loop_diuretics(), &coded(RXNORM, "823982", None), &[]).unwrap();
        assert_eq!(found.drug, "hydrochlorothiazide");
        assert!(
            matches!(&found.how.by, MatchedBy::Product { ingredients, .. } if ingredients.contains(&"hydrochlorothiazide".to_owned())),
            "{:?}",
            found.how
        );
    }

    #[test]
    fn an_ingredient_code_and_a_class_code_say_which_they_are() {
        let set = loop_diuretics();
        let by_ingredient = match_medication(&set, &coded(RXNORM, "4603", None), &[]).unwrap();
        assert_eq!(
            by_ingredient.how.by,
            MatchedBy::Code {
                system: RXNORM.into(),
                code: "4603".into(),
                display: Some("furosemide".into()),
            }
        );
        let by_class = match_medication(
            &set,
            &coded("http://www.whocc.no/atc", "C03CA01", None),
            &[],
        )
        .unwrap();
        assert_eq!(
            by_class.how.by,
            MatchedBy::Class {
                system: "http://www.whocc.no/atc".into(),
                code: "C03CA01".into(),
                class: "C03C".into(),
            }
        );
        assert_eq!(by_class.drug, "C03C");
    }

    #[test]
    fn a_brand_name_in_the_text_says_it_is_a_brand_and_of_what() {
        let found = match_medication(&loop_diuretics(), &text_only("Lasix 40mg tab"), &[]).unwrap();
        assert_eq!(found.drug, "furosemide");
        assert_eq!(
            found.how.by,
            MatchedBy::Name {
                kind: NameKind::BrandName,
                written: "Lasix".into(),
                ingredient: Some("furosemide".into()),
                place: "text".into(),
                text: "Lasix 40mg tab".into(),
            }
        );
    }

    #[test]
    fn an_abbreviation_in_a_local_display_matches() {
        let concept = coded(
            "https://ehr.example.org/drugs",
            "77",
            Some("HCTZ 25 MG TAB"),
        );
        let found = match_medication(&loop_diuretics(), &concept, &[]).unwrap();
        assert_eq!(found.drug, "hydrochlorothiazide");
        assert!(
            matches!(&found.how.by, MatchedBy::Name { kind: NameKind::Abbreviation, written, place, .. }
                if written == "HCTZ" && place == "https://ehr.example.org/drugs 77 display"),
            "{:?}",
            found.how
        );
    }

    #[test]
    fn an_ingredient_name_says_so_without_repeating_itself() {
        let found =
            match_medication(&loop_diuretics(), &text_only("Furosemide 40 mg"), &[]).unwrap();
        assert!(
            matches!(
                &found.how.by,
                MatchedBy::Name {
                    kind: NameKind::IngredientName,
                    ingredient: None,
                    ..
                }
            ),
            "{:?}",
            found.how
        );
    }

    #[test]
    fn look_alike_words_and_other_products_do_not_match() {
        let set = loop_diuretics();
        for text in ["Lasixon 40 mg", "PHCTZ 25", "lisinopril 20 MG Oral Tablet"] {
            assert_eq!(
                match_medication(&set, &text_only(text), &[]),
                None,
                "{text}"
            );
        }
        assert_eq!(
            match_medication(&set, &coded(RXNORM, "314077", None), &[]),
            None
        );
    }
}
