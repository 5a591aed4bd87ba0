// Host emulation of CUDA thread blocks for the forward pass's kernels
// (gguf-loader-llm's src/forward/kernels.cu), which, unlike the decode
// kernels, cooperate within a block: shared memory, __syncthreads and warp
// shuffles. build.rs includes this header, then the kernel text in
// namespace glfwd, then a dispatch table.
//
// Each CUDA thread of a block is a fiber (ucontext) on the calling OS thread,
// with its own stack. A scheduler resumes every live fiber in turn; a fiber
// runs until it reaches __syncthreads (or a shuffle, or its end) and hands
// control back. One round therefore brings every thread of the block to the
// same barrier, exactly the barrier's meaning, and a barrier that not every
// live thread reaches (a __syncthreads under a divergent branch) is caught:
// after every round, the live threads must all wait at the same source line. A warp
// shuffle is two such steps: every lane writes its value to the warp's slot
// table, then reads its source lane's. (So a shuffle is a block-wide step
// here: warps that shuffle at different lines, legal on a GPU, would be
// reported as diverged. The forward kernels' warps all shuffle alike.) Blocks run one after another;
// `__shared__` arrays are per OS thread (thread_local), so a block sees what
// the previous block left there, as on a GPU it sees garbage, and the
// dynamic shared memory is refilled with NaN bytes before every block.
//
// Arithmetic is the host's IEEE float (build.rs turns contraction and fast
// math off); expf, tanhf and sqrtf are the C library's (the stand-in's Rust
// calls the same functions), where a GPU's differ in the last bits.

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <utility>
#include <vector>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the host build stores f16 bits as a little-endian GPU does"
#endif

namespace gl_sim {

struct Dim3 {
    unsigned int x, y, z;
};

struct Fiber {
    ucontext_t ctx;
    Dim3 tid;
    bool done;
    int site;  // the source line of the barrier (or shuffle) it waits at
};

// Launch errors (gl_fwd_launch's return values).
enum : int {
    OK = 0,
    NO_KERNEL = -1,
    BAD_LAUNCH = -2,      // a zero grid or block, or a block over 1024 threads
    DIVERGED = -3,        // live threads of a block at different barriers
    PARTIAL_SHUFFLE = -4, // a shuffle with a mask other than the full warp
    NO_MEMORY = -5,       // stacks or shared memory could not be allocated
};

struct Block {
    ucontext_t sched;
    std::vector<Fiber> fibers;
    Fiber* cur = nullptr;
    Dim3 bidx{0, 0, 0}, bdim{1, 1, 1}, gdim{1, 1, 1};
    std::vector<unsigned char> dyn;  // dynamic shared memory
    float shfl[1024];                // one slot per lane of every warp
    const std::function<void()>* body = nullptr;
    int fault = OK;
};

inline thread_local Block* B = nullptr;

// Back to the scheduler from the barrier at line `site`; resumed at the
// next round.
inline void step(int site) {
    Fiber* f = B->cur;
    f->site = site;
    swapcontext(&f->ctx, &B->sched);
}

inline void entry() {
    (*B->body)();
    B->cur->done = true;  // returning resumes uc_link: the scheduler
}

// The bytes of the launch's dynamic shared memory.
inline void* dyn_shared() { return B->dyn.data(); }

constexpr size_t STACK = 64 * 1024;

// A fresh context that runs `entry` on `stack` and then resumes `link`.
// Apart, because getcontext returns twice, which a caller's loop variables
// must not see.
__attribute__((noinline)) inline void init_fiber(Fiber& f, char* stack, ucontext_t* link) {
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stack;
    f.ctx.uc_stack.ss_size = STACK;
    f.ctx.uc_link = link;
    makecontext(&f.ctx, entry, 0);
}

// The order threads are resumed in within a round: a race between the
// threads of a block (a read of shared memory another thread writes with no
// barrier between) gives different results in different orders.
enum : int { ASCENDING = 0, DESCENDING = 1, SHUFFLED = 2 };

// Runs `body` as every thread of `grid` blocks of `block` threads.
inline int run(unsigned grid, unsigned block, size_t shared, int order,
               const std::function<void()>& body) {
    if (grid == 0 || block == 0 || block > 1024) {
        return BAD_LAUNCH;
    }
    Block b;
    std::vector<char> stacks;
    std::vector<unsigned> turn;
    try {
        turn.resize(block);
        b.fibers.resize(block);
        b.dyn.resize(shared);
        stacks.resize(static_cast<size_t>(block) * STACK);
    } catch (...) {
        return NO_MEMORY;
    }
    b.bdim = Dim3{block, 1, 1};
    b.gdim = Dim3{grid, 1, 1};
    b.body = &body;
    for (unsigned t = 0; t < block; t++) {
        turn[t] = order == DESCENDING ? block - 1 - t : t;
    }
    unsigned long long seed = 0x9e3779b97f4a7c15ull;
    Block* const outer = B;
    B = &b;
    for (unsigned bx = 0; bx < grid && b.fault == OK; bx++) {
        b.bidx = Dim3{bx, 0, 0};
        std::fill(b.dyn.begin(), b.dyn.end(), static_cast<unsigned char>(0xFF));
        for (unsigned t = 0; t < block; t++) {
            Fiber& f = b.fibers[t];
            f.tid = Dim3{t, 0, 0};
            f.done = false;
            f.site = 0;
            init_fiber(f, stacks.data() + static_cast<size_t>(t) * STACK, &b.sched);
        }
        for (bool live = true; live && b.fault == OK;) {
            live = false;
            if (order == SHUFFLED) {  // Fisher-Yates, xorshift64
                for (unsigned t = block - 1; t > 0; t--) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    std::swap(turn[t], turn[seed % (t + 1)]);
                }
            }
            for (unsigned t : turn) {
                Fiber& f = b.fibers[t];
                if (!f.done) {
                    b.cur = &f;
                    swapcontext(&b.sched, &f.ctx);
                }
            }
            // Every live thread waits at the same barrier (threads that
            // have returned no longer take part, as on a GPU).
            bool first = true;
            int at = 0;
            for (const Fiber& f : b.fibers) {
                if (f.done) {
                    continue;
                }
                live = true;
                if (first) {
                    at = f.site;
                    first = false;
                } else if (f.site != at) {
                    b.fault = DIVERGED;
                }
            }
        }
        // A fault leaves fibers suspended mid-kernel: their stacks are freed
        // unresumed (the kernels hold nothing that needs destroying).
    }
    B = outer;
    return b.fault;
}

