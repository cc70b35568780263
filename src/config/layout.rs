//! The layout file `/run/cos/cos-layout.env` (SPEC §4, reference §4.2/§4.4).
//!
//! The file is written by yip through godotenv and read upstream with godotenv v1.5.1, so the
//! parser follows godotenv's rules, quirks included where a real file could depend on them
//! (the last ` #` of an unquoted line starts the comment, only `[A-Z0-9_]` names expand, a quote
//! right after `\` never closes a value). It is stricter where godotenv silently produces garbage
//! keys (a line without `=`, spaces inside a key).
//!
//! An entry of a list (`RW_PATHS`, `PERSISTENT_STATE_PATHS`, `CUSTOM_BIND_MOUNTS`, `VOLUMES`)
//! that immucore refuses (a relative path, `..`, a volume without mount point, one too many) is
//! skipped on its own, named in [`Layout::warnings`], and the rest of the layout applies. A
//! refused single value (`OVERLAY`, `PERSISTENT_STATE_TARGET`) still refuses the layout: there
//! is no safe part of it to keep.

use crate::config::cmdline::{overlay_backing, volume_spec, BootState, DEFAULT_OVERLAY};
use crate::config::path::{is_within, normalize};
use crate::util::fixed::{copy_bytes, utf8_valid_up_to, Full, List, Text};

pub const MAX_VARS: usize = 64;
pub const MAX_KEY: usize = 64;
pub const MAX_VALUE: usize = 8192;
const VALUE_STORE: usize = 16384;

/// Variables of one layout file: a fixed table, later assignments of a key replace earlier ones.
pub struct EnvVars {
    keys: List<{ MAX_KEY * MAX_VARS }, MAX_VARS>,
    /// (start, length) of each key's value in `store`.
    spans: [(u16, u16); MAX_VARS],
    store: [u8; VALUE_STORE],
    used: usize,
}

impl Default for EnvVars {
    fn default() -> Self {
        Self::new()
    }
}

impl EnvVars {
    /// Through a constant: all zero bytes, cleared at once (a `spans` array built at run time
    /// would be made on the stack and copied).
    pub const fn new() -> Self {
        const EMPTY: EnvVars = EnvVars {
            keys: List::new(),
            spans: [(0, 0); MAX_VARS],
            store: [0; VALUE_STORE],
            used: 0,
        };
        EMPTY
    }

    fn index(&self, key: &[u8]) -> Option<usize> {
        self.keys.iter().position(|k| k == key)
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let &(start, len) = self.spans.get(self.index(key)?)?;
        self.store
            .get(start as usize..start as usize + len as usize)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Sets `key`, replacing an earlier value (its bytes are reclaimed, so repeated keys do not
    /// eat the store). Keys of at most `MAX_KEY` bytes and values of at most `MAX_VALUE`: `entry`
    /// refuses longer keys, and its value buffers hold no more (the store and the key list
    /// refuse overflows whatever the lengths).
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), &'static str> {
        let existing = self.index(key);
        let (old_start, old_len) = existing
            .and_then(|i| self.spans.get(i))
            .map_or((0, 0), |&(start, len)| (start as usize, len as usize));
        if self.used - old_len + value.len() > VALUE_STORE {
            return Err("values too large in total");
        }
        let slot = match existing {
            Some(i) => i,
            None => {
                // Keys are at most MAX_KEY bytes, so only the count can be full.
                self.keys.push(key).map_err(|_| "too many keys")?;
                self.keys.len() - 1
            }
        };
        // Reclaim the old value, if there is one: the values after it move down.
        if old_len > 0 {
            if let Some(tail) = self.store.get_mut(old_start..self.used) {
                if old_len <= tail.len() {
                    tail.copy_within(old_len.., 0);
                }
            }
            self.used -= old_len;
            for span in self.spans.iter_mut().take(self.keys.len()) {
                if span.0 as usize > old_start {
                    span.0 -= old_len as u16;
                }
            }
        }
        let start = self.used;
        // Always there: the total was checked above.
        if let Some(dst) = self.store.get_mut(start..start + value.len()) {
            copy_bytes(dst, value);
        }
        self.used += value.len();
        if let Some(span) = self.spans.get_mut(slot) {
            *span = (start as u16, value.len() as u16);
        }
        Ok(())
    }
}

/// Why a layout file was refused, and on which line (1-based).
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub struct EnvError {
    pub line: u32,
    pub reason: &'static str,
}

/// Skips spaces on the current line (godotenv's `isSpace`, which excludes `\n`) from `pos`.
fn skip_blank(text: &[u8], pos: &mut usize) {
    while text.get(*pos).is_some_and(|&c| is_blank(c)) {
        *pos += 1;
    }
}

fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c')
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.'
}

fn line_of(text: &[u8], pos: usize) -> u32 {
    let before = text.get(..pos).unwrap_or(text);
    1 + before.iter().filter(|&&c| c == b'\n').count() as u32
}

/// Double-quote escapes, in place: `\n` `\r` become newline and CR, `\$` stays for [`expand`]
/// to protect the `$`, any other `\x` becomes `x`. Returns the new length (never longer: every
/// escape shrinks or keeps its two bytes).
fn unescape(buf: &mut [u8]) -> usize {
    let (mut read, mut write) = (0, 0);
    while let Some(&c) = buf.get(read) {
        read += 1;
        let mut out = c;
        if c == b'\\' {
            match buf.get(read) {
                // `\$` is copied as it is (the `$` on the next turn); so is a final `\`.
                Some(b'$') | None => {}
                Some(&next) => {
                    read += 1;
                    out = match next {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        other => other,
                    };
                }
            }
        }
        if let Some(slot) = buf.get_mut(write) {
            *slot = out;
        }
        write += 1;
    }
    write
}

