// iquants.cu: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, IQ4_NL
// and IQ4_XS, as decode/iquants.rs computes them, statement for statement
// (e.g. IQ2_XXS: db = d * (0.5 + ls) * 0.25 evaluated left to right, then
// y = db * grid * sign, a multiplication by +-1.0 like the CPU's).
//
// Thread mapping: the 256-value types are 32 units of 8 outputs; unit s is
// grid row l = s % 4 of 32-value group ib = s / 4, i.e. exactly one 8-value
// grid entry (IQ3: two 4-value entries) with one scale, one index and one
// sign byte. IQ4_NL (32 values) is 4 units as Q4_0; IQ4_XS unit s reads the
// qs bytes 16(s / 4) + 8(s % 2) .. + 8, low nibbles for (s / 2) % 2 == 0.
// Grid and sign tables (tables.cuh) are read from global memory through the
// cache: their indices differ from thread to thread.

#if !defined(GL_NVRTC) && !defined(GL_HOST)
#include "common.cuh"
#endif

// The sign of element j under sign byte signs: (signs & kmask[j]) ? -1 : 1.
static __device__ __forceinline__ float gl_iq_sign(gl_u32 signs, int j) {
    return (signs & gl_kmask_iq2xs[j]) != 0 ? -1.0f : 1.0f;
}

// y[j] = db * grid byte j * sign j, for an 8-byte grid entry.
static __device__ __forceinline__ void gl_iq_grid8(float db, gl_u64 grid, gl_u32 signs, float* y) {
    for (int j = 0; j < 8; j++) {
        y[j] = db * static_cast<float>(gl_byte(grid, j)) * gl_iq_sign(signs, j);
    }
}

// y[j] = db * byte j of grid1 (then grid2) * sign j, for two 4-byte entries.
static __device__ __forceinline__ void gl_iq_grid4x2(float db, gl_u32 grid1, gl_u32 grid2,
                                                     gl_u32 signs, float* y) {
    for (int j = 0; j < 4; j++) {
        y[j] = db * static_cast<float>((grid1 >> (8 * j)) & 0xFF) * gl_iq_sign(signs, j);
        y[j + 4] = db * static_cast<float>((grid2 >> (8 * j)) & 0xFF) * gl_iq_sign(signs, j + 4);
    }
}

// IQ2_XXS: 66 bytes (2-aligned): d, qs[64]: per group, four grid index bytes
// then a u32 of four 7-bit sign indices and a 4-bit scale (top bits).
struct gl_iq2_xxs {
    enum { BYTES = 66, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const gl_u32 ib = s >> 2, l = s & 3;
        const float d = gl_h2f(gl_ld16(b));
        const gl_u32 aux1 = gl_ld32<2>(b + 2 + 8 * ib + 4);
        const float db = d * (0.5f + static_cast<float>(aux1 >> 28)) * 0.25f;
        const gl_u64 grid = gl_iq2xxs_grid[gl_ld8(b + 2 + 8 * ib + l)];
        const gl_u32 signs = gl_ksigns_iq2xs[(aux1 >> (7 * l)) & 127];
        gl_iq_grid8(db, grid, signs, y);
    }
};

// IQ2_XS: 74 bytes (2-aligned): d, qs[32] (u16: 9-bit grid index, 7-bit
// sign index), scales[8] (two 4-bit scales per group).
struct gl_iq2_xs {
    enum { BYTES = 74, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const gl_u32 ib = s >> 2, l = s & 3;
        const float d = gl_h2f(gl_ld16(b));
        const gl_u32 ls = (gl_ld8(b + 66 + ib) >> (4 * (l >> 1))) & 0xF;
        const float db = d * (0.5f + static_cast<float>(ls)) * 0.25f;
        const gl_u32 q = gl_ld16(b + 2 + 2 * (4 * ib + l));
        gl_iq_grid8(db, gl_iq2xs_grid[q & 511], gl_ksigns_iq2xs[q >> 9], y);
    }
};

// IQ2_S: 82 bytes (2-aligned): d, qs[32] grid index low bytes, signs[32],
// qh[8] (2 index bits per row), scales[8].
struct gl_iq2_s {
    enum { BYTES = 82, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const gl_u32 ib = s >> 2, l = s & 3;
        const float d = gl_h2f(gl_ld16(b));
        const gl_u32 ls = (gl_ld8(b + 74 + ib) >> (4 * (l >> 1))) & 0xF;
        const float dl = d * (0.5f + static_cast<float>(ls)) * 0.25f;
        const gl_u32 idx = gl_ld8(b + 2 + 4 * ib + l) | ((gl_ld8(b + 66 + ib) << (8 - 2 * l)) & 0x300);
        gl_iq_grid8(dl, gl_iq2s_grid[idx], gl_ld8(b + 2 + 32 + 4 * ib + l), y);
    }
};

