//! The OCI image layout inside an archive: `index.json`, the tag (`bootclabel=`), nested
//! indexes resolved to the running architecture, the manifest, the config and the layers.
//! Every blob is looked up by digest among the archive's members and its size and SHA-256
//! checked before a byte of it is parsed or unpacked.

use super::json::{self, Value};
use super::tar;
use super::Error;
use crate::decode::Sha256;
use crate::util::fixed::Text;

const TAG_ANNOTATION: &[u8] = b"org.opencontainers.image.ref.name";
const INDEX_TYPES: &[&[u8]] = &[
    b"application/vnd.oci.image.index.v1+json",
    b"application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: &[&[u8]] = &[
    b"application/vnd.oci.image.manifest.v1+json",
    b"application/vnd.docker.distribution.manifest.v2+json",
];
/// Nested indexes followed at most (an index of indexes of manifests is already unusual).
const MAX_INDEX_DEPTH: u32 = 4;

/// How a layer's tar is stored.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A layer's compression from its media type; `None` for a media type that is not a layer.
pub fn layer_compression(media_type: &[u8]) -> Option<Compression> {
    let base = media_type
        .strip_prefix(b"application/vnd.oci.image.layer.v1.tar")
        .or_else(|| {
            media_type.strip_prefix(b"application/vnd.oci.image.layer.nondistributable.v1.tar")
        });
    match base {
        Some(b"") => Some(Compression::None),
        Some(b"+gzip") => Some(Compression::Gzip),
        Some(b"+zstd") => Some(Compression::Zstd),
        Some(_) => None,
        None => match media_type {
            b"application/vnd.docker.image.rootfs.diff.tar.gzip"
            | b"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            _ => None,
        },
    }
}

/// The platform of this build, as OCI (Go) names it: architecture and variant.
pub fn running_platform() -> (&'static [u8], &'static [u8]) {
    if cfg!(target_arch = "x86_64") {
        (b"amd64", b"")
    } else if cfg!(target_arch = "aarch64") {
        (b"arm64", b"")
    } else if cfg!(target_arch = "arm") {
        (b"arm", b"v7")
    } else if cfg!(target_arch = "riscv64") {
        (b"riscv64", b"")
    } else if cfg!(target_arch = "x86") {
        (b"386", b"")
    } else {
        (b"unknown", b"")
    }
}

/// A blob the image uses, found and verified.
#[derive(Clone, Copy)]
pub struct Blob<'a> {
    pub media_type: &'a [u8],
    /// `sha256:<hex>`, as the descriptor gives it.
    pub digest: &'a [u8],
    pub data: &'a [u8],
}

/// The mapped archive.
#[derive(Clone, Copy)]
pub struct Archive<'a> {
    pub data: &'a [u8],
}

/// The image chosen in an archive: its manifest (verified) and config (verified).
pub struct Image<'a> {
    pub manifest: Blob<'a>,
    pub config: Blob<'a>,
    layers: Value<'a>,
}

fn tar_error(e: tar::TarError) -> Error {
    Error::new(
        b"the archive is not a readable tar: {} at byte {}",
        &[e.message.as_bytes(), crate::log::num(e.offset).as_bytes()],
    )
}

