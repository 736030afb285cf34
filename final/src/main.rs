//! `final`'s command line: parse, build a config, call the library, map the result to an
//! exit status (docker's: the command's own, 128+N for signal N, 125 runtime error, 126
//! cannot execute, 127 not found).

mod cli;

use clap::Parser;

fn main() {
    // Usage errors are runtime errors (125) as in docker; --help and --version exit 0.
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            std::process::exit(if err.use_stderr() {
                cfs_support::EXIT_RUNTIME_ERROR
            } else {
                0
            });
        }
    };
    std::process::exit(run(cli));
}

#[cfg(not(target_os = "linux"))]
fn run(_: cli::Cli) -> i32 {
    cfs_support::not_linux()
}

#[cfg(target_os = "linux")]
// ANCHOR: exit_status
fn run(cli: cli::Cli) -> i32 {
    use cfs_final::container::CommandFailed;
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            if let Some(CommandFailed(code)) = err.downcast_ref::<CommandFailed>() {
                return *code; // already explained by the library
            }
            eprintln!("final: error: {err:#}");
            cfs_support::EXIT_RUNTIME_ERROR
        }
    }
}
// ANCHOR_END: exit_status

#[cfg(target_os = "linux")]
fn dispatch(cli: cli::Cli) -> anyhow::Result<i32> {
    use cfs_final::{container, doctor, spec};
    use cli::Command;
    use std::time::Duration;
    match cli.command {
        Command::Run(args) => {
            let args = *args;
            container::require_root()?;
            let tty = !args.detach && cfs_final::tty::stdin_is_tty();
            let opts = run_options(&args, tty)?;
            let id_hint = args.name.clone();
            let create = container::CreateOptions {
                id: String::new(),
                name: id_hint,
                labels: args.labels.into_iter().collect(),
                detach: args.detach,
                auto_remove: args.rm,
                tty,
                overlay: true,
                network: args.network,
                ports: args.publish,
                ..Default::default()
            };
            container::run(opts, create)
        }
        // ANCHOR: spec_command
        Command::Spec(args) => {
            // The spec `run` would build, with what only `run` adds left out: the id as
            // hostname (here "container" unless --hostname), the bridge's /etc files.
            let mut opts = run_options(&args, false)?;
            if opts.hostname.is_empty() {
                opts.hostname = "container".into();
            }
            let spec = spec::build(&opts)?;
            // Through a Value, so that the binary carries one (compact) serializer of the
            // whole spec, the one `run` writes config.json with, not a second, pretty one.
            let value: serde_json::Value = serde_json::from_slice(&serde_json::to_vec(&spec)?)?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(0)
        }
        // ANCHOR_END: spec_command
        Command::Create {
            bundle,
            pid_file,
            id,
        } => {
            container::require_root()?;
            cfs_final::oci::create(&bundle, &id, pid_file.as_deref())?;
            Ok(0)
        }
        Command::Start { id } => cfs_final::oci::start(&id).map(|()| 0),
        Command::State { id } => {
            println!("{}", cfs_final::oci::state(&id)?);
            Ok(0)
        }
        Command::Delete { force, id } => container::remove(&id, force).map(|()| 0),
        Command::Ps(args) => {
            let mut recs = container::list();
            if !args.all {
                recs.retain(|r| r.status == cfs_final::state::Status::Running);
            }
            if args.format == "json" {
                let recs: Vec<_> = recs.into_iter().map(container::with_config).collect();
                println!("{}", serde_json::to_string_pretty(&recs)?);
            } else {
                print!("{}", container::table(&recs));
            }
            Ok(0)
        }
        Command::Inspect { names } => {
            let recs = names
                .iter()
                .map(|n| container::lookup(n).map(container::with_config))
                .collect::<anyhow::Result<Vec<_>>>()?;
            println!("{}", serde_json::to_string_pretty(&recs)?);
            Ok(0)
        }
        Command::Logs { name } => {
            let path = container::logs(&name)?;
            let mut file = std::fs::File::open(&path)
                .map_err(|e| anyhow::anyhow!("cannot open the log {}: {e}", path.display()))?;
            std::io::copy(&mut file, &mut std::io::stdout().lock())?;
            Ok(0)
        }
        Command::Exec(args) => {
            let tty = cfs_final::tty::stdin_is_tty();
            container::exec(&args.name, args.cmd, args.env, tty)
        }
        Command::Stop { time, names } => {
            for name in names {
                container::stop(&name, Duration::from_secs(time))?;
                println!("{name}");
            }
            Ok(0)
        }
        Command::Kill { name, signal } => {
            container::kill(&name, signal)?;
            Ok(0)
        }
        Command::Rm { force, names } => {
            for name in names {
                container::remove(&name, force)?;
                println!("{name}");
            }
            Ok(0)
        }
        Command::Doctor => Ok(doctor::run()),
    }
}

/// `run`'s (and `spec`'s) options for the spec builder.
#[cfg(target_os = "linux")]
fn run_options(args: &cli::RunArgs, tty: bool) -> anyhow::Result<cfs_final::spec::RunOptions> {
    Ok(cfs_final::spec::RunOptions {
        rootfs: cfs_support::rootfs(args.rootfs.as_deref())?,
        args: args.cmd.clone(),
        hostname: args.hostname.clone().unwrap_or_default(),
        env: args.env.clone(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        volumes: args.volumes.clone(),
        read_only: args.read_only,
        memory: args.memory,
        cpus: args.cpus,
        pids_limit: args.pids_limit,
        ulimits: args.ulimits.clone(),
        tty,
        network: args.network,
        userns: cfs_final::userns::mapping(args.userns.as_ref())?,
    })
}
