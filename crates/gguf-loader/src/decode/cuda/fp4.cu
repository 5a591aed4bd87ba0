// fp4.cu: MXFP4 and NVFP4 (E2M1 codes, two per byte), as decode/fp4.rs
// computes them: y = (float) kvalues_mxfp4[code] * d, with d the E8M0 scale
// halved (MXFP4) or the UE4M3 scale halved (NVFP4, from the generated table
// gl_ue4m3_half, checked against fp4.rs's ue4m3_to_fp32 by the host tests).
//
// Thread mapping: MXFP4 (32 values) is 4 units as Q4_0 (low nibbles of
// qs[0..8], qs[8..16], then the high ones); NVFP4 (64 values) is 8 units,
// unit s the low (s even) or high nibbles of sub-block s / 2's 8 qs bytes.

#if !defined(GL_NVRTC) && !defined(GL_HOST)
#include "common.cuh"
#endif

// ggml_e8m0_to_fp32_half: 2^(x - 128) from bits, the two smallest exponents
// as subnormals; 0xFF is not special (2^127).
static __device__ __forceinline__ float gl_e8m0_half(gl_u32 x) {
    return gl_u2f(x < 2 ? (0x00200000u << x) : ((x - 1) << 23));
}

// MXFP4: 17 bytes (unaligned): e, qs[16].
struct gl_mxfp4 {
    enum { BYTES = 17, UNITS = 4 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const float d = gl_e8m0_half(gl_ld8(b));
        gl_u32 c[8];
        gl_nibbles32<1>(b + 1, s, c);
        for (int i = 0; i < 8; i++) {
            y[i] = static_cast<float>(gl_kvalues_mxfp4[c[i]]) * d;
        }
    }
};

// NVFP4: 36 bytes (4-aligned): d[4] (UE4M3, one per 16 values), qs[32].
struct gl_nvfp4 {
    enum { BYTES = 36, UNITS = 8 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const gl_u32 sb = s >> 1;
        const float d = gl_u2f(gl_ue4m3_half[gl_ld8(b + sb)]);
        const gl_u64 q = gl_ld64<4>(b + 4 + 8 * sb);
        const int shift = 4 * (s & 1);
        for (int i = 0; i < 8; i++) {
            y[i] = static_cast<float>(gl_kvalues_mxfp4[(gl_byte(q, i) >> shift) & 0xF]) * d;
        }
    }
};

// clang-format off
extern "C" __global__ void gl_mxfp4_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_mxfp4, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_mxfp4_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_mxfp4, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_mxfp4_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_mxfp4, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_nvfp4_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_nvfp4, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_nvfp4_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_nvfp4, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_nvfp4_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_nvfp4, gl_out_bf16>(src, dst, n_blocks); }
// clang-format on
