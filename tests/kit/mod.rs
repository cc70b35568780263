//! What the QEMU tests (`boot_matrix.rs`, `failsafe.rs`) share: the repository, the Rust target
//! of a kit arch, a scratch directory per test file, the kit scripts under a lock, and the
//! release binaries that `scripts/test` builds.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Rust target of a kit arch (`x86_64`, or `x86_64-6.12` for the same arch on Debian 13's
/// kernel).
pub fn triple(arch: &str) -> &'static str {
    match arch.trim_end_matches("-6.12") {
        "x86_64" => "x86_64-unknown-linux-musl",
        "aarch64" => "aarch64-unknown-linux-musl",
        "armv7" => "thumbv7neon-unknown-linux-gnueabihf",
        "riscv64" => "riscv64gc-unknown-linux-gnu",
        _ => panic!("unknown arch {arch}"),
    }
}

/// `target/<name>`, made if missing: where a test file keeps its disks, initramfs and logs.
pub fn scratch_dir(name: &str) -> PathBuf {
    let d = repo().join("target").join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `qemu/<script> <args>`, failing the test with its stderr. The kit caches pristine disks
/// and kernels by content: one build at a time.
pub fn kit(script: &str, args: &[&str]) {
    static KIT: Mutex<()> = Mutex::new(());
    let _one = KIT.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(repo().join("qemu").join(script))
        .args(args)
        .output()
        .expect("run qemu kit");
    assert!(
        out.status.success(),
        "qemu/{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The release binary of `arch` built with the default profile (`scripts/test` builds it).
pub fn default_binary(arch: &str) -> PathBuf {
    repo()
        .join("target")
        .join(triple(arch))
        .join("release/immucore")
}

/// The release binary of `arch` built with the `tiny` profile, which `scripts/test` builds into
/// `target/profile-tiny`.
pub fn tiny_binary(arch: &str) -> PathBuf {
    repo()
        .join("target/profile-tiny")
        .join(triple(arch))
        .join("release/immucore")
}

/// The release binary of `arch` built with the `full` profile, which `scripts/test` builds into
/// `target/profile-full`.
pub fn full_binary(arch: &str) -> PathBuf {
    repo()
        .join("target/profile-full")
        .join(triple(arch))
        .join("release/immucore")
}

/// Fails the test when `bin` is missing, saying how to make it.
pub fn assert_built(bin: &Path) {
    assert!(
        bin.exists(),
        "{} missing: run scripts/test (it builds every profile for every arch)",
        bin.display()
    );
}
