//! The generated size report: `size-report.md` matches what `qemu/size-report --check`
//! generates from the current tree (it rebuilds in `target/size-report`, so it does not wait on
//! this test's own cargo lock). The 64 KiB budget is not enforced yet: the binaries are above it
//! (see the report's "budget left" column).

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
