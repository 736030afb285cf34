//! Parsers for the values users type on the command line.
//!
//! Pure functions, no kernel calls: each one is unit-tested without root. Error messages say
//! what was wrong and show an accepted form, because they are printed to the user as they are.

use std::path::PathBuf;

/// `--memory`: bytes with an optional unit `b`, `k`, `m`, `g` (powers of 1024, as docker).
pub fn memory(text: &str) -> Result<i64, String> {
    let bad = || {
        format!("invalid memory size {text:?}: use a number with an optional unit b, k, m or g, e.g. 512m or 1g")
    };
    let lower = text.trim().to_ascii_lowercase();
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => lower.split_at(at),
        None => (lower.as_str(), ""),
    };
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(bad()),
    };
    let value: i64 = digits.parse().map_err(|_| bad())?;
    let bytes = value.checked_mul(1 << shift).ok_or_else(bad)?;
    // Below a few pages the kernel cannot even start the container's first process.
    if bytes < 6 << 20 {
        return Err(format!(
            "memory limit {text:?} is too small: the minimum is 6m (the container's first process needs a few MiB)"
        ));
    }
    Ok(bytes)
}

/// `--cpus`: a positive decimal number of CPUs, e.g. `0.5` or `2`.
pub fn cpus(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("invalid --cpus {text:?}: use a positive number such as 0.5 or 2"))?;
    if !value.is_finite() || !(0.01..=1024.0).contains(&value) {
        return Err(format!(
            "invalid --cpus {text:?}: must be between 0.01 and 1024 (0.5 means half of one CPU)"
        ));
    }
    Ok(value)
}

/// `--pids-limit`: a positive number of processes.
pub fn pids_limit(text: &str) -> Result<i64, String> {
    match text.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "invalid --pids-limit {text:?}: use a positive number of processes, e.g. 100"
        )),
    }
}

/// `--ulimit TYPE=SOFT[:HARD]` (docker's syntax; `man 2 getrlimit`): TYPE is a resource
/// name without `RLIMIT_` (nofile, nproc, core, ...), -1 or `unlimited` means no limit, and
/// HARD defaults to SOFT.
pub fn ulimit(text: &str) -> Result<oci_spec::runtime::PosixRlimit, String> {
    use oci_spec::runtime::PosixRlimitType as T;
    let usage = "use TYPE=SOFT[:HARD], e.g. --ulimit nofile=1024:4096 (-1 means unlimited)";
    let (name, values) = text
        .split_once('=')
        .ok_or_else(|| format!("invalid --ulimit {text:?}: {usage}"))?;
    let typ = match name.trim().to_ascii_lowercase().as_str() {
        "core" => T::RlimitCore,
        "cpu" => T::RlimitCpu,
        "data" => T::RlimitData,
        "fsize" => T::RlimitFsize,
        "locks" => T::RlimitLocks,
        "memlock" => T::RlimitMemlock,
        "msgqueue" => T::RlimitMsgqueue,
        "nice" => T::RlimitNice,
        "nofile" => T::RlimitNofile,
        "nproc" => T::RlimitNproc,
        "rss" => T::RlimitRss,
        "rtprio" => T::RlimitRtprio,
        "rttime" => T::RlimitRttime,
        "sigpending" => T::RlimitSigpending,
        "stack" => T::RlimitStack,
        "as" => T::RlimitAs,
        other => return Err(format!(
            "invalid --ulimit {text:?}: unknown type {other:?} (core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack, as)"
        )),
    };
    let value = |v: &str| -> Result<u64, String> {
        match v.trim() {
            "-1" | "unlimited" => Ok(u64::MAX), // RLIM_INFINITY
            v => v
                .parse::<u64>()
                .map_err(|_| format!("invalid --ulimit {text:?}: {v:?} is not a number; {usage}")),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (value(s)?, value(h)?),
        None => (value(values)?, value(values)?),
    };
    if soft > hard {
        return Err(format!(
            "invalid --ulimit {text:?}: the soft limit is above the hard limit"
        ));
    }
    oci_spec::runtime::PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()
        .map_err(|e| e.to_string())
}

/// `KEY=VALUE` for `--env` and `--label`. `what` names the flag in messages.
pub fn key_value(text: &str, what: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() && !key.contains(char::is_whitespace) => {
            Ok((key.to_string(), value.to_string()))
        }
        _ => Err(format!(
            "invalid {what} {text:?}: expected KEY=VALUE with a non-empty KEY without spaces, e.g. {what} MODE=test"
        )),
    }
}

