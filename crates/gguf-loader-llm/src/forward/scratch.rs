//! The activations' buffers of a forward step, kept for the next step.
//!
//! A step of a long prompt takes a dozen buffers of megabytes a layer (the
//! normed inputs, Q, K and V, the attention's output, the feed-forward's
//! gate and up). Fresh from the allocator, each came as new pages that the
//! kernel faults in and zeroes 4 KiB at a time as they are first written:
//! a tenth of a 512-token Gemma-3 prompt on two threads went to page
//! faults. llama.cpp plans its compute buffers once; here the buffers a
//! step gives back wait in its [`KvCache`](super::KvCache) for the next
//! layer and the next step.

use super::{try_zeros, ForwardError};

/// Free buffers this many at most: more than a layer holds at once.
const KEPT: usize = 16;

/// Buffers given back, to be taken again.
#[derive(Default)]
pub(super) struct Scratch {
    free: Vec<Vec<f32>>,
}

impl Clone for Scratch {
    /// Empty: a copy of a cache needs none of its buffers.
    fn clone(&self) -> Scratch {
        Scratch::default()
    }
}

impl Scratch {
    /// `len` values, every one of them to be written before it is read: a
    /// buffer given back keeps its old values (the smallest that holds
    /// `len`), a new one is zeros. [`ForwardError::Alloc`] where the memory
    /// cannot be had.
    pub(super) fn take(&mut self, len: usize) -> Result<Vec<f32>, ForwardError> {
        if len == 0 {
            // Nothing to hold (a one-token step's widened keys): no kept
            // buffer taken from the next take that needs one.
            return Ok(Vec::new());
        }
        let fit = (self.free.iter().enumerate())
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        match fit {
            Some(i) => {
                let mut b = self.free.swap_remove(i);
                // Within its capacity: no allocation.
                b.resize(len, 0.0);
                Ok(b)
            }
            None => try_zeros(len),
        }
    }

    /// A copy of `src` in a buffer taken as by [`Self::take`].
    pub(super) fn copy_of(&mut self, src: &[f32]) -> Result<Vec<f32>, ForwardError> {
        let mut b = self.take(src.len())?;
        b.copy_from_slice(src);
        Ok(b)
    }

    /// `bufs` given back; past [`KEPT`], the smallest are freed.
    pub(super) fn give<const M: usize>(&mut self, bufs: [Vec<f32>; M]) {
        self.free
            .extend(bufs.into_iter().filter(|b| b.capacity() > 0));
        while self.free.len() > KEPT {
            let smallest = (self.free.iter().enumerate())
                .min_by_key(|(_, b)| b.capacity())
                .map_or(0, |(i, _)| i);
            self.free.swap_remove(smallest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Scratch, KEPT};

    #[test]
    fn takes_the_smallest_that_fits_and_keeps_a_few() {
        let mut s = Scratch::default();
        let big = s.take(1000).unwrap();
        assert!(big.iter().all(|&v| v == 0.0));
        let mut small = s.take(10).unwrap();
        small.fill(7.0);
        let (pb, ps) = (big.as_ptr(), small.as_ptr());
        s.give([big, small]);
        // The small one for a few values, its old values kept.
        let a = s.take(8).unwrap();
        assert_eq!((a.as_ptr(), a.len()), (ps, 8));
        assert_eq!(a, [7.0; 8]);
        // The big one for more than the small holds, grown within it.
        let b = s.take(11).unwrap();
        assert_eq!((b.as_ptr(), b.len()), (pb, 11));
        // No values: no kept buffer.
        assert_eq!(s.take(0).unwrap().capacity(), 0);
        // Nothing left that fits: a new one.
        let c = s.copy_of(&[1.0, 2.0]).unwrap();
        assert_eq!(c, [1.0, 2.0]);
        s.give([a, b, c]);
        let held = |s: &Scratch| s.free.iter().map(Vec::capacity).sum::<usize>();
        assert_eq!(held(&s), 10 + 1000 + 2);
        for i in 0..2 * KEPT {
            s.give([vec![0f32; i + 1]]);
        }
        assert_eq!(s.free.len(), KEPT);
        assert!(s.free.iter().any(|b| b.capacity() == 1000));
        assert_eq!(held(&s.clone()), 0);
    }
}
