// legacy.cu: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q1_0, Q2_0 and Q8_K, as
// decode/legacy.rs computes them (an integer quant converted to f32 times
// the f32 scale; a min added as a separate operation).
//
// Thread mapping: a unit is 8 consecutive outputs of one block (see
// common.cuh). 32-value blocks (Q4_*, Q5_*, Q8_0, Q8_1) are 4 units: units
// 0 and 1 take the low nibbles of qs[0..8] and qs[8..16] (outputs 0..16),
// units 2 and 3 the high nibbles (outputs 16..32); Q8 units read qs[8s..8s+8].
// Q1_0 (128 values) is 16 units of one qs byte each, Q2_0 (64) 8 units of two
// bytes, Q8_K (256) 32 units of 8 quants.

#if !defined(GL_NVRTC) && !defined(GL_HOST)
#include "common.cuh"
#endif

// Q4_0: 18 bytes (2-aligned): d, qs[16]. y = (q - 8) * d.
struct gl_q4_0 {
    enum { BYTES = 18, UNITS = 4 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const float d = gl_h2f(gl_ld16(b));
        gl_u32 c[8];
        gl_nibbles32<2>(b + 2, s, c);
        for (int i = 0; i < 8; i++) {
            y[i] = static_cast<float>(static_cast<gl_i32>(c[i]) - 8) * d;
        }
    }
};

// Q4_1: 20 bytes (4-aligned): d, m, qs[16]. y = q * d + m.
struct gl_q4_1 {
    enum { BYTES = 20, UNITS = 4 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const float d = gl_h2f(gl_ld16(b));
        const float m = gl_h2f(gl_ld16(b + 2));
        gl_u32 c[8];
        gl_nibbles32<4>(b + 4, s, c);
        for (int i = 0; i < 8; i++) {
            y[i] = static_cast<float>(static_cast<gl_i32>(c[i])) * d + m;
        }
    }
};

// The fifth bit (as 16 or 0) of element i of unit s of a Q5_0 / Q5_1
// block: element j < 16 takes bit j of qh, element j + 16 bit j + 16.
static __device__ __forceinline__ gl_u32 gl_q5_high(gl_u32 qh, gl_u32 s, int i) {
    return ((qh >> (8 * (s & 1) + 16 * (s >> 1) + i)) & 1) << 4;
}

// Q5_0: 22 bytes (2-aligned): d, qh (u32), qs[16]. Element j < 16 takes bit
// j of qh as its fifth bit, element j + 16 bit j + 16. y = (q - 16) * d.
struct gl_q5_0 {
    enum { BYTES = 22, UNITS = 4 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const float d = gl_h2f(gl_ld16(b));
        const gl_u32 qh = gl_ld32<2>(b + 2);
        gl_u32 c[8];
        gl_nibbles32<2>(b + 6, s, c);
        for (int i = 0; i < 8; i++) {
            const gl_i32 x = static_cast<gl_i32>(c[i] | gl_q5_high(qh, s, i)) - 16;
            y[i] = static_cast<float>(x) * d;
        }
    }
};

// Q5_1: 24 bytes (8-aligned): d, m, qh (u32), qs[16]. y = q * d + m.
struct gl_q5_1 {
    enum { BYTES = 24, UNITS = 4 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const float d = gl_h2f(gl_ld16(b));
        const float m = gl_h2f(gl_ld16(b + 2));
        const gl_u32 qh = gl_ld32<4>(b + 4);
        gl_u32 c[8];
        gl_nibbles32<8>(b + 8, s, c);
        for (int i = 0; i < 8; i++) {
            const gl_i32 x = static_cast<gl_i32>(c[i] | gl_q5_high(qh, s, i));
            y[i] = static_cast<float>(x) * d + m;
        }
    }
};

// 8 signed quants times d, as Q8_0 / Q8_1 write it (q * d).
static __device__ __forceinline__ void gl_q8_times(gl_u64 q, float d, float* y) {
    for (int i = 0; i < 8; i++) {
        y[i] = static_cast<float>(static_cast<gl_i8>(gl_byte(q, i))) * d;
    }
}

// Q8_0: 34 bytes (2-aligned): d, qs[32]. y = q * d.
struct gl_q8_0 {
    enum { BYTES = 34, UNITS = 4 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        gl_q8_times(gl_ld64<2>(b + 2 + 8 * s), gl_h2f(gl_ld16(b)), y);
    }
};

// Q8_1: 36 bytes (4-aligned): d, s (unused), qs[32]. y = q * d.
struct gl_q8_1 {
    enum { BYTES = 36, UNITS = 4 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        gl_q8_times(gl_ld64<4>(b + 4 + 8 * s), gl_h2f(gl_ld16(b)), y);
    }
};

// Q1_0: 18 bytes (2-aligned): d, qs[16], one bit per value. y = bit ? d : -d.
struct gl_q1_0 {
    enum { BYTES = 18, UNITS = 16 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const float d = gl_h2f(gl_ld16(b));
        const float neg_d = -d;
        const gl_u32 q = gl_ld8(b + 2 + s);
        for (int i = 0; i < 8; i++) {
            y[i] = ((q >> i) & 1) != 0 ? d : neg_d;
        }
    }
};

// Q2_0: 18 bytes (2-aligned): d, qs[16], 2-bit codes. y = (q - 1) * d.
struct gl_q2_0 {
    enum { BYTES = 18, UNITS = 8 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const float d = gl_h2f(gl_ld16(b));
        const gl_u32 q = gl_ld16(b + 2 + 2 * s);
        for (int i = 0; i < 8; i++) {
            const gl_i32 x = static_cast<gl_i32>((q >> (2 * i)) & 3) - 1;
            y[i] = static_cast<float>(x) * d;
        }
    }
};

// Q8_K: 292 bytes (4-aligned): d (f32), qs[256], bsums (unused). y = d * q.
struct gl_q8_k {
    enum { BYTES = 292, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const float d = gl_u2f(gl_ld32<4>(b));
        const gl_u64 q = gl_ld64<4>(b + 4 + 8 * s);
        for (int i = 0; i < 8; i++) {
            y[i] = d * static_cast<float>(static_cast<gl_i8>(gl_byte(q, i)));
        }
    }
};

// clang-format off
extern "C" __global__ void gl_q4_0_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q4_0, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_q4_0_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q4_0, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q4_0_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q4_0, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q4_1_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q4_1, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_q4_1_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q4_1, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q4_1_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q4_1, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q5_0_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q5_0, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_q5_0_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q5_0, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q5_0_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q5_0, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q5_1_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q5_1, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_q5_1_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q5_1, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q5_1_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q5_1, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q8_0_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q8_0, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_q8_0_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q8_0, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q8_0_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q8_0, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q8_1_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q8_1, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_q8_1_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q8_1, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q8_1_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q8_1, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q1_0_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q1_0, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_q1_0_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q1_0, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q1_0_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q1_0, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q2_0_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q2_0, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_q2_0_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q2_0, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q2_0_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q2_0, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q8_k_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q8_k, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_q8_k_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q8_k, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_q8_k_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_q8_k, gl_out_bf16>(src, dst, n_blocks); }
// clang-format on
