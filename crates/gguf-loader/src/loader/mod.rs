//! The loader: owns the memory maps of a model's file or split shards and
//! hands out zero-copy views of its metadata and tensor bytes.

mod load;
mod split;

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use self_cell::self_cell;

use crate::error::{Error, Result};
use crate::format::{Endianness, GgufFile, Metadata, TensorInfo};

/// The bytes behind one file: a read-only mapping, or nothing for an empty file
/// (which cannot be mapped, and fails to parse anyway).
struct Backing {
    path: PathBuf,
    map: Option<Mmap>,
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

self_cell!(
    /// One mapped file with its parsed header borrowing the mapping.
    struct MappedFile {
        owner: Backing,
        #[covariant]
        dependent: GgufFile,
    }
);

impl MappedFile {
    fn open(path: &Path) -> Result<MappedFile> {
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the mapping is read-only and private to this process. The
            // remaining hazard is another process truncating or rewriting the
            // file while it is mapped: reads past a truncation raise SIGBUS and
            // rewrites show through. That is inherent to mmap (llama.cpp,
            // safetensors and candle share it); callers who cannot rule it out
            // should use the `read` load mode, which copies the bytes.
            Some(unsafe { Mmap::map(&file) }.map_err(io_err)?)
        };
        let backing = Backing {
            path: path.to_path_buf(),
            map,
        };
        MappedFile::try_new(backing, |b| GgufFile::parse(b.bytes())).map_err(|source| {
            Error::Format {
                path: path.to_path_buf(),
                source: Box::new(source),
            }
        })
    }

    fn file(&self) -> &GgufFile<'_> {
        self.borrow_dependent()
    }

    fn path(&self) -> &Path {
        &self.borrow_owner().path
    }
}

/// A GGUF model opened through a memory map: one file, or every shard of a
/// split model presented as one.
///
/// ```no_run
/// use gguf_loader::MmapGGUFLoader;
/// let loader = MmapGGUFLoader::new("model.gguf")?;
/// let bytes: &[u8] = loader.get_tensor_data("blk.0.attn_q.weight")?;
/// println!("{} tensors, version {}", loader.tensor_names().len(), loader.version());
/// # Ok::<(), gguf_loader::Error>(())
/// ```
pub struct MmapGGUFLoader {
    shards: Vec<MappedFile>,
}

impl MmapGGUFLoader {
    /// Maps, parses and validates the file. A shard of a split model
    /// (`name-00001-of-00003.gguf` with `split.count` > 1) opens every shard.
    pub fn new(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let first = MappedFile::open(path)?;
        let shards = match split::split_count(first.file(), path)? {
            None => vec![first],
            Some(count) => split::open_shards(first, path, count)?,
        };
        Ok(MmapGGUFLoader { shards })
    }

    /// The parsed first (or only) file.
    pub fn file(&self) -> &GgufFile<'_> {
        self.shards[0].file()
    }

    /// Paths of the mapped files, in shard order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.shards.iter().map(|s| s.path())
    }

    /// The parsed shards in order (one for an unsplit model).
    pub fn shards(&self) -> impl Iterator<Item = &GgufFile<'_>> {
        self.shards.iter().map(|s| s.file())
    }

    pub fn version(&self) -> u32 {
        self.file().version
    }

    pub fn endianness(&self) -> Endianness {
        self.file().endianness
    }

    /// Metadata of the first file (the one that describes a split model).
    pub fn metadata(&self) -> &Metadata<'_> {
        &self.file().metadata
    }

    /// Tensor infos of every shard, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorInfo<'_>> {
        self.shards.iter().flat_map(|s| s.file().tensors())
    }

    /// Every tensor name, in file order.
    pub fn tensor_names(&self) -> Vec<&str> {
        self.tensors().map(|t| t.name).collect()
    }

    pub fn tensor_count(&self) -> usize {
        self.shards.iter().map(|s| s.file().tensors().len()).sum()
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo<'_>> {
        self.shards.iter().find_map(|s| s.file().tensor(name))
    }

    /// The tensor's bytes: a slice of the mapping, the same on every call.
    pub fn get_tensor_data(&self, name: &str) -> Result<&[u8]> {
        self.shards
            .iter()
            .find_map(|s| {
                let f = s.file();
                f.tensor(name).map(|t| f.tensor_data(t))
            })
            .ok_or_else(|| Error::TensorNotFound(name.to_string()))
    }

    /// The path of the file that holds `name`.
    pub fn tensor_path(&self, name: &str) -> Option<&Path> {
        self.shards
            .iter()
            .find(|s| s.file().tensor(name).is_some())
            .map(|s| s.path())
    }
}

impl std::fmt::Debug for MmapGGUFLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmapGGUFLoader")
            .field("paths", &self.paths().collect::<Vec<_>>())
            .field("version", &self.version())
            .field("tensors", &self.tensor_count())
            .finish()
    }
}