pub fn env(text: &str) -> Result<(String, String), String> {
    key_value(text, "--env")
}

pub fn label(text: &str) -> Result<(String, String), String> {
    key_value(text, "--label")
}

/// One `-v/--volume SRC:DST[:ro|rw]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub readonly: bool,
}

pub fn volume(text: &str) -> Result<Volume, String> {
    let usage = "use SRC:DST or SRC:DST:ro, e.g. -v /srv/data:/data:ro";
    let parts: Vec<&str> = text.split(':').collect();
    let (source, destination, readonly) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        [_, _, mode] => {
            return Err(format!(
                "invalid volume {text:?}: unknown mode {mode:?} (only ro or rw); {usage}"
            ))
        }
        _ => return Err(format!("invalid volume {text:?}: {usage}")),
    };
    if source.is_empty() {
        return Err(format!("invalid volume {text:?}: empty source; {usage}"));
    }
    if !destination.starts_with('/') {
        return Err(format!(
            "invalid volume {text:?}: the destination {destination:?} must be an absolute path inside the container; {usage}"
        ));
    }
    if destination.split('/').any(|c| c == "..") {
        return Err(format!(
            "invalid volume {text:?}: the destination may not contain `..`"
        ));
    }
    if destination == "/" {
        return Err(format!(
            "invalid volume {text:?}: cannot mount over the container's root; use --rootfs for that"
        ));
    }
    Ok(Volume {
        source: PathBuf::from(source),
        destination: PathBuf::from(destination),
        readonly,
    })
}

/// A user or group given by number or by name (names are looked up in the container's
/// `/etc/passwd` and `/etc/group`, never the host's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Num(u32),
    Name(String),
}

/// `-u/--user USER[:GROUP]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub user: Id,
    pub group: Option<Id>,
}

pub fn user(text: &str) -> Result<UserSpec, String> {
    let id = |part: &str| -> Result<Id, String> {
        if part.is_empty() || part.contains(char::is_whitespace) {
            return Err(format!(
                "invalid --user {text:?}: use UID[:GID] or NAME[:GROUP], e.g. 1000:1000 or nobody"
            ));
        }
        Ok(match part.parse::<u32>() {
            Ok(n) => Id::Num(n),
            Err(_) => Id::Name(part.to_string()),
        })
    };
    let (user, group) = match text.split_once(':') {
        Some((u, g)) => (id(u)?, Some(id(g)?)),
        None => (id(text)?, None),
    };
    Ok(UserSpec { user, group })
}

/// `--name`: as docker, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, so it is also a safe file name.
pub fn name(text: &str) -> Result<String, String> {
    let ok = text.len() <= 128
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "invalid name {text:?}: use letters, digits, `_`, `.` and `-`, starting with a letter or digit"
        ))
    }
}

/// `--hostname`: HOST_NAME_MAX is 64 bytes (gethostname(2)).
pub fn hostname(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 64 || text.contains(['/', '\0', ' ']) {
        return Err(format!(
            "invalid hostname {text:?}: 1 to 64 characters, no spaces or slashes"
        ));
    }
    Ok(text.to_string())
}

/// A signal by name (`TERM`, `SIGTERM`) or number (`15`), for `kill`.
pub fn signal(text: &str) -> Result<i32, String> {
    if let Ok(n) = text.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let n = match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "CHLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "WINCH" => 28,
        _ => {
            return Err(format!(
                "unknown signal {text:?}: use a name such as TERM, KILL, HUP or a number 1-64"
            ))
        }
    };
    Ok(n)
}

