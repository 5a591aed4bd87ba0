// The GPU forward pass's kernels (gguf-loader-llm, forward/cuda.rs), compiled
// at run time by NVRTC with no header: f16 conversions by PTX `cvt`, one
// thread block of THREADS per row, head or query. The same text is compiled
// as host C++ by gguf-loader-cuda-host (GL_HOST defined, thread blocks
// emulated with __syncthreads and warp shuffles), and the stand-in driver's
// tests (gguf-loader-fake-cuda, forward_tests.rs) hold its Rust writing of
// these kernels equal to that build, bit for bit.
#define THREADS 256
#ifndef GL_HOST
// f16 <-> f32 by PTX `cvt` (no header). The host C++ test build
// (gguf-loader-cuda-host) defines GL_HOST and gives its own, exact ones.
__device__ __forceinline__ float h2f(unsigned short h) {
    float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;
}
__device__ __forceinline__ unsigned short f2h(float f) {
    unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
#endif
__device__ __forceinline__ float r16(float f) { return h2f(f2h(f)); }

extern "C" __global__ void embed(const unsigned short* table, const unsigned int* ids,
                                 float* out, int d, float scale) {
    const unsigned short* src = table + (unsigned long long)ids[blockIdx.x] * d;
    float* dst = out + (unsigned long long)blockIdx.x * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) dst[i] = h2f(src[i]) * scale;
}

// Each dim-long row of x (one block per row): x * (1 / sqrt(mean(x^2) + eps)) * w,
// the sum of squares in f64 as ggml does.
extern "C" __global__ void rms_norm(float* x, const float* w, int dim, float eps) {
    __shared__ double part[THREADS];
    float* row = x + (unsigned long long)blockIdx.x * dim;
    double s = 0.0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) { double v = row[i]; s += v * v; }
    part[threadIdx.x] = s;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) part[threadIdx.x] += part[threadIdx.x + k];
        __syncthreads();
    }
    const float mean = (float)(part[0] / dim);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) row[i] = row[i] * scale * w[i];
}

// x (f32) to f16, n values.
extern "C" __global__ void to_f16(const float* x, unsigned short* y, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x)
        y[i] = f2h(x[i]);
}

// RoPE of every head (one block per head of a row): cs holds, per row,
// `half` (cos, sin) pairs.
extern "C" __global__ void rope(float* x, const float* cs, int n_heads, int hd, int half, int neox) {
    const int row = blockIdx.x / n_heads;
    float* head = x + (unsigned long long)blockIdx.x * hd;
    const float* t = cs + (unsigned long long)row * half * 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float c = t[2 * i], s = t[2 * i + 1], x0 = head[a], x1 = head[b];
        head[a] = x0 * c - x1 * s;
        head[b] = x0 * s + x1 * c;
    }
}

// The block's maximum of every thread's `m` (NaN ignored), for all threads;
// `red` is free again when it returns.
__device__ float block_max(float m, float* red) {
    red[threadIdx.x] = m;
    __syncthreads();
    for (int k2 = blockDim.x / 2; k2 > 0; k2 >>= 1) {
        if (threadIdx.x < k2) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + k2]);
        __syncthreads();
    }
    m = red[0];
    __syncthreads();
    return m;
}

// The block's sum of every thread's `s` (a tree over the threads), for all
// threads; `red` is free again when it returns.
__device__ float block_add(float s, float* red) {
    red[threadIdx.x] = s;
    __syncthreads();
    for (int k2 = blockDim.x / 2; k2 > 0; k2 >>= 1) {
        if (threadIdx.x < k2) red[threadIdx.x] += red[threadIdx.x + k2];
        __syncthreads();
    }
    s = red[0];
    __syncthreads();
    return s;
}

// Positions whose scores one pass of the attention holds in shared memory;
// a longer span is taken in tiles of this many, with a running maximum and
// sum (the host gives ATT_TILE + hd floats of shared memory then).
#define ATT_TILE 8192

