// common.cuh: the host/device portability layer of the gguf-loader decode
// kernels: types, byte readers, f16/bf16/f32 conversions, stores and the
// work loop. First file of the one translation unit (see decode/cuda/mod.rs).
//
// KERNEL ABI (the Rust host side depends on it):
//   extern "C" __global__ void gl_<type>_to_<out>(
//       const unsigned char* __restrict__ src, <OUT>* __restrict__ dst,
//       unsigned long long n_blocks)
// <type> is the ggml type name lowercased (q4_0, iq2_xxs, f32, i8, mxfp4 ...),
// <out> is f32 (float*), f16 or bf16 (unsigned short*: IEEE half bits,
// bfloat16 bits). src holds n_blocks whole blocks (type_size bytes each,
// little-endian, no padding); dst receives n_blocks * block_size values.
// Both pointers are 256-byte aligned. blockDim.x must be 256 ... or anything:
// every kernel is a grid-stride loop over its work units, correct for any
// gridDim.x >= 1 and blockDim.x >= 1 (y and z are 1).
//
// WORK UNIT: one thread, one unit at a time, writes 8 consecutive outputs.
//  - Block types (gl_run_blocks): every block of block_size values is
//    block_size / 8 units; unit u is outputs [8u, 8u + 8) of the tensor,
//    i.e. outputs [8s, 8s + 8) of block u / UNITS (s = u % UNITS). The 8
//    outputs of a unit always share one scale (one sub-block), so a thread
//    decodes its scale once; adjacent threads take adjacent units, so a warp
//    reads adjacent bytes and writes 256 (f32: 1024) adjacent bytes. Each
//    family file says which bytes a unit reads.
//  - Plain number types (gl_run_plain, gl_run_copy; "blocks" are single
//    elements): unit u is elements [8u, 8u + 8); the last unit may be short.
// Outputs go out as 16-byte stores (f32: two, f16/bf16: one): unit u starts
// at byte 32u (f32) or 16u of the 256-byte aligned dst.
//
// ARITHMETIC: every formula is the CPU's scalar routine (decode/*.rs), same
// operations, same order, same types, so NVRTC must compile with
// --fmad=false (no a*b+c contraction) and without --use_fast_math /
// --ftz=true / --prec-div=false; the host build uses -ffp-contract=off and
// no fast-math. Conversions of stored floats (f16 -> f32, f32 -> f16/bf16)
// are integer bit operations, written after the `half` crate's, so NVRTC
// needs no header (no cuda_fp16.h) and NaN payloads follow the CPU.
// A NaN computed by arithmetic (a NaN or infinite scale times a quant) is a
// NaN on both sides, but its bits may differ (the GPU makes the canonical
// NaN 0x7fffffff, an x86 CPU propagates an operand's payload).

#ifndef GL_COMMON_CUH
#define GL_COMMON_CUH

#if defined(GL_NVRTC) && defined(GL_HOST)
#error "GL_NVRTC (device) and GL_HOST (host C++ test build) exclude each other"
#endif

typedef unsigned char gl_u8;
typedef unsigned short gl_u16;
typedef unsigned int gl_u32;
typedef unsigned long long gl_u64;
typedef signed char gl_i8;
typedef short gl_i16;
typedef int gl_i32;
typedef long long gl_i64;

// Sixteen bytes, the widest load and store: one ld/st.global.v4.u32.
struct alignas(16) gl_u32x4 {
    gl_u32 x, y, z, w;
};

#if defined(GL_HOST)
// ---------------------------------------------------------------------------
// Host emulation: the CUDA keywords become plain C++, the built-in index
// variables become thread-local variables that the test harness sets before
// running the kernel body once per emulated (block, thread), and every global
// memory access is checked for bounds and for the alignment its width needs
// (a failure is recorded, read by gl_host_take_fault).
// ---------------------------------------------------------------------------
#include <cstdint>
#include <cstring>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the host build reads blocks as a little-endian GPU does"
#endif

#define __global__
#define __device__
#define __forceinline__ inline __attribute__((always_inline))
// __restrict__ is a GCC/Clang keyword already.

struct gl_dim3 {
    unsigned int x, y, z;
};
static thread_local gl_dim3 blockIdx, threadIdx, blockDim, gridDim;
static thread_local const gl_u8* gl_host_src_lo;
static thread_local const gl_u8* gl_host_src_hi;
static thread_local const gl_u8* gl_host_dst_lo;
static thread_local const gl_u8* gl_host_dst_hi;
static thread_local int gl_host_fault;

