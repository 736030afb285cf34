//! Networking (`man 7 network_namespaces`): `--network none|host|bridge`.
//!
//! - `none` (the default): the container's own network namespace with only `lo`, brought up
//!   by the container's first process with two ioctls ([`loopback_up`]). Nothing else: no
//!   netlink socket, no state, no extra process, so the default path stays as fast as before.
//! - `host`: no network namespace at all (the spec has no `network` entry): the container
//!   sees and uses the host's interfaces and ports. No network isolation; documented as such.
//! - `bridge`: like docker's default network. On first use a bridge [`BRIDGE`] with the
//!   gateway address [`GATEWAY`]/24 is created on the host, IPv4 forwarding is switched on
//!   (outbound NAT needs it) and one nftables table `ip cfs` holds the NAT rules. Each
//!   container gets:
//!   - an address from [`allocate`] (one file per address under the runtime's state
//!     directory, created with O_EXCL under a lock: never the same address twice to two
//!     containers that hold one);
//!   - a veth pair (`man 4 veth`): `vcfs<id>` on the host, enslaved to the bridge, and `eth0`
//!     created directly inside the container's namespace;
//!   - inside: the address, `eth0` up, a default route via the gateway ([`configure_inside`],
//!     run by the container's first process in its own namespace);
//!   - `/etc/resolv.conf` (the host's, minus loopback resolvers, which mean nothing in
//!     another namespace) and `/etc/hosts`, bind-mounted from the state directory;
//!   - published ports: elements of the `ports` map in the `cfs` table, so a DNAT rule
//!     already in place forwards them; added and removed in one nft transaction each.
//!
//! Everything a container got is removed by [`release`] when it ends, or by `final rm` / the
//! reconciliation of `final ps` when its runtime was killed; the record keeps what to remove.
//! The bridge, the table and ip_forward stay, like docker0 (and like our cgroup parents).
//!
//! Without nft (or with `CFS_FINAL_FIREWALL=iptables`) the same rules go through the
//! iptables program instead ([`ensure_chains`]): chains `CFS-POSTROUTING` and `CFS-DNAT` in
//! the nat table (and `CFS-FORWARD` in filter when FORWARD's policy is DROP), created once;
//! one DNAT rule per published port, commented `cfs:ID`, removed by [`release`].
//!
//! Either way, when iptables' FORWARD policy is DROP (docker's), a chain `CFS-FORWARD` jumped
//! to from FORWARD lets the bridge's traffic through ([`ensure_forward_accepted`]).

use crate::netlink::{self, Netlink};
use crate::parse::Port;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

// ANCHOR: constants
/// The host bridge. Not docker's `docker0` nor podman's `cni-podman0`/`podman0`.
pub const BRIDGE: &str = "cfs0";
/// The bridge's subnet: 172.31.250.0/24, the top of 172.16.0.0/12, away from docker's
/// 172.17-172.2x defaults and podman's 10.88.0.0/16. Checked against the host's routes.
pub const SUBNET: Ipv4Addr = Ipv4Addr::new(172, 31, 250, 0);
pub const PREFIX: u8 = 24;
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 31, 250, 1);
/// The nftables table (family ip) with every rule `final` makes.
pub const NFT_TABLE: &str = "cfs";
/// The container's end of its veth pair.
pub const CONTAINER_IF: &str = "eth0";
// ANCHOR_END: constants

/// What a container on the bridge holds, kept in its record so that whoever cleans up
/// (the monitor, `rm`, the reconciliation) removes exactly that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub bridge: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// The host end of the veth pair.
    pub veth: String,
    pub ports: Vec<Port>,
    /// Which program holds its published ports (records from before the iptables backend
    /// have none: nft).
    #[serde(default)]
    pub firewall: Firewall,
}

/// The program that holds the NAT rules: nft, else iptables (iptables-nft or legacy), or
/// the one `$CFS_FINAL_FIREWALL` (`nft` or `iptables`) names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firewall {
    #[default]
    Nft,
    Iptables,
}

/// The iptables chains (when nft is missing): masquerade in nat POSTROUTING, the published
/// ports (one DNAT rule each, commented `cfs:ID`) in nat PREROUTING and OUTPUT, and accept
/// for the bridge in filter FORWARD when its policy is DROP.
pub const IPT_MASQ: &str = "CFS-POSTROUTING";
pub const IPT_DNAT: &str = "CFS-DNAT";
pub const IPT_FORWARD: &str = "CFS-FORWARD";

