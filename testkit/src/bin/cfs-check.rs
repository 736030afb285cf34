//! `cfs-check [--porcelain] [--all] <binary> <step>`: runs the behaviour checks of step
//! `<step>` (its own feature's and every earlier step's) against `<binary>`, and says in words
//! what the container still gets wrong. Exit status 0 only when every check passes.
//!
//! This is what `cargo xtask workshop check N` runs, as root, through scripts/run-as-root
//! (like every `cargo run` in this workspace). The checks are the ones the step crates' own
//! `cargo test` runs: `cfs_testkit::checks_for_step`.

use cfs_testkit::{checks_for_step, host, run_check, Check, Runtime};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

const USAGE: &str = "usage: cfs-check [--porcelain] [--all] <binary> <step 1-5>
       cfs-check --list
  --porcelain  also print one `pass|fail FEATURE::NAME` line per check (for scripts)
  --all        run every check even when the program stops at a todo!() first";

/// What a panic from `todo!()` prints.
const TODO_PANIC: &str = "not yet implemented";

fn main() {
    let mut porcelain = false;
    let mut all = false;
    let mut positional = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--porcelain" => porcelain = true,
            "--all" => all = true,
            "--list" => {
                // Every check, as `STEP FEATURE::NAME` (for cargo xtask workshop dev-check).
                for c in cfs_testkit::ALL {
                    println!("{} {}::{}", c.feature.step(), c.feature.label(), c.name);
                }
                return;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            _ => positional.push(arg),
        }
    }
    let (bin, step) = match positional.as_slice() {
        [bin, step] => match step.parse::<u8>() {
            Ok(step @ 1..=5) => (bin.clone(), step),
            _ => usage_error(&format!("no step {step:?}")),
        },
        _ => usage_error("expected a binary and a step"),
    };
    std::process::exit(check(&bin, step, porcelain, all));
}

fn usage_error(why: &str) -> ! {
    eprintln!("cfs-check: {why}\n{USAGE}");
    std::process::exit(2)
}

fn check(bin: &str, step: u8, porcelain: bool, all: bool) -> i32 {
    if !std::path::Path::new(bin).is_file() {
        eprintln!("cfs-check: {bin} does not exist: build it first");
        return 2;
    }
    if !host::is_root() {
        eprintln!(
            "cfs-check: the checks run containers and must run as root: \
             use `cargo xtask workshop check {step}` (it asks sudo for you)"
        );
        return 2;
    }
    let runtime = Runtime::new(bin, step);
    // Build the default root filesystem once, before the checks run in parallel.
    if let Err(err) = runtime.rootfs() {
        eprintln!("cfs-check: cannot provide the default root filesystem: {err}");
        return 2;
    }

    let checks = checks_for_step(step);
    println!(
        "Checking {} against step {step:02}: {} properties.\n",
        runtime.name(),
        checks.len()
    );

    // A learner's first check: the program still stops at a todo!(). Say so once, plainly.
    let todo = reached_todo(&runtime);
    if let Some(panic) = &todo {
        println!("Your program stops at a todo!() before the container runs its command:");
        for line in panic.lines() {
            println!("    {line}");
        }
        println!("Replace that todo!() with code: the message says what to do.");
        println!("Stuck? `cargo xtask workshop hint {step}` gives one more hint per call.\n");
    }

    let results: Vec<Result<(), String>> = if todo.is_some() && !all {
        checks
            .iter()
            .map(|_| Err("not checked yet: the program stops at a todo!() first".into()))
            .collect()
    } else {
        run_parallel(&checks, &runtime)
    };

    let mut failed = 0;
    let (own, earlier): (Vec<usize>, Vec<usize>) =
        (0..checks.len()).partition(|&i| checks[i].feature.step() == step);
    let mut print_section = |title: String, indices: &[usize]| {
        if indices.is_empty() {
            return;
        }
        println!("{title}");
        for &i in indices {
            let check = checks[i];
            match &results[i] {
                Ok(()) => println!("  PASS  {}", check.property),
                Err(why) => {
                    failed += 1;
                    println!("  FAIL  {}", check.property);
                    let why = learner_words(why, todo.is_some());
                    for (n, line) in why.lines().enumerate() {
                        let lead = if n == 0 { "-> " } else { "   " };
                        println!("          {lead}{line}");
                    }
                }
            }
        }
        println!();
    };
    print_section(format!("Step {step:02}, this exercise:"), &own);
    let earlier_title = match step {
        2 => "Step 01, already in your program (keep it working):".to_string(),
        _ => format!(
            "Steps 01-{:02}, already in your program (keep them working):",
            step - 1
        ),
    };
    print_section(earlier_title, &earlier);

    let left = remove_leftover_cgroups(&runtime);
    if !left.is_empty() {
        println!(
            "(Removed {} empty cgroup(s) your runtime left behind: {})\n",
            left.len(),
            left.join(", ")
        );
    }

    if porcelain {
        for (check, result) in checks.iter().zip(&results) {
            let verdict = if result.is_ok() { "pass" } else { "fail" };
            println!("{verdict} {}::{}", check.feature.label(), check.name);
        }
    }
    if failed == 0 {
        println!(
            "All {} properties hold: step {step:02} is done.",
            checks.len()
        );
        0
    } else {
        println!("{failed} of {} properties do not hold yet.", checks.len());
        1
    }
}

