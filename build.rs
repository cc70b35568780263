//! Embeds version and commit, and tells the host linker how to link the libc-free binary.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    // IMMUCORE_COMMIT overrides it: qemu/size-report builds with a fixed value so that its
    // figures (the compressed initramfs) do not change with every commit.
    println!("cargo:rerun-if-env-changed=IMMUCORE_COMMIT");
    let commit = std::env::var("IMMUCORE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=IMMUCORE_COMMIT={commit}");

    // Cross targets use rust-lld with flags from .cargo/config.toml. The host target is linked
    // by `cc`, which needs to be told there are no start files, no libc and no PIE.
    if std::env::var("TARGET").ok() == std::env::var("HOST").ok() {
        for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie"] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    } else {
        // The unwind tables of the precompiled core library are dead weight in a binary that
        // aborts on panic: a linker script discards them. Cargo passes rustflags verbatim, so
        // the script's absolute path is given here rather than in .cargo/config.toml.
        println!("cargo:rerun-if-changed=link/discard-eh.ld");
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        println!("cargo:rustc-link-arg-bins=-T{dir}/link/discard-eh.ld");
    }
}

fn git_commit() -> Option<String> {
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
}
