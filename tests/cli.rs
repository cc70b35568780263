//! The command-line words that only print: `--version` and `--help` name the build's
//! features (cargo features compiled in), so a binary says which profile it is.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_immucore");

/// The optional features of this build, space-separated, as the binary prints them.
fn features() -> String {
    let all = [
        ("hooks", cfg!(feature = "hooks")),
        ("lvm", cfg!(feature = "lvm")),
        ("fsck", cfg!(feature = "fsck")),
        ("gpt", cfg!(feature = "gpt")),
        ("xfs", cfg!(feature = "xfs")),
        ("btrfs", cfg!(feature = "btrfs")),
        ("vfat", cfg!(feature = "vfat")),
        ("iso9660", cfg!(feature = "iso9660")),
        ("squashfs", cfg!(feature = "squashfs")),
        ("erofs", cfg!(feature = "erofs")),
        ("consoles", cfg!(feature = "consoles")),
        ("watchdog", cfg!(feature = "watchdog")),
    ];
    let on: Vec<_> = all.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect();
    if on.is_empty() {
        "none".into()
    } else {
        on.join(" ")
    }
}

fn run(arg: &str) -> String {
    let o = Command::new(BIN).arg(arg).output().unwrap();
    assert!(o.status.success(), "{arg}: {o:?}");
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn version_names_commit_and_features() {
    let out = run("--version");
    let prefix = concat!("immucore ", env!("CARGO_PKG_VERSION"), " (commit ");
    assert!(out.starts_with(prefix), "{out}");
    assert!(
        out.ends_with(&format!("; features: {})\n", features())),
        "{out}"
    );
}

#[test]
fn help_names_the_features() {
    let out = run("--help");
    assert!(out.starts_with("immucore - mount a Kairos/cOS"), "{out}");
    assert!(
        out.ends_with(&format!("\nBuild features: {}\n", features())),
        "{out}"
    );
}
