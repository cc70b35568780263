//! What a QEMU guest printed on its serial console: the whole text and the `REPORT: <key>
//! <value>` lines of the test roots, by key. Shared by the QEMU test files (not every file
//! uses every method).
#![allow(dead_code)]

use std::collections::HashMap;

pub struct Console {
    /// The console text, CRs removed.
    pub console: String,
    pub reports: HashMap<String, Vec<String>>,
}

impl Console {
    pub fn parse(raw: &[u8]) -> Console {
        let console = String::from_utf8_lossy(raw).replace('\r', "");
        let mut reports: HashMap<String, Vec<String>> = HashMap::new();
        for line in console.lines() {
            // SeaBIOS glues terminal escapes to the first line, systemd prefixes "unit[pid]: ":
            // look for the marker anywhere in the line.
            if let Some(i) = line.find("REPORT: ") {
                let rest = &line[i + 8..];
                let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
                reports
                    .entry(k.to_string())
                    .or_default()
                    .push(v.to_string());
            }
        }
        Console { console, reports }
    }

    pub fn all(&self, key: &str) -> &[String] {
        self.reports.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn one(&self, key: &str) -> &str {
        self.all(key)
            .first()
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no REPORT {key}; console:\n{}", self.console))
    }

    /// The `REPORT: mount` line of `mountpoint`: `<mp> <source> <fstype> <options>`.
    pub fn mount(&self, mountpoint: &str) -> Option<&str> {
        self.all("mount")
            .iter()
            .find(|l| l.split(' ').next() == Some(mountpoint))
            .map(String::as_str)
    }

    pub fn assert_mount(&self, mountpoint: &str, needle: &str) {
        let m = self
            .mount(mountpoint)
            .unwrap_or_else(|| panic!("{mountpoint} not mounted; console:\n{}", self.console));
        assert!(
            m.contains(needle),
            "{mountpoint}: expected '{needle}' in '{m}'"
        );
    }

    /// The test root ran to its end (`REPORT: end`).
    pub fn completed(&self) {
        assert!(
            self.reports.contains_key("end"),
            "the test root did not finish; console:\n{}",
            self.console
        );
    }
}
