//! Release builds of `final` are linked as a position-dependent executable (`-no-pie`): the
//! dynamic loader then has no relative relocations to apply to the 4 MB binary at every
//! start (measured: 11% fewer instructions, 0.45 MiB less peak RSS per run; see
//! learning_docs/src/performance.md). The objects stay position-independent code, which
//! links fine without PIE. A fully static build (`+crt-static`) would save the loader's
//! symbol lookups too, but as a workspace-wide RUSTFLAG it breaks the proc-macro crates
//! (clap_derive, serde_derive) when cargo builds for the host. Debug builds keep PIE.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let static_crt = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|features| features.split(',').any(|f| f == "crt-static"));
    // A +crt-static build is a static-pie already: -no-pie on top breaks it.
    if std::env::var("PROFILE").as_deref() == Ok("release")
        && std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && !static_crt
    {
        println!("cargo:rustc-link-arg-bin=final=-no-pie");
    }
}
