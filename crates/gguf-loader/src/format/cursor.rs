//! A bounds-checked cursor over the file bytes that reads in the file's byte
//! order and length width.

use super::error::FormatErrorKind;

/// How the file encodes numbers: byte order, and whether counts and lengths
/// are u64 (v2, v3) or u32 (v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub big_endian: bool,
    pub wide_lengths: bool,
}

impl Encoding {
    /// Bytes taken by a count or length.
    pub fn len_width(self) -> u64 {
        if self.wide_lengths {
            8
        } else {
            4
        }
    }
}

/// A failure while reading: byte offset and what went wrong.
pub(crate) type Fail = (u64, FormatErrorKind);

/// Reads `buf`, the first bytes of a file of `file_len` bytes (all of it
/// unless the header is read without a mapping). A read past the end of the
/// file fails with `Truncated` counting the bytes left in the file; a read
/// that fits the file but not `buf` fails with `Truncated` counting the bytes
/// left in `buf`, and its offset plus `needed` tells the reader how much
/// more of the file to read. Count checks measure against the file, so a
/// malformed file fails alike however much of it is in `buf`.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    file_len: u64,
    pub enc: Encoding,
}

macro_rules! read_int {
    ($name:ident, $t:ty, $n:expr) => {
        #[inline]
        pub fn $name(&mut self, what: &'static str) -> Result<$t, Fail> {
            let b = self.array::<$n>(what)?;
            Ok(if self.enc.big_endian {
                <$t>::from_be_bytes(b)
            } else {
                <$t>::from_le_bytes(b)
            })
        }
    };
}

impl<'a> Cursor<'a> {
    /// A cursor over the whole of `buf`.
    pub fn new(buf: &'a [u8], pos: usize, enc: Encoding) -> Self {
        Self::over_prefix(buf, buf.len() as u64, pos, enc)
    }

    /// A cursor over `buf`, the start of a file of `file_len` bytes (at
    /// least `buf.len()`).
    pub fn over_prefix(buf: &'a [u8], file_len: u64, pos: usize, enc: Encoding) -> Self {
        Cursor {
            buf,
            pos,
            file_len: file_len.max(buf.len() as u64),
            enc,
        }
    }

    #[inline]
    pub fn pos(&self) -> u64 {
        self.pos as u64
    }

    /// Bytes left in the buffer.
    #[inline]
    pub fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    /// Bytes left in the file (at least [`Self::remaining`]).
    #[inline]
    fn file_remaining_at(&self, pos: usize) -> u64 {
        self.file_len - pos as u64
    }

    /// The bytes from `start` to the current position.
    pub fn slice_from(&self, start: u64) -> &'a [u8] {
        &self.buf[start as usize..self.pos]
    }

    /// Takes `n` bytes, or fails with `Truncated` at the current offset.
    #[inline]
    pub fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], Fail> {
        if n > self.remaining() {
            return Err(self.truncated_at(self.pos, what, n));
        }
        let start = self.pos;
        // n <= available <= usize::MAX, so the cast is lossless.
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    #[inline]
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Fail> {
        let s = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    #[inline]
    pub fn u8(&mut self, what: &'static str) -> Result<u8, Fail> {
        Ok(self.array::<1>(what)?[0])
    }

    read_int!(u16, u16, 2);
    read_int!(u32, u32, 4);
    read_int!(u64, u64, 8);

    /// Reads a count or length: u32 in v1 files, u64 later.
    #[inline]
    pub fn len(&mut self, what: &'static str) -> Result<u64, Fail> {
        if self.enc.wide_lengths {
            self.u64(what)
        } else {
            self.u32(what).map(u64::from)
        }
    }

    /// Fails with `CountTooLarge` unless `count` items of at least
    /// `min_size` bytes each can fit in what remains of the file, and with
    /// `Truncated` when they fit the file but not the buffer. Called before
    /// anything is allocated from a count.
    #[inline]
    pub fn check_count(&self, count: u64, min_size: u64, what: &'static str) -> Result<(), Fail> {
        let remaining = self.file_remaining_at(self.pos);
        match count.checked_mul(min_size) {
            Some(total) if total <= self.remaining() => Ok(()),
            Some(total) if total <= remaining => Err(self.truncated_at(self.pos, what, total)),
            _ => Err((
                self.pos(),
                FormatErrorKind::CountTooLarge {
                    what,
                    count,
                    remaining,
                },
            )),
        }
    }

    /// Skips `count` length-prefixed strings, as tightly as possible: this is
    /// the walk over tokenizer vocabularies that dominates opening a model.
    pub fn skip_strings(&mut self, count: u64) -> Result<(), Fail> {
        self.check_count(count, self.enc.len_width(), "string array length")?;
        match (self.enc.wide_lengths, self.enc.big_endian) {
            (true, false) => self.skip_strings_with::<8>(count, u64::from_le_bytes),
            (true, true) => self.skip_strings_with::<8>(count, u64::from_be_bytes),
            (false, false) => {
                self.skip_strings_with::<4>(count, |b| u64::from(u32::from_le_bytes(b)))
            }
            (false, true) => {
                self.skip_strings_with::<4>(count, |b| u64::from(u32::from_be_bytes(b)))
            }
        }
    }

    #[inline(always)]
    fn skip_strings_with<const W: usize>(
        &mut self,
        count: u64,
        decode: impl Fn([u8; W]) -> u64,
    ) -> Result<(), Fail> {
        let buf = self.buf;
        let mut pos = self.pos;
        for _ in 0..count {
            let Some(head) = buf.get(pos..pos + W) else {
                return Err(self.truncated_at(pos, "string length", W as u64));
            };
            let mut b = [0u8; W];
            b.copy_from_slice(head);
            let len = decode(b);
            pos += W;
            if len > (buf.len() - pos) as u64 {
                return Err(self.truncated_at(pos, "string", len));
            }
            pos += len as usize;
        }
        self.pos = pos;
        Ok(())
    }

    /// `Truncated` for `needed` bytes at `pos` that the buffer lacks: with
    /// the bytes left in the file when they are not in the file either (the
    /// file is malformed), else with the bytes left in the buffer (the reader
    /// should read more of the file).
    #[cold]
    fn truncated_at(&self, pos: usize, what: &'static str, needed: u64) -> Fail {
        let in_file = self.file_remaining_at(pos);
        let available = if needed > in_file {
            in_file
        } else {
            (self.buf.len() - pos) as u64
        };
        (
            pos as u64,
            FormatErrorKind::Truncated {
                what,
                needed,
                available,
            },
        )
    }
}