// IQ3_XXS: 98 bytes (2-aligned): d, qs[64] grid indices, then eight u32 of
// four 7-bit sign indices and a 4-bit scale.
struct gl_iq3_xxs {
    enum { BYTES = 98, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const gl_u32 ib = s >> 2, l = s & 3;
        const float d = gl_h2f(gl_ld16(b));
        const gl_u32 aux32 = gl_ld32<2>(b + 2 + 64 + 4 * ib);
        const float db = d * (0.5f + static_cast<float>(aux32 >> 28)) * 0.5f;
        const gl_u32 signs = gl_ksigns_iq2xs[(aux32 >> (7 * l)) & 127];
        const gl_u32 q = gl_ld16(b + 2 + 8 * ib + 2 * l);
        gl_iq_grid4x2(db, gl_iq3xxs_grid[q & 0xFF], gl_iq3xxs_grid[q >> 8], signs, y);
    }
};

// IQ3_S: 110 bytes (2-aligned): d, qs[64] grid index low bytes, qh[8]
// (ninth index bits), signs[32], scales[4] (two 4-bit scales per 64 values).
struct gl_iq3_s {
    enum { BYTES = 110, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const gl_u32 ib = s >> 2, l = s & 3;
        const float d = gl_h2f(gl_ld16(b));
        const gl_u32 sc = (gl_ld8(b + 106 + (ib >> 1)) >> (4 * (ib & 1))) & 0xF;
        // d * (1 + 2 * sc): the int is converted, then multiplied.
        const float db = d * static_cast<float>(1 + 2 * static_cast<gl_i32>(sc));
        const gl_u32 h = gl_ld8(b + 66 + ib);
        const gl_u32 q = gl_ld16(b + 2 + 8 * ib + 2 * l);
        const gl_u32 grid1 = gl_iq3s_grid[(q & 0xFF) | ((h << (8 - 2 * l)) & 256)];
        const gl_u32 grid2 = gl_iq3s_grid[(q >> 8) | ((h << (7 - 2 * l)) & 256)];
        gl_iq_grid4x2(db, grid1, grid2, gl_ld8(b + 74 + 4 * ib + l), y);
    }
};

// y[j] = dl * (grid byte j as int8 + delta).
static __device__ __forceinline__ void gl_iq1_grid(float dl, gl_u64 grid, float delta, float* y) {
    for (int j = 0; j < 8; j++) {
        y[j] = dl * (static_cast<float>(static_cast<gl_i8>(gl_byte(grid, j))) + delta);
    }
}

// IQ1_S: 50 bytes (2-aligned): d, qs[32] grid index low bytes, qh[8] (u16:
// four 3-bit index high parts, a 3-bit scale, the delta's sign).
struct gl_iq1_s {
    enum { BYTES = 50, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const gl_u32 ib = s >> 2, l = s & 3;
        const float d = gl_h2f(gl_ld16(b));
        const gl_u32 qh = gl_ld16(b + 34 + 2 * ib);
        const float dl = d * static_cast<float>(2 * static_cast<gl_i32>((qh >> 12) & 7) + 1);
        const float delta = (qh & 0x8000) != 0 ? -0.125f : 0.125f;
        const gl_u32 idx = gl_ld8(b + 2 + 4 * ib + l) | (((qh >> (3 * l)) & 7) << 8);
        gl_iq1_grid(dl, gl_iq1s_grid[idx], delta, y);
    }
};

