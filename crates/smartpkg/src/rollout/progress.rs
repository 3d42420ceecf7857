//! What a person (or a log) sees while a rollout runs: on a terminal, a progress bar with the
//! count of mini programs in each state and an ETA; otherwise one plain line per change.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use smartpkg_client::ClientError;

use super::state::Step;

pub struct Progress {
    counts: Mutex<[usize; Step::ALL.len()]>,
    bar: Option<ProgressBar>,
    goal: Step,
}

fn index(s: Step) -> usize {
    Step::ALL.iter().position(|x| *x == s).unwrap_or(0)
}

impl Progress {
    pub fn new(total: usize, goal: Step, terminal: bool) -> Progress {
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} settled · ETA {eta} · {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Progress {
            counts: Mutex::new([0; Step::ALL.len()]),
            bar,
            goal,
        }
    }

    /// Whether a mini program in `s` needs nothing more from this run.
    pub fn settled(&self, s: Step) -> bool {
        s.is_final() || s == self.goal || s == Step::WaitingQuota
    }

    pub fn enter(&self, s: Step) {
        self.change(None, s);
    }

    fn change(&self, from: Option<Step>, to: Step) {
        let summary = {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(f) = from {
                c[index(f)] = c[index(f)].saturating_sub(1);
            }
            c[index(to)] += 1;
            let settled: usize = Step::ALL
                .iter()
                .filter(|s| self.settled(**s))
                .map(|s| c[index(*s)])
                .sum();
            (settled, summarize(&c))
        };
        if let Some(bar) = &self.bar {
            bar.set_position(summary.0 as u64);
            bar.set_message(summary.1);
        }
    }

    pub fn moved(
        &self,
        app_id: i64,
        from: Step,
        to: Step,
        package: Option<i64>,
        reason: Option<&str>,
    ) {
        let pkg = package.map(|p| format!(" (package {p})"));
        self.moved_as(&format!("app {app_id}"), from, to, pkg, reason);
    }

    /// A mini program named `who` (`app 5`, `wechat wx…`) moved; `detail` follows the step.
    pub fn moved_as(
        &self,
        who: &str,
        from: Step,
        to: Step,
        detail: Option<String>,
        reason: Option<&str>,
    ) {
        self.change(Some(from), to);
        if self.bar.is_none() {
            let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
            eprintln!(
                "{who}: {} → {}{}{why}",
                from.name(),
                to.name(),
                detail.unwrap_or_default()
            );
        }
    }

    pub fn note_retry(&self, app_id: i64, e: &ClientError) {
        self.note(format!(
            "app {app_id}: retrying after {}",
            crate::tool::describe(e)
        ));
    }

    /// A line beside the progress (a retry, a warning).
    pub fn note(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn summarize(c: &[usize; Step::ALL.len()]) -> String {
    Step::ALL
        .iter()
        .filter(|s| c[index(**s)] > 0)
        .map(|s| format!("{} {}", s.name(), c[index(*s)]))
        .collect::<Vec<_>>()
        .join(" · ")
}
