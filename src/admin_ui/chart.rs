//! The dashboard's chart: inline SVG, drawn on the server (no JavaScript).

use crate::audit_log::models::review::DailyTotals;

/// Stacked bars (events by risk level) with lines for failed logins and anomalies.
pub(super) fn chart(days: &[DailyTotals]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 220.0;
    const PAD: f64 = 28.0;
    let max = days
        .iter()
        .map(|d| {
            (d.low_risk_events + d.medium_risk_events + d.high_risk_events + d.critical_risk_events)
                .max(d.total_failed_logins)
        })
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let step = (W - 2.0 * PAD) / days.len().max(1) as f64;
    let y = |v: i64| H - PAD - (v as f64 / max) * (H - 2.0 * PAD);
    let mut svg = format!(
        r#"<svg id="chart" role="img" aria-label="Events by risk level, failed logins and anomalies, last {} days" viewBox="0 0 {W} {H}" width="100%" xmlns="http://www.w3.org/2000/svg">"#,
        days.len()
    );
    svg.push_str(&format!(
        r##"<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><text x="{PAD}" y="14" font-size="11" fill="#555">max {max}</text>"##,
        b = H - PAD,
        r = W - PAD
    ));
    for (i, d) in days.iter().enumerate() {
        let x = PAD + i as f64 * step + step * 0.15;
        let mut base = 0i64;
        for (value, colour, label) in [
            (d.low_risk_events, "#6cbf84", "low"),
            (d.medium_risk_events, "#e9c46a", "medium"),
            (d.high_risk_events, "#f08a4b", "high"),
            (d.critical_risk_events, "#d64545", "critical"),
        ] {
            if value > 0 {
                let top = y(base + value);
                svg.push_str(&format!(
                    r#"<rect class="bar" x="{x:.1}" y="{top:.1}" width="{w:.1}" height="{h:.1}" fill="{colour}"><title>{} {label}: {value}</title></rect>"#,
                    d.date,
                    w = step * 0.7,
                    h = y(base) - top,
                ));
            }
            base += value;
        }
    }
    for (series, colour, class) in [
        (days.iter().map(|d| d.total_failed_logins).collect::<Vec<_>>(), "#2f6fde", "failed-logins"),
        (days.iter().map(|d| d.anomalies_detected).collect::<Vec<_>>(), "#8e44ad", "anomalies"),
    ] {
        let points: Vec<String> = series
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", PAD + i as f64 * step + step / 2.0, y(*v)))
            .collect();
        svg.push_str(&format!(
            r#"<polyline class="{class}" fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        ));
    }
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        svg.push_str(&format!(
            r##"<text x="{PAD}" y="{t}" font-size="11" fill="#555">{}</text><text x="{r}" y="{t}" font-size="11" fill="#555" text-anchor="end">{}</text>"##,
            first.date,
            last.date,
            t = H - 8.0,
            r = W - PAD
        ));
    }
    svg.push_str("</svg>");
    svg
}
