//! Laboratory analytes: which value set identifies each, its canonical unit,
//! and the single table of unit conversion factors.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

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
    conversions: HashMap<String, Conversion>,
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

fn default_decimals() -> usize {
    2
}

impl Analyte {
    /// Validates an analyte entry, resolving its value set with `find_valueset`.
    pub fn from_raw(
        id: &str,
        raw: RawAnalyte,
        find_valueset: impl Fn(&str) -> Option<usize>,
    ) -> Result<Analyte, String> {
        let valueset = find_valueset(&raw.valueset).ok_or_else(|| {
            format!(
                "analyte '{id}' names value set '{}', which does not exist",
                raw.valueset
            )
        })?;
        if raw.units.get(&raw.canonical_unit) != Some(&Conversion::Factor(1.0)) {
            return Err(format!(
                "analyte '{id}': the canonical unit '{}' must be listed in units with factor 1",
                raw.canonical_unit
            ));
        }
        if let Some((unit, conversion)) = raw
            .units
            .iter()
            .find(|(_, c)| !c.factor().is_finite() || c.factor() <= 0.0)
        {
            return Err(format!(
                "analyte '{id}': unit '{unit}' has factor {}; factors must be positive",
                conversion.factor()
            ));
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
            conversions: raw.units.into_iter().collect(),
        })
    }

    /// Converts `value` in `unit` to the canonical unit; `None` when the unit is not known.
    pub fn to_canonical(&self, value: f64, unit: &str) -> Option<f64> {
        self.conversions.get(unit.trim()).map(|c| c.apply(value))
    }

    /// The accepted units, sorted.
    pub fn units(&self) -> impl Iterator<Item = &str> {
        let mut units: Vec<&str> = self.conversions.keys().map(String::as_str).collect();
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
units = { "mmol/L" = 1.0, "mg/dL" = 0.4114, "meq/L" = 0.5, "mEq/L" = 0.5 }"#,
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
    fn an_unknown_unit_is_not_guessed() {
        assert_eq!(magnesium().to_canonical(17.0, "mg/L"), None);
    }
}
