//! Behaviour tests: run the built `step05-cgroups` binary as root and check, from inside and outside the
//! container, what a learner would check by hand: this step's feature and every earlier step's.
//! The checks live in the `cfs-testkit` crate, shared with the workshop checker.

fn main() {
    cfs_testkit::main(env!("CARGO_BIN_EXE_step05-cgroups"), 5)
}
