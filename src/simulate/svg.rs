//! A small SVG writer for the HTML report's charts: horizontal bars with whiskers, and a
//! column histogram. Text is escaped; the result is inline SVG that needs nothing else.

use std::fmt::Write;

/// One horizontal bar: a label, a value and an optional interval (whiskers).
pub struct Bar {
    /// The label left of the bar.
    pub label: String,
    /// The bar's length, in the chart's unit.
    pub value: f64,
    /// The interval drawn as whiskers, if any.
    pub interval: Option<(f64, f64)>,
}

/// Escapes text for XML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Horizontal bars with whiskers, scaled to the largest value or interval end; `unit` is
/// written after each value.
pub fn bar_chart(bars: &[Bar], unit: &str) -> String {
    let label_width = 330.0;
    let plot_width = 520.0;
    let row = 22.0;
    let height = row * bars.len().max(1) as f64 + 30.0;
    let max = bars
        .iter()
        .map(|b| b.interval.map_or(b.value, |(_, high)| high.max(b.value)))
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let x = |v: f64| label_width + v / max * plot_width;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="sans-serif" font-size="12">"#,
        w = label_width + plot_width + 90.0
    );
    for (i, bar) in bars.iter().enumerate() {
        let y = 10.0 + row * i as f64;
        let _ = write!(
            svg,
            r##"<text x="{lx}" y="{ty}" text-anchor="end">{label}</text><rect x="{label_width}" y="{y}" width="{bw:.1}" height="14" fill="#4878a8"/>"##,
            lx = label_width - 6.0,
            ty = y + 11.0,
            label = escape(&bar.label),
            bw = x(bar.value) - label_width,
        );
        if let Some((low, high)) = bar.interval {
            let (xl, xh, ym) = (x(low), x(high), y + 7.0);
            let _ = write!(
                svg,
                r##"<line x1="{xl:.1}" y1="{ym}" x2="{xh:.1}" y2="{ym}" stroke="#222"/><line x1="{xl:.1}" y1="{a}" x2="{xl:.1}" y2="{b}" stroke="#222"/><line x1="{xh:.1}" y1="{a}" x2="{xh:.1}" y2="{b}" stroke="#222"/>"##,
                a = y + 2.0,
                b = y + 12.0
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{tx:.1}" y="{ty}">{value:.digits$}{unit}</text>"#,
            tx = x(bar.interval.map_or(bar.value, |(_, h)| h.max(bar.value))) + 4.0,
            ty = y + 11.0,
            value = bar.value,
            // A rare card (0.03 per 1,000) must not read as none.
            digits = if bar.value.abs() < 1.0 { 2 } else { 1 },
            unit = escape(unit)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A column histogram: one column per (label, count).
pub fn histogram(columns: &[(String, u64)]) -> String {
    let column = 70.0;
    let plot_height = 180.0;
    let width = column * columns.len().max(1) as f64 + 40.0;
    let max = columns.iter().map(|c| c.1).max().unwrap_or(0).max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" viewBox="0 0 {width} {h}" font-family="sans-serif" font-size="12">"#,
        h = plot_height + 50.0
    );
    for (i, (label, count)) in columns.iter().enumerate() {
        let bar_height = *count as f64 / max * plot_height;
        let x = 20.0 + column * i as f64;
        let y = 20.0 + plot_height - bar_height;
        let _ = write!(
            svg,
            r##"<rect x="{x}" y="{y:.1}" width="{w}" height="{bar_height:.1}" fill="#6a9a58"/><text x="{cx}" y="{ly}" text-anchor="middle">{label}</text><text x="{cx}" y="{vy:.1}" text-anchor="middle">{count}</text>"##,
            w = column - 10.0,
            cx = x + (column - 10.0) / 2.0,
            ly = plot_height + 38.0,
            vy = y - 4.0,
            label = escape(label),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_escaped_labels() {
        let chart = bar_chart(
            &[Bar {
                label: "a<b".to_owned(),
                value: 10.0,
                interval: Some((5.0, 20.0)),
            }],
            "",
        );
        assert!(chart.starts_with("<svg"));
        assert!(chart.contains("a&lt;b"));
        assert!(histogram(&[("0".to_owned(), 3)]).contains("<rect"));
    }
}
