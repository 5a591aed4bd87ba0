//! The upload pipeline: quantized bytes, never decoded values, cross PCIe.
//!
//! A ring of pinned host buffers (allocated once, reused by every load) is
//! filled from the file by the host threads, each fill is copied to a
//! device staging buffer of its own with an asynchronous copy on the
//! slot's stream, and the decode kernels, queued on the same stream, write
//! each tensor's final buffer. An event per slot tells when its host
//! buffer may be filled again; the device staging buffer is reused only on
//! its own stream, after the kernels that read it. So while the GPU copies
//! and decodes one slot, the host fills the next: reading, copying and
//! decoding overlap.
//!
//! The slot fills are planned ([`super::plan`]): small tensors share a fill,
//! large ones are cut by block ranges.
//!
//! How a slot is filled ([`GpuStaging`]): positioned reads (`pread`) from
//! the file into the pinned buffer, or copies out of the mapping; or, with
//! [`GpuStaging::Register`], no host buffer at all: the mapping itself is
//! registered with the driver (read-only where the device supports it) and
//! the device copies straight out of the page cache.

use std::sync::Arc;

use cudarc::driver::{
    result as cu, sys, CudaEvent, CudaSlice, CudaStream, DevicePtr, PinnedHostSlice,
};
use rayon::prelude::*;

use super::plan::{plan, Item, PlanError};
use super::{alloc_output, driver_message, Gpu};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::format::blocks::big_endian_swaps;
use crate::format::Endianness;
use crate::loader::{LoadMode, Located};
use crate::model::load::Control;

pub use crate::model::load::GpuStaging as Staging;

/// Slots in a ring: enough that the host fills one while the device copies
/// one and decodes another.
const SLOTS: usize = 4;

/// Default bytes per slot.
const SLOT_BYTES: usize = 16 << 20;

/// Host copies are cut into runs of at most this many bytes, spread over
/// the host threads.
const FILL_RUN: usize = 2 << 20;

/// One slot: a pinned host buffer, a device staging buffer, the stream
/// that copies and decodes it, and the event marking its copy done.
struct Slot {
    host: PinnedHostSlice<u8>,
    dev: CudaSlice<u8>,
    stream: Arc<CudaStream>,
    copied: CudaEvent,
}

/// A staging ring, kept by its GPU between loads.
pub(crate) struct Ring {
    slots: Vec<Slot>,
    slot_bytes: usize,
}

impl Ring {
    fn new(g: &Gpu, slot_bytes: usize) -> Result<Ring> {
        let e = |what: &str| g.err(what);
        let mut slots = Vec::with_capacity(SLOTS);
        for _ in 0..SLOTS {
            let stream = g.ctx.new_stream().map_err(e("creating a stream"))?;
            // Not write-combined: the CPU writes it, but memcpy reads
            // nothing back, and a WC buffer would be slow to any reader.
            // SAFETY: the buffer is written before any byte is read (a
            // fill covers every byte the copy takes).
            let host = unsafe { g.ctx.alloc_pinned_with_flags::<u8>(slot_bytes, 0) }
                .map_err(e("allocating the pinned staging ring"))?;
            // SAFETY: written by the copy before the kernels read it.
            let dev = unsafe { stream.alloc::<u8>(slot_bytes) }
                .map_err(e("allocating the device staging ring"))?;
            let copied = g
                .ctx
                .new_event(Some(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING))
                .map_err(e("creating an event"))?;
            slots.push(Slot {
                host,
                dev,
                stream,
                copied,
            });
        }
        Ok(Ring { slots, slot_bytes })
    }
}

/// Takes a ring of `slot_bytes` slots from the GPU's pool (or makes one)
/// and gives it back when dropped, once its streams are idle.
struct RingLease<'g> {
    g: &'g Gpu,
    ring: Option<Ring>,
}

impl<'g> RingLease<'g> {
    fn take(g: &'g Gpu, slot_bytes: usize) -> Result<RingLease<'g>> {
        let pooled = {
            let mut pool = g.rings.lock().unwrap_or_else(|e| e.into_inner());
            pool.iter()
                .position(|r| r.slot_bytes == slot_bytes)
                .map(|i| pool.swap_remove(i))
        };
        let ring = match pooled {
            Some(r) => r,
            None => Ring::new(g, slot_bytes)?,
        };
        Ok(RingLease {
            g,
            ring: Some(ring),
        })
    }

    fn ring(&self) -> &Ring {
        self.ring.as_ref().expect("present until dropped")
    }

    /// Waits for everything queued on the ring's streams.
    fn synchronize(&self) -> Result<()> {
        for s in &self.ring().slots {
            s.stream
                .synchronize()
                .map_err(self.g.err("waiting for the decode"))?;
        }
        Ok(())
    }
}

impl Drop for RingLease<'_> {
    fn drop(&mut self) {
        if let Some(ring) = self.ring.take() {
            // Nothing may still read or write the buffers when another load
            // takes them (or they are freed): a ring whose streams failed
            // is dropped, not pooled.
            if ring.slots.iter().all(|s| s.stream.synchronize().is_ok()) {
                let mut pool = self.g.rings.lock().unwrap_or_else(|e| e.into_inner());
                pool.push(ring);
            }
        }
    }
}