fn json_error(what: &[u8], e: json::JsonError) -> Error {
    Error::new(
        b"{} is not valid JSON: {} at byte {}",
        &[
            what,
            e.message.as_bytes(),
            crate::log::num(e.offset as u64).as_bytes(),
        ],
    )
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl<'a> Archive<'a> {
    /// The archive's `index.json`, parsed.
    pub fn index(&self) -> Result<Value<'a>, Error> {
        let doc = tar::find_member(self.data, b"index.json")
            .map_err(tar_error)?
            .ok_or_else(|| {
                Error::new(
                    b"the archive has no index.json (not an OCI image layout)",
                    &[],
                )
            })?;
        json::parse(doc).map_err(|e| json_error(b"index.json", e))
    }

    /// The blob a descriptor names, after checking its size and SHA-256.
    pub fn blob(&self, descriptor: Value<'a>) -> Result<Blob<'a>, Error> {
        let field = |key: &[u8]| descriptor.get(key).and_then(|v| v.str());
        let media_type = field(b"mediaType").unwrap_or(b"");
        let digest = field(b"digest").ok_or_else(|| {
            Error::new(
                b"a descriptor without a digest (media type {})",
                &[media_type],
            )
        })?;
        let hex = digest
            .strip_prefix(b"sha256:")
            .ok_or_else(|| Error::new(b"blob {}: only sha256 digests are supported", &[digest]))?;
        let mut want = [0u8; 32];
        let valid_hex = hex.len() == 64
            && want.iter_mut().zip(hex.chunks(2)).all(|(byte, pair)| {
                match (
                    pair.first().and_then(|&c| hex_value(c)),
                    pair.get(1).and_then(|&c| hex_value(c)),
                ) {
                    (Some(hi), Some(lo)) => {
                        *byte = hi << 4 | lo;
                        true
                    }
                    _ => false,
                }
            });
        if !valid_hex {
            return Err(Error::new(
                b"blob {}: not a sha256 digest (64 lowercase hex digits)",
                &[digest],
            ));
        }
        let mut name: Text<96> = Text::new();
        let _ = name.push(b"blobs/sha256/").and_then(|_| name.push(hex));
        let data = tar::find_member(self.data, name.as_bytes())
            .map_err(tar_error)?
            .ok_or_else(|| {
                Error::new(
                    b"blob {} ({}) is missing from the archive",
                    &[digest, media_type],
                )
            })?;
        let size = descriptor.get(b"size").and_then(|v| v.u64());
        if size != Some(data.len() as u64) {
            return Err(Error::new(
                b"blob {} ({}): {} bytes in the archive, not the size its descriptor gives",
                &[
                    digest,
                    media_type,
                    crate::log::num(data.len() as u64).as_bytes(),
                ],
            ));
        }
        let mut hash = Sha256::new();
        hash.update(data);
        if hash.finish() != want {
            return Err(Error::new(
                b"blob {} ({}) does not match its digest (corrupted)",
                &[digest, media_type],
            ));
        }
        Ok(Blob {
            media_type,
            digest,
            data,
        })
    }

    /// The image tagged `tag`, resolved through nested indexes to the manifest of the running
    /// platform. No such tag: an error listing the tags the archive has.
    pub fn image(&self, tag: &[u8]) -> Result<Image<'a>, Error> {
        let index = self.index()?;
        let manifests = index
            .get(b"manifests")
            .filter(|m| m.is_array())
            .ok_or_else(|| Error::new(b"index.json has no manifests array", &[]))?;
        let tag_of = |d: &Value<'a>| {
            d.get(b"annotations")
                .and_then(|a| a.get(TAG_ANNOTATION))
                .and_then(|t| t.str())
        };
        let chosen = manifests
            .items()
            .map(|(_, d)| d)
            .find(|d| tag_of(d) == Some(tag));
        // An archive written without any tag (`skopeo copy ... oci-archive:x.oci`) with one
        // image: that image, as skopeo itself reads it.
        let untagged_single =
            manifests.items().count() == 1 && manifests.items().all(|(_, d)| tag_of(&d).is_none());
        let descriptor = match chosen {
            Some(d) => d,
            None if untagged_single => manifests
                .items()
                .map(|(_, d)| d)
                .next()
                .ok_or_else(|| Error::new(b"index.json is empty", &[]))?,
            None => {
                let mut tags: Text<160> = Text::new();
                for t in manifests.items().filter_map(|(_, d)| tag_of(&d)) {
                    tags.push_lossy(if tags.is_empty() { b"" } else { b", " });
                    tags.push_lossy(t);
                }
                if tags.is_empty() {
                    tags.push_lossy(b"none");
                }
                return Err(Error::new(
                    b"no image tagged {} in the archive (tags: {})",
                    &[tag, tags.as_bytes()],
                ));
            }
        };
        let manifest = self.resolve(descriptor, 0)?;
        let doc = json::parse(manifest.data).map_err(|e| json_error(manifest.digest, e))?;
        let config = doc
            .get(b"config")
            .ok_or_else(|| Error::new(b"manifest {} has no config", &[manifest.digest]))?;
        let config = self.blob(config)?;
        json::parse(config.data).map_err(|e| json_error(config.digest, e))?;
        let layers = doc
            .get(b"layers")
            .filter(|l| l.is_array())
            .ok_or_else(|| Error::new(b"manifest {} has no layers array", &[manifest.digest]))?;
        Ok(Image {
            manifest,
            config,
            layers,
        })
    }

    /// The manifest a descriptor leads to: itself, or the running platform's entry of the
    /// index it names.
    fn resolve(&self, descriptor: Value<'a>, depth: u32) -> Result<Blob<'a>, Error> {
        let blob = self.blob(descriptor)?;
        if MANIFEST_TYPES.contains(&blob.media_type) {
            return Ok(blob);
        }
        if !INDEX_TYPES.contains(&blob.media_type) {
            return Err(Error::new(
                b"blob {}: media type {} is neither a manifest nor an index",
                &[blob.digest, blob.media_type],
            ));
        }
        if depth >= MAX_INDEX_DEPTH {
            return Err(Error::new(
                b"index {}: indexes nested deeper than 4",
                &[blob.digest],
            ));
        }
        let doc = json::parse(blob.data).map_err(|e| json_error(blob.digest, e))?;
        let (arch, variant) = running_platform();
        let fits = |d: &Value<'a>| {
            let Some(p) = d.get(b"platform") else {
                return false;
            };
            let get = |k: &[u8]| p.get(k).and_then(|v| v.str());
            get(b"os") == Some(b"linux")
                && get(b"architecture") == Some(arch)
                && (variant.is_empty() || get(b"variant").is_none_or(|v| v == variant))
        };
        let child = doc
            .get(b"manifests")
            .and_then(|m| m.items().map(|(_, d)| d).find(fits))
            .ok_or_else(|| {
                Error::new(b"index {} has no image for linux/{}", &[blob.digest, arch])
            })?;
        self.resolve(child, depth + 1)
    }
}

impl<'a> Image<'a> {
    /// The layers' descriptors, base first.
    pub fn layers(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        self.layers.items().map(|(_, d)| d)
    }

    pub fn layer_count(&self) -> usize {
        self.layers.items().count()
    }
}