/// `--network`: which network namespace the container gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Its own network namespace with only `lo`, up.
    #[default]
    None,
    /// The host's network namespace (no network isolation at all).
    Host,
    /// Its own namespace, a veth pair to the host bridge, an address, NAT.
    Bridge,
}

pub fn network(text: &str) -> Result<Network, String> {
    match text {
        "none" => Ok(Network::None),
        "host" => Ok(Network::Host),
        "bridge" => Ok(Network::Bridge),
        _ => Err(format!(
            "invalid --network {text:?}: use none (the default: loopback only), host (share the host's network, no isolation) or bridge (an address on the cfs0 bridge, NAT, -p)"
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// `-p/--publish HOST:CONTAINER[/tcp|/udp]`: a host port forwarded to a container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Port {
    pub host: u16,
    pub container: u16,
    pub proto: Proto,
}

pub fn publish(text: &str) -> Result<Port, String> {
    let bad = |why: &str| {
        format!("invalid --publish {text:?}: {why}; use HOST:CONTAINER[/tcp|/udp], e.g. 8080:80 or 5353:53/udp")
    };
    let (ports, proto) = match text.rsplit_once('/') {
        Some((p, "tcp")) => (p, Proto::Tcp),
        Some((p, "udp")) => (p, Proto::Udp),
        Some(_) => return Err(bad("the protocol must be tcp or udp")),
        None => (text, Proto::Tcp),
    };
    let Some((host, container)) = ports.split_once(':') else {
        return Err(bad("both ports are needed"));
    };
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad(&format!("{p:?} is not a port number (1-65535)"))),
    };
    Ok(Port {
        host: port(host)?,
        container: port(container)?,
        proto,
    })
}

/// One line of a uid_map/gid_map (`man 7 user_namespaces`): `count` ids starting at
/// `inside` in the namespace are `outside` + 0.. on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// `--userns`: `host` (no user namespace, the default for root), `auto` (root inside is an
/// unprivileged range outside: the subordinate ids of root in /etc/subuid, or 100000+65536)
/// or an explicit `INSIDE:OUTSIDE:COUNT` map used for both uids and gids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Userns {
    #[default]
    Host,
    Auto,
    Map(IdMap),
}

