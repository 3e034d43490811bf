//! Prefetch templates (CDS Hooks 2.0 §3): parsing and token substitution.
//!
//! A template is a relative FHIR read or search with `{{context.<field>}}`
//! tokens (only root-level primitive context fields) or the `{{user…Id}}`
//! tokens. 2.0 has no FHIRPath tokens, so none are accepted.

use super::Hook;

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

    /// The relative URL with every token substituted, or `None` when a token has no value.
    pub fn render(&self, values: &TokenValues<'_>) -> Option<String> {
        let mut out = String::with_capacity(self.text.len() + 32);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Token(token) => out.push_str(&encode(token_value(token, values)?)),
            }
        }
        Some(out)
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

fn token_value<'a>(token: &Token, values: &TokenValues<'a>) -> Option<&'a str> {
    match token {
        Token::Context(field) => match field.as_str() {
            "userId" => values.user_id,
            "patientId" => values.patient_id,
            "encounterId" => values.encounter_id,
            _ => None,
        },
        Token::User(resource_type) => {
            let (user_type, id) = values.user_id?.split_once('/')?;
            (user_type == *resource_type).then_some(id)
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`.
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
    fn context_tokens_are_substituted_and_encoded() {
        let t = PrefetchTemplate::parse(
            "Observation?patient={{context.patientId}}&code=http://loinc.org|2823-3",
            Hook::PatientView,
        )
        .unwrap();
        let url = t
            .render(&TokenValues {
                patient_id: Some("a b"),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            url,
            "Observation?patient=a%20b&code=http://loinc.org|2823-3"
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
        assert_eq!(t.render(&role), None);
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
        assert_eq!(t.render(&TokenValues::default()), None);
    }
}
