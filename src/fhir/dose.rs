//! The total daily dose of a MedicationRequest, in milligrams, from its
//! `dosageInstruction`: dose (`doseAndRate.doseQuantity`) times administrations
//! a day (`timing.repeat` frequency and period, or `timing.code` such as BID).
//! A dose counted in units of the product (tablet, capsule, `{pill}`) is
//! multiplied by the strength in the product's name ("Baclofen 10 MG Oral
//! Tablet" gives 10 mg a unit), and a dose in millilitres by the concentration
//! in the name ("gabapentin 50 MG/ML Oral Solution", "250 MG/5 ML", "250 MG in
//! 5 ML"). When the dose cannot be computed, the reason is returned instead of
//! a guess.

use serde_json::Value;

/// A computed total daily dose.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyDose {
    /// Milligrams a day.
    pub mg_per_day: f64,
    /// How it was computed, for the card (e.g. `1 tablet x 10 mg x 3 a day`).
    pub working: String,
}

/// Units that count the product's dose forms.
const PRODUCT_UNITS: [&str; 12] = [
    "{pill}",
    "{tbl}",
    "{tablet}",
    "{capsule}",
    "{cap}",
    "tablet",
    "tablets",
    "capsule",
    "capsules",
    "tab",
    "cap",
    "{puff}",
];

/// Administrations a day for HL7 v3 GTSAbbreviation timing codes and common equivalents.
const TIMING_CODES: [(&str, f64); 17] = [
    ("QD", 1.0),
    ("BID", 2.0),
    ("TID", 3.0),
    ("QID", 4.0),
    ("AM", 1.0),
    ("PM", 1.0),
    ("BED", 1.0),
    ("HS", 1.0),
    ("QOD", 0.5),
    ("Q1H", 24.0),
    ("Q2H", 12.0),
    ("Q3H", 8.0),
    ("Q4H", 6.0),
    ("Q6H", 4.0),
    ("Q8H", 3.0),
    ("Q12H", 2.0),
    ("WK", 1.0 / 7.0),
];

/// The total daily dose of a MedicationRequest (as JSON), or why it cannot be computed.
pub fn daily_dose(request: &Value) -> Result<DailyDose, String> {
    let instructions = request["dosageInstruction"]
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or("the order has no dosageInstruction")?;
    let name = product_name(request);
    // Instructions with the same sequence are taken together; different sequences follow one another.
    let mut by_sequence: Vec<(i64, f64, Vec<String>)> = Vec::new();
    for instruction in instructions {
        let sequence = instruction["sequence"].as_i64().unwrap_or(0);
        let (mg, working) = instruction_dose(instruction, name.as_deref())?;
        match by_sequence.iter_mut().find(|(s, _, _)| *s == sequence) {
            Some((_, total, parts)) => {
                *total += mg;
                parts.push(working);
            }
            None => by_sequence.push((sequence, mg, vec![working])),
        }
    }
    let (_, mg_per_day, parts) = by_sequence
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .ok_or("the order has no dosageInstruction")?;
    Ok(DailyDose {
        mg_per_day,
        working: parts.join(" + "),
    })
}

fn instruction_dose(instruction: &Value, name: Option<&str>) -> Result<(f64, String), String> {
    let quantity = &instruction["doseAndRate"][0]["doseQuantity"];
    if quantity.is_null() {
        if !instruction["doseAndRate"][0]["doseRange"].is_null() {
            return Err("the dose is a range, so the daily total is not fixed".to_owned());
        }
        return Err("the order gives no structured dose (doseAndRate.doseQuantity)".to_owned());
    }
    let value = quantity["value"]
        .as_f64()
        .ok_or("the dose has no numeric value")?;
    let unit = quantity["code"]
        .as_str()
        .or_else(|| quantity["unit"].as_str())
        .unwrap_or("")
        .trim();
    let (dose_mg, dose_text) = match unit {
        "mg" => (value, format!("{} mg", trim(value))),
        "g" => (value * 1000.0, format!("{} g", trim(value))),
        "ug" | "mcg" | "µg" => (value / 1000.0, format!("{} {unit}", trim(value))),
        unit if PRODUCT_UNITS.contains(&unit.to_ascii_lowercase().as_str()) => {
            let name =
                name.ok_or("the dose counts units of the product, and the product has no name")?;
            let strength = strength_mg(name).ok_or_else(|| {
                format!("the dose counts units of the product, and no single strength in mg is in its name \"{name}\"")
            })?;
            (
                value * strength,
                format!("{} x {} mg ({name})", trim(value), trim(strength)),
            )
        }
        unit if unit.eq_ignore_ascii_case("ml") => {
            let name =
                name.ok_or("the dose is in mL, and the product has no name to give its strength")?;
            let concentration = concentration_mg_per_ml(name).ok_or_else(|| {
                format!("the dose is in mL, and no single concentration in mg per mL is in its name \"{name}\"")
            })?;
            (
                value * concentration,
                format!(
                    "{} mL x {} mg/mL ({name})",
                    trim(value),
                    trim(concentration)
                ),
            )
        }
        "" => return Err("the dose has no unit".to_owned()),
        other => {
            return Err(format!(
                "the dose unit '{other}' is not a mass or a unit of the product"
            ));
        }
    };
    let (per_day, how_often) = administrations_per_day(&instruction["timing"])?;
    Ok((dose_mg * per_day, format!("{dose_text} {how_often}")))
}