/// godotenv's variable expansion: `$NAME`, `${NAME}` with NAME of `[A-Z0-9_]` replaced by the
/// value of a key set earlier in this file (empty if none); `\$` yields `$`; `$(` loses its `$`.
fn expand(s: &[u8], vars: &EnvVars, out: &mut Text<MAX_VALUE>) -> Result<(), Full> {
    out.clear();
    let mut rest = s;
    while let [c, after @ ..] = rest {
        // What `c` (with what follows it) stands for, and what is left after that.
        let (piece, left): (&[u8], &[u8]) = match (c, after.first()) {
            (b'\\', Some(b'$')) => (b"$", after.get(1..).unwrap_or(&[])),
            (b'$', Some(b'(')) => (&[], after),
            (b'$', _) => {
                // (`as_slice`: see `Device::parse`.)
                let name_start = after.strip_prefix(b"{".as_slice()).unwrap_or(after);
                let len = name_start
                    .iter()
                    .take_while(|&&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
                    .count();
                match (name_start.get(..len), name_start.get(len..)) {
                    (Some(name), Some(tail)) if len > 0 => (
                        vars.get(name).unwrap_or(&[]),
                        tail.strip_prefix(b"}".as_slice()).unwrap_or(tail),
                    ),
                    // No name: the `$` stays.
                    _ => (b"$", after),
                }
            }
            _ => (core::slice::from_ref(c), after),
        };
        out.push(piece)?;
        rest = left;
    }
    Ok(())
}

/// Parses a layout file into `vars` (godotenv v1.5.1 syntax, see the module comment).
pub fn parse_env(text: &[u8], vars: &mut EnvVars) -> Result<(), EnvError> {
    // The first NUL or byte that is not UTF-8 (a NUL is valid UTF-8: both are looked for).
    let nul = text.iter().position(|&c| c == 0).unwrap_or(text.len());
    let binary = nul.min(utf8_valid_up_to(text));
    if binary < text.len() {
        return Err(EnvError {
            line: line_of(text, binary),
            reason: "binary data",
        });
    }
    let mut scratch = Scratch {
        raw: [0; MAX_VALUE],
        value: Text::EMPTY,
    };
    let mut pos = 0;
    loop {
        // Blank lines and indentation, then a comment line or an entry.
        while text.get(pos).is_some_and(|&c| c == b'\n' || is_blank(c)) {
            pos += 1;
        }
        let Some(&first) = text.get(pos) else { break };
        if first == b'#' {
            while text.get(pos).is_some_and(|&c| c != b'\n') {
                pos += 1;
            }
            continue;
        }
        let start = pos;
        entry(text, &mut pos, vars, &mut scratch).map_err(|reason| EnvError {
            line: line_of(text, start),
            reason,
        })?;
    }
    Ok(())
}

/// Value buffers of [`parse_env`].
struct Scratch {
    /// A quoted value as written, then unescaped in place.
    raw: [u8; MAX_VALUE],
    /// The value after `$` expansion.
    value: Text<MAX_VALUE>,
}

/// Reads the `KEY=value` entry at `pos` into `vars`. A `\r\n` reads as `\n`, as godotenv
/// normalizes the file first (elsewhere a `\r` is a blank or ends an unquoted value anyway).
/// Not inlined into `parse_env`: on its own it needs less code.
#[inline(never)]
fn entry(
    text: &[u8],
    pos: &mut usize,
    vars: &mut EnvVars,
    scratch: &mut Scratch,
) -> Result<(), &'static str> {
    const TOO_LONG: &str = "value too long";
    let rest = text.get(*pos..).unwrap_or(&[]);
    if rest.starts_with(b"export") && matches!(rest.get(6), Some(b' ' | b'\t')) {
        *pos += 6;
        skip_blank(text, pos);
    }
    let key_start = *pos;
    while text.get(*pos).is_some_and(|&c| is_key_char(c)) {
        *pos += 1;
    }
    let key = text.get(key_start..*pos).unwrap_or(&[]);
    skip_blank(text, pos);
    let next = text.get(*pos).copied();
    *pos += 1;
    match next {
        Some(b'=' | b':') if !key.is_empty() => {}
        Some(b'\n') | None if !key.is_empty() => return Err("missing = after key"),
        _ => return Err("invalid character in key"),
    }
    if key.len() > MAX_KEY {
        return Err("key too long");
    }
    skip_blank(text, pos);

    // The value as written (quoted ones unescaped) and whether `$` expands in it.
    let (written, expands) = match text.get(*pos) {
        Some(&quote @ (b'"' | b'\'')) => {
            *pos += 1;
            let raw = &mut scratch.raw;
            let mut len = 0;
            let mut prev = quote;
            let mut closed = false;
            while let Some(&c) = text.get(*pos) {
                *pos += 1;
                if c == b'\r' && text.get(*pos) == Some(&b'\n') {
                    continue;
                }
                if c == quote && prev != b'\\' {
                    closed = true;
                    break;
                }
                *raw.get_mut(len).ok_or(TOO_LONG)? = c;
                len += 1;
                prev = c;
            }
            if !closed {
                return Err("unterminated quoted value");
            }
            // godotenv trims every quote character at the end (so `"a\""` reads `a\`).
            while len > 0 && raw.get(len - 1) == Some(&quote) {
                len -= 1;
            }
            let content = raw.get_mut(..len).unwrap_or(&mut []);
            if quote == b'"' {
                let len = unescape(content);
                (content.get(..len).unwrap_or(&[]), true)
            } else {
                (&*content, false)
            }
        }
        _ => {
            let rest = text.get(*pos..).unwrap_or(&[]);
            let len = rest
                .iter()
                .position(|&c| c == b'\n' || c == b'\r')
                .unwrap_or(rest.len());
            *pos += len;
            let mut line_text = rest.get(..len).unwrap_or(&[]);
            // The last `#` preceded by a blank starts the comment (scanned from the end, as
            // godotenv does).
            let comment = line_text
                .windows(2)
                .rposition(|pair| matches!(pair, [b, b'#'] if is_blank(*b)))
                .map(|i| i + 1);
            if let Some(hash) = comment {
                line_text = line_text.get(..hash).unwrap_or(&[]);
            }
            // Blanks before the value were skipped above; those after it go.
            let end = line_text
                .iter()
                .rposition(|&c| !is_blank(c))
                .map_or(0, |last| last + 1);
            (line_text.get(..end).unwrap_or(&[]), true)
        }
    };
    let value = if expands {
        expand(written, vars, &mut scratch.value).map_err(|_| TOO_LONG)?;
        scratch.value.as_bytes()
    } else {
        written
    };
    vars.set(key, value)
}

/// Paths of one list key, normalized, in order, without duplicates.
pub type PathList = List<4096, 96>;

