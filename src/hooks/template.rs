//! Prefetch templates (CDS Hooks 2.0 §3): parsing and token substitution.
//!
//! A template is a relative FHIR read or search with `{{context.<field>}}`
//! tokens (only root-level primitive context fields) or the `{{user…Id}}`
//! tokens. 2.0 has no FHIRPath tokens, so none are accepted.
//!
//! Only FHIR ids (and, for `{{context.userId}}`, a `Type/id` reference) are ever
//! substituted: rendering refuses any other value, so a token can never add a path
//! segment, a dot segment or a query parameter to the URL.

use super::Hook;
use super::fhir_id::{FhirId, FhirIdError};

/// A parsed prefetch template.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefetchTemplate {
    /// The template as written.
    pub text: String,
    /// The FHIR resource type it reads or searches.
    pub resource_type: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Token(Token),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Context(String),
    User(&'static str),
}

/// Context values that tokens are substituted with.
#[derive(Debug, Clone, Default)]
pub struct TokenValues<'a> {
    /// `context.userId`, e.g. `Practitioner/123`.
    pub user_id: Option<&'a str>,
    /// `context.patientId`.
    pub patient_id: Option<&'a str>,
    /// `context.encounterId`.
    pub encounter_id: Option<&'a str>,
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A token's context field was not sent (or `userId` is of another resource type).
    #[error("its template needs {field}, which the request did not send")]
    Missing {
        /// The context field, e.g. `context.encounterId`.
        field: &'static str,
    },
    /// A token's value is not a FHIR id, so it is not put into a URL.
    #[error("{field} {reason}")]
    NotAnId {
        /// The context field, e.g. `context.patientId`.
        field: &'static str,
        /// What is wrong with it.
        reason: FhirIdError,
    },
}

const CONTEXT_FIELDS: [&str; 3] = ["userId", "patientId", "encounterId"];
const USER_TOKENS: [(&str, &str); 4] = [
    ("userPractitionerId", "Practitioner"),
    ("userPractitionerRoleId", "PractitionerRole"),
    ("userPatientId", "Patient"),
    ("userRelatedPersonId", "RelatedPerson"),
];

impl PrefetchTemplate {
    /// Parses a template for a hook. Errors name the bad token.
    ///
    /// ```
    /// use cramp_cds::hooks::Hook;
    /// use cramp_cds::hooks::template::{PrefetchTemplate, TokenValues};
    ///
    /// let template = PrefetchTemplate::parse("Condition?patient={{context.patientId}}", Hook::PatientView).unwrap();
    /// let values = TokenValues { patient_id: Some("123"), ..Default::default() };
    /// assert_eq!(template.render(&values).unwrap(), "Condition?patient=123");
    /// let values = TokenValues { patient_id: Some("../../admin"), ..Default::default() };
    /// assert!(template.render(&values).is_err());
    /// ```
    pub fn parse(text: &str, hook: Hook) -> Result<PrefetchTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed token in '{text}'"))?;
            let token = after[..end].trim();
            parts.push(Part::Token(parse_token(token, hook)?));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        let resource_type: String = text
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        if resource_type.is_empty() || !resource_type.starts_with(|c: char| c.is_ascii_uppercase())
        {
            return Err(format!(
                "'{text}' must start with a FHIR resource type (a relative read or search)"
            ));
        }
        Ok(PrefetchTemplate {
            text: text.to_owned(),
            resource_type,
            parts,
        })
    }

    /// The relative URL with every token substituted. Fails when a token has no value, or
    /// when its value is not a FHIR id (a `Type/id` reference for `{{context.userId}}`).
    pub fn render(&self, values: &TokenValues<'_>) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.text.len() + 32);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Token(token) => out.push_str(&encode(token_value(token, values)?)),
            }
        }
        Ok(out)
    }

    /// Whether the template is a search (returns a Bundle) rather than a read.
    pub fn is_search(&self) -> bool {
        self.text.contains('?') || !self.text.contains('/')
    }
}

fn parse_token(token: &str, hook: Hook) -> Result<Token, String> {
    if let Some(field) = token.strip_prefix("context.") {
        if CONTEXT_FIELDS.contains(&field) {
            return Ok(Token::Context(field.to_owned()));
        }
        return Err(format!(
            "token '{{{{{token}}}}}' is not allowed: only root-level primitive context fields of {hook} ({}) may be used",
            CONTEXT_FIELDS.join(", ")
        ));
    }
    USER_TOKENS
        .iter()
        .find(|(name, _)| *name == token)
        .map(|(_, resource_type)| Token::User(resource_type))
        .ok_or_else(|| format!("unknown token '{{{{{token}}}}}'"))
}

