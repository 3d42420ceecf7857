//! The third party's commands: credentials (flags, environment, a named profile), output
//! (tables or `--json`), and how an error is told in one line.
//!
//! Environment variables of the toolkit start with `SPKG_`, not `SMARTPKG_`: every
//! `SMARTPKG_*` variable is a server setting, and `serve` refuses names it does not know.

pub mod account;
pub mod auth;
pub mod device;
pub mod events;
pub mod pkg;
pub mod template;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use serde::Deserialize;
use smartpkg_client::{Client, ClientError, BAIDU_BASE_URL};

/// Options every toolkit command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Globals {
    /// The platform: the real Baidu host or a smartpkg server.
    #[arg(long, env = "SPKG_BASE_URL", global = true)]
    pub base_url: Option<String>,
    /// A mini program's access token (package calls).
    #[arg(long, env = "SPKG_ACCESS_TOKEN", global = true, hide_env_values = true)]
    pub access_token: Option<String>,
    /// The third party's access token (template and authorization calls).
    #[arg(long, env = "SPKG_TP_TOKEN", global = true, hide_env_values = true)]
    pub tp_token: Option<String>,
    /// A smartpkg server's admin token (`template push`).
    #[arg(long, env = "SPKG_ADMIN_TOKEN", global = true, hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A named profile of the config file supplies what flags and environment leave out.
    #[arg(long, env = "SPKG_PROFILE", global = true)]
    pub profile: Option<String>,
    /// The profiles file [default: $XDG_CONFIG_HOME/smartpkg/profiles.toml or
    /// ~/.config/smartpkg/profiles.toml].
    #[arg(long, env = "SPKG_CONFIG", global = true)]
    pub config_file: Option<PathBuf>,
    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// One profile of the config file: `[profiles.NAME]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub base_url: Option<String>,
    pub access_token: Option<String>,
    pub tp_token: Option<String>,
    pub admin_token: Option<String>,
    pub tp_id: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

fn default_config_file() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("smartpkg/profiles.toml"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/smartpkg/profiles.toml"))
}

/// Credentials after flags, environment and profile are merged (in that order of precedence).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub base_url: String,
    access_token: Option<String>,
    tp_token: Option<String>,
    admin_token: Option<String>,
    pub tp_id: Option<i64>,
    pub json: bool,
}

impl Globals {
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
        let profile = self.load_profile()?;
        Ok(Resolved {
            base_url: self
                .base_url
                .clone()
                .or(profile.base_url)
                .unwrap_or_else(|| BAIDU_BASE_URL.to_string()),
            access_token: self.access_token.clone().or(profile.access_token),
            tp_token: self.tp_token.clone().or(profile.tp_token),
            admin_token: self.admin_token.clone().or(profile.admin_token),
            tp_id: profile.tp_id,
            json: self.json,
        })
    }

    fn load_profile(&self) -> anyhow::Result<Profile> {
        let explicit = self.config_file.is_some();
        let Some(path) = self.config_file.clone().or_else(default_config_file) else {
            return Ok(Profile::default());
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // A missing default file is normal; a missing named one is a mistake.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return match &self.profile {
                    Some(p) => Err(anyhow!(
                        "profile {p:?} asked for, but {} does not exist",
                        path.display()
                    )),
                    None => Ok(Profile::default()),
                };
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let file: ProfilesFile =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        let name = self.profile.as_deref().unwrap_or("default");
        match file.profiles.get(name) {
            Some(p) => Ok(p.clone()),
            None if self.profile.is_none() => Ok(Profile::default()),
            None => Err(anyhow!(
                "no profile {name:?} in {} (it has: {})",
                path.display(),
                file.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

impl Resolved {
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::builder(&self.base_url)
            .user_agent(concat!("smartpkg/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow!("{e}"))
    }

    pub fn access_token(&self) -> anyhow::Result<&str> {
        self.access_token.as_deref().ok_or_else(|| {
            anyhow!("a mini program's access token is needed: --access-token, SPKG_ACCESS_TOKEN or access_token in the profile")
        })
    }

    pub fn tp_token(&self) -> anyhow::Result<&str> {
        self.tp_token.as_deref().ok_or_else(|| {
            anyhow!("the third party's access token is needed: --tp-token, SPKG_TP_TOKEN or tp_token in the profile")
        })
    }

    pub fn admin_token(&self) -> anyhow::Result<&str> {
        self.admin_token.as_deref().ok_or_else(|| {
            anyhow!("the server's admin token is needed: --admin-token, SPKG_ADMIN_TOKEN or admin_token in the profile")
        })
    }
}

/// One line that says what went wrong; for a refusal, the errno and its meaning.
pub fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Api { errno, msg } => {
            let meaning = errno.default_msg();
            // Our messages start with the meaning; do not say it twice.
            if msg.starts_with(meaning) || msg.is_empty() {
                format!(
                    "errno {}: {}",
                    errno.code(),
                    if msg.is_empty() { meaning } else { msg }
                )
            } else {
                format!("errno {} ({meaning}): {msg}", errno.code())
            }
        }
        ClientError::Gateway { code, msg } => {
            let hint = match code {
                110 => " — the token is unknown or revoked",
                111 => " — the token expired; refresh it (smartpkg auth refresh)",
                _ => "",
            };
            format!("gateway error {code}: {msg}{hint}")
        }
        other => other.to_string(),
    }
}

/// A client error as an anyhow error carrying that one line.
pub fn fail(e: ClientError) -> anyhow::Error {
    anyhow!(describe(&e))
}

/// Prints rows as an aligned table with a header (or nothing but the header's absence note).
/// Cells are values others wrote (a plan, a package's description, an audit reason): their
/// control and invisible format characters are shown escaped, so none can move the cursor,
/// recolour or reorder the terminal.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| smartpkg_core::text::escape_invisible(c).into_owned())
                .collect()
        })
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = headers.iter().map(|h| display_width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(display_width(c));
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(display_width(c));
            out.push_str(c);
            if i + 1 < cells.len() {
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    if rows.is_empty() {
        println!("(none)");
    }
}

/// Columns a string takes on a terminal: CJK characters take two.
fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            if (c as u32) >= 0x1100 && !c.is_ascii() {
                2
            } else {
                1
            }
        })
        .sum()
}

