//! The OCI archive readers on any input: the tar reader (every member, its content read), the
//! JSON reader (every value walked), and the image lookup over the input as an archive. None
//! may panic or loop; the tar reader's offset only grows and never passes the input.
#![no_main]
use immucore::oci::{json, layout, tar};

fn walk(v: json::Value, depth: u32) {
    assert!(depth <= 64, "the reader accepted nesting past its limit");
    let _ = (v.str(), v.u64(), v.get(b"digest"));
    for (_, item) in v.items() {
        walk(item, depth + 1);
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut reader = tar::Reader::new(tar::SliceInput { data });
    let mut entry = tar::Entry::new();
    let mut last = 0;
    let mut buf = [0u8; 4096];
    while let Ok(true) = reader.next(&mut entry) {
        assert!(reader.offset() >= last && reader.offset() <= data.len() as u64);
        last = reader.offset();
        let _ = entry.xattrs().count();
        while let Ok(n) = reader.read_data(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }
    if let Ok(doc) = json::parse(data) {
        walk(doc, 0);
    }
    let archive = layout::Archive { data };
    if let Ok(image) = archive.image(b"latest") {
        let _ = image.layers().count();
    }
});
