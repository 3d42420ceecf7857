//! Release health in the console: a staged release's plan (its steps, where it stands, why it
//! halted) and two charts drawn here as SVG — adoption by version and failure rate by
//! version, hour by hour — each with the same figures as a table, for screen readers and for
//! anyone without images. No script and no network assets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::{Path, State};
use serde::Deserialize;
use smartpkg_core::health::{ReportEvent, HOUR_MS};
use smartpkg_core::ids::{AppId, PackageId};
use smartpkg_core::stage::{PlanStatus, StagePlan};
use smartpkg_store::{PackageRecord, Role};

use super::{Page, PageResult, Posted};
use crate::application::{self, PlanAction, ReleaseHealth};
use crate::state::AppState;

/// Hours the console draws.
pub const CHART_HOURS: i64 = 48;

/// One step of a plan as the panel lists it.
pub struct StepView {
    pub percent: i64,
    /// `done`, `current` or `next`.
    pub place: &'static str,
}

/// The plan panel.
pub struct PlanView {
    pub package_id: i64,
    pub version: String,
    pub status: &'static str,
    pub percent: i64,
    pub auto: bool,
    pub steps: Vec<StepView>,
    pub gate: String,
    /// Why it halted, with the figures; empty unless halted.
    pub halt: String,
}

/// One chart with its figures as a table.
pub struct Chart {
    pub title: String,
    pub svg: String,
    pub columns: Vec<String>,
    pub rows: Vec<(String, Vec<String>)>,
}

/// The section the mini program's and the package's pages show.
pub struct HealthSection {
    pub plan: Option<PlanView>,
    pub charts: Vec<Chart>,
    pub has_figures: bool,
    /// Whether the viewer may resume, advance or abandon the plan.
    pub can_act: bool,
}

impl PlanView {
    /// The share a resumed plan gives again.
    pub fn percent_or_step(&self) -> String {
        self.steps
            .iter()
            .find(|s| s.place == "current")
            .map(|s| format!("{}%", s.percent))
            .unwrap_or_default()
    }
}

fn plan_view(p: &PackageRecord, plan: &StagePlan) -> PlanView {
    let steps = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, percent)| StepView {
            percent: *percent,
            place: match (plan.status, i.cmp(&plan.step)) {
                (PlanStatus::Finished, _) | (_, std::cmp::Ordering::Less) => "done",
                (_, std::cmp::Ordering::Equal) => "current",
                _ => "next",
            },
        })
        .collect();
    PlanView {
        package_id: p.package_id.get(),
        version: p.version.clone(),
        status: plan.status.as_str(),
        percent: p.staged_percent.unwrap_or(100),
        auto: plan.auto,
        steps,
        gate: format!(
            "{} launching devices per version, {} per step, halts on an excess of {:.2} points at p ≤ {}",
            plan.gate.min_devices,
            duration(plan.gate.step_min_s),
            plan.gate.min_excess_bp as f64 / 100.0,
            plan.gate.alpha_ppm as f64 / 1e6
        ),
        halt: plan.halt.as_ref().map(|h| h.describe()).unwrap_or_default(),
    }
}

fn duration(s: u64) -> String {
    match s {
        0 => "no minimum time".into(),
        s if s % 3600 == 0 => format!("at least {} h", s / 3600),
        s if s % 60 == 0 => format!("at least {} min", s / 60),
        s => format!("at least {s} s"),
    }
}

/// Text inside SVG: versions are the third party's words.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const COLORS: [&str; 6] = [
    "#2454c5", "#c5462a", "#1b7a3d", "#8a4fbf", "#b8860b", "#5b6475",
];
const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 40.0;

