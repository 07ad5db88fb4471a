//! Changes per day as a server-rendered SVG bar chart: no chart library, no script, and
//! nothing a Content-Security-Policy has to allow (presentation attributes, no inline CSS).

use chrono::{DateTime, Duration, NaiveDate, Utc};

/// Counts per calendar day (UTC) for the `days` days ending today, oldest first.
pub fn per_day(
    times: impl Iterator<Item = DateTime<Utc>>,
    now: DateTime<Utc>,
    days: usize,
) -> Vec<(NaiveDate, usize)> {
    let today = now.date_naive();
    let first = today - Duration::days(days.saturating_sub(1) as i64);
    let mut counts = vec![0usize; days];
    for t in times {
        let d = t.date_naive();
        if d >= first && d <= today {
            if let Some(slot) = counts.get_mut((d - first).num_days() as usize) {
                *slot += 1;
            }
        }
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, n)| (first + Duration::days(i as i64), n))
        .collect()
}

/// An accessible SVG: a title, one labelled bar per day, the maximum on the axis.
pub fn bars_svg(days: &[(NaiveDate, usize)]) -> String {
    const W: usize = 600;
    const H: usize = 160;
    const TOP: usize = 16;
    const BOTTOM: usize = 20;
    let max = days.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let slot = W as f64 / days.len().max(1) as f64;
    let total: usize = days.iter().map(|d| d.1).sum();
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"chart-title\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"chart-title\">Change records per day, last {} days: {total} in all</title>",
        days.len()
    );
    let plot = (H - TOP - BOTTOM) as f64;
    for (i, (day, n)) in days.iter().enumerate() {
        let h = (*n as f64 / max as f64 * plot).round();
        let x = i as f64 * slot + 1.0;
        let y = (H - BOTTOM) as f64 - h;
        svg.push_str(&format!(
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{day}: {n}</title></rect>",
            (slot - 2.0).max(1.0)
        ));
    }
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{}\" class=\"axis\">{}</text><text x=\"{W}\" y=\"{}\" text-anchor=\"end\" class=\"axis\">{}</text><text x=\"0\" y=\"11\" class=\"axis\">max {max}/day</text>",
            H - 4,
            first.0,
            H - 4,
            last.0
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// An accessible SVG line of percentages (0 to 100 on a fixed axis, so a small dip does
/// not look like a collapse): a title, one labelled point per day, gaps where days were
/// not recorded left as straight segments between the points that were.
pub fn percent_line_svg(id: &str, what: &str, points: &[(NaiveDate, f64)]) -> String {
    const W: f64 = 600.0;
    const H: f64 = 160.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 20.0;
    let plot = H - TOP - BOTTOM;
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return String::new();
    };
    let span = (last.0 - first.0).num_days().max(1) as f64;
    let at = |day: NaiveDate, value: f64| {
        let x = if points.len() == 1 {
            W / 2.0
        } else {
            (day - first.0).num_days() as f64 / span * (W - 8.0) + 4.0
        };
        (x, TOP + plot - value.clamp(0.0, 100.0) / 100.0 * plot)
    };
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"{id}-title\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"{id}-title\">{what}, {} days recorded from {} to {}: latest {:.1}</title>\
         <line class=\"grid\" x1=\"0\" y1=\"{TOP}\" x2=\"{W}\" y2=\"{TOP}\"/><line class=\"grid\" x1=\"0\" y1=\"{:.1}\" x2=\"{W}\" y2=\"{:.1}\"/>",
        points.len(),
        first.0,
        last.0,
        last.1,
        TOP + plot / 2.0,
        TOP + plot / 2.0,
    );
    let line: Vec<String> = points
        .iter()
        .map(|(d, v)| {
            let (x, y) = at(*d, *v);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    svg.push_str(&format!(
        "<polyline class=\"line\" fill=\"none\" points=\"{}\"/>",
        line.join(" ")
    ));
    for (d, v) in points {
        let (x, y) = at(*d, *v);
        svg.push_str(&format!(
            "<circle class=\"point\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\"><title>{d}: {v:.1}</title></circle>"
        ));
    }
    svg.push_str(&format!(
        "<text x=\"0\" y=\"{}\" class=\"axis\">{}</text><text x=\"{W}\" y=\"{}\" text-anchor=\"end\" class=\"axis\">{}</text><text x=\"0\" y=\"11\" class=\"axis\">100</text><text x=\"0\" y=\"{:.0}\" class=\"axis\">50</text></svg>",
        H - 4.0,
        first.0,
        H - 4.0,
        last.0,
        TOP + plot / 2.0 - 2.0,
    ));
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percent_line_has_one_labelled_point_per_day_on_a_fixed_axis() {
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let svg = percent_line_svg(
            "health",
            "Overall score",
            &[(day(1), 100.0), (day(2), 50.0), (day(4), 0.0)],
        );
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("<title>2026-11-02: 50.0</title>"), "{svg}");
        // 100 at the top of the plot, 0 at its bottom, whatever the values.
        assert!(svg.contains("points=\"4.0,16.0 "), "{svg}");
        assert!(svg.contains(" 596.0,140.0\""), "{svg}");
        assert!(svg.contains("3 days recorded from 2026-11-01 to 2026-11-04: latest 0.0"));
        assert!(percent_line_svg("h", "x", &[]).is_empty());
        let one = percent_line_svg("h", "x", &[(day(3), 97.5)]);
        assert!(one.contains("cx=\"300.0\""), "{one}");
    }

    #[test]
    fn counts_fall_on_their_day_and_old_ones_are_left_out() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let times = [
            now,
            now - Duration::hours(1),
            now - Duration::days(1),
            now - Duration::days(40),
        ];
        let days = per_day(times.into_iter(), now, 30);
        assert_eq!(days.len(), 30);
        assert_eq!(days[29], (now.date_naive(), 2));
        assert_eq!(days[28].1, 1);
        assert_eq!(days.iter().map(|d| d.1).sum::<usize>(), 3);
    }

    #[test]
    fn svg_has_one_bar_per_day_and_an_accessible_title() {
        let now = Utc::now();
        let svg = bars_svg(&per_day(std::iter::once(now), now, 7));
        assert_eq!(svg.matches("<rect").count(), 7);
        assert!(svg.contains("<title id=\"chart-title\">"));
        assert!(!svg.contains("style="), "CSP forbids inline style");
    }
}
