//! A small JSON reader for the OCI index, manifests and configs: no allocation, values are
//! sub-slices of the document. Tolerant of whitespace, key order and unknown fields; strict
//! about syntax (a document that does not parse is refused, with the offset). Strings are
//! returned raw (escapes kept); the fields read here (media types, digests, tags, platforms)
//! are compared raw, and a tag with an escape in it simply does not match.

#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub struct JsonError {
    pub message: &'static str,
    pub offset: usize,
}

/// Deepest nesting accepted (a bound on the reader's recursion).
const MAX_DEPTH: u32 = 64;

/// A JSON value: the slice of the document it spans (whitespace trimmed).
#[derive(Clone, Copy)]
pub struct Value<'a> {
    doc: &'a [u8],
    start: usize,
    end: usize,
}

fn fail(message: &'static str, offset: usize) -> JsonError {
    JsonError { message, offset }
}

fn skip_ws(doc: &[u8], mut at: usize) -> usize {
    while matches!(doc.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The end of the value that starts at `at` (after whitespace).
fn value_end(doc: &[u8], at: usize, depth: u32) -> Result<usize, JsonError> {
    if depth > MAX_DEPTH {
        return Err(fail("nested deeper than 64 levels", at));
    }
    match doc.get(at) {
        Some(b'"') => string_end(doc, at),
        Some(&open @ (b'{' | b'[')) => {
            let close = if open == b'{' { b'}' } else { b']' };
            let mut at = skip_ws(doc, at + 1);
            if doc.get(at) == Some(&close) {
                return Ok(at + 1);
            }
            loop {
                if open == b'{' {
                    if doc.get(at) != Some(&b'"') {
                        return Err(fail("expected a key (a string)", at));
                    }
                    at = skip_ws(doc, string_end(doc, at)?);
                    if doc.get(at) != Some(&b':') {
                        return Err(fail("expected ':' after a key", at));
                    }
                    at = skip_ws(doc, at + 1);
                }
                at = skip_ws(doc, value_end(doc, at, depth + 1)?);
                match doc.get(at) {
                    Some(b',') => at = skip_ws(doc, at + 1),
                    Some(&c) if c == close => return Ok(at + 1),
                    _ => return Err(fail("expected ',' or the end of an object or array", at)),
                }
            }
        }
        Some(b't') => literal(doc, at, b"true"),
        Some(b'f') => literal(doc, at, b"false"),
        Some(b'n') => literal(doc, at, b"null"),
        Some(b'-' | b'0'..=b'9') => {
            let mut end = at + 1;
            while matches!(
                doc.get(end),
                Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
            ) {
                end += 1;
            }
            Ok(end)
        }
        _ => Err(fail("expected a value", at)),
    }
}

fn literal(doc: &[u8], at: usize, word: &[u8]) -> Result<usize, JsonError> {
    match doc.get(at..at + word.len()) {
        Some(w) if w == word => Ok(at + word.len()),
        _ => Err(fail("expected a value", at)),
    }
}

fn string_end(doc: &[u8], at: usize) -> Result<usize, JsonError> {
    let mut i = at + 1;
    loop {
        match doc.get(i) {
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => i += 2,
            Some(c) if *c < 0x20 => return Err(fail("a control character in a string", i)),
            Some(_) => i += 1,
            None => return Err(fail("a string without its closing quote", at)),
        }
    }
}

/// Parses a whole document: one value and nothing but whitespace after it.
pub fn parse(doc: &[u8]) -> Result<Value<'_>, JsonError> {
    let start = skip_ws(doc, 0);
    let end = value_end(doc, start, 0)?;
    if skip_ws(doc, end) != doc.len() {
        return Err(fail("text after the JSON value", end));
    }
    Ok(Value { doc, start, end })
}

impl<'a> Value<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.doc.get(self.start..self.end).unwrap_or(&[])
    }

    /// The raw content of a string (between the quotes, escapes kept).
    pub fn str(&self) -> Option<&'a [u8]> {
        let b = self.bytes();
        b.strip_prefix(b"\"")?.strip_suffix(b"\"")
    }

    /// A non-negative integer.
    pub fn u64(&self) -> Option<u64> {
        crate::util::fixed::parse_u64(self.bytes())
    }

    /// The members of an object, or the elements of an array (keys empty). The document was
    /// checked by `parse`, so the walk cannot fail.
    pub fn items(&self) -> Items<'a> {
        let at = match self.doc.get(self.start) {
            Some(b'{') | Some(b'[') => skip_ws(self.doc, self.start + 1),
            _ => self.end,
        };
        Items {
            doc: self.doc,
            at,
            end: self.end,
            object: self.doc.get(self.start) == Some(&b'{'),
        }
    }

    /// The value of `key` in an object (the first one, if repeated).
    pub fn get(&self, key: &[u8]) -> Option<Value<'a>> {
        self.items().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn is_array(&self) -> bool {
        self.doc.get(self.start) == Some(&b'[')
    }

    pub fn is_object(&self) -> bool {
        self.doc.get(self.start) == Some(&b'{')
    }
}

