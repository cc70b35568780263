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
