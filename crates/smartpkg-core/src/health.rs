//! Release health, the pure part: what a device may report, and the gate that judges a staged
//! release's new version against the version it replaces.
//!
//! The gate compares failure rates by distinct devices — devices that failed (`launch_failed`
//! or `crashed`) over devices that launched — of the new version and of the old one, measured
//! on the devices each serves in the same hours. It never judges a small sample: both versions
//! need `min_devices` launching devices. Past that, it halts only when the new version is worse
//! beyond noise **and** worse by at least `min_excess` (an absolute difference, so that a huge
//! fleet does not halt on a real but negligible difference).
//!
//! "Beyond noise" is an exact one-sided test, not a normal approximation (which halts far too
//! often when failures are few, as they are at a step's first devices): given the failures of
//! both versions together, K, each failure falls on the new version's devices with probability
//! q = n_new / (n_new + n_old) if the versions are alike, so the new version's count is
//! Binomial(K, q); the gate halts when seeing at least as many is less likely than `alpha`.
//! That bounds the false halts of one evaluation by `alpha` whatever the sample (the test is
//! conservative: discreteness only lowers the rate).

/// What a device reports about a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReportEvent {
    Downloaded,
    Installed,
    Launched,
    LaunchFailed,
    Crashed,
    /// The runtime fell back to the previous version on its own.
    RolledBack,
}

impl ReportEvent {
    pub const ALL: [ReportEvent; 6] = [
        ReportEvent::Downloaded,
        ReportEvent::Installed,
        ReportEvent::Launched,
        ReportEvent::LaunchFailed,
        ReportEvent::Crashed,
        ReportEvent::RolledBack,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ReportEvent::Downloaded => "downloaded",
            ReportEvent::Installed => "installed",
            ReportEvent::Launched => "launched",
            ReportEvent::LaunchFailed => "launch_failed",
            ReportEvent::Crashed => "crashed",
            ReportEvent::RolledBack => "rolled_back",
        }
    }

    pub fn parse(s: &str) -> Option<ReportEvent> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Whether the event counts as a failure of the version.
    pub const fn is_failure(self) -> bool {
        matches!(self, ReportEvent::LaunchFailed | ReportEvent::Crashed)
    }
}

/// The most reports one batch may carry.
pub const MAX_BATCH: usize = 500;
/// How far ahead of the server's clock a report's time may be (devices' clocks drift).
pub const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;
/// How old a report may be: older hours are past every staged step's judgement.
pub const MAX_AGE_MS: i64 = 7 * 24 * 3600 * 1000;
/// The longest device id kept.
pub const MAX_DEVICE_ID_CHARS: usize = 128;
pub const HOUR_MS: i64 = 3600 * 1000;

/// A report as a device sends it, before it is checked.
#[derive(Debug, Clone, Copy)]
pub struct RawReport<'a> {
    pub device_id: &'a str,
    pub app_id: i64,
    pub package_id: i64,
    pub event: &'a str,
    /// Unix milliseconds; absent: now.
    pub at_ms: Option<i64>,
}

/// A checked report, placed in its hour; its device kept as the sketch's hash of its id (all
/// the aggregates need, and no copy of the id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub device_hash: u64,
    pub app_id: i64,
    pub package_id: i64,
    pub event: ReportEvent,
    /// Hours since the Unix epoch.
    pub hour: i64,
}

/// Why a batch was refused whole (nothing of it is counted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the batch is empty")]
    Empty,
    #[error("a batch carries at most {MAX_BATCH} reports, not {0}")]
    TooMany(usize),
    #[error("report {index}: {why}")]
    Entry { index: usize, why: String },
}

/// Checks a whole batch: every report, or none (a batch with one bad report is refused with
/// its index and why, so a device fixes it rather than losing part of it silently).
pub fn check_batch(raw: &[RawReport<'_>], now_ms: i64) -> Result<Vec<Report>, BatchError> {
    if raw.is_empty() {
        return Err(BatchError::Empty);
    }
    if raw.len() > MAX_BATCH {
        return Err(BatchError::TooMany(raw.len()));
    }
    raw.iter()
        .enumerate()
        .map(|(index, r)| {
            let bad = |why: String| BatchError::Entry { index, why };
            let id = r.device_id;
            if id.is_empty() || id.chars().count() > MAX_DEVICE_ID_CHARS {
                return Err(bad(format!(
                    "device_id is 1 to {MAX_DEVICE_ID_CHARS} characters"
                )));
            }
            // Printable ASCII, the usual id, has nothing invisible: only others are walked.
            if !id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                crate::text::check("device_id", id, false).map_err(bad)?;
            }
            if r.app_id <= 0 || r.package_id <= 0 {
                return Err(bad("app_id and package_id are positive ids".into()));
            }
            let event = ReportEvent::parse(r.event).ok_or_else(|| {
                bad(format!(
                    "event {:?} is not one of downloaded, installed, launched, launch_failed, crashed, rolled_back",
                    r.event
                ))
            })?;
            let at = r.at_ms.unwrap_or(now_ms);
            if at > now_ms.saturating_add(MAX_FUTURE_MS) {
                return Err(bad("at is in the future".into()));
            }
            if at < now_ms.saturating_sub(MAX_AGE_MS) {
                return Err(bad("at is more than 7 days ago".into()));
            }
            Ok(Report {
                device_hash: crate::sketch::hash(id),
                app_id: r.app_id,
                package_id: r.package_id,
                event,
                hour: at.div_euclid(HOUR_MS),
            })
        })
        .collect()
}

