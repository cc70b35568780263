//! The command-line words that only print: `--version` and `--help` name the build's
//! features (cargo features compiled in), so a binary says which profile it is.

use immucore::app::FEATURES;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_immucore");

/// The optional features of this build, space-separated, as the binary prints them.
fn features() -> String {
    let on: Vec<_> = FEATURES
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
    if on.is_empty() {
        "none".into()
    } else {
        on.join(" ")
    }
}

/// Every optional feature of Cargo.toml is in the list the binary prints (the profiles
/// `default`, `tiny` and `full` are sets of them, not features of their own).
#[test]
fn every_cargo_feature_is_named_by_the_binary() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let section = manifest.split("[features]").nth(1).unwrap();
    let section = section.split("\n[").next().unwrap();
    let mut declared: Vec<&str> = section
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(name, _)| name.trim()))
        .filter(|n| !n.starts_with('#') && !["default", "tiny", "full"].contains(n))
        .collect();
    let mut printed: Vec<&str> = FEATURES.iter().map(|(n, _)| *n).collect();
    declared.sort();
    printed.sort();
    assert_eq!(declared, printed);
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

/// A build without the `dry-run` feature refuses `--dry-run`, naming the feature, and touches
/// nothing (`--no-default-features --features tiny`).
#[test]
#[cfg(not(feature = "dry-run"))]
fn dry_run_needs_its_feature() {
    let o = Command::new(BIN).arg("--dry-run").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(o.stdout.is_empty(), "{o:?}");
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("--dry-run needs the dry-run feature, which this build lacks"),
        "{err}"
    );
}

/// The help names only what the build can do: `--dry-run`, live roots, command-line volumes,
/// the test seams and `boot-ok` only with their features.
#[test]
fn help_names_only_what_the_build_has() {
    let out = run("--help");
    for (feature, on, text) in [
        ("dry-run", cfg!(feature = "dry-run"), "--dry-run"),
        ("service", cfg!(feature = "service"), "root=live:"),
        ("service", cfg!(feature = "service"), "HOST_PROC_CMDLINE"),
        ("live", cfg!(feature = "live"), "root=live:CDLABEL="),
        (
            "cmdline-mounts",
            cfg!(feature = "cmdline-mounts"),
            "rd.cos.mount=",
        ),
        (
            "bootassessment",
            cfg!(feature = "bootassessment"),
            "boot-ok",
        ),
        (
            "bootassessment",
            cfg!(feature = "bootassessment"),
            "rd.immucore.bootassessment",
        ),
    ] {
        assert_eq!(out.contains(text), on, "{feature}: {text} in\n{out}");
    }
}
