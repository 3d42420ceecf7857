use super::*;
use proptest::prelude::*;

const POLICY: Policy = Policy {
    build_delay_ms: 3000,
    rollback_delay_ms: 3000,
    auto_audit_delay_ms: None,
};

fn open_app() -> AppFacts {
    AppFacts {
        name_audited: true,
        category_audited: true,
        authenticity_certified: true,
    }
}

fn pkg(id: i64, state: PkgState) -> PackageFacts {
    PackageFacts {
        package_id: PackageId(id),
        state,
        previous_package_id: None,
        restored: false,
        staged_percent: None,
        stage_plan: None,
    }
}

/// A snapshot with the target (id 1) in `state`; an online target has a history package to
/// return to, so that every command's happy path is reachable.
fn with_target(state: PkgState) -> Snapshot {
    let mut target = pkg(1, state);
    let mut packages = vec![];
    let mut recent_history = vec![];
    if matches!(state, PkgState::Online | PkgState::RollingBack) {
        target.previous_package_id = Some(PackageId(2));
        packages.push(pkg(2, PkgState::History));
        recent_history.push(PackageId(2));
    }
    packages.insert(0, target);
    Snapshot {
        app: open_app(),
        quota: Quota {
            limit: None,
            used: 0,
        },
        packages,
        recent_history,
    }
}

fn commands(id: i64) -> Vec<Command> {
    vec![
        Command::BuildSucceeded {
            package_id: PackageId(id),
            direct_commit: false,
            ext_json: "{}".into(),
        },
        Command::BuildFailed {
            package_id: PackageId(id),
            errno: Errno::TemplateParseError,
            msg: "broken".into(),
        },
        Command::SubmitAudit {
            package_id: PackageId(id),
            request: AuditRequest::default(),
        },
        Command::Decide {
            package_id: PackageId(id),
            pass: true,
            reason: String::new(),
        },
        Command::Decide {
            package_id: PackageId(id),
            pass: false,
            reason: "名称过长".into(),
        },
        Command::Release {
            package_id: PackageId(id),
        },
        Command::Rollback {
            package_id: PackageId(id),
        },
        Command::FinishRollback {
            package_id: PackageId(id),
        },
        Command::Withdraw {
            package_id: PackageId(id),
        },
        Command::StageRelease {
            package_id: PackageId(id),
            percent: 10,
        },
        Command::RevertStage {
            package_id: PackageId(id),
        },
        Command::RollbackTo {
            package_id: PackageId(id),
            target: PackageId(2),
        },
        Command::StartPlan {
            package_id: PackageId(id),
            plan: test_plan(),
        },
        Command::AdvanceStage {
            package_id: PackageId(id),
            from_step: 0,
            at_ms: 1,
        },
        Command::HaltStage {
            package_id: PackageId(id),
            from_step: 0,
            figures: figures(),
        },
        Command::ResumeStage {
            package_id: PackageId(id),
            at_ms: 1,
        },
    ]
}

fn test_plan() -> StagePlan {
    let gate = crate::stage::PlanGate {
        min_devices: 100,
        step_min_s: 0,
        alpha_ppm: 1000,
        min_excess_bp: 100,
    };
    StagePlan::new(vec![1, 20, 100], true, gate, 0).expect("valid plan")
}

fn figures() -> HaltFigures {
    use crate::health::Sample;
    HaltFigures {
        new: Sample {
            launched: 500,
            failed: 25,
        },
        old: Sample {
            launched: 500,
            failed: 2,
        },
        p_value: "1.0e-6".into(),
        at_ms: 5,
    }
}

