//! Fifty bridged containers later (successes, failures, published ports, detached and
//! removed, a SIGKILLed runtime), the host has no veth, held address, published port, mount,
//! cgroup or state left. Alone in its binary so that no other test's containers blur it.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::time::{Duration, Instant};

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
            2 => {
                let r = final_(&[
                    "run",
                    "--rm",
                    "--network",
                    "bridge",
                    "-p",
                    &publish,
                    "-w",
                    "/etc/passwd",
                    "true",
                ]);
                assert_eq!(r.code, 125, "{}", r.stderr);
            }
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
                let mut child = spawn_running(
                    &name,
                    &[
                        "--name",
                        &name,
                        "--network",
                        "bridge",
                        "-p",
                        &publish,
                        "sleep",
                        "30",
                    ],
                );
                child.kill().unwrap();
                child.wait().unwrap();
                ok(&["rm", "-f", &name]);
            }
        }
    }
    // The kernel removes a dead namespace's veth asynchronously; we delete ours at exit, so
    // this should hold at once, but allow it a (bounded) moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while net_snapshot() != before.1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        before.1,
        net_snapshot(),
        "bridged containers left network state"
    );
    assert_eq!(
        before.0,
        snapshot(),
        "bridged containers left something on the host"
    );
}
