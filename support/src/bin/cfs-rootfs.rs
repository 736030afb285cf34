//! `cargo xtask rootfs` (or `cargo run -p cfs-support --bin cfs-rootfs`): (re)build the
//! workspace's default root filesystem on purpose. Every step builds it on first use anyway.
//!
//! Options: `--if-missing` only builds it when it is not there yet; `--from-host` builds it
//! from the host's own programs even when a static busybox is available.

fn main() {
    #[cfg(target_os = "linux")]
    {
        use cfs_support::Source;
        let args: Vec<String> = std::env::args().skip(1).collect();
        if let Some(bad) = args
            .iter()
            .find(|a| *a != "--if-missing" && *a != "--from-host")
        {
            eprintln!("cfs-rootfs: unknown option {bad:?} (options: --if-missing, --from-host)");
            std::process::exit(2);
        }
        let force = !args.iter().any(|a| a == "--if-missing");
        let source = match args.iter().any(|a| a == "--from-host") {
            true => Source::HostPrograms,
            false => Source::Auto,
        };
        match cfs_support::provision_default_rootfs_from(force, source) {
            Ok(report) => println!("{}", report.dir.display()),
            Err(err) => {
                eprintln!("cfs-rootfs: {err:#}");
                std::process::exit(cfs_support::EXIT_RUNTIME_ERROR);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    cfs_support::not_linux();
}
