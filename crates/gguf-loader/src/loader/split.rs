//! Split models (`gguf-split`): shards named `PREFIX-00001-of-00003.gguf`
//! whose first file carries `split.count`, each `split.no`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use super::{LoadMode, MappedFile};
use crate::error::{Error, Result};
use crate::format::{Escaped, GgufFile, ARCHITECTURE_KEY};

pub const KEY_SPLIT_NO: &str = "split.no";
pub const KEY_SPLIT_COUNT: &str = "split.count";
pub const KEY_SPLIT_TENSORS_COUNT: &str = "split.tensors.count";

fn split_err(path: &Path, message: String) -> Error {
    Error::Split {
        path: path.to_path_buf(),
        message,
    }
}

/// `Some(count)` when the file is one shard of a split model of several.
pub(super) fn split_count(file: &GgufFile<'_>, path: &Path) -> Result<Option<u64>> {
    let Some(v) = file.metadata.get(KEY_SPLIT_COUNT) else {
        return Ok(None);
    };
    let count = v
        .as_u64()
        .ok_or_else(|| split_err(path, format!("{KEY_SPLIT_COUNT} is {}", shown(Some(v)))))?;
    if count > 1 {
        return Ok(Some(count));
    }
    // One file, by its count (as llama.cpp takes it): but a name or a
    // tensor count that says otherwise is one shard of several, which
    // would otherwise open as a whole model short of most of its tensors.
    if let Some((_, _, named)) = shard_prefix(path).filter(|&(_, _, m)| m > 1) {
        return Err(split_err(
            path,
            format!("{KEY_SPLIT_COUNT} is {count} but the name says -of-{named:05}"),
        ));
    }
    let held = file.tensors().len();
    check_tensor_count(file, path, held, || {
        format!("the file holds {held} tensors ({KEY_SPLIT_COUNT} {count}: one file)")
    })?;
    Ok(None)
}

/// Fails unless `split.tensors.count`, where `file` has it, is `held`;
/// `holds` says what holds them ("the shards hold 12 tensors").
fn check_tensor_count(
    file: &GgufFile<'_>,
    path: &Path,
    held: usize,
    holds: impl FnOnce() -> String,
) -> Result<()> {
    match file.metadata.get(KEY_SPLIT_TENSORS_COUNT) {
        Some(v) if v.as_u64() != Some(held as u64) => Err(split_err(
            path,
            format!(
                "{KEY_SPLIT_TENSORS_COUNT} is {} but {}",
                shown(Some(v)),
                holds()
            ),
        )),
        _ => Ok(()),
    }
}

/// `(prefix, n, m)` for `PREFIX-0000n-of-0000m.gguf`; the prefix may be
/// any bytes the file system takes.
fn shard_prefix(path: &Path) -> Option<(OsString, u64, u64)> {
    let name = path.file_name()?;
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name);
    #[cfg(not(unix))]
    let bytes = name.to_str()?.as_bytes();
    let stem = bytes.strip_suffix(b".gguf")?;
    let of = stem.windows(4).rposition(|w| w == b"-of-")?;
    let (rest, count) = (&stem[..of], &stem[of + 4..]);
    let dash = rest.iter().rposition(|&b| b == b'-')?;
    let (prefix, no) = (&rest[..dash], &rest[dash + 1..]);
    let number = |d: &[u8]| std::str::from_utf8(d).ok()?.parse::<u64>().ok();
    #[cfg(unix)]
    let prefix = <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(prefix).to_os_string();
    #[cfg(not(unix))]
    let prefix = OsString::from(std::str::from_utf8(prefix).ok()?);
    Some((prefix, number(no)?, number(count)?))
}

/// A split key's value for a message: the number, `missing`, or what it is
/// instead (`a string`).
fn shown(v: Option<&crate::format::Value<'_>>) -> String {
    match v {
        None => "missing".into(),
        Some(v) => match (v.as_u64(), v.as_i64()) {
            (Some(n), _) => n.to_string(),
            (None, Some(n)) => n.to_string(),
            _ => format!("a {}", v.value_type()),
        },
    }
}

/// The path of shard `no` (1-based) of `count`, as llama.cpp names them.
pub fn shard_path(dir: &Path, prefix: &OsStr, no: u64, count: u64) -> PathBuf {
    let mut name = prefix.to_os_string();
    name.push(format!("-{no:05}-of-{count:05}.gguf"));
    dir.join(name)
}