fn administrations_per_day(timing: &Value) -> Result<(f64, String), String> {
    if timing.is_null() {
        return Err("the order has no timing".to_owned());
    }
    let repeat = &timing["repeat"];
    if let Some(period) = repeat["period"].as_f64() {
        let frequency = repeat["frequency"].as_f64().unwrap_or(1.0);
        let unit = repeat["periodUnit"].as_str().unwrap_or("");
        let days = match unit {
            "h" => period / 24.0,
            "min" => period / 1440.0,
            "d" => period,
            "wk" => period * 7.0,
            "mo" => period * 30.0,
            "a" => period * 365.0,
            other => return Err(format!("the timing period unit '{other}' is not known")),
        };
        if days <= 0.0 {
            return Err("the timing period is not positive".to_owned());
        }
        let per_day = frequency / days;
        return Ok((per_day, format!("x {} a day", trim(per_day))));
    }
    let code = timing["code"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["code"].as_str())
        .chain(timing["code"]["text"].as_str())
        .find_map(|code| {
            TIMING_CODES
                .iter()
                .find(|(c, _)| c.eq_ignore_ascii_case(code.trim()))
        });
    if let Some((code, per_day)) = code {
        return Ok((*per_day, format!("x {} a day ({code})", trim(*per_day))));
    }
    if repeat["when"].as_array().is_some_and(|w| !w.is_empty()) {
        let frequency = repeat["frequency"].as_f64().unwrap_or(1.0);
        return Ok((frequency, format!("x {} a day", trim(frequency))));
    }
    Err("the timing gives neither a period nor a known timing code".to_owned())
}

/// The product's name: the medication's text, else a coding display.
pub fn product_name(request: &Value) -> Option<String> {
    let concept = &request["medicationCodeableConcept"];
    concept["text"]
        .as_str()
        .or_else(|| {
            concept["coding"]
                .as_array()?
                .iter()
                .find_map(|c| c["display"].as_str())
        })
        .map(str::to_owned)
}

/// The single strength in mg written in a product name ("Baclofen 10 MG Oral Tablet" → 10).
pub fn strength_mg(name: &str) -> Option<f64> {
    let words: Vec<&str> = name.split_whitespace().collect();
    let strengths: Vec<f64> = words
        .windows(2)
        .filter(|w| w[1].eq_ignore_ascii_case("mg"))
        .filter_map(|w| w[0].parse::<f64>().ok())
        .collect();
    match strengths.as_slice() {
        [single] => Some(*single),
        _ => None,
    }
}

