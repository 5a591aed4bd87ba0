//! The loader: owns the memory maps of a model's file or split shards and
//! hands out zero-copy views of its metadata and tensor bytes.

mod os;
mod split;

use std::borrow::Cow;
use std::fs::{File, FileType};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use self_cell::self_cell;

use crate::error::{Error, Result};
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
    /// The mapping (shared with the tensors that are views of it), and the
    /// file (for positioned reads into a caller's buffer, such as a GPU
    /// load's pinned staging).
    Map {
        map: Arc<Mmap>,
        #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
        file: File,
    },
    /// Read mode: the header bytes, and the file for positioned reads.
    Read { header: Vec<u8>, file: File },
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
            Source::Map { map, .. } => map,
            Source::Read { header, .. } => header,
            Source::Empty => &[],
        }
    }

    /// The header of a file of `file_len` bytes that starts with `bytes()`.
    fn parse(&self, file_len: u64) -> Result<GgufFile<'_>, FormatError> {
        GgufFile::parse_header(self.bytes(), file_len)
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

/// Bytes first read in read mode; grown ×4 (or to what the parser asks
/// for, if more) until the header fits.
const FIRST_HEADER_READ: u64 = 1 << 20;

/// Opens a regular file for reading and returns it with its length;
/// anything else is refused with [`Error::NotAFile`] before a byte is read.
/// On Unix the open does not block (`O_NONBLOCK`), so a FIFO with no
/// writer is refused too, even one swapped in for the path after a check;
/// the type comes from the opened file (`fstat`), not from the path.
fn open_regular(path: &Path) -> Result<(File, u64)> {
    let io_err = |error| Error::Io {
        path: path.to_path_buf(),
        error,
    };
    let not_a_file = |t: FileType| Error::NotAFile {
        path: path.to_path_buf(),
        what: os::describe(t),
    };
    let file = match os::open_for_reading(path) {
        Ok(f) => f,
        // A socket cannot be opened at all (ENXIO): say what it is.
        Err(e) => {
            return Err(match std::fs::metadata(path) {
                Ok(m) if !m.is_file() => not_a_file(m.file_type()),
                _ => io_err(e),
            })
        }
    };
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(not_a_file(meta.file_type()));
    }
    Ok((file, meta.len()))
}

/// Extends `buf` with the file's bytes up to `n` (a fallible allocation: a
/// header that asks for more memory than there is gives an error).
fn read_more(file: &File, buf: &mut Vec<u8>, n: u64) -> io::Result<()> {
    let old = buf.len();
    let n = usize::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    if n <= old {
        return Ok(());
    }
    buf.try_reserve_exact(n - old).map_err(|_| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("cannot allocate {n} bytes for the header"),
        )
    })?;
    buf.resize(n, 0);
    os::read_exact_at(file, &mut buf[old..], old as u64)
}

/// How much of the file a read-mode parse that failed with `error` on the
/// first `have` bytes needs, if more of the file would help: `None` when
/// the error stands (it is what a parse of the whole file gives).
fn header_wants(error: &FormatError, have: u64, file_len: u64) -> Option<u64> {
    let FormatErrorKind::Truncated { needed, .. } = error.kind else {
        return None;
    };
    let end = error.offset.checked_add(needed)?;
    (have < file_len && end <= file_len).then(|| end.max(have.saturating_mul(4)).min(file_len))
}

