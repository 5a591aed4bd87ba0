// kquants.cu: Q2_K, Q3_K, Q4_K, Q5_K and Q6_K (256-value super-blocks), as
// decode/kquants.rs computes them: the sub-block scale d * sc rounded to f32
// first, then times the quant, then the min subtracted (Q2_K, Q4_K, Q5_K).
//
// Thread mapping: 32 units of 8 consecutive outputs per super-block. The 8
// outputs of a unit always lie in one sub-block (16 values in Q2_K, Q3_K,
// Q6_K; 32 in Q4_K, Q5_K), so each thread decodes its one scale (and min)
// once, then 8 quants from 8 consecutive bytes of qs (and qh / hmask):
//   Q2_K, Q3_K: unit s is group g = s / 2 (outputs 16g..16g+16), half of it
//     s % 2; group g reads qs bytes 32(g / 8) + 16(g % 2) + l at bit shift
//     2((g / 2) % 4) (Q3_K: hmask bytes 16(g % 2) + l, bit 4(g / 8) + (g / 2) % 4).
//   Q4_K, Q5_K: unit s is in the 64-value chunk j = s / 8, low nibbles for
//     (s / 4) % 2 == 0, else high; qs bytes 32j + 8(s % 4) .. + 8.
//   Q6_K: unit s is in half n = s / 16, quarter k = (s / 4) % 4 (outputs
//     128n + 32k + l); ql bytes 64n + 32(k % 2) + l, nibble k / 2; qh bytes
//     32n + l, bits 2k, 2k + 1.

#if !defined(GL_NVRTC) && !defined(GL_HOST)
#include "common.cuh"
#endif

// Q2_K: 84 bytes (4-aligned): scales[16] (4-bit scale | 4-bit min << 4),
// qs[64], d, dmin. y = (d * sc) * q - (dmin * m).
struct gl_q2_k {
    enum { BYTES = 84, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const gl_u32 g = s >> 1;
        const float d = gl_h2f(gl_ld16(b + 80));
        const float min = gl_h2f(gl_ld16(b + 82));
        const gl_u32 sc = gl_ld8(b + g);
        const float dl = d * static_cast<float>(sc & 0xF);
        const float ml = min * static_cast<float>(sc >> 4);
        const gl_u64 q = gl_ld64<4>(b + 16 + 32 * (g >> 3) + 16 * (g & 1) + 8 * (s & 1));
        const int shift = 2 * ((g >> 1) & 3);
        for (int i = 0; i < 8; i++) {
            y[i] = dl * static_cast<float>((gl_byte(q, i) >> shift) & 3) - ml;
        }
    }
};

// Q3_K: 110 bytes (2-aligned): hmask[32], qs[64], scales[12] (sixteen 6-bit
// scales biased by 32), d. A quant is its 2 bits from qs minus 4 where its
// hmask bit is clear. y = (d * (sc - 32)) * q.
struct gl_q3_k {
    enum { BYTES = 110, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const gl_u32 g = s >> 1;
        const float d_all = gl_h2f(gl_ld16(b + 108));
        // Scale g: low 4 bits in byte g % 8 (low nibble for g < 8), high 2
        // bits in byte 8 + g % 4 at bit 2 (g / 4) (ggml's kmask1/kmask2).
        const gl_u8* packed = b + 96;
        const gl_u32 low = (gl_ld8(packed + (g & 7)) >> (4 * (g >> 3))) & 0xF;
        const gl_u32 high = (gl_ld8(packed + 8 + (g & 3)) >> (2 * (g >> 2))) & 3;
        const gl_i32 scale = static_cast<gl_i32>(low | (high << 4));
        const float dl = d_all * static_cast<float>(scale - 32);
        const gl_u32 l0 = 16 * (g & 1) + 8 * (s & 1);
        const gl_u64 q = gl_ld64<2>(b + 32 + 32 * (g >> 3) + l0);
        const gl_u64 hm = gl_ld64<2>(b + l0);
        const int shift = 2 * ((g >> 1) & 3);
        const gl_u32 m = 1u << (4 * (g >> 3) + ((g >> 1) & 3));
        for (int i = 0; i < 8; i++) {
            const gl_i32 lo = static_cast<gl_i32>((gl_byte(q, i) >> shift) & 3);
            const gl_i32 hi = (gl_byte(hm, i) & m) != 0 ? 0 : 4;
            y[i] = dl * static_cast<float>(lo - hi);
        }
    }
};

