//! `--network bridge` on a host whose iptables FORWARD policy is DROP, as docker leaves it.
//!
//! The "host" is a throwaway network namespace H where `final` runs (through nsenter), linked
//! by a veth pair to a second one, O, that plays another machine (192.0.2.0/24, TEST-NET-1,
//! never routed), so this machine's own network and firewall stay untouched and no packet
//! leaves the two namespaces. The traffic that crosses H's FORWARD chain is what the policy
//! drops: a container's connection out to O (masqueraded to H's address) and O reaching a
//! port published on H. Both work with either firewall backend, because `final` adds its
//! `CFS-FORWARD` exception; the same request fails once that exception is taken away, and
//! the next `final run` puts it back (docker started after `final`). Needs root, nft,
//! iptables, util-linux (unshare, nsenter) and iproute2.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const H_ADDR: &str = "192.0.2.1";
const O_ADDR: &str = "192.0.2.2";
const O_PORT: u16 = 18493;

/// A network namespace held by a `sleep` started with `unshare --net`; gone when dropped.
struct Netns(Child);

impl Netns {
    fn new() -> Netns {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) is needed");
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        let path = format!("/proc/{}/ns/net", child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(&path).ok().as_ref() == Some(&own) {
            assert!(Instant::now() < deadline, "unshare --net did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        Netns(child)
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }

    /// A command run in this namespace (nsenter: no other namespace changes).
    fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path()))
            .arg("--")
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }

    /// `program ARGS` in this namespace, asserting success; its stdout.
    fn sh(&self, program: &str, args: &[&str]) -> String {
        let out = self.cmd(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a thread whose network namespace is this one (setns(2) changes only the
    /// calling thread's; sockets keep the namespace they were made in).
    fn on_thread<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = std::fs::File::open(self.path()).unwrap();
        std::thread::spawn(move || {
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// H (where final runs) and O (the other machine), linked, H with FORWARD's policy DROP.
fn topology() -> (Netns, Netns) {
    let (h, o) = (Netns::new(), Netns::new());
    let o_pid = o.0.id().to_string();
    h.sh(
        "ip",
        &[
            "link", "add", "cfsfwd-h", "type", "veth", "peer", "name", "cfsfwd-o", "netns", &o_pid,
        ],
    );
    for (ns, dev, addr) in [(&h, "cfsfwd-h", H_ADDR), (&o, "cfsfwd-o", O_ADDR)] {
        ns.sh("ip", &["addr", "add", &format!("{addr}/24"), "dev", dev]);
        ns.sh("ip", &["link", "set", dev, "up"]);
        ns.sh("ip", &["link", "set", "lo", "up"]);
    }
    h.sh("iptables", &["-w", "-P", "FORWARD", "DROP"]);
    (h, o)
}

/// A server in O answering every connection with the address it came from (bounded: the
/// thread ends with the test process; it only ever serves these tests' requests).
fn serve_peer_address(o: &Netns) {
    let listener = o.on_thread(|| std::net::TcpListener::bind((O_ADDR, O_PORT)).unwrap());
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let peer = s
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = write!(s, "HTTP/1.0 200 OK\r\n\r\npeer={peer}\n");
        }
    });
}

/// One GET of `/` from O to `addr`, with a short timeout; the body, or why not.
fn get_from(o: &Netns, addr: String) -> Result<String, String> {
    o.on_thread(move || {
        let mut s =
            std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
                .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
        resp.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .ok_or(resp)
    })
}

/// `final ARGS` in H with the given firewall backend.
fn final_in(h: &Netns, firewall: &str, args: &[&str]) -> Run {
    let out = h
        .cmd(FINAL)
        .env("CFS_FINAL_FIREWALL", firewall)
        .args(args)
        .output()
        .unwrap();
    finish(out)
}

fn ok_in(h: &Netns, firewall: &str, args: &[&str]) -> String {
    let r = final_in(h, firewall, args);
    assert_eq!(
        r.code, 0,
        "final {args:?} ({firewall}): {}{}",
        r.stdout, r.stderr
    );
    r.stdout
}

// (busybox 1.35's wget crashes with -T: timeout(1) bounds it instead)
const WGET: &str = "timeout 3 wget -q -O - http://192.0.2.2:18493/";

fn forwarded_traffic_passes_a_drop_policy(firewall: &str) {
    require_root();
    let (h, o) = topology();
    serve_peer_address(&o);

    // Out: container -> O, through H's FORWARD chain, masqueraded to H's address.
    let out = ok_in(
        &h,
        firewall,
        &["run", "--rm", "--network", "bridge", "sh", "-c", WGET],
    );
    assert_eq!(out.trim(), format!("peer={H_ADDR}"), "{firewall}");
    let forward = h.sh("iptables", &["-w", "-S", "FORWARD"]);
    assert!(forward.contains("-A FORWARD -j CFS-FORWARD"), "{forward}");

    // In: O -> a port published on H -> the container.
    let name = unique("fwd");
    ok_in(
        &h,
        firewall,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "bridge",
            "-p",
            "18494:80",
            "sh",
            "-c",
            &httpd("published"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        match get_from(&o, format!("{H_ADDR}:18494")) {
            Ok(body) => break body,
            Err(e) if Instant::now() > deadline => panic!("no answer from the published port: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(body.trim(), "published");

    // Without the exception (as if docker had set the policy after final's last start)
    // the same request is dropped; the next bridged start puts the exception back.
    h.sh("iptables", &["-w", "-D", "FORWARD", "-j", "CFS-FORWARD"]);
    let blocked = final_in(&h, firewall, &["exec", &name, "sh", "-c", WGET]);
    let blocked_in = get_from(&o, format!("{H_ADDR}:18494"));
    ok_in(
        &h,
        firewall,
        &["run", "--rm", "--network", "bridge", "true"],
    );
    let again = final_in(&h, firewall, &["exec", &name, "sh", "-c", WGET]);
    let rm = final_in(&h, firewall, &["rm", "-f", &name]);
    assert_ne!(
        blocked.code, 0,
        "passed without the exception: {}",
        blocked.stdout
    );
    assert!(blocked_in.is_err(), "{blocked_in:?}");
    assert_eq!(
        again.stdout.trim(),
        format!("peer={H_ADDR}"),
        "{}",
        again.stderr
    );
    assert_eq!(rm.code, 0, "{}", rm.stderr);

    // Nothing of the containers is left in H.
    let veths = h.sh("ip", &["-o", "link", "show"]);
    assert!(!veths.contains("vcfs"), "{veths}");
    let dnat = h.sh("iptables", &["-w", "-t", "nat", "-S"]);
    assert!(!dnat.contains("cfs:"), "{dnat}");
    if firewall == "nft" {
        let map = h.sh("nft", &["list", "map", "ip", "cfs", "ports"]);
        assert!(!map.contains("elements"), "{map}");
    }
}

#[test]
fn nft_backend_passes_a_forward_drop_policy() {
    forwarded_traffic_passes_a_drop_policy("nft");
}

#[test]
fn iptables_backend_passes_a_forward_drop_policy() {
    forwarded_traffic_passes_a_drop_policy("iptables");
}
