//! Laboratory analytes: which value set identifies each, its canonical unit,
//! and the single table of unit conversion factors.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::keys::{Schema, fields_of, leaves};

/// A laboratory analyte the rules compare results of.
#[derive(Debug, Clone)]
pub struct Analyte {
    /// The analyte's key (e.g. `magnesium`).
    pub id: String,
    /// How it is named in cards (e.g. `Serum magnesium`).
    pub display: String,
    /// Index of the value set of LOINC codes that identify its results.
    pub valueset: usize,
    /// The unit every comparison is made in.
    pub canonical_unit: String,
    /// Decimal places shown in cards.
    pub decimals: usize,
    /// The canonical unit as people read it (e.g. `mL/min/1.73 m²` for `mL/min/{1.73_m2}`).
    pub display_unit: String,
    /// By [`unit_key`]: the unit as listed, and how it converts.
    conversions: HashMap<String, (String, Conversion)>,
}

/// How a unit converts into the canonical unit: `canonical = value * factor + offset`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Conversion {
    /// A plain factor (most units).
    Factor(f64),
    /// A factor and an offset (e.g. HbA1c mmol/mol to %).
    Affine {
        /// Multiplier.
        factor: f64,
        /// Added after multiplying.
        offset: f64,
    },
}

impl Conversion {
    fn factor(self) -> f64 {
        match self {
            Conversion::Factor(factor) | Conversion::Affine { factor, .. } => factor,
        }
    }

    fn apply(self, value: f64) -> f64 {
        match self {
            Conversion::Factor(factor) => value * factor,
            Conversion::Affine { factor, offset } => value * factor + offset,
        }
    }
}

/// The TOML form of an analyte entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalyte {
    display: String,
    valueset: String,
    canonical_unit: String,
    #[serde(default = "default_decimals")]
    decimals: usize,
    display_unit: Option<String>,
    units: BTreeMap<String, Conversion>,
}

/// The keys of an `analytes.toml` entry, for the loader's key check and the language
/// reference (`units` maps unit spellings to conversions, so its keys are free).
pub const ANALYTE_SCHEMA: Schema = Schema {
    name: "an analyte",
    keys: fields_of::<RawAnalyte>,
    child: leaves,
};

impl RawAnalyte {
    /// The value set the entry names.
    pub fn valueset(&self) -> &str {
        &self.valueset
    }
}

fn default_decimals() -> usize {
    2
}

/// An analyte entry that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalyteError {
    /// The value set of LOINC codes does not exist.
    #[error("analyte '{analyte}' names value set '{valueset}', which does not exist")]
    UnknownValueSet {
        /// The analyte.
        analyte: String,
        /// The value set it names.
        valueset: String,
    },
    /// The canonical unit is not among the units, with factor 1.
    #[error(
        "analyte '{analyte}': the canonical unit '{unit}' must be listed in units with factor 1"
    )]
    CanonicalUnitNotListed {
        /// The analyte.
        analyte: String,
        /// Its canonical unit.
        unit: String,
    },
    /// A conversion factor that is zero, negative or not a number.
    #[error("analyte '{analyte}': unit '{unit}' has factor {factor}; factors must be positive")]
    BadFactor {
        /// The analyte.
        analyte: String,
        /// The unit.
        unit: String,
        /// Its factor.
        factor: f64,
    },
    /// Two spellings of one unit (units are matched without regard to case).
    #[error(
        "analyte '{analyte}': units '{first}' and '{second}' are the same unit (units are matched ignoring case, spaces and µ/u); list it once"
    )]
    SameUnit {
        /// The analyte.
        analyte: String,
        /// One spelling.
        first: String,
        /// The other.
        second: String,
    },
}