/// A line chart of shares (0..=1) per hour: one line per series, gaps where a series has no
/// figure, the y axis up to `y_max`.
fn line_chart(
    title: &str,
    hour_labels: &[String],
    series: &[(String, Vec<Option<f64>>)],
    y_max: f64,
) -> String {
    let n = hour_labels.len().max(2);
    let x = |i: usize| LEFT + (W - LEFT - RIGHT) * i as f64 / (n - 1) as f64;
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (v / y_max).clamp(0.0, 1.0));
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{}"><title>{}</title>"#,
        esc(title),
        esc(title)
    );
    for k in 0..=4 {
        let v = y_max * k as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#d9dde5"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="#5b6475">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            pct(v),
            y = y(v)
        );
    }
    let last = hour_labels.len().saturating_sub(1);
    // The first and last labels are anchored inside the plot so neither is cut off.
    for (i, anchor) in [(0, "start"), (last / 2, "middle"), (last, "end")] {
        if let Some(label) = hour_labels.get(i) {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{}" font-size="11" text-anchor="{anchor}" fill="#5b6475">{}</text>"##,
                x(i),
                H - BOTTOM + 16.0,
                esc(label)
            );
        }
    }
    for (k, (name, values)) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let mut run: Vec<(f64, f64)> = vec![];
        let flush = |run: &mut Vec<(f64, f64)>, s: &mut String| {
            match run.len() {
                0 => {}
                1 => {
                    let _ = write!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"#,
                        run[0].0, run[0].1
                    );
                }
                _ => {
                    let pts: Vec<String> =
                        run.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
                    let _ = write!(
                        s,
                        r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                        pts.join(" ")
                    );
                }
            }
            run.clear();
        };
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) => run.push((x(i), y(*v))),
                None => flush(&mut run, &mut s),
            }
        }
        flush(&mut run, &mut s);
        let lx = LEFT + 150.0 * k as f64;
        let _ = write!(
            s,
            r##"<rect x="{lx:.1}" y="{}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{}" font-size="12" fill="#1d2330">{}</text>"##,
            H - 14.0,
            lx + 14.0,
            H - 5.0,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}

fn pct(v: f64) -> String {
    if v >= 0.1 || v == 0.0 {
        format!("{:.0}%", v * 100.0)
    } else {
        format!("{:.1}%", v * 100.0)
    }
}

