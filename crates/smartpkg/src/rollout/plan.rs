//! The rollout plan (`PLAN.toml`): what to ship, to whom, and how to release it. The format is
//! documented with a complete example in docs/rollout.md.

use std::collections::{BTreeMap, HashSet};

use anyhow::{bail, Context};
use serde::Deserialize;

/// What happens once a package passes its audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleasePolicy {
    /// Stop at "audit passed"; release by hand.
    None,
    /// Release each mini program as soon as it passes.
    All,
    /// The first `canaries` mini programs of the plan are released as they pass; the rest
    /// only once every canary is online.
    Canary,
}

/// What to do when the weekly audit quota is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnQuota {
    /// Stop submitting, finish what is in flight, and say when the quota renews; running the
    /// same command after that continues.
    #[default]
    Stop,
    /// Wait for the quota to renew and go on.
    Wait,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The platform [default: https://openapi.baidu.com].
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub template_id: i64,
    /// `user_version` of every package.
    pub version: String,
    /// `user_desc` of every package.
    pub description: String,
    /// What reviewers read (`content` of submitaudit) [default: the description].
    pub audit_content: Option<String>,
    #[serde(default = "default_release")]
    pub release: ReleasePolicy,
    /// With `release = "canary"`: how many mini programs go first.
    #[serde(default)]
    pub canaries: usize,
    /// Calls in flight at once [default: 8].
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub on_quota: OnQuota,
    /// The longest wait between two polls of a package's state, in ms [default: 30000].
    #[serde(default = "default_poll_max_ms")]
    pub poll_max_ms: u64,
    /// How long a transient failure (server down, busy) may last before the mini program is
    /// given up on, in seconds [default: 600].
    #[serde(default = "default_retry_for_s")]
    pub retry_for_s: u64,
    /// `ext_json`, rendered per mini program: `{{name}}` is replaced by the mini program's
    /// variable `name` (JSON-escaped), or `{{app_id}}` / `{{version}}`.
    pub ext_json: String,
    /// The third party's credentials, for mini programs given by refresh token.
    #[serde(default)]
    pub tp: TpCredentials,
    /// A push receiver for audit results; without it, the rollout polls.
    pub events: Option<EventsConfig>,
    /// The plan's own (Baidu-dialect) mini programs.
    #[serde(default)]
    pub apps: Vec<AppEntry>,
    /// More platforms the same release goes to, each in its own dialect.
    #[serde(default)]
    pub platforms: Vec<PlatformTarget>,
    /// Release through a staged plan the platform advances and halts on devices' reports
    /// (smartpkg's extension, docs/release-health.md), waiting for each to finish.
    pub staged: Option<StagedConfig>,
}

/// `[staged]`: each mini program's release is a staged release under an automatic plan; its
/// task waits until the plan finishes (online) or halts (stopped there, as a failure). With
/// `concurrency = 1` mini programs go one after another.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagedConfig {
    /// Rising percentages ending at 100 [default: the platform's default steps].
    pub steps: Option<String>,
}

impl StagedConfig {
    /// The percentage the plan starts at: its first step (1 with the platform's steps).
    pub fn first(&self) -> i64 {
        self.steps
            .as_deref()
            .and_then(|s| smartpkg_core::stage::parse_steps(s).ok())
            .and_then(|s| s.first().copied())
            .unwrap_or(1)
    }
}

/// Another platform of the rollout: where it is, how to speak to it, which template there
/// is this release, and its mini programs. Only the WeChat dialect is taken here; the plan's
/// own settings (`base_url`, `template_id`, `[tp]`, `[[apps]]`) are its Baidu platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformTarget {
    /// Names the platform in the progress, the report and its state file.
    pub name: String,
    /// `wechat`.
    pub dialect: String,
    /// [default: https://api.weixin.qq.com]
    pub base_url: Option<String>,
    /// The template of this release on that platform.
    pub template_id: i64,
    pub component_appid: String,
    /// The component access token [or the environment variable SPKG_COMPONENT_TOKEN].
    pub component_token: Option<String>,
    /// With `release = "canary"`: how many of this platform's mini programs go first there
    /// [default: 1].
    pub canaries: Option<usize>,
    pub apps: Vec<WxAppEntry>,
}

