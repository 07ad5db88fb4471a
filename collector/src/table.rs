//! Plain-text tables for the command-line tools. Cells come from agents, so control
//! characters are dropped (no terminal escapes) and long values are cut.

use serde_json::Value;

/// Widest a column grows, in characters.
pub const MAX_WIDTH: usize = 60;

pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The rows' `columns` as an aligned table with an upper-case header line.
pub fn render(rows: &[&Value], columns: &[&str]) -> String {
    let clean = |s: String| -> String { s.chars().filter(|c| !c.is_control()).collect() };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| clean(cell(&r[*c]))).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
                .min(MAX_WIDTH)
        })
        .collect();
    let line = |vals: Vec<String>| -> String {
        vals.iter()
            .zip(&widths)
            .map(|(v, w)| {
                let v: String = v.chars().take(*w).collect();
                format!("{v:<w$}")
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(columns.iter().map(|c| c.to_uppercase()).collect());
    out.push('\n');
    for r in cells {
        out.push_str(&line(r));
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aligned_capped_and_escape_free() {
        let a = json!({"id": "x", "name": "evil\u{1b}[31mred"});
        let b = json!({"id": "longer-id", "name": null});
        let t = render(&[&a, &b], &["id", "name"]);
        assert_eq!(t, "ID         NAME\nx          evil[31mred\nlonger-id  -\n");
        assert!(!t.contains('\u{1b}'));
        assert!(render(&[], &["id"]).ends_with("(none)\n"));
        let long = json!({"v": "y".repeat(500)});
        assert!(render(&[&long], &["v"]).lines().nth(1).unwrap().len() == MAX_WIDTH);
    }
}
