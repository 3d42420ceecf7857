//! Settings: defaults, then the config file (TOML, keys in lower case: `build_delay_ms = 0`),
//! then `SMARTPKG_<NAME>` environment variables, then command-line flags. Every setting has
//! one name used in all three places; `docs/configuration.md` lists them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::FixedOffset;
use smartpkg_core::archive::Limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditMode {
    /// Decisions come from reviewers through the admin API.
    Manual,
    /// Sandbox: pass after `auto_audit_delay_ms` unless a rule fails.
    Auto,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub admin_token: Option<String>,
    pub build_delay_ms: u64,
    pub rollback_delay_ms: u64,
    /// Milliseconds to wait before each retry of a push; its length is the number of retries.
    pub push_retry_schedule_ms: Vec<u64>,
    pub push_timeout_ms: u64,
    pub allow_private_targets: bool,
    pub audit_mode: AuditMode,
    pub auto_audit_delay_ms: u64,
    /// Automatic audit fails names longer than this many characters; 0 = no limit.
    pub auto_audit_max_name_chars: usize,
    /// Weekly audit submissions per third party; -1 = unlimited.
    pub audit_quota_per_week: i64,
    pub app_token_ttl_s: u64,
    /// Seconds between ticket pushes to each TP's authorization-event URL.
    pub ticket_interval_s: u64,
    /// How long a ticket stays valid: three intervals by default, so one missed push
    /// (or two) does not lock a third party out.
    pub ticket_ttl_s: u64,
    pub tp_token_ttl_s: u64,
    /// Refresh tokens last ten years on the real platform (and work once).
    pub refresh_token_ttl_s: u64,
    /// The time zone of `commit_time` and of the quota week (Baidu shows Beijing time).
    pub utc_offset: FixedOffset,
    /// Largest request body on every route but template uploads.
    pub max_body_bytes: usize,
    pub archive: Limits,
    pub job_lease_ms: u64,
    pub job_concurrency: usize,
    pub log_format: String,
    /// The log filter, in `tracing` directive syntax (`info`, `smartpkg_server=debug`).
    pub log: String,
    /// The public base URL of this server, used in the links QR codes carry; unset = the
    /// address it listens on.
    pub public_url: Option<String>,
    /// Wrong owner credentials allowed per mini program within `owner_lockout_s`.
    pub owner_attempts_per_app: u32,
    /// Wrong owner credentials allowed per client address (IPv6: per /64) in that window.
    pub owner_attempts_per_client: u32,
    pub owner_lockout_s: u64,
    /// Connections served at once (also bounded by the descriptor limit).
    pub max_connections: usize,
    /// Time allowed for a request head, and for an idle kept-alive connection.
    pub header_read_timeout_ms: u64,
    /// A connection on which nothing moves for this long is closed.
    pub idle_timeout_ms: u64,
    /// A request must be read and answered within this time (408 otherwise).
    pub request_timeout_ms: u64,
    /// After a shutdown signal, connections still open after this long are cut.
    pub shutdown_grace_ms: u64,
    /// PEM certificate chain and private key: serve HTTPS instead of HTTP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Template archives received and checked at once (each is held in memory meanwhile).
    pub template_upload_concurrency: usize,
    /// Push attempts in flight at once (their own lane: builds never wait for them).
    pub push_concurrency: usize,
    /// Push attempts in flight at once to one third party.
    pub push_per_target: usize,
    /// Consecutive failed attempts after which a target is put on hold (0 = never).
    pub push_hold_after_failures: i64,
    /// The first hold's length; each further failure doubles it, up to `push_hold_max_ms`.
    pub push_hold_base_ms: u64,
    pub push_hold_max_ms: u64,
    /// An HTTP proxy for pushes (`http://host:port`); unset = direct. Proxies from the
    /// environment (`HTTP_PROXY`…) are never used for pushes.
    pub push_proxy: Option<String>,
    /// Write calls (upload, submitaudit, release, rollback, withdraw) per mini program per
    /// minute, also the burst; 0 = unlimited.
    pub app_writes_per_minute: u32,
    /// Write calls per third party per minute (its mini programs' writes and its own:
    /// pre-auth codes, template changes, code exchanges); 0 = unlimited.
    pub tp_writes_per_minute: u32,
    /// Seconds between janitor runs.
    pub janitor_interval_s: u64,
    /// How long used codes and used refresh tokens are kept past their use (to recognise a
    /// replay) before the janitor deletes them.
    pub used_credential_retention_s: u64,
    /// How long a retired package keeps its ext_json before the janitor drops it.
    pub retired_package_retention_s: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8420)),
            data_dir: PathBuf::from("./smartpkg-data"),
            database_url: None,
            admin_token: None,
            build_delay_ms: 3000,
            rollback_delay_ms: 3000,
            push_retry_schedule_ms: [5, 300, 1800, 7200, 18000, 36000, 36000]
                .map(|s: u64| s * 1000)
                .to_vec(),
            push_timeout_ms: 5000,
            allow_private_targets: false,
            audit_mode: AuditMode::Manual,
            auto_audit_delay_ms: 3000,
            auto_audit_max_name_chars: 0,
            audit_quota_per_week: -1,
            app_token_ttl_s: 3600,
            ticket_interval_s: 600,
            ticket_ttl_s: 1800,
            tp_token_ttl_s: 2_592_000,
            refresh_token_ttl_s: 10 * 365 * 24 * 3600,
            utc_offset: FixedOffset::east_opt(8 * 3600).unwrap_or_else(utc),
            max_body_bytes: 1 << 20,
            archive: Limits::default(),
            job_lease_ms: 30_000,
            job_concurrency: 32,
            log_format: "text".into(),
            log: "info".into(),
            public_url: None,
            owner_attempts_per_app: 10,
            owner_attempts_per_client: 30,
            owner_lockout_s: 900,
            max_connections: 4096,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            request_timeout_ms: 60_000,
            shutdown_grace_ms: 10_000,
            tls_cert: None,
            tls_key: None,
            template_upload_concurrency: 2,
            push_concurrency: 128,
            push_per_target: 4,
            push_hold_after_failures: 10,
            push_hold_base_ms: 30_000,
            push_hold_max_ms: 3_600_000,
            push_proxy: None,
            app_writes_per_minute: 60,
            tp_writes_per_minute: 1200,
            janitor_interval_s: 3600,
            used_credential_retention_s: 30 * 24 * 3600,
            retired_package_retention_s: 7 * 24 * 3600,
        }
    }
}

