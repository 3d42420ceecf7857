//! The automatic audit used in sandboxes: pass unless a rule fails, then fail with the
//! rule's reason (the wording follows the reasons Baidu's reviewers give).

use crate::archive::TemplateManifest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Fail when the mini program's name has more characters than this; None = no limit.
    pub max_name_chars: Option<usize>,
}

/// `Err(reason)` when a rule fails.
pub fn evaluate(app_name: &str, template: &TemplateManifest, rules: &Rules) -> Result<(), String> {
    if let Some(max) = rules.max_name_chars {
        if app_name.chars().count() > max {
            return Err(format!("名称过长（名称控制在{max}个字以内）。"));
        }
    }
    let missing = template.pages_without_files();
    if !missing.is_empty() {
        return Err(format!(
            "页面文件缺失：app.json 声明的页面 {} 在代码包中没有对应的 .swan 文件。",
            missing.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: &[&str]) -> TemplateManifest {
        TemplateManifest {
            prefix: String::new(),
            files: files.iter().map(|f| f.to_string()).collect(),
            pages: vec!["pages/index/index".into()],
        }
    }

    #[test]
    fn a_long_name_fails_with_the_limit_in_the_reason() {
        let r = evaluate(
            "一二三四五六七八九十一",
            &manifest(&["pages/index/index.swan"]),
            &Rules {
                max_name_chars: Some(10),
            },
        );
        assert_eq!(r, Err("名称过长（名称控制在10个字以内）。".to_string()));
        assert!(evaluate(
            "一二三四五六七八九十",
            &manifest(&["pages/index/index.swan"]),
            &Rules {
                max_name_chars: Some(10)
            }
        )
        .is_ok());
    }

    #[test]
    fn a_page_without_its_file_fails() {
        let r = evaluate(
            "ok",
            &manifest(&["app.json"]),
            &Rules {
                max_name_chars: None,
            },
        );
        assert!(r.expect_err("missing").contains("pages/index/index"));
    }
}