// IQ1_M: 56 bytes (8-aligned): qs[32], qh[16] (per row 3 index bits and the
// delta's sign), scales[8] (four u16: four 3-bit scales each, and in their
// top nibbles the f16 super-block scale).
struct gl_iq1_m {
    enum { BYTES = 56, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const gl_u32 ib = s >> 2, l = s & 3;
        const gl_u64 sc = gl_ld64<8>(b + 48);
        const gl_u32 sc0 = static_cast<gl_u32>(sc) & 0xFFFF, sc1 = static_cast<gl_u32>(sc >> 16) & 0xFFFF;
        const gl_u32 sc2 = static_cast<gl_u32>(sc >> 32) & 0xFFFF, sc3 = static_cast<gl_u32>(sc >> 48);
        const float d = gl_h2f((sc0 >> 12) | ((sc1 >> 8) & 0x00F0) | ((sc2 >> 4) & 0x0F00) | (sc3 & 0xF000));
        // Rows 0, 1 use the first 3-bit scale of the group, rows 2, 3 the next.
        const gl_u32 w = static_cast<gl_u32>(sc >> (16 * (ib >> 1))) & 0xFFFF;
        const gl_u32 ls = (w >> (6 * (ib & 1) + 3 * (l >> 1))) & 0x7;
        const float dl = d * static_cast<float>(2 * static_cast<gl_i32>(ls) + 1);
        const gl_u32 h = gl_ld8(b + 32 + 2 * ib + (l >> 1));
        const gl_u32 idx = gl_ld8(b + 4 * ib + l) | ((h << ((l & 1) != 0 ? 4 : 8)) & 0x700);
        const float delta = (h & ((l & 1) != 0 ? 0x80 : 0x08)) != 0 ? -0.125f : 0.125f;
        gl_iq1_grid(dl, gl_iq1s_grid[idx], delta, y);
    }
};

// IQ4_NL: 18 bytes (2-aligned): d, qs[16] (indices into kvalues_iq4nl),
// element j low nibble, j + 16 high. y = d * kvalue.
struct gl_iq4_nl {
    enum { BYTES = 18, UNITS = 4 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const float d = gl_h2f(gl_ld16(b));
        gl_u32 c[8];
        gl_nibbles32<2>(b + 2, s, c);
        for (int i = 0; i < 8; i++) {
            y[i] = d * static_cast<float>(gl_kvalues_iq4nl[c[i]]);
        }
    }
};

// IQ4_XS: 136 bytes (8-aligned): d, scales_h (u16), scales_l[4], qs[128].
// Group ib's 6-bit scale: low nibble from scales_l, top 2 bits from
// scales_h, biased by 32. y = (d * (ls - 32)) * kvalue.
struct gl_iq4_xs {
    enum { BYTES = 136, UNITS = 32 };
    static __device__ __forceinline__ void unit(const gl_u8* b, gl_u32 s, float* y) {
        const gl_u32 ib = s >> 2;
        const float d = gl_h2f(gl_ld16(b));
        const gl_u32 sh = gl_ld16(b + 2);
        const gl_i32 ls = static_cast<gl_i32>(((gl_ld8(b + 4 + (ib >> 1)) >> (4 * (ib & 1))) & 0xF) |
                                              (((sh >> (2 * ib)) & 3) << 4));
        const float dl = d * static_cast<float>(ls - 32);
        const gl_u64 q = gl_ld64<8>(b + 8 + 16 * ib + 8 * (s & 1));
        const int shift = 4 * ((s >> 1) & 1);
        for (int i = 0; i < 8; i++) {
            y[i] = dl * static_cast<float>(gl_kvalues_iq4nl[(gl_byte(q, i) >> shift) & 0xF]);
        }
    }
};

// clang-format off
extern "C" __global__ void gl_iq2_xxs_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq2_xxs, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq2_xxs_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq2_xxs, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq2_xxs_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq2_xxs, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq2_xs_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq2_xs, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq2_xs_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq2_xs, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq2_xs_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq2_xs, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq2_s_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq2_s, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq2_s_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq2_s, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq2_s_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq2_s, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq3_xxs_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq3_xxs, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq3_xxs_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq3_xxs, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq3_xxs_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq3_xxs, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq3_s_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq3_s, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq3_s_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq3_s, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq3_s_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq3_s, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq1_s_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq1_s, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq1_s_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq1_s, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq1_s_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq1_s, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq1_m_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq1_m, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq1_m_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq1_m, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq1_m_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq1_m, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq4_nl_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq4_nl, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq4_nl_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq4_nl, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq4_nl_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq4_nl, gl_out_bf16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq4_xs_to_f32(const unsigned char* __restrict__ src, float* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq4_xs, gl_out_f32>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq4_xs_to_f16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq4_xs, gl_out_f16>(src, dst, n_blocks); }
extern "C" __global__ void gl_iq4_xs_to_bf16(const unsigned char* __restrict__ src, unsigned short* __restrict__ dst, unsigned long long n_blocks) { gl_run_blocks<gl_iq4_xs, gl_out_bf16>(src, dst, n_blocks); }
// clang-format on
