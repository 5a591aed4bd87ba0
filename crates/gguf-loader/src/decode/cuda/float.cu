// float.cu: the plain number types F32, F16, BF16, F64, I8, I16, I32, I64,
// as decode/float.rs converts them, and the same-type copies (F32 -> f32,
// F16 -> f16, BF16 -> bf16 keep every bit, as the CPU's copy_same).
//
// Thread mapping: a unit is 8 consecutive elements (the last unit of a
// tensor may be short and goes element by element); a full unit is one
// aligned load of 8 * size bytes (16-byte loads, 8 for I8) and one or two
// 16-byte stores.
//
// Conversions to f32, and the CUDA built-in each plain C++ cast maps to:
//   F16:  bits, exactly (gl_h2f_bits, as half::f16::to_f32).
//   BF16: bits << 16, NaN payloads kept (GGML_BF16_TO_FP32).
//   F64:  (float) x: cvt.rn.f32.f64, i.e. __double2float_rn, round to
//         nearest even like the host's cvtsd2ss and Rust's `as f32`. A NaN is
//         built from bits (sign | 0x7fc00000 | top 23 payload bits), as x86
//         and aarch64 CPUs convert it (the GPU would make 0x7fffffff).
//   I8, I16: (float) x, exact.
//   I32:  (float) x: cvt.rn.f32.s32 (__int2float_rn), round to nearest even.
//   I64:  (float) x: cvt.rn.f32.s64 (__ll2float_rn), round to nearest even.

#if !defined(GL_NVRTC) && !defined(GL_HOST)
#include "common.cuh"
#endif

// f64 bits (lo, hi words) -> f32 bits, as the CPU's `f64 as f32`.
static __device__ __forceinline__ gl_u32 gl_d2f_bits(gl_u32 lo, gl_u32 hi) {
    const gl_u32 mag = hi & 0x7FFFFFFFu;
    if (mag > 0x7FF00000u || (mag == 0x7FF00000u && lo != 0)) {
        return (hi & 0x80000000u) | 0x7FC00000u | ((hi & 0x000FFFFFu) << 3) | (lo >> 29);
    }
    return gl_f2u(static_cast<float>(gl_u2d((static_cast<gl_u64>(hi) << 32) | lo)));
}

struct gl_plain_f32 {
    enum { SIZE = 4 };
    static __device__ __forceinline__ gl_u32 bits(const gl_u32* w, int i) { return w[i]; }
    static __device__ __forceinline__ gl_u32 bits1(const gl_u8* p) { return gl_ld32<4>(p); }
};

struct gl_plain_f16 {
    enum { SIZE = 2 };
    static __device__ __forceinline__ gl_u32 bits(const gl_u32* w, int i) {
        return gl_h2f_bits(w[i / 2] >> (16 * (i % 2)));
    }
    static __device__ __forceinline__ gl_u32 bits1(const gl_u8* p) {
        return gl_h2f_bits(gl_ld16(p));
    }
};

struct gl_plain_bf16 {
    enum { SIZE = 2 };
    static __device__ __forceinline__ gl_u32 bits(const gl_u32* w, int i) {
        return ((w[i / 2] >> (16 * (i % 2))) & 0xFFFFu) << 16;
    }
    static __device__ __forceinline__ gl_u32 bits1(const gl_u8* p) { return gl_ld16(p) << 16; }
};

struct gl_plain_f64 {
    enum { SIZE = 8 };
    static __device__ __forceinline__ gl_u32 bits(const gl_u32* w, int i) {
        return gl_d2f_bits(w[2 * i], w[2 * i + 1]);
    }
    static __device__ __forceinline__ gl_u32 bits1(const gl_u8* p) {
        return gl_d2f_bits(gl_ld32<8>(p), gl_ld32<8>(p + 4));
    }
};

struct gl_plain_i8 {
    enum { SIZE = 1 };
    static __device__ __forceinline__ gl_u32 bits(const gl_u32* w, int i) {
        return gl_f2u(static_cast<float>(static_cast<gl_i8>(w[i / 4] >> (8 * (i % 4)))));
    }
    static __device__ __forceinline__ gl_u32 bits1(const gl_u8* p) {
        return gl_f2u(static_cast<float>(static_cast<gl_i8>(gl_ld8(p))));
    }
};

struct gl_plain_i16 {
    enum { SIZE = 2 };
    static __device__ __forceinline__ gl_u32 bits(const gl_u32* w, int i) {
        return gl_f2u(static_cast<float>(static_cast<gl_i16>(w[i / 2] >> (16 * (i % 2)))));
    }
    static __device__ __forceinline__ gl_u32 bits1(const gl_u8* p) {
        return gl_f2u(static_cast<float>(static_cast<gl_i16>(gl_ld16(p))));
    }
};

struct gl_plain_i32 {
    enum { SIZE = 4 };
    static __device__ __forceinline__ gl_u32 bits(const gl_u32* w, int i) {
        return gl_f2u(static_cast<float>(static_cast<gl_i32>(w[i])));
    }
    static __device__ __forceinline__ gl_u32 bits1(const gl_u8* p) {
        return gl_f2u(static_cast<float>(static_cast<gl_i32>(gl_ld32<4>(p))));
    }
};

struct gl_plain_i64 {
    enum { SIZE = 8 };
    static __device__ __forceinline__ float cvt(gl_u32 lo, gl_u32 hi) {
        return static_cast<float>(static_cast<gl_i64>((static_cast<gl_u64>(hi) << 32) | lo));
    }
    static __device__ __forceinline__ gl_u32 bits(const gl_u32* w, int i) {
        return gl_f2u(cvt(w[2 * i], w[2 * i + 1]));
    }
    static __device__ __forceinline__ gl_u32 bits1(const gl_u8* p) {
        return gl_f2u(cvt(gl_ld32<8>(p), gl_ld32<8>(p + 4)));
    }
};

// clang-format off
extern "C" __global__ void gl_f32_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_copy<4>(src, dst, n_blocks); }
extern "C" __global__ void gl_f32_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_f32, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_f32_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_f32, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_f16_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_f16, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_f16_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_copy<2>(src, dst, n_blocks); }
extern "C" __global__ void gl_f16_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_f16, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_bf16_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_bf16, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_bf16_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_bf16, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_bf16_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_copy<2>(src, dst, n_blocks); }
extern "C" __global__ void gl_f64_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_f64, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_f64_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_f64, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_f64_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_f64, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_i8_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_i8, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_i8_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_i8, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_i8_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_i8, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_i16_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_i16, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_i16_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_i16, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_i16_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_i16, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_i32_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_i32, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_i32_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_i32, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_i32_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_i32, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_i64_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_i64, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_i64_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_i64, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_i64_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_plain<gl_plain_i64, gl_out_bf16>(src, dst, n_blocks); }
// clang-format on