impl MappedFile {
    fn open(path: &Path, mode: LoadMode) -> Result<MappedFile> {
        let io_err = |error| Error::Io {
            path: path.to_path_buf(),
            error,
        };
        let format_err = |error| Error::Format {
            path: path.to_path_buf(),
            error: Box::new(error),
        };
        let (file, len) = open_regular(path)?;
        let backing = |source| Backing {
            path: path.to_path_buf(),
            source,
        };
        if len == 0 {
            return MappedFile::try_new(backing(Source::Empty), |b| b.parse(len))
                .map_err(format_err);
        }
        if mode == LoadMode::Mmap {
            // SAFETY: the mapping is read-only and private to this process. The
            // remaining hazard is another process truncating or rewriting the
            // file while it is mapped: reads past a truncation raise SIGBUS and
            // rewrites show through. That is inherent to mmap (llama.cpp,
            // safetensors and candle share it); callers who cannot rule it out
            // should use `LoadMode::Read`, which copies the bytes.
            let map = unsafe { Mmap::map(&file) }.map_err(io_err)?;
            let map = Arc::new(map);
            return MappedFile::try_new(backing(Source::Map { map, file }), |b| b.parse(len))
                .map_err(format_err);
        }

        // Read mode: read the start of the file, more while the parser asks
        // for bytes the file has, then keep only the header.
        let mut header = Vec::new();
        let mut want = len.min(FIRST_HEADER_READ);
        let mut file = file;
        loop {
            read_more(&file, &mut header, want).map_err(io_err)?;
            let b = backing(Source::Read { header, file });
            let (b, error) = match MappedFile::try_new_or_recover(b, |b| b.parse(len)) {
                Ok(parsed) => return shrink_header(parsed, len).map_err(format_err),
                Err(failed) => failed,
            };
            let Source::Read { header: h, file: f } = b.source else {
                return Err(format_err(error));
            };
            match header_wants(&error, h.len() as u64, len) {
                Some(n) => (header, file, want) = (h, f, n),
                None => return Err(format_err(error)),
            }
        }
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

/// A read-mode file with its header buffer cut to the header's length (a
/// shard with a small header and a large first read would keep the whole
/// read otherwise), parsed again when it was cut.
fn shrink_header(parsed: MappedFile, file_len: u64) -> Result<MappedFile, FormatError> {
    let header_len = parsed.file().header_len();
    if header_len >= parsed.borrow_owner().bytes().len() as u64 {
        return Ok(parsed);
    }
    let mut backing = parsed.into_owner();
    if let Source::Read { header, .. } = &mut backing.source {
        // header_len < header.len(), so it fits usize.
        header.truncate(header_len as usize);
        header.shrink_to_fit();
    }
    MappedFile::try_new(backing, |b| b.parse(file_len))
}

/// A tensor with the shard that holds it: how its bytes are reached and in
/// which byte order they are.
#[derive(Clone, Copy)]
pub(crate) struct Located<'l> {
    shard: &'l MappedFile,
    pub info: &'l TensorInfo<'l>,
}

impl<'l> Located<'l> {
    /// The file that holds the tensor.
    pub fn path(&self) -> &'l Path {
        self.shard.path()
    }

    /// The byte order of the tensor's file.
    pub fn endianness(&self) -> Endianness {
        self.shard.file().endianness
    }