fn utc() -> FixedOffset {
    FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!("0 is a valid offset"))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("unknown setting `{0}` (see docs/configuration.md)")]
    Unknown(String),
    #[error("setting `{name}` = {value:?}: {why}")]
    Invalid {
        name: String,
        value: String,
        why: String,
    },
}

fn invalid(name: &str, value: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        why: why.into(),
    }
}

fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| invalid(name, v, "expected a whole number"))
}

fn positive<T: std::str::FromStr + PartialEq + Default>(
    name: &str,
    v: &str,
) -> Result<T, ConfigError> {
    let n: T = num(name, v)?;
    if n == T::default() {
        return Err(invalid(name, v, "must be at least 1"));
    }
    Ok(n)
}

fn boolean(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(invalid(name, v, "expected true or false")),
    }
}

fn offset(name: &str, v: &str) -> Result<FixedOffset, ConfigError> {
    let t = v.trim();
    if t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("utc") {
        return Ok(utc());
    }
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(invalid(name, v, "expected an offset like +08:00")),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let secs = num::<i32>(name, h)? * 3600 + num::<i32>(name, m)? * 60;
    FixedOffset::east_opt(sign * secs).ok_or_else(|| invalid(name, v, "offset out of range"))
}

impl Settings {
    /// Applies one named setting; names are the lower-case form of `SMARTPKG_<NAME>`.
    pub fn set(&mut self, name: &str, v: &str) -> Result<(), ConfigError> {
        match name {
            "listen" => {
                self.listen = v
                    .trim()
                    .parse()
                    .map_err(|_| invalid(name, v, "expected HOST:PORT, e.g. 127.0.0.1:8420"))?
            }
            "data_dir" => self.data_dir = PathBuf::from(v),
            "database_url" => {
                self.database_url = Some(v.to_string()).filter(|s| !s.trim().is_empty())
            }
            "admin_token" => {
                // Trimmed as a presented token is, so a stray newline from a secrets file
                // cannot make the configured token impossible to present.
                let t = v.trim();
                if t.is_empty() {
                    return Err(invalid(
                        name,
                        "<hidden>",
                        "is empty (after trimming white space)",
                    ));
                }
                if t.len() < 16 || t.chars().any(char::is_control) {
                    return Err(invalid(
                        name,
                        "<hidden>",
                        "must be at least 16 characters, without control characters",
                    ));
                }
                self.admin_token = Some(t.to_string())
            }
            "build_delay_ms" => self.build_delay_ms = num(name, v)?,
            "rollback_delay_ms" => self.rollback_delay_ms = num(name, v)?,
            "push_retry_schedule" => {
                // Seconds, as the contract says; fractions are accepted (tests use them).
                let s = v
                    .split(',')
                    .map(|p| match p.trim().parse::<f64>() {
                        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok((secs * 1000.0) as u64),
                        _ => Err(invalid(
                            name,
                            v,
                            "expected seconds separated by commas, e.g. 5,300,1800",
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.push_retry_schedule_ms = s
            }
            "push_timeout_ms" => self.push_timeout_ms = num(name, v)?,
            "allow_private_targets" => self.allow_private_targets = boolean(name, v)?,
            "audit_mode" => {
                self.audit_mode = match v.trim().to_ascii_lowercase().as_str() {
                    "manual" => AuditMode::Manual,
                    "auto" => AuditMode::Auto,
                    _ => return Err(invalid(name, v, "expected manual or auto")),
                }
            }
            "auto_audit_delay_ms" => self.auto_audit_delay_ms = num(name, v)?,
            "auto_audit_max_name_chars" => self.auto_audit_max_name_chars = num(name, v)?,
            "audit_quota_per_week" => {
                let q: i64 = num(name, v)?;
                if q < -1 {
                    return Err(invalid(name, v, "expected -1 (unlimited) or a count"));
                }
                self.audit_quota_per_week = q
            }
            "app_token_ttl_s" => self.app_token_ttl_s = num(name, v)?,
            "ticket_interval_s" => {
                self.ticket_interval_s = num(name, v)?;
                if self.ticket_interval_s == 0 {
                    return Err(invalid(name, v, "must be at least 1"));
                }
            }
            "ticket_ttl_s" => self.ticket_ttl_s = num(name, v)?,
            "tp_token_ttl_s" => self.tp_token_ttl_s = num(name, v)?,
            "refresh_token_ttl_s" => self.refresh_token_ttl_s = num(name, v)?,
            "utc_offset" => self.utc_offset = offset(name, v)?,
            "max_body_bytes" => self.max_body_bytes = num(name, v)?,
            "max_template_bytes" => self.archive.max_archive_bytes = num(name, v)?,
            "max_template_entries" => self.archive.max_entries = num(name, v)?,
            "max_template_entry_bytes" => self.archive.max_entry_bytes = num(name, v)?,
            "max_template_expanded_bytes" => self.archive.max_total_bytes = num(name, v)?,
            "max_template_ratio" => self.archive.max_ratio = num(name, v)?,
            "job_lease_ms" => self.job_lease_ms = num(name, v)?,
            "job_concurrency" => {
                self.job_concurrency = num(name, v)?;
                if self.job_concurrency == 0 {
                    return Err(invalid(name, v, "must be at least 1"));
                }
            }
            "log_format" => match v {
                "text" | "json" => self.log_format = v.to_string(),
                _ => return Err(invalid(name, v, "expected text or json")),
            },
            "log" => self.log = v.to_string(),
            "public_url" => {
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(invalid(name, v, "expected an http:// or https:// URL"));
                }
                self.public_url = Some(v.trim_end_matches('/').to_string())
            }
            "owner_attempts_per_app" => self.owner_attempts_per_app = positive(name, v)?,
            "owner_attempts_per_client" => self.owner_attempts_per_client = positive(name, v)?,
            "owner_lockout_s" => self.owner_lockout_s = positive(name, v)?,
            "max_connections" => self.max_connections = positive(name, v)?,
            "header_read_timeout_ms" => self.header_read_timeout_ms = positive(name, v)?,
            "idle_timeout_ms" => self.idle_timeout_ms = positive(name, v)?,
            "request_timeout_ms" => self.request_timeout_ms = positive(name, v)?,
            "shutdown_grace_ms" => self.shutdown_grace_ms = num(name, v)?,
            "tls_cert" => self.tls_cert = Some(PathBuf::from(v)).filter(|_| !v.trim().is_empty()),
            "tls_key" => self.tls_key = Some(PathBuf::from(v)).filter(|_| !v.trim().is_empty()),
            "template_upload_concurrency" => self.template_upload_concurrency = positive(name, v)?,
            "push_concurrency" => self.push_concurrency = positive(name, v)?,
            "push_per_target" => self.push_per_target = positive(name, v)?,
            "push_hold_after_failures" => self.push_hold_after_failures = num(name, v)?,
            "push_hold_base_ms" => self.push_hold_base_ms = positive(name, v)?,
            "push_hold_max_ms" => self.push_hold_max_ms = positive(name, v)?,
            "push_proxy" => {
                let t = v.trim();
                if !t.is_empty() && url::Url::parse(t).is_err() {
                    return Err(invalid(
                        name,
                        v,
                        "expected a proxy URL such as http://proxy:3128",
                    ));
                }
                self.push_proxy = Some(t.to_string()).filter(|p| !p.is_empty())
            }
            "app_writes_per_minute" => self.app_writes_per_minute = num(name, v)?,
            "tp_writes_per_minute" => self.tp_writes_per_minute = num(name, v)?,
            "janitor_interval_s" => self.janitor_interval_s = positive(name, v)?,
            "used_credential_retention_s" => self.used_credential_retention_s = num(name, v)?,
            "retired_package_retention_s" => self.retired_package_retention_s = num(name, v)?,
            _ => return Err(ConfigError::Unknown(name.to_string())),
        }
        Ok(())
    }

    /// Layers the sources in order: defaults, `file`, the `SMARTPKG_*` variables of `env`,
    /// then `flags` (already named like the settings).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        if let Some(path) = file {
            for (k, v) in read_file(path)? {
                s.set(&k, &v)?;
            }
        }
        let mut from_env: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in env {
            if let Some(name) = k.strip_prefix("SMARTPKG_") {
                from_env.insert(name.to_ascii_lowercase(), v);
            }
        }
        for (k, v) in from_env {
            s.set(&k, &v)?;
        }
        for (k, v) in flags {
            s.set(&k, &v)?;
        }
        Ok(s)
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("smartpkg.db")
    }
}

fn read_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Toml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(table
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                toml::Value::String(s) => s,
                toml::Value::Array(a) => a
                    .iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            (k, v)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_layer_file_then_env_then_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("smartpkg.toml");
        std::fs::write(
            &file,
            "build_delay_ms = 10\nrollback_delay_ms = 20\naudit_mode = \"auto\"\npush_retry_schedule = [1, 2]\n",
        )
        .expect("write");
        let env = [
            ("SMARTPKG_ROLLBACK_DELAY_MS".to_string(), "30".to_string()),
            ("SMARTPKG_UTC_OFFSET".to_string(), "+00:00".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let flags = [("listen".to_string(), "127.0.0.1:0".to_string())];
        let s = Settings::load(Some(&file), env, flags).expect("loads");
        assert_eq!(s.build_delay_ms, 10);
        assert_eq!(s.rollback_delay_ms, 30);
        assert_eq!(s.audit_mode, AuditMode::Auto);
        assert_eq!(s.push_retry_schedule_ms, vec![1000, 2000]);
        assert_eq!(s.utc_offset.local_minus_utc(), 0);
        assert_eq!(s.listen.port(), 0);
    }

    #[test]
    fn unknown_and_invalid_settings_name_themselves() {
        let env = [("SMARTPKG_BUILD_DELAY".to_string(), "1".to_string())];
        let e = Settings::load(None, env, []).expect_err("unknown");
        assert!(e.to_string().contains("build_delay"), "{e}");
        let env = [("SMARTPKG_BUILD_DELAY_MS".to_string(), "soon".to_string())];
        let e = Settings::load(None, env, []).expect_err("invalid");
        assert!(e.to_string().contains("build_delay_ms"), "{e}");
    }

    #[test]
    fn a_configured_admin_token_is_trimmed_and_a_blank_one_refuses_to_start() {
        let env = [(
            "SMARTPKG_ADMIN_TOKEN".to_string(),
            "  0123456789abcdefXYZ\n".to_string(),
        )];
        let s = Settings::load(None, env, []).expect("loads");
        assert_eq!(s.admin_token.as_deref(), Some("0123456789abcdefXYZ"));
        for blank in ["", "   ", "\n\t"] {
            let env = [("SMARTPKG_ADMIN_TOKEN".to_string(), blank.to_string())];
            let e = Settings::load(None, env, []).expect_err("blank");
            assert!(e.to_string().contains("empty"), "{e}");
        }
        let env = [(
            "SMARTPKG_ADMIN_TOKEN".to_string(),
            "0123456789\u{1b}[31mabcdef".to_string(),
        )];
        assert!(Settings::load(None, env, []).is_err());
    }
}
