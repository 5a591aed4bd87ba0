//! How a set of tensors crosses the staging ring: which bytes of which
//! tensor go where in which slot fill. Pure arithmetic, tested without a GPU.
//!
//! Every piece is a whole number of blocks; a piece that starts inside a
//! tensor starts at a multiple of [`ALIGN_BLOCKS`] blocks, so its output
//! (at `first_block * block_size` values into the tensor's buffer) stays
//! 256-byte aligned, and every piece starts at a multiple of [`SLOT_ALIGN`]
//! bytes in its slot, so the kernels read from 256-byte aligned addresses.

/// Alignment of a piece inside a slot (the kernels' ABI: 256 bytes).
pub const SLOT_ALIGN: usize = 256;

/// Pieces of a split tensor start at multiples of this many blocks: the
/// output then starts at a multiple of 256 values (512 bytes of f16).
pub const ALIGN_BLOCKS: u64 = 256;

/// One tensor to move: its data's size and block geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item {
    /// Bytes of quantized data (a whole number of blocks).
    pub n_bytes: u64,
    /// Bytes per block.
    pub type_size: u64,
}

/// A run of one tensor's blocks placed in a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Index of the tensor in the items given to [`plan`].
    pub item: usize,
    /// First block of the run within the tensor.
    pub first_block: u64,
    /// Blocks in the run (at least one).
    pub blocks: u64,
    /// Byte offset of the run in the slot (a multiple of [`SLOT_ALIGN`]).
    pub slot_offset: usize,
}

impl Piece {
    /// Byte offset of the run within the tensor's data.
    pub fn byte_start(&self, it: &Item) -> u64 {
        self.first_block * it.type_size
    }

    /// Bytes in the run.
    pub fn byte_len(&self, it: &Item) -> u64 {
        self.blocks * it.type_size
    }
}

/// One fill of one slot: the pieces it carries, and how many bytes of the
/// slot they span (what is copied to the device).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fill {
    /// The pieces, in slot order.
    pub pieces: Vec<Piece>,
    /// Bytes of the slot in use, from 0.
    pub used: usize,
}

/// Why a plan cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// A slot cannot hold even [`ALIGN_BLOCKS`] blocks of this item.
    SlotTooSmall {
        /// The item.
        item: usize,
    },
    /// The item's size is not a whole number of blocks, or its block size is 0.
    BadItem {
        /// The item.
        item: usize,
    },
}