// One argument of type A from the driver-style parameter array.
template <class... A, size_t... I>
std::tuple<A...> unpack(void** params, std::index_sequence<I...>) {
    return std::tuple<A...>{*static_cast<A*>(params[I])...};
}

// Launches `kernel` with its arguments from `params` (one pointer to each
// argument, in order, as cuLaunchKernel takes them).
template <class... A>
int launch(void (*kernel)(A...), unsigned grid, unsigned block, size_t shared, int order,
           void** params) {
    const std::tuple<A...> args = unpack<A...>(params, std::index_sequence_for<A...>{});
    const std::function<void()> body = [&] { std::apply(kernel, args); };
    return run(grid, block, shared, order, body);
}

}  // namespace gl_sim

// ---------------------------------------------------------------------------
// The CUDA built-ins the kernels use.
// ---------------------------------------------------------------------------
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static thread_local
#define threadIdx (gl_sim::B->cur->tid)
#define blockIdx (gl_sim::B->bidx)
#define blockDim (gl_sim::B->bdim)
#define gridDim (gl_sim::B->gdim)

// Each barrier is known by its source line.
#define __syncthreads() gl_sim::step(__LINE__)
#define __shfl_down_sync(mask, v, delta) gl_sim::shfl_down((mask), (v), (delta), __LINE__)

namespace gl_sim {
// Both steps of a shuffle wait at its line (negated: apart from barriers).
inline float shfl_down(unsigned mask, float v, unsigned delta, int line) {
    Block* b = B;
    if (mask != 0xffffffffu) {
        b->fault = PARTIAL_SHUFFLE;
    }
    const unsigned t = b->cur->tid.x;
    const unsigned lane = t % 32;
    b->shfl[t] = v;
    step(-line);
    // A source lane past the warp (or past the block) gives the lane its own value.
    const float r = (lane + delta < 32 && t + delta < b->bdim.x) ? b->shfl[t + delta] : v;
    step(-line);
    return r;
}
}  // namespace gl_sim

inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}

inline float __fmul_rn(float a, float b) { return a * b; }

// Blocks run one at a time on one OS thread: a plain add is atomic here.
inline unsigned atomicAdd(unsigned* p, unsigned v) {
    const unsigned old = *p;
    *p = old + v;
    return old;
}

// f16 <-> f32 exactly (round to nearest-even), as PTX cvt.rn.f16.f32 and
// cvt.f32.f16: the compiler's _Float16.
inline float h2f(unsigned short h) {
    _Float16 v;
    std::memcpy(&v, &h, 2);
    return static_cast<float>(v);
}

inline unsigned short f2h(float f) {
    const _Float16 v = static_cast<_Float16>(f);
    unsigned short h;
    std::memcpy(&h, &v, 2);
    return h;
}

// For the tests: a block whose first 16 threads wait at a barrier the
// others skip. Returns gl_sim::DIVERGED.
extern "C" int gl_fwd_selftest_diverged(void) {
    const std::function<void()> body = [] {
        if (threadIdx.x < 16) {
            __syncthreads();
        }
        __syncthreads();
    };
    return gl_sim::run(1, 64, 0, gl_sim::ASCENDING, body);
}