/// The one state each package command accepts, and the errno it answers from any other.
fn expected(cmd: &Command, state: PkgState) -> Result<PkgState, Errno> {
    let (from, to, wrong) = match cmd {
        Command::BuildSucceeded { .. } => {
            (PkgState::Building, PkgState::Development, Errno::WrongState)
        }
        Command::BuildFailed { .. } => {
            (PkgState::Building, PkgState::BuildFailed, Errno::WrongState)
        }
        Command::SubmitAudit { .. } => {
            if state == PkgState::Building {
                return Err(Errno::Processing);
            }
            (PkgState::Development, PkgState::Auditing, Errno::WrongState)
        }
        Command::Decide { pass, .. } => (
            PkgState::Auditing,
            if *pass {
                PkgState::AuditPassed
            } else {
                PkgState::AuditFailed
            },
            Errno::WrongState,
        ),
        Command::Release { .. } => (PkgState::AuditPassed, PkgState::Online, Errno::WrongState),
        Command::Rollback { .. } => {
            if state == PkgState::RollingBack {
                return Err(Errno::Processing);
            }
            (
                PkgState::Online,
                PkgState::RollingBack,
                Errno::NotOnlinePackage,
            )
        }
        Command::FinishRollback { .. } => {
            (PkgState::RollingBack, PkgState::Retired, Errno::WrongState)
        }
        Command::Withdraw { .. } => (PkgState::Auditing, PkgState::Development, Errno::WrongState),
        Command::StageRelease { .. } => (
            PkgState::AuditPassed,
            PkgState::AuditPassed,
            Errno::WrongState,
        ),
        // Nothing is staged in these snapshots.
        Command::RevertStage { .. }
        | Command::AdvanceStage { .. }
        | Command::HaltStage { .. }
        | Command::ResumeStage { .. } => return Err(Errno::NotStaged),
        Command::StartPlan { .. } => (
            PkgState::AuditPassed,
            PkgState::AuditPassed,
            Errno::WrongState,
        ),
        Command::RollbackTo { .. } => {
            if state == PkgState::RollingBack {
                return Err(Errno::Processing);
            }
            (
                PkgState::Online,
                PkgState::RollingBack,
                Errno::NotOnlinePackage,
            )
        }
        Command::Upload { .. } => unreachable!("upload has no target"),
    };
    if state == from {
        Ok(to)
    } else {
        Err(wrong)
    }
}

#[test]
fn every_command_from_every_state_is_allowed_exactly_where_the_rules_say() {
    for state in PkgState::ALL {
        for cmd in commands(1) {
            let got = decide(&with_target(state), &cmd, &POLICY);
            match expected(&cmd, state) {
                Ok(to) => {
                    let plan = got.unwrap_or_else(|r| panic!("{cmd:?} from {state:?}: {r}"));
                    let c = plan
                        .changes
                        .iter()
                        .find(|c| c.package_id == PackageId(1))
                        .unwrap_or_else(|| panic!("{cmd:?} from {state:?} leaves target alone"));
                    assert_eq!((c.from, c.to), (state, to), "{cmd:?}");
                }
                Err(errno) => {
                    let r = got.expect_err(&format!("{cmd:?} from {state:?} must be refused"));
                    assert_eq!(r.errno, errno, "{cmd:?} from {state:?}: {}", r.msg);
                }
            }
        }
    }
}

#[test]
fn unknown_package_is_69005_for_every_command() {
    for cmd in commands(99) {
        let r = decide(&with_target(PkgState::Development), &cmd, &POLICY).expect_err("refused");
        assert_eq!(r.errno, Errno::PackageNotFound);
    }
}

#[test]
fn submitaudit_gates_answer_69001_69002_69003() {
    for (name, cat, errno) in [
        (false, true, Errno::NameNotAudited),
        (true, false, Errno::CategoryNotAudited),
        (false, false, Errno::NameAndCategoryNotAudited),
    ] {
        let mut s = with_target(PkgState::Development);
        s.app.name_audited = name;
        s.app.category_audited = cat;
        let cmd = Command::SubmitAudit {
            package_id: PackageId(1),
            request: AuditRequest::default(),
        };
        assert_eq!(decide(&s, &cmd, &POLICY).expect_err("gated").errno, errno);
    }
}