/// Runs `BIN run true`: if that panics in a todo!(), returns the panic message.
fn reached_todo(runtime: &Runtime) -> Option<String> {
    let out = runtime.run(&["true"]).ok()?;
    if !out.stderr.contains(TODO_PANIC) {
        return None;
    }
    // "thread 'main' panicked at src/main.rs:92:5:\nnot yet implemented: step 03: ..."
    let lines: Vec<&str> = out.stderr.lines().collect();
    let at = lines.iter().position(|l| l.contains(TODO_PANIC))?;
    let start = at.saturating_sub(1);
    let picked: Vec<&str> = lines[start..=at]
        .iter()
        .map(|l| l.find("panicked at").map_or(*l, |at| &l[at..]))
        .collect();
    Some(picked.join("\n"))
}

/// A failure as a learner should read it.
fn learner_words(why: &str, todo: bool) -> String {
    if todo && (why.contains(TODO_PANIC) || why.contains("ended before any process")) {
        return "the program panicked at a todo!() (see above) before it could show this".into();
    }
    why.to_string()
}

/// Runs the checks on as many threads as libtest would, and returns the results in order.
fn run_parallel(checks: &[&'static Check], runtime: &Runtime) -> Vec<Result<(), String>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<(), String>>>> = Mutex::new(vec![None; checks.len()]);
    let done = Condvar::new();
    std::thread::scope(|scope| {
        for _ in 0..threads.min(checks.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(check) = checks.get(i) else { break };
                let result = std::panic::catch_unwind(|| run_check(check, runtime))
                    .unwrap_or_else(|_| Err("the check itself panicked (a bug in testkit)".into()));
                results.lock().unwrap()[i] = Some(result);
                done.notify_all();
            });
        }
        // Show progress: one dot per finished check.
        let mut shown = 0;
        let mut guard = results.lock().unwrap();
        while shown < checks.len() {
            let finished = guard.iter().filter(|r| r.is_some()).count();
            while shown < finished {
                eprint!(".");
                shown += 1;
            }
            if shown < checks.len() {
                guard = done.wait(guard).unwrap();
            }
        }
        eprintln!();
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every check ran"))
        .collect()
}

/// Removes (rmdir: only empty ones) the cgroups named after this runtime, `cfs-NAME-PID`,
/// that a runtime without cleanup leaves behind, so that they do not pile up.
fn remove_leftover_cgroups(runtime: &Runtime) -> Vec<String> {
    let prefix = format!("cfs-{}-", runtime.name());
    let roots: Vec<std::path::PathBuf> = if host::cgroup_v2() {
        vec!["/sys/fs/cgroup".into()]
    } else {
        ["pids", "memory", "cpu"]
            .iter()
            .filter_map(|c| host::v1_mount_point(c))
            .collect()
    };
    let mut removed = Vec::new();
    for root in roots {
        let Ok(dir) = std::fs::read_dir(&root) else {
            continue;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && std::fs::remove_dir(entry.path()).is_ok() {
                removed.push(entry.path().display().to_string());
            }
        }
    }
    removed
}
