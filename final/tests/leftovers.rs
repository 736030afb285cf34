//! Fifty containers later, the host is exactly as before: mounts, cgroups, state.
//! Alone in its binary so that no other test's containers blur the comparison.
#![cfg(target_os = "linux")]

mod common;
use common::*;

#[test]
fn no_leftovers_after_50_runs() {
    // One run first: the parent directories (cfs-final/ in each hierarchy, the state root)
    // are created once and kept, like docker's.
    sh(&[], "true");
    let before = snapshot();
    for i in 0..50 {
        // Successes, the command's own failure, exec failure and setup failure.
        let (expected, args): (i32, Vec<&str>) = match i % 5 {
            0 => (
                0,
                vec![
                    "run",
                    "--rm",
                    "--memory",
                    "32m",
                    "--pids-limit",
                    "50",
                    "true",
                ],
            ),
            1 => (
                3,
                vec![
                    "run",
                    "--rm",
                    "-v",
                    "/tmp:/h:ro",
                    "--read-only",
                    "sh",
                    "-c",
                    "exit 3",
                ],
            ),
            2 => (127, vec!["run", "--rm", "no-such-command"]),
            3 => (125, vec!["run", "--rm", "-w", "/etc/passwd", "true"]),
            _ => (
                0,
                vec![
                    "run",
                    "--rm",
                    "--cpus",
                    "0.5",
                    "sh",
                    "-c",
                    "echo x > /tmp/y",
                ],
            ),
        };
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = final_(&args);
        assert_eq!(r.code, expected, "{args:?}: {}", r.stderr);
    }
    assert_eq!(before, snapshot(), "containers left something on the host");
}
