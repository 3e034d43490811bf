//! The CDS Hooks feedback request (2.0 §5): `{"feedback": [...]}`, validated
//! into store entries. Errors name the field, e.g. `feedback[0].outcome`. The
//! sandbox's dismiss shape (a reason Coding without `display`) is accepted.
//!
//! Every field is bounded here, so nothing larger reaches the store: at most
//! [`MAX_FEEDBACK_ENTRIES`] entries a call, ids of at most [`MAX_ID_LEN`]
//! characters, at most [`MAX_ACCEPTED_SUGGESTIONS`] accepted suggestions an
//! entry, reason codes, systems and displays of at most [`MAX_REASON_CODE_LEN`],
//! [`MAX_REASON_SYSTEM_LEN`] and [`MAX_REASON_DISPLAY_LEN`] characters, comments
//! of at most [`MAX_USER_COMMENT_LEN`], and an `outcomeTimestamp` no more than
//! [`MAX_CLOCK_SKEW_MINUTES`] after the service's clock.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::RequestError;

/// One feedback entry, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackEntry {
    /// `card`: the card's uuid.
    pub card_uuid: String,
    /// `accepted` or `overridden`.
    pub outcome: String,
    /// `outcomeTimestamp` as sent (part of the idempotency key).
    pub outcome_timestamp: String,
    /// `outcomeTimestamp` parsed: the client's account, kept as data (snoozes count from receipt).
    pub outcome_at: DateTime<Utc>,
    /// The service it was sent to.
    pub service_id: String,
    /// `acceptedSuggestions[].id`.
    pub accepted_suggestions: Vec<String>,
    /// `overrideReason.reason.system`.
    pub reason_system: Option<String>,
    /// `overrideReason.reason.code`.
    pub reason_code: Option<String>,
    /// `overrideReason.reason.display`.
    pub reason_display: Option<String>,
    /// `overrideReason.userComment`.
    pub user_comment: Option<String>,
}

/// Most entries in one feedback call.
pub const MAX_FEEDBACK_ENTRIES: usize = 100;
/// Most characters in a `card` or an `acceptedSuggestions[].id` (this service's are 36-character UUIDs).
pub const MAX_ID_LEN: usize = 128;
/// Most entries in one entry's `acceptedSuggestions`.
pub const MAX_ACCEPTED_SUGGESTIONS: usize = 50;
/// Most characters in `overrideReason.userComment`.
pub const MAX_USER_COMMENT_LEN: usize = 4000;
/// Most characters in `overrideReason.reason.code`.
pub const MAX_REASON_CODE_LEN: usize = 256;
/// Most characters in `overrideReason.reason.system`.
pub const MAX_REASON_SYSTEM_LEN: usize = 512;
/// Most characters in `overrideReason.reason.display`.
pub const MAX_REASON_DISPLAY_LEN: usize = 512;
/// Most characters in `outcomeTimestamp` (an RFC 3339 date-time has about 30).
pub const MAX_TIMESTAMP_LEN: usize = 64;
/// How many minutes after the service's clock an `outcomeTimestamp` may be (clock skew
/// between the EHR and the service); later ones are refused.
pub const MAX_CLOCK_SKEW_MINUTES: i64 = 5;

#[derive(Deserialize)]
struct FeedbackBody {
    feedback: Option<Value>,
}

/// Reads and validates a feedback body sent to `service_id`, as of `now` (the service's clock).
pub fn parse_feedback(
    body: &[u8],
    service_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<FeedbackEntry>, RequestError> {
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
    if items.len() > MAX_FEEDBACK_ENTRIES {
        return Err(RequestError::new(
            "feedback",
            format!(
                "must hold at most {MAX_FEEDBACK_ENTRIES} entries per call, not {}; send the rest in further calls",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_entry(item, &format!("feedback[{i}]"), service_id, now))
        .collect()
}

/// `value` when it has at most `limit` characters; an error naming `field` and the limit otherwise.
fn bounded<'a>(value: &'a str, field: &str, limit: usize) -> Result<&'a str, RequestError> {
    if value.chars().nth(limit).is_some() {
        return Err(RequestError::new(
            field,
            format!("must be at most {limit} characters"),
        ));
    }
    Ok(value)
}

/// An optional string member of `object`, bounded; `null` counts as absent.
fn optional_text(
    object: &Value,
    name: &str,
    field: &str,
    limit: usize,
) -> Result<Option<String>, RequestError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(bounded(s, field, limit)?.to_owned())),
        Some(_) => Err(RequestError::new(field, "must be a string")),
    }
}

