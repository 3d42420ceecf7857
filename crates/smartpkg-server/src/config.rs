//! Settings, typed, from layered sources (figment): defaults, then the config file (TOML,
//! keys in lower case: `build_delay_ms = 0`), then `SMARTPKG_<NAME>` environment variables,
//! then command-line flags. Every setting has one name in all three places; an unknown name or
//! a bad value stops the start with a message naming it. `docs/configuration.md` lists them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::FixedOffset;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize};
use smartpkg_core::archive::Limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditMode {
    /// Decisions come from reviewers through the admin API.
    Manual,
    /// Sandbox: pass after `auto_audit_delay_ms` unless a rule fails.
    Auto,
}

/// Every setting, under the one name it has in the file, the environment (`SMARTPKG_<NAME>`)
/// and on the command line. Unknown names are refused (`deny_unknown_fields`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    #[serde(deserialize_with = "blank_is_none")]
    pub database_url: Option<String>,
    pub admin_token: Option<String>,
    pub build_delay_ms: u64,
    pub rollback_delay_ms: u64,
    /// Milliseconds to wait before each retry of a push; its length is the number of retries.
    #[serde(rename = "push_retry_schedule", with = "seconds_list")]
    pub push_retry_schedule_ms: Vec<u64>,
    pub push_timeout_ms: u64,
    pub allow_private_targets: bool,
    pub audit_mode: AuditMode,
    pub auto_audit_delay_ms: u64,
    /// Automatic audit fails names longer than this many characters; 0 = no limit.
    pub auto_audit_max_name_chars: usize,
    /// Weekly audit submissions per third party; -1 = unlimited.
    pub audit_quota_per_week: i64,
    /// WeChat-dialect audit submissions per third party per calendar month (`queryquota`);
    /// -1 = unlimited. Counted apart from Baidu's weekly quota.
    pub wechat_audit_quota_per_month: i64,
    /// `undocodeaudit` calls that may withdraw an audit, per mini program per day and per
    /// calendar month (WeChat's 5 and 10).
    pub wechat_undo_audit_per_day: i64,
    pub wechat_undo_audit_per_month: i64,
    /// `speedupaudit` calls per third party per calendar month.
    pub wechat_speedup_per_month: i64,
    pub app_token_ttl_s: u64,
    /// Seconds between ticket pushes to each TP's authorization-event URL.
    pub ticket_interval_s: u64,
    /// How long a ticket stays valid: three intervals by default, so one missed push
    /// (or two) does not lock a third party out.
    pub ticket_ttl_s: u64,
    pub tp_token_ttl_s: u64,
    /// Lifetime of a WeChat-dialect component access token (WeChat's 7200 s).
    pub component_token_ttl_s: u64,
    /// Refresh tokens last ten years on the real platform (and work once).
    pub refresh_token_ttl_s: u64,
    /// The time zone of `commit_time` and of the quota week (Baidu shows Beijing time).
    #[serde(with = "offset")]
    pub utc_offset: FixedOffset,
    /// Largest request body on every route but template uploads.
    pub max_body_bytes: usize,
    pub max_template_bytes: u64,
    pub max_template_entries: usize,
    /// Largest inflated entry (counted while inflating).
    pub max_template_entry_bytes: u64,
    pub max_template_expanded_bytes: u64,
    /// Largest inflated total ÷ zip size.
    pub max_template_ratio: u64,
    pub job_lease_ms: u64,
    pub job_concurrency: usize,
    pub log_format: String,
    /// The log filter, in `tracing` directive syntax (`info`, `smartpkg_server=debug`).
    pub log: String,
    /// The public base URL of this server, used in the links QR codes carry; unset = the
    /// address it listens on.
    #[serde(deserialize_with = "blank_is_none")]
    pub public_url: Option<String>,
    /// Wrong owner credentials allowed per mini program within `owner_lockout_s`.
    pub owner_attempts_per_app: u32,
    /// Wrong owner credentials allowed per client address (IPv6: per /64) in that window.
    pub owner_attempts_per_client: u32,
    pub owner_lockout_s: u64,
    /// Connections served at once (also bounded by the descriptor limit).
    pub max_connections: usize,
    /// Connections one client address (IPv6: one /64) may hold at once; never more than a
    /// quarter of the connection cap in force.
    pub max_connections_per_client: usize,
    /// Time a request body may take before it must keep up `body_min_bytes_per_s` (so a
    /// small body that stalls is cut after about this long, not after `request_timeout_ms`).
    pub body_read_timeout_ms: u64,
    /// Bytes a second a request body must average once `body_read_timeout_ms` has passed;
    /// 0 = bodies are bounded by `request_timeout_ms` only.
    pub body_min_bytes_per_s: u64,
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
    #[serde(deserialize_with = "blank_is_none")]
    pub push_proxy: Option<String>,
    /// Write calls (upload, submitaudit, release, rollback, withdraw) per mini program per
    /// minute, also the burst; 0 = unlimited.
    pub app_writes_per_minute: u32,
    /// Write calls per third party per minute (its mini programs' writes and its own:
    /// pre-auth codes, template changes, code exchanges); 0 = unlimited.
    pub tp_writes_per_minute: u32,
    /// Bytes one mini program's uploads may ask us to keep within `upload_budget_window_s`
    /// (refilled continuously; `ext_json` counts twice, as sent and as built); 0 = unlimited.
    pub app_upload_bytes_per_window: u64,
    /// The same for all the mini programs of one third party together.
    pub tp_upload_bytes_per_window: u64,
    pub upload_budget_window_s: u64,
    /// Largest `ext_json` an upload may carry, in bytes.
    pub max_ext_json_bytes: usize,
    /// How long an instance may answer update checks from what it read of a mini program
    /// (its own changes are seen at once; another instance's within this time).
    pub runtime_cache_ttl_ms: u64,
    /// How long a console session lasts from sign-in.
    pub console_session_ttl_s: u64,
    /// Wrong console passwords allowed per account name within `owner_lockout_s` (per client
    /// address: `owner_attempts_per_client`, counted apart from the authorization page's).
    pub console_attempts_per_account: u32,
    /// Host runtime versions a third party may choose as a mini program's minimum
    /// (`app/getsupportversion`, `app/setsupportversion`), oldest first.
    pub runtime_versions: Vec<String>,
    /// Seconds between janitor runs.
    pub janitor_interval_s: u64,
    /// Seconds between evaluations of staged releases' plans (one instance per interval).
    pub health_eval_interval_s: u64,
    /// Launching devices each version needs in a plan's step before the gate judges it.
    pub health_min_devices: u64,
    /// The shortest a plan's step lasts before it may advance, in seconds (a halt never
    /// waits for it).
    pub health_step_min_s: u64,
    /// The steps of a plan that names none: rising percentages ending at 100.
    pub health_default_steps: String,
    /// The gate's significance level in parts per million (1000 = 0.001): the chance that one
    /// evaluation halts a version as good as the one it replaces.
    pub health_alpha_ppm: u64,
    /// The least excess failure rate that halts, in basis points (100 = one point).
    pub health_min_excess_bp: u64,
    /// Seconds between flushes of this instance's aggregated reports into the store (a killed
    /// instance loses at most this much).
    pub report_flush_interval_s: u64,
    /// Days the hourly report aggregates are kept.
    pub report_retention_days: u64,
    /// How long used codes and used refresh tokens are kept past their use (to recognise a
    /// replay) before the janitor deletes them.
    pub used_credential_retention_s: u64,
    /// How long a retired package keeps its ext_json before the janitor drops it.
    pub retired_package_retention_s: u64,
    /// Connections to PostgreSQL per instance (unused with SQLite).
    pub database_max_connections: u32,
    /// Where template archives live: unset = `<data dir>/blobs`; `s3://BUCKET[/PREFIX]` = an
    /// S3-compatible bucket.
    #[serde(deserialize_with = "blank_is_none")]
    pub blob_url: Option<String>,
    /// The S3-compatible service's address (unset = AWS).
    #[serde(deserialize_with = "blank_is_none")]
    pub blob_s3_endpoint: Option<String>,
    pub blob_s3_region: String,
    /// Credentials of the bucket; unset = the `AWS_*` environment variables.
    #[serde(deserialize_with = "blank_is_none")]
    pub blob_s3_access_key_id: Option<String>,
    #[serde(deserialize_with = "blank_is_none")]
    pub blob_s3_secret_access_key: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        let limits = Limits::default();
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
            wechat_audit_quota_per_month: 1000,
            wechat_undo_audit_per_day: 5,
            wechat_undo_audit_per_month: 10,
            wechat_speedup_per_month: 10,
            app_token_ttl_s: 3600,
            ticket_interval_s: 600,
            ticket_ttl_s: 1800,
            tp_token_ttl_s: 2_592_000,
            component_token_ttl_s: 7200,
            refresh_token_ttl_s: 10 * 365 * 24 * 3600,
            utc_offset: FixedOffset::east_opt(8 * 3600).unwrap_or_else(utc),
            max_body_bytes: 1 << 20,
            max_template_bytes: limits.max_archive_bytes,
            max_template_entries: limits.max_entries,
            max_template_entry_bytes: limits.max_entry_bytes,
            max_template_expanded_bytes: limits.max_total_bytes,
            max_template_ratio: limits.max_ratio,
            job_lease_ms: 30_000,
            job_concurrency: 32,
            log_format: "text".into(),
            log: "info".into(),
            public_url: None,
            owner_attempts_per_app: 10,
            owner_attempts_per_client: 30,
            owner_lockout_s: 900,
            max_connections: 4096,
            max_connections_per_client: 256,
            body_read_timeout_ms: 10_000,
            body_min_bytes_per_s: 16 << 10,
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
            tp_writes_per_minute: 3000,
            app_upload_bytes_per_window: 16 << 20,
            tp_upload_bytes_per_window: 512 << 20,
            upload_budget_window_s: 3600,
            max_ext_json_bytes: 256 << 10,
            runtime_cache_ttl_ms: 5000,
            console_session_ttl_s: 12 * 3600,
            console_attempts_per_account: 5,
            runtime_versions: ["3.60.0", "3.80.0", "3.100.0", "3.120.0", "3.140.0"]
                .map(String::from)
                .to_vec(),
            janitor_interval_s: 3600,
            health_eval_interval_s: 60,
            health_min_devices: 500,
            health_step_min_s: 3600,
            health_default_steps: "1,5,20,50,100".into(),
            health_alpha_ppm: 1000,
            health_min_excess_bp: 100,
            report_flush_interval_s: 10,
            report_retention_days: 30,
            used_credential_retention_s: 30 * 24 * 3600,
            retired_package_retention_s: 7 * 24 * 3600,
            database_max_connections: 16,
            blob_url: None,
            blob_s3_endpoint: None,
            blob_s3_region: "us-east-1".into(),
            blob_s3_access_key_id: None,
            blob_s3_secret_access_key: None,
        }
    }
}

