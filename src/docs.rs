//! The rule catalog as a clinician reads it, rendered from the loaded
//! knowledge: one section per rule (when it fires, how loud, what it advises,
//! what it suggests, its source) and the value sets it uses. The same text is
//! served at `GET /rules/{id}` (each card links there) and written to
//! `docs/rules.md`, where a test keeps it from drifting from `cds-hooks/`.

use std::fmt::Write;

use crate::hooks::vocabulary::ActionType;
use crate::knowledge::Knowledge;
use crate::knowledge::describe::describe;
use crate::knowledge::rule::Rule;

/// The whole catalog in Markdown.
pub fn catalog_markdown(knowledge: &Knowledge) -> String {
    let mut out = String::from(
        "# cramp-cds rule catalog\n\n\
         Generated from `cds-hooks/` by `cramp-cds docs`; a test fails when this file and the \
         knowledge disagree. Thresholds are compared after converting each result to the \
         analyte's unit; a result's own reference range (or its L/H interpretation) wins over \
         a threshold unless the rule says otherwise. Look-back windows count back from the \
         moment the hook is evaluated.\n\n",
    );
    out.push_str("| rule | hooks | card |\n|---|---|---|\n");
    for rule in &knowledge.rules {
        let _ = writeln!(
            out,
            "| [`{}`](#{}) | {} | {} |",
            rule.id,
            rule.id,
            hooks(rule),
            rule.indicator.as_str()
        );
    }
    out.push('\n');
    for rule in &knowledge.rules {
        out.push_str(&rule_markdown(rule, knowledge));
        out.push('\n');
    }
    out.push_str(
        "## Value sets\n\n| id | title | codes listed | classes (is-a) |\n|---|---|---|---|\n",
    );
    for set in &knowledge.valuesets {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            set.id,
            set.title,
            set.listed_codes().count(),
            set.classes()
                .map(|(system, code)| format!(
                    "{} {code}",
                    crate::knowledge::describe::system_name(system)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out.push_str(
        "\n## Units\n\nUnits are matched ignoring case, spaces and the micro sign (`mmol/L`, \
         `MMOL/L` and `mmol/l` are one unit).\n\n\
         | analyte | compared in | accepted units |\n|---|---|---|\n",
    );
    for analyte in &knowledge.analytes {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            analyte.display,
            analyte.display_unit,
            analyte.units().collect::<Vec<_>>().join(", ")
        );
    }
    out
}

/// One rule in Markdown, headed `## {id}`.
pub fn rule_markdown(rule: &Rule, knowledge: &Knowledge) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## {}\n\n**{}**\n", rule.id, rule.title);
    let _ = writeln!(out, "- Hooks: {}", hooks(rule));
    let _ = writeln!(out, "- Fires when: {}", describe(&rule.when, knowledge));
    let _ = writeln!(
        out,
        "- Card: {}, \"{}\"",
        rule.indicator.as_str(),
        rule.summary
    );
    for escalation in &rule.escalations {
        let summary = escalation
            .summary
            .as_deref()
            .map(|s| format!(", \"{s}\""))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "- Raised to {} when: {}{summary}",
            escalation.indicator.as_str(),
            describe(&escalation.when, knowledge)
        );
    }
    if !rule.yields_to.is_empty() {
        let _ = writeln!(
            out,
            "- Stays quiet when this fires too: {}",
            rule.yields_to
                .iter()
                .map(|id| format!("`{id}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for exclusion in &rule.stay_quiet {
        let _ = writeln!(
            out,
            "- Stays quiet (safety reason `{}`) when {}: {}",
            exclusion.reason.as_str(),
            describe(&exclusion.when, knowledge),
            exclusion.explanation
        );
    }
    let source = match &rule.source.url {
        Some(url) => format!("[{}]({url})", rule.source.label),
        None => rule.source.label.clone(),
    };
    let _ = writeln!(out, "- Source: {source}\n");
    let _ = writeln!(out, "What the card advises:\n\n{}\n", rule.advice);
    for note in &rule.notes {
        let _ = writeln!(
            out,
            "Added when {}: {}\n",
            describe(&note.when, knowledge),
            note.text.trim()
        );
    }
    out.push_str(&suggestions_markdown(rule, knowledge));
    let _ = writeln!(out, "Defined in `cds-hooks/{}`.", rule.file);
    out
}

/// The suggestions of a rule as a list, with when each is offered; empty without any.
fn suggestions_markdown(rule: &Rule, knowledge: &Knowledge) -> String {
    let mut out = String::new();
    if rule.suggestions.is_empty() {
        return out;
    }
    let behavior = match rule.selection_behavior {
        Some(crate::hooks::vocabulary::SelectionBehavior::AtMostOne) => " (choose at most one)",
        _ => "",
    };
    let _ = writeln!(out, "Suggestions{behavior}:\n");
    for suggestion in &rule.suggestions {
        let mut conditions = Vec::new();
        if let Some(when) = &suggestion.when {
            conditions.push(format!("offered when {}", describe(when, knowledge)));
        }
        if let Some(unless) = &suggestion.unless {
            let why = suggestion
                .unless_reason
                .as_ref()
                .map(|(reason, explanation)| {
                    format!(" (safety reason `{}`: {explanation})", reason.as_str())
                })
                .unwrap_or_default();
            conditions.push(format!(
                "not offered when {}{why}",
                describe(unless, knowledge)
            ));
        }
        let actions: Vec<String> = suggestion
            .actions
            .iter()
            .map(|a| {
                let kind = match a.action_type {
                    ActionType::Create => "create",
                    ActionType::Update => "update the order",
                    ActionType::Delete => "delete the order",
                };
                format!("{kind}: {}", a.description)
            })
            .collect();
        let recommended = if suggestion.is_recommended {
            " (recommended)"
        } else {
            ""
        };
        let conditions = if conditions.is_empty() {
            String::new()
        } else {
            format!(" ({})", conditions.join("; "))
        };
        let _ = writeln!(
            out,
            "- {}{recommended}{conditions}: {}",
            suggestion.label,
            actions.join("; ")
        );
    }
    out.push('\n');
    out
}

fn hooks(rule: &Rule) -> String {
    rule.hooks
        .iter()
        .map(|h| h.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A rule's explanation page as HTML.
pub fn rule_html(rule: &Rule, knowledge: &Knowledge) -> String {
    let markdown = rule_markdown(rule, knowledge);
    let mut body = String::new();
    pulldown_cmark::html::push_html(&mut body, pulldown_cmark::Parser::new(&markdown));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{} | cramp-cds</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}</style>\
         </head><body>\n{body}</body></html>\n",
        escape(&rule.title)
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
