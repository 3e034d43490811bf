//! Matching coded things against value sets, saying how they matched: by an
//! exact code, under a class (ATC, ICD-10-CM), or by an ingredient name as a
//! whole word in a product's display or text.

use crate::fhir::record::Concept;
use crate::knowledge::valueset::{CodeMatch, ValueSet};

/// Human names of the code systems, for evidence.
pub fn system_name(system: &str) -> &str {
    match system {
        "http://snomed.info/sct" => "SNOMED CT",
        "http://hl7.org/fhir/sid/icd-10-cm" => "ICD-10-CM",
        "http://www.nlm.nih.gov/research/umls/rxnorm" => "RxNorm",
        "http://www.whocc.no/atc" => "ATC",
        "http://loinc.org" => "LOINC",
        other => other,
    }
}

/// How a concept matched a value set, in words for the evidence.
pub fn match_concept(set: &ValueSet, concept: &Concept) -> Option<String> {
    for coding in &concept.codings {
        match set.match_code(&coding.system, &coding.code) {
            Some(CodeMatch::Exact) => {
                let display = coding
                    .display
                    .as_deref()
                    .or_else(|| set.display(&coding.system, &coding.code));
                return Some(match display {
                    Some(d) => format!("{} {} \"{d}\"", system_name(&coding.system), coding.code),
                    None => format!("{} {}", system_name(&coding.system), coding.code),
                });
            }
            Some(CodeMatch::UnderClass(class)) => {
                return Some(format!(
                    "{} {} (class {class})",
                    system_name(&coding.system),
                    coding.code
                ));
            }
            None => {}
        }
    }
    None
}

/// How a medication matched, and which drug of the value set it is.
#[derive(Debug, Clone, PartialEq)]
pub struct MedicationMatch {
    /// The drug, for counting different drugs: the matched concept's name, or the class code.
    pub drug: String,
    /// How it matched, in words for the evidence.
    pub how: String,
}

/// Like [`match_concept`], then falls back to the ingredient name as a whole word
/// in each coding's display and in the text (medications only).
pub fn match_medication(
    set: &ValueSet,
    concept: &Concept,
    ingredients: &[Concept],
) -> Option<MedicationMatch> {
    let candidates =
        std::iter::once((concept, "")).chain(ingredients.iter().map(|i| (i, "ingredient ")));
    for (candidate, prefix) in candidates {
        for coding in &candidate.codings {
            if set.match_code(&coding.system, &coding.code).is_none() {
                continue;
            }
            let single = Concept {
                codings: vec![coding.clone()],
                text: None,
            };
            let how = match_concept(set, &single).unwrap_or_default();
            let drug = set
                .display(&coding.system, &coding.code)
                .map(str::to_lowercase)
                .unwrap_or_else(|| coding.code.clone());
            return Some(MedicationMatch {
                drug,
                how: format!("{prefix}{how}"),
            });
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
    for (text, where_) in named {
        if let Some(name) = set.match_name(text) {
            return Some(MedicationMatch {
                drug: name.to_owned(),
                how: format!("the name \"{name}\" in the {where_} \"{text}\""),
            });
        }
    }
    None
}
