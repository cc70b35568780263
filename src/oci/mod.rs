//! OCI image archives (`root=bootc-live:`): the archive is read where it lies (`tar` finds
//! its members, `layout` picks and verifies the image, `json` reads its documents) and the
//! layers are applied into a tmpfs (`unpack`). Pure code over byte slices except `unpack`,
//! whose every path goes through `sys::inroot`.

pub mod json;
pub mod layout;
pub mod tar;
pub mod unpack;

use crate::decode::{self, DecodeError, Source};
use crate::log;
use crate::sys::Global;
use crate::util::fixed::Text;
use layout::{Archive, Compression};

/// Why an archive could not be unpacked: a message naming the blob, layer or entry. As for
/// step errors (`steps::Error`), a token: the text waits in `MESSAGE`, so results stay small.
#[must_use = "an unpacking error is returned, or its message read"]
#[cfg_attr(test, derive(Debug))]
pub struct Error(());

/// The text of the last unpacking error (the program is single-threaded).
static MESSAGE: Global<Text<320>> = Global::new(Text::new());

impl Error {
    pub fn new(template: &[u8], args: &[&[u8]]) -> Error {
        MESSAGE.with(|m| {
            m.clear();
            log::expand(template, args, &mut |c| m.push_lossy(&[c]));
        });
        Error(())
    }

    /// Appends the errno's name.
    fn with_errno(self, e: crate::sys::Errno) -> Error {
        MESSAGE.with(|m| {
            m.push_lossy(b": ");
            m.push_lossy(log::errno(e).as_bytes());
        });
        self
    }

    /// Puts `template` (with `args`) before the message: where the error happened.
    fn within(self, template: &[u8], args: &[&[u8]]) -> Error {
        MESSAGE.with(|m| {
            let inner = m.clone();
            m.clear();
            log::expand(template, args, &mut |c| m.push_lossy(&[c]));
            m.push_lossy(inner.as_bytes());
        });
        self
    }

    /// Why unpacking failed.
    pub fn message(self) -> Text<320> {
        MESSAGE.with(|m| m.clone())
    }
}

/// A decompressed layer as the tar reader's input.
struct Layer<S: Source>(S);

impl<S: Source> tar::Input for Layer<S> {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, tar::TarError> {
        self.0.read(out).map_err(|e: DecodeError| tar::TarError {
            message: e.message(),
            offset: e.offset(),
        })
    }
}

/// What `unpack` did.
pub struct Summary {
    pub layers: usize,
    pub stats: unpack::Stats,
}

/// Unpacks the image tagged `tag` of the archive `data` into the tmpfs at `target`.
pub fn unpack(data: &[u8], tag: &[u8], target: &[u8]) -> Result<Summary, Error> {
    let archive = Archive { data };
    let image = archive.image(tag)?;
    let count = image.layer_count();
    log::info(
        b"image {} (manifest {}): {} layers",
        &[
            tag,
            image.manifest.digest,
            log::num(count as u64).as_bytes(),
        ],
    );
    let mut tree = unpack::Target::open(target)?;
    for (i, descriptor) in image.layers().enumerate() {
        let blob = archive.blob(descriptor)?;
        let compression = layout::layer_compression(blob.media_type).ok_or_else(|| {
            Error::new(
                b"layer {}: unknown media type {}",
                &[blob.digest, blob.media_type],
            )
        })?;
        tree.layer = (i + 1, count);
        log::info(
            b"layer {} of {}: {} ({} bytes)",
            &[
                log::num(i as u64 + 1).as_bytes(),
                log::num(count as u64).as_bytes(),
                blob.digest,
                log::num(blob.data.len() as u64).as_bytes(),
            ],
        );
        let applied = apply_layer(&mut tree, compression, blob.data);
        applied.map_err(|e| e.within(b"layer {}: ", &[blob.digest]))?;
    }
    Ok(Summary {
        layers: count,
        stats: tree.stats,
    })
}