#[test]
fn second_audit_in_flight_is_refused_with_69502() {
    let mut s = with_target(PkgState::Development);
    s.packages.push(pkg(5, PkgState::Auditing));
    let cmd = Command::SubmitAudit {
        package_id: PackageId(1),
        request: AuditRequest::default(),
    };
    assert_eq!(
        decide(&s, &cmd, &POLICY).expect_err("in flight").errno,
        Errno::AuditInFlight
    );
}

#[test]
fn exhausted_weekly_quota_is_69013_and_a_submission_consumes_one() {
    let mut s = with_target(PkgState::Development);
    let cmd = Command::SubmitAudit {
        package_id: PackageId(1),
        request: AuditRequest::default(),
    };
    s.quota = Quota {
        limit: Some(2),
        used: 1,
    };
    assert!(decide(&s, &cmd, &POLICY).expect("one left").consume_quota);
    s.quota.used = 2;
    assert_eq!(
        decide(&s, &cmd, &POLICY).expect_err("none left").errno,
        Errno::AuditQuotaExceeded
    );
}

#[test]
fn release_without_certification_is_50038() {
    let mut s = with_target(PkgState::AuditPassed);
    s.app.authenticity_certified = false;
    let r = decide(
        &s,
        &Command::Release {
            package_id: PackageId(1),
        },
        &POLICY,
    )
    .expect_err("gated");
    assert_eq!(r.errno, Errno::NotCertified);
}

#[test]
fn release_keeps_the_old_online_version_as_the_rollback_target() {
    let mut s = with_target(PkgState::AuditPassed);
    s.packages.push(pkg(7, PkgState::Online));
    let plan = decide(
        &s,
        &Command::Release {
            package_id: PackageId(1),
        },
        &POLICY,
    )
    .expect("release");
    apply(&mut s, &plan).expect("applies");
    assert_eq!(
        s.package(PackageId(7)).map(|p| p.state),
        Some(PkgState::History)
    );
    assert_eq!(
        s.package(PackageId(1)).and_then(|p| p.previous_package_id),
        Some(PackageId(7))
    );
}

#[test]
fn release_while_rolling_back_is_refused_as_processing() {
    let mut s = with_target(PkgState::AuditPassed);
    s.packages.push(pkg(7, PkgState::RollingBack));
    let r = decide(
        &s,
        &Command::Release {
            package_id: PackageId(1),
        },
        &POLICY,
    )
    .expect_err("busy");
    assert_eq!(r.errno, Errno::Processing);
}

#[test]
fn rollback_needs_a_previous_version_and_cannot_repeat() {
    let mut first = with_target(PkgState::Online);
    first.packages.retain(|p| p.package_id == PackageId(1));
    first.packages[0].previous_package_id = None;
    let cmd = Command::Rollback {
        package_id: PackageId(1),
    };
    assert_eq!(
        decide(&first, &cmd, &POLICY).expect_err("nothing").errno,
        Errno::NothingToRollBack
    );

    let mut s = with_target(PkgState::Online);
    let plan = decide(&s, &cmd, &POLICY).expect("rollback");
    assert_eq!(plan.jobs[0].kind, JobKind::FinishRollback);
    apply(&mut s, &plan).expect("applies");
    let finish = decide(
        &s,
        &Command::FinishRollback {
            package_id: PackageId(1),
        },
        &POLICY,
    )
    .expect("finish");
    apply(&mut s, &finish).expect("applies");
    let restored = s.package(PackageId(2)).expect("restored").clone();
    assert_eq!(
        (restored.state, restored.restored),
        (PkgState::Online, true)
    );
    let again = decide(
        &s,
        &Command::Rollback {
            package_id: PackageId(2),
        },
        &POLICY,
    )
    .expect_err("twice");
    assert_eq!(again.errno, Errno::RollbackTwice);
}

