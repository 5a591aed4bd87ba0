// ternary.cu: TQ1_0 and TQ2_0 (values in {-1, 0, +1} times an f16 scale),
// as decode/ternary.rs computes them: y = (float)(q - 1) * d.
//
// Thread mapping: 32 units of 8 outputs per 256-value block. TQ2_0: unit s
// is bit pair l = (s / 4) % 4 of qs bytes 32(s / 16) + 8(s % 4) .. + 8.
// TQ1_0 (outputs: digit n of every byte of a group before digit n + 1):
// units 0..20 are digit s / 4 of qs bytes 8(s % 4) .. + 8 (the 32-byte
// group), units 20..30 digit t / 2 of qs bytes 32 + 8(t % 2) .. + 8 (t = s -
// 20, the 16-byte group), units 30 and 31 digits 2(s - 30) and 2(s - 30) + 1
// of the four qh bytes.

#if !defined(GL_NVRTC) && !defined(GL_HOST)
#include "common.cuh"
#endif

// Powers of three: TQ1_0's digit n of a byte is read by multiplying by 3^n.
static __device__ const gl_u8 gl_pow3[6] = {1, 3, 9, 27, 81, 243};

// Digit n of a TQ1_0 byte, as ggml extracts it: q = byte * 3^n (wrapping in
// uint8_t), ((uint16_t) q * 3) >> 8, minus 1, converted, times d.
static __device__ __forceinline__ float gl_trit(gl_u32 byte, gl_u32 n, float d) {
    const gl_u32 q = (byte * gl_pow3[n]) & 0xFF;
    const gl_i32 xi = static_cast<gl_i32>((q * 3) >> 8);
    return static_cast<float>(xi - 1) * d;
}

// TQ1_0: 54 bytes (2-aligned): qs[48] (5 digits per byte), qh[4] (4 digits
// per byte), d.
struct gl_tq1_0 {
    enum { BYTES = 54, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const float d = gl_h2f(gl_ld16(b + 52));
        if (s < 30) {
            gl_u32 n, at;
            if (s < 20) {
                n = s >> 2;
                at = 8 * (s & 3);
            } else {
                n = (s - 20) >> 1;
                at = 32 + 8 * ((s - 20) & 1);
            }
            const gl_u64 q = gl_ld64<2>(b + at);
            for (int i = 0; i < 8; i++) {
                y[i] = gl_trit(gl_byte(q, i), n, d);
            }
        } else {
            const gl_u32 qh = gl_ld32<2>(b + 48);
            for (int i = 0; i < 8; i++) {
                y[i] = gl_trit((qh >> (8 * (i & 3))) & 0xFF, 2 * (s - 30) + (i >> 2), d);
            }
        }
    }
};

// TQ2_0: 66 bytes (2-aligned): qs[64] (2-bit codes), d.
struct gl_tq2_0 {
    enum { BYTES = 66, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const float d = gl_h2f(gl_ld16(b + 64));
        const gl_u64 q = gl_ld64<2>(b + 32 * (s >> 4) + 8 * (s & 3));
        const int shift = 2 * ((s >> 2) & 3);
        for (int i = 0; i < 8; i++) {
            const gl_i32 x = static_cast<gl_i32>((gl_byte(q, i) >> shift) & 3) - 1;
            y[i] = static_cast<float>(x) * d;
        }
    }
};

// clang-format off
extern "C" __global__ void gl_tq1_0_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_tq1_0, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_tq1_0_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_tq1_0, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_tq1_0_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_tq1_0, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_tq2_0_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_tq2_0, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_tq2_0_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_tq2_0, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_tq2_0_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_tq2_0, gl_out_bf16>(src, dst, n_blocks); }
// clang-format on