// The scale d * sc and min dmin * m of 32-value group j (0..8) of a Q4_K /
// Q5_K block b (d, dmin, then the 12 packed bytes of 6-bit scales and mins,
// unpacked as ggml's get_scale_min_k4).
static __device__ __forceinline__ void gl_k4_scale_min(const gl_u8* b, gl_u32 j, float* d1,
                                                       float* m1) {
    const float d = gl_h2f(gl_ld16(b));
    const float min = gl_h2f(gl_ld16(b + 2));
    const gl_u8* q = b + 4;
    gl_u32 sc, m;
    if (j < 4) {
        sc = gl_ld8(q + j) & 63;
        m = gl_ld8(q + j + 4) & 63;
    } else {
        sc = (gl_ld8(q + j + 4) & 0xF) | ((gl_ld8(q + j - 4) >> 6) << 4);
        m = (gl_ld8(q + j + 4) >> 4) | ((gl_ld8(q + j) >> 6) << 4);
    }
    *d1 = d * static_cast<float>(sc);
    *m1 = min * static_cast<float>(m);
}

// Q4_K: 144 bytes (16-aligned): d, dmin, scales[12], qs[128].
// y = (d * sc) * q - (dmin * m).
struct gl_q4_k {
    enum { BYTES = 144, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const gl_u32 j = s >> 3;
        const gl_u32 hi = (s >> 2) & 1;
        float d1, m1;
        gl_k4_scale_min(b, 2 * j + hi, &d1, &m1);
        const gl_u64 q = gl_ld64<8>(b + 16 + 32 * j + 8 * (s & 3));
        const int shift = 4 * hi;
        for (int i = 0; i < 8; i++) {
            y[i] = d1 * static_cast<float>((gl_byte(q, i) >> shift) & 0xF) - m1;
        }
    }
};

// Q5_K: 176 bytes (16-aligned): d, dmin, scales[12], qh[32], qs[128]. The
// fifth bit of element l of 32-value group g is bit g of qh[l].
struct gl_q5_k {
    enum { BYTES = 176, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const gl_u32 j = s >> 3;
        const gl_u32 hi = (s >> 2) & 1;
        float d1, m1;
        gl_k4_scale_min(b, 2 * j + hi, &d1, &m1);
        const gl_u32 l0 = 8 * (s & 3);
        const gl_u64 q = gl_ld64<8>(b + 48 + 32 * j + l0);
        const gl_u64 qh = gl_ld64<8>(b + 16 + l0);
        const int shift = 4 * hi;
        const gl_u32 u = 1u << (2 * j + hi);
        for (int i = 0; i < 8; i++) {
            const gl_u32 h = (gl_byte(qh, i) & u) != 0 ? 16 : 0;
            y[i] = d1 * static_cast<float>(((gl_byte(q, i) >> shift) & 0xF) + h) - m1;
        }
    }
};

// Q6_K: 210 bytes (2-aligned): ql[128], qh[64], scales[16] (int8), d.
// y = (d * sc) * (q - 32).
struct gl_q6_k {
    enum { BYTES = 210, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const gl_u32 n = s >> 4;
        const gl_u32 k = (s >> 2) & 3;
        const gl_u32 l0 = 8 * (s & 3);
        const float d = gl_h2f(gl_ld16(b + 208));
        // Elements l < 16 of each quarter use scale 2k, the others 2k + 1.
        const gl_i8 sc = static_cast<gl_i8>(gl_ld8(b + 192 + 8 * n + (l0 >> 4) + 2 * k));
        const float sd = d * static_cast<float>(sc);
        const gl_u64 ql = gl_ld64<2>(b + 64 * n + 32 * (k & 1) + l0);
        const gl_u64 qh = gl_ld64<2>(b + 128 + 32 * n + l0);
        const int shift = 4 * (k >> 1);
        for (int i = 0; i < 8; i++) {
            const gl_u32 lo = (gl_byte(ql, i) >> shift) & 0xF;
            const gl_u32 hi = (gl_byte(qh, i) >> (2 * k)) & 3;
            const gl_i32 q = static_cast<gl_i32>(lo | (hi << 4)) - 32;
            y[i] = sd * static_cast<float>(q);
        }
    }
};

// clang-format off
extern "C" __global__ void gl_q2_k_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q2_k, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_q2_k_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q2_k, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q2_k_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q2_k, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q3_k_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q3_k, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_q3_k_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q3_k, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q3_k_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q3_k, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q4_k_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q4_k, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_q4_k_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q4_k, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q4_k_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q4_k, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q5_k_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q5_k, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_q5_k_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q5_k, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q5_k_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q5_k, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q6_k_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q6_k, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_q6_k_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q6_k, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q6_k_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q6_k, gl_out_bf16>(src, dst, n_blocks); }
// clang-format on
