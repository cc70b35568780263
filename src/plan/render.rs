//! The `--dry-run` printer.

use super::{Plan, Status};

impl Plan {
    /// Upstream's `--dry-run` format (reference §15): per layer a line `<n>.` and one line per
    /// step; layer 1 is the synthetic `init` node.
    pub fn render(&self, out: &mut dyn FnMut(&[u8])) {
        // Every line ends in these flags and then "true)" or "false)".
        const FLAGS: &[u8] = b" (background: false) (weak: false) (run: ";
        out(b"1.\n init");
        out(FLAGS);
        out(b"false)\n");
        // Layers are numbered densely: one whose steps were all left out leaves no gap.
        let (mut number, mut prev) = (1, 0);
        for i in 0..self.len() {
            let (Some(step), Some(&layer)) = (self.step(i), self.layer.get(i)) else {
                continue;
            };
            if layer != prev {
                (number, prev) = (number + 1, layer);
                out(crate::log::num(number).as_bytes());
                out(b".\n");
            }
            out(b" ");
            out(step.name().as_bytes());
            let ran = match self.status.get(i) {
                Some(Status::Failed | Status::Skipped) => {
                    out(b" (error: ");
                    out(self.why.get(i).map_or(&[][..], |w| w.as_bytes()));
                    out(b")");
                    true
                }
                Some(Status::Ok) => true,
                _ => false,
            };
            out(FLAGS);
            out(if ran { b"true)\n" } else { b"false)\n" });
        }
    }
}

/// The plan as `--dry-run` prints it.
#[cfg(test)]
pub(super) fn render_to_string(p: &Plan) -> std::string::String {
    let mut s = std::vec::Vec::new();
    p.render(&mut |b: &[u8]| s.extend_from_slice(b));
    std::string::String::from_utf8(s).unwrap()
}