// Sets the emulated thread's indices (y and z are 0, dimensions' y, z 1).
extern "C" void gl_host_set_index(unsigned int block, unsigned int thread, unsigned int block_dim,
                                  unsigned int grid_dim) {
    blockIdx = gl_dim3{block, 0, 0};
    threadIdx = gl_dim3{thread, 0, 0};
    blockDim = gl_dim3{block_dim, 1, 1};
    gridDim = gl_dim3{grid_dim, 1, 1};
}

// The memory a kernel may read ([src, src + src_len)) and write.
extern "C" void gl_host_set_bounds(const unsigned char* src, unsigned long long src_len,
                                   const void* dst, unsigned long long dst_len) {
    gl_host_src_lo = src;
    gl_host_src_hi = src + src_len;
    gl_host_dst_lo = static_cast<const gl_u8*>(dst);
    gl_host_dst_hi = static_cast<const gl_u8*>(dst) + dst_len;
    gl_host_fault = 0;
}

// 0 if every access since gl_host_set_bounds was in bounds and aligned;
// 1 for a read out of bounds, 2 a misaligned read, 3 a write out of
// bounds, 4 a misaligned write (the first fault is kept).
extern "C" int gl_host_take_fault(void) {
    const int f = gl_host_fault;
    gl_host_fault = 0;
    return f;
}

// Whether n bytes at p lie inside the readable (or writable) memory; also
// records a misaligned access (n-byte accesses must be n-aligned).
static inline bool gl_host_check(const void* p, unsigned n, bool write) {
    const gl_u8* b = static_cast<const gl_u8*>(p);
    const gl_u8* lo = write ? gl_host_dst_lo : gl_host_src_lo;
    const gl_u8* hi = write ? gl_host_dst_hi : gl_host_src_hi;
    int f = 0;
    if (b < lo || b > hi || static_cast<size_t>(hi - b) < n) {
        f = write ? 3 : 1;
    } else if (reinterpret_cast<uintptr_t>(b) % n != 0) {
        f = write ? 4 : 2;
    }
    if (f != 0 && gl_host_fault == 0) {
        gl_host_fault = f;
    }
    return f == 0 || f == 2 || f == 4;
}

// An access out of bounds is recorded and not made (a load gives 0).
template <class T>
static __forceinline__ T gl_host_load(const gl_u8* p) {
    T v{};
    if (gl_host_check(p, sizeof(T), false)) {
        std::memcpy(&v, p, sizeof(T));
    }
    return v;
}

template <class T>
static __forceinline__ void gl_host_store(void* p, T v) {
    if (gl_host_check(p, sizeof(T), true)) {
        std::memcpy(p, &v, sizeof(T));
    }
}

#define GL_LOAD(T, p) gl_host_load<T>(p)
#define GL_STORE(T, p, v) gl_host_store<T>((p), (v))

