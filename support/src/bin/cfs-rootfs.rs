//! `cargo run -p cfs-support --bin cfs-rootfs` (or `cargo xtask rootfs`): (re)build the
//! workspace's default root filesystem on purpose. Every step builds it on first use anyway.

fn main() {
    #[cfg(target_os = "linux")]
    {
        let force = !std::env::args().any(|a| a == "--if-missing");
        match cfs_support::provision_default_rootfs(force) {
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