/// The form a unit spelling is matched in: UCUM units written as labs send them, compared
/// without regard to case (`mmol/L`, `MMOL/L` and `mmol/l` are one unit; so are `mEq/L` and
/// `meq/L`), spaces (`mL/min/1.73 m2`) or the micro sign (`µg/L`, `μg/L`, `ug/L`).
pub fn unit_key(unit: &str) -> String {
    unit.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            'µ' | 'μ' => 'u',
            other => other,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

impl Analyte {
    /// Validates an analyte entry, resolving its value set with `find_valueset`.
    pub fn from_raw(
        id: &str,
        raw: RawAnalyte,
        find_valueset: impl Fn(&str) -> Option<usize>,
    ) -> Result<Analyte, AnalyteError> {
        let valueset =
            find_valueset(&raw.valueset).ok_or_else(|| AnalyteError::UnknownValueSet {
                analyte: id.to_owned(),
                valueset: raw.valueset.clone(),
            })?;
        let mut conversions: HashMap<String, (String, Conversion)> = HashMap::new();
        for (unit, conversion) in &raw.units {
            let factor = conversion.factor();
            if !factor.is_finite() || factor <= 0.0 {
                return Err(AnalyteError::BadFactor {
                    analyte: id.to_owned(),
                    unit: unit.clone(),
                    factor,
                });
            }
            if let Some((first, _)) =
                conversions.insert(unit_key(unit), (unit.clone(), *conversion))
            {
                return Err(AnalyteError::SameUnit {
                    analyte: id.to_owned(),
                    first,
                    second: unit.clone(),
                });
            }
        }
        if conversions
            .get(&unit_key(&raw.canonical_unit))
            .map(|(_, c)| *c)
            != Some(Conversion::Factor(1.0))
        {
            return Err(AnalyteError::CanonicalUnitNotListed {
                analyte: id.to_owned(),
                unit: raw.canonical_unit,
            });
        }
        Ok(Analyte {
            id: id.to_owned(),
            display: raw.display,
            valueset,
            canonical_unit: raw.canonical_unit.clone(),
            decimals: raw.decimals,
            display_unit: raw
                .display_unit
                .unwrap_or_else(|| raw.canonical_unit.clone()),
            conversions,
        })
    }

    /// Converts `value` in `unit` to the canonical unit; `None` when the unit is not known.
    /// Units are matched as [`unit_key`] normalises them.
    pub fn to_canonical(&self, value: f64, unit: &str) -> Option<f64> {
        self.conversions
            .get(&unit_key(unit))
            .map(|(_, c)| c.apply(value))
    }

    /// The accepted units, sorted.
    pub fn units(&self) -> impl Iterator<Item = &str> {
        let mut units: Vec<&str> = self
            .conversions
            .values()
            .map(|(spelling, _)| spelling.as_str())
            .collect();
        units.sort_unstable();
        units.into_iter()
    }

    /// Formats a canonical value with the analyte's precision and unit, e.g. `0.55 mmol/L`.
    pub fn format(&self, canonical_value: f64) -> String {
        format!(
            "{:.*} {}",
            self.decimals, canonical_value, self.display_unit
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn magnesium() -> Analyte {
        let raw: RawAnalyte = toml::from_str(
            r#"display = "Mg"
valueset = "lab-magnesium"
canonical_unit = "mmol/L"
units = { "mmol/L" = 1.0, "mg/dL" = 0.4114, "mEq/L" = 0.5 }"#,
        )
        .unwrap();
        Analyte::from_raw("magnesium", raw, |_| Some(0)).unwrap()
    }

    #[test]
    fn magnesium_converts_from_mass_and_equivalents_to_moles() {
        let mg = magnesium();
        assert!((mg.to_canonical(1.7, "mg/dL").unwrap() - 0.69938).abs() < 1e-4);
        assert_eq!(mg.to_canonical(1.4, "mEq/L"), Some(0.7));
        assert_eq!(mg.to_canonical(0.6, "mmol/L"), Some(0.6));
    }

    #[test]
    fn an_affine_conversion_applies_its_offset() {
        let raw: RawAnalyte = toml::from_str(
            r#"display = "HbA1c"
valueset = "lab-hba1c"
canonical_unit = "%"
units = { "%" = 1.0, "mmol/mol" = { factor = 0.09148, offset = 2.152 } }"#,
        )
        .unwrap();
        let hba1c = Analyte::from_raw("hba1c", raw, |_| Some(0)).unwrap();
        let percent = hba1c.to_canonical(53.0, "mmol/mol").unwrap();
        assert!((percent - 7.0).abs() < 0.01, "{percent}");
    }

    #[test]
    fn unit_spellings_match_without_regard_to_case_spaces_or_the_micro_sign() {
        let mg = magnesium();
        for spelling in ["mmol/L", "MMOL/L", "mmol/l", " mmol/L "] {
            assert_eq!(mg.to_canonical(0.6, spelling), Some(0.6), "{spelling}");
        }
        assert_eq!(mg.to_canonical(1.4, "meq/L"), Some(0.7));
        assert_eq!(mg.to_canonical(1.4, "MEQ/L"), Some(0.7));
        assert_eq!(unit_key("µg/L"), unit_key("ug/L"));
        assert_eq!(unit_key("μg/L"), unit_key("ug/L"));
        assert_eq!(unit_key("mL/min/1.73 m2"), unit_key("mL/min/1.73m2"));
    }

    #[test]
    fn the_same_unit_listed_twice_by_case_is_refused() {
        let raw: RawAnalyte = toml::from_str(
            r#"display = "K"
valueset = "lab-potassium"
canonical_unit = "mmol/L"
units = { "mmol/L" = 1.0, "mmol/l" = 1.0 }"#,
        )
        .unwrap();
        let error = Analyte::from_raw("potassium", raw, |_| Some(0)).unwrap_err();
        assert!(matches!(&error, AnalyteError::SameUnit { .. }), "{error}");
        assert!(
            error.to_string().contains("'mmol/L' and 'mmol/l'"),
            "{error}"
        );
    }

    #[test]
    fn the_canonical_unit_must_be_listed_with_factor_one() {
        let raw: RawAnalyte = toml::from_str(
            r#"display = "K"
valueset = "lab-potassium"
canonical_unit = "mmol/L"
units = { "mmol/L" = 2.0 }"#,
        )
        .unwrap();
        let error = Analyte::from_raw("potassium", raw, |_| Some(0)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "analyte 'potassium': the canonical unit 'mmol/L' must be listed in units with factor 1"
        );
    }

    #[test]
    fn a_factor_must_be_positive() {
        let raw: RawAnalyte = toml::from_str(
            r#"display = "K"
valueset = "lab-potassium"
canonical_unit = "mmol/L"
units = { "mmol/L" = 1.0, "mEq/L" = 0.0 }"#,
        )
        .unwrap();
        let error = Analyte::from_raw("potassium", raw, |_| Some(0)).unwrap_err();
        assert!(
            error.to_string().contains("unit 'mEq/L' has factor 0"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_unit_is_not_guessed() {
        assert_eq!(magnesium().to_canonical(17.0, "mg/L"), None);
    }
}
