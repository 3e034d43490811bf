//! Override-rate reports: per rule, cards issued, accepted and overridden, the
//! override rate (overridden / (accepted + overridden)), the most common
//! override reasons, and feedback about cards this service never issued.
//!
//! Reasons are text a client sent. In the text and CSV outputs their control
//! characters (and Unicode bidirectional controls) are escaped as `\u{…}`, so
//! they cannot drive a terminal or reorder a line; CSV cells that a spreadsheet
//! would run as a formula (starting with `=`, `+`, `-`, `@`, tab or CR) get a
//! leading `'`, and cells are quoted as RFC 4180 requires.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError};

/// A `since` (the report's start) that is neither a date nor an RFC 3339 date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is neither a date (YYYY-MM-DD) nor an RFC 3339 date-time")]
pub struct InvalidSince(pub String);

/// Parses the start of a report (`report --since`, `GET /admin/report?since=`): a date
/// (midnight UTC) or an RFC 3339 date-time.
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, InvalidSince> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.to_utc())
        .map_err(|_| InvalidSince(text.to_owned()))
}

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
    /// The knowledge version that issued the cards of this row, when the report is grouped
    /// by version ([`UNRECORDED_VERSION`] for cards issued before versions were recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knowledge_version: Option<String>,
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

/// How the report's rows are grouped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReportGrouping {
    /// One row per rule, whatever knowledge issued its cards.
    #[default]
    Rule,
    /// One row per knowledge version and rule: the cards of each version and the feedback on
    /// them (`report --by knowledge-version`, `GET /admin/report?by=knowledge-version`).
    KnowledgeVersion,
}

impl ReportGrouping {
    /// The grouping `by` names: `rule` or `knowledge-version`.
    pub fn parse(by: &str) -> Option<ReportGrouping> {
        match by {
            "rule" => Some(ReportGrouping::Rule),
            "knowledge-version" => Some(ReportGrouping::KnowledgeVersion),
            _ => None,
        }
    }

    /// The SQL expression of the version group of the cards aliased `c`, and what the
    /// `GROUP BY` starts with for it (PostgreSQL refuses to group by a constant); constants.
    fn version_sql(self) -> (&'static str, &'static str) {
        match self {
            ReportGrouping::Rule => ("''", ""),
            ReportGrouping::KnowledgeVersion => (
                "COALESCE(c.knowledge_version, '')",
                "COALESCE(c.knowledge_version, ''), ",
            ),
        }
    }
}

/// The version label of cards issued before the history recorded versions.
pub const UNRECORDED_VERSION: &str = "(unrecorded)";

impl Store {
    /// Builds the report for feedback and cards since `since` (all time when `None`), one
    /// row per rule.
    pub async fn report(&self, since: Option<DateTime<Utc>>) -> Result<Report, StoreError> {
        self.report_by(since, ReportGrouping::Rule).await
    }

