//! A KV cache as a GGUF file: its positions' keys and values, the tokens
//! that made them and its layout, so that another process (or a later run)
//! goes on from them: a long prompt's common prefix computed once, as
//! llama.cpp's `--prompt-cache` and state files do.
//!
//! The file is a GGUF of its own (`general.type` `kv_cache`): per layer
//! `cache.k.{il}` and `cache.v.{il}`, f16 of `[kv_dim, rows]` (the filled
//! positions; for a sliding-window layer's ring, the last positions
//! written that it keeps), and the `kv_cache.*` keys. Reading it back is as hostile input as any GGUF: every value is
//! checked against this model before a byte is copied.

use std::borrow::Cow;

use gguf_loader::{f16, Endianness, GgmlType, GgufFile, GgufWriter, MetaValue, Value, ValueType};

use super::{check_rings, Arch, ForwardError, KvCache, Transformer, WeightElement};

/// `general.type` of a KV cache file.
const CACHE_TYPE: &str = "kv_cache";

/// The layout's version: a file of another is refused.
const VERSION: u32 = 1;

/// The architecture's name as GGUF writes it.
fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::Llama => "llama",
        Arch::Gemma3 => "gemma3",
    }
}

/// A malformed or foreign cache file, saying why.
fn bad(why: impl Into<String>) -> ForwardError {
    ForwardError::BadCache(why.into())
}

