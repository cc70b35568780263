//! Embeds version and commit, and tells the host linker how to link the libc-free binary.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=IMMUCORE_COMMIT={commit}");

    // Cross targets use rust-lld with flags from .cargo/config.toml. The host target is linked
    // by `cc`, which needs to be told there are no start files, no libc and no PIE.
    if std::env::var("TARGET").ok() == std::env::var("HOST").ok() {
        for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie"] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}