fn apply_layer(
    tree: &mut unpack::Target,
    compression: Compression,
    data: &[u8],
) -> Result<(), Error> {
    match compression {
        Compression::None => tree.apply(Layer(decode::Plain::new(data))),
        Compression::Gzip => {
            let mut window = [0u8; decode::gzip::WINDOW];
            tree.apply(Layer(decode::Gzip::new(data, &mut window)))
        }
        #[cfg(feature = "zstd")]
        Compression::Zstd => {
            let decode_error = |e: DecodeError| {
                let at = log::num(e.offset());
                Error::new(
                    b"{} at byte {} of the layer",
                    &[e.message().as_bytes(), at.as_bytes()],
                )
            };
            let size = decode::Zstd::window_size(data).map_err(decode_error)?;
            let mut window = crate::sys::mapped::Anonymous::new(size).map_err(|e| {
                let size = log::num(size as u64);
                Error::new(
                    b"no memory for a zstd window of {} bytes",
                    &[size.as_bytes()],
                )
                .with_errno(e)
            })?;
            let source = decode::Zstd::new(data, window.bytes_mut()).map_err(decode_error)?;
            tree.apply(Layer(source))
        }
        #[cfg(not(feature = "zstd"))]
        Compression::Zstd => Err(Error::new(
            b"a zstd layer (tar+zstd), and this build lacks the zstd feature",
            &[],
        )),
    }
}

/// A build with `oci` but without `zstd`: a zstd layer is refused by name (its digest and
/// why), before anything is written, while the same image with a gzip layer unpacks.
#[cfg(all(test, not(feature = "zstd")))]
mod without_zstd {
    use super::*;
    use crate::decode::Sha256;
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    fn member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000001");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&c| u32::from(c)).sum();
        h[148..156].copy_from_slice(format!("{:06o}\0 ", sum).as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn digest(data: &[u8]) -> String {
        let mut hash = Sha256::new();
        hash.update(data);
        hash.finish().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// An OCI archive (a tar of an image layout) whose image `latest` has one layer, `layer`
    /// of `media_type`; and the layer's digest.
    fn archive(media_type: &str, layer: &[u8]) -> (Vec<u8>, String) {
        let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
        let mut descriptor = |media_type: &str, data: Vec<u8>| {
            let d = digest(&data);
            let text = format!(
                r#"{{"mediaType":"{media_type}","digest":"sha256:{d}","size":{}}}"#,
                data.len()
            );
            blobs.push((d, data));
            text
        };
        let config = descriptor(
            "application/vnd.oci.image.config.v1+json",
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .to_vec(),
        );
        let layer_descriptor = descriptor(media_type, layer.to_vec());
        let manifest = descriptor(
            "application/vnd.oci.image.manifest.v1+json",
            format!(r#"{{"schemaVersion":2,"config":{config},"layers":[{layer_descriptor}]}}"#)
                .into_bytes(),
        );
        let tagged = manifest.replacen(
            '}',
            r#","annotations":{"org.opencontainers.image.ref.name":"latest"}}"#,
            1,
        );
        let index = format!(r#"{{"schemaVersion":2,"manifests":[{tagged}]}}"#);
        let mut tar = Vec::new();
        member(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        member(&mut tar, "index.json", index.as_bytes());
        for (d, data) in &blobs {
            member(&mut tar, &format!("blobs/sha256/{d}"), data);
        }
        tar.extend_from_slice(&[0u8; 1024]);
        (tar, digest(layer))
    }

    /// A fresh directory on the host's `/dev/shm` (a tmpfs: layers are applied into one).
    fn target(name: &str) -> String {
        let dir = format!("/dev/shm/immucore-{name}-{}", std::process::id());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_zstd_layer_is_refused_by_name() {
        let mut tar = Vec::new();
        member(&mut tar, "hello", b"hello\n");
        tar.extend_from_slice(&[0u8; 1024]);

        // The control: a gzip layer unpacks, so the archive itself is sound.
        let gzipped = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        };
        let (gzip_archive, _) = archive("application/vnd.oci.image.layer.v1.tar+gzip", &gzipped);
        let dir = target("oci-gzip");
        let unpacked = unpack(&gzip_archive, b"latest", dir.as_bytes());
        assert!(
            unpacked.is_ok(),
            "{:?}",
            unpacked.err().map(|e| e.message())
        );
        assert_eq!(std::fs::read(format!("{dir}/hello")).unwrap(), b"hello\n");
        std::fs::remove_dir_all(&dir).unwrap();

        for media_type in [
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        ] {
            let zstd = zstd::encode_all(&tar[..], 3).unwrap();
            let (zstd_archive, layer) = archive(media_type, &zstd);
            let dir = target("oci-zstd");
            let refused = unpack(&zstd_archive, b"latest", dir.as_bytes());
            let message = refused.err().expect("a zstd layer was unpacked").message();
            assert_eq!(
                String::from_utf8_lossy(message.as_bytes()),
                format!(
                    "layer sha256:{layer}: a zstd layer (tar+zstd), and this build lacks the \
                     zstd feature"
                ),
                "{media_type}"
            );
            let written: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
            assert!(written.is_empty(), "written: {written:?}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