fn utc() -> FixedOffset {
    FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!("0 is a valid offset"))
}

/// An empty or blank value means "not set" (an empty variable in a unit file, say).
fn blank_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<String>::deserialize(d)?;
    Ok(v.filter(|s| !s.trim().is_empty()))
}

/// The retry schedule: seconds (fractions allowed), as a TOML array or a comma-separated
/// string (`5,300,1800`), held as milliseconds.
mod seconds_list {
    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    fn ms(secs: f64) -> Result<u64, String> {
        if secs.is_finite() && secs >= 0.0 {
            Ok((secs * 1000.0).round() as u64)
        } else {
            Err(format!("{secs} is not a number of seconds"))
        }
    }

    pub fn serialize<S: Serializer>(v: &[u64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|ms| *ms as f64 / 1000.0))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u64>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("seconds separated by commas, e.g. 5,300,1800, or an array of seconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<u64>, E> {
                s.split(',')
                    .map(|p| {
                        p.trim()
                            .parse::<f64>()
                            .map_err(|_| E::custom(format!("{p:?} is not a number of seconds")))
                            .and_then(|x| ms(x).map_err(E::custom))
                    })
                    .collect()
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Vec<u64>, E> {
                Ok(vec![n.saturating_mul(1000)])
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Vec<u64>, E> {
                ms(n as f64).map(|m| vec![m]).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Vec<u64>, E> {
                ms(n).map(|m| vec![m]).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u64>, A::Error> {
                let mut out = vec![];
                while let Some(x) = seq.next_element::<f64>()? {
                    out.push(ms(x).map_err(de::Error::custom)?);
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// A UTC offset written `+08:00`, `-05:30`, `Z` or `UTC`.
mod offset {
    use chrono::FixedOffset;
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn parse(t: &str) -> Result<FixedOffset, String> {
        let t = t.trim();
        if t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("utc") {
            return Ok(super::utc());
        }
        let bad = || format!("{t:?} is not an offset like +08:00");
        let (sign, rest) = match t.as_bytes().first() {
            Some(b'+') => (1, &t[1..]),
            Some(b'-') => (-1, &t[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
        let h: i32 = h.parse().map_err(|_| bad())?;
        let m: i32 = m.parse().map_err(|_| bad())?;
        FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
    }

    pub fn serialize<S: Serializer>(o: &FixedOffset, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&o.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FixedOffset, D::Error> {
        parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    NoFile(PathBuf),
    #[error("{0}")]
    Source(String),
    #[error("setting `{name}` = {value:?}: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: String,
    },
}

fn invalid(
    name: &'static str,
    value: impl std::fmt::Display,
    why: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_string(),
        why: why.into(),
    }
}

/// `(name, text)` pairs as one named layer, each value kept as text: typed when extracted (so
/// a token made of digits stays a string, and `3000` becomes a number where one is wanted).
struct TextLayer {
    name: &'static str,
    dict: Dict,
}

impl TextLayer {
    fn new(name: &'static str, pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let dict = pairs
            .into_iter()
            .map(|(k, v)| (k, Value::from(v)))
            .collect();
        TextLayer { name, dict }
    }
}

impl figment::Provider for TextLayer {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(self.name)
    }

    fn data(&self) -> Result<figment::value::Map<figment::Profile, Dict>, figment::Error> {
        Ok(figment::Profile::Default.collect(self.dict.clone()))
    }
}

impl Settings {
    /// The gate of a plan that names its own steps only.
    pub fn plan_gate(&self) -> smartpkg_core::stage::PlanGate {
        smartpkg_core::stage::PlanGate {
            min_devices: self.health_min_devices,
            step_min_s: self.health_step_min_s,
            alpha_ppm: self.health_alpha_ppm,
            min_excess_bp: self.health_min_excess_bp,
        }
    }

    /// A plan of the default steps and gate, starting at `now_ms`.
    pub fn default_plan(&self, now_ms: i64) -> Result<smartpkg_core::stage::StagePlan, String> {
        let steps = smartpkg_core::stage::parse_steps(&self.health_default_steps)?;
        smartpkg_core::stage::StagePlan::new(steps, true, self.plan_gate(), now_ms)
    }

    /// Layers the sources in order: defaults, `file`, the `SMARTPKG_*` variables of `env`,
    /// then `flags` (already named like the settings), and checks the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::NoFile(path.to_path_buf()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = env.into_iter().filter_map(|(k, v)| {
            k.strip_prefix("SMARTPKG_")
                .map(|name| (name.to_ascii_lowercase(), v))
        });
        figment = figment
            .merge(TextLayer::new("environment (SMARTPKG_*)", env))
            .merge(TextLayer::new("command-line flags", flags));
        let settings: Settings = figment
            .extract_lossy()
            .map_err(|e| ConfigError::Source(describe(e)))?;
        settings.validated()
    }

    /// The checks types cannot express.
    fn validated(mut self) -> Result<Settings, ConfigError> {
        if let Some(t) = self.admin_token.take() {
            // Trimmed as a presented token is, so a stray newline from a secrets file cannot
            // make the configured token impossible to present.
            let t = t.trim().to_string();
            if t.is_empty() {
                return Err(invalid(
                    "admin_token",
                    "<hidden>",
                    "is empty (after trimming white space); leave it unset to generate one",
                ));
            }
            if t.len() < 16 || t.chars().any(char::is_control) {
                return Err(invalid(
                    "admin_token",
                    "<hidden>",
                    "must be at least 16 characters, without control characters",
                ));
            }
            self.admin_token = Some(t);
        }
        for v in &self.runtime_versions {
            if smartpkg_core::runtime::parse_version(v).is_none() {
                return Err(invalid(
                    "runtime_versions",
                    v,
                    "must be versions of dotted numbers, such as 3.100.0",
                ));
            }
        }
        let positive = [
            ("ticket_interval_s", self.ticket_interval_s),
            ("job_concurrency", self.job_concurrency as u64),
            ("owner_attempts_per_app", self.owner_attempts_per_app as u64),
            (
                "owner_attempts_per_client",
                self.owner_attempts_per_client as u64,
            ),
            ("owner_lockout_s", self.owner_lockout_s),
            ("console_session_ttl_s", self.console_session_ttl_s),
            (
                "console_attempts_per_account",
                self.console_attempts_per_account as u64,
            ),
            ("max_connections", self.max_connections as u64),
            (
                "max_connections_per_client",
                self.max_connections_per_client as u64,
            ),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            (
                "template_upload_concurrency",
                self.template_upload_concurrency as u64,
            ),
            ("push_concurrency", self.push_concurrency as u64),
            ("push_per_target", self.push_per_target as u64),
            ("push_hold_base_ms", self.push_hold_base_ms),
            ("push_hold_max_ms", self.push_hold_max_ms),
            ("janitor_interval_s", self.janitor_interval_s),
            ("health_eval_interval_s", self.health_eval_interval_s),
            ("health_min_devices", self.health_min_devices),
            ("health_alpha_ppm", self.health_alpha_ppm),
            ("report_flush_interval_s", self.report_flush_interval_s),
            ("report_retention_days", self.report_retention_days),
            ("upload_budget_window_s", self.upload_budget_window_s),
            ("max_ext_json_bytes", self.max_ext_json_bytes as u64),
            (
                "database_max_connections",
                self.database_max_connections as u64,
            ),
        ];
        if let Some((name, v)) = positive.into_iter().find(|(_, v)| *v == 0) {
            return Err(invalid(name, v, "must be at least 1"));
        }
        if self.audit_quota_per_week < -1 {
            return Err(invalid(
                "audit_quota_per_week",
                self.audit_quota_per_week,
                "expected -1 (unlimited) or a count",
            ));
        }
        let quotas = [
            (
                "wechat_audit_quota_per_month",
                self.wechat_audit_quota_per_month,
            ),
            ("wechat_undo_audit_per_day", self.wechat_undo_audit_per_day),
            (
                "wechat_undo_audit_per_month",
                self.wechat_undo_audit_per_month,
            ),
            ("wechat_speedup_per_month", self.wechat_speedup_per_month),
        ];
        if let Some((name, v)) = quotas.into_iter().find(|(_, v)| *v < -1) {
            return Err(invalid(name, v, "expected -1 (unlimited) or a count"));
        }
        if let Err(why) = smartpkg_core::stage::parse_steps(&self.health_default_steps) {
            return Err(invalid(
                "health_default_steps",
                &self.health_default_steps,
                why,
            ));
        }
        if let Err(why) = self.default_plan(0) {
            return Err(invalid("health_alpha_ppm", self.health_alpha_ppm, why));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(invalid(
                "log_format",
                &self.log_format,
                "expected text or json",
            ));
        }
        if let Some(u) = &self.public_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(invalid(
                    "public_url",
                    u,
                    "expected an http:// or https:// URL",
                ));
            }
            self.public_url = Some(u.trim_end_matches('/').to_string());
        }
        if let Some(p) = &self.push_proxy {
            if url::Url::parse(p).is_err() {
                return Err(invalid(
                    "push_proxy",
                    p,
                    "expected a proxy URL such as http://proxy:3128",
                ));
            }
        }
        if let Some(u) = &self.blob_url {
            if self.blobs().is_none() {
                return Err(invalid(
                    "blob_url",
                    u,
                    "expected s3://BUCKET or s3://BUCKET/PREFIX",
                ));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid(
                if self.tls_cert.is_some() {
                    "tls_key"
                } else {
                    "tls_cert"
                },
                "",
                "TLS needs both tls_cert and tls_key",
            ));
        }
        Ok(self)
    }

    /// Where blobs live, from `blob_url` and the `blob_s3_*` settings; None for a `blob_url`
    /// that names no bucket.
    pub fn blobs(&self) -> Option<smartpkg_storage::BlobSettings> {
        let Some(url) = &self.blob_url else {
            return Some(smartpkg_storage::BlobSettings::Local);
        };
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return None;
        }
        Some(smartpkg_storage::BlobSettings::S3(
            smartpkg_storage::objects::S3Settings {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
                endpoint: self.blob_s3_endpoint.clone(),
                region: self.blob_s3_region.clone(),
                access_key_id: self.blob_s3_access_key_id.clone(),
                secret_access_key: self.blob_s3_secret_access_key.clone(),
            },
        ))
    }

    /// The template archive limits.
    pub fn archive(&self) -> Limits {
        Limits {
            max_archive_bytes: self.max_template_bytes,
            max_entries: self.max_template_entries,
            max_entry_bytes: self.max_template_entry_bytes,
            max_total_bytes: self.max_template_expanded_bytes,
            max_ratio: self.max_template_ratio,
        }
    }
}

/// Figment's error with the setting named as the operator writes it (without the profile)
/// and where it came from.
fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|one| {
            let from = one
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            match &one.kind {
                figment::error::Kind::UnknownField(name, _) => {
                    format!("unknown setting `{name}`{from}; docs/configuration.md lists them")
                }
                kind => match one.path.last() {
                    Some(name) => format!("setting `{name}`: {kind}{from}"),
                    None => format!("{kind}{from}"),
                },
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
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

    #[test]
    fn values_are_typed_per_setting_whatever_the_source() {
        let env = [
            // Digits only: still a token (a string), not a number.
            (
                "SMARTPKG_ADMIN_TOKEN".to_string(),
                "12345678901234567890".to_string(),
            ),
            (
                "SMARTPKG_ALLOW_PRIVATE_TARGETS".to_string(),
                "yes".to_string(),
            ),
            (
                "SMARTPKG_PUSH_RETRY_SCHEDULE".to_string(),
                "0.05, 1,300".to_string(),
            ),
            ("SMARTPKG_AUDIT_MODE".to_string(), "auto".to_string()),
            ("SMARTPKG_DATABASE_URL".to_string(), "".to_string()),
        ];
        let s = Settings::load(None, env, []).expect("loads");
        assert_eq!(s.admin_token.as_deref(), Some("12345678901234567890"));
        assert!(s.allow_private_targets);
        assert_eq!(s.push_retry_schedule_ms, vec![50, 1000, 300_000]);
        assert_eq!(s.audit_mode, AuditMode::Auto);
        assert_eq!(s.database_url, None);
    }

    #[test]
    fn bad_values_and_unknown_keys_in_a_file_name_the_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("smartpkg.toml");
        for (text, needle) in [
            ("build_dealy_ms = 5\n", "build_dealy_ms"),
            ("utc_offset = \"Beijing\"\n", "utc_offset"),
            ("audit_mode = \"sometimes\"\n", "audit_mode"),
            ("max_connections = 0\n", "max_connections"),
            ("log_format = \"xml\"\n", "log_format"),
            ("tls_cert = \"/x.pem\"\n", "tls_key"),
        ] {
            std::fs::write(&file, text).expect("write");
            let e = Settings::load(Some(&file), [], []).expect_err(text);
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
        let e =
            Settings::load(Some(&dir.path().join("missing.toml")), [], []).expect_err("missing");
        assert!(e.to_string().contains("missing.toml"), "{e}");
    }
}