fn parse_entry(
    item: &Value,
    at: &str,
    service_id: &str,
    now: DateTime<Utc>,
) -> Result<FeedbackEntry, RequestError> {
    let field = |name: &str| format!("{at}.{name}");
    let text = |name: &str, limit: usize| -> Result<String, RequestError> {
        let value = item
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                RequestError::new(field(name), "is required and must be a non-empty string")
            })?;
        Ok(bounded(value, &field(name), limit)?.to_owned())
    };
    if !item.is_object() {
        return Err(RequestError::new(at, "must be an object"));
    }
    let card_uuid = text("card", MAX_ID_LEN)?;
    let outcome = text("outcome", MAX_ID_LEN)?;
    if outcome != "accepted" && outcome != "overridden" {
        return Err(RequestError::new(
            field("outcome"),
            format!("must be 'accepted' or 'overridden', not '{outcome}'"),
        ));
    }
    let outcome_timestamp = text("outcomeTimestamp", MAX_TIMESTAMP_LEN)?;
    let outcome_at = DateTime::parse_from_rfc3339(&outcome_timestamp)
        .map_err(|e| {
            RequestError::new(
                field("outcomeTimestamp"),
                format!("'{outcome_timestamp}' is not an RFC 3339 date-time: {e}"),
            )
        })?
        .to_utc();
    if outcome_at > now + TimeDelta::minutes(MAX_CLOCK_SKEW_MINUTES) {
        return Err(RequestError::new(
            field("outcomeTimestamp"),
            format!(
                "'{outcome_timestamp}' is more than {MAX_CLOCK_SKEW_MINUTES} minutes after the service's clock ({})",
                now.to_rfc3339()
            ),
        ));
    }
    let accepted_suggestions = match item.get("acceptedSuggestions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if list.len() > MAX_ACCEPTED_SUGGESTIONS => {
            return Err(RequestError::new(
                field("acceptedSuggestions"),
                format!("must hold at most {MAX_ACCEPTED_SUGGESTIONS} suggestions"),
            ));
        }
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(j, s)| {
                let at = format!("{at}.acceptedSuggestions[{j}].id");
                let id = s
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| RequestError::new(&at, "is required and must be a string"))?;
                Ok(bounded(id, &at, MAX_ID_LEN)?.to_owned())
            })
            .collect::<Result<Vec<_>, RequestError>>()?,
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
            let at = |name: &str| field(&format!("overrideReason.reason.{name}"));
            let code = coding.get("code").and_then(Value::as_str);
            if code.is_none_or(str::is_empty) {
                return Err(RequestError::new(
                    at("code"),
                    "is required in a reason Coding",
                ));
            }
            reason_code = optional_text(coding, "code", &at("code"), MAX_REASON_CODE_LEN)?;
            reason_system = optional_text(coding, "system", &at("system"), MAX_REASON_SYSTEM_LEN)?;
            reason_display =
                optional_text(coding, "display", &at("display"), MAX_REASON_DISPLAY_LEN)?;
        }
        user_comment = optional_text(
            reason,
            "userComment",
            &field("overrideReason.userComment"),
            MAX_USER_COMMENT_LEN,
        )?;
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
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-01T12:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn parse(body: &Value) -> Result<Vec<FeedbackEntry>, RequestError> {
        parse_feedback(&serde_json::to_vec(body).unwrap(), "svc", now())
    }

    fn an_override() -> Value {
        json!({"card": "9368d37b-283f-44a0-93ea-547cebab93ed", "outcome": "overridden",
            "outcomeTimestamp": "2026-11-01T11:59:00Z",
            "overrideReason": {"reason": {"code": "patient-declined", "system": "https://cramp-cds.org/fhir/CodeSystem/override-reason",
                                          "display": "Patient declined"},
                               "userComment": "Discussed"}})
    }

    #[test]
    fn the_spec_example_and_the_sandbox_dismiss_are_accepted() {
        let body = br#"{"feedback":[
            {"card":"4e0a3a1e-3283-4575-ab82-028d55fe2719","outcome":"accepted",
             "acceptedSuggestions":[{"id":"e56e1945-20b3-4393-8503-a1a20fd73152"}],"outcomeTimestamp":"2020-12-11T00:00:00Z"},
            {"card":"9368d37b-283f-44a0-93ea-547cebab93ed","outcome":"overridden",
             "overrideReason":{"reason":{"code":"reason-code-provided-by-service","system":"http://example.org/cds-services/fhir/CodeSystem/override-reasons"}},
             "outcomeTimestamp":"2020-12-11T00:00:00Z"}]}"#;
        let entries = parse_feedback(body, "svc", now()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].reason_display, None);
    }

    #[test]
    fn accepted_without_suggestions_names_the_field() {
        let body = br#"{"feedback":[{"card":"c","outcome":"accepted","outcomeTimestamp":"2020-12-11T00:00:00Z"}]}"#;
        assert_eq!(
            parse_feedback(body, "s", now()).unwrap_err().field,
            "feedback[0].acceptedSuggestions"
        );
    }

    #[test]
    fn more_than_a_hundred_entries_name_feedback_and_the_limit() {
        let entries: Vec<Value> = (0..MAX_FEEDBACK_ENTRIES).map(|_| an_override()).collect();
        assert_eq!(parse(&json!({ "feedback": entries })).unwrap().len(), 100);
        let entries: Vec<Value> = (0..=MAX_FEEDBACK_ENTRIES).map(|_| an_override()).collect();
        let err = parse(&json!({ "feedback": entries })).unwrap_err();
        assert_eq!(err.field, "feedback");
        assert!(err.message.contains("at most 100 entries"), "{err}");
    }

    #[test]
    fn each_bounded_field_over_its_limit_is_named_with_its_limit() {
        let set = |path: &[&str], value: Value| {
            let mut entry = an_override();
            let (last, parents) = path.split_last().unwrap();
            let mut at = &mut entry;
            for key in parents {
                at = &mut at[*key];
            }
            at[*last] = value;
            entry
        };
        let long = |n: usize| json!("x".repeat(n));
        let suggestions = |count: usize, length: usize| {
            let mut entry = set(&["outcome"], json!("accepted"));
            entry["acceptedSuggestions"] = (0..count)
                .map(|_| json!({"id": "s".repeat(length)}))
                .collect();
            entry
        };
        let cases = [
            (
                set(&["card"], long(MAX_ID_LEN + 1)),
                "feedback[0].card",
                MAX_ID_LEN,
            ),
            (
                set(&["outcomeTimestamp"], long(MAX_TIMESTAMP_LEN + 1)),
                "feedback[0].outcomeTimestamp",
                MAX_TIMESTAMP_LEN,
            ),
            (
                set(
                    &["overrideReason", "userComment"],
                    long(MAX_USER_COMMENT_LEN + 1),
                ),
                "feedback[0].overrideReason.userComment",
                MAX_USER_COMMENT_LEN,
            ),
            (
                set(
                    &["overrideReason", "reason", "code"],
                    long(MAX_REASON_CODE_LEN + 1),
                ),
                "feedback[0].overrideReason.reason.code",
                MAX_REASON_CODE_LEN,
            ),
            (
                set(
                    &["overrideReason", "reason", "system"],
                    long(MAX_REASON_SYSTEM_LEN + 1),
                ),
                "feedback[0].overrideReason.reason.system",
                MAX_REASON_SYSTEM_LEN,
            ),
            (
                set(
                    &["overrideReason", "reason", "display"],
                    long(MAX_REASON_DISPLAY_LEN + 1),
                ),
                "feedback[0].overrideReason.reason.display",
                MAX_REASON_DISPLAY_LEN,
            ),
            (
                suggestions(MAX_ACCEPTED_SUGGESTIONS + 1, 36),
                "feedback[0].acceptedSuggestions",
                MAX_ACCEPTED_SUGGESTIONS,
            ),
            (
                suggestions(1, MAX_ID_LEN + 1),
                "feedback[0].acceptedSuggestions[0].id",
                MAX_ID_LEN,
            ),
        ];
        for (entry, field, limit) in cases {
            let err = parse(&json!({ "feedback": [entry] })).unwrap_err();
            assert_eq!(err.field, field);
            assert!(err.message.contains(&format!("at most {limit} ")), "{err}");
        }
        // Limits count characters, not bytes, and a value at the limit is kept whole.
        let at_limits = set(
            &["overrideReason", "userComment"],
            json!("é".repeat(MAX_USER_COMMENT_LEN)),
        );
        let entries = parse(
            &json!({"feedback": [at_limits, suggestions(MAX_ACCEPTED_SUGGESTIONS, MAX_ID_LEN)]}),
        )
        .unwrap();
        assert_eq!(
            entries[0].user_comment.as_ref().unwrap().chars().count(),
            MAX_USER_COMMENT_LEN
        );
        assert_eq!(
            entries[1].accepted_suggestions.len(),
            MAX_ACCEPTED_SUGGESTIONS
        );
    }

    #[test]
    fn an_outcome_timestamp_more_than_five_minutes_after_now_is_refused() {
        for (timestamp, accepted) in [
            ("2026-11-01T12:05:00Z", true),
            ("2026-11-01T14:04:59+02:00", true),
            ("2026-11-01T12:05:01Z", false),
            ("2036-11-01T12:00:00Z", false),
        ] {
            let result = parse(&json!({"feedback": [set_timestamp(timestamp)]}));
            match (accepted, result) {
                (true, Ok(_)) => {}
                (false, Err(err)) => {
                    assert_eq!(err.field, "feedback[0].outcomeTimestamp");
                    assert!(err.message.contains("more than 5 minutes after"), "{err}");
                }
                (_, other) => panic!("{timestamp}: {other:?}"),
            }
        }
    }

    fn set_timestamp(timestamp: &str) -> Value {
        let mut entry = an_override();
        entry["outcomeTimestamp"] = json!(timestamp);
        entry
    }
}