// The keys of the path lists.
const RW_PATHS: &str = "RW_PATHS";
const PERSISTENT_STATE_PATHS: &str = "PERSISTENT_STATE_PATHS";
const CUSTOM_BIND_MOUNTS: &str = "CUSTOM_BIND_MOUNTS";
/// `extra-layout.env`'s `PERSISTENT_STATE_PATHS`, as messages name it.
const EXTRA_PERSISTENT_STATE_PATHS: &str = "PERSISTENT_STATE_PATHS (extra-layout.env)";
const DEFAULT_RW_PATHS: &[u8] = b"/etc /root /home /opt /srv /usr/local /var";
const DEFAULT_STATE_TARGET: &[u8] = b"/usr/local/.state";

/// The layout to apply.
#[derive(Clone)]
#[cfg_attr(test, derive(Debug))]
pub struct Layout {
    /// Ephemeral overlay mount points.
    pub rw_paths: PathList,
    /// Paths bind-mounted from `<state_target>/<dash>.bind`.
    pub binds: PathList,
    /// Backing of `/run/overlay`, valid for [`overlay_backing`].
    pub overlay: Text<128>,
    pub state_target: Text<256>,
    /// `<device>:<mountpoint>` specs as written, each valid for [`volume_spec`].
    pub volumes: List<2048, 16>,
    /// The entries of the lists that were refused (skipped, the rest of the layout applies),
    /// as `KEY 'item': why, ignored` messages for the log.
    pub warnings: Warnings,
    /// How many more entries were refused than `warnings` holds.
    pub unreported_warnings: usize,
}

/// Messages about refused layout entries.
pub type Warnings = List<2048, 16>;

impl Default for Layout {
    /// Empty; all zero bytes, cleared at once (the derived `default` clears field by field).
    fn default() -> Self {
        Layout {
            rw_paths: List::new(),
            binds: List::new(),
            overlay: Text::EMPTY,
            state_target: Text::EMPTY,
            volumes: List::new(),
            warnings: List::new(),
            unreported_warnings: 0,
        }
    }
}

/// A layout we refuse: which key, which item of it, why.
#[derive(Clone, PartialEq)]
#[cfg_attr(test, derive(Debug))]
pub struct LayoutError {
    pub key: &'static str,
    pub item: Text<64>,
    pub reason: &'static str,
}

fn layout_error(key: &'static str, item: &[u8], reason: &'static str) -> LayoutError {
    let mut e = LayoutError {
        key,
        item: Text::EMPTY,
        reason,
    };
    e.item.push_lossy(item);
    e
}

/// Items of a list value: upstream splits on single spaces; any whitespace separates here, so a
/// tab or a newline inside a quoted value cannot end up inside a path.
fn items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|c| c.is_ascii_whitespace())
        .filter(|item| !item.is_empty())
}

/// A refused layout before it becomes a [`LayoutError`]: key, item, reason.
type Bad<'a> = (&'static str, &'a [u8], &'static str);

impl Layout {
    /// Records a refused list entry: `KEY 'item': why, ignored` (the item cut to 64 bytes).
    fn refuse_entry(&mut self, key: &str, item: &[u8], reason: &str) {
        let mut msg: Text<200> = Text::new();
        let item = item.get(..64).unwrap_or(item);
        let parts = [key.as_bytes(), item, reason.as_bytes()];
        crate::log::expand(b"{} '{}': {}, ignored", &parts, &mut |b| {
            msg.push_lossy(&[b])
        });
        if self.warnings.push(msg.as_bytes()).is_err() {
            self.unreported_warnings += 1;
        }
    }

    /// Adds the paths of the list `value` of `key` to `list` (the rw paths or the binds),
    /// normalized, without duplicates; refuses each bad or surplus entry on its own.
    fn add_paths(&mut self, list: ListOf, key: &'static str, value: &[u8]) {
        let mut path = Text::new();
        for item in items(value) {
            let list = match list {
                ListOf::RwPaths => &mut self.rw_paths,
                ListOf::Binds => &mut self.binds,
            };
            let added = normalize(item, &mut path).and_then(|()| {
                list.push_unique(path.as_bytes())
                    .map_err(|_| "too many items")
            });
            if let Err(reason) = added {
                self.refuse_entry(key, item, reason);
            }
        }
    }
}

/// Which path list of a [`Layout`] a key fills.
#[derive(Clone, Copy)]
enum ListOf {
    RwPaths,
    Binds,
}

/// Sort key of upstream's bind order: number of `/`-separated parts (as the number of `/`),
/// then the last part.
fn bind_key(path: &[u8]) -> (usize, &[u8]) {
    let slashes = path.iter().filter(|&&c| c == b'/').count();
    let last = match path.iter().rposition(|&c| c == b'/') {
        Some(slash) => path.get(slash + 1..).unwrap_or(&[]),
        None => path,
    };
    (slashes, last)
}

/// Whether bind `a` mounts before `b` in upstream's order.
#[inline(never)]
fn mounts_before(a: &[u8], b: &[u8]) -> bool {
    bind_key(a) < bind_key(b)
}

/// The built-in Kairos persistent paths (reference §4.5, current `00_rootfs.yaml`).
const KAIROS_PERSISTENT_STATE_PATHS: &[u8] = b"/etc/cni /etc/init.d /etc/iscsi /etc/k0s /etc/kubernetes \
/etc/modprobe.d /etc/pwx /etc/rancher /etc/runlevels /etc/ssh /etc/ssl/certs /etc/sysconfig /etc/systemd \
/etc/zfs /home /opt /root /usr/libexec /var/cores /var/lib/ca-certificates /var/lib/cni /var/lib/containerd \
/var/lib/calico /var/lib/dbus /var/lib/etcd /var/lib/extensions /var/lib/confexts /var/lib/k0s /var/lib/kubelet \
/var/lib/longhorn /var/lib/osd /var/lib/rancher /var/lib/rook /var/lib/tailscale /var/lib/wicked /var/lib/kairos \
/var/log";