/// Prints a value as pretty JSON.
pub fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", terminal_safe_json(serde_json::to_string_pretty(v)?));
    Ok(())
}

/// JSON text with the invisible characters serde_json leaves raw (DEL, C1 controls, format
/// and separator characters) written as `\uXXXX` escapes: the same JSON value, but safe to
/// print on a terminal. Outside strings JSON holds none of them, so this only touches strings.
pub fn terminal_safe_json(json: String) -> String {
    if !json.chars().any(smartpkg_core::text::is_invisible) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if smartpkg_core::text::is_invisible(c) && !matches!(c, '\n' | '\t' | '\r' | ' ') {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `@path` reads a file; `-` reads standard input; anything else is the value itself.
pub fn value_or_file(v: &str) -> anyhow::Result<String> {
    if let Some(path) = v.strip_prefix('@') {
        return std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"));
    }
    if v == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        return Ok(s);
    }
    Ok(v.to_string())
}

/// Sends a prepared admin API request and reads its answer as the server's own answer type
/// (`smartpkg_server::admin::answers`); a refusal becomes one line with the status and the
/// server's message (`what` names the thing refused).
pub async fn admin_call<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
    what: &str,
) -> anyhow::Result<T> {
    use anyhow::Context;
    let resp = req.send().await.context("the admin API did not answer")?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .context("the admin API answered something other than JSON")?;
    if !status.is_success() {
        let why = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        anyhow::bail!(
            "the server refused {what} (HTTP {}): {why}",
            status.as_u16()
        );
    }
    serde_json::from_value(body)
        .with_context(|| format!("the admin API answered {what} in an unexpected shape"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cjk_text_counts_two_columns() {
        assert_eq!(display_width("上传中"), 6);
        assert_eq!(display_width("1.0.0"), 5);
    }

    #[test]
    fn a_refusal_is_told_with_its_errno_and_meaning_once() {
        let e = ClientError::Api {
            errno: smartpkg_types::Errno::PackageNotFound,
            msg: "包不存在".into(),
        };
        assert_eq!(describe(&e), "errno 69005: 包不存在");
        let e = ClientError::Api {
            errno: smartpkg_types::Errno::AuditQuotaExceeded,
            msg: "used 10 of 10".into(),
        };
        assert_eq!(
            describe(&e),
            "errno 69013 (送审额度已超出当前周期限制): used 10 of 10"
        );
    }
}