impl PlatformTarget {
    pub fn base_url(&self) -> &str {
        self.base_url
            .as_deref()
            .unwrap_or(smartpkg_client::wechat::WECHAT_BASE_URL)
    }

    pub fn canaries(&self) -> usize {
        self.canaries.unwrap_or(1)
    }
}

/// A WeChat-dialect mini program: its appid, and the refresh token its authorization gave
/// (its access tokens are always fetched for this appid, so none can be another's).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WxAppEntry {
    pub appid: String,
    pub refresh_token: String,
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpCredentials {
    /// The third party's access token [or the environment variable SPKG_TP_TOKEN].
    pub tp_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// The address the platform pushes to (the third party's event URL points here).
    pub listen: std::net::SocketAddr,
    pub token: String,
    pub aes_key: String,
    pub client_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppEntry {
    pub app_id: i64,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
}

fn default_base_url() -> String {
    smartpkg_client::BAIDU_BASE_URL.to_string()
}
fn default_release() -> ReleasePolicy {
    ReleasePolicy::All
}
fn default_concurrency() -> usize {
    8
}
fn default_poll_max_ms() -> u64 {
    30_000
}
fn default_retry_for_s() -> u64 {
    600
}

impl Plan {
    pub fn parse(text: &str) -> anyhow::Result<Plan> {
        let plan: Plan = toml::from_str(text).context("the plan is not valid")?;
        Ok(plan)
    }

    /// Where each mini program should end: audit passed with policy `none`, online otherwise.
    pub fn goal(&self) -> super::state::Step {
        match self.release {
            ReleasePolicy::None => super::state::Step::Passed,
            _ => super::state::Step::Online,
        }
    }

    pub fn audit_content(&self) -> &str {
        self.audit_content.as_deref().unwrap_or(&self.description)
    }

    /// Every problem of the plan at once (empty when it is sound), with the environment's TP
    /// token as a fallback.
    pub fn problems(&self, tp_token_from_env: bool) -> Vec<String> {
        let mut p = vec![];
        if smartpkg_client::Client::new(&self.base_url).is_err() {
            p.push(format!(
                "base_url {:?} is not an http(s) URL",
                self.base_url
            ));
        }
        if self.version.trim().is_empty() {
            p.push("version is empty".into());
        }
        if self.description.trim().is_empty() {
            p.push("description is empty".into());
        }
        if let Some(staged) = &self.staged {
            if let Some(Err(why)) = staged
                .steps
                .as_deref()
                .map(smartpkg_core::stage::parse_steps)
            {
                p.push(format!("[staged] steps: {why}"));
            }
            if self.release == ReleasePolicy::None {
                p.push("[staged] needs release = \"all\" or \"canary\"".into());
            }
            if self.base_url.trim_end_matches('/')
                == smartpkg_client::BAIDU_BASE_URL.trim_end_matches('/')
            {
                p.push(
                    "[staged] is smartpkg's extension: openapi.baidu.com has no staged releases"
                        .into(),
                );
            }
        }
        if !(1..=256).contains(&self.concurrency) {
            p.push(format!("concurrency is 1 to 256, not {}", self.concurrency));
        }
        if self.apps.is_empty() && self.platforms.iter().all(|t| t.apps.is_empty()) {
            p.push("no mini programs ([[apps]], or [[platforms.apps]])".into());
        }
        let mut names = HashSet::new();
        for t in &self.platforms {
            let at = format!("platform {:?}", t.name);
            if t.name.trim().is_empty()
                || !t
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                p.push(format!(
                    "{at}: a platform's name is letters, digits, '-' and '_' (it names a file)"
                ));
            }
            if !names.insert(t.name.as_str()) {
                p.push(format!("{at} is listed twice"));
            }
            if t.dialect != "wechat" {
                p.push(format!(
                    "{at}: dialect {:?} is not one of [[platforms]]'s (wechat); the plan's own settings are its Baidu platform",
                    t.dialect
                ));
            }
            if smartpkg_client::wechat::WechatClient::new(t.base_url()).is_err() {
                p.push(format!(
                    "{at}: base_url {:?} is not an http(s) URL",
                    t.base_url()
                ));
            }
            if t.component_token.is_none() {
                p.push(format!(
                    "{at}: give component_token (or set SPKG_COMPONENT_TOKEN)"
                ));
            }
            if t.apps.is_empty() {
                p.push(format!("{at}: no mini programs ([[platforms.apps]])"));
            }
            if self.release == ReleasePolicy::Canary
                && !(1..=t.apps.len().max(1)).contains(&t.canaries())
            {
                p.push(format!(
                    "{at}: canaries is 1 to its number of mini programs ({}), not {}",
                    t.apps.len(),
                    t.canaries()
                ));
            }
            let mut seen = HashSet::new();
            for a in &t.apps {
                if !seen.insert(a.appid.as_str()) {
                    p.push(format!("{at}: appid {} is listed twice", a.appid));
                }
                if a.appid.len() != 18 || !a.appid.starts_with("wx") {
                    p.push(format!("{at}: appid {:?} is not a wx appid", a.appid));
                }
                if let Err(e) = self.render_wx(a) {
                    p.push(format!("{at}: app {}: {e:#}", a.appid));
                }
            }
        }
        match self.release {
            ReleasePolicy::Canary if self.canaries == 0 || self.canaries > self.apps.len() => {
                p.push(format!(
                    "release = \"canary\" needs canaries between 1 and the number of mini programs ({}), not {}",
                    self.apps.len(),
                    self.canaries
                ))
            }
            ReleasePolicy::None | ReleasePolicy::All if self.canaries != 0 => p.push(
                "canaries is only meaningful with release = \"canary\"".into(),
            ),
            _ => {}
        }
        let mut seen = HashSet::new();
        let tp_token = self.tp.tp_token.is_some() || tp_token_from_env;
        for a in &self.apps {
            if !seen.insert(a.app_id) {
                p.push(format!("app {} is listed twice", a.app_id));
            }
            match (&a.access_token, &a.refresh_token) {
                (None, None) => p.push(format!(
                    "app {}: give access_token, or refresh_token (with the third party's tp_token)",
                    a.app_id
                )),
                (_, Some(_)) if !tp_token => p.push(format!(
                    "app {}: a refresh_token needs the third party's token ([tp] tp_token or SPKG_TP_TOKEN)",
                    a.app_id
                )),
                _ => {}
            }
            if let Err(e) = self.render(a) {
                p.push(format!("app {}: {e:#}", a.app_id));
            }
        }
        if let Some(ev) = &self.events {
            if smartpkg_push::aes_key(&ev.aes_key).is_err() {
                p.push("events.aes_key must be 43 base64 characters".into());
            }
        }
        p
    }

    /// The mini program's `ext_json`: the template with its variables, checked to be JSON.
    pub fn render(&self, app: &AppEntry) -> anyhow::Result<String> {
        self.render_vars(&app.app_id.to_string(), &app.vars)
    }

    /// A WeChat-dialect mini program's `ext_json`: `{{app_id}}` is its appid as a JSON
    /// string (quotes included), which `extAppid` takes.
    pub fn render_wx(&self, app: &WxAppEntry) -> anyhow::Result<String> {
        let quoted = serde_json::Value::String(app.appid.clone()).to_string();
        self.render_vars(&quoted, &app.vars)
    }

    fn render_vars(
        &self,
        app_id: &str,
        vars: &BTreeMap<String, toml::Value>,
    ) -> anyhow::Result<String> {
        let mut out = String::with_capacity(self.ext_json.len() + 64);
        let mut rest = self.ext_json.as_str();
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                bail!("ext_json has a {{{{ without its }}}}");
            };
            let name = after[..end].trim();
            out.push_str(&self.var(app_id, vars, name)?);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        serde_json::from_str::<serde_json::Value>(&out)
            .with_context(|| format!("the rendered ext_json is not JSON: {out}"))?;
        Ok(out)
    }

    fn var(
        &self,
        app_id: &str,
        vars: &BTreeMap<String, toml::Value>,
        name: &str,
    ) -> anyhow::Result<String> {
        match name {
            "app_id" => return Ok(app_id.to_string()),
            "version" => return Ok(escape(&self.version)),
            _ => {}
        }
        match vars.get(name) {
            Some(toml::Value::String(s)) => Ok(escape(s)),
            Some(toml::Value::Integer(i)) => Ok(i.to_string()),
            Some(toml::Value::Float(f)) => Ok(f.to_string()),
            Some(toml::Value::Boolean(b)) => Ok(b.to_string()),
            Some(other) => bail!(
                "variable {name} must be a string, number or boolean, not {}",
                other.type_str()
            ),
            None => {
                bail!("ext_json uses {{{{{name}}}}}, which this mini program's vars do not set")
            }
        }
    }
}