/// One version's figures over the hours judged: distinct devices that launched it and
/// distinct devices on which it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub launched: u64,
    pub failed: u64,
}

impl Sample {
    /// The failure rate; a device that failed without a recorded launch still launched it.
    pub fn rate(&self) -> f64 {
        let n = self.launched.max(self.failed);
        if n == 0 {
            0.0
        } else {
            self.failed as f64 / n as f64
        }
    }

    fn n(&self) -> u64 {
        self.launched.max(self.failed)
    }
}

/// The gate's parameters (settings, or a release's own plan).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// Launching devices each version needs before the step is judged.
    pub min_devices: u64,
    /// The one-sided test's level: the chance that one evaluation halts a version as good as
    /// the old one.
    pub alpha: f64,
    /// The least excess failure rate that halts (0.01: one percentage point).
    pub min_excess: f64,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            min_devices: 500,
            alpha: 0.001,
            min_excess: 0.01,
        }
    }
}

/// What the gate says of a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Not enough devices yet on one side or the other.
    TooFew,
    /// The new version is not worse beyond noise.
    Healthy,
    /// The new version fails more, beyond noise: the figures that tripped it.
    Unhealthy {
        new_rate: f64,
        old_rate: f64,
        /// The chance of failures at least this lopsided between two alike versions.
        p_value: f64,
    },
}

/// P(X ≥ k) for X ~ Binomial(n, q), summed in log space (no underflow for large n).
pub fn binomial_tail(n: u64, k: u64, q: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || q <= 0.0 {
        return 0.0;
    }
    if q >= 1.0 {
        return 1.0;
    }
    let (lq, lnq) = (q.ln(), (1.0 - q).ln());
    // log pmf(x), walked from x = 0: pmf(x+1) = pmf(x)·(n−x)/(x+1)·q/(1−q).
    let mut log_pmf = n as f64 * lnq;
    for x in 0..k {
        log_pmf += ((n - x) as f64).ln() - ((x + 1) as f64).ln() + lq - lnq;
    }
    let mut total = 0.0f64;
    let mut x = k;
    loop {
        let term = log_pmf.exp();
        total += term;
        // The tail's terms shrink fast past the mode: stop once they no longer count.
        if x == n || (x as f64 > n as f64 * q && term < total * 1e-17) {
            break;
        }
        log_pmf += ((n - x) as f64).ln() - ((x + 1) as f64).ln() + lq - lnq;
        x += 1;
    }
    total.min(1.0)
}

impl Gate {
    pub fn judge(&self, new: Sample, old: Sample) -> Verdict {
        if new.n() < self.min_devices || old.n() < self.min_devices {
            return Verdict::TooFew;
        }
        let (p1, p2) = (new.rate(), old.rate());
        if p1 - p2 < self.min_excess {
            return Verdict::Healthy;
        }
        let k = new.failed + old.failed;
        let q = new.n() as f64 / (new.n() + old.n()) as f64;
        let p_value = binomial_tail(k, new.failed, q);
        if p_value <= self.alpha {
            Verdict::Unhealthy {
                new_rate: p1,
                old_rate: p2,
                p_value,
            }
        } else {
            Verdict::Healthy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so the simulations are the same each run.
    struct Rng(u64);

    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        fn sample(&mut self, devices: u64, rate: f64) -> Sample {
            let failed = (0..devices).filter(|_| self.unit() < rate).count() as u64;
            Sample {
                launched: devices,
                failed,
            }
        }
    }

    #[test]
    fn every_event_reads_back_and_only_launch_failures_and_crashes_are_failures() {
        for e in ReportEvent::ALL {
            assert_eq!(ReportEvent::parse(e.as_str()), Some(e));
        }
        assert_eq!(ReportEvent::parse("exploded"), None);
        let failures: Vec<_> = ReportEvent::ALL.iter().filter(|e| e.is_failure()).collect();
        assert_eq!(
            failures,
            [&ReportEvent::LaunchFailed, &ReportEvent::Crashed]
        );
    }

    fn raw(event: &str, at_ms: Option<i64>) -> RawReport<'_> {
        RawReport {
            device_id: "phone-1",
            app_id: 3,
            package_id: 9,
            event,
            at_ms,
        }
    }