/// The charts of a mini program's last hours.
fn charts(state: &AppState, h: &ReleaseHealth) -> (Vec<Chart>, bool) {
    // Versions by package: the online and staged ones first, then any other that reported.
    let mut names: BTreeMap<i64, String> = BTreeMap::new();
    for p in [&h.online, &h.staged].into_iter().flatten() {
        names.insert(
            p.package_id.get(),
            format!("{} (#{})", p.version, p.package_id),
        );
    }
    for r in &h.hours {
        names
            .entry(r.package_id.get())
            .or_insert_with(|| format!("#{}", r.package_id));
    }
    let ids: Vec<i64> = names.keys().copied().collect();
    let hours: Vec<i64> = (h.from_hour..=h.to_hour).collect();
    let offset = state.settings.utc_offset;
    let labels: Vec<String> = hours
        .iter()
        .map(|hr| {
            chrono::DateTime::from_timestamp(hr * HOUR_MS / 1000, 0)
                .map(|t| t.with_timezone(&offset).format("%m-%d %H:00").to_string())
                .unwrap_or_default()
        })
        .collect();
    // (package, hour) → (launched devices, failed devices)
    let mut cells: BTreeMap<(i64, i64), (u64, u64)> = BTreeMap::new();
    for r in &h.hours {
        let c = cells.entry((r.package_id.get(), r.hour)).or_default();
        match r.event {
            ReportEvent::Launched => c.0 += r.devices,
            e if e.is_failure() => c.1 += r.devices,
            _ => {}
        }
    }
    let has_figures = cells.values().any(|(l, f)| l + f > 0);
    let launched = |id: i64, hr: i64| cells.get(&(id, hr)).map(|c| c.0.max(c.1)).unwrap_or(0);
    let adoption: Vec<(String, Vec<Option<f64>>)> = ids
        .iter()
        .map(|id| {
            let values = hours
                .iter()
                .map(|hr| {
                    let total: u64 = ids.iter().map(|o| launched(*o, *hr)).sum();
                    (total > 0).then(|| launched(*id, *hr) as f64 / total as f64)
                })
                .collect();
            (names[id].clone(), values)
        })
        .collect();
    let failure: Vec<(String, Vec<Option<f64>>)> = ids
        .iter()
        .map(|id| {
            let values = hours
                .iter()
                .map(|hr| {
                    let n = launched(*id, *hr);
                    let failed = cells.get(&(*id, *hr)).map(|c| c.1).unwrap_or(0);
                    (n > 0).then(|| (failed as f64 / n as f64).min(1.0))
                })
                .collect();
            (names[id].clone(), values)
        })
        .collect();
    let worst = failure
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    // The failure axis fits the worst rate (at least 2 %), in steps people read.
    let y_max = [0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
        .into_iter()
        .find(|m| worst <= *m)
        .unwrap_or(1.0);
    let columns: Vec<String> = ids.iter().map(|id| names[id].clone()).collect();
    // Table rows: the hours that have figures, newest first.
    let table = |series: &[(String, Vec<Option<f64>>)]| -> Vec<(String, Vec<String>)> {
        hours
            .iter()
            .enumerate()
            .rev()
            .filter(|(i, _)| series.iter().any(|(_, v)| v[*i].is_some()))
            .map(|(i, _)| {
                let cells = series
                    .iter()
                    .map(|(_, v)| {
                        v[i].map(|x| format!("{:.2}%", x * 100.0))
                            .unwrap_or_else(|| "—".into())
                    })
                    .collect();
                (labels[i].clone(), cells)
            })
            .collect()
    };
    let adoption_title = "Adoption: share of reporting devices on each version, by hour";
    let failure_title =
        "Failure rate: devices failing to launch or crashing over devices launching, by hour";
    let charts = vec![
        Chart {
            title: adoption_title.into(),
            svg: line_chart(adoption_title, &labels, &adoption, 1.0),
            columns: columns.clone(),
            rows: table(&adoption),
        },
        Chart {
            title: failure_title.into(),
            svg: line_chart(failure_title, &labels, &failure, y_max),
            columns,
            rows: table(&failure),
        },
    ];
    (charts, has_figures)
}

/// The section for a mini program, as `viewer` may act on it.
pub async fn section(
    state: &AppState,
    app_id: AppId,
    role: Role,
) -> Result<HealthSection, application::OpError> {
    let h = application::release_health(state, app_id, CHART_HOURS).await?;
    let (charts, has_figures) = charts(state, &h);
    Ok(HealthSection {
        plan: h.plan().map(|(p, plan)| plan_view(p, plan)),
        charts,
        has_figures,
        can_act: matches!(role, Role::Operator | Role::Owner),
    })
}

#[derive(Deserialize)]
pub struct PlanForm {
    action: String,
}

/// Resume, advance or abandon a plan from the console (operators; owners of the mini program).
pub async fn act(
    State(state): State<AppState>,
    Path(package_id): Path<i64>,
    p: Posted<PlanForm>,
) -> PageResult {
    let v = &p.viewer;
    v.require(&[Role::Operator, Role::Owner])?;
    let pkg = application::load_package(&state, package_id)
        .await
        .map_err(|e| Page::refused(v, e))?;
    super::apps::may_see(&state, v, pkg.app_id.get()).await?;
    let action = match p.form.action.as_str() {
        "resume" => PlanAction::Resume,
        "advance" => PlanAction::Advance,
        "abandon" => PlanAction::Abandon,
        _ => return Err(Page::not_found(v, "That action")),
    };
    let actor = smartpkg_store::Actor::Account(v.account.account_id);
    application::plan_action(&state, PackageId(package_id), action, actor)
        .await
        .map_err(|e| Page::refused(v, e))?;
    tracing::info!(by = %v.account.name, package_id, action = %p.form.action, "console: staged plan action");
    Ok(Page::Redirect(format!("/console/apps/{}", pkg.app_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_escapes_what_third_parties_wrote_and_breaks_lines_at_gaps() {
        let labels: Vec<String> = (0..4).map(|i| format!("h{i}")).collect();
        let svg = line_chart(
            "t",
            &labels,
            &[(
                "<script>1.0".into(),
                vec![Some(0.5), None, Some(0.2), Some(0.1)],
            )],
            1.0,
        );
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;1.0"));
        // A lone point before the gap, a line after it.
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 1, "{svg}");
    }
}