// One block per (query row i, head h): causal (or sliding-window) attention
// over the f16 cache, position p at row p - shift (a sliding-window layer's
// ring; 0 otherwise); queries meet the keys rounded to f16, as in ggml.
// A span of at most ATT_TILE positions: every score in shared memory, then
// the softmax and the weighted values. A longer one: tile by tile, the
// running maximum m, sum s and outputs rescaled by exp(m_old - m_new) as
// each tile raises m (the outputs, one per thread's dimension, kept in
// shared memory after the tile's scores).
extern "C" __global__ void attention(const float* q, const unsigned short* k,
                                     const unsigned short* v, float* out, int n_head, int group,
                                     int hd, int kv_dim, int start, int window, int shift,
                                     float scale) {
    extern __shared__ float sc[];
    __shared__ float red[THREADS];
    const int i = blockIdx.x / n_head, h = blockIdx.x % n_head;
    const int pos = start + i;
    const int lo = window > 0 ? max(0, pos + 1 - window) : 0;
    const int len = pos - lo + 1;
    const int row0 = lo - shift;
    const float* qh = q + ((unsigned long long)i * n_head + h) * hd;
    const int kvh = h / group;
    float* o = out + ((unsigned long long)i * n_head + h) * hd;
    if (len <= ATT_TILE) {
        for (int j = threadIdx.x; j < len; j += blockDim.x) {
            const unsigned short* kj = k + (unsigned long long)(row0 + j) * kv_dim + kvh * hd;
            float s = 0.0f;
            for (int d = 0; d < hd; d++) s += r16(qh[d]) * h2f(kj[d]);
            sc[j] = s * scale;
        }
        __syncthreads();
        float m = __int_as_float(0xff800000); // -inf (NVRTC has no INFINITY without a header)
        for (int j = threadIdx.x; j < len; j += blockDim.x) m = fmaxf(m, sc[j]);
        m = block_max(m, red);
        float s = 0.0f;
        for (int j = threadIdx.x; j < len; j += blockDim.x) { const float e = expf(sc[j] - m); sc[j] = e; s += e; }
        const float inv = 1.0f / block_add(s, red);
        for (int d = threadIdx.x; d < hd; d += blockDim.x) {
            float acc = 0.0f;
            for (int j = 0; j < len; j++)
                acc += sc[j] * inv * h2f(v[(unsigned long long)(row0 + j) * kv_dim + kvh * hd + d]);
            o[d] = acc;
        }
        return;
    }
    float* acc = sc + ATT_TILE;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) acc[d] = 0.0f;
    float m_run = __int_as_float(0xff800000), s_run = 0.0f;
    for (int t0 = 0; t0 < len; t0 += ATT_TILE) {
        const int tl = min(ATT_TILE, len - t0);
        for (int j = threadIdx.x; j < tl; j += blockDim.x) {
            const unsigned short* kj = k + (unsigned long long)(row0 + t0 + j) * kv_dim + kvh * hd;
            float s = 0.0f;
            for (int d = 0; d < hd; d++) s += r16(qh[d]) * h2f(kj[d]);
            sc[j] = s * scale;
        }
        __syncthreads();
        float m = m_run;
        for (int j = threadIdx.x; j < tl; j += blockDim.x) m = fmaxf(m, sc[j]);
        m = block_max(m, red);
        const float corr = expf(m_run - m);
        float s = 0.0f;
        for (int j = threadIdx.x; j < tl; j += blockDim.x) { const float e = expf(sc[j] - m); sc[j] = e; s += e; }
        s_run = s_run * corr + block_add(s, red);
        m_run = m;
        for (int d = threadIdx.x; d < hd; d += blockDim.x) {
            float a = acc[d] * corr;
            for (int j = 0; j < tl; j++)
                a += sc[j] * h2f(v[(unsigned long long)(row0 + t0 + j) * kv_dim + kvh * hd + d]);
            acc[d] = a;
        }
        // The next tile's scores overwrite these.
        __syncthreads();
    }
    const float inv = 1.0f / s_run;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) o[d] = acc[d] * inv;
}

// g = act(g) * u (act 0: SiLU, 1: GELU tanh approximation).
extern "C" __global__ void act_mul(float* g, const float* u, unsigned long long n, int gelu) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const float x = g[i];
        float a;
        if (gelu) a = 0.5f * x * (1.0f + tanhf(0.7978846f * x * (1.0f + 0.044715f * x * x)));
        else a = x / (1.0f + expf(-x));
        g[i] = a * u[i];
    }
}

// x += y.
extern "C" __global__ void add(float* x, const float* y, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x)
        x[i] += y[i];
}

// x = tanh(x / c) * c.
extern "C" __global__ void softcap(float* x, unsigned long long n, float c) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x)
        x[i] = tanhf(x[i] / c) * c;
}

// y[j * rows + i] = W[i] . x[j] (W: rows x cols f16, x: n x cols f16), one
// warp per (i, j), summed exactly as the CPU's matmul (and ggml's AVX2
// ggml_vec_dot_f16) sums: lane t fuses the products of the columns k = t
// (mod 32) of the whole 32s into one sum, the 32 sums are reduced as
// (p0 + p2) + (p1 + p3) per lane of 8, then halves, then pairs, and the
// columns past the last whole 32 are added in f64.
extern "C" __global__ void matmul_ggml(const unsigned short* w, const unsigned short* x, float* y,
                                       int rows, int cols, int n) {
    const unsigned long long warp = (blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (warp >= (unsigned long long)rows * n) return;  // a whole warp (blockDim is a multiple of 32)
    const int i = (int)(warp % rows), j = (int)(warp / rows);
    const unsigned short* wr = w + (unsigned long long)i * cols;
    const unsigned short* xr = x + (unsigned long long)j * cols;
    const int body = cols - cols % 32;
    float p = 0.0f;
    for (int k = lane; k < body; k += 32) p = fmaf(h2f(wr[k]), h2f(xr[k]), p);
    const float a = p + __shfl_down_sync(0xffffffffu, p, 16);
    const float s = a + __shfl_down_sync(0xffffffffu, a, 8);
    const float h = s + __shfl_down_sync(0xffffffffu, s, 4);
    const float u = h + __shfl_down_sync(0xffffffffu, h, 1);
    const float v = u + __shfl_down_sync(0xffffffffu, u, 2);
    if (lane == 0) {
        double t = v;
        for (int k = body; k < cols; k++) t += (double)__fmul_rn(h2f(wr[k]), h2f(xr[k]));
        y[(unsigned long long)j * rows + i] = (float)t;
    }
}

// Counts the values of x that are NaN or infinite into *count.
extern "C" __global__ void count_nonfinite(const float* x, unsigned long long n, unsigned int* count) {
    unsigned int c = 0;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x)
        c += !isfinite(x[i]);
    if (c) atomicAdd(count, c);
}