static __forceinline__ gl_u32 gl_f2u(float f) {
    gl_u32 u;
    std::memcpy(&u, &f, 4);
    return u;
}
static __forceinline__ float gl_u2f(gl_u32 u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
static __forceinline__ double gl_u2d(gl_u64 u) {
    double d;
    std::memcpy(&d, &u, 8);
    return d;
}
// Leading zeros of a nonzero 32-bit word (CUDA: __clz).
static __forceinline__ gl_u32 gl_clz(gl_u32 x) { return static_cast<gl_u32>(__builtin_clz(x)); }

#else
// ---------------------------------------------------------------------------
// Device (NVRTC, or nvcc on one file): the CUDA built-ins themselves.
// ---------------------------------------------------------------------------
#define GL_LOAD(T, p) (*reinterpret_cast<const T*>(p))
#define GL_STORE(T, p, v) (*reinterpret_cast<T*>(p) = (v))

static __device__ __forceinline__ gl_u32 gl_f2u(float f) { return __float_as_uint(f); }
static __device__ __forceinline__ float gl_u2f(gl_u32 u) { return __uint_as_float(u); }
static __device__ __forceinline__ double gl_u2d(gl_u64 u) {
    return __longlong_as_double(static_cast<long long>(u));
}
static __device__ __forceinline__ gl_u32 gl_clz(gl_u32 x) {
    return static_cast<gl_u32>(__clz(static_cast<int>(x)));
}
#endif

// ---------------------------------------------------------------------------
// Readers. Fields inside blocks are only as aligned as the block layout
// makes them (a Q4_0 block is 18 bytes, so its fields are 2-aligned); every
// read states the alignment it relies on, and the host build checks it.
// All values are little-endian, as on the GPU.
// ---------------------------------------------------------------------------

static __device__ __forceinline__ gl_u32 gl_ld8(const gl_u8* p) { return GL_LOAD(gl_u8, p); }

// 2 bytes at a 2-aligned address.
static __device__ __forceinline__ gl_u32 gl_ld16(const gl_u8* p) { return GL_LOAD(gl_u16, p); }

// 4 bytes at an A-aligned address (A = 1, 2 or 4).
template <int A>
static __device__ __forceinline__ gl_u32 gl_ld32(const gl_u8* p) {
    if (A >= 4) {
        return GL_LOAD(gl_u32, p);
    } else if (A >= 2) {
        return GL_LOAD(gl_u16, p) | (static_cast<gl_u32>(GL_LOAD(gl_u16, p + 2)) << 16);
    } else {
        return GL_LOAD(gl_u8, p) | (static_cast<gl_u32>(GL_LOAD(gl_u8, p + 1)) << 8) |
               (static_cast<gl_u32>(GL_LOAD(gl_u8, p + 2)) << 16) |
               (static_cast<gl_u32>(GL_LOAD(gl_u8, p + 3)) << 24);
    }
}

// 8 bytes at an A-aligned address (A = 1, 2, 4 or 8).
template <int A>
static __device__ __forceinline__ gl_u64 gl_ld64(const gl_u8* p) {
    if (A >= 8) {
        return GL_LOAD(gl_u64, p);
    } else {
        return gl_ld32<A>(p) | (static_cast<gl_u64>(gl_ld32<A>(p + 4)) << 32);
    }
}

// 16 bytes at a 16-aligned address.
static __device__ __forceinline__ gl_u32x4 gl_ld128(const gl_u8* p) { return GL_LOAD(gl_u32x4, p); }

// Byte i (0..8) of a little-endian 8-byte word.
static __device__ __forceinline__ gl_u32 gl_byte(gl_u64 v, int i) {
    return static_cast<gl_u32>(v >> (8 * i)) & 0xFFu;
}

// The 8 4-bit codes of unit s (0..4) of a 32-value block whose 16 nibble
// bytes start at qs (A-aligned): element j in the low nibble of qs[j], j + 16
// in the high one; units 0, 1 are the low nibbles of qs[0..8], qs[8..16],
// units 2, 3 the high ones (Q4_*, Q5_*, IQ4_NL, MXFP4).
template <int A>
static __device__ __forceinline__ void gl_nibbles32(const gl_u8* qs, gl_u32 s, gl_u32* c) {
    const gl_u64 q = gl_ld64<A>(qs + 8 * (s & 1));
    const int shift = 4 * (s >> 1);
    for (int i = 0; i < 8; i++) {
        c[i] = (gl_byte(q, i) >> shift) & 0xF;
    }
}

// ---------------------------------------------------------------------------
// Float conversions, bit for bit as the `half` crate (which the CPU path
// uses, and its F16C/NEON paths equal).
// ---------------------------------------------------------------------------

// IEEE half bits -> f32 bits, exact: half::f16::to_f32 (subnormals
// normalized, NaN quieted with its payload kept: sign | 0x7fc00000 | m << 13).
static __device__ __forceinline__ gl_u32 gl_h2f_bits(gl_u32 h) {
    h &= 0xFFFFu;
    const gl_u32 sign = (h & 0x8000u) << 16;
    const gl_u32 exp = h & 0x7C00u;
    const gl_u32 man = h & 0x03FFu;
    if ((h & 0x7FFFu) == 0) {
        return h << 16;
    }
    if (exp == 0x7C00u) {
        return man == 0 ? (sign | 0x7F800000u) : (sign | 0x7FC00000u | (man << 13));
    }
    if (exp == 0) {
        // Subnormal: e = leading zeros of the 16-bit mantissa word - 6.
        const gl_u32 e = gl_clz(man) - 16 - 6;
        return sign | ((127 - 15 - e) << 23) | ((man << (14 + e)) & 0x7FFFFFu);
    }
    return sign | (((exp >> 10) + 127 - 15) << 23) | (man << 13);
}

static __device__ __forceinline__ float gl_h2f(gl_u32 h) {
    return gl_u2f(gl_h2f_bits(h));
}

// f32 bits -> IEEE half bits: half::f16::from_f32 (round to nearest even,
// overflow to infinity, subnormals rounded, NaN -> sign | 0x7e00 | m >> 13).
static __device__ __forceinline__ gl_u32 gl_f2h_bits(gl_u32 x) {
    const gl_u32 sign = x & 0x80000000u;
    const gl_u32 exp = x & 0x7F800000u;
    const gl_u32 man = x & 0x007FFFFFu;
    if (exp == 0x7F800000u) {
        const gl_u32 nan_bit = man == 0 ? 0u : 0x0200u;
        return (sign >> 16) | 0x7C00u | nan_bit | (man >> 13);
    }
    const gl_u32 half_sign = sign >> 16;
    const gl_i32 half_exp = static_cast<gl_i32>(exp >> 23) - 127 + 15;
    if (half_exp >= 0x1F) {
        return half_sign | 0x7C00u;
    }
    if (half_exp <= 0) {
        if (14 - half_exp > 24) {
            return half_sign;
        }
        const gl_u32 m = man | 0x00800000u;
        gl_u32 half_man = m >> (14 - half_exp);
        const gl_u32 round_bit = 1u << (13 - half_exp);
        if ((m & round_bit) != 0 && (m & (3 * round_bit - 1)) != 0) {
            half_man += 1;
        }
        return half_sign | half_man;
    }
    const gl_u32 bits = half_sign | (static_cast<gl_u32>(half_exp) << 10) | (man >> 13);
    const gl_u32 round_bit = 0x00001000u;
    if ((man & round_bit) != 0 && (man & (3 * round_bit - 1)) != 0) {
        return (bits + 1) & 0xFFFFu;
    }
    return bits;
}

// f32 bits -> bfloat16 bits: half::bf16::from_f32 (round to nearest even;
// NaN -> top half | 0x0040).
static __device__ __forceinline__ gl_u32 gl_f2bf_bits(gl_u32 x) {
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) {
        return (x >> 16) | 0x0040u;
    }
    const gl_u32 round_bit = 0x00008000u;
    if ((x & round_bit) != 0 && (x & (3 * round_bit - 1)) != 0) {
        return ((x >> 16) + 1) & 0xFFFFu;
    }
    return x >> 16;
}

