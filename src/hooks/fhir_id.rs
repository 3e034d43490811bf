//! FHIR resource ids, the only values the service puts into a URL it fetches.
//!
//! A FHIR id (R4 datatype `id`) is 1 to 64 of `A-Z`, `a-z`, `0-9`, `-` and `.`. The two URL
//! dot segments `.` and `..` are refused as well: they fit the pattern but would move a
//! rendered URL up the FHIR server's path. A [`FhirId`] can only be built valid; request
//! parsing makes one of `context.patientId` and `context.encounterId`, and template rendering
//! checks every substituted value with [`FhirId::check`]. Nothing here knows about HTTP.

use std::fmt;
use std::ops::Deref;

/// Most characters in a FHIR id.
pub const MAX_FHIR_ID_LEN: usize = 64;

/// A valid FHIR resource id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FhirId(String);

/// Why a text is not a FHIR id. The messages never quote the text: it may be long, and it
/// may identify a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FhirIdError {
    /// The text is empty.
    #[error("must be a FHIR id, not empty")]
    Empty,
    /// The text is longer than [`MAX_FHIR_ID_LEN`].
    #[error("must be a FHIR id of at most {MAX_FHIR_ID_LEN} characters")]
    TooLong,
    /// The text holds a character a FHIR id may not.
    #[error("must be a FHIR id: only A-Z, a-z, 0-9, '-' and '.'")]
    NotAnIdCharacter,
    /// The text is `.` or `..`.
    #[error("must be a FHIR id other than '.' or '..' (URL dot segments)")]
    DotSegment,
}

impl FhirId {
    /// Parses `text` as a FHIR id.
    ///
    /// ```
    /// use cramp_cds::hooks::FhirId;
    ///
    /// assert_eq!(FhirId::parse("pat-1.a").unwrap().as_str(), "pat-1.a");
    /// assert!(FhirId::parse("../../r4-evil/steal").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<FhirId, FhirIdError> {
        FhirId::check(text)?;
        Ok(FhirId(text.to_owned()))
    }

    /// Whether `text` is a FHIR id, without copying it.
    pub fn check(text: &str) -> Result<(), FhirIdError> {
        if text.is_empty() {
            return Err(FhirIdError::Empty);
        }
        if text.len() > MAX_FHIR_ID_LEN {
            return Err(FhirIdError::TooLong);
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(FhirIdError::NotAnIdCharacter);
        }
        if text == "." || text == ".." {
            return Err(FhirIdError::DotSegment);
        }
        Ok(())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for FhirId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for FhirId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FhirId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<FhirId> for String {
    fn from(id: FhirId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_the_fhir_pattern_up_to_sixty_four_characters_are_accepted() {
        for id in [
            "1288992",
            "pat-1",
            "a.b-C",
            &"x".repeat(MAX_FHIR_ID_LEN),
            "...",
        ] {
            assert!(FhirId::parse(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn paths_encodings_dot_segments_and_long_ids_are_refused() {
        let cases = [
            ("", FhirIdError::Empty),
            ("../../r4-evil/steal", FhirIdError::NotAnIdCharacter),
            ("a/b", FhirIdError::NotAnIdCharacter),
            ("a%2Fb", FhirIdError::NotAnIdCharacter),
            ("a b", FhirIdError::NotAnIdCharacter),
            ("a?b=1", FhirIdError::NotAnIdCharacter),
            ("pât", FhirIdError::NotAnIdCharacter),
            (".", FhirIdError::DotSegment),
            ("..", FhirIdError::DotSegment),
        ];
        for (text, error) in cases {
            assert_eq!(FhirId::check(text), Err(error), "{text}");
        }
        assert_eq!(
            FhirId::check(&"x".repeat(MAX_FHIR_ID_LEN + 1)),
            Err(FhirIdError::TooLong)
        );
    }
}
