//! The iptables backend of `--network bridge` (used when nft is missing), forced with
//! `CFS_FINAL_FIREWALL=iptables`: a published port is reached from the host through a DNAT
//! rule in the `CFS-DNAT` chain, a taken port is refused, and after normal, failed and
//! SIGKILLed runs no rule of any container is left. One test, alone in its binary: the
//! variable is set for this whole process (and so for every `final` it starts). Needs root
//! and iptables (iptables-nft or legacy).
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::process::Command;

/// `iptables -t nat -S` (the whole nat table).
fn nat_rules() -> String {
    let out = Command::new("iptables")
        .args(["-w", "-t", "nat", "-S"])
        .output()
        .expect("iptables must be installed for this test (apt install iptables)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rules that belong to containers: DNATs commented `cfs:ID`.
fn container_rules() -> Vec<String> {
    nat_rules()
        .lines()
        .filter(|l| l.contains("cfs:") || l.contains("--to-destination 172.31.250."))
        .map(str::to_string)
        .collect()
}

#[test]
fn iptables_backend_publishes_ports_and_leaves_no_rules() {
    require_root();
    std::env::set_var("CFS_FINAL_FIREWALL", "iptables");
    sh(&["--network", "bridge"], "true"); // the bridge and the chains, created once
    let before = (snapshot(), net_snapshot());
    assert_eq!(container_rules(), Vec::<String>::new());
    let nat = nat_rules();
    for chain in [
        "-N CFS-POSTROUTING",
        "-N CFS-DNAT",
        "-A POSTROUTING -j CFS-POSTROUTING",
    ] {
        assert!(nat.contains(chain), "{chain} missing:\n{nat}");
    }

    // A published port, reached from the host; a second container may not take it.
    let name = unique("ipt");
    ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "bridge",
        "-p",
        "18491:80",
        "sh",
        "-c",
        &httpd("ipt-body"),
    ]);
    let body_lo = http_get("127.0.0.1:18491");
    let body_gw = http_get("172.31.250.1:18491");
    let rules = container_rules();
    let port_map = net_snapshot().port_map;
    let taken = final_(&[
        "run",
        "--rm",
        "--network",
        "bridge",
        "-p",
        "18491:80",
        "true",
    ]);
    let rules_after_refusal = container_rules();
    ok(&["rm", "-f", &name]);
    assert_eq!(body_lo.trim(), "ipt-body");
    assert_eq!(body_gw.trim(), "ipt-body");
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(
        rules[0].contains("--dport 18491") && rules[0].contains("-A CFS-DNAT"),
        "{rules:?}"
    );
    assert!(
        !port_map.contains("18491"),
        "the port went to nft, not iptables"
    );
    assert_eq!(taken.code, 125, "{}", taken.stderr);
    assert!(
        taken.stderr.contains("already published"),
        "{}",
        taken.stderr
    );
    assert_eq!(rules, rules_after_refusal);

    // Normal, failed and SIGKILLed runs with published ports.
    for i in 0..6 {
        let publish = format!("{}:80", 18492 + i);
        let name = unique("ipt");
        match i % 3 {
            0 => {
                let r = final_(&["run", "--rm", "--network", "bridge", "-p", &publish, "true"]);
                assert_eq!(r.code, 0, "{}", r.stderr);
            }
            1 => bridged_run_failing_setup(&publish),
            _ => {
                let runtime = spawn_bridged(&name, &publish);
                assert_eq!(container_rules().len(), 1, "{}", nat_rules());
                kill_runtime_then_rm(runtime, &name);
            }
        }
    }
    assert_eq!(container_rules(), Vec::<String>::new(), "{}", nat_rules());
    assert_bridged_runs_left_nothing(&before);
}