pub fn userns(text: &str) -> Result<Userns, String> {
    let bad = || {
        format!("invalid --userns {text:?}: use host, auto or INSIDE:OUTSIDE:COUNT (e.g. 0:100000:65536)")
    };
    match text {
        "host" => return Ok(Userns::Host),
        "auto" => return Ok(Userns::Auto),
        _ => {}
    }
    let f: Vec<&str> = text.split(':').collect();
    let [inside, outside, count] = f.as_slice() else {
        return Err(bad());
    };
    let n = |s: &str| s.parse::<u32>().map_err(|_| bad());
    let map = IdMap {
        inside: n(inside)?,
        outside: n(outside)?,
        count: n(count)?,
    };
    if map.count == 0
        || map.inside.checked_add(map.count).is_none()
        || map.outside.checked_add(map.count).is_none()
    {
        return Err(bad());
    }
    Ok(Userns::Map(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits() {
        use oci_spec::runtime::PosixRlimitType as T;
        let r = ulimit("nofile=512:1024").unwrap();
        assert_eq!((r.typ(), r.soft(), r.hard()), (T::RlimitNofile, 512, 1024));
        let r = ulimit("core=-1").unwrap();
        assert_eq!(
            (r.typ(), r.soft(), r.hard()),
            (T::RlimitCore, u64::MAX, u64::MAX)
        );
        let r = ulimit("NPROC=10:unlimited").unwrap();
        assert_eq!(
            (r.typ(), r.soft(), r.hard()),
            (T::RlimitNproc, 10, u64::MAX)
        );
        assert!(ulimit("nofile=2048:1024")
            .unwrap_err()
            .contains("above the hard"));
        assert!(ulimit("files=1").unwrap_err().contains("unknown type"));
        assert!(ulimit("nofile").unwrap_err().contains("TYPE=SOFT"));
        assert!(ulimit("nofile=lots").unwrap_err().contains("not a number"));
    }

    #[test]
    fn memory_units() {
        assert_eq!(memory("64m"), Ok(64 << 20));
        assert_eq!(memory("1G"), Ok(1 << 30));
        assert_eq!(memory("10240k"), Ok(10 << 20));
        assert_eq!(memory("8388608"), Ok(8 << 20));
        assert!(memory("12q").unwrap_err().contains("12q"));
        assert!(memory("").is_err());
        assert!(memory("-5m").is_err());
        assert!(memory("1k").unwrap_err().contains("too small"));
        assert!(memory("99999999999999g").is_err());
    }

    #[test]
    fn cpus_range() {
        assert_eq!(cpus("0.5"), Ok(0.5));
        assert_eq!(cpus("2"), Ok(2.0));
        assert!(cpus("-1").is_err());
        assert!(cpus("0").is_err());
        assert!(cpus("abc").is_err());
        assert!(cpus("NaN").is_err());
    }

    #[test]
    fn key_values() {
        assert_eq!(env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(label("k="), Ok(("k".into(), "".into())));
        assert!(env("novalue").is_err());
        assert!(label("=v").unwrap_err().contains("--label"));
        assert!(env("A B=c").is_err());
    }

    #[test]
    fn volumes() {
        let v = volume("/a:/b:ro").unwrap();
        assert_eq!(v.source, PathBuf::from("/a"));
        assert_eq!(v.destination, PathBuf::from("/b"));
        assert!(v.readonly);
        assert!(!volume("rel:/b").unwrap().readonly);
        assert!(volume("/a:b").unwrap_err().contains("absolute"));
        assert!(volume("/a:/b:xx").unwrap_err().contains("unknown mode"));
        assert!(volume("/a").is_err());
        assert!(volume("/a:/").is_err());
        assert!(volume("/a:/x/../etc").is_err());
    }

    #[test]
    fn users() {
        assert_eq!(
            user("1000:100"),
            Ok(UserSpec {
                user: Id::Num(1000),
                group: Some(Id::Num(100))
            })
        );
        assert_eq!(
            user("nobody"),
            Ok(UserSpec {
                user: Id::Name("nobody".into()),
                group: None
            })
        );
        assert!(user("").is_err());
        assert!(user("1:").is_err());
    }

    #[test]
    fn names_and_signals() {
        assert!(name("web-1.a_b").is_ok());
        assert!(name("-x").is_err());
        assert!(name("a/b").is_err());
        assert!(hostname(&"x".repeat(65)).is_err());
        assert_eq!(signal("SIGTERM"), Ok(15));
        assert_eq!(signal("kill"), Ok(9));
        assert_eq!(signal("10"), Ok(10));
        assert!(signal("FOO").is_err());
        assert!(signal("0").is_err());
    }

    #[test]
    fn networks_ports_and_userns() {
        assert_eq!(network("bridge"), Ok(Network::Bridge));
        assert!(network("nat").unwrap_err().contains("none"));
        assert_eq!(
            publish("8080:80"),
            Ok(Port {
                host: 8080,
                container: 80,
                proto: Proto::Tcp
            })
        );
        assert_eq!(publish("53:53/udp").unwrap().proto, Proto::Udp);
        for bad in ["80", "0:80", "80:70000", "80:80/sctp", "a:b", ""] {
            assert!(publish(bad).is_err(), "{bad}");
        }
        assert_eq!(userns("auto"), Ok(Userns::Auto));
        assert_eq!(
            userns("0:100000:65536"),
            Ok(Userns::Map(IdMap {
                inside: 0,
                outside: 100000,
                count: 65536
            }))
        );
        for bad in ["0:1", "0:1:0", "x:1:2", "0:4294967295:2"] {
            assert!(userns(bad).is_err(), "{bad}");
        }
    }
}