impl<T: WeightElement> Transformer<T> {
    /// `cache` (made by this model) as a GGUF file, to write with
    /// [`GgufWriter::write_to`] (which borrows the cache's memory, copying
    /// nothing): its filled positions' keys and values (of a sliding-window
    /// layer's ring, the positions it keeps), its [`tokens`](KvCache::tokens), capacity and
    /// layout. [`Transformer::cache_from_gguf`] reads it back, for this
    /// model or another of the same architecture and widths.
    /// [`ForwardError::CacheMismatch`] where the cache was made for a model
    /// of other widths.
    pub fn cache_to_gguf<'c>(&self, cache: &'c KvCache) -> Result<GgufWriter<'c>, ForwardError> {
        let c = &self.config;
        let expected = (c.n_head_kv * c.head_dim, c.n_layer);
        if (cache.kv_dim, cache.k.len()) != expected {
            return Err(ForwardError::CacheMismatch {
                expected,
                found: (cache.kv_dim, cache.k.len()),
            });
        }
        cache.check_layout(c)?;
        let u64_of = |n: usize| MetaValue::U64(n as u64);
        let mut w = GgufWriter::new();
        w.add("general.type", MetaValue::String(CACHE_TYPE.into()));
        w.add("kv_cache.version", MetaValue::U32(VERSION));
        w.add(
            "kv_cache.architecture",
            MetaValue::String(arch_name(c.arch).into()),
        );
        w.add("kv_cache.n_vocab", u64_of(c.n_vocab));
        w.add("kv_cache.kv_dim", u64_of(cache.kv_dim));
        w.add("kv_cache.capacity", u64_of(cache.capacity));
        w.add("kv_cache.length", u64_of(cache.len));
        w.add("kv_cache.written", u64_of(cache.written));
        w.add("kv_cache.chunk", u64_of(cache.chunk));
        w.add(
            "kv_cache.rings",
            MetaValue::Array(
                ValueType::U64,
                cache.rings.iter().map(|r| u64_of(r.unwrap_or(0))).collect(),
            ),
        );
        w.add(
            "kv_cache.tokens",
            MetaValue::Array(
                ValueType::U32,
                cache.tokens.iter().map(|&t| MetaValue::U32(t)).collect(),
            ),
        );
        let io = |e: std::io::Error| bad(e.to_string());
        for (il, (k, v)) in cache.k.iter().zip(&cache.v).enumerate() {
            let rows = saved_rows(cache.rings[il], cache.len, cache.written);
            let dims = [cache.kv_dim as u64, rows.len() as u64];
            for (name, layer) in [("k", k), ("v", v)] {
                let data = &layer[rows.start * cache.kv_dim..rows.end * cache.kv_dim];
                w.add_tensor(
                    format!("cache.{name}.{il}"),
                    &dims,
                    GgmlType::F16,
                    le_bytes(data),
                )
                .map_err(io)?;
            }
        }
        Ok(w)
    }

    /// The KV cache a file of [`Transformer::cache_to_gguf`] holds (its
    /// bytes), for this model: the same positions, tokens, capacity and
    /// layout, so that the next [`Transformer::forward`] goes on from it.
    /// [`ForwardError::BadCache`] where `bytes` are no such file (or a
    /// malformed one: every count, size and token is checked), and
    /// [`ForwardError::CacheMismatch`] where it was made by a model of
    /// other widths or another architecture. A cache holds positions, not
    /// a model's identity: one saved by a model of the same shape is taken.
    pub fn cache_from_gguf(&self, bytes: &[u8]) -> Result<KvCache, ForwardError> {
        let c = &self.config;
        let file = GgufFile::parse(bytes).map_err(|e| bad(e.to_string()))?;
        if file.endianness != Endianness::Little {
            return Err(bad("a big-endian file (a saved cache is little-endian)"));
        }
        let md = &file.metadata;
        let kind = md.get("general.type").and_then(|v| v.as_str());
        if kind.map(|s| s.as_bytes()) != Some(CACHE_TYPE.as_bytes()) {
            return Err(bad(
                "not a KV cache file (its general.type is not \"kv_cache\")",
            ));
        }
        let uint = |key: &str| -> Result<usize, ForwardError> {
            let v = md
                .get(key)
                .ok_or_else(|| bad(format!("{key} is missing")))?;
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| bad(format!("{key} is not a count")))
        };
        let version = uint("kv_cache.version")?;
        if version != VERSION as usize {
            return Err(bad(format!(
                "kv_cache.version is {version}; this build reads version {VERSION}"
            )));
        }
        let arch = md
            .get("kv_cache.architecture")
            .and_then(|v| v.as_str())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kv_dim = uint("kv_cache.kv_dim")?;
        let rings_value = md
            .get("kv_cache.rings")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("kv_cache.rings is not an array"))?;
        let layers = usize::try_from(rings_value.len()).unwrap_or(usize::MAX);
        let expected = (c.n_head_kv * c.head_dim, c.n_layer);
        if (kv_dim, layers) != expected {
            return Err(ForwardError::CacheMismatch {
                expected,
                found: (kv_dim, layers),
            });
        }
        if arch != arch_name(c.arch) || uint("kv_cache.n_vocab")? != c.n_vocab {
            return Err(bad(format!(
                "it was saved by a {arch:?} model of {} tokens, this is a {:?} one of {}",
                uint("kv_cache.n_vocab").unwrap_or(0),
                arch_name(c.arch),
                c.n_vocab
            )));
        }
        let capacity = uint("kv_cache.capacity")?;
        let len = uint("kv_cache.length")?;
        let written = uint("kv_cache.written")?;
        let chunk = uint("kv_cache.chunk")?;
        if len > written || written > capacity {
            return Err(bad(format!(
                "{len} positions filled, {written} written, of a capacity of {capacity}"
            )));
        }
        let rings: Vec<Option<usize>> = rings_value
            .iter()
            .map(|r| match r.as_u64().and_then(|r| usize::try_from(r).ok()) {
                Some(0) => Ok(None),
                Some(r) => Ok(Some(r)),
                None => Err(bad("kv_cache.rings holds a value that is not a count")),
            })
            .collect::<Result<_, _>>()?;
        // The layout this model gives a cache of that capacity and chunk.
        let sliding = check_rings(c, &rings, chunk, capacity)?;
        let tokens_value = md
            .get("kv_cache.tokens")
            .and_then(Value::as_array)
            .filter(|a| a.elem_type() == ValueType::U32 && a.len() == len as u64)
            .ok_or_else(|| bad(format!("kv_cache.tokens is not an array of {len} uint32")))?;
        let n_tensors = file.tensors().len();
        if n_tensors != 2 * layers {
            return Err(bad(format!(
                "{n_tensors} tensors, not the {} of {layers} layers' keys and values",
                2 * layers
            )));
        }
        // Checked, then allocated (the allocation is fallible).
        let mut cache = self.new_cache_with(capacity, sliding)?;
        cache.tokens.clear();
        for t in tokens_value.iter() {
            match t.as_u64() {
                Some(t) if t < c.n_vocab as u64 => cache.tokens.push(t as u32),
                _ => return Err(bad(format!("kv_cache.tokens holds {t:?}, not a token id"))),
            }
        }
        for (il, ring) in rings.iter().enumerate() {
            let rows = saved_rows(*ring, len, written);
            for (name, layer) in [("k", &mut cache.k[il]), ("v", &mut cache.v[il])] {
                let want = format!("cache.{name}.{il}");
                let info = file
                    .tensors()
                    .iter()
                    .find(|t| t.name == want.as_str())
                    .ok_or_else(|| bad(format!("tensor '{want}' is missing")))?;
                let n = rows.len();
                if info.ty != GgmlType::F16 || info.ne() != [kv_dim as u64, n as u64] {
                    return Err(bad(format!(
                        "tensor '{want}' is {} {:?}, not F16 [{kv_dim}, {n}]",
                        info.ty,
                        info.ne()
                    )));
                }
                let data = file
                    .tensor_data(info)
                    .ok_or_else(|| bad(format!("tensor '{want}' lies past the file's end")))?;
                let values = &mut layer[rows.start * kv_dim..rows.end * kv_dim];
                for (v, b) in values.iter_mut().zip(data.chunks_exact(2)) {
                    *v = f16::from_bits(u16::from_le_bytes([b[0], b[1]]));
                }
                // A ring's positions are at two rows each: the other copy.
                if let Some(r) = *ring {
                    for row in rows.clone() {
                        let twin = if row < r { row + r } else { row - r };
                        layer.copy_within(row * kv_dim..(row + 1) * kv_dim, twin * kv_dim);
                    }
                }
            }
        }
        cache.len = len;
        cache.written = written;
        Ok(cache)
    }
}

/// The rows of a layer's buffers its file tensor holds: the filled
/// positions' (`0..len`); in a ring (position `p` at rows `p % r` and
/// `p % r + r`), those of the last `r` positions written, in order, which
/// lie together from the first one's first row (what a step may still
/// read: [`KvCache::begin_step`] refuses to reach further back).
fn saved_rows(ring: Option<usize>, len: usize, written: usize) -> std::ops::Range<usize> {
    match ring {
        None => 0..len,
        Some(r) => {
            let first = written.saturating_sub(r);
            let start = first % r;
            start..start + (written - first)
        }
    }
}

/// f16 values as a GGUF holds them (little-endian): borrowed where this
/// machine is little-endian.
fn le_bytes(values: &[f16]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        Cow::Borrowed(bytemuck::cast_slice(values))
    } else {
        Cow::Owned(
            values
                .iter()
                .flat_map(|v| v.to_bits().to_le_bytes())
                .collect(),
        )
    }
}
