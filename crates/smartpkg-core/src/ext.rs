//! `ext_json`: the TP's per-customer configuration, parsed at upload and merged at build.

use serde_json::{Map, Value};
use smartpkg_types::Errno;

use crate::archive::TemplateManifest;

/// A parsed `ext_json`. The raw object is kept: what the template receives is the TP's own
/// configuration, untouched apart from the platform instructions removed from it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtConfig {
    pub ext_enable: bool,
    pub direct_commit: bool,
    pub ext_appid: Option<String>,
    raw: Map<String, Value>,
}

/// `ext_json` that cannot be used: always errno 69004 at upload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("EXT_JSON字段包含无法解析字符: {0}")]
pub struct ExtJsonError(pub String);

impl ExtJsonError {
    pub fn errno(&self) -> Errno {
        Errno::ExtJsonInvalid
    }
}

/// Why a build failed, as `upload_err_code` / `upload_err_msg` show it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct BuildFailure {
    pub errno: Errno,
    pub msg: String,
}

/// Clients send booleans as JSON booleans or as the strings "true"/"false" (the doc's own
/// table types `directCommit` as string).
fn flag(obj: &Map<String, Value>, key: &str, default: bool) -> Result<bool, ExtJsonError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(Value::Number(n)) if n.as_i64() == Some(1) => Ok(true),
        Some(Value::Number(n)) if n.as_i64() == Some(0) => Ok(false),
        Some(other) => Err(ExtJsonError(format!(
            "{key} must be true or false, got {other}"
        ))),
    }
}

pub fn parse_ext_json(text: &str) -> Result<ExtConfig, ExtJsonError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| ExtJsonError(format!("not valid JSON: {e}")))?;
    let Value::Object(raw) = value else {
        return Err(ExtJsonError("must be a JSON object".into()));
    };
    let ext_enable = flag(&raw, "extEnable", true)?;
    let direct_commit = flag(&raw, "directCommit", false)?;
    let ext_appid = match raw.get("extAppid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(ExtJsonError(format!(
                "extAppid must be a number or a string, got {other}"
            )))
        }
    };
    for key in ["ext", "extPages", "window", "tabBar", "networkTimeout"] {
        if let Some(v) = raw.get(key) {
            if !v.is_object() && !v.is_null() {
                return Err(ExtJsonError(format!("{key} must be an object")));
            }
        }
    }
    Ok(ExtConfig {
        ext_enable,
        direct_commit,
        ext_appid,
        raw,
    })
}

fn page_error(page: &str, source: &str) -> BuildFailure {
    BuildFailure {
        errno: Errno::ExtPageUnknown,
        msg: format!(
            "{}: {source} names \"{page}\", which the template's app.json does not list",
            Errno::ExtPageUnknown.default_msg()
        ),
    }
}