    /// Builds the report for feedback and cards since `since` (all time when `None`), its
    /// rows grouped by `grouping`.
    pub async fn report_by(
        &self,
        since: Option<DateTime<Utc>>,
        grouping: ReportGrouping,
    ) -> Result<Report, StoreError> {
        let from = since.map(|s| s.timestamp()).unwrap_or(i64::MIN);
        let (version, group) = grouping.version_sql();
        let mut rules: BTreeMap<(String, String), RuleReport> = BTreeMap::new();
        let entry = |rules: &mut BTreeMap<(String, String), RuleReport>,
                     version: String,
                     rule_id: String|
         -> (String, String) {
            let key = (version, rule_id);
            rules.entry(key.clone()).or_insert_with(|| RuleReport {
                knowledge_version: match grouping {
                    ReportGrouping::Rule => None,
                    ReportGrouping::KnowledgeVersion if key.0.is_empty() => {
                        Some(UNRECORDED_VERSION.to_owned())
                    }
                    ReportGrouping::KnowledgeVersion => Some(key.0.clone()),
                },
                rule_id: key.1.clone(),
                issued: 0,
                accepted: 0,
                overridden: 0,
                override_rate: None,
                top_override_reasons: Vec::new(),
            });
            key
        };
        // The statements are built from constants only; the values are bound.
        for row in sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {version}, c.rule_id, COUNT(*) FROM issued_cards c WHERE c.issued_at >= $1 \
             GROUP BY {group}c.rule_id"
        )))
        .bind(from)
        .fetch_all(self.pool())
        .await?
        {
            let key = entry(&mut rules, row.try_get(0)?, row.try_get(1)?);
            if let Some(report) = rules.get_mut(&key) {
                report.issued = row.try_get(2)?;
            }
        }
        for row in sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {version}, c.rule_id, f.outcome, COUNT(*) FROM feedback f JOIN issued_cards c ON c.card_uuid = f.card_uuid AND c.client_scope = f.client_scope \
             WHERE f.outcome_at >= $1 GROUP BY {group}c.rule_id, f.outcome"
        )))
        .bind(from)
        .fetch_all(self.pool())
        .await?
        {
            let key = entry(&mut rules, row.try_get(0)?, row.try_get(1)?);
            let outcome: String = row.try_get(2)?;
            let count: i64 = row.try_get(3)?;
            if let Some(report) = rules.get_mut(&key) {
                match outcome.as_str() {
                    "accepted" => report.accepted = count,
                    _ => report.overridden = count,
                }
            }
        }
        for row in sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {version}, c.rule_id, COALESCE(f.reason_display, f.reason_code, '(none)'), COUNT(*) FROM feedback f \
             JOIN issued_cards c ON c.card_uuid = f.card_uuid AND c.client_scope = f.client_scope \
             WHERE f.outcome = 'overridden' AND f.outcome_at >= $1 \
             GROUP BY {group}c.rule_id, COALESCE(f.reason_display, f.reason_code, '(none)')"
        )))
        .bind(from)
        .fetch_all(self.pool())
        .await?
        {
            let key = entry(&mut rules, row.try_get(0)?, row.try_get(1)?);
            let reason = ReasonCount {
                reason: row.try_get(2)?,
                count: row.try_get(3)?,
            };
            if let Some(report) = rules.get_mut(&key) {
                report.top_override_reasons.push(reason);
            }
        }
        let unknown: i64 = sqlx::query(
            "SELECT COUNT(*) FROM feedback f WHERE f.outcome_at >= $1 \
             AND NOT EXISTS (SELECT 1 FROM issued_cards c WHERE c.card_uuid = f.card_uuid AND c.client_scope = f.client_scope)",
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
    /// Whether the rows are grouped by knowledge version.
    fn by_version(&self) -> bool {
        self.rules.iter().any(|r| r.knowledge_version.is_some())
    }

    /// A table for people; reasons have their control characters escaped. Grouped by
    /// knowledge version, each row starts with its version.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(since) = &self.since {
            let _ = writeln!(out, "Since {since}");
        }
        let by_version = self.by_version();
        if by_version {
            let _ = write!(out, "{:<28} ", "knowledge version");
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
            if by_version {
                let version = r.knowledge_version.as_deref().unwrap_or_default();
                let _ = write!(out, "{:<28} ", printable(version));
            }
            let _ = writeln!(
                out,
                "{:<32} {:>7} {:>9} {:>11} {:>9}  {}",
                printable(&r.rule_id),
                r.issued,
                r.accepted,
                r.overridden,
                rate,
                printable(&r.reasons_summary())
            );
        }
        let _ = writeln!(
            out,
            "Feedback for cards this service never issued: {}",
            self.feedback_for_unknown_cards
        );
        out
    }

    /// CSV, one row per rule (per knowledge version and rule when grouped so, with a first
    /// `knowledge_version` column): text cells are neutralised against spreadsheet formulas
    /// and quoted as RFC 4180 requires; the free-text reasons cell is always quoted.
    pub fn to_csv(&self) -> String {
        let by_version = self.by_version();
        let mut out = String::new();
        if by_version {
            out.push_str("knowledge_version,");
        }
        out.push_str("rule_id,issued,accepted,overridden,override_rate,top_override_reasons\n");
        for r in &self.rules {
            if by_version {
                let version = r.knowledge_version.as_deref().unwrap_or_default();
                let _ = write!(out, "{},", csv_cell(version));
            }
            let _ = writeln!(
                out,
                "{},{},{},{},{},{}",
                csv_cell(&r.rule_id),
                r.issued,
                r.accepted,
                r.overridden,
                r.override_rate
                    .map(|x| format!("{x:.3}"))
                    .unwrap_or_default(),
                quoted(&neutralised(&r.reasons_summary()))
            );
        }
        if by_version {
            out.push(',');
        }
        let _ = writeln!(
            out,
            "(unknown cards),0,0,{},,",
            self.feedback_for_unknown_cards
        );
        out
    }
}

