//! The copy-up alone, for `scripts/bench-copyup`: `copyup SRC DST` copies what directory SRC
//! has and DST lacks with immucore's `copy::copy_missing`, then flushes DST's filesystem once,
//! as the persistent binds do after all their copies. Prints the counts; exits 1 when an entry
//! could not be copied, 2 when the copy could not start.

use immucore::copy::{copy_missing, CopyStats, Missed};
use rustix::fd::AsFd;
use rustix::fs::{Mode, OFlags};
use std::ffi::CString;
use std::process::exit;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, dst] = args.as_slice() else {
        eprintln!("usage: copyup SRC DST");
        exit(2);
    };
    let open = |p: &str| {
        let path = CString::new(p).unwrap_or_default();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        rustix::fs::open(path.as_c_str(), flags, Mode::empty()).unwrap_or_else(|e| {
            eprintln!("copyup: {p}: {e:?}");
            exit(2)
        })
    };
    let (src, dst) = (open(src), open(dst));
    let mut stats = CopyStats::default();
    let mut missed = Missed::default();
    if let Err(e) = copy_missing(src.as_fd(), dst.as_fd(), &mut stats, &mut missed) {
        eprintln!("copyup: {}: {:?}", e.what, e.errno);
        exit(2);
    }
    if let Err(e) = rustix::fs::syncfs(&dst) {
        eprintln!("copyup: syncfs: {e:?}");
        exit(2);
    }
    println!(
        "files {} dirs {} links {} missed {}",
        stats.files, stats.dirs, stats.links, missed.count
    );
    if missed.count > 0 {
        eprintln!(
            "copyup: first missed: {} ({}: {:?})",
            missed.first.as_str(),
            missed.what,
            missed.errno
        );
        exit(1);
    }
}
