//! Override-rate reports: per rule, cards issued, accepted and overridden, the
//! override rate (overridden / (accepted + overridden)), the most common
//! override reasons, and feedback about cards this service never issued.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError};

/// The report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// The start of the period (RFC 3339), when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// One row per rule that issued cards or got feedback.
    pub rules: Vec<RuleReport>,
    /// Feedback entries whose card this service never issued.
    pub feedback_for_unknown_cards: i64,
}

/// One rule's numbers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RuleReport {
    /// The rule id.
    pub rule_id: String,
    /// Cards issued.
    pub issued: i64,
    /// Feedback entries with outcome accepted.
    pub accepted: i64,
    /// Feedback entries with outcome overridden.
    pub overridden: i64,
    /// overridden / (accepted + overridden), when there is any feedback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_rate: Option<f64>,
    /// The most common override reasons, most frequent first.
    pub top_override_reasons: Vec<ReasonCount>,
}

/// An override reason and how often it was given.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReasonCount {
    /// The reason's display, else its code, else `(none)`.
    pub reason: String,
    /// How often.
    pub count: i64,
}

impl Store {
    /// Builds the report for feedback and cards since `since` (all time when `None`).
    pub async fn report(&self, since: Option<DateTime<Utc>>) -> Result<Report, StoreError> {
        let from = since.map(|s| s.timestamp()).unwrap_or(i64::MIN);
        let mut rules: BTreeMap<String, RuleReport> = BTreeMap::new();
        let entry = |rules: &mut BTreeMap<String, RuleReport>, rule_id: &str| {
            rules
                .entry(rule_id.to_owned())
                .or_insert_with(|| RuleReport {
                    rule_id: rule_id.to_owned(),
                    issued: 0,
                    accepted: 0,
                    overridden: 0,
                    override_rate: None,
                    top_override_reasons: Vec::new(),
                })
                .clone()
        };
        for row in sqlx::query(
            "SELECT rule_id, COUNT(*) FROM issued_cards WHERE issued_at >= $1 GROUP BY rule_id",
        )
        .bind(from)
        .fetch_all(self.pool())
        .await?
        {
            let rule_id: String = row.try_get(0)?;
            let mut report = entry(&mut rules, &rule_id);
            report.issued = row.try_get(1)?;
            rules.insert(rule_id, report);
        }
        for row in sqlx::query(
            "SELECT c.rule_id, f.outcome, COUNT(*) FROM feedback f JOIN issued_cards c ON c.card_uuid = f.card_uuid \
             WHERE f.outcome_at >= $1 GROUP BY c.rule_id, f.outcome",
        )
        .bind(from)
        .fetch_all(self.pool())
        .await?
        {
            let rule_id: String = row.try_get(0)?;
            let outcome: String = row.try_get(1)?;
            let count: i64 = row.try_get(2)?;
            let mut report = entry(&mut rules, &rule_id);
            match outcome.as_str() {
                "accepted" => report.accepted = count,
                _ => report.overridden = count,
            }
            rules.insert(rule_id, report);
        }
        for row in sqlx::query(
            "SELECT c.rule_id, COALESCE(f.reason_display, f.reason_code, '(none)'), COUNT(*) FROM feedback f \
             JOIN issued_cards c ON c.card_uuid = f.card_uuid \
             WHERE f.outcome = 'overridden' AND f.outcome_at >= $1 \
             GROUP BY c.rule_id, COALESCE(f.reason_display, f.reason_code, '(none)')",
        )
        .bind(from)
        .fetch_all(self.pool())
        .await?
        {
            let rule_id: String = row.try_get(0)?;
            let mut report = entry(&mut rules, &rule_id);
            report.top_override_reasons.push(ReasonCount {
                reason: row.try_get(1)?,
                count: row.try_get(2)?,
            });
            rules.insert(rule_id, report);
        }
        let unknown: i64 = sqlx::query(
            "SELECT COUNT(*) FROM feedback f WHERE f.outcome_at >= $1 \
             AND NOT EXISTS (SELECT 1 FROM issued_cards c WHERE c.card_uuid = f.card_uuid)",
        )
        .bind(from)
        .fetch_one(self.pool())
        .await?
        .try_get(0)?;
        let rules = rules
            .into_values()
            .map(|mut r| {
                let answered = r.accepted + r.overridden;
                r.override_rate = (answered > 0).then(|| r.overridden as f64 / answered as f64);
                r.top_override_reasons
                    .sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
                r.top_override_reasons.truncate(3);
                r
            })
            .collect();
        Ok(Report {
            since: since.map(|s| s.to_rfc3339()),
            rules,
            feedback_for_unknown_cards: unknown,
        })
    }
}

impl Report {
    /// A table for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(since) = &self.since {
            let _ = writeln!(out, "Since {since}");
        }
        let _ = writeln!(
            out,
            "{:<32} {:>7} {:>9} {:>11} {:>9}  top override reasons",
            "rule", "issued", "accepted", "overridden", "override%"
        );
        for r in &self.rules {
            let rate = r
                .override_rate
                .map(|x| format!("{:.0}%", x * 100.0))
                .unwrap_or_else(|| "-".to_owned());
            let reasons: Vec<String> = r
                .top_override_reasons
                .iter()
                .map(|c| format!("{} ({})", c.reason, c.count))
                .collect();
            let _ = writeln!(
                out,
                "{:<32} {:>7} {:>9} {:>11} {:>9}  {}",
                r.rule_id,
                r.issued,
                r.accepted,
                r.overridden,
                rate,
                reasons.join("; ")
            );
        }
        let _ = writeln!(
            out,
            "Feedback for cards this service never issued: {}",
            self.feedback_for_unknown_cards
        );
        out
    }

    /// CSV, one row per rule.
    pub fn to_csv(&self) -> String {
        let mut out =
            String::from("rule_id,issued,accepted,overridden,override_rate,top_override_reasons\n");
        for r in &self.rules {
            let reasons: Vec<String> = r
                .top_override_reasons
                .iter()
                .map(|c| format!("{} ({})", c.reason, c.count))
                .collect();
            let _ = writeln!(
                out,
                "{},{},{},{},{},\"{}\"",
                r.rule_id,
                r.issued,
                r.accepted,
                r.overridden,
                r.override_rate
                    .map(|x| format!("{x:.3}"))
                    .unwrap_or_default(),
                reasons.join("; ").replace('"', "\"\"")
            );
        }
        let _ = writeln!(
            out,
            "(unknown cards),0,0,{},,",
            self.feedback_for_unknown_cards
        );
        out
    }
}
