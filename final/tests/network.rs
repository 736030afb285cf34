//! `--network none|host|bridge` and `-p`, asserted from outside. Traffic only ever goes to
//! the containers these tests start and to the host's own addresses (the bridge's gateway,
//! 127.0.0.1); every request loop is bounded. Needs root, nftables (`nft`) and iproute2's
//! `ip` (only to read the bridge's addresses).
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::io::Write;

const GATEWAY: &str = "172.31.250.1";

/// Removes a detached container when dropped, so a failed assertion leaves nothing running.
struct Removed(String);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = final_(&["rm", "-f", &self.0]);
    }
}

/// A detached busybox httpd serving `body` on port 80 of a bridged container (removed when
/// the returned guard is dropped).
#[must_use]
fn web(name: &str, body: &str, publish: &[&str]) -> Removed {
    let script = httpd(body);
    let mut args = vec!["run", "-d", "--name", name, "--network", "bridge"];
    for p in publish {
        args.extend_from_slice(&["-p", p]);
    }
    args.extend_from_slice(&["sh", "-c", &script]);
    ok(&args);
    Removed(name.to_string())
}

fn host_netns() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn none_is_the_default_and_has_only_loopback() {
    let out = sh(
        &["--network", "none"],
        "readlink /proc/self/ns/net; ls /sys/class/net",
    );
    let mut lines = out.lines();
    assert_ne!(lines.next(), Some(host_netns().as_str()));
    assert_eq!(lines.collect::<Vec<_>>(), vec!["lo"]);
}

#[test]
fn host_shares_the_host_network_namespace() {
    let out = sh(
        &["--network", "host"],
        "readlink /proc/self/ns/net; ls /sys/class/net",
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(host_netns().as_str()));
    let host_ifs: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("vcfs")) // other tests' containers come and go
        .collect();
    let inside: Vec<&str> = lines.collect();
    for i in &host_ifs {
        assert!(inside.contains(&i.as_str()), "{i} missing in {inside:?}");
    }
}

#[test]
fn bridge_gives_an_address_a_route_and_name_files() {
    let out = sh(
        &["--network", "bridge", "--hostname", "boxy"],
        "ip -4 -o addr show dev eth0; ip route; cat /sys/class/net/eth0/operstate; cat /etc/hosts /etc/resolv.conf",
    );
    assert!(
        out.contains("inet 172.31.250."),
        "no bridge address in: {out}"
    );
    assert!(
        out.contains(&format!("default via {GATEWAY} dev eth0")),
        "{out}"
    );
    assert!(out.contains("\nup\n"), "eth0 not up: {out}");
    assert!(
        out.contains("\tboxy\n"),
        "hostname not in /etc/hosts: {out}"
    );
    for line in out.lines().filter(|l| l.starts_with("nameserver")) {
        assert!(
            !line.contains(" 127.") && !line.ends_with(" ::1"),
            "loopback resolver copied into the container: {line}"
        );
    }
    // The host side: the bridge has the gateway address.
    assert!(net_snapshot().bridge_addresses.contains("172.31.250.1/24"));
}

#[test]
fn two_containers_talk_over_the_bridge() {
    let server = unique("srv");
    let _guard = web(&server, "hello-from-server", &[]);
    let ip = container_ip(&server);
    // A bounded retry loop while httpd starts: at most 50 tries, 0.1 s apart.
    let got = sh(
        &["--network", "bridge"],
        &format!(
            "for i in $(seq 50); do timeout 3 wget -q -O- http://{ip}/ && exit 0; sleep 0.1; done; exit 1"
        ),
    );
    assert_eq!(got.trim(), "hello-from-server");
}

#[test]
fn container_reaches_a_server_on_the_host_bridge_address() {
    // Make sure the bridge (and so the gateway address) exists before binding to it.
    sh(&["--network", "bridge"], "true");
    let listener = std::net::TcpListener::bind((GATEWAY, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        conn.write_all(b"hello-from-host\n").unwrap();
        peer
    });
    let out = sh(&["--network", "bridge"], &format!("nc {GATEWAY} {port}"));
    let peer = server.join().unwrap();
    assert_eq!(out.trim(), "hello-from-host");
    assert!(
        peer.ip().to_string().starts_with("172.31.250."),
        "the container's address should be the source, got {peer}"
    );
}

#[test]
fn published_port_is_reached_from_the_host() {
    let name = unique("pub");
    let guard = web(&name, "published-body", &["18481:80"]);
    let body_lo = http_get("127.0.0.1:18481");
    let body_gw = http_get(&format!("{GATEWAY}:18481"));
    let map = net_snapshot().port_map;
    drop(guard);
    assert_eq!(body_lo.trim(), "published-body");
    assert_eq!(body_gw.trim(), "published-body");
    assert!(map.contains("tcp . 18481"), "{map}");
    assert!(
        !net_snapshot().port_map.contains("18481"),
        "the published port outlived its container"
    );
}

#[test]
fn a_taken_host_port_is_refused_and_nothing_is_left() {
    let first = unique("p1");
    let _guard = web(&first, "one", &["18482:80"]);
    let before = net_snapshot();
    let second = unique("p2");
    let r = final_(&[
        "run",
        "--rm",
        "--name",
        &second,
        "--network",
        "bridge",
        "-p",
        "18482:80",
        "true",
    ]);
    let after = net_snapshot();
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("already published"), "{}", r.stderr);
    assert!(r.stderr.contains("fix:"), "{}", r.stderr);
    // Other tests run concurrently: compare only what this container could have left.
    assert_eq!(before.port_map, after.port_map);
    assert!(final_(&["inspect", &second]).code != 0);
}

#[test]
fn publish_needs_bridge() {
    let r = final_(&["run", "--rm", "-p", "18483:80", "true"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("--network bridge"), "{}", r.stderr);
    let r = final_(&["run", "--rm", "--network", "nat", "true"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("none"), "{}", r.stderr);
}

#[test]
fn running_containers_never_share_an_address() {
    let names: Vec<String> = (0..4).map(|_| unique("addr")).collect();
    let mut guards = Vec::new();
    for n in &names {
        ok(&[
            "run",
            "-d",
            "--name",
            n,
            "--network",
            "bridge",
            "sleep",
            "30",
        ]);
        guards.push(Removed(n.clone()));
    }
    let ips: std::collections::BTreeSet<String> = names.iter().map(|n| container_ip(n)).collect();
    drop(guards);
    assert_eq!(ips.len(), names.len(), "duplicate addresses: {ips:?}");
}

/// A SIGKILLed runtime: the container dies with it (foreground), and `ps`/`rm` release its
/// address and published port; the veth goes with the container's namespace.
#[test]
fn killed_runtime_leaves_nothing_after_ps_and_rm() {
    let name = unique("killed");
    let mut child = spawn_bridged(&name, "18484:80");
    let v: serde_json::Value = serde_json::from_str(&ok(&["inspect", &name])).unwrap();
    let id = v[0]["id"].as_str().unwrap().to_string();
    let ip = container_ip(&name);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    ok(&["ps", "-a"]); // reconciles: the container is dead, its network released
    ok(&["rm", &name]);
    let snap = net_snapshot();
    assert!(!snap.port_map.contains("18484"), "{}", snap.port_map);
    let holder = std::fs::read_to_string(format!("/run/cfs-final/network/addresses/{ip}"))
        .unwrap_or_default();
    assert_ne!(holder.trim(), id, "address {ip} still held");
    assert!(
        !std::path::Path::new(&format!("/sys/class/net/vcfs{}", &id[..11])).exists(),
        "veth left behind"
    );
}
