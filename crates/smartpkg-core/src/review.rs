//! What a reviewer sees of a package: the `app.json` the runtime ends up with, and line diffs
//! that show what the third party changed from its template. Pure functions over text.

use serde_json::{Map, Value};

/// The `ext.json` keys the runtime lays over the template's `app.json`.
pub const OVERLAID_KEYS: [&str; 3] = ["window", "tabBar", "networkTimeout"];

/// The template's `app.json` with the built `ext.json`'s overlays applied (object keys merged
/// one level deep, other values replaced), pretty-printed. Unparsable input is returned as
/// given: a reviewer should see it, not an error.
pub fn merged_app_json(app_json: &str, ext_json: &str) -> String {
    let Ok(Value::Object(mut app)) = serde_json::from_str::<Value>(app_json) else {
        return app_json.to_string();
    };
    let ext: Map<String, Value> = match serde_json::from_str::<Value>(ext_json) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let enabled = ext
        .get("extEnable")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if enabled {
        for key in OVERLAID_KEYS {
            match (app.get_mut(key), ext.get(key)) {
                (Some(Value::Object(base)), Some(Value::Object(over))) => {
                    for (k, v) in over {
                        base.insert(k.clone(), v.clone());
                    }
                }
                (_, Some(v)) if !v.is_null() => {
                    app.insert(key.to_string(), v.clone());
                }
                _ => {}
            }
        }
    }
    pretty(&Value::Object(app))
}

/// JSON text pretty-printed, or the text itself when it is not JSON.
pub fn pretty_json(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => pretty(&v),
        Err(_) => text.to_string(),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    Same(String),
    Added(String),
    Removed(String),
}

/// Most lines a diff compares in full; past it (a reviewer's page, not a patch tool) the
/// whole old text is shown removed and the new one added.
const MAX_DIFF_CELLS: usize = 4_000_000;

/// A line diff of `old` → `new` by longest common subsequence.
pub fn line_diff(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len().saturating_mul(b.len()) > MAX_DIFF_CELLS {
        return a
            .iter()
            .map(|l| DiffLine::Removed(l.to_string()))
            .chain(b.iter().map(|l| DiffLine::Added(l.to_string())))
            .collect();
    }
    // lcs[i][j]: the common subsequence's length of a[i..] and b[j..].
    let w = b.len() + 1;
    let mut lcs = vec![0u32; (a.len() + 1) * w];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * w + j] = if a[i] == b[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(DiffLine::Same(a[i].to_string()));
            i += 1;
            j += 1;
        } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
            out.push(DiffLine::Removed(a[i].to_string()));
            i += 1;
        } else {
            out.push(DiffLine::Added(b[j].to_string()));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| DiffLine::Removed(l.to_string())));
    out.extend(b[j..].iter().map(|l| DiffLine::Added(l.to_string())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_keeps_common_lines_and_marks_the_rest() {
        let d = line_diff("a\nb\nc", "a\nx\nc\nd");
        assert_eq!(
            d,
            vec![
                DiffLine::Same("a".into()),
                DiffLine::Removed("b".into()),
                DiffLine::Added("x".into()),
                DiffLine::Same("c".into()),
                DiffLine::Added("d".into()),
            ]
        );
        assert!(line_diff("same", "same")
            .iter()
            .all(|l| matches!(l, DiffLine::Same(_))));
    }

    #[test]
    fn the_merged_app_json_takes_the_ext_overlays() {
        let app = r##"{"pages":["pages/index/index"],"window":{"navigationBarTitleText":"T","backgroundColor":"#fff"}}"##;
        let ext = r#"{"extEnable":true,"window":{"navigationBarTitleText":"Shop"},"ext":{"k":1}}"#;
        let merged: Value = serde_json::from_str(&merged_app_json(app, ext)).expect("json");
        assert_eq!(merged["window"]["navigationBarTitleText"], "Shop");
        assert_eq!(merged["window"]["backgroundColor"], "#fff");
        assert!(
            merged.get("ext").is_none(),
            "only the overlaid keys reach app.json"
        );
        let off: Value =
            serde_json::from_str(&merged_app_json(app, r#"{"extEnable":false}"#)).expect("json");
        assert_eq!(off["window"]["navigationBarTitleText"], "T");
    }
}