/// A string's JSON escape without the quotes: placed inside a JSON string it reads back as
/// the string itself, whatever it holds.
fn escape(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"
base_url = "http://127.0.0.1:1"
template_id = 3
version = "2.0.0"
description = "spring"
ext_json = '{"extEnable":true,"extAppid":{{app_id}},"ext":{"shop":"{{shop}}","v":"{{version}}"}}'

[[apps]]
app_id = 7
access_token = "45.x"
vars = { shop = "North \"quoted\"" }
"#;

    #[test]
    fn variables_are_rendered_json_escaped() {
        let plan = Plan::parse(PLAN).expect("plan");
        let ext = plan.render(&plan.apps[0]).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&ext).expect("json");
        assert_eq!(v["ext"]["shop"], "North \"quoted\"");
        assert_eq!(v["extAppid"], 7);
        assert_eq!(v["ext"]["v"], "2.0.0");
        assert!(
            plan.problems(false).is_empty(),
            "{:?}",
            plan.problems(false)
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = PLAN
            .replace("access_token = \"45.x\"", "refresh_token = \"46.x\"")
            .replace("vars = { shop = \"North \\\"quoted\\\"\" }", "")
            + "\n[[apps]]\napp_id = 7\naccess_token = \"a\"\nvars = { shop = \"x\" }\n";
        let plan = Plan::parse(&text).expect("plan");
        let problems = plan.problems(false).join("\n");
        assert!(
            problems.contains("needs the third party's token"),
            "{problems}"
        );
        assert!(problems.contains("do not set"), "{problems}");
        assert!(problems.contains("listed twice"), "{problems}");
    }

    #[test]
    fn a_wechat_platform_renders_its_appid_as_a_string_and_its_problems_are_listed() {
        let text = format!(
            "{PLAN}\n[[platforms]]\nname = \"wechat\"\ndialect = \"wechat\"\ntemplate_id = 9\ncomponent_appid = \"wx00000000000000aa\"\ncomponent_token = \"t\"\n\n[[platforms.apps]]\nappid = \"wx0123456789abcdef\"\nrefresh_token = \"r\"\nvars = {{ shop = \"x\" }}\n"
        );
        let plan = Plan::parse(&text).expect("plan");
        assert!(
            plan.problems(false).is_empty(),
            "{:?}",
            plan.problems(false)
        );
        let ext: serde_json::Value =
            serde_json::from_str(&plan.render_wx(&plan.platforms[0].apps[0]).expect("renders"))
                .expect("json");
        assert_eq!(ext["extAppid"], "wx0123456789abcdef");
        let bad = text
            .replace("dialect = \"wechat\"", "dialect = \"alipay\"")
            .replace("component_token = \"t\"\n", "")
            .replace("appid = \"wx0123456789abcdef\"", "appid = \"12\"");
        let problems = Plan::parse(&bad).expect("plan").problems(false).join("\n");
        for want in ["alipay", "component_token", "not a wx appid"] {
            assert!(problems.contains(want), "{want}: {problems}");
        }
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let err = Plan::parse(&format!("{PLAN}\nconcurency = 3\n")).expect_err("typo");
        assert!(format!("{err:#}").contains("concurency"), "{err:#}");
    }
}

#[cfg(test)]
mod doc_example {
    use super::*;

    /// The complete example of docs/rollout.md is a valid plan.
    #[test]
    fn the_documented_example_plan_is_valid() {
        let doc = include_str!("../../../../docs/rollout.md");
        let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("its end");
        let plan = Plan::parse(&doc[start..end]).expect("the example parses");
        assert_eq!(plan.problems(false), Vec::<String>::new());
        let ext: serde_json::Value =
            serde_json::from_str(&plan.render(&plan.apps[1]).expect("renders")).expect("json");
        assert_eq!(ext["ext"]["shopName"], "Lakeside \"Noodles\"");
    }
}
