//! The loader: owns the memory maps of a model's file or split shards and
//! hands out zero-copy views of its metadata and tensor bytes.

mod split;

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use self_cell::self_cell;

use crate::error::{Error, Result};
use std::borrow::Cow;
use std::os::unix::fs::FileExt;

use crate::format::{Endianness, FormatError, FormatErrorKind, GgufFile, Metadata, TensorInfo};

/// How tensor bytes are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadMode {
    /// A read-only memory map of the whole file (zero-copy; the default).
    #[default]
    Mmap,
    /// The header is read into memory and tensor data with positioned reads
    /// (`pread`), for network filesystems where mmap is slow and for files
    /// that may change while open: a truncated file gives an I/O error, never
    /// SIGBUS.
    Read,
}

/// The bytes behind one file.
enum Source {
    Map(Mmap),
    /// Read mode: the header bytes, and the file for positioned reads.
    Read {
        header: Vec<u8>,
        file: File,
    },
    /// An empty file, which cannot be mapped and fails to parse anyway.
    Empty,
}

struct Backing {
    path: PathBuf,
    source: Source,
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match &self.source {
            Source::Map(m) => m,
            Source::Read { header, .. } => header,
            Source::Empty => &[],
        }
    }
}

self_cell!(
    /// One opened file with its parsed header borrowing the bytes.
    struct MappedFile {
        owner: Backing,
        #[covariant]
        dependent: GgufFile,
    }
);

/// Bytes first read in read mode; grown ×4 until the header fits.
const FIRST_HEADER_READ: u64 = 1 << 20;

impl MappedFile {
    fn open(path: &Path, mode: LoadMode) -> Result<MappedFile> {
        let io_err = |error| Error::Io {
            path: path.to_path_buf(),
            error,
        };
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let source = if len == 0 {
            Source::Empty
        } else if mode == LoadMode::Read {
            Source::Read {
                header: read_header(&file, len).map_err(io_err)?,
                file,
            }
        } else {
            // SAFETY: the mapping is read-only and private to this process. The
            // remaining hazard is another process truncating or rewriting the
            // file while it is mapped: reads past a truncation raise SIGBUS and
            // rewrites show through. That is inherent to mmap (llama.cpp,
            // safetensors and candle share it); callers who cannot rule it out
            // should use `LoadMode::Read`, which copies the bytes.
            Source::Map(unsafe { Mmap::map(&file) }.map_err(io_err)?)
        };
        let backing = Backing {
            path: path.to_path_buf(),
            source,
        };
        MappedFile::try_new(backing, |b| GgufFile::parse_header(b.bytes(), len)).map_err(|error| {
            Error::Format {
                path: path.to_path_buf(),
                error: Box::new(error),
            }
        })
    }

    fn file(&self) -> &GgufFile<'_> {
        self.borrow_dependent()
    }

    fn path(&self) -> &Path {
        &self.borrow_owner().path
    }

    fn source(&self) -> &Source {
        &self.borrow_owner().source
    }
}

/// Reads as much of the start of the file as its header needs.
fn read_header(file: &File, len: u64) -> std::io::Result<Vec<u8>> {
    let mut n = len.min(FIRST_HEADER_READ);
    loop {
        let mut buf = vec![0u8; n as usize];
        file.read_exact_at(&mut buf, 0)?;
        let truncated = matches!(
            GgufFile::parse_header(&buf, len),
            Err(FormatError {
                kind: FormatErrorKind::Truncated { .. },
                ..
            })
        );
        if !truncated || n == len {
            return Ok(buf);
        }
        n = len.min(n.saturating_mul(4));
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
    mode: LoadMode,
}

impl MmapGGUFLoader {
    /// Maps, parses and validates the file. A shard of a split model
    /// (`name-00001-of-00003.gguf` with `split.count` > 1) opens every shard.
    pub fn new(path: impl AsRef<Path>) -> Result<Self> {
        Self::open(path, LoadMode::Mmap)
    }

    /// Opens in the given mode; see [`LoadMode`].
    pub fn open(path: impl AsRef<Path>, mode: LoadMode) -> Result<Self> {
        let path = path.as_ref();
        let first = MappedFile::open(path, mode)?;
        let shards = match split::split_count(first.file(), path)? {
            None => vec![first],
            Some(count) => split::open_shards(first, path, count, mode)?,
        };
        Ok(MmapGGUFLoader { shards, mode })
    }

    pub fn mode(&self) -> LoadMode {
        self.mode
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

    fn find(&self, name: &str) -> Result<(&MappedFile, &TensorInfo<'_>)> {
        self.shards
            .iter()
            .find_map(|s| s.file().tensor(name).map(|t| (s, t)))
            .ok_or_else(|| Error::TensorNotFound(name.to_string()))
    }

    /// The tensor's bytes: a slice of the mapping, the same on every call.
    /// In [`LoadMode::Read`] there is no mapping: use [`Self::read_tensor_data`].
    pub fn get_tensor_data(&self, name: &str) -> Result<&[u8]> {
        let (shard, t) = self.find(name)?;
        match shard.source() {
            Source::Read { .. } => Err(Error::NotMapped(name.to_string())),
            _ => Ok(shard.file().tensor_data(t)),
        }
    }

    /// The tensor's bytes in either mode: borrowed from the mapping, or read
    /// from the file into a new buffer.
    pub fn read_tensor_data(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        let (shard, t) = self.find(name)?;
        match shard.source() {
            Source::Read { file, .. } => {
                let mut buf = vec![0u8; t.n_bytes as usize];
                file.read_exact_at(&mut buf, t.file_offset)
                    .map_err(|error| Error::TensorIo {
                        path: shard.path().to_path_buf(),
                        tensor: name.to_string(),
                        offset: t.file_offset,
                        error,
                    })?;
                Ok(Cow::Owned(buf))
            }
            _ => Ok(Cow::Borrowed(shard.file().tensor_data(t))),
        }
    }

    /// Asks the kernel to read every mapped file ahead, for a whole-model
    /// load (a no-op in read mode). Advice only: errors are ignored.
    pub fn prefetch_all(&self) {
        for s in &self.shards {
            if let Source::Map(m) = s.source() {
                let _ = m.advise(memmap2::Advice::WillNeed);
            }
        }
    }

    /// Asks the kernel to read a tensor's pages ahead (mmap mode; a no-op in
    /// read mode). Advice only: errors are ignored.
    pub fn prefetch(&self, name: &str) {
        if let Ok((shard, t)) = self.find(name) {
            if let Source::Map(m) = shard.source() {
                let _ = m.advise_range(
                    memmap2::Advice::WillNeed,
                    t.file_offset as usize,
                    t.n_bytes as usize,
                );
            }
        }
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