fn align_up(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

/// Packs `items`, in the order given, into fills of slots of `slot_bytes`:
/// small tensors share a fill, large ones are cut into runs of whole
/// blocks (multiples of [`ALIGN_BLOCKS`] but for the last run). Items of
/// no bytes get no piece.
pub fn plan(items: &[Item], slot_bytes: usize) -> Result<Vec<Fill>, PlanError> {
    let mut fills = Vec::new();
    let mut cur = Fill::default();
    for (i, it) in items.iter().enumerate() {
        if it.type_size == 0 || it.n_bytes % it.type_size != 0 {
            return Err(PlanError::BadItem { item: i });
        }
        let total_blocks = it.n_bytes / it.type_size;
        let unit = ALIGN_BLOCKS.saturating_mul(it.type_size);
        // The most blocks one fill can carry, in whole units.
        let max_units = slot_bytes as u64 / unit;
        if max_units == 0 && total_blocks > 0 && it.n_bytes > slot_bytes as u64 {
            return Err(PlanError::SlotTooSmall { item: i });
        }
        let mut first = 0u64;
        while first < total_blocks {
            let mut offset = align_up(cur.used, SLOT_ALIGN);
            let room = (slot_bytes as u64).saturating_sub(offset as u64);
            let left = total_blocks - first;
            let blocks = if left * it.type_size <= room {
                // The rest fits.
                left
            } else {
                // Whole units that fit here; none fit: a new fill.
                let units = room / unit;
                if units == 0 {
                    if !cur.pieces.is_empty() {
                        fills.push(std::mem::take(&mut cur));
                    }
                    offset = 0;
                    if left * it.type_size <= slot_bytes as u64 {
                        left
                    } else if max_units > 0 {
                        max_units * ALIGN_BLOCKS
                    } else {
                        return Err(PlanError::SlotTooSmall { item: i });
                    }
                } else {
                    units * ALIGN_BLOCKS
                }
            };
            cur.pieces.push(Piece {
                item: i,
                first_block: first,
                blocks,
                slot_offset: offset,
            });
            cur.used = offset + (blocks * it.type_size) as usize;
            first += blocks;
        }
    }
    if !cur.pieces.is_empty() {
        fills.push(cur);
    }
    Ok(fills)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block of every item is carried exactly once, in order, within
    /// its slot, at aligned offsets, without overlap.
    fn check(items: &[Item], slot: usize, fills: &[Fill]) {
        let mut next = vec![0u64; items.len()];
        for f in fills {
            assert!(f.used <= slot, "fill past its slot");
            assert!(!f.pieces.is_empty());
            let mut end = 0usize;
            for p in &f.pieces {
                let it = &items[p.item];
                assert!(p.blocks > 0);
                assert_eq!(p.slot_offset % SLOT_ALIGN, 0);
                assert!(p.slot_offset >= end, "pieces overlap");
                assert_eq!(p.first_block, next[p.item], "blocks out of order");
                assert_eq!(p.first_block % ALIGN_BLOCKS, 0, "unaligned split");
                end = p.slot_offset + p.byte_len(it) as usize;
                assert!(end <= f.used);
                next[p.item] += p.blocks;
            }
            assert_eq!(end, f.used);
        }
        for (i, it) in items.iter().enumerate() {
            assert_eq!(next[i] * it.type_size, it.n_bytes, "item {i} not whole");
        }
    }

    #[test]
    fn small_items_share_and_large_ones_split() {
        let items = [
            Item {
                n_bytes: 18 * 10,
                type_size: 18,
            },
            Item {
                n_bytes: 4 * 3,
                type_size: 4,
            },
            Item {
                n_bytes: 18 * 256 * 40 + 18 * 7,
                type_size: 18,
            },
            Item {
                n_bytes: 0,
                type_size: 210,
            },
            Item {
                n_bytes: 210 * 5,
                type_size: 210,
            },
        ];
        for slot in [18 * 256 + 256, 1 << 16, 1 << 20, 100_000] {
            let fills = plan(&items, slot).unwrap();
            check(&items, slot, &fills);
        }
        let one = plan(&items, 1 << 20).unwrap();
        assert_eq!(one.len(), 1, "all fits one slot: {one:?}");
    }

    #[test]
    fn random_sizes() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for _ in 0..200 {
            let n = 1 + rnd(30) as usize;
            let items: Vec<Item> = (0..n)
                .map(|_| {
                    let ts = [2u64, 4, 18, 34, 144, 210, 292][rnd(7) as usize];
                    Item {
                        n_bytes: ts * rnd(3000),
                        type_size: ts,
                    }
                })
                .collect();
            let slot = 292 * 256 + rnd(1 << 18) as usize;
            let fills = plan(&items, slot).unwrap();
            check(&items, slot, &fills);
        }
    }

    #[test]
    fn refuses_what_cannot_be_planned() {
        let big = [Item {
            n_bytes: 210 * 1000,
            type_size: 210,
        }];
        assert_eq!(plan(&big, 1000), Err(PlanError::SlotTooSmall { item: 0 }));
        let odd = [Item {
            n_bytes: 19,
            type_size: 18,
        }];
        assert_eq!(plan(&odd, 1 << 20), Err(PlanError::BadItem { item: 0 }));
        let zero = [Item {
            n_bytes: 0,
            type_size: 0,
        }];
        assert_eq!(plan(&zero, 1 << 20), Err(PlanError::BadItem { item: 0 }));
        // A small tensor fits a small slot whole even under ALIGN_BLOCKS blocks.
        let small = [Item {
            n_bytes: 210 * 3,
            type_size: 210,
        }];
        check(&small, 1000, &plan(&small, 1000).unwrap());
    }
}