#[test]
fn withdraw_returns_to_development_unless_a_newer_upload_is_there() {
    let mut s = with_target(PkgState::Auditing);
    let plan = decide(
        &s,
        &Command::Withdraw {
            package_id: PackageId(1),
        },
        &POLICY,
    )
    .expect("withdraw");
    assert_eq!(plan.changes[0].to, PkgState::Development);
    s.packages.push(pkg(9, PkgState::Building));
    let plan = decide(
        &s,
        &Command::Withdraw {
            package_id: PackageId(1),
        },
        &POLICY,
    )
    .expect("withdraw");
    assert_eq!(plan.changes[0].to, PkgState::Retired);
}

#[test]
fn direct_commit_submits_after_build_or_records_why_not() {
    let mut s = with_target(PkgState::Building);
    let cmd = Command::BuildSucceeded {
        package_id: PackageId(1),
        direct_commit: true,
        ext_json: "{}".into(),
    };
    let plan = decide(&s, &cmd, &POLICY).expect("built");
    assert_eq!(plan.changes[0].to, PkgState::Auditing);
    assert!(plan.consume_quota);

    s.app.name_audited = false;
    let plan = decide(&s, &cmd, &POLICY).expect("built");
    assert_eq!(plan.changes[0].to, PkgState::Development);
    let msg = plan.changes[0].patch.msg.clone().unwrap_or_default();
    assert!(msg.contains("小程序名称审核通过后"), "{msg}");
    assert!(!plan.consume_quota);
}

#[test]
fn auto_audit_mode_schedules_a_decision_on_submission() {
    let s = with_target(PkgState::Development);
    let policy = Policy {
        auto_audit_delay_ms: Some(250),
        ..POLICY
    };
    let cmd = Command::SubmitAudit {
        package_id: PackageId(1),
        request: AuditRequest::default(),
    };
    let plan = decide(&s, &cmd, &policy).expect("submitted");
    assert_eq!(
        plan.jobs,
        vec![JobRequest {
            kind: JobKind::AutoAudit,
            package_id: PackageId(1),
            delay_ms: 250
        }]
    );
}

#[test]
fn a_new_upload_retires_the_development_version_even_while_building() {
    let s = with_target(PkgState::Building);
    let plan = decide(
        &s,
        &Command::Upload {
            package_id: PackageId(2),
        },
        &POLICY,
    )
    .expect("upload");
    assert_eq!(plan.changes[0].to, PkgState::Retired);
    assert_eq!(plan.create, Some(PackageId(2)));
    assert_eq!(plan.jobs[0].delay_ms, 3000);
}

#[derive(Debug, Clone)]
enum Op {
    Upload,
    Build(bool, bool),
    Submit(usize),
    Decide(usize, bool),
    Release(usize),
    Rollback(usize),
    FinishRollback(usize),
    Withdraw(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Upload),
        (any::<bool>(), any::<bool>()).prop_map(|(ok, dc)| Op::Build(ok, dc)),
        (0usize..8).prop_map(Op::Submit),
        (0usize..8, any::<bool>()).prop_map(|(i, p)| Op::Decide(i, p)),
        (0usize..8).prop_map(Op::Release),
        (0usize..8).prop_map(Op::Rollback),
        (0usize..8).prop_map(Op::FinishRollback),
        (0usize..8).prop_map(Op::Withdraw),
    ]
}