/// Which firewall program to use (see [`Firewall`]).
pub fn firewall() -> Result<Firewall> {
    match std::env::var("CFS_FINAL_FIREWALL").as_deref() {
        Ok("nft") => return Ok(Firewall::Nft),
        Ok("iptables") => return Ok(Firewall::Iptables),
        Ok(other) if !other.is_empty() => {
            bail!("CFS_FINAL_FIREWALL={other:?}: the choices are nft and iptables")
        }
        _ => {}
    }
    if binary("nft").is_some() {
        Ok(Firewall::Nft)
    } else if binary("iptables").is_some() {
        Ok(Firewall::Iptables)
    } else {
        bail!("--network bridge needs nftables (or iptables) for NAT and published ports, and neither the nft nor the iptables program is installed\nfix: apt install nftables (or dnf install nftables)")
    }
}

/// `ip link set lo up`, with the SIOCGIFFLAGS/SIOCSIFFLAGS ioctls on a throwaway socket.
pub fn loopback_up() -> Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("socket(AF_INET) for configuring lo failed")?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: valid socket and a properly initialised ifreq for these two ioctls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(std::io::Error::last_os_error()).context("ioctl(SIOCGIFFLAGS, lo) failed");
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(std::io::Error::last_os_error())
                .context("ioctl(SIOCSIFFLAGS, lo up) failed");
        }
    }
    Ok(())
}

/// The host end of a container's veth pair: `vcfs` and 11 hex digits of its id (15
/// characters, the most an interface name may have).
pub fn veth_name(id: &str) -> String {
    format!("vcfs{}", &id[..id.len().min(11)])
}

fn network_dir() -> PathBuf {
    crate::state::root_dir().join("network")
}

fn addresses_dir() -> PathBuf {
    network_dir().join("addresses")
}

/// An exclusive flock(2) on the network state, held while the bridge, the table and the
/// address files change.
fn lock() -> Result<crate::state::Lock> {
    let dir = addresses_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::state::lock_path(&network_dir().join("lock"))
}

// ANCHOR: prepare
/// Everything on the host side before the container exists: the bridge and the table (first
/// use), an address, the published ports. On error nothing of this container is left.
pub fn prepare(id: &str, ports: &[Port]) -> Result<Attachment> {
    if !nix::unistd::geteuid().is_root() {
        bail!("--network bridge needs root: creating the bridge, veth pairs and NAT rules changes the host's network\nfix: run rootless containers with --network none (the default) or --network host");
    }
    for (i, p) in ports.iter().enumerate() {
        if ports[..i]
            .iter()
            .any(|q| q.host == p.host && q.proto == p.proto)
        {
            bail!(
                "host port {}/{} is published twice\nfix: give each -p its own host port",
                p.host,
                p.proto.as_str()
            );
        }
    }
    let firewall = firewall()?;
    let _lock = lock()?;
    ensure_bridge()?;
    match firewall {
        Firewall::Nft => {
            ensure_table()?;
            ensure_forward_accepted()?;
        }
        Firewall::Iptables => ensure_chains()?,
    }
    let ip = allocate(id)?;
    let att = Attachment {
        bridge: BRIDGE.into(),
        ip,
        prefix: PREFIX,
        gateway: GATEWAY,
        veth: veth_name(id),
        ports: ports.to_vec(),
        firewall,
    };
    if firewall == Firewall::Iptables {
        if let Err(err) = publish_iptables(id, &att) {
            let _ = std::fs::remove_file(addresses_dir().join(ip.to_string()));
            return Err(err);
        }
    } else if !ports.is_empty() {
        if let Err(err) = nft(&format!(
            "create element ip {NFT_TABLE} ports {{ {} }}\n",
            elements(&att, true)
        )) {
            let _ = std::fs::remove_file(addresses_dir().join(ip.to_string()));
            if err.to_string().contains("File exists") {
                bail!(
                    "cannot publish {}: a host port is already published by another container\nfix: choose other host ports (`nft list map ip {NFT_TABLE} ports` shows the taken ones)",
                    describe_ports(ports)
                );
            }
            return Err(err.context(format!("cannot publish {}", describe_ports(ports))));
        }
    }
    Ok(att)
}
// ANCHOR_END: prepare

