//! The generated size report and the size budgets: `size-report.md` matches what
//! `qemu/size-report --check` generates from the current tree (it rebuilds in
//! `target/size-report`, so it does not wait on this test's own cargo lock), and the stripped
//! binary of every build profile fits that profile's budget on every arch.

use std::path::PathBuf;
use std::process::Command;

const ARCHES: [&str; 4] = ["x86_64", "aarch64", "armv7", "riscv64"];

/// The budgets: (profile, stripped bytes on every arch). Issue 11 set 64, 96 and 160 KiB
/// before live roots, image fallback, boot assessment and OCI archives were measured; they were
/// raised once, with the measured costs, in size-report.md ("Budgets").
const BUDGETS: [(&str, u64); 3] = [
    ("tiny", 64 * 1024),
    ("default", 104 * 1024),
    ("full", 184 * 1024),
];

/// The default profile's initramfs without modules, as cpio.gz.
const DEFAULT_INITRAMFS_GZ_BUDGET: u64 = 64 * 1024;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn size_report_is_up_to_date() {
    let out = Command::new(repo().join("qemu/size-report"))
        .arg("--check")
        .current_dir(repo())
        .output()
        .expect("run qemu/size-report --check");
    assert!(
        out.status.success(),
        "size-report.md does not match a fresh build; run qemu/size-report and commit it\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cells of the report's row for `profile` on `arch` in the per-profile table.
fn row(report: &str, profile: &str, arch: &str) -> Vec<String> {
    let cells = report
        .lines()
        .map(|l| {
            l.split('|')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        })
        .find(|c| c.len() > 3 && c[1] == profile && c[2] == arch)
        .unwrap_or_else(|| panic!("size-report.md has no row for {profile} on {arch}"));
    cells
}

/// The first number of a cell such as `**65080** (63.6 KiB)` or `38973 (38.1 KiB)`.
fn number(cell: &str) -> u64 {
    cell.trim_start_matches("**")
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in '{cell}'"))
}

/// What CI holds: every profile's stripped release binary fits its budget on every arch. The
/// figures are read from `size-report.md`, which `size_report_is_up_to_date` proves matches a
/// fresh build.
#[test]
fn every_profile_fits_its_budget_on_every_arch() {
    let report = std::fs::read_to_string(repo().join("size-report.md")).expect("size-report.md");
    for (profile, budget) in BUDGETS {
        for arch in ARCHES {
            let size = number(&row(&report, profile, arch)[3]);
            assert!(
                size <= budget,
                "{profile} on {arch}: the stripped binary is {size} bytes, {} over the \
                 {budget}-byte budget",
                size - budget
            );
        }
    }
}

#[test]
fn default_initramfs_fits_its_budget_on_every_arch() {
    let report = std::fs::read_to_string(repo().join("size-report.md")).expect("size-report.md");
    for arch in ARCHES {
        let cells = row(&report, "default", arch);
        let gz = number(&cells[cells.len() - 2]);
        assert!(
            gz <= DEFAULT_INITRAMFS_GZ_BUDGET,
            "default on {arch}: the initramfs without modules is {gz} bytes as cpio.gz, over \
             {DEFAULT_INITRAMFS_GZ_BUDGET}"
        );
    }
}

/// Each profile is really a different build: `tiny` leaves the optional features out.
#[test]
fn tiny_is_smaller_than_default() {
    let report = std::fs::read_to_string(repo().join("size-report.md")).expect("size-report.md");
    for arch in ARCHES {
        let tiny = number(&row(&report, "tiny", arch)[3]);
        let default = number(&row(&report, "default", arch)[3]);
        assert!(
            tiny < default,
            "{arch}: tiny {tiny} is not smaller than default {default}"
        );
    }
}