// ---------------------------------------------------------------------------
// Output kinds: how 8 (or 1) f32 values, given as bits, are stored.
// ---------------------------------------------------------------------------

struct gl_out_f32 {
    typedef float T;
    static __device__ __forceinline__ void store8(float* dst, const gl_u32* b) {
        GL_STORE(gl_u32x4, dst, (gl_u32x4{b[0], b[1], b[2], b[3]}));
        GL_STORE(gl_u32x4, dst + 4, (gl_u32x4{b[4], b[5], b[6], b[7]}));
    }
    static __device__ __forceinline__ void store1(float* dst, gl_u32 b) { GL_STORE(gl_u32, dst, b); }
};

struct gl_conv_f16 {
    static __device__ __forceinline__ gl_u32 conv(gl_u32 b) { return gl_f2h_bits(b); }
};
struct gl_conv_bf16 {
    static __device__ __forceinline__ gl_u32 conv(gl_u32 b) { return gl_f2bf_bits(b); }
};

// f16 and bf16 (C: gl_conv_f16 or gl_conv_bf16): one 16-byte store of 8
// converted values.
template <class C>
struct gl_out_16 {
    typedef gl_u16 T;
    static __device__ __forceinline__ void store8(gl_u16* dst, const gl_u32* b) {
        gl_u32 w[4];
        for (int i = 0; i < 4; i++) {
            w[i] = C::conv(b[2 * i]) | (C::conv(b[2 * i + 1]) << 16);
        }
        GL_STORE(gl_u32x4, dst, (gl_u32x4{w[0], w[1], w[2], w[3]}));
    }
    static __device__ __forceinline__ void store1(gl_u16* dst, gl_u32 b) {
        GL_STORE(gl_u16, dst, static_cast<gl_u16>(C::conv(b)));
    }
};
typedef gl_out_16<gl_conv_f16> gl_out_f16;
typedef gl_out_16<gl_conv_bf16> gl_out_bf16;

// ---------------------------------------------------------------------------
// Work loops (see WORK UNIT above).
// ---------------------------------------------------------------------------

