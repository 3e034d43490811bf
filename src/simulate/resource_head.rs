//! The few fields of a resource that say what it is and whose it is, read without building
//! the whole resource.

use serde::Deserialize;

/// Why a line is not a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The line is not a JSON object.
    NotJson,
    /// The object has no (usable) `resourceType`.
    NoResourceType,
}

impl Malformed {
    /// The problem in words.
    pub fn describe(self) -> &'static str {
        match self {
            Malformed::NotJson => "not a JSON object",
            Malformed::NoResourceType => "no resourceType",
        }
    }
}

/// A resource's type, id and the patient it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceHead {
    /// `resourceType`.
    pub resource_type: String,
    /// `id`, when present.
    pub id: Option<String>,
    /// The patient's id: `Patient.id`, or the id in `subject`/`patient` (`Patient/ID`).
    pub patient_id: Option<String>,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "resourceType")]
    resource_type: Option<serde_json::Value>,
    id: Option<serde_json::Value>,
    subject: Option<Reference>,
    patient: Option<Reference>,
}

#[derive(Deserialize)]
struct Reference {
    reference: Option<String>,
}

/// Reads the head of the resource `json`.
pub fn read_head(json: &str) -> Result<ResourceHead, Malformed> {
    let head: Head = serde_json::from_str(json).map_err(|_| Malformed::NotJson)?;
    let resource_type = match head.resource_type {
        Some(serde_json::Value::String(t))
            if !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            t
        }
        _ => return Err(Malformed::NoResourceType),
    };
    let id = match head.id {
        Some(serde_json::Value::String(id)) if is_plain_id(&id) => Some(id),
        _ => None,
    };
    let patient_id = if resource_type == "Patient" {
        id.clone()
    } else {
        head.subject
            .or(head.patient)
            .and_then(|r| r.reference)
            .and_then(|r| patient_in_reference(&r))
    };
    Ok(ResourceHead {
        resource_type,
        id,
        patient_id,
    })
}

/// The id of `Patient/ID` (relative or absolute, with or without `_history`).
pub fn patient_in_reference(reference: &str) -> Option<String> {
    let (_, rest) = reference.rsplit_once("Patient/")?;
    let id = rest.split('/').next()?;
    is_plain_id(id).then(|| id.to_owned())
}

/// Whether `id` can be a FHIR id (it is written into spill files, so no separators).
pub fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patient_comes_from_the_id_of_a_patient_and_the_reference_of_the_rest() {
        let patient = read_head(r#"{"resourceType":"Patient","id":"p1"}"#).unwrap();
        assert_eq!(patient.patient_id.as_deref(), Some("p1"));
        let obs = read_head(
            r#"{"resourceType":"Observation","id":"o","subject":{"reference":"https://x/fhir/Patient/p2/_history/3"}}"#,
        )
        .unwrap();
        assert_eq!(obs.patient_id.as_deref(), Some("p2"));
        let group =
            read_head(r#"{"resourceType":"Observation","subject":{"reference":"Group/g"}}"#)
                .unwrap();
        assert_eq!(group.patient_id, None);
    }

    #[test]
    fn lines_that_are_not_resources_are_malformed() {
        assert_eq!(read_head("{not json"), Err(Malformed::NotJson));
        assert_eq!(read_head("42"), Err(Malformed::NotJson));
        assert_eq!(read_head(r#"{"id":"x"}"#), Err(Malformed::NoResourceType));
        assert_eq!(
            read_head(r#"{"resourceType":"a\tb"}"#),
            Err(Malformed::NoResourceType)
        );
    }
}
