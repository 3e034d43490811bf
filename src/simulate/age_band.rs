//! The age band of a simulated patient at the evaluation time, from `Patient.birthDate`, so the
//! report can say for which patients a rule fires (a rule that fires mostly in the very old is
//! a different committee question from one that fires everywhere).

use chrono::NaiveDate;
use serde::Deserialize;

/// The bands' labels, in report order; the last is for a missing or unreadable birth date.
pub const AGE_BANDS: [&str; 6] = ["0-17", "18-44", "45-64", "65-79", "80+", "unknown"];

/// The index in [`AGE_BANDS`] of the last band.
const UNKNOWN: usize = AGE_BANDS.len() - 1;

#[derive(Deserialize)]
struct BirthDate {
    #[serde(rename = "birthDate")]
    birth_date: Option<String>,
}

/// The band (an index into [`AGE_BANDS`]) of the Patient resource `patient` on `on`.
pub fn patient_age_band(patient: Option<&str>, on: NaiveDate) -> usize {
    let birth_date = patient
        .and_then(|json| serde_json::from_str::<BirthDate>(json).ok())
        .and_then(|p| p.birth_date);
    age_band(birth_date.as_deref(), on)
}

/// The band (an index into [`AGE_BANDS`]) of someone born on `birth_date` (a FHIR `date`), on
/// `on`. A birth date of only a year or a year and month is read as its first day, as the
/// engine reads it.
pub fn age_band(birth_date: Option<&str>, on: NaiveDate) -> usize {
    match birth_date
        .and_then(fhir_date)
        .and_then(|born| on.years_since(born))
    {
        Some(0..=17) => 0,
        Some(18..=44) => 1,
        Some(45..=64) => 2,
        Some(65..=79) => 3,
        Some(_) => 4,
        None => UNKNOWN,
    }
}

/// A FHIR `date` (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`) as its first day.
fn fhir_date(text: &str) -> Option<NaiveDate> {
    let mut parts = text.splitn(3, '-');
    let year = parts.next()?.parse().ok()?;
    let month = parts.next().map_or(Some(1), |m| m.parse().ok())?;
    let day = parts.next().map_or(Some(1), |d| d.parse().ok())?;
    NaiveDate::from_ymd_opt(year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_band_is_the_age_on_the_day_and_a_missing_birth_date_is_unknown() {
        let on = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let band = |birth: &str| {
            AGE_BANDS[patient_age_band(
                Some(&format!(
                    r#"{{"resourceType":"Patient","birthDate":"{birth}"}}"#
                )),
                on,
            )]
        };
        assert_eq!(band("2008-12-02"), "0-17");
        assert_eq!(band("2008-12-01"), "18-44");
        assert_eq!(band("1961-12-01"), "65-79");
        assert_eq!(band("1946"), "80+");
        assert_eq!(band("1981-06"), "45-64");
        assert_eq!(band("not a date"), "unknown");
        assert_eq!(band("2030-01-01"), "unknown");
        assert_eq!(AGE_BANDS[age_band(None, on)], "unknown");
        assert_eq!(
            AGE_BANDS[patient_age_band(Some(r#"{"resourceType":"Patient"}"#), on)],
            "unknown"
        );
    }
}