impl Layout {
    /// The layout described by `main` (`cos-layout.env`) and `extra` (`extra-layout.env`, only
    /// its `PERSISTENT_STATE_PATHS`), with upstream's defaults for absent keys.
    pub fn from_env(
        main: &EnvVars,
        extra: Option<&EnvVars>,
        cmdline_overlay: &[u8],
    ) -> Result<Layout, LayoutError> {
        let mut layout = Layout::default();
        layout
            .fill(main, extra, cmdline_overlay)
            .map_err(|(key, item, reason)| layout_error(key, item, reason))?;
        Ok(layout)
    }

    /// `from_env` into an empty layout, with the error as (key, item, reason).
    fn fill<'a>(
        &mut self,
        main: &'a EnvVars,
        extra: Option<&'a EnvVars>,
        cmdline_overlay: &'a [u8],
    ) -> Result<(), Bad<'a>> {
        let get = |key: &str| main.get(key.as_bytes()).unwrap_or(&[]);

        // Upstream also uses the defaults when RW_PATHS is present but empty [Q-6]; so do we
        // when every entry of it was refused.
        self.add_paths(ListOf::RwPaths, RW_PATHS, get(RW_PATHS));
        if self.rw_paths.is_empty() {
            self.add_paths(ListOf::RwPaths, RW_PATHS, DEFAULT_RW_PATHS);
        }
        self.add_paths(
            ListOf::Binds,
            PERSISTENT_STATE_PATHS,
            get(PERSISTENT_STATE_PATHS),
        );
        self.add_paths(ListOf::Binds, CUSTOM_BIND_MOUNTS, get(CUSTOM_BIND_MOUNTS));
        // Named `PERSISTENT_STATE_PATHS` in that file too.
        let extra_binds = extra.and_then(|extra| extra.get(PERSISTENT_STATE_PATHS.as_bytes()));
        let extra_binds = extra_binds.unwrap_or(&[]);
        self.add_paths(ListOf::Binds, EXTRA_PERSISTENT_STATE_PATHS, extra_binds);

        let (overlay_key, overlay) = match get("OVERLAY") {
            [] if cmdline_overlay.is_empty() => ("rd.cos.overlay", DEFAULT_OVERLAY),
            [] => ("rd.cos.overlay", cmdline_overlay),
            from_file => ("OVERLAY", from_file),
        };
        overlay_backing(overlay).map_err(|reason| (overlay_key, overlay, reason))?;
        self.overlay
            .push(overlay)
            .map_err(|_| (overlay_key, overlay, "too long"))?;

        let target = match get("PERSISTENT_STATE_TARGET") {
            [] => DEFAULT_STATE_TARGET,
            from_file => from_file,
        };
        let target_error = |reason| ("PERSISTENT_STATE_TARGET", target, reason);
        normalize(target, &mut self.state_target).map_err(target_error)?;
        // Volumes are mounted after the overlays, so one covering the target hides the overlay.
        let mut on_volume = false;
        for item in items(get("VOLUMES")) {
            let added = volume_spec(item).and_then(|(_, mount_point)| {
                self.volumes
                    .push_unique(item)
                    .map_err(|_| "too many items")?;
                Ok(mount_point)
            });
            match added {
                Ok(mount_point) => {
                    let state_target = self.state_target.as_bytes();
                    on_volume |= is_within(state_target, mount_point.as_bytes());
                }
                Err(reason) => self.refuse_entry("VOLUMES", item, reason),
            }
        }
        let state_target = self.state_target.as_bytes();
        if state_target == b"/" {
            return Err(target_error("is / (the read-only root image)"));
        }
        let in_overlay = self.rw_paths.iter().any(|rw| is_within(state_target, rw));
        if !self.binds.is_empty() && in_overlay && !on_volume {
            return Err(target_error(
                "lies inside an RW_PATHS overlay: persistent data would be lost",
            ));
        }
        Ok(())
    }

    /// Kairos' own layout for `state` (reference §4.5), for systems that ship no layout file.
    pub fn builtin(state: BootState, cmdline_overlay: &[u8]) -> Result<Layout, LayoutError> {
        // Cannot fail: four short keys, values far below the limits.
        let mut vars = EnvVars::new();
        let _ = vars.set(b"OVERLAY", b"tmpfs:25%");
        // Recovery and reset boots keep everything ephemeral: nothing persists.
        if matches!(state, BootState::Active | BootState::Passive) {
            let _ = vars.set(b"VOLUMES", b"LABEL=COS_PERSISTENT:/usr/local");
            let _ = vars.set(RW_PATHS.as_bytes(), b"/var /etc /srv");
            let _ = vars.set(
                PERSISTENT_STATE_PATHS.as_bytes(),
                KAIROS_PERSISTENT_STATE_PATHS,
            );
        }
        Layout::from_env(&vars, None, cmdline_overlay)
    }

    /// Writes into `order` the indices of `binds` in upstream's mount order (§6.12): fewer path
    /// parts first, equal counts by the last part only; equal keys keep their order. Returns
    /// the number of indices written.
    pub fn bind_order(&self, order: &mut [u8; 96]) -> usize {
        let n = self.binds.len().min(order.len());
        for (i, slot) in order.iter_mut().enumerate().take(n) {
            *slot = i as u8;
        }
        let path = |i: u8| self.binds.get(i as usize).unwrap_or(&[]);
        // Insertion sort: stable, no allocation, and 96 items at most.
        for i in 1..n {
            let mut j = i;
            while j > 0 {
                let Some(pair) = order.get_mut(j - 1..=j) else {
                    break;
                };
                let [before, after] = pair else { break };
                if !mounts_before(path(*after), path(*before)) {
                    break;
                }
                core::mem::swap(before, after);
                j -= 1;
            }
        }
        n
    }

    /// The layout in the file format yip writes (sorted `KEY="value"` lines); reading it back
    /// with [`parse_env`] and [`Layout::from_env`] gives this layout again.
    pub fn render_env(&self, out: &mut Text<16384>) -> Result<(), Full> {
        out.clear();
        render_line(
            out,
            "OVERLAY",
            &mut core::iter::once(self.overlay.as_bytes()),
        )?;
        render_line(out, PERSISTENT_STATE_PATHS, &mut self.binds.iter())?;
        render_line(
            out,
            "PERSISTENT_STATE_TARGET",
            &mut core::iter::once(self.state_target.as_bytes()),
        )?;
        render_line(out, RW_PATHS, &mut self.rw_paths.iter())?;
        render_line(out, "VOLUMES", &mut self.volumes.iter())
    }
}