fn token_value<'a>(token: &Token, values: &TokenValues<'a>) -> Result<&'a str, RenderError> {
    let not_an_id = |field| move |reason| RenderError::NotAnId { field, reason };
    match token {
        Token::Context(field) => {
            let (name, value) = match field.as_str() {
                "userId" => ("context.userId", values.user_id),
                "patientId" => ("context.patientId", values.patient_id),
                "encounterId" => ("context.encounterId", values.encounter_id),
                _ => return Err(RenderError::Missing { field: "context" }),
            };
            let value = value.ok_or(RenderError::Missing { field: name })?;
            if name == "context.userId" {
                let (user_type, id) = value.split_once('/').ok_or(RenderError::NotAnId {
                    field: name,
                    reason: FhirIdError::NotAnIdCharacter,
                })?;
                if user_type.is_empty() || !user_type.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(RenderError::NotAnId {
                        field: name,
                        reason: FhirIdError::NotAnIdCharacter,
                    });
                }
                FhirId::check(id).map_err(not_an_id(name))?;
            } else {
                FhirId::check(value).map_err(not_an_id(name))?;
            }
            Ok(value)
        }
        Token::User(resource_type) => {
            let field = "context.userId";
            let missing = RenderError::Missing { field };
            let (user_type, id) = values
                .user_id
                .ok_or(missing.clone())?
                .split_once('/')
                .ok_or(missing.clone())?;
            if user_type != *resource_type {
                return Err(missing);
            }
            FhirId::check(id).map_err(not_an_id(field))?;
            Ok(id)
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/` (a second guard:
/// checked values never hold anything else).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_tokens_are_substituted() {
        let t = PrefetchTemplate::parse(
            "Observation?patient={{context.patientId}}&code=http://loinc.org|2823-3",
            Hook::PatientView,
        )
        .unwrap();
        let url = t
            .render(&TokenValues {
                patient_id: Some("pat-1.a"),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            url,
            "Observation?patient=pat-1.a&code=http://loinc.org|2823-3"
        );
        assert_eq!(t.resource_type, "Observation");
        assert!(t.is_search());
    }

    #[test]
    fn a_user_token_resolves_only_for_its_resource_type() {
        let t = PrefetchTemplate::parse("Practitioner/{{userPractitionerId}}", Hook::OrderSign)
            .unwrap();
        let practitioner = TokenValues {
            user_id: Some("Practitioner/42"),
            ..Default::default()
        };
        assert_eq!(t.render(&practitioner).unwrap(), "Practitioner/42");
        let role = TokenValues {
            user_id: Some("PractitionerRole/42"),
            ..Default::default()
        };
        assert_eq!(
            t.render(&role),
            Err(RenderError::Missing {
                field: "context.userId"
            })
        );
        assert!(!t.is_search());
    }

    #[test]
    fn draft_orders_cannot_be_a_token() {
        let err = PrefetchTemplate::parse(
            "MedicationRequest?_id={{context.draftOrders.id}}",
            Hook::OrderSign,
        )
        .unwrap_err();
        assert!(err.contains("not allowed"), "{err}");
    }

    #[test]
    fn a_missing_encounter_leaves_the_template_unrendered() {
        let t = PrefetchTemplate::parse("Encounter/{{context.encounterId}}", Hook::PatientView)
            .unwrap();
        assert_eq!(
            t.render(&TokenValues::default()),
            Err(RenderError::Missing {
                field: "context.encounterId"
            })
        );
    }

    #[test]
    fn a_value_that_is_not_a_fhir_id_is_never_substituted() {
        let read =
            PrefetchTemplate::parse("Patient/{{context.patientId}}", Hook::PatientView).unwrap();
        for bad in [
            "../../r4-evil/steal",
            "..",
            "1?_count=1",
            "a%2Fb",
            "",
            &"x".repeat(65),
        ] {
            let values = TokenValues {
                patient_id: Some(bad),
                ..Default::default()
            };
            assert!(
                matches!(
                    read.render(&values),
                    Err(RenderError::NotAnId {
                        field: "context.patientId",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        let user =
            PrefetchTemplate::parse("Practitioner/{{userPractitionerId}}", Hook::PatientView)
                .unwrap();
        let values = TokenValues {
            user_id: Some("Practitioner/../../x"),
            ..Default::default()
        };
        assert!(matches!(
            user.render(&values),
            Err(RenderError::NotAnId { .. })
        ));
        let by_reference = PrefetchTemplate::parse(
            "Observation?performer={{context.userId}}",
            Hook::PatientView,
        )
        .unwrap();
        let values = TokenValues {
            user_id: Some("Practitioner/1/../../x"),
            ..Default::default()
        };
        assert!(matches!(
            by_reference.render(&values),
            Err(RenderError::NotAnId { .. })
        ));
        let values = TokenValues {
            user_id: Some("Practitioner/42"),
            ..Default::default()
        };
        assert_eq!(
            by_reference.render(&values).unwrap(),
            "Observation?performer=Practitioner/42"
        );
    }
}
