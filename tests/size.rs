//! The generated size report and the size budget: `size-report.md` matches what
//! `qemu/size-report --check` generates from the current tree (it rebuilds in
//! `target/size-report`, so it does not wait on this test's own cargo lock), and the stripped
//! binary it reports for every arch fits in 64 KiB.

use std::path::PathBuf;
use std::process::Command;

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

/// What CI holds: every arch's stripped release binary fits the 64 KiB budget. The figures are
/// read from `size-report.md`, which `size_report_is_up_to_date` proves matches a fresh build.
#[test]
fn every_arch_fits_the_size_budget() {
    const BUDGET: u64 = 64 * 1024;
    let report = std::fs::read_to_string(repo().join("size-report.md")).expect("size-report.md");
    for arch in ["x86_64", "aarch64", "armv7", "riscv64"] {
        let row = report
            .lines()
            .find(|l| l.split('|').nth(1).map(str::trim) == Some(arch))
            .unwrap_or_else(|| panic!("size-report.md has no row for {arch}"));
        let size: u64 = row
            .split('|')
            .nth(3)
            .and_then(|c| c.trim().trim_start_matches("**").split("**").next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{arch}: no stripped size in the row: {row}"));
        assert!(
            size <= BUDGET,
            "{arch}: the stripped binary is {size} bytes, {} over the {BUDGET}-byte budget",
            size - BUDGET
        );
    }
}
