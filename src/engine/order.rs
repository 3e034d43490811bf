//! What a draft order says about itself beyond its drug and dose: the route it is given by,
//! and the reasons it is ordered for (`reasonCode`, and `reasonReference` to a Condition in
//! the record). Rules use them to tell a drug given for cramps from the same drug given for
//! something else.

use serde_json::Value;

use crate::fhir::record::{Code, Concept, DraftOrder, PatientRecord};
use crate::knowledge::criteria::Route;
use crate::knowledge::products::ProductVocabulary;

/// The route of a draft order: from its first dosage route (SNOMED CT code, then text or
/// display), else from words of its product name ("Oral Tablet", "Injectable Solution"), with
/// the codes and words of `products.toml`. `None` when neither tells; a stated route that names
/// no known route is [`Route::Other`].
pub fn route_of(order: &DraftOrder, products: &ProductVocabulary) -> Option<Route> {
    for instruction in order.resource["dosageInstruction"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let route = &instruction["route"];
        if route.is_null() {
            continue;
        }
        let coded = route["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["code"].as_str())
            .find_map(|code| products.route_of_code(code));
        if let Some(found) = coded {
            return Some(found);
        }
        let words = [
            route["text"].as_str(),
            route["coding"][0]["display"].as_str(),
        ];
        if let Some(found) = words
            .into_iter()
            .flatten()
            .find_map(|text| products.route_of_text(text))
        {
            return Some(found);
        }
        return Some(Route::Other);
    }
    products.route_of_product(&order.concept.name())
}

/// The reasons a draft order gives: each `reasonCode`, and each Condition in the record that a
/// `reasonReference` points to. Each comes with a short description for evidence.
pub fn reasons_of(order: &DraftOrder, record: &PatientRecord) -> Vec<(Concept, String)> {
    let mut reasons: Vec<(Concept, String)> = order.resource["reasonCode"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|codeable| {
            let concept = concept_of(codeable);
            let described = format!("reason code \"{}\"", concept.name());
            (concept, described)
        })
        .collect();
    for target in order.resource["reasonReference"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["reference"].as_str())
    {
        if let Some(condition) = record.conditions.iter().find(|c| c.reference == target) {
            reasons.push((
                condition.concept.clone(),
                format!(
                    "reason {} \"{}\"",
                    condition.reference,
                    condition.concept.name()
                ),
            ));
        }
    }
    reasons
}

/// A FHIR CodeableConcept (as JSON) as a [`Concept`].
pub fn concept_of(codeable: &Value) -> Concept {
    Concept {
        codings: codeable["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some(Code {
                    system: c["system"].as_str()?.to_owned(),
                    code: c["code"].as_str()?.to_owned(),
                    display: c["display"].as_str().map(str::to_owned),
                })
            })
            .collect(),
        text: codeable["text"].as_str().map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn products() -> ProductVocabulary {
        crate::engine::test_support::knowledge().products
    }

    fn order(resource: Value, name: &str) -> DraftOrder {
        DraftOrder {
            reference: "MedicationRequest/m".into(),
            resource_type: "MedicationRequest".into(),
            concept: Concept {
                codings: Vec::new(),
                text: Some(name.into()),
            },
            ingredients: Vec::new(),
            unresolved: false,
            in_scope: true,
            resource,
            daily_dose: Err("not needed".into()),
        }
    }

    #[test]
    fn a_product_name_tells_the_route_when_the_order_states_none() {
        let none = serde_json::json!({});
        let products = products();
        let route = |name: &str| route_of(&order(none.clone(), name), &products);
        assert_eq!(
            route("diclofenac sodium 10 MG/ML Topical Gel"),
            Some(Route::Topical)
        );
        assert_eq!(route("naproxen 500 MG Oral Tablet"), Some(Route::Oral));
        assert_eq!(
            route("magnesium sulfate 500 MG/ML Injectable Solution"),
            Some(Route::Intravenous)
        );
        assert_eq!(
            route("bisacodyl 10 MG Rectal Suppository"),
            Some(Route::Other)
        );
    }

    #[test]
    fn a_snomed_intravenous_route_wins_over_the_product_name() {
        let resource = serde_json::json!({"dosageInstruction": [{"route": {"coding": [
            {"system": "http://snomed.info/sct", "code": "47625008"}]}}]});
        assert_eq!(
            route_of(
                &order(resource, "magnesium oxide 400 MG Oral Tablet"),
                &products()
            ),
            Some(Route::Intravenous)
        );
    }

    #[test]
    fn route_text_and_product_names_tell_the_route() {
        let by_text = serde_json::json!({"dosageInstruction": [{"route": {"text": "IM"}}]});
        let products = products();
        assert_eq!(
            route_of(&order(by_text, "x"), &products),
            Some(Route::Intramuscular)
        );
        let none = serde_json::json!({});
        assert_eq!(
            route_of(
                &order(
                    none.clone(),
                    "Magnesium Sulfate 500 MG/ML Injectable Solution"
                ),
                &products
            ),
            Some(Route::Intravenous)
        );
        assert_eq!(
            route_of(
                &order(none.clone(), "magnesium oxide 400 MG Oral Tablet"),
                &products
            ),
            Some(Route::Oral)
        );
        assert_eq!(route_of(&order(none, "magnesium"), &products), None);
    }

    #[test]
    fn reasons_come_from_codes_and_unknown_references_are_ignored() {
        let record = PatientRecord::new("p");
        let resource = serde_json::json!({
            "reasonCode": [{"text": "Torsades de pointes"}],
            "reasonReference": [{"reference": "Condition/none"}],
        });
        let reasons = reasons_of(&order(resource, "x"), &record);
        let names: Vec<String> = reasons.iter().map(|(c, _)| c.name()).collect();
        assert_eq!(names, vec!["Torsades de pointes"]);
    }
}