    /// The tensor's bytes in the mapping; `None` in read mode.
    pub fn mapped(&self) -> Option<&'l [u8]> {
        match self.shard.source() {
            Source::Read { .. } => None,
            _ => Some(self.shard.file().own_tensor_data(self.info)),
        }
    }

    /// The tensor's bytes as a byte range of its file's mapping, with the
    /// mapping itself (which a view of it keeps alive); `None` in read mode.
    pub fn mapping(&self) -> Option<(Arc<Mmap>, Range<usize>)> {
        let Source::Map { map, .. } = self.shard.source() else {
            return None;
        };
        let range = self.info.file_range();
        (range.end <= map.len()).then(|| (Arc::clone(map), range))
    }

    /// Reads in and maps bytes `range` of the tensor's data (a range inside
    /// `0..n_bytes`), so that reading them through the mapping waits for no
    /// disk and takes no page fault; a no-op in read mode.
    pub fn populate(&self, range: Range<u64>) {
        if let Source::Map { map, .. } = self.shard.source() {
            let start = self.info.file_offset.saturating_add(range.start);
            let len = range.end.saturating_sub(range.start);
            if let (Ok(start), Ok(len)) = (usize::try_from(start), usize::try_from(len)) {
                os::populate(map, start, len);
            }
        }
    }

    /// Bytes `range` of the tensor's data (a range inside `0..n_bytes`):
    /// borrowed from the mapping, or read from the file into a new buffer
    /// (a fallible allocation: [`Error::OutOfMemory`] names the tensor).
    pub fn read(&self, range: Range<u64>) -> Result<Cow<'l, [u8]>> {
        let name = self.info.name;
        let Source::Read { file, .. } = self.shard.source() else {
            let data = self.shard.file().own_tensor_data(self.info);
            let r = usize::try_from(range.start).unwrap_or(usize::MAX)
                ..usize::try_from(range.end).unwrap_or(usize::MAX);
            return Ok(Cow::Borrowed(data.get(r).unwrap_or_default()));
        };
        let len = range.end.saturating_sub(range.start);
        let oom = || Error::OutOfMemory {
            tensor: name.to_string(),
            bytes: len,
        };
        let mut buf = Vec::new();
        buf.try_reserve_exact(usize::try_from(len).map_err(|_| oom())?)
            .map_err(|_| oom())?;
        buf.resize(len as usize, 0);
        let offset = self.info.file_offset + range.start;
        os::read_exact_at(file, &mut buf, offset).map_err(|error| Error::TensorIo {
            path: self.path().to_path_buf(),
            tensor: name.to_string(),
            offset,
            error,
        })?;
        Ok(Cow::Owned(buf))
    }

    /// Reads bytes `start..start + dst.len()` of the tensor's data into
    /// `dst` with positioned reads of the file, in either mode (a GPU
    /// load's staging: no page of the mapping is touched).
    #[cfg(feature = "cuda")]
    pub fn read_into(&self, start: u64, dst: &mut [u8]) -> Result<()> {
        let offset = self.info.file_offset + start;
        let io = |error| Error::TensorIo {
            path: self.path().to_path_buf(),
            tensor: self.info.name.to_string(),
            offset,
            error,
        };
        match self.shard.source() {
            Source::Read { file, .. } | Source::Map { file, .. } => {
                os::read_exact_at(file, dst, offset).map_err(io)
            }
            Source::Empty => Err(io(std::io::ErrorKind::UnexpectedEof.into())),
        }
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
///
/// # Files that change while mapped
///
/// In [`LoadMode::Mmap`] (the default) the bytes handed out — tensor data,
/// and the `&str` keys, names and strings of the metadata — are the file's
/// own pages. If another process truncates the file while it is mapped,
/// touching a page past the new end raises SIGBUS and kills the process; if
/// it rewrites the file in place, the new bytes show through, so a `&str`
/// already checked as UTF-8 could hold other bytes, which Rust's `str`
/// forbids. Every mmap-based reader (llama.cpp, safetensors, candle) shares
/// this. For files others may write, open with [`LoadMode::Read`]: the
/// header is copied into memory, so every `&str` stays as checked, and
/// tensor data is read with `pread`, so a change can alter values or fail a
/// read ([`Error::TensorIo`]) but never memory safety.
pub struct MmapGGUFLoader {
    shards: Vec<MappedFile>,
    /// For a split model, the shard of every tensor by name (built once, so
    /// that a lookup does not scan the shards); empty for one file, whose
    /// own index answers.
    index: split::ShardIndex,
    mode: LoadMode,
}

impl MmapGGUFLoader {
    /// Maps, parses and validates the file. A shard of a split model
    /// (`name-00001-of-00003.gguf` with `split.count` > 1) opens every shard.
    ///
    /// Errs with [`Error::NotAFile`] for a directory, FIFO, socket or device,
    /// [`Error::Io`] when the file cannot be opened or mapped,
    /// [`Error::Format`] when it is not a valid GGUF file,
    /// [`Error::MissingShard`] when a shard of a split model is not there,
    /// and [`Error::Split`] when a shard does not belong.
    pub fn new(path: impl AsRef<Path>) -> Result<Self> {
        Self::open(path, LoadMode::Mmap)
    }

    /// Opens in the given mode; see [`LoadMode`]. Errs as [`Self::new`]
    /// does; in read mode the header is read whatever its size, and the
    /// result (or the error) is the same as mapped.
    pub fn open(path: impl AsRef<Path>, mode: LoadMode) -> Result<Self> {
        let path = path.as_ref();
        let first = MappedFile::open(path, mode)?;
        let (shards, index) = match split::split_count(first.file(), path)? {
            None => (vec![first], split::ShardIndex::new()),
            Some(count) => split::open_shards(first, path, count, mode)?,
        };
        Ok(MmapGGUFLoader {
            shards,
            index,
            mode,
        })
    }

    /// The mode the loader was opened in.
    pub fn mode(&self) -> LoadMode {
        self.mode
    }

    /// The parsed first (or only) file. Of a split model, it holds the first
    /// shard's tensors only: [`Self::tensor_info`] and
    /// [`Self::get_tensor_data`] cover every shard.
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

    /// The GGUF version (every shard of a split model has the same).
    pub fn version(&self) -> u32 {
        self.file().version
    }

    /// The byte order (every shard of a split model has the same).
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

    /// Number of tensors in all shards.
    pub fn tensor_count(&self) -> usize {
        self.shards.iter().map(|s| s.file().tensors().len()).sum()
    }

    /// The tensor's info, or `None` when no tensor has this name.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo<'_>> {
        self.locate(name).ok().map(|l| l.info)
    }

    /// Every tensor with its shard, in file order.
    pub(crate) fn located(&self) -> impl Iterator<Item = Located<'_>> {
        self.shards.iter().flat_map(|shard| {
            shard
                .file()
                .tensors()
                .iter()
                .map(move |info| Located { shard, info })
        })
    }

    /// The tensor named `name` with its shard, or [`Error::TensorNotFound`].
    pub(crate) fn locate(&self, name: &str) -> Result<Located<'_>> {
        let shard = match self.shards.as_slice() {
            [only] => Some(only),
            shards => self.index.get(name).and_then(|i| shards.get(*i)),
        };
        shard
            .and_then(|shard| {
                let info = shard.file().tensor(name)?;
                Some(Located { shard, info })
            })
            .ok_or_else(|| Error::TensorNotFound(name.to_string()))
    }

    /// The tensor's bytes: a slice of the mapping, the same on every call.
    /// Errs with [`Error::TensorNotFound`], or in [`LoadMode::Read`], where
    /// there is no mapping, with [`Error::NotMapped`]: use
    /// [`Self::read_tensor_data`].
    pub fn get_tensor_data(&self, name: &str) -> Result<&[u8]> {
        self.locate(name)?
            .mapped()
            .ok_or_else(|| Error::NotMapped(name.to_string()))
    }

    /// The tensor's bytes in either mode: borrowed from the mapping, or read
    /// from the file into a new buffer. Errs with [`Error::TensorNotFound`],
    /// and in read mode with [`Error::OutOfMemory`] when the buffer cannot
    /// be allocated or [`Error::TensorIo`] when the read fails (the file
    /// shrank).
    pub fn read_tensor_data(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        let t = self.locate(name)?;
        t.read(0..t.info.n_bytes)
    }

    /// Asks the kernel to read every mapped file ahead, for a whole-model
    /// load (a no-op in read mode). Advice only: errors are ignored.
    pub fn prefetch_all(&self) {
        for s in &self.shards {
            if let Source::Map { map: m, .. } = s.source() {
                os::will_need(m, None);
            }
        }
    }

    /// Asks the kernel to read a tensor's pages ahead (mmap mode; a no-op in
    /// read mode or for an unknown name). Advice only: errors are ignored.
    pub fn prefetch(&self, name: &str) {
        if let Ok(t) = self.locate(name) {
            if let Source::Map { map: m, .. } = t.shard.source() {
                os::will_need(
                    m,
                    Some((t.info.file_offset as usize, t.info.n_bytes as usize)),
                );
            }
        }
    }

    /// The path of the file that holds `name`, or `None` when no tensor has
    /// this name.
    pub fn tensor_path(&self, name: &str) -> Option<&Path> {
        self.locate(name).ok().map(|t| t.path())
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
