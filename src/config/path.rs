//! Checks and transformations of configured paths (command line, layout files).
//!
//! Every such path ends up in mount(2) data strings, fstab lines and the layout file we write, and
//! is resolved inside the sysroot, so the rules are strict: anything that could escape the
//! sysroot (`..`), break an overlay option string (`,` `:`), an fstab field (space, `\`) or the
//! quoted layout file (`"`) is refused with a short reason.

use crate::util::fixed::{Full, Text};
use crate::util::words::split;

/// Longest configured path we accept; leaves room for a sysroot prefix in 256-byte buffers.
pub const MAX_PATH: usize = 240;

/// Validates a configured path; the error is a short reason for the log.
pub fn check_path(p: &[u8]) -> Result<(), &'static str> {
    check(p, Colon::Refused)
}

/// Whether a path may contain `:`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Colon {
    /// Mount points: a `:` separates overlay layers and ends the device of a volume spec.
    Refused,
    /// Device nodes: every `/dev/disk/by-path` name has one (`pci-0000:00:1f.2-ata-1`). A
    /// device path only ever is a mount source or the first fstab field, where `:` is plain.
    Allowed,
}

fn check(p: &[u8], colon: Colon) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("empty");
    }
    if p.first() != Some(&b'/') {
        return Err("not absolute");
    }
    if p.len() > MAX_PATH {
        return Err("too long");
    }
    for &c in p {
        if c < 0x20 || c == 0x7f {
            return Err("contains a control character");
        }
        if c == b',' || (c == b':' && colon == Colon::Refused) {
            return Err("contains , or :");
        }
        if c == b' ' || c == b'"' || c == b'\\' {
            return Err("contains a space, quote or backslash");
        }
    }
    if split(p, b'/').any(|part| part == b"..") {
        return Err("contains ..");
    }
    Ok(())
}

/// Checks `p`, then writes it with `//` and `/./` collapsed and without a trailing `/`.
pub fn normalize(p: &[u8], out: &mut Text<256>) -> Result<(), &'static str> {
    check_path(p)?;
    collapse(p, out);
    Ok(())
}

/// [`normalize`] for a device node path, which may contain `:` (see `Colon::Allowed`).
pub fn normalize_device(p: &[u8], out: &mut Text<256>) -> Result<(), &'static str> {
    check(p, Colon::Allowed)?;
    collapse(p, out);
    Ok(())
}

/// Writes the checked path `p` with `//` and `/./` collapsed and without a trailing `/`.
fn collapse(p: &[u8], out: &mut Text<256>) {
    out.clear();
    for part in split(p, b'/').filter(|part| !part.is_empty() && *part != b".") {
        // Never cut: the result is never longer than the checked input (<= 240 bytes).
        out.push_lossy(b"/");
        out.push_lossy(part);
    }
    if out.is_empty() {
        out.push_lossy(b"/");
    }
}

/// Upstream's on-disk name of a path: without the leading `/`, every `/` turned into `-`
/// (`/etc/ssh` → `etc-ssh`). Existing installs keep their data under these names.
pub fn dash_name(p: &[u8], out: &mut Text<256>) -> Result<(), Full> {
    out.clear();
    // (`as_slice`: see `Device::parse`.)
    let rel = p.strip_prefix(b"/".as_slice()).unwrap_or(p);
    for &c in rel {
        out.push_byte(if c == b'/' { b'-' } else { c })?;
    }
    Ok(())
}