/// `KEY="a b c"` with godotenv's double-quote escaping.
fn render_line(
    out: &mut Text<16384>,
    key: &str,
    values: &mut dyn Iterator<Item = &[u8]>,
) -> Result<(), Full> {
    out.push_str(key)?;
    out.push(b"=\"")?;
    for (n, value) in values.enumerate() {
        if n > 0 {
            out.push_byte(b' ')?;
        }
        for c in value {
            let pair;
            let escaped: &[u8] = match *c {
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                special @ (b'\\' | b'"' | b'!' | b'$' | b'`') => {
                    pair = [b'\\', special];
                    &pair
                }
                _ => core::slice::from_ref(c),
            };
            out.push(escaped)?;
        }
    }
    out.push(b"\"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn env(text: &str) -> EnvVars {
        let mut vars = EnvVars::new();
        parse_env(text.as_bytes(), &mut vars).unwrap();
        vars
    }

    fn env_err(text: &[u8]) -> EnvError {
        let mut vars = EnvVars::new();
        parse_env(text, &mut vars).unwrap_err()
    }

    fn get<'a>(vars: &'a EnvVars, key: &str) -> Option<&'a str> {
        vars.get(key.as_bytes())
            .map(|v| core::str::from_utf8(v).unwrap())
    }

    fn list<const B: usize, const I: usize>(l: &List<B, I>) -> Vec<&str> {
        l.iter_str().collect()
    }

    fn layout(main: &str) -> Result<Layout, LayoutError> {
        Layout::from_env(&env(main), None, b"tmpfs:20%")
    }

    #[test]
    fn yip_output_reads_back() {
        let v = env("OVERLAY=\"tmpfs:25%\"\nPERSISTENT_STATE_PATHS=\"/etc/ssh /home \"\nRW_PATHS=\"/var /etc /srv\"\n\
                     VOLUMES=\"LABEL=COS_PERSISTENT:/usr/local\"\nNUM=123\n");
        assert_eq!(v.len(), 5);
        assert_eq!(get(&v, "OVERLAY"), Some("tmpfs:25%"));
        assert_eq!(get(&v, "PERSISTENT_STATE_PATHS"), Some("/etc/ssh /home "));
        assert_eq!(get(&v, "NUM"), Some("123"));
        assert_eq!(get(&v, "MISSING"), None);
    }

    #[test]
    fn comments_blank_lines_and_export() {
        let v = env("# comment\n\n   # indented comment\nexport A=1\n  export\tB = 2 \nexportC=3\nD.x_y=4\nE: 5\n#F=6");
        assert_eq!(
            (get(&v, "A"), get(&v, "B"), get(&v, "exportC")),
            (Some("1"), Some("2"), Some("3"))
        );
        assert_eq!(
            (get(&v, "D.x_y"), get(&v, "E"), get(&v, "F")),
            (Some("4"), Some("5"), None)
        );
    }

    #[test]
    fn unquoted_values_and_inline_comments() {
        let v = env("A=  a b  # note\nB=x#y\nC=#z\nD=p # q # r\nE=\nF=   \nG=tab\t#c\n");
        assert_eq!(get(&v, "A"), Some("a b"));
        assert_eq!(get(&v, "B"), Some("x#y"));
        assert_eq!(get(&v, "C"), Some("#z"));
        assert_eq!(get(&v, "D"), Some("p # q"));
        assert_eq!((get(&v, "E"), get(&v, "F")), (Some(""), Some("")));
        assert_eq!(get(&v, "G"), Some("tab"));
    }

    #[test]
    fn quotes_and_escapes() {
        let v = env(r#"S='a "b" \n $A # c'
D="x\ny\rz \"q\" \\ \$A \a"
A=1
E="$A ${A} \$A $a ${a} $(A) $"
T="a\""
Q="one" # trailing comment
"#);
        assert_eq!(get(&v, "S"), Some(r#"a "b" \n $A # c"#));
        assert_eq!(get(&v, "D"), Some("x\ny\rz \"q\" \\ $A a"));
        assert_eq!(get(&v, "E"), Some("1 1 $A $a ${a} (A) $"));
        assert_eq!(get(&v, "T"), Some("a\\"));
        assert_eq!(get(&v, "Q"), Some("one"));
    }

    #[test]
    fn double_quotes_span_lines() {
        let v = env("A=\"first\nsecond\r\nthird\"\nB=after\n");
        assert_eq!(get(&v, "A"), Some("first\nsecond\nthird"));
        assert_eq!(get(&v, "B"), Some("after"));
        let e = env_err(b"A=1\nB=\"open\nstill open\nC=3\n");
        assert_eq!(
            e,
            EnvError {
                line: 2,
                reason: "unterminated quoted value"
            }
        );
        let e = env_err(b"A=1\r\n\r\nB='x\r\n");
        assert_eq!(
            e,
            EnvError {
                line: 3,
                reason: "unterminated quoted value"
            }
        );
    }

    #[test]
    fn expansion_sees_only_earlier_keys() {
        let v = env("B=$A-x\nA=base\nC=${A}/c\nD=$A$C\nE=\"${UNDEFINED}z\"\nF='$A'\nPATHX=$PATH\n");
        assert_eq!(get(&v, "B"), Some("-x"));
        assert_eq!(get(&v, "C"), Some("base/c"));
        assert_eq!(get(&v, "D"), Some("basebase/c"));
        assert_eq!(get(&v, "E"), Some("z"));
        assert_eq!(get(&v, "F"), Some("$A"));
        assert_eq!(get(&v, "PATHX"), Some(""));
    }

    #[test]
    fn crlf_files() {
        let v = env("# c\r\nA=1\r\nB=\"x y\"\r\nC=two words # c\r\n");
        assert_eq!(
            (get(&v, "A"), get(&v, "B"), get(&v, "C")),
            (Some("1"), Some("x y"), Some("two words"))
        );
    }

    #[test]
    fn repeated_keys_last_wins_and_store_is_reused() {
        let mut text = String::new();
        for i in 0..200 {
            text += &std::format!("A=\"{}\"\nB={i}\n", "x".repeat(4000));
        }
        text += "A=last\n";
        let v = env(&text);
        assert_eq!(v.len(), 2);
        assert_eq!(get(&v, "A"), Some("last"));
        assert_eq!(get(&v, "B"), Some("199"));
    }

    #[test]
    fn malformed_files() {
        assert_eq!(
            env_err(b"A=1\nB C=2\n"),
            EnvError {
                line: 2,
                reason: "invalid character in key"
            }
        );
        assert_eq!(
            env_err(b"A=1\nNOVALUE\nB=2\n"),
            EnvError {
                line: 2,
                reason: "missing = after key"
            }
        );
        assert_eq!(
            env_err(b"JUSTKEY"),
            EnvError {
                line: 1,
                reason: "missing = after key"
            }
        );
        assert_eq!(
            env_err(b"=value\n"),
            EnvError {
                line: 1,
                reason: "invalid character in key"
            }
        );
        assert_eq!(
            env_err(b"A-B=1\n"),
            EnvError {
                line: 1,
                reason: "invalid character in key"
            }
        );
        assert_eq!(
            env_err(b"\n\nA=\"x\"junk\n"),
            EnvError {
                line: 3,
                reason: "missing = after key"
            }
        );
        assert_eq!(
            env_err(&[b'K'; 65].iter().chain(b"=1").copied().collect::<Vec<_>>()).reason,
            "key too long"
        );
        assert_eq!(
            env_err(b"A=1\nB=\x00\x01\x02"),
            EnvError {
                line: 2,
                reason: "binary data"
            }
        );
        assert_eq!(
            env_err(b"A=1\n\nB=\xff\xfe"),
            EnvError {
                line: 3,
                reason: "binary data"
            }
        );
    }

    #[test]
    fn limits() {
        let big = "v".repeat(1 << 20);
        assert_eq!(
            env_err(std::format!("A=\"{big}\"").as_bytes()),
            EnvError {
                line: 1,
                reason: "value too long"
            }
        );
        assert_eq!(
            env_err(std::format!("X=1\nA={big}").as_bytes()),
            EnvError {
                line: 2,
                reason: "value too long"
            }
        );
        assert_eq!(
            env_err(std::format!("A='{big}'").as_bytes()).reason,
            "value too long"
        );
        let ok_max = "v".repeat(MAX_VALUE);
        assert_eq!(
            get(&env(&std::format!("A={ok_max}")), "A").map(str::len),
            Some(MAX_VALUE)
        );
        let total = std::format!("A={ok_max}\nB={ok_max}\nC=x\n");
        assert_eq!(
            env_err(total.as_bytes()),
            EnvError {
                line: 3,
                reason: "values too large in total"
            }
        );
        let many: String = (0..65).map(|i| std::format!("K{i}=1\n")).collect();
        assert_eq!(
            env_err(many.as_bytes()),
            EnvError {
                line: 65,
                reason: "too many keys"
            }
        );
        // Expansion may not grow a value past the limit either.
        let grow = std::format!("A={}\nB=$A$A\n", "v".repeat(5000));
        assert_eq!(
            env_err(grow.as_bytes()),
            EnvError {
                line: 2,
                reason: "value too long"
            }
        );
    }

    #[test]
    fn layout_defaults() {
        let l = layout("").unwrap();
        assert_eq!(
            list(&l.rw_paths),
            [
                "/etc",
                "/root",
                "/home",
                "/opt",
                "/srv",
                "/usr/local",
                "/var"
            ]
        );
        assert!(l.binds.is_empty() && l.volumes.is_empty());
        assert_eq!(l.overlay.as_str(), "tmpfs:20%");
        assert_eq!(l.state_target.as_str(), "/usr/local/.state");
        let l = layout("RW_PATHS=\"\"\nOVERLAY=").unwrap();
        assert_eq!(l.rw_paths.len(), 7);
        let l = layout("RW_PATHS=\"  \"").unwrap();
        assert_eq!(l.rw_paths.len(), 7);
        let l = Layout::from_env(&env(""), None, b"").unwrap();
        assert_eq!(l.overlay.as_str(), "tmpfs:20%");
    }

    #[test]
    fn layout_lists_are_split_normalized_and_deduplicated() {
        let main = env("RW_PATHS=\"/var  /etc/ /var\t/srv\n/etc\"\nPERSISTENT_STATE_PATHS=\"/etc/ssh /home\"\n\
                        CUSTOM_BIND_MOUNTS=\"/home /data//x/\"\nVOLUMES=\"LABEL=COS_PERSISTENT:/usr/local UUID=ab:/data  LABEL=COS_PERSISTENT:/usr/local\"\n\
                        OVERLAY=\"tmpfs:25%\"\nPERSISTENT_STATE_TARGET=/usr/local/.state/\n");
        let extra = env("PERSISTENT_STATE_PATHS=\"/snap /etc/ssh /var/snap\"\nRW_PATHS=/ignored\n");
        let l = Layout::from_env(&main, Some(&extra), b"tmpfs:20%").unwrap();
        assert_eq!(list(&l.rw_paths), ["/var", "/etc", "/srv"]);
        assert_eq!(
            list(&l.binds),
            ["/etc/ssh", "/home", "/data/x", "/snap", "/var/snap"]
        );
        assert_eq!(
            list(&l.volumes),
            ["LABEL=COS_PERSISTENT:/usr/local", "UUID=ab:/data"]
        );
        assert_eq!(l.overlay.as_str(), "tmpfs:25%");
        assert_eq!(l.state_target.as_str(), "/usr/local/.state");
    }

    #[test]
    fn overlay_precedence() {
        assert_eq!(
            Layout::from_env(&env(""), None, b"LABEL=OVL")
                .unwrap()
                .overlay
                .as_str(),
            "LABEL=OVL"
        );
        assert_eq!(
            Layout::from_env(&env("OVERLAY=UUID=1"), None, b"LABEL=OVL")
                .unwrap()
                .overlay
                .as_str(),
            "UUID=1"
        );
        let e = layout("OVERLAY=tmpfs:size=1G").unwrap_err();
        assert_eq!((e.key, e.item.as_str()), ("OVERLAY", "tmpfs:size=1G"));
        let e = Layout::from_env(&env(""), None, b"junk").unwrap_err();
        assert_eq!(e.key, "rd.cos.overlay");
    }

    /// The warnings of a layout.
    fn warnings(l: &Layout) -> Vec<&str> {
        list(&l.warnings)
    }

    /// #4: a refused entry is skipped with a warning naming key and item; the rest applies.
    #[test]
    fn invalid_items_are_skipped_naming_key_and_item() {
        let l = layout("RW_PATHS=\"/var etc\"").unwrap();
        assert_eq!(list(&l.rw_paths), ["/var"]);
        assert_eq!(warnings(&l), ["RW_PATHS 'etc': not absolute, ignored"]);
        let l = layout(
            "PERSISTENT_STATE_PATHS=\"/etc/ssh /etc/../root /home\"\nVOLUMES=LABEL=P:/usr/local",
        )
        .unwrap();
        assert_eq!(list(&l.binds), ["/etc/ssh", "/home"]);
        assert_eq!(
            warnings(&l),
            ["PERSISTENT_STATE_PATHS '/etc/../root': contains .., ignored"]
        );
        // A path with a space is two items: the piece that is not a path is refused.
        let l =
            layout("CUSTOM_BIND_MOUNTS=\"/a,b /my data /ok\"\nVOLUMES=LABEL=P:/usr/local").unwrap();
        assert_eq!(list(&l.binds), ["/my", "/ok"]);
        assert_eq!(
            warnings(&l),
            [
                "CUSTOM_BIND_MOUNTS '/a,b': contains , or :, ignored",
                "CUSTOM_BIND_MOUNTS 'data': not absolute, ignored"
            ]
        );
        let l = layout(&std::format!("RW_PATHS=\"/srv /{}\"", "a".repeat(300))).unwrap();
        assert_eq!(list(&l.rw_paths), ["/srv"]);
        let w = warnings(&l);
        assert_eq!(
            w,
            [std::format!(
                "RW_PATHS '/{}': too long, ignored",
                "a".repeat(63)
            )]
        );
        let l = layout("RW_PATHS=\"/a\x01b\"").unwrap();
        assert_eq!(
            warnings(&l),
            ["RW_PATHS '/a\x01b': contains a control character, ignored"]
        );
        let l = layout("VOLUMES=\"LABEL=x LABEL=P:/usr/local LABEL=..:/y\"").unwrap();
        assert_eq!(list(&l.volumes), ["LABEL=P:/usr/local"]);
        assert_eq!(
            warnings(&l),
            [
                "VOLUMES 'LABEL=x': no mount point, ignored",
                "VOLUMES 'LABEL=..:/y': label or id is . or .., ignored"
            ]
        );
        let extra = env("PERSISTENT_STATE_PATHS=\"x /snap\"");
        let main = env("VOLUMES=LABEL=P:/usr/local");
        let l = Layout::from_env(&main, Some(&extra), b"").unwrap();
        assert_eq!(list(&l.binds), ["/snap"]);
        assert_eq!(
            warnings(&l),
            ["PERSISTENT_STATE_PATHS (extra-layout.env) 'x': not absolute, ignored"]
        );
        // Single values are not entries: a bad one still refuses the layout.
        let e = layout("PERSISTENT_STATE_TARGET=relative").unwrap_err();
        assert_eq!(
            e,
            layout_error("PERSISTENT_STATE_TARGET", b"relative", "not absolute")
        );
    }

    /// #4: `/dev/disk/by-path` names (every one has a `:`) are volumes like any device path.
    #[test]
    fn by_path_volumes_are_accepted() {
        let by_path = "/dev/disk/by-path/pci-0000:00:1f.2-ata-1-part3:/var/lib/data";
        let l = layout(&std::format!("VOLUMES=\"LABEL=P:/usr/local {by_path}\"")).unwrap();
        assert_eq!(list(&l.volumes), ["LABEL=P:/usr/local", by_path]);
        assert!(l.warnings.is_empty());
    }

    #[test]
    fn every_refused_rw_path_means_the_defaults() {
        let l = layout("RW_PATHS=\"etc var\"").unwrap();
        assert_eq!(l.rw_paths.len(), 7);
        assert_eq!(l.warnings.len(), 2);
    }

    #[test]
    fn too_many_items_skip_the_surplus() {
        let many: String = (0..97).map(|i| std::format!("/p{i} ")).collect();
        let l = layout(&std::format!(
            "PERSISTENT_STATE_PATHS=\"{many}\"\nVOLUMES=LABEL=P:/usr/local"
        ))
        .unwrap();
        assert_eq!(l.binds.len(), 96);
        assert_eq!(
            warnings(&l),
            ["PERSISTENT_STATE_PATHS '/p96': too many items, ignored"]
        );
        let vols: String = (0..17).map(|i| std::format!("LABEL=v{i}:/v{i} ")).collect();
        let l = layout(&std::format!("VOLUMES=\"{vols}\"")).unwrap();
        assert_eq!(l.volumes.len(), 16);
        assert_eq!(
            warnings(&l),
            ["VOLUMES 'LABEL=v16:/v16': too many items, ignored"]
        );
        // Warnings beyond what the list holds are counted.
        let bad: String = (0..20).map(|i| std::format!("x{i} ")).collect();
        let l = layout(&std::format!("RW_PATHS=/var\nCUSTOM_BIND_MOUNTS=\"{bad}\"")).unwrap();
        assert_eq!((l.warnings.len(), l.unreported_warnings), (16, 4));
    }

    #[test]
    fn state_target_must_not_be_ephemeral() {
        let e = layout("PERSISTENT_STATE_TARGET=/\nPERSISTENT_STATE_PATHS=/etc/ssh").unwrap_err();
        assert_eq!(
            (e.key, e.reason),
            ("PERSISTENT_STATE_TARGET", "is / (the read-only root image)")
        );
        let e = layout("RW_PATHS=\"/var /etc\"\nPERSISTENT_STATE_TARGET=/var/state\nPERSISTENT_STATE_PATHS=/etc/ssh").unwrap_err();
        assert_eq!(
            e,
            layout_error(
                "PERSISTENT_STATE_TARGET",
                b"/var/state",
                "lies inside an RW_PATHS overlay: persistent data would be lost"
            )
        );
        // Default RW_PATHS contain /usr/local: an error only when there is something to persist...
        assert!(layout("").is_ok());
        assert!(layout("PERSISTENT_STATE_PATHS=/etc/ssh").is_err());
        // ...and no volume mounted over the overlay holds the target.
        assert!(
            layout("PERSISTENT_STATE_PATHS=/etc/ssh\nVOLUMES=LABEL=COS_PERSISTENT:/usr/local")
                .is_ok()
        );
        assert!(layout("RW_PATHS=/var\nPERSISTENT_STATE_TARGET=/var/s\nPERSISTENT_STATE_PATHS=/a\nVOLUMES=LABEL=P:/var/s").is_ok());
        assert!(
            layout("RW_PATHS=/var\nPERSISTENT_STATE_TARGET=/varx\nPERSISTENT_STATE_PATHS=/a")
                .is_ok()
        );
    }

    #[test]
    fn builtin_layouts() {
        for state in [BootState::Active, BootState::Passive] {
            let l = Layout::builtin(state, b"tmpfs:20%").unwrap();
            assert_eq!(list(&l.rw_paths), ["/var", "/etc", "/srv"]);
            assert_eq!(list(&l.volumes), ["LABEL=COS_PERSISTENT:/usr/local"]);
            assert_eq!(l.overlay.as_str(), "tmpfs:25%");
            assert_eq!(l.state_target.as_str(), "/usr/local/.state");
            assert_eq!(l.binds.len(), 37);
            assert_eq!(l.binds.get(0), Some(&b"/etc/cni"[..]));
            assert_eq!(l.binds.get(36), Some(&b"/var/log"[..]));
            assert!(l.binds.contains(b"/var/lib/kairos") && l.binds.contains(b"/etc/ssl/certs"));
        }
        for state in [
            BootState::Recovery,
            BootState::AutoReset,
            BootState::Live,
            BootState::Unknown,
        ] {
            let l = Layout::builtin(state, b"tmpfs:20%").unwrap();
            assert_eq!(
                list(&l.rw_paths),
                [
                    "/etc",
                    "/root",
                    "/home",
                    "/opt",
                    "/srv",
                    "/usr/local",
                    "/var"
                ]
            );
            assert!(l.volumes.is_empty() && l.binds.is_empty());
            assert_eq!(l.overlay.as_str(), "tmpfs:25%");
        }
    }

    #[test]
    fn bind_order_follows_upstream() {
        let l = layout("PERSISTENT_STATE_PATHS=\"/var/lib/rancher /srv/ssh /etc/ssh /var/log /home /etc/rancher /var/lib/cni /opt /usr/libexec\"\n\
                        VOLUMES=LABEL=COS_PERSISTENT:/usr/local").unwrap();
        let mut order = [0u8; 96];
        let n = l.bind_order(&mut order);
        let sorted: Vec<&str> = order[..n]
            .iter()
            .map(|&i| l.binds.iter_str().nth(i as usize).unwrap())
            .collect();
        // Two parts: home, opt; three: by last part only (libexec, log, rancher, ssh), the two
        // "ssh" entries keeping their given order; four: cni before rancher.
        assert_eq!(
            sorted,
            [
                "/home",
                "/opt",
                "/usr/libexec",
                "/var/log",
                "/etc/rancher",
                "/srv/ssh",
                "/etc/ssh",
                "/var/lib/cni",
                "/var/lib/rancher"
            ]
        );
        let builtin = Layout::builtin(BootState::Active, b"").unwrap();
        let n = builtin.bind_order(&mut order);
        assert_eq!(n, 37);
        let first: Vec<&str> = order[..3]
            .iter()
            .map(|&i| builtin.binds.iter_str().nth(i as usize).unwrap())
            .collect();
        assert_eq!(first, ["/home", "/opt", "/root"]);
        assert_eq!(layout("").unwrap().bind_order(&mut order), 0);
    }

    fn assert_same(a: &Layout, b: &Layout) {
        assert_eq!(list(&a.rw_paths), list(&b.rw_paths));
        assert_eq!(list(&a.binds), list(&b.binds));
        assert_eq!(list(&a.volumes), list(&b.volumes));
        assert_eq!(a.overlay, b.overlay);
        assert_eq!(a.state_target, b.state_target);
    }

    #[test]
    fn render_round_trips() {
        let extra = env("PERSISTENT_STATE_PATHS=/snap");
        let odd = env("RW_PATHS=\"/var /we!rd$x /back`tick\"\nPERSISTENT_STATE_PATHS=/a#b\nCUSTOM_BIND_MOUNTS=/c\n\
                       VOLUMES='LABEL=$L!:/m UUID=x:/n'\nPERSISTENT_STATE_TARGET=/state\n");
        let layouts = [
            Layout::builtin(BootState::Active, b"").unwrap(),
            Layout::builtin(BootState::Recovery, b"tmpfs:1G").unwrap(),
            Layout::from_env(&odd, Some(&extra), b"UUID=1234").unwrap(),
        ];
        for l in &layouts {
            let mut out = Text::new();
            l.render_env(&mut out).unwrap();
            let mut vars = EnvVars::new();
            parse_env(out.as_bytes(), &mut vars).unwrap();
            let again = Layout::from_env(&vars, None, b"tmpfs:99%").unwrap();
            assert_same(l, &again);
        }
        let mut out = Text::new();
        layouts[1].render_env(&mut out).unwrap();
        assert_eq!(
            out.as_str(),
            "OVERLAY=\"tmpfs:25%\"\nPERSISTENT_STATE_PATHS=\"\"\nPERSISTENT_STATE_TARGET=\"/usr/local/.state\"\n\
             RW_PATHS=\"/etc /root /home /opt /srv /usr/local /var\"\nVOLUMES=\"\"\n"
        );
        layouts[2].render_env(&mut out).unwrap();
        assert!(
            out.as_str()
                .contains(r#"RW_PATHS="/var /we\!rd\$x /back\`tick""#),
            "{}",
            out.as_str()
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 777u32;
        for _ in 0..500 {
            let len = (seed % 200) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
                    b"A=\"'\\$#{}\n\r \texport:B_"[(seed >> 16) as usize % 20]
                })
                .collect();
            let mut vars = EnvVars::new();
            if parse_env(&text, &mut vars).is_ok() {
                let _ = Layout::from_env(&vars, Some(&vars), b"tmpfs:1%");
            }
        }
    }
}