pub struct Items<'a> {
    doc: &'a [u8],
    at: usize,
    end: usize,
    object: bool,
}

impl<'a> Iterator for Items<'a> {
    type Item = (&'a [u8], Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        // The closing bracket is the last byte of the value.
        if self.at + 1 >= self.end {
            return None;
        }
        let mut key: &[u8] = &[];
        if self.object {
            let key_end = string_end(self.doc, self.at).ok()?;
            key = self.doc.get(self.at + 1..key_end - 1)?;
            self.at = skip_ws(self.doc, skip_ws(self.doc, key_end) + 1);
        }
        let start = self.at;
        let end = value_end(self.doc, start, 0).ok()?;
        self.at = skip_ws(self.doc, end);
        if self.doc.get(self.at) == Some(&b',') {
            self.at = skip_ws(self.doc, self.at + 1);
        }
        Some((
            key,
            Value {
                doc: self.doc,
                start,
                end,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_objects_arrays_and_unknown_fields() {
        let doc = br#"
          { "schemaVersion" : 2, "x": {"deep": [1, {"a": null}, true, -1.5e3]},
            "manifests": [ {"digest":"sha256:ab", "annotations": {"org.opencontainers.image.ref.name":"v\"1"}},
                           {"digest": "sha256:cd"} ] }  "#;
        let v = parse(doc).unwrap();
        assert_eq!(v.get(b"schemaVersion").and_then(|v| v.u64()), Some(2));
        let m = v.get(b"manifests").unwrap();
        assert!(m.is_array());
        let digests: std::vec::Vec<_> = m
            .items()
            .filter_map(|(_, d)| d.get(b"digest")?.str())
            .collect();
        assert_eq!(digests, [&b"sha256:ab"[..], b"sha256:cd"]);
        let first = m.items().next().unwrap().1;
        let tag = first
            .get(b"annotations")
            .unwrap()
            .get(b"org.opencontainers.image.ref.name");
        assert_eq!(tag.unwrap().str(), Some(&br#"v\"1"#[..]));
        assert!(v.get(b"missing").is_none());
        assert_eq!(parse(b"{}").unwrap().items().count(), 0);
        assert_eq!(parse(b"[ ]").unwrap().items().count(), 0);
    }

    #[test]
    fn refuses_bad_documents_with_offsets() {
        for (doc, offset) in [
            (&b"{\"a\" 1}"[..], 5),
            (b"{\"a\":1", 6),
            (b"[1,]", 3),
            (b"\"open", 0),
            (b"{} x", 2),
            (b"nul", 0),
        ] {
            let e = parse(doc).err().unwrap();
            assert_eq!(e.offset, offset, "{:?}: {e:?}", core::str::from_utf8(doc));
        }
        let deep = [b'['; 100];
        assert_eq!(
            parse(&deep).err().unwrap().message,
            "nested deeper than 64 levels"
        );
    }
}