fn count(s: &Snapshot, st: PkgState) -> usize {
    s.packages.iter().filter(|p| p.state == st).count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the TP, reviewers and workers do, in any order: at most one package per slot
    /// (so one online and at most one auditing), an app that had an online version keeps
    /// one, and the history of former online versions grows only by release.
    #[test]
    fn invariants_hold_under_any_sequence(ops in proptest::collection::vec(op(), 1..60), quota in proptest::option::of(0i64..5)) {
        let mut s = Snapshot { app: open_app(), quota: Quota { limit: quota, used: 0 }, packages: vec![], recent_history: vec![] };
        let mut next_id = 1;
        let mut had_online = false;
        for o in ops {
            let ids: Vec<PackageId> = s.packages.iter().map(|p| p.package_id).collect();
            let pick = |i: usize| ids.get(i % ids.len().max(1)).copied().unwrap_or(PackageId(0));
            let cmd = match o {
                Op::Upload => { next_id += 1; Command::Upload { package_id: PackageId(next_id) } }
                Op::Build(ok, dc) => {
                    let id = s.packages.iter().find(|p| p.state == PkgState::Building).map(|p| p.package_id).unwrap_or(PackageId(0));
                    if ok { Command::BuildSucceeded { package_id: id, direct_commit: dc, ext_json: "{}".into() } }
                    else { Command::BuildFailed { package_id: id, errno: Errno::TemplateParseError, msg: "x".into() } }
                }
                Op::Submit(i) => Command::SubmitAudit { package_id: pick(i), request: AuditRequest::default() },
                Op::Decide(i, pass) => Command::Decide { package_id: pick(i), pass, reason: "r".into() },
                Op::Release(i) => Command::Release { package_id: pick(i) },
                Op::Rollback(i) => Command::Rollback { package_id: pick(i) },
                Op::FinishRollback(i) => Command::FinishRollback { package_id: pick(i) },
                Op::Withdraw(i) => Command::Withdraw { package_id: pick(i) },
            };
            let history_before = count(&s, PkgState::History);
            let before = s.clone();
            match decide(&s, &cmd, &POLICY) {
                Ok(plan) => apply(&mut s, &plan).map_err(TestCaseError::fail)?,
                Err(r) => { prop_assert_ne!(r.errno, Errno::Success); prop_assert_eq!(&s, &before); continue; }
            }
            for slot in [Slot::Development, Slot::Audit, Slot::Online] {
                prop_assert!(s.packages.iter().filter(|p| p.state.slot() == Some(slot)).count() <= 1, "slot {:?} holds two: {:?}", slot, s.packages);
            }
            let online = s.in_slot(Slot::Online).is_some();
            prop_assert!(!had_online || online, "the app lost its online version: {:?}", cmd);
            had_online |= online;
            if count(&s, PkgState::History) > history_before {
                prop_assert!(matches!(cmd, Command::Release { .. }), "history grew by {:?}", cmd);
            }
            if let Some(limit) = s.quota.limit { prop_assert!(s.quota.used <= limit); }
        }
    }
}

fn staged(percent: Option<i64>) -> Snapshot {
    let mut s = with_target(PkgState::AuditPassed);
    s.packages[0].staged_percent = percent;
    s.packages.push(pkg(3, PkgState::Online));
    s
}

#[test]
fn a_staged_release_grows_never_shrinks_and_ends_by_release_or_revert() {
    let stage = |p| Command::StageRelease {
        package_id: PackageId(1),
        percent: p,
    };
    let mut s = staged(None);
    let plan = decide(&s, &stage(10), &POLICY).expect("staged");
    apply(&mut s, &plan).expect("applies");
    assert_eq!(s.packages[0].staged_percent, Some(10));
    let plan = decide(&s, &stage(50), &POLICY).expect("raised");
    apply(&mut s, &plan).expect("applies");
    assert_eq!(s.packages[0].staged_percent, Some(50));
    assert_eq!(
        decide(&s, &stage(20), &POLICY).expect_err("lowered").errno,
        Errno::StagePercentLowered
    );
    for bad in [0, 101, -5] {
        assert_eq!(
            decide(&s, &stage(bad), &POLICY).expect_err("range").errno,
            Errno::ParamError
        );
    }
    // Reverted: back to no staged release, and it can start again lower.
    let mut reverted = s.clone();
    let plan = decide(
        &reverted,
        &Command::RevertStage {
            package_id: PackageId(1),
        },
        &POLICY,
    )
    .expect("revert");
    apply(&mut reverted, &plan).expect("applies");
    assert_eq!(reverted.packages[0].staged_percent, None);
    decide(&reverted, &stage(5), &POLICY).expect("a new staged release");
    // Released: online for everyone, the staged mark gone, the old online one in history.
    let plan = decide(
        &s,
        &Command::Release {
            package_id: PackageId(1),
        },
        &POLICY,
    )
    .expect("release");
    apply(&mut s, &plan).expect("applies");
    assert_eq!(s.packages[0].state, PkgState::Online);
    assert_eq!(s.packages[0].staged_percent, None);
    assert_eq!(
        s.package(PackageId(3)).map(|p| p.state),
        Some(PkgState::History)
    );
}