/// True when `path` is `dir` or lies below it (both normalized).
pub fn is_within(path: &[u8], dir: &[u8]) -> bool {
    if dir == b"/" {
        return true;
    }
    match path.strip_prefix(dir) {
        Some(rest) => rest.is_empty() || rest.first() == Some(&b'/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<std::string::String, &'static str> {
        let mut t = Text::new();
        normalize(p.as_bytes(), &mut t)?;
        Ok(t.as_str().into())
    }

    #[test]
    fn accepts_plain_absolute_paths() {
        assert_eq!(check_path(b"/"), Ok(()));
        assert_eq!(check_path(b"/usr/local/.state"), Ok(()));
        assert_eq!(check_path(b"/a/./b//c/"), Ok(()));
        assert_eq!(check_path("/ünïcode".as_bytes()), Ok(()));
        assert_eq!(check_path(&[b'/'; 240]), Ok(()));
    }

    #[test]
    fn refuses_each_bad_form_with_its_reason() {
        assert_eq!(check_path(b""), Err("empty"));
        assert_eq!(check_path(b"etc"), Err("not absolute"));
        assert_eq!(check_path(b"./etc"), Err("not absolute"));
        assert_eq!(check_path(&[b'/'; 241]), Err("too long"));
        assert_eq!(check_path(b"/etc/../root"), Err("contains .."));
        assert_eq!(check_path(b"/.."), Err("contains .."));
        assert_eq!(check_path(b"/etc/.."), Err("contains .."));
        assert_eq!(check_path(b"/etc/..x"), Ok(()));
        assert_eq!(check_path(b"/etc\n"), Err("contains a control character"));
        assert_eq!(check_path(b"/etc\0x"), Err("contains a control character"));
        assert_eq!(check_path(b"/etc\x7f"), Err("contains a control character"));
        assert_eq!(check_path(b"/a,b"), Err("contains , or :"));
        assert_eq!(check_path(b"/a:b"), Err("contains , or :"));
        assert_eq!(
            check_path(b"/a b"),
            Err("contains a space, quote or backslash")
        );
        assert_eq!(
            check_path(b"/a\"b"),
            Err("contains a space, quote or backslash")
        );
        assert_eq!(
            check_path(b"/a\\b"),
            Err("contains a space, quote or backslash")
        );
    }

    #[test]
    fn normalize_collapses_and_trims() {
        assert_eq!(norm("/"), Ok("/".into()));
        assert_eq!(norm("//"), Ok("/".into()));
        assert_eq!(norm("/./"), Ok("/".into()));
        assert_eq!(norm("/etc/"), Ok("/etc".into()));
        assert_eq!(
            norm("//usr/./local//.state/"),
            Ok("/usr/local/.state".into())
        );
        assert_eq!(norm("/etc/../x"), Err("contains .."));
        assert_eq!(norm("etc"), Err("not absolute"));
    }

    #[test]
    fn device_paths_may_contain_colons() {
        let mut t = Text::new();
        let by_path = b"/dev/disk/by-path//pci-0000:00:1f.2-ata-1-part1";
        assert_eq!(normalize_device(by_path, &mut t), Ok(()));
        assert_eq!(t.as_str(), "/dev/disk/by-path/pci-0000:00:1f.2-ata-1-part1");
        assert_eq!(normalize(by_path, &mut t), Err("contains , or :"));
        // Every other rule holds for devices too.
        assert_eq!(
            normalize_device(b"/dev/a,b", &mut t),
            Err("contains , or :")
        );
        assert_eq!(normalize_device(b"/dev/../x", &mut t), Err("contains .."));
        assert_eq!(
            normalize_device(b"/dev/a b", &mut t),
            Err("contains a space, quote or backslash")
        );
    }

    #[test]
    fn dash_names_match_upstream() {
        let mut t = Text::new();
        dash_name(b"/etc/ssh", &mut t).unwrap();
        assert_eq!(t.as_str(), "etc-ssh");
        dash_name(b"/var/lib/rancher", &mut t).unwrap();
        assert_eq!(t.as_str(), "var-lib-rancher");
        dash_name(b"/home", &mut t).unwrap();
        assert_eq!(t.as_str(), "home");
        dash_name(b"/", &mut t).unwrap();
        assert_eq!(t.as_str(), "");
    }

    #[test]
    fn within_respects_component_boundaries() {
        assert!(is_within(b"/usr/local/.state", b"/usr/local"));
        assert!(is_within(b"/usr/local", b"/usr/local"));
        assert!(is_within(b"/anything", b"/"));
        assert!(!is_within(b"/usr/localx", b"/usr/local"));
        assert!(!is_within(b"/usr", b"/usr/local"));
    }
}