/// The mappings registered with the driver for [`Staging::Register`],
/// unregistered when dropped (after the pipeline's streams are idle).
struct Registered {
    ptrs: Vec<*mut std::ffi::c_void>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        for &p in &self.ptrs {
            // SAFETY: `p` was registered by `register` and every copy out of
            // it has completed (the lease synchronized before this drops).
            unsafe {
                let _ = sys::cuMemHostUnregister(p);
            }
        }
    }
}

/// The page-aligned address ranges covering `ranges`, sorted, with
/// overlapping or touching ones merged (neighbouring tensors share pages,
/// and the driver refuses to register a page twice).
pub(crate) fn page_ranges(ranges: &[(usize, usize)], page: usize) -> Vec<(usize, usize)> {
    let mut r: Vec<(usize, usize)> = ranges
        .iter()
        .filter(|(_, len)| *len > 0)
        .map(|&(start, len)| (start / page * page, (start + len).div_ceil(page) * page))
        .collect();
    r.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(r.len());
    for (s, e) in r {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Registers the pages of the mapped `ranges` with the driver; `None`
/// where any registration fails, having undone the others.
fn register(g: &Gpu, ranges: &[&[u8]]) -> Option<Registered> {
    #[cfg(unix)]
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096);
    #[cfg(not(unix))]
    let page = 4096;
    let spans: Vec<(usize, usize)> = ranges
        .iter()
        .map(|r| (r.as_ptr() as usize, r.len()))
        .collect();
    let mut done = Registered { ptrs: Vec::new() };
    for (start, end) in page_ranges(&spans, page) {
        let mut flags = sys::CU_MEMHOSTREGISTER_PORTABLE;
        if g.read_only_register {
            flags |= sys::CU_MEMHOSTREGISTER_READ_ONLY;
        }
        // SAFETY: the pages lie within live mappings of the loader (a
        // mapping spans whole pages), which outlive this registration
        // (dropped before the load returns).
        let rc = unsafe { sys::cuMemHostRegister_v2(start as *mut _, end - start, flags) };
        if rc != sys::CUresult::CUDA_SUCCESS {
            return None;
        }
        done.ptrs.push(start as *mut _);
    }
    Some(done)
}

/// How a load's fills are made, settled for `mode` (a read-mode loader has
/// no mapping to copy from or register).
fn settle(staging: Staging, mode: LoadMode) -> Staging {
    match (staging, mode) {
        (_, LoadMode::Read) => Staging::Pread,
        (Staging::Auto, _) => Staging::Pread,
        (s, _) => s,
    }
}

/// Uploads and decodes `tensors` to `T` on `g`, one output buffer each, in
/// the order given. A big-endian file's data with bytes to swap is
/// swapped and decoded on the CPU and uploaded; data of a quantized type
/// with no big-endian byte order errs as on the CPU.
pub(crate) fn load_tensors<T: Element>(
    g: &Gpu,
    tensors: &[Located<'_>],
    mode: LoadMode,
    staging: Staging,
    ring_bytes: usize,
    ctl: &Control<'_>,
) -> Result<Vec<CudaSlice<T>>> {
    g.ctx
        .bind_to_thread()
        .map_err(g.err("binding the context"))?;
    // Every output first: a model too large for the device fails before
    // any work, and nothing is left half done.
    let mut outs = Vec::with_capacity(tensors.len());
    for t in tensors {
        let n = usize::try_from(t.info.n_elements)
            .map_err(|_| Error::TooLarge(t.info.name.to_string()))?;
        outs.push(alloc_output::<T>(g, n, t.info.name)?);
    }
    // The allocations (asynchronous on the output stream) are done before
    // the ring's streams write them.
    g.out_stream
        .synchronize()
        .map_err(g.err("allocating the outputs"))?;

    // Big-endian data with bytes to swap: swapped and decoded on the CPU,
    // uploaded. Big-endian data that is its own little-endian form (I8,
    // MXFP4, NVFP4) takes the GPU path like any other.
    let mut on_gpu = Vec::with_capacity(tensors.len());
    for (i, t) in tensors.iter().enumerate() {
        let big = t.endianness() == Endianness::Big;
        if big && !t.info.ty.has_big_endian_order() {
            return Err(Error::BigEndianData {
                tensor: t.info.name.to_string(),
                ty: t.info.ty,
            });
        }
        if big && big_endian_swaps(t.info.ty) {
            let host =
                crate::model::load::decode_tensor::<T>(*t, ctl, crate::decode::Stores::Auto)?;
            if !host.is_empty() {
                g.out_stream
                    .memcpy_htod(host.data(), &mut outs[i])
                    .map_err(g.err(t.info.name))?;
                g.out_stream.synchronize().map_err(g.err(t.info.name))?;
            }
        } else {
            on_gpu.push(i);
        }
    }

    let slot_bytes = if ring_bytes == 0 {
        SLOT_BYTES
    } else {
        (ring_bytes / SLOTS).max(1 << 20)
    };
    let items: Vec<Item> = on_gpu
        .iter()
        .map(|&i| Item {
            n_bytes: tensors[i].info.n_bytes,
            type_size: tensors[i].info.ty.type_size(),
        })
        .collect();
    let fills = plan(&items, slot_bytes).map_err(|e| {
        let (PlanError::SlotTooSmall { item } | PlanError::BadItem { item }) = e;
        Error::Cuda {
            device: g.device,
            what: tensors[on_gpu[item]].info.name.to_string(),
            message: format!("cannot be staged through slots of {slot_bytes} bytes"),
        }
    })?;
    // Pieces left per tensor, to count tensors done for progress.
    let mut left = vec![0usize; items.len()];
    for f in &fills {
        for p in &f.pieces {
            left[p.item] += 1;
        }
    }
    let funcs = on_gpu
        .iter()
        .map(|&i| g.function(tensors[i].info.ty, T::KIND))
        .collect::<Result<Vec<_>>>()?;
    let out_ptrs: Vec<u64> = on_gpu
        .iter()
        .map(|&i| {
            let (p, _sync) = outs[i].device_ptr(&g.out_stream);
            p
        })
        .collect();

    let mut staging = settle(staging, mode);
    let registered = if staging == Staging::Register {
        let maps: Vec<&[u8]> = on_gpu.iter().filter_map(|&i| tensors[i].mapped()).collect();
        let r = register(g, &maps);
        if r.is_none() {
            // Not supported here (or not for file mappings): the ring.
            staging = Staging::Pread;
        }
        r
    } else {
        None
    };

    let mut lease = RingLease::take(g, slot_bytes)?;
    let result = run_fills(
        g,
        tensors,
        &on_gpu,
        &items,
        &fills,
        &funcs,
        &out_ptrs,
        &mut lease,
        staging,
        &mut left,
        std::mem::size_of::<T>() as u64,
        ctl,
    );
    // Whatever happened, nothing may still be reading the mapping, the
    // ring or the outputs when they go.
    let synced = lease.synchronize();
    drop(lease);
    drop(registered);
    result?;
    synced?;
    Ok(outs)
}

#[allow(clippy::too_many_arguments)]
fn run_fills(
    g: &Gpu,
    tensors: &[Located<'_>],
    on_gpu: &[usize],
    items: &[Item],
    fills: &[super::plan::Fill],
    funcs: &[cudarc::driver::CudaFunction],
    out_ptrs: &[u64],
    lease: &mut RingLease<'_>,
    staging: Staging,
    left: &mut [usize],
    elem_bytes: u64,
    ctl: &Control<'_>,
) -> Result<()> {
    let ring = lease.ring.as_mut().expect("present until dropped");
    let n_slots = ring.slots.len();
    for (k, fill) in fills.iter().enumerate() {
        ctl.check()?;
        let slot = &mut ring.slots[k % n_slots];
        let dev_base = {
            let (p, _record) = slot.dev.device_ptr(&slot.stream);
            p
        };
        // The slot's previous copy is done: its host buffer is free. (An
        // event never recorded counts as done.)
        slot.copied
            .synchronize()
            .map_err(g.err("waiting for a staging slot"))?;
        match staging {
            Staging::Register => {
                for p in &fill.pieces {
                    let t = &tensors[on_gpu[p.item]];
                    let it = &items[p.item];
                    let data = t.mapped().unwrap_or_default();
                    let start = p.byte_start(it) as usize;
                    let src = data
                        .get(start..start + p.byte_len(it) as usize)
                        .ok_or_else(|| Error::TooLarge(t.info.name.to_string()))?;
                    // SAFETY: `src` lies in a registered (pinned) mapping that
                    // outlives the copy; the destination lies in the slot's
                    // device buffer (offset + length ≤ slot size, by the plan).
                    unsafe {
                        cu::memcpy_htod_async(
                            dev_base + p.slot_offset as u64,
                            src,
                            slot.stream.cu_stream(),
                        )
                    }
                    .map_err(g.err(t.info.name))?;
                }
            }
            _ => {
                fill_host(slot, fill, tensors, on_gpu, items, staging)?;
                let host = slot
                    .host
                    .as_slice()
                    .map_err(g.err("reading the staging slot"))?;
                // SAFETY: the host buffer is pinned and is not written again
                // before `copied` (recorded next) completes; the destination
                // is the slot's device buffer, as large as the host one.
                unsafe {
                    cu::memcpy_htod_async(dev_base, &host[..fill.used], slot.stream.cu_stream())
                }
                .map_err(g.err("copying to the device"))?;
            }
        }
        slot.copied
            .record(&slot.stream)
            .map_err(g.err("recording a copy"))?;
        let mut bytes = 0u64;
        let mut finished = 0usize;
        for p in &fill.pieces {
            let t = &tensors[on_gpu[p.item]];
            let it = &items[p.item];
            let block = t.info.ty.block_size();
            let src = dev_base + p.slot_offset as u64;
            let dst = out_ptrs[p.item] + p.first_block * block * elem_bytes;
            // SAFETY: `src` holds `p.blocks` blocks of the tensor's type
            // (inside the slot's device buffer, just copied on this stream)
            // and `dst` has room for their values (inside the tensor's
            // output, by the plan), both 256-byte aligned by the plan.
            unsafe { g.launch(&funcs[p.item], &slot.stream, src, dst, p.blocks, block) }
                .map_err(g.err(t.info.name))?;
            bytes += p.byte_len(it);
            left[p.item] -= 1;
            if left[p.item] == 0 {
                finished += 1;
            }
        }
        ctl.report(bytes, finished);
    }
    Ok(())
}

/// Fills `slot`'s host buffer with `fill`'s pieces, by positioned reads or
/// copies out of the mapping, in runs spread over the host threads.
fn fill_host(
    slot: &mut Slot,
    fill: &super::plan::Fill,
    tensors: &[Located<'_>],
    on_gpu: &[usize],
    items: &[Item],
    staging: Staging,
) -> Result<()> {
    let ctx = slot.host.context().clone();
    let host = slot.host.as_mut_slice().map_err(|e| Error::Cuda {
        device: crate::tensor::Device::Cuda(ctx.ordinal()),
        what: "writing the staging slot".to_string(),
        message: driver_message(e),
    })?;
    // Disjoint runs of the slot, each with its source: (tensor, byte offset
    // in the tensor, destination).
    let mut runs: Vec<(Located<'_>, u64, &mut [u8])> = Vec::new();
    let mut rest: &mut [u8] = &mut host[..fill.used];
    let mut at = 0usize;
    for p in &fill.pieces {
        let t = tensors[on_gpu[p.item]];
        let it = &items[p.item];
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(p.slot_offset - at);
        let len = p.byte_len(it) as usize;
        let (mut piece, tail) = tail.split_at_mut(len);
        rest = tail;
        at = p.slot_offset + len;
        let mut start = p.byte_start(it);
        while !piece.is_empty() {
            let n = piece.len().min(FILL_RUN);
            let (run, more) = std::mem::take(&mut piece).split_at_mut(n);
            runs.push((t, start, run));
            start += n as u64;
            piece = more;
        }
    }
    runs.into_par_iter()
        .try_for_each(|(t, start, dst)| match staging {
            Staging::Mapping => {
                let data = t.mapped().unwrap_or_default();
                let src = data
                    .get(start as usize..start as usize + dst.len())
                    .ok_or_else(|| Error::TooLarge(t.info.name.to_string()))?;
                dst.copy_from_slice(src);
                Ok(())
            }
            _ => t.read_into(start, dst),
        })
}

#[cfg(test)]
mod tests {
    use super::page_ranges;

    #[test]
    fn page_ranges_merge_shared_pages() {
        // Two tensors sharing a page, one alone further on, one empty.
        let r = page_ranges(&[(5000, 100), (100, 4950), (20000, 1), (9000, 0)], 4096);
        assert_eq!(r, vec![(0, 8192), (16384, 20480)]);
        // Touching ranges merge; a range inside another disappears.
        let r = page_ranges(&[(0, 4096), (4096, 10), (100, 10)], 4096);
        assert_eq!(r, vec![(0, 8192)]);
        assert!(page_ranges(&[], 4096).is_empty());
    }
}