#[test]
fn a_new_audit_waits_until_the_staged_release_is_released_or_reverted() {
    let mut s = staged(Some(30));
    s.packages.push(pkg(4, PkgState::Development));
    let submit = Command::SubmitAudit {
        package_id: PackageId(4),
        request: AuditRequest::default(),
    };
    assert_eq!(
        decide(&s, &submit, &POLICY).expect_err("staged").errno,
        Errno::StagedReleaseInProgress
    );
    s.packages[0].staged_percent = None;
    decide(&s, &submit, &POLICY).expect("allowed once reverted");
}

#[test]
fn rollback_to_a_chosen_version_takes_one_of_the_last_five_only() {
    let mut s = with_target(PkgState::Online);
    s.packages[0].restored = true;
    for id in 10..17 {
        s.packages.push(pkg(id, PkgState::History));
    }
    // Most recent first; the store passes the last five only.
    s.recent_history = vec![
        PackageId(16),
        PackageId(15),
        PackageId(14),
        PackageId(13),
        PackageId(12),
    ];
    let to = |t| Command::RollbackTo {
        package_id: PackageId(1),
        target: t,
    };
    assert_eq!(
        decide(&s, &to(PackageId(11)), &POLICY)
            .expect_err("too old")
            .errno,
        Errno::RollbackTargetInvalid
    );
    assert_eq!(
        decide(&s, &to(PackageId(1)), &POLICY)
            .expect_err("itself")
            .errno,
        Errno::RollbackTargetInvalid
    );
    // Allowed even from a restored version (unlike a plain rollback), and finished as one.
    let plan = decide(&s, &to(PackageId(13)), &POLICY).expect("rollback to 13");
    apply(&mut s, &plan).expect("applies");
    let plan = decide(
        &s,
        &Command::FinishRollback {
            package_id: PackageId(1),
        },
        &POLICY,
    )
    .expect("finish");
    apply(&mut s, &plan).expect("applies");
    assert_eq!(
        s.package(PackageId(13)).map(|p| p.state),
        Some(PkgState::Online)
    );
    assert_eq!(
        s.package(PackageId(1)).map(|p| p.state),
        Some(PkgState::Retired)
    );
}

fn run(s: &mut Snapshot, cmd: Command) -> Plan {
    let plan = decide(s, &cmd, &POLICY).unwrap_or_else(|r| panic!("{cmd:?}: {r}"));
    apply(s, &plan).expect("applies");
    plan
}