/// The build: checks the configuration against the template and produces the `ext.json`
/// that goes beside the template's files. With `extEnable` false the custom part is ignored.
///
/// `extAppid`, when given, names the mini program by either of its ids: the numeric one
/// (Baidu's) or its wx appid (WeChat's `ext.json` carries that one).
pub fn build_ext_json(
    ext: &ExtConfig,
    app_id: i64,
    wx_appid: &str,
    template: &TemplateManifest,
) -> Result<String, BuildFailure> {
    if !ext.ext_enable {
        return Ok(r#"{"extEnable":false}"#.to_string());
    }
    if let Some(given) = &ext.ext_appid {
        if given != &app_id.to_string() && (wx_appid.is_empty() || given != wx_appid) {
            return Err(BuildFailure {
                errno: Errno::ExtAppidMismatch,
                msg: format!(
                    "{}: extAppid is {given}, the mini program is {app_id}",
                    Errno::ExtAppidMismatch.default_msg()
                ),
            });
        }
    }
    if let Some(Value::Object(pages)) = ext.raw.get("extPages") {
        for page in pages.keys() {
            if !template.has_page(page) {
                return Err(page_error(page, "extPages"));
            }
        }
    }
    if let Some(Value::Object(tab_bar)) = ext.raw.get("tabBar") {
        let list = tab_bar.get("list").and_then(Value::as_array);
        for item in list.into_iter().flatten() {
            match item.get("pagePath").and_then(Value::as_str) {
                Some(page) if template.has_page(page) => {}
                Some(page) => return Err(page_error(page, "tabBar.list")),
                None => {
                    return Err(BuildFailure {
                        errno: Errno::ExtPageUnknown,
                        msg: "tabBar.list: every item needs a pagePath".into(),
                    })
                }
            }
        }
    }
    let mut out = ext.raw.clone();
    // An instruction to the platform, not configuration for the mini program.
    out.remove("directCommit");
    out.insert("extEnable".into(), Value::Bool(true));
    serde_json::to_string(&Value::Object(out)).map_err(|e| BuildFailure {
        errno: Errno::TemplateParseError,
        msg: format!("cannot serialize ext.json: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(pages: &[&str]) -> TemplateManifest {
        TemplateManifest {
            prefix: String::new(),
            files: vec![],
            pages: pages.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn unparseable_or_non_object_ext_json_is_69004() {
        for bad in [
            "{",
            "[1]",
            "\"x\"",
            r#"{"extEnable":"maybe"}"#,
            r#"{"ext":3}"#,
        ] {
            let e = parse_ext_json(bad).expect_err(bad);
            assert_eq!(e.errno(), Errno::ExtJsonInvalid, "{bad}");
        }
    }

    #[test]
    fn flags_accept_booleans_and_their_strings() {
        let e = parse_ext_json(r#"{"extEnable":"true","directCommit":"false","extAppid":5}"#)
            .expect("parses");
        assert!(e.ext_enable && !e.direct_commit);
        assert_eq!(e.ext_appid.as_deref(), Some("5"));
    }

    #[test]
    fn ext_pages_and_tab_bar_must_name_template_pages() {
        let t = manifest(&["pages/index/index", "pages/about/about"]);
        let ok = parse_ext_json(
            r#"{"extPages":{"pages/about/about":{}},"tabBar":{"list":[{"pagePath":"pages/index/index"}]}}"#,
        )
        .expect("parses");
        assert!(build_ext_json(&ok, 1, "", &t).is_ok());
        let bad =
            parse_ext_json(r#"{"tabBar":{"list":[{"pagePath":"pages/index"}]}}"#).expect("parses");
        let f = build_ext_json(&bad, 1, "", &t).expect_err("unknown page");
        assert_eq!(f.errno, Errno::ExtPageUnknown);
        assert!(f.msg.contains("pages/index"), "{}", f.msg);
    }

    #[test]
    fn ext_enable_false_ignores_the_custom_part() {
        let t = manifest(&["pages/index/index"]);
        let e = parse_ext_json(r#"{"extEnable":false,"extPages":{"nope":{}},"extAppid":"9"}"#)
            .expect("parses");
        assert_eq!(
            build_ext_json(&e, 1, "", &t).expect("ignored"),
            r#"{"extEnable":false}"#
        );
    }

    #[test]
    fn ext_appid_of_another_app_fails_the_build() {
        let e = parse_ext_json(r#"{"extAppid":"100000282"}"#).expect("parses");
        let f = build_ext_json(&e, 7, "wx00000000000000aa", &manifest(&[])).expect_err("mismatch");
        assert_eq!(f.errno, Errno::ExtAppidMismatch);
    }

    #[test]
    fn ext_appid_may_name_the_mini_program_by_its_wx_appid() {
        let e = parse_ext_json(r#"{"extAppid":"wx00000000000000aa"}"#).expect("parses");
        assert!(build_ext_json(&e, 7, "wx00000000000000aa", &manifest(&[])).is_ok());
        let other = parse_ext_json(r#"{"extAppid":"wx00000000000000bb"}"#).expect("parses");
        let f = build_ext_json(&other, 7, "wx00000000000000aa", &manifest(&[]))
            .expect_err("another wx appid");
        assert_eq!(f.errno, Errno::ExtAppidMismatch);
        // An app without a wx appid is named by its numeric id only.
        assert!(build_ext_json(&e, 7, "", &manifest(&[])).is_err());
    }

    #[test]
    fn generated_ext_json_drops_direct_commit_and_keeps_the_rest() {
        let e = parse_ext_json(r#"{"extAppid":7,"directCommit":true,"ext":{"name":"x"}}"#)
            .expect("parses");
        let out: Value = serde_json::from_str(
            &build_ext_json(&e, 7, "wx00000000000000aa", &manifest(&[])).expect("built"),
        )
        .expect("json");
        assert_eq!(
            out,
            serde_json::json!({"extAppid":7,"ext":{"name":"x"},"extEnable":true})
        );
    }
}
