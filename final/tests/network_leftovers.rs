//! Fifty bridged containers later (successes, failures, published ports, detached and
//! removed, a SIGKILLed runtime), the host has no veth, held address, published port, mount,
//! cgroup or state left. Alone in its binary so that no other test's containers blur it.
#![cfg(target_os = "linux")]

mod common;
use common::*;

#[test]
fn no_network_leftovers_after_50_runs() {
    // One run first: the bridge, the nft table and the parent directories are created once
    // and kept, like docker0.
    sh(&["--network", "bridge"], "true");
    let before = (snapshot(), net_snapshot());
    for i in 0..50 {
        let port = (18500 + i).to_string();
        let publish = format!("{port}:80");
        let name = unique("left");
        match i % 5 {
            0 => {
                let r = final_(&[
                    "run",
                    "--rm",
                    "--network",
                    "bridge",
                    "-p",
                    &publish,
                    "sh",
                    "-c",
                    "ip -4 addr show eth0 | grep -q 172.31.250.",
                ]);
                assert_eq!(r.code, 0, "{}", r.stderr);
            }
            1 => {
                let r = final_(&["run", "--rm", "--network", "bridge", "no-such-command"]);
                assert_eq!(r.code, 127, "{}", r.stderr);
            }
            2 => bridged_run_failing_setup(&publish),
            3 => {
                ok(&[
                    "run",
                    "-d",
                    "--name",
                    &name,
                    "--network",
                    "bridge",
                    "-p",
                    &publish,
                    "sleep",
                    "30",
                ]);
                ok(&["rm", "-f", &name]);
            }
            _ => {
                // The runtime SIGKILLed mid-run; `rm` cleans up after it.
                kill_runtime_then_rm(spawn_bridged(&name, &publish), &name);
            }
        }
    }
    assert_bridged_runs_left_nothing(&before);
}