#[test]
fn a_plan_climbs_its_steps_and_its_last_advance_releases_to_everyone() {
    let mut s = staged(None);
    let id = PackageId(1);
    run(
        &mut s,
        Command::StartPlan {
            package_id: id,
            plan: test_plan(),
        },
    );
    assert_eq!(s.packages[0].staged_percent, Some(1));
    let plan = run(
        &mut s,
        Command::AdvanceStage {
            package_id: id,
            from_step: 0,
            at_ms: 10,
        },
    );
    assert_eq!(s.packages[0].staged_percent, Some(20));
    let stage = s.packages[0].stage_plan.clone().expect("plan kept");
    assert_eq!((stage.step, stage.step_started_ms), (1, 10));
    assert_eq!(
        plan.stage_event.map(|e| (e.halted, e.percent)),
        Some((false, 20))
    );
    // A second scheduler that judged step 0 too is refused: one advance per step.
    let late = decide(
        &s,
        &Command::AdvanceStage {
            package_id: id,
            from_step: 0,
            at_ms: 11,
        },
        &POLICY,
    );
    assert_eq!(late.expect_err("late").errno, Errno::Processing);
    let plan = run(
        &mut s,
        Command::AdvanceStage {
            package_id: id,
            from_step: 1,
            at_ms: 20,
        },
    );
    assert_eq!(s.packages[0].state, PkgState::Online);
    assert_eq!(s.packages[0].staged_percent, None);
    let done = s.packages[0]
        .stage_plan
        .clone()
        .expect("kept once released");
    assert_eq!((done.status, done.step), (PlanStatus::Finished, 2));
    assert_eq!(
        s.package(PackageId(3)).map(|p| p.state),
        Some(PkgState::History)
    );
    assert_eq!(
        plan.stage_event.map(|e| e.status),
        Some(PlanStatus::Finished)
    );
}

#[test]
fn a_halt_drops_the_share_to_zero_and_only_resume_or_abandon_follow() {
    let mut s = staged(None);
    let id = PackageId(1);
    run(
        &mut s,
        Command::StartPlan {
            package_id: id,
            plan: test_plan(),
        },
    );
    let plan = run(
        &mut s,
        Command::HaltStage {
            package_id: id,
            from_step: 0,
            figures: figures(),
        },
    );
    assert_eq!(s.packages[0].staged_percent, Some(0));
    let event = plan.stage_event.expect("announced");
    assert!(
        event.halted && event.reason.contains("5.00% of 500"),
        "{}",
        event.reason
    );
    let halted = s.packages[0].stage_plan.clone().expect("plan");
    assert_eq!(halted.status, PlanStatus::Halted);
    assert_eq!(halted.halt, Some(figures()));
    // The scheduler cannot move a halted plan.
    for cmd in [
        Command::AdvanceStage {
            package_id: id,
            from_step: 0,
            at_ms: 9,
        },
        Command::HaltStage {
            package_id: id,
            from_step: 0,
            figures: figures(),
        },
    ] {
        assert_eq!(
            decide(&s, &cmd, &POLICY).expect_err("halted").errno,
            Errno::WrongState
        );
    }
    // Resumed: the step's share again, a fresh sample.
    let mut resumed = s.clone();
    run(
        &mut resumed,
        Command::ResumeStage {
            package_id: id,
            at_ms: 50,
        },
    );
    assert_eq!(resumed.packages[0].staged_percent, Some(1));
    let p = resumed.packages[0].stage_plan.clone().expect("plan");
    // The fresh sample starts at the next full hour: the halting failures are not judged again.
    assert_eq!(
        (p.status, p.step_started_ms, p.halt),
        (PlanStatus::Running, crate::health::HOUR_MS, None)
    );
    // Abandoned: no staged release and no plan.
    run(&mut s, Command::RevertStage { package_id: id });
    assert_eq!(
        (
            s.packages[0].staged_percent.is_none(),
            s.packages[0].stage_plan.is_none()
        ),
        (true, true)
    );
}

#[test]
fn a_percentage_set_by_hand_ends_the_plan_and_a_plan_needs_no_staged_release_running() {
    let mut s = staged(None);
    let id = PackageId(1);
    run(
        &mut s,
        Command::StartPlan {
            package_id: id,
            plan: test_plan(),
        },
    );
    let again = decide(
        &s,
        &Command::StartPlan {
            package_id: id,
            plan: test_plan(),
        },
        &POLICY,
    );
    assert_eq!(
        again.expect_err("running").errno,
        Errno::StagedReleaseInProgress
    );
    run(
        &mut s,
        Command::StageRelease {
            package_id: id,
            percent: 30,
        },
    );
    assert_eq!(s.packages[0].stage_plan, None);
    assert_eq!(s.packages[0].staged_percent, Some(30));
}