// The first unit of this thread and the grid's stride (64-bit: the grid
// times the block may pass 2^32 with a huge grid).
#define GL_GRID_STRIDE_LOOP(u, n_units)                                                        \
    for (gl_u64 u = static_cast<gl_u64>(blockIdx.x) * blockDim.x + threadIdx.x; u < (n_units); \
         u += static_cast<gl_u64>(gridDim.x) * blockDim.x)

// A block type D: D::BYTES per block, D::UNITS units of 8 outputs per block
// (block_size = 8 * UNITS), D::unit(block, s, y) writes outputs 8s..8s+8 of
// one block to y. n_blocks * UNITS cannot overflow: UNITS <= 32 and a
// block is at least 17 bytes.
template <class D, class O>
static __device__ __forceinline__ void gl_run_blocks(const gl_u8* __restrict__ src,
                                                     typename O::T* __restrict__ dst,
                                                     gl_u64 n_blocks) {
    const gl_u64 n_units = n_blocks * D::UNITS;
    GL_GRID_STRIDE_LOOP(u, n_units) {
        float y[8];
        D::unit(src + (u / D::UNITS) * D::BYTES, static_cast<gl_u32>(u % D::UNITS), y);
        gl_u32 b[8];
        for (int i = 0; i < 8; i++) {
            b[i] = gl_f2u(y[i]);
        }
        O::store8(dst + u * 8, b);
    }
}

// Loads the 8 * SIZE bytes of 8 elements (p is 8 * SIZE-aligned) into
// 2 * SIZE little-endian words: byte k of the run is byte k % 4 of w[k / 4].
template <int SIZE>
static __device__ __forceinline__ void gl_ld_elems8(const gl_u8* p, gl_u32* w) {
    if (SIZE == 1) {
        const gl_u64 v = gl_ld64<8>(p);
        w[0] = static_cast<gl_u32>(v);
        w[1] = static_cast<gl_u32>(v >> 32);
    } else {
        for (int i = 0; i < SIZE / 2; i++) {
            const gl_u32x4 v = gl_ld128(p + 16 * i);
            w[4 * i] = v.x;
            w[4 * i + 1] = v.y;
            w[4 * i + 2] = v.z;
            w[4 * i + 3] = v.w;
        }
    }
}

// A plain number type D (block size 1): D::SIZE bytes per element,
// D::bits(w, i) the f32 bits of element i (0..8) of a run loaded by
// gl_ld_elems8, D::bits1(p) those of the one element at p.
template <class D, class O>
static __device__ __forceinline__ void gl_run_plain(const gl_u8* __restrict__ src,
                                                    typename O::T* __restrict__ dst,
                                                    gl_u64 n) {
    const gl_u64 n_units = n / 8 + (n % 8 != 0);
    GL_GRID_STRIDE_LOOP(u, n_units) {
        const gl_u64 first = u * 8;
        if (n - first >= 8) {
            gl_u32 w[2 * D::SIZE];
            gl_ld_elems8<D::SIZE>(src + first * D::SIZE, w);
            gl_u32 b[8];
            for (int i = 0; i < 8; i++) {
                b[i] = D::bits(w, i);
            }
            O::store8(dst + first, b);
        } else {
            for (gl_u64 e = first; e < n; e++) {
                O::store1(dst + e, D::bits1(src + e * D::SIZE));
            }
        }
    }
}

// A same-type copy (F32 -> f32, F16 -> f16, BF16 -> bf16): the bits as
// stored, NaN payloads included (the CPU's copy_same).
template <int SIZE, class T>
static __device__ __forceinline__ void gl_run_copy(const gl_u8* __restrict__ src,
                                                   T* __restrict__ dst, gl_u64 n) {
    const gl_u64 n_units = n / 8 + (n % 8 != 0);
    GL_GRID_STRIDE_LOOP(u, n_units) {
        const gl_u64 first = u * 8;
        if (n - first >= 8) {
            for (int i = 0; i < SIZE / 2; i++) {
                GL_STORE(gl_u32x4, dst + first + 16 * i / SIZE,
                         gl_ld128(src + first * SIZE + 16 * i));
            }
        } else {
            for (gl_u64 e = first; e < n; e++) {
                if (SIZE == 4) {
                    GL_STORE(gl_u32, dst + e, gl_ld32<4>(src + e * 4));
                } else {
                    GL_STORE(gl_u16, dst + e, static_cast<gl_u16>(gl_ld16(src + e * 2)));
                }
            }
        }
    }
}

#endif  // GL_COMMON_CUH