fn architecture<'f>(f: &GgufFile<'f>) -> Option<crate::format::GgufStr<'f>> {
    f.metadata.get(ARCHITECTURE_KEY).and_then(|v| v.as_str())
}

/// Fails unless `shard` was written like `first`: same version, byte order
/// and alignment, and no other architecture (a shard of another model).
fn check_agrees(first: &MappedFile, shard: &MappedFile) -> Result<()> {
    let (a, b) = (first.file(), shard.file());
    let differs = |what: &str, x: &dyn std::fmt::Display, y: &dyn std::fmt::Display| {
        Err(split_err(
            shard.path(),
            format!(
                "{what} is {y} but {} has {x}: shards of one model agree",
                first.path().display()
            ),
        ))
    };
    if a.version != b.version {
        return differs("GGUF version", &a.version, &b.version);
    }
    if a.endianness != b.endianness {
        return differs("byte order", &a.endianness.name(), &b.endianness.name());
    }
    if a.alignment != b.alignment {
        return differs("alignment", &a.alignment, &b.alignment);
    }
    let (ours, theirs) = (architecture(a), architecture(b));
    if let Some(theirs) = theirs {
        if ours != Some(theirs) {
            let quoted =
                |s: crate::format::GgufStr<'_>| format!("'{}'", Escaped(&s.to_string_lossy()));
            let ours = ours.map_or("none".to_string(), quoted);
            return differs(ARCHITECTURE_KEY, &ours, &quoted(theirs));
        }
    }
    Ok(())
}

/// The shard of every tensor of a split model, by name.
pub(super) type ShardIndex = HashMap<Box<str>, usize>;

/// Every shard of a split model, in order, checked to belong together, with
/// the shard of each tensor by name.
pub(super) fn open_shards(
    first: MappedFile,
    path: &Path,
    count: u64,
    mode: LoadMode,
) -> Result<(Vec<MappedFile>, ShardIndex)> {
    let (prefix, opened_no, named_count) = shard_prefix(path).ok_or_else(|| {
        split_err(
            path,
            format!("{KEY_SPLIT_COUNT} is {count} but the name is not PREFIX-NNNNN-of-MMMMM.gguf"),
        )
    })?;
    if named_count != count {
        // The other shards' names would not be this one's (llama.cpp
        // refuses it too): another model's shards could be taken.
        return Err(split_err(
            path,
            format!("{KEY_SPLIT_COUNT} is {count} but the name says -of-{named_count:05}"),
        ));
    }
    if count > 99_999 {
        return Err(split_err(
            path,
            format!("{KEY_SPLIT_COUNT} {count} is too large"),
        ));
    }
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut first = Some(first);
    let mut shards = Vec::with_capacity(count as usize);
    for no in 1..=count {
        let p = shard_path(dir, &prefix, no, count);
        let shard = if no == opened_no {
            first
                .take()
                .ok_or_else(|| split_err(path, "shard opened twice".into()))?
        } else {
            if !p.exists() {
                return Err(Error::MissingShard {
                    path: p,
                    no,
                    count,
                    opened: path.to_path_buf(),
                });
            }
            MappedFile::open(&p, mode)?
        };
        let meta = &shard.file().metadata;
        let got_no = meta.get(KEY_SPLIT_NO);
        if got_no.and_then(|v| v.as_u64()) != Some(no - 1) {
            return Err(split_err(
                &p,
                format!("{KEY_SPLIT_NO} is {}, expected {}", shown(got_no), no - 1),
            ));
        }
        let got_count = meta.get(KEY_SPLIT_COUNT);
        if got_count.and_then(|v| v.as_u64()) != Some(count) {
            return Err(split_err(
                &p,
                format!(
                    "{KEY_SPLIT_COUNT} is {}, expected {count}",
                    shown(got_count)
                ),
            ));
        }
        shards.push(shard);
    }
    if first.is_some() {
        return Err(split_err(
            path,
            format!("shard number {opened_no} is not in 1..={count}"),
        ));
    }

    for s in &shards[1..] {
        check_agrees(&shards[0], s)?;
    }
    let mut names = HashMap::new();
    for (i, s) in shards.iter().enumerate() {
        for t in s.file().tensors() {
            if names.insert(Box::from(t.name), i).is_some() {
                return Err(split_err(
                    s.path(),
                    format!(
                        "tensor '{}' appears in more than one shard",
                        Escaped(t.name)
                    ),
                ));
            }
        }
    }
    check_tensor_count(shards[0].file(), shards[0].path(), names.len(), || {
        format!("the shards hold {} tensors", names.len())
    })?;
    Ok((shards, names))
}