    #[test]
    fn a_good_batch_is_placed_in_its_hours() {
        let now = 10 * HOUR_MS + 5;
        let got = check_batch(
            &[raw("launched", None), raw("crashed", Some(now - HOUR_MS))],
            now,
        )
        .expect("good");
        assert_eq!(got[0].hour, 10);
        assert_eq!((got[1].hour, got[1].event), (9, ReportEvent::Crashed));
    }

    #[test]
    fn one_bad_report_refuses_the_whole_batch_saying_which() {
        let now = 1_000 * HOUR_MS;
        let cases: Vec<(Vec<RawReport<'_>>, &str)> = vec![
            (vec![], "empty"),
            (vec![raw("launched", None); MAX_BATCH + 1], "at most"),
            (
                vec![raw("launched", None), raw("exploded", None)],
                "report 1",
            ),
            (
                vec![raw("launched", Some(now + MAX_FUTURE_MS + 1))],
                "future",
            ),
            (vec![raw("launched", Some(now - MAX_AGE_MS - 1))], "7 days"),
            (
                vec![RawReport {
                    device_id: "",
                    ..raw("launched", None)
                }],
                "device_id",
            ),
            (
                vec![RawReport {
                    device_id: "a\u{202e}b",
                    ..raw("launched", None)
                }],
                "device_id",
            ),
            (
                vec![RawReport {
                    package_id: 0,
                    ..raw("launched", None)
                }],
                "positive",
            ),
        ];
        for (batch, want) in cases {
            let e = check_batch(&batch, now).expect_err(want).to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        assert!(check_batch(&vec![raw("launched", None); MAX_BATCH], now).is_ok());
    }

    #[test]
    fn a_small_sample_is_never_judged() {
        let g = Gate::default();
        let awful = Sample {
            launched: 499,
            failed: 499,
        };
        let fine = Sample {
            launched: 5_000,
            failed: 0,
        };
        assert_eq!(g.judge(awful, fine), Verdict::TooFew);
        assert_eq!(g.judge(fine, awful), Verdict::TooFew);
    }

    #[test]
    fn the_binomial_tail_matches_hand_figures() {
        // P(X ≥ 1) for Binomial(10, 0.5) = 1 − 1/1024.
        assert!((binomial_tail(10, 1, 0.5) - (1.0 - 1.0 / 1024.0)).abs() < 1e-12);
        // P(X ≥ 10) = 1/1024.
        assert!((binomial_tail(10, 10, 0.5) - 1.0 / 1024.0).abs() < 1e-12);
        assert_eq!(binomial_tail(5, 0, 0.3), 1.0);
        assert_eq!(binomial_tail(5, 6, 0.3), 0.0);
        // A large n does not underflow: P(X ≥ 5,100) for Binomial(100,000, 0.05) ≈ 0.0728.
        let t = binomial_tail(100_000, 5_100, 0.05);
        assert!((t - 0.0728).abs() < 0.003, "{t}");
    }

    #[test]
    fn a_version_failing_at_five_percent_against_half_a_percent_halts_at_the_minimum_sample() {
        let g = Gate::default();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut halted = 0;
        for _ in 0..1_000 {
            // The new version on 5 % of a fleet: exactly the minimum sample.
            let new = rng.sample(g.min_devices, 0.05);
            let old = rng.sample(9_500, 0.005);
            if matches!(g.judge(new, old), Verdict::Unhealthy { .. }) {
                halted += 1;
            }
        }
        eprintln!("{halted} of 1000 broken versions halted at the minimum sample");
        assert!(halted >= 990, "{halted} of 1000 broken versions halted");
    }

    #[test]
    fn a_version_as_good_as_the_old_one_is_rarely_halted_by_noise() {
        let g = Gate::default();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut false_halts = 0;
        for _ in 0..1_000 {
            let new = rng.sample(g.min_devices, 0.005);
            let old = rng.sample(9_500, 0.005);
            if matches!(g.judge(new, old), Verdict::Unhealthy { .. }) {
                false_halts += 1;
            }
        }
        // The documented rate: at most 1 in 1,000 evaluations (α = 0.001; the excess floor
        // makes it rarer still).
        eprintln!("{false_halts} false halts in 1000 fleets");
        assert!(false_halts <= 1, "{false_halts} false halts in 1000 fleets");
    }
}