/// The single concentration in mg per mL written in a product name: "50 MG/ML",
/// "250 MG/5ML", "250 MG/5 ML" or "250 MG in 5 ML" (→ 50). `None` when there is none or
/// more than one (a combination product).
pub fn concentration_mg_per_ml(name: &str) -> Option<f64> {
    let words: Vec<String> = name.split_whitespace().map(str::to_lowercase).collect();
    let number = |word: &str| word.parse::<f64>().ok().filter(|n| *n > 0.0);
    let mut found = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let Some(mg) = number(word) else { continue };
        let next = |k: usize| words.get(i + k).map(String::as_str);
        let per_ml = match (next(1), next(2), next(3), next(4)) {
            (Some("mg/ml"), ..) => Some(1.0),
            (Some("mg"), Some("in"), Some(volume), Some("ml")) => number(volume),
            (Some(unit), following, ..) => unit.strip_prefix("mg/").and_then(|volume| match volume
                .strip_suffix("ml")
            {
                Some(v) if !v.is_empty() => number(v),
                _ if following == Some("ml") => number(volume),
                _ => None,
            }),
            _ => None,
        };
        if let Some(volume) = per_ml {
            found.push(mg / volume);
        }
    }
    match found.as_slice() {
        [single] => Some(*single),
        _ => None,
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order(dose: Value, timing: Value, name: &str) -> Value {
        json!({"resourceType": "MedicationRequest", "medicationCodeableConcept": {"text": name},
               "dosageInstruction": [{"timing": timing, "doseAndRate": [{"doseQuantity": dose}]}]})
    }

    #[test]
    fn tablets_times_strength_times_frequency() {
        let request = order(
            json!({"value": 2, "code": "{tbl}"}),
            json!({"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}}),
            "Baclofen 10 MG Oral Tablet",
        );
        let dose = daily_dose(&request).unwrap();
        assert_eq!(dose.mg_per_day, 60.0);
        assert!(dose.working.contains("2 x 10 mg"), "{}", dose.working);
    }

    #[test]
    fn a_timing_code_gives_the_frequency() {
        let request = order(
            json!({"value": 300, "unit": "mg"}),
            json!({"code": {"coding": [{"code": "TID"}]}}),
            "gabapentin 300 MG Oral Capsule",
        );
        assert_eq!(daily_dose(&request).unwrap().mg_per_day, 900.0);
    }

    #[test]
    fn every_eight_hours_is_three_a_day() {
        let request = order(
            json!({"value": 1, "unit": "g"}),
            json!({"repeat": {"frequency": 1, "period": 8, "periodUnit": "h"}}),
            "x",
        );
        assert_eq!(daily_dose(&request).unwrap().mg_per_day, 3000.0);
    }

    #[test]
    fn no_strength_in_the_name_is_said_not_guessed() {
        let request = order(
            json!({"value": 1, "code": "{pill}"}),
            json!({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}),
            "Baclofen Oral Tablet",
        );
        assert!(
            daily_dose(&request)
                .unwrap_err()
                .contains("no single strength")
        );
    }

    #[test]
    fn a_missing_timing_is_said_not_guessed() {
        let request = order(json!({"value": 10, "unit": "mg"}), Value::Null, "x");
        assert!(daily_dose(&request).unwrap_err().contains("no timing"));
    }

    #[test]
    fn a_dose_in_millilitres_is_converted_with_the_concentration_in_the_name() {
        let request = order(
            json!({"value": 6, "unit": "mL"}),
            json!({"code": {"coding": [{"code": "TID"}]}}),
            "gabapentin 50 MG/ML Oral Solution",
        );
        let dose = daily_dose(&request).unwrap();
        assert_eq!(dose.mg_per_day, 900.0);
        assert!(dose.working.contains("6 mL x 50 mg/mL"), "{}", dose.working);
    }

    #[test]
    fn every_way_of_writing_a_concentration_is_read() {
        for name in [
            "gabapentin 50 MG/ML Oral Solution",
            "gabapentin 250 MG/5ML Oral Solution",
            "gabapentin 250 MG/5 ML Oral Solution",
            "gabapentin 250 mg in 5 mL oral solution",
        ] {
            assert_eq!(concentration_mg_per_ml(name), Some(50.0), "{name}");
        }
        for name in [
            "gabapentin 300 MG Oral Capsule",
            "gabapentin oral solution",
            "codeine 2 MG/ML / guaifenesin 20 MG/ML Oral Solution",
        ] {
            assert_eq!(concentration_mg_per_ml(name), None, "{name}");
        }
    }

    #[test]
    fn a_dose_in_millilitres_without_a_concentration_is_said_not_guessed() {
        let request = order(
            json!({"value": 5, "code": "mL"}),
            json!({"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}),
            "Baclofen Oral Suspension",
        );
        assert!(
            daily_dose(&request)
                .unwrap_err()
                .contains("no single concentration")
        );
    }
}