fn describe_ports(ports: &[Port]) -> String {
    ports
        .iter()
        .map(|p| format!("{}:{}/{}", p.host, p.container, p.proto.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `tcp . 8080 : 172.31.250.2 . 80, ...` (with values) or `tcp . 8080, ...` (keys only).
fn elements(att: &Attachment, values: bool) -> String {
    att.ports
        .iter()
        .map(|p| {
            let key = format!("{} . {}", p.proto.as_str(), p.host);
            if values {
                format!("{key} : {} . {}", att.ip, p.container)
            } else {
                key
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Host routes (from /proc/net/route, `man 5 proc`) that overlap our subnet, other than our
/// bridge's own and the default route.
fn clashing_routes() -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let ours = u32::from(SUBNET);
    let our_mask = u32::MAX << (32 - PREFIX);
    // The file prints each address as the hex of its network-order bytes read as a native
    // integer: u32::from_be turns that back into the address.
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_be);
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (iface, dest, mask) = (*f.first()?, hex(f.get(1)?)?, hex(f.get(7)?)?);
            let common = mask & our_mask;
            (iface != BRIDGE && mask != 0 && dest & common == ours & common)
                .then(|| format!("{}/{} dev {iface}", Ipv4Addr::from(dest), mask.count_ones()))
        })
        .collect()
}

// ANCHOR: ensure_bridge
/// Creates the bridge with the gateway address on first use (and repairs a bridge whose
/// address or up state was removed by hand).
fn ensure_bridge() -> Result<()> {
    let clash = clashing_routes();
    if !clash.is_empty() {
        bail!(
            "cannot use {SUBNET}/{PREFIX} for the bridge {BRIDGE}: the host already routes {} there\nfix: remove that route or network (`ip route`), or stop what owns it; final's subnet is fixed at {SUBNET}/{PREFIX}",
            clash.join(", ")
        );
    }
    let mut nl = Netlink::open()?;
    let index = match nl.link_index(BRIDGE)? {
        Some(i) => i,
        None => {
            nl.add_bridge(BRIDGE)?;
            nl.link_index(BRIDGE)?
                .ok_or_else(|| anyhow!("the bridge {BRIDGE} vanished right after its creation"))?
        }
    };
    if !nl.addresses(index)?.contains(&(GATEWAY, PREFIX)) {
        nl.add_address(index, BRIDGE, GATEWAY, PREFIX)?;
    }
    nl.set_up(index, BRIDGE)?;
    // Outbound NAT means routing the containers' packets out of another interface
    // (`man 7 ip`, ip_forward); docker switches it on too. Published ports reached through
    // 127.0.0.1 need route_localnet on the bridge, so the kernel routes the DNATed packets
    // that still carry a loopback source (and the masquerade rule gives them the bridge's).
    for (path, value) in [
        ("/proc/sys/net/ipv4/ip_forward", "1"),
        ("/proc/sys/net/ipv4/conf/cfs0/route_localnet", "1"),
    ] {
        if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == value) {
            continue;
        }
        std::fs::write(path, value)
            .with_context(|| format!("cannot write {value} to {path}\nfix: run as root on a kernel with IPv4 (`sysctl -w` the same setting)"))?;
    }
    Ok(())
}
// ANCHOR_END: ensure_bridge

/// A program (nft, iptables): on PATH, or where Debian and Fedora install it.
pub fn binary(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs `iptables -w ARGS` (waiting for the xtables lock), returning its output.
fn iptables(args: &[&str]) -> Result<String> {
    let bin = binary("iptables").ok_or_else(|| {
        anyhow!("the iptables program is not installed\nfix: apt install iptables, or unset CFS_FINAL_FIREWALL")
    })?;
    let out = std::process::Command::new(&bin)
        .arg("-w")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "iptables {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ANCHOR: iptables_chains
/// The iptables counterpart of [`ensure_table`]: our chains, their fixed rules and the jumps
/// to them, each added only when missing (`-C` checks), so that calling it again is a no-op.
/// Called under the lock.
fn ensure_chains() -> Result<()> {
    let chain = |table: &str, name: &str| -> Result<()> {
        if iptables(&["-t", table, "-S", name]).is_err() {
            iptables(&["-t", table, "-N", name])?;
        }
        Ok(())
    };
    let rule = |table: &str, chain: &str, spec: &[&str], first: bool| -> Result<()> {
        let with = |op: &'static str| [&["-t", table, op, chain][..], spec].concat();
        if iptables(&with("-C")).is_err() {
            iptables(&with(if first { "-I" } else { "-A" }))?;
        }
        Ok(())
    };
    let subnet = format!("{SUBNET}/{PREFIX}");
    chain("nat", IPT_MASQ)?;
    rule(
        "nat",
        IPT_MASQ,
        &["-s", &subnet, "!", "-o", BRIDGE, "-j", "MASQUERADE"],
        false,
    )?;
    rule(
        "nat",
        IPT_MASQ,
        &["-s", "127.0.0.0/8", "-o", BRIDGE, "-j", "MASQUERADE"],
        false,
    )?;
    rule("nat", "POSTROUTING", &["-j", IPT_MASQ], false)?;
    chain("nat", IPT_DNAT)?;
    for hook in ["PREROUTING", "OUTPUT"] {
        let spec = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", IPT_DNAT];
        rule("nat", hook, &spec, false)?;
    }
    ensure_forward_accepted()
}

// ANCHOR: forward_accept
/// A DROP policy in iptables' filter FORWARD (docker sets one when it starts) drops the
/// bridge's forwarded traffic: the containers' outbound connections and ports published to
/// other machines. An accept in our own nft table cannot help: a packet passes every base
/// chain on the forward hook, and a drop in any of them is final (`man 8 nft`, VERDICT
/// STATEMENT). So the
/// exception goes into iptables' own chain, whichever backend holds our NAT rules: a chain
/// `CFS-FORWARD` accepting what enters or leaves the bridge, jumped to first. Checked at
/// every bridged start, as docker may have started since the last one. Under the lock.
fn ensure_forward_accepted() -> Result<()> {
    if binary("iptables").is_none() {
        return Ok(());
    }
    let forward = iptables(&["-t", "filter", "-S", "FORWARD"])?;
    if !forward.lines().any(|l| l.trim() == "-P FORWARD DROP")
        || forward
            .lines()
            .any(|l| l.trim() == format!("-A FORWARD -j {IPT_FORWARD}"))
    {
        return Ok(());
    }
    if iptables(&["-t", "filter", "-S", IPT_FORWARD]).is_err() {
        iptables(&["-t", "filter", "-N", IPT_FORWARD])?;
    }
    for dir in ["-i", "-o"] {
        let spec = [
            "-t",
            "filter",
            "-C",
            IPT_FORWARD,
            dir,
            BRIDGE,
            "-j",
            "ACCEPT",
        ];
        if iptables(&spec).is_err() {
            let mut add = spec;
            add[2] = "-A";
            iptables(&add)?;
        }
    }
    iptables(&["-t", "filter", "-I", "FORWARD", "-j", IPT_FORWARD])
        .map(drop)
        .context(
            "cannot let the bridge's traffic through iptables' FORWARD chain (its policy is DROP)",
        )
}
// ANCHOR_END: forward_accept

/// One DNAT rule per published port, commented `cfs:ID`; a host port another container
/// holds is refused. On error none of this container's rules is left. Under the lock.
fn publish_iptables(id: &str, att: &Attachment) -> Result<()> {
    let taken = iptables(&["-t", "nat", "-S", IPT_DNAT])?;
    for p in &att.ports {
        let (proto, port) = (
            format!("-p {} ", p.proto.as_str()),
            format!("--dport {} ", p.host),
        );
        if taken
            .lines()
            .any(|l| l.contains(&proto) && l.contains(&port))
        {
            bail!(
                "cannot publish {}: a host port is already published by another container\nfix: choose other host ports (`iptables -t nat -S {IPT_DNAT}` shows the taken ones)",
                describe_ports(&att.ports)
            );
        }
    }
    let tag = format!("cfs:{id}");
    for p in &att.ports {
        let (host, to) = (p.host.to_string(), format!("{}:{}", att.ip, p.container));
        let proto = p.proto.as_str();
        #[rustfmt::skip]
        let spec = ["-t", "nat", "-A", IPT_DNAT, "-p", proto, "--dport", &host,
            "-m", "comment", "--comment", &tag, "-j", "DNAT", "--to-destination", &to];
        if let Err(e) = iptables(&spec) {
            let _ = unpublish_iptables(id);
            return Err(e.context(format!("cannot publish {}", describe_ports(&att.ports))));
        }
    }
    Ok(())
}

/// Deletes every rule commented `cfs:ID` (as listed by `-S`, with `-A` turned into `-D`).
fn unpublish_iptables(id: &str) -> Result<()> {
    let tag = format!("cfs:{id}");
    for line in iptables(&["-t", "nat", "-S", IPT_DNAT])?.lines() {
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| w.trim_matches('"').to_string())
            .collect();
        if words.first().map(String::as_str) != Some("-A") || !words.contains(&tag) {
            continue;
        }
        let mut args = vec!["-t", "nat", "-D"];
        args.extend(words[1..].iter().map(String::as_str));
        iptables(&args)?;
    }
    Ok(())
}
// ANCHOR_END: iptables_chains

/// Runs an nft script as one transaction (`nft -f -`: all of it or nothing, `man 8 nft`).
fn nft(script: &str) -> Result<()> {
    let bin = binary("nft").ok_or_else(|| {
        anyhow!("--network bridge needs nftables for NAT and published ports, and the nft program is not installed\nfix: apt install nftables (or dnf install nftables)")
    })?;
    let mut child = std::process::Command::new(&bin)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft failed on `{}`: {}",
            script.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

// ANCHOR: nft_table
/// The table, created once and atomically (`create table` fails if it exists, which aborts
/// the whole transaction, so a concurrent or earlier creation is simply kept).
///
/// - `ports`: (protocol . host port) → (container address . container port);
/// - prerouting (from outside) and output (from the host itself): traffic to one of the
///   host's own addresses (`fib daddr type local`) whose port is in the map is DNATed;
/// - postrouting: the containers' traffic leaving by another interface is masqueraded
///   (outbound NAT), and so is DNATed traffic from 127.0.0.0/8 (it needs a real source).
fn ensure_table() -> Result<()> {
    let t = NFT_TABLE;
    let script = format!(
        "create table ip {t}
add map ip {t} ports {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
add chain ip {t} prerouting {{ type nat hook prerouting priority -100; policy accept; }}
add chain ip {t} output {{ type nat hook output priority -100; policy accept; }}
add chain ip {t} postrouting {{ type nat hook postrouting priority 100; policy accept; }}
add rule ip {t} prerouting fib daddr type local dnat ip to meta l4proto . th dport map @ports
add rule ip {t} output fib daddr type local dnat ip to meta l4proto . th dport map @ports
add rule ip {t} postrouting ip saddr {SUBNET}/{PREFIX} oifname != \"{BRIDGE}\" masquerade
add rule ip {t} postrouting ip saddr 127.0.0.0/8 oifname \"{BRIDGE}\" masquerade
"
    );
    match nft(&script) {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().contains("File exists") => Ok(()),
        Err(e) => Err(e.context(format!("cannot create the nftables table ip {t}"))),
    }
}
// ANCHOR_END: nft_table

/// Takes the next free address of the subnet (round robin, so a just-freed address is not
/// handed out again at once while neighbours may still cache its MAC): a file named after
/// the address, created with O_EXCL, holding the container's id. Called under the lock.
fn allocate(id: &str) -> Result<Ipv4Addr> {
    let dir = addresses_dir();
    let last_path = network_dir().join("last");
    let last: u32 = std::fs::read_to_string(&last_path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1);
    let base = u32::from(SUBNET);
    let hosts = (1u32 << (32 - PREFIX)) - 3; // minus network, gateway, broadcast
    for step in 0..hosts {
        let n = 2 + (last - 1 + step) % hosts; // 2..=254, starting after `last`
        let ip = Ipv4Addr::from(base + n);
        let path = dir.join(ip.to_string());
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path);
        let mut file = match created {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Held by a container whose record is gone entirely (removed by hand):
                // nothing can release it any more, so take it back.
                let owner = std::fs::read_to_string(&path).unwrap_or_default();
                let owner = owner.trim();
                if !owner.is_empty() && !crate::state::container_dir(owner).exists() {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        };
        file.write_all(id.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        let _ = std::fs::write(&last_path, n.to_string());
        return Ok(ip);
    }
    bail!(
        "no free address left on {SUBNET}/{PREFIX} ({hosts} containers hold one)\nfix: remove stopped containers (`final ps -a`, `final rm NAME`)"
    )
}

/// /etc/resolv.conf and /etc/hosts for the container, written into `dir` (its state
/// directory) to be bind-mounted. Returns (resolv.conf, hosts).
pub fn write_etc_files(dir: &Path, att: &Attachment, hostname: &str) -> Result<(PathBuf, PathBuf)> {
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = container_resolv_conf(&host_resolv);
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{hostname}\n",
        att.ip
    );
    let (r, h) = (dir.join("resolv.conf"), dir.join("hosts"));
    std::fs::write(&r, resolv).with_context(|| format!("cannot write {}", r.display()))?;
    std::fs::write(&h, hosts).with_context(|| format!("cannot write {}", h.display()))?;
    Ok((r, h))
}

/// The host's resolv.conf without loopback name servers (127.0.0.0/8, ::1: a local
/// resolver such as systemd-resolved's 127.0.0.53 is not reachable from another network
/// namespace, `man 5 resolv.conf`).
pub fn container_resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut f = line.split_whitespace();
        if f.next() == Some("nameserver") {
            let addr = f.next().unwrap_or_default();
            if addr.starts_with("127.") || addr == "::1" {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("# final: the host has no name server reachable from a container (only loopback ones)\n");
    }
    out
}

// ANCHOR: attach
/// After the clone, before the container runs: the veth pair, its host end on the bridge and
/// up, its other end `eth0` in the container's network namespace (by the child's pid).
pub fn attach(pid: i32, att: &Attachment) -> Result<()> {
    netlink::check_ifname(&att.veth)?;
    let mut nl = Netlink::open()?;
    let master = nl.link_index(&att.bridge)?.ok_or_else(|| {
        anyhow!(
            "the bridge {} disappeared\nfix: run the container again (the bridge is recreated)",
            att.bridge
        )
    })?;
    nl.add_veth(&att.veth, master, CONTAINER_IF, pid)
}
// ANCHOR_END: attach

// ANCHOR: configure_inside
/// In the container's first process (its own network namespace): address, up, default route.
pub fn configure_inside(att: &Attachment) -> Result<()> {
    let mut nl = Netlink::open()?;
    let index = nl
        .link_index(CONTAINER_IF)?
        .ok_or_else(|| anyhow!("the container has no {CONTAINER_IF}: the veth pair is missing"))?;
    nl.add_address(index, CONTAINER_IF, att.ip, att.prefix)?;
    nl.set_up(index, CONTAINER_IF)?;
    nl.add_default_route(att.gateway)
}
// ANCHOR_END: configure_inside

// ANCHOR: release
/// Removes what container `id` held: its published ports, its veth pair, its address. Safe
/// to call again (the monitor, then `rm`): it only acts while the address file still names
/// `id`, so it never touches what a later container got (the same address or host port).
pub fn release(id: &str, att: &Attachment) -> Result<()> {
    let path = addresses_dir().join(att.ip.to_string());
    if std::fs::read_to_string(&path).map_or(true, |owner| owner.trim() != id) {
        return Ok(());
    }
    let _lock = lock()?;
    let mut result = Ok(());
    if att.firewall == Firewall::Iptables {
        if let Err(e) = unpublish_iptables(id) {
            result = Err(e.context(format!(
                "cannot remove the published ports of container {id}"
            )));
        }
    } else if !att.ports.is_empty() {
        if let Err(e) = nft(&format!(
            "delete element ip {NFT_TABLE} ports {{ {} }}\n",
            elements(att, false)
        )) {
            if !e.to_string().contains("No such file") {
                result = Err(e.context(format!(
                    "cannot remove the published ports of container {id}"
                )));
            }
        }
    }
    // Deleting one end of a veth pair deletes both (`man 4 veth`). The kernel also does it
    // when the container's network namespace goes, but asynchronously: do it now.
    match Netlink::open().and_then(|mut nl| nl.del_link(&att.veth)) {
        Ok(_) => {}
        Err(e) if result.is_ok() => result = Err(e),
        Err(_) => {}
    }
    if result.is_ok() {
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot release the address file {}", path.display()))?;
    }
    result
}
// ANCHOR_END: release

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_resolvers() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver ::1\nsearch example.org\n";
        let got = container_resolv_conf(host);
        assert_eq!(
            got,
            "# generated\nnameserver 192.0.2.53\nsearch example.org\n"
        );
        assert!(container_resolv_conf("nameserver 127.0.0.1\n").contains("no name server"));
    }

    #[test]
    fn veth_names_fit_ifnamsiz() {
        let name = veth_name("0123456789abcdef0123456789abcdef");
        assert_eq!(name, "vcfs0123456789a");
        assert!(netlink::check_ifname(&name).is_ok());
    }

    #[test]
    fn port_elements() {
        let att = Attachment {
            bridge: BRIDGE.into(),
            ip: Ipv4Addr::new(172, 31, 250, 7),
            prefix: 24,
            gateway: GATEWAY,
            veth: "v".into(),
            ports: vec![
                crate::parse::publish("8080:80").unwrap(),
                crate::parse::publish("53:5353/udp").unwrap(),
            ],
            firewall: Firewall::Nft,
        };
        assert_eq!(
            elements(&att, true),
            "tcp . 8080 : 172.31.250.7 . 80, udp . 53 : 172.31.250.7 . 5353"
        );
        assert_eq!(elements(&att, false), "tcp . 8080, udp . 53");
    }
}
