//! `cargo xtask workshop ...`: exercises derived from the step crates, checked by the same
//! behaviour checks as the steps' own tests (cfs-testkit), run as root through the runner.
//!
//! A participant's working copy lives in `workshop/stepNN/` (ignored by git): a crate of its
//! own, not a workspace member (its Cargo.toml has an empty `[workspace]`), so that a half-done
//! exercise never breaks `cargo build`/`cargo test` of the workspace, and so that its package
//! (`my-stepNN-...`) can coexist with the step of the same number. It builds into the
//! workspace's target directory, where the dependencies are already compiled.

mod doctor;
mod exercises;
mod generate;

use crate::{cargo, target_dir, workspace};
use anyhow::{bail, Context, Result};
use exercises::{exercise, Exercise, EXERCISES};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

const USAGE: &str = "\
usage: cargo xtask workshop <command>

  list            the exercises and how far you are with each
  start N         make your working copy of exercise N in workshop/stepNN (--force: replace it,
                  keeping the old one as a backup)
  check N         build your copy and check its behaviour (as root, via sudo if needed)
  hint N          one more hint each time
  solution N      the reference solution (the step's own src/main.rs)
  diff N          what differs between your copy and the reference
  watch N         check again whenever you save
  doctor          check this machine before the workshop day
  dev-check       (maintainers, CI) prove every exercise fails unsolved and passes solved
";

pub fn run(args: &[String]) -> Result<()> {
    let step = || -> Result<u8> {
        let n = args
            .get(1)
            .context("which exercise? give its number, e.g. `cargo xtask workshop start 1`")?;
        let n: u8 = n
            .trim_start_matches("step")
            .parse()
            .with_context(|| format!("{n:?} is not an exercise number (1 to 5)"))?;
        exercise(n).map(|e| e.step)
    };
    let force = args.iter().any(|a| a == "--force" || a == "-f");
    match args.first().map(String::as_str) {
        Some("list") => list(),
        Some("start") => start(step()?, force),
        Some("check") => check(step()?).map(|ok| {
            if !ok {
                std::process::exit(1)
            }
        }),
        Some("hint") => hint(step()?),
        Some("solution") => solution(step()?),
        Some("diff") => diff(step()?),
        Some("watch") => watch(step()?),
        Some("doctor") => doctor::run(),
        Some("dev-check") => dev_check(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown workshop command {other:?}\n{USAGE}"),
    }
}

/// The participant's working copy of exercise `step`.
fn copy_dir(step: u8) -> PathBuf {
    workspace().join("workshop").join(format!("step{step:02}"))
}

fn copy_main(step: u8) -> PathBuf {
    copy_dir(step).join("src/main.rs")
}

// ---------------------------------------------------------------------------------------------
// progress, kept in the copy's directory

const STATE: &str = ".workshop-state";

#[derive(Default)]
struct State {
    hints: usize,
    /// "pass" or "fail", and main.rs's modification time when that was checked.
    last_check: Option<(String, u64)>,
}

impl State {
    fn load(step: u8) -> State {
        let text = std::fs::read_to_string(copy_dir(step).join(STATE)).unwrap_or_default();
        let mut state = State::default();
        for line in text.lines() {
            match line.split_once('=') {
                Some(("hints", n)) => state.hints = n.parse().unwrap_or(0),
                Some(("last_check", v)) => {
                    if let Some((verdict, at)) = v.split_once(' ') {
                        state.last_check = Some((verdict.into(), at.parse().unwrap_or(0)));
                    }
                }
                _ => {}
            }
        }
        state
    }

    fn save(&self, step: u8) -> Result<()> {
        let mut text = format!(
            "# progress of `cargo xtask workshop` in this exercise\nhints={}\n",
            self.hints
        );
        if let Some((verdict, at)) = &self.last_check {
            text.push_str(&format!("last_check={verdict} {at}\n"));
        }
        std::fs::write(copy_dir(step).join(STATE), text).context("cannot save progress")
    }
}

fn mtime_secs(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------------
// list, start

fn list() -> Result<()> {
    println!("The exercises (your copies are in workshop/):\n");
    for ex in EXERCISES {
        let status = if !copy_main(ex.step).exists() {
            "not started".to_string()
        } else {
            let state = State::load(ex.step);
            match &state.last_check {
                None => "started, not checked yet".to_string(),
                Some((verdict, at)) => {
                    let verdict = if verdict == "pass" {
                        "passing"
                    } else {
                        "failing"
                    };
                    if mtime_secs(&copy_main(ex.step)) > *at {
                        format!("{verdict} (edited since the last check)")
                    } else {
                        verdict.to_string()
                    }
                }
            }
        };
        println!(
            "  {}  {:<66} ~{:>2} min   {status}",
            ex.step, ex.title, ex.minutes
        );
    }
    println!("\nNext: `cargo xtask workshop start N`, then `cargo xtask workshop check N`.");
    Ok(())
}

fn start(step: u8, force: bool) -> Result<()> {
    let ws = workspace();
    let ex = exercise(step)?;
    let dir = copy_dir(step);
    let fresh = generate::exercise_source(ex, &generate::reference_source(&ws, ex)?)?;
    if dir.exists() {
        let current = std::fs::read_to_string(dir.join("src/main.rs")).unwrap_or_default();
        if current == fresh {
            // Untouched: refreshing it loses nothing (and repairs the crate around it).
            generate::write_crate(&ws, ex, &dir, &fresh, &generate::package_name(ex))?;
            println!(
                "{} is already there, untouched: nothing to lose, refreshed it.",
                rel(&dir)
            );
            return next_steps(ex, &dir);
        }
        if !force
            && !confirm(&format!(
            "{} already holds your work on exercise {step}. Start over? The old copy is kept as a \
             backup. [y/N] ",
            rel(&dir)
        ))? {
            bail!(
                "kept your work in {}. To start over anyway: `cargo xtask workshop start {step} \
                 --force` (your copy is moved to a backup, not deleted)",
                rel(&dir)
            );
        }
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let backup = dir.with_file_name(format!("step{step:02}.backup-{stamp}"));
        std::fs::rename(&dir, &backup)
            .with_context(|| format!("cannot move {} aside", dir.display()))?;
        println!("Your previous copy is now {}.", rel(&backup));
    }
    generate::write_exercise(&ws, ex, &dir, &generate::package_name(ex))?;
    println!(
        "Exercise {step}: {}. Your copy: {}/src/main.rs",
        ex.title,
        rel(&dir)
    );
    next_steps(ex, &dir)
}

fn next_steps(ex: &Exercise, dir: &Path) -> Result<()> {
    let n = ex.step;
    println!(
        "\nIt is {} with this step's feature taken out: {} todo!() to fill in:",
        ex.package,
        ex.regions.len()
    );
    for r in ex.regions {
        println!("  - {}", r.todo);
    }
    println!(
        "\nThen:  cargo xtask workshop check {n}     (builds {} and checks it, as root)\n\
         Stuck: cargo xtask workshop hint {n}      (one more hint each time)\n\
         Try:   cd {} && cargo run -- run /bin/sh",
        rel(dir),
        rel(dir)
    );
    Ok(())
}

/// Asks a yes/no question on the terminal; without one, the answer is no.
fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    print!("{question}");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// A path relative to the workspace, for messages.
fn rel(path: &Path) -> String {
    path.strip_prefix(workspace())
        .unwrap_or(path)
        .display()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// check, watch

/// Builds the checker (cfs-testkit's cfs-check) and returns its path.
fn build_checker() -> Result<PathBuf> {
    let status = cargo()
        .current_dir(workspace())
        .args([
            "build",
            "--quiet",
            "-p",
            "cfs-testkit",
            "--bin",
            "cfs-check",
        ])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building the checker (cfs-testkit's cfs-check) failed");
    }
    Ok(target_dir().join("debug/cfs-check"))
}

/// Builds the crate in `dir` (an exercise crate, package `name`) into `target`; returns its
/// binary, or None when it does not compile (cargo has shown why).
fn build_copy(name: &str, dir: &Path, target: &Path) -> Result<Option<PathBuf>> {
    let status = cargo()
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .args(["build", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .status()
        .context("cannot run cargo")?;
    Ok(status.success().then(|| target.join("debug").join(name)))
}

/// Runs the checker as root (scripts/run-as-root, as `cargo run` does) on `bin`; true if
/// every check passed. `porcelain` captures and returns the `pass|fail NAME` lines too.
fn run_checker(
    checker: &Path,
    bin: &Path,
    step: u8,
    extra: &[&str],
) -> Result<(bool, Vec<String>, String)> {
    let mut cmd = Command::new(workspace().join("scripts/run-as-root"));
    cmd.arg(checker).args(extra).arg(bin).arg(step.to_string());
    if extra.contains(&"--porcelain") {
        let out = cmd
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("cannot run the checker")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines = text
            .lines()
            .filter(|l| l.starts_with("pass ") || l.starts_with("fail "))
            .map(String::from)
            .collect();
        check_runner_status(out.status, &text)?;
        Ok((out.status.success(), lines, text))
    } else {
        let status = cmd.status().context("cannot run the checker")?;
        check_runner_status(status, "")?;
        Ok((status.success(), Vec::new(), String::new()))
    }
}

/// The checker in new UTS and mount namespaces (unshare(1), as root), with --porcelain.
fn run_checker_isolated(
    checker: &Path,
    bin: &Path,
    step: u8,
) -> Result<(bool, Vec<String>, String)> {
    let out = Command::new(workspace().join("scripts/run-as-root"))
        .arg("unshare")
        .args(["--uts", "--mount", "--propagation", "unchanged", "--"])
        .arg(checker)
        .arg("--porcelain")
        .arg(bin)
        .arg(step.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run the checker under unshare")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    check_runner_status(out.status, &text)?;
    let lines = text
        .lines()
        .filter(|l| l.starts_with("pass ") || l.starts_with("fail "))
        .map(String::from)
        .collect();
    Ok((out.status.success(), lines, text))
}

/// Exit status 1 is "some check failed"; anything else means the checks did not run.
fn check_runner_status(status: std::process::ExitStatus, output: &str) -> Result<()> {
    match status.code() {
        Some(0 | 1) => Ok(()),
        _ => bail!("the checker could not run the checks ({status})\n{output}"),
    }
}

fn check(step: u8) -> Result<bool> {
    let ex = exercise(step)?;
    let dir = copy_dir(step);
    if !dir.join("Cargo.toml").exists() {
        bail!("you have not started exercise {step} yet: `cargo xtask workshop start {step}`");
    }
    let checker = build_checker()?;
    println!("Building {} ...", rel(&dir));
    let Some(bin) = build_copy(&generate::package_name(ex), &dir, &target_dir())? else {
        println!(
            "\nYour copy does not compile yet: the errors are above (file {}/src/main.rs).",
            rel(&dir)
        );
        record(step, false)?;
        return Ok(false);
    };
    let (ok, ..) = run_checker(&checker, &bin, step, &[])?;
    record(step, ok)?;
    if ok {
        match EXERCISES.iter().find(|e| e.step == step + 1) {
            Some(next) => println!(
                "Well done! Next: `cargo xtask workshop start {}` ({}).",
                next.step, next.title
            ),
            None => println!(
                "Well done, that was the last exercise! Compare with the reference: \
                 `cargo xtask workshop diff {step}`; the full runtime is in final/."
            ),
        }
    } else {
        println!(
            "Stuck? `cargo xtask workshop hint {step}` ({} hints).",
            ex.hints.len()
        );
    }
    Ok(ok)
}

fn record(step: u8, ok: bool) -> Result<()> {
    let mut state = State::load(step);
    let verdict = if ok { "pass" } else { "fail" };
    state.last_check = Some((verdict.into(), mtime_secs(&copy_main(step))));
    state.save(step)
}

/// Every file of the copy that a change to should trigger a new check, with its mtime.
fn sources(dir: &Path) -> Vec<(PathBuf, Option<SystemTime>)> {
    let mut files = vec![dir.join("Cargo.toml")];
    let mut stack = vec![dir.join("src")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let t = std::fs::metadata(&f).and_then(|m| m.modified()).ok();
            (f, t)
        })
        .collect()
}

fn watch(step: u8) -> Result<()> {
    let dir = copy_dir(step);
    if !dir.exists() {
        bail!("you have not started exercise {step} yet: `cargo xtask workshop start {step}`");
    }
    let mut seen = Vec::new();
    loop {
        let now = sources(&dir);
        if now != seen {
            seen = now;
            println!("\n======== checking exercise {step} ========");
            if let Err(err) = check(step) {
                println!("{err:#}");
            }
            println!("\nWatching {}/ for changes (Ctrl-C to stop) ...", rel(&dir));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

// ---------------------------------------------------------------------------------------------
// hint, solution, diff

fn hint(step: u8) -> Result<()> {
    let ex = exercise(step)?;
    let started = copy_dir(step).exists();
    let mut state = if started {
        State::load(step)
    } else {
        State::default()
    };
    let shown = (state.hints + 1).min(ex.hints.len());
    for (i, text) in ex.hints.iter().enumerate().take(shown) {
        let marker = if i + 1 == shown { "new" } else { "   " };
        println!("Hint {}/{} {marker}", i + 1, ex.hints.len());
        for line in wrap(text, 92) {
            println!("  {line}");
        }
        println!();
    }
    if shown == ex.hints.len() {
        println!(
            "That was the last hint. The reference: `cargo xtask workshop solution {step}`, \
             or just the difference: `cargo xtask workshop diff {step}`."
        );
    } else {
        println!("Another hint: run this again.");
    }
    if started {
        state.hints = shown;
        state.save(step)?;
    } else {
        println!("(Start the exercise to have your hints remembered: `cargo xtask workshop start {step}`.)");
    }
    Ok(())
}

/// Wraps prose at `width` columns; lines that start with a space (code) stay as they are.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with(' ') {
            out.push(line.to_string());
            continue;
        }
        let mut current = String::new();
        for word in line.split_whitespace() {
            if !current.is_empty() && current.len() + 1 + word.len() > width {
                out.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        out.push(current);
    }
    out
}

fn reference(step: u8) -> Result<String> {
    let ex = exercise(step)?;
    Ok(generate::without_anchors(&generate::reference_source(
        &workspace(),
        ex,
    )?))
}

fn solution(step: u8) -> Result<()> {
    let ex = exercise(step)?;
    print!("{}", reference(step)?);
    eprintln!(
        "\n(The reference solution: {}/src/main.rs, shown without the book's ANCHOR lines.)",
        ex.package
    );
    Ok(())
}

fn diff(step: u8) -> Result<()> {
    let ex = exercise(step)?;
    let mine = copy_main(step);
    if !mine.exists() {
        bail!("you have not started exercise {step} yet: `cargo xtask workshop start {step}`");
    }
    // The reference with the exercise's header, so that only what you wrote differs.
    let reference = generate::solved_source(ex, &generate::reference_source(&workspace(), ex)?)?;
    let dir = target_dir().join("workshop");
    std::fs::create_dir_all(&dir)?;
    let theirs = dir.join(format!("reference-step{step:02}.rs"));
    std::fs::write(&theirs, reference)?;
    let (mine, theirs) = (rel(&mine), rel(&theirs));
    // git diff colours and pages on a terminal; diff -u is there when git is not.
    let git = Command::new("git")
        .current_dir(workspace())
        .args(["diff", "--no-index", "--"])
        .arg(&mine)
        .arg(&theirs)
        .status();
    let status = match git {
        Ok(status) => status,
        Err(_) => Command::new("diff")
            .current_dir(workspace())
            .arg("-u")
            .arg(&mine)
            .arg(&theirs)
            .status()
            .context("neither git nor diff is installed")?,
    };
    match status.code() {
        Some(0) => println!("Your copy is the reference, line for line."),
        Some(1) => eprintln!(
            "(-: yours, {mine}; +: the reference, {}/src/main.rs)",
            ex.package
        ),
        _ => bail!("diff failed ({status})"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// dev-check: every exercise fails unsolved and passes solved

/// For every exercise, in a temporary directory: the untouched exercise compiles and its check
/// fails (each of the step's own checks included); the reference solution, built the same way,
/// passes; and the previous step's program fails at least one of this step's own checks (the
/// checks really test the feature, not just the todo!()).
fn dev_check(args: &[String]) -> Result<()> {
    let ws = workspace();
    let only: Vec<u8> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let checker = build_checker()?;
    let target = target_dir();
    let tmp = target.join("workshop-dev-check");
    let _ = std::fs::remove_dir_all(&tmp);
    let mut summary = Vec::new();
    let mut failures = Vec::new();
    for ex in EXERCISES
        .iter()
        .filter(|e| only.is_empty() || only.contains(&e.step))
    {
        let n = ex.step;
        println!("\n==== exercise {n}: {} ====", ex.title);
        let own: Vec<String> = cfs_checks_of(n);
        if own.is_empty() {
            bail!("`cfs-check --list` names no check of step {n}");
        }

        // 1. The untouched exercise compiles, and its check fails.
        let dir = tmp.join(format!("step{n:02}-exercise"));
        // Packages named by role: in the shared target directory their binaries must differ.
        let name = format!("dev-check-exercise-{}", ex.package);
        generate::write_exercise(&ws, ex, &dir, &name)?;
        let Some(bin) = build_copy(&name, &dir, &target)? else {
            failures.push(format!(
                "exercise {n}: the untouched exercise does not compile"
            ));
            summary.push(format!("step {n:02}: exercise DOES NOT COMPILE"));
            continue;
        };
        let (passed, lines, text) = run_checker(&checker, &bin, n, &["--porcelain", "--all"])?;
        // Every own check fails unsolved, except those of the scaffolding the exercise keeps.
        let is_scaffold = |c: &String| {
            ex.scaffold_checks
                .iter()
                .any(|s| c.ends_with(&format!("::{s}")))
        };
        let must_fail: Vec<&String> = own.iter().filter(|c| !is_scaffold(c)).collect();
        let failed_own: Vec<&String> = must_fail
            .iter()
            .copied()
            .filter(|c| lines.contains(&format!("fail {c}")))
            .collect();
        if passed || failed_own.len() != must_fail.len() {
            println!("{text}");
        }
        let unsolved = if passed {
            failures.push(format!("exercise {n}: its check PASSES unsolved"));
            "PASSES (bug)".to_string()
        } else if failed_own.len() != must_fail.len() {
            failures.push(format!(
                "exercise {n}: unsolved, only {} of the {} own checks of its feature fail",
                failed_own.len(),
                must_fail.len()
            ));
            format!(
                "fails, but only {}/{} feature checks",
                failed_own.len(),
                must_fail.len()
            )
        } else {
            let scaffold = if ex.scaffold_checks.is_empty() {
                String::new()
            } else {
                format!(", scaffolding {} passes", ex.scaffold_checks.join(","))
            };
            format!(
                "FAILS as it should ({} of {} checks fail, all {} of its feature{scaffold})",
                lines.iter().filter(|l| l.starts_with("fail ")).count(),
                lines.len(),
                failed_own.len(),
            )
        };

        // 2. The reference solution, in the same crate, passes.
        let dir = tmp.join(format!("step{n:02}-solution"));
        let reference = generate::reference_source(&ws, ex)?;
        let name = format!("dev-check-solution-{}", ex.package);
        generate::write_crate(&ws, ex, &dir, &reference, &name)?;
        let solved = match build_copy(&name, &dir, &target)? {
            None => {
                failures.push(format!("exercise {n}: the reference does not compile"));
                "DOES NOT COMPILE".to_string()
            }
            Some(bin) => {
                let (passed, lines, text) = run_checker(&checker, &bin, n, &["--porcelain"])?;
                if passed {
                    format!("PASSES as it should ({} checks)", lines.len())
                } else {
                    println!("{text}");
                    failures.push(format!("exercise {n}: the reference solution FAILS"));
                    "FAILS (bug)".to_string()
                }
            }
        };

        // 3. The previous step's program (this feature not done at all) fails this step's
        // own checks, so that they test the feature.
        let previous = if let Some(prev) = EXERCISES.iter().find(|e| e.step + 1 == n) {
            let dir = tmp.join(format!("step{n:02}-previous"));
            let name = format!("dev-check-previous-{}", prev.package);
            let source = generate::reference_source(&ws, prev)?;
            generate::write_crate(&ws, prev, &dir, &source, &name)?;
            match build_copy(&name, &dir, &target)? {
                None => "step before does not compile".to_string(),
                Some(bin) => {
                    let (_, lines, text) = run_checker(&checker, &bin, n, &["--porcelain"])?;
                    let failing: Vec<&String> = own
                        .iter()
                        .filter(|c| lines.contains(&format!("fail {c}")))
                        .collect();
                    let earlier_fail = lines
                        .iter()
                        .filter(|l| l.starts_with("fail ") && !own.iter().any(|c| l.ends_with(c)))
                        .count();
                    if failing.is_empty() || earlier_fail > 0 {
                        println!("{text}");
                    }
                    if failing.is_empty() {
                        failures.push(format!(
                            "exercise {n}: step {:02}'s program passes all of step {n:02}'s own checks",
                            n - 1
                        ));
                    }
                    if earlier_fail > 0 {
                        failures.push(format!(
                            "exercise {n}: step {:02}'s program fails {earlier_fail} of its own checks",
                            n - 1
                        ));
                    }
                    format!(
                        "step {:02}'s program fails {}/{} own checks",
                        n - 1,
                        failing.len(),
                        own.len()
                    )
                }
            }
        } else {
            "-".to_string()
        };
        // 4. Each region left out on its own (the rest solved) fails some own check: every
        // piece of the exercise is tested. Run in a throw-away UTS and mount namespace: a
        // runtime without its namespaces would otherwise rename the host or change its mounts.
        let mut pieces = Vec::new();
        for region in ex.regions {
            let dir = tmp.join(format!("step{n:02}-without-{}", region.name));
            let name = format!("dev-check-without-{}-{}", region.name, ex.package);
            let source = generate::without_region(ex, &reference, region.name)?;
            generate::write_crate(&ws, ex, &dir, &source, &name)?;
            let Some(bin) = build_copy(&name, &dir, &target)? else {
                failures.push(format!(
                    "exercise {n}: without ex_{} it does not compile",
                    region.name
                ));
                continue;
            };
            let (_, lines, text) = run_checker_isolated(&checker, &bin, n)?;
            let failing: Vec<&String> = own
                .iter()
                .filter(|c| lines.contains(&format!("fail {c}")))
                .collect();
            if failing.is_empty() {
                println!("{text}");
                failures.push(format!(
                    "exercise {n}: leaving ex_{} out passes every own check: untested",
                    region.name
                ));
                pieces.push(format!("{} UNTESTED", region.name));
            } else {
                let names: Vec<&str> = failing
                    .iter()
                    .map(|c| c.rsplit("::").next().unwrap_or(c))
                    .collect();
                pieces.push(format!("{} -> {}", region.name, names.join(",")));
            }
        }
        summary.push(format!(
            "step {n:02}: unsolved {unsolved}; solved {solved}; feature not done: {previous}\n         \
             each piece left out fails: {}",
            pieces.join("; ")
        ));
    }
    println!("\n==== workshop dev-check ====");
    for line in &summary {
        println!("{line}");
    }
    if failures.is_empty() {
        println!("OK: every exercise compiles, fails unsolved and passes solved.");
        let _ = std::fs::remove_dir_all(&tmp);
        Ok(())
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        bail!("{} problem(s) with the exercises", failures.len())
    }
}

/// The names (`feature::name`) of step `n`'s own checks, as cfs-check --porcelain prints them.
fn cfs_checks_of(n: u8) -> Vec<String> {
    cfs_testkit_names()
        .into_iter()
        .filter(|(step, _)| *step == n)
        .map(|(_, name)| name)
        .collect()
}

/// Asks the checker for the list of checks (`cfs-check --list`), so xtask need not link testkit.
fn cfs_testkit_names() -> Vec<(u8, String)> {
    let out = Command::new(target_dir().join("debug/cfs-check"))
        .arg("--list")
        .output();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let (step, name) = l.split_once(' ')?;
                Some((step.parse().ok()?, name.to_string()))
            })
            .collect()
    })
    .unwrap_or_default()
}