impl RuleReport {
    /// `reason (count); reason (count)`, most frequent first.
    fn reasons_summary(&self) -> String {
        self.top_override_reasons
            .iter()
            .map(|c| format!("{} ({})", c.reason, c.count))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `text` with control characters and Unicode bidirectional controls escaped as `\u{…}`.
fn printable(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` made safe for a spreadsheet: printable, and prefixed with `'` when it would be read
/// as a formula.
fn neutralised(text: &str) -> String {
    let text = printable(text);
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.into_owned()
    }
}

/// `text` as a quoted CSV field, its quotes doubled (RFC 4180).
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// One CSV text cell: neutralised, and quoted when it holds a comma, a quote or a line break.
/// Every CSV the service writes (reports, simulations) uses it.
pub fn csv_cell(text: &str) -> String {
    let cell = neutralised(text);
    if cell.contains([',', '"', '\r', '\n']) {
        quoted(&cell)
    } else {
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_date_at_midnight_utc_or_an_rfc_3339_date_time() {
        assert_eq!(
            parse_since("2026-10-01").unwrap().to_rfc3339(),
            "2026-10-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_since("2026-10-01T08:30:00+02:00")
                .unwrap()
                .to_rfc3339(),
            "2026-10-01T06:30:00+00:00"
        );
        assert_eq!(
            parse_since("last week").unwrap_err().to_string(),
            "'last week' is neither a date (YYYY-MM-DD) nor an RFC 3339 date-time"
        );
    }

    fn report_with_reason(reason: &str) -> Report {
        Report {
            since: None,
            rules: vec![RuleReport {
                knowledge_version: None,
                rule_id: "diuretic-low-magnesium".to_owned(),
                issued: 3,
                accepted: 1,
                overridden: 1,
                override_rate: Some(0.5),
                top_override_reasons: vec![ReasonCount {
                    reason: reason.to_owned(),
                    count: 1,
                }],
            }],
            feedback_for_unknown_cards: 0,
        }
    }

    fn reasons_cell(csv: &str) -> &str {
        let row = csv.lines().nth(1).unwrap();
        row.splitn(6, ',').nth(5).unwrap()
    }

    #[test]
    fn a_report_by_knowledge_version_starts_each_row_with_its_version() {
        let mut report = report_with_reason("Patient declined");
        let mut older = report.rules[0].clone();
        older.knowledge_version = Some("2026.11.0+aaaaaaaaaaaa".to_owned());
        report.rules[0].knowledge_version = Some("2026.12.1+bbbbbbbbbbbb".to_owned());
        report.rules.insert(0, older);
        let csv = report.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("knowledge_version,rule_id,"), "{csv}");
        assert!(lines[1].starts_with("2026.11.0+aaaaaaaaaaaa,diuretic-low-magnesium,3,"));
        assert!(lines[2].starts_with("2026.12.1+bbbbbbbbbbbb,diuretic-low-magnesium,3,"));
        assert_eq!(lines[3], ",(unknown cards),0,0,0,,");
        let text = report.to_text();
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .starts_with("2026.11.0+aaaaaaaaaaaa "),
            "{text}"
        );
        let plain = report_with_reason("Patient declined").to_csv();
        assert!(plain.starts_with("rule_id,"), "{plain}");
    }

    #[test]
    fn csv_cells_that_start_like_a_formula_are_neutralised_and_quoted() {
        let cases = [
            (
                "=HYPERLINK(\"http://evil.example\",\"x\")",
                "\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\") (1)\"",
            ),
            ("=1+2", "\"'=1+2 (1)\""),
            ("+1", "\"'+1 (1)\""),
            ("-1", "\"'-1 (1)\""),
            ("@SUM(A1)", "\"'@SUM(A1) (1)\""),
            ("Patient declined", "\"Patient declined (1)\""),
        ];
        for (reason, cell) in cases {
            let csv = report_with_reason(reason).to_csv();
            assert_eq!(reasons_cell(&csv), cell, "{reason}");
        }
    }

    #[test]
    fn other_text_cells_are_quoted_only_when_rfc_4180_requires_it() {
        assert_eq!(csv_cell("diuretic-low-magnesium"), "diuretic-low-magnesium");
        assert_eq!(csv_cell("a, b"), "\"a, b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("-rule"), "'-rule");
        assert_eq!(csv_cell("=a,b"), "\"'=a,b\"");
    }

    #[test]
    fn tabs_returns_and_line_breaks_cannot_start_a_formula_or_a_new_csv_row() {
        for reason in ["\t=1+2", "\r=1+2", "ok\n=1+2,x"] {
            let csv = report_with_reason(reason).to_csv();
            assert_eq!(csv.lines().count(), 3, "{csv:?}");
            let cell = reasons_cell(&csv);
            assert!(!cell.contains(['\t', '\r', '\n']), "{cell:?}");
        }
        let csv = report_with_reason("\t=1+2").to_csv();
        assert_eq!(reasons_cell(&csv), "\"\\u{9}=1+2 (1)\"");
    }

    #[test]
    fn control_and_bidirectional_characters_in_the_text_report_are_escaped() {
        let text = report_with_reason("\u{1b}[2J\u{1b}[31mred\u{7}\nfake row\u{202e}txt").to_text();
        assert!(!text.contains(['\u{1b}', '\u{7}', '\u{202e}']), "{text:?}");
        assert!(
            text.contains("\\u{1b}[2J\\u{1b}[31mred\\u{7}\\u{a}fake row\\u{202e}txt (1)"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 3, "one line per rule: {text}");
    }
}
