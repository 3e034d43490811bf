//! `--html`: the report as one self-contained page (inline SVG and CSS, no external assets),
//! which opens offline.

use super::report::Report;
use super::svg::{Bar, bar_chart, escape, histogram};

/// The report as an HTML page.
pub fn to_html(report: &Report) -> String {
    let p = &report.population;
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>cramp-cds simulation</title><style>body{font-family:sans-serif;margin:24px;max-width:1100px}table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}td.n{text-align:right}h2{margin-top:28px}</style></head><body>\n<h1>cramp-cds: alert burden of a population</h1>\n",
    );
    page.push_str(&format!("<p>{}.</p>\n", escape(&report.run.describe())));
    page.push_str(&format!(
        "<p>{} patients, {} resources ({} of types no prefetch asks for, not read), {} malformed lines, {} resources without a patient, {} patients without a Patient resource, {} failed evaluations.</p>\n",
        p.patients,
        p.resources,
        p.resources_not_asked_for,
        p.malformed_lines,
        p.resources_without_patient,
        p.patients_without_patient_resource,
        report.failures.count
    ));
    page.push_str("<h2>Cards per 1,000 patients (95 % Wilson interval)</h2>\n");
    let bars: Vec<Bar> = report
        .rules
        .iter()
        .map(|r| Bar {
            label: format!("{} ({})", r.rule_id, r.indicator),
            value: r.rate_per_1000,
            interval: Some((r.ci95_low, r.ci95_high)),
        })
        .collect();
    page.push_str(&bar_chart(&bars, ""));
    page.push_str("\n<table><tr><th>rule</th><th>card</th><th>patients</th><th>per 1,000</th><th>95 % CI</th></tr>\n");
    for r in &report.rules {
        page.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.2}</td><td class=\"n\">{:.2} to {:.2}</td></tr>\n",
            escape(&r.rule_id),
            escape(&r.indicator),
            r.patients,
            r.rate_per_1000,
            r.ci95_low,
            r.ci95_high
        ));
    }
    page.push_str(&format!(
        "</table>\n<p><strong>{}</strong></p>\n<h2>Cards per patient</h2>\n",
        escape(&report.chart_open_burden.describe())
    ));
    let columns: Vec<(String, u64)> = report
        .cards_per_patient
        .iter()
        .map(|b| (b.cards.clone(), b.patients))
        .collect();
    page.push_str(&histogram(&columns));
    if let Some(comparison) = &report.comparison {
        page.push_str("\n<h2>Comparison</h2>\n<table><tr><th>rule</th><th>base</th><th>compared</th><th>gained</th><th>lost</th></tr>\n");
        for c in comparison {
            page.push_str(&format!(
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
                escape(&c.rule_id),
                c.change.base,
                c.change.compared,
                c.change.gained,
                c.change.lost
            ));
        }
        page.push_str("</table>\n");
    }
    page.push_str("\n<h2>Cards by age band (per 1,000 patients of the band, any indicator)</h2>\n<table><tr><th>rule</th>");
    for band in &report.by_age_band.bands {
        page.push_str(&format!("<th>{}</th>", escape(&band.band)));
    }
    page.push_str("</tr>\n<tr><td>patients</td>");
    for band in &report.by_age_band.bands {
        page.push_str(&format!("<td class=\"n\">{}</td>", band.patients));
    }
    page.push_str("</tr>\n");
    for rule in &report.by_age_band.rules {
        page.push_str(&format!("<tr><td>{}</td>", escape(&rule.rule_id)));
        for rate in &rule.rate_per_1000 {
            page.push_str(&format!("<td class=\"n\">{rate:.2}</td>"));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n");
    if let Some(suppressed) = &report.suppressed {
        page.push_str("\n<h2>Suppressed by an override (not counted above)</h2>\n<table><tr><th>rule</th><th>patients</th></tr>\n");
        for s in suppressed {
            page.push_str(&format!(
                "<tr><td>{}</td><td class=\"n\">{}</td></tr>\n",
                escape(&s.rule_id),
                s.patients
            ));
        }
        page.push_str("</table>\n");
    }
    page.push_str("\n<h2>Top data issues</h2>\n<table><tr><th>patients</th><th>issue</th></tr>\n");
    for i in &report.data_issues {
        page.push_str(&format!(
            "<tr><td class=\"n\">{}</td><td>{}</td></tr>\n",
            i.patients,
            escape(&i.issue)
        ));
    }
    page.push_str("</table>\n");
    if !p.malformed.is_empty() {
        page.push_str("<h2>Malformed lines (first few)</h2>\n<table><tr><th>file</th><th>line</th><th>problem</th></tr>\n");
        for m in &p.malformed {
            page.push_str(&format!(
                "<tr><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>\n",
                escape(&m.file),
                m.line,
                escape(&m.problem)
            ));
        }
        page.push_str("</table>\n");
    }
    page.push_str("</body></html>\n");
    page
}
