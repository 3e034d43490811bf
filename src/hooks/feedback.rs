//! The CDS Hooks feedback request (2.0 §5): `{"feedback": [...]}`, validated
//! into store entries. Errors name the field, e.g. `feedback[0].outcome`. The
//! sandbox's dismiss shape (a reason Coding without `display`) is accepted.

use chrono::DateTime;
use serde::Deserialize;
use serde_json::Value;

use super::RequestError;
use crate::store::FeedbackEntry;

#[derive(Deserialize)]
struct FeedbackBody {
    feedback: Option<Value>,
}

/// Reads and validates a feedback body sent to `service_id`.
pub fn parse_feedback(body: &[u8], service_id: &str) -> Result<Vec<FeedbackEntry>, RequestError> {
    let parsed: FeedbackBody = serde_json::from_slice(body).map_err(|e| {
        RequestError::new("body", format!("the request must be a JSON object: {e}"))
    })?;
    let items = parsed
        .feedback
        .ok_or_else(|| RequestError::new("feedback", "is required"))?;
    let items = items
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| RequestError::new("feedback", "must be a non-empty array"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_entry(item, &format!("feedback[{i}]"), service_id))
        .collect()
}

fn parse_entry(item: &Value, at: &str, service_id: &str) -> Result<FeedbackEntry, RequestError> {
    let field = |name: &str| format!("{at}.{name}");
    let text = |name: &str| -> Result<String, RequestError> {
        item.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                RequestError::new(field(name), "is required and must be a non-empty string")
            })
    };
    if !item.is_object() {
        return Err(RequestError::new(at, "must be an object"));
    }
    let card_uuid = text("card")?;
    let outcome = text("outcome")?;
    if outcome != "accepted" && outcome != "overridden" {
        return Err(RequestError::new(
            field("outcome"),
            format!("must be 'accepted' or 'overridden', not '{outcome}'"),
        ));
    }
    let outcome_timestamp = text("outcomeTimestamp")?;
    let outcome_at = DateTime::parse_from_rfc3339(&outcome_timestamp)
        .map_err(|e| {
            RequestError::new(
                field("outcomeTimestamp"),
                format!("'{outcome_timestamp}' is not an RFC 3339 date-time: {e}"),
            )
        })?
        .to_utc();
    let accepted_suggestions = match item.get("acceptedSuggestions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(j, s)| {
                s.get("id")
                    .and_then(Value::as_str)
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        RequestError::new(
                            format!("{at}.acceptedSuggestions[{j}].id"),
                            "is required and must be a string",
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(RequestError::new(
                field("acceptedSuggestions"),
                "must be an array of {\"id\": ...}",
            ));
        }
    };
    if outcome == "accepted" && accepted_suggestions.is_empty() {
        return Err(RequestError::new(
            field("acceptedSuggestions"),
            "is required when the outcome is 'accepted'",
        ));
    }
    let (mut reason_system, mut reason_code, mut reason_display, mut user_comment) =
        (None, None, None, None);
    if let Some(reason) = item.get("overrideReason").filter(|v| !v.is_null()) {
        if !reason.is_object() {
            return Err(RequestError::new(
                field("overrideReason"),
                "must be an object",
            ));
        }
        if let Some(coding) = reason.get("reason").filter(|v| !v.is_null()) {
            let code = coding.get("code").and_then(Value::as_str);
            if code.is_none_or(str::is_empty) {
                return Err(RequestError::new(
                    field("overrideReason.reason.code"),
                    "is required in a reason Coding",
                ));
            }
            reason_code = code.map(str::to_owned);
            reason_system = coding
                .get("system")
                .and_then(Value::as_str)
                .map(str::to_owned);
            reason_display = coding
                .get("display")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        user_comment = match reason.get("userComment") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(RequestError::new(
                    field("overrideReason.userComment"),
                    "must be a string",
                ));
            }
        };
    }
    Ok(FeedbackEntry {
        card_uuid,
        outcome,
        outcome_timestamp,
        outcome_at,
        service_id: service_id.to_owned(),
        accepted_suggestions,
        reason_system,
        reason_code,
        reason_display,
        user_comment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example_and_the_sandbox_dismiss_are_accepted() {
        let body = br#"{"feedback":[
            {"card":"4e0a3a1e-3283-4575-ab82-028d55fe2719","outcome":"accepted",
             "acceptedSuggestions":[{"id":"e56e1945-20b3-4393-8503-a1a20fd73152"}],"outcomeTimestamp":"2020-12-11T00:00:00Z"},
            {"card":"9368d37b-283f-44a0-93ea-547cebab93ed","outcome":"overridden",
             "overrideReason":{"reason":{"code":"reason-code-provided-by-service","system":"http://example.org/cds-services/fhir/CodeSystem/override-reasons"}},
             "outcomeTimestamp":"2020-12-11T00:00:00Z"}]}"#;
        let entries = parse_feedback(body, "svc").unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].reason_display, None);
    }

    #[test]
    fn accepted_without_suggestions_names_the_field() {
        let body = br#"{"feedback":[{"card":"c","outcome":"accepted","outcomeTimestamp":"2020-12-11T00:00:00Z"}]}"#;
        assert_eq!(
            parse_feedback(body, "s").unwrap_err().field,
            "feedback[0].acceptedSuggestions"
        );
    }
}
