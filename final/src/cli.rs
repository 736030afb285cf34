//! The command line: clap structs only. Each subcommand turns its arguments into library
//! calls in `main.rs`; nothing here touches the kernel.

// The parsers live in the library (unit-tested there); the CLI only points clap at them.
use cfs_final::parse;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// final: a small, honest container runtime (namespaces, pivot_root, cgroups, seccomp).
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run CMD [ARGS]... in a new container.
    Run(Box<RunArgs>),
    /// Print the OCI runtime spec (config.json) that `run` builds from the same options, for
    /// runc, crun or any OCI runtime (`final spec --rootfs DIR sh > config.json`).
    /// -d, --rm, --name, --label and -p do not change it.
    Spec(Box<RunArgs>),
    /// OCI: create a container from a bundle's config.json, set up up to its command, which
    /// waits for `start`. stdio is passed through to the container.
    Create {
        /// The bundle: a directory with config.json (and usually the root filesystem).
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// Write the container's pid (as seen from the host) to this file.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// The container's id (its name for every other command).
        #[arg(value_parser = parse::name)]
        id: String,
    },
    /// OCI: run the command of a created container.
    Start { id: String },
    /// OCI: print a container's state as the runtime spec defines it (JSON).
    State { id: String },
    /// OCI: remove a stopped container (-f: kill it first); the same as `rm`.
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// List containers (running ones; -a for all).
    Ps(PsArgs),
    /// Print a container's full record as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Print the output of a detached container.
    Logs { name: String },
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Stop containers: SIGTERM, then SIGKILL after --time seconds.
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Send a signal (default KILL) to a container's first process.
    Kill {
        name: String,
        #[arg(default_value = "KILL", value_parser = parse::signal)]
        signal: i32,
    },
    /// Remove containers and everything they left (cgroups, state, writable layer).
    Rm {
        /// Kill running containers first.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Check that this machine can run containers, and say how to fix what is missing.
    Doctor,
}

#[derive(Args)]
pub struct RunArgs {
    /// Root filesystem directory (default: the workspace's busybox rootfs).
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// Container name (unique; default: the short id).
    #[arg(long, value_parser = parse::name)]
    pub name: Option<String>,
    /// Metadata KEY=VALUE (repeatable), shown by inspect.
    #[arg(long = "label", value_parser = parse::label)]
    pub labels: Vec<(String, String)>,
    /// Hostname inside the container (default: the short id).
    #[arg(long, value_parser = parse::hostname)]
    pub hostname: Option<String>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_parser = parse::env)]
    pub env: Vec<(String, String)>,
    /// Working directory inside the container (created if missing).
    #[arg(short = 'w', long)]
    pub workdir: Option<PathBuf>,
    /// USER[:GROUP] by number or by name from the container's /etc/passwd.
    #[arg(short = 'u', long, value_parser = parse::user)]
    pub user: Option<parse::UserSpec>,
    /// Bind mount SRC:DST[:ro] (repeatable).
    #[arg(short = 'v', long = "volume", value_parser = parse::volume)]
    pub volumes: Vec<parse::Volume>,
    /// Make the root filesystem read-only (/tmp stays writable).
    #[arg(long)]
    pub read_only: bool,
    /// Memory limit, e.g. 64m, 1g.
    #[arg(long, value_parser = parse::memory, allow_hyphen_values = true)]
    pub memory: Option<i64>,
    /// CPU limit in CPUs, e.g. 0.5.
    #[arg(long, value_parser = parse::cpus, allow_hyphen_values = true)]
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    #[arg(long, value_parser = parse::pids_limit, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// A resource limit (setrlimit): TYPE=SOFT[:HARD], e.g. nofile=1024:4096 (repeatable;
    /// -1 means unlimited). Without it the container inherits final's own limits.
    #[arg(long = "ulimit", value_parser = parse::ulimit, allow_hyphen_values = true)]
    pub ulimits: Vec<oci_spec::runtime::PosixRlimit>,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Network: none (own namespace, loopback only), host (the host's network, no
    /// isolation) or bridge (an address on the cfs0 bridge, NAT, -p).
    #[arg(long, default_value = "none", value_parser = parse::network)]
    pub network: parse::Network,
    /// Publish a container port on the host: HOST:CONTAINER[/tcp|/udp] (repeatable;
    /// needs --network bridge).
    #[arg(short = 'p', long = "publish", value_parser = parse::publish)]
    pub publish: Vec<parse::Port>,
    /// User namespace: host (none; the default for root), auto (root inside is an
    /// unprivileged range outside) or INSIDE:OUTSIDE:COUNT. Rootless runs always get one.
    #[arg(long, value_parser = parse::userns)]
    pub userns: Option<parse::Userns>,
    /// Run in the background; print the id. See `final logs`.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers, not only running ones.
    #[arg(short, long)]
    pub all: bool,
    /// Output format.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_parser = parse::env)]
    pub env: Vec<(String, String)>,
    pub name: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}
