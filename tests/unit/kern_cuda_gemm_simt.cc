// The int8 tensor-core GEMM's own device source (kernels/cuda/kern_gemm_i8.cuh), run on
// the host: every CUDA thread of a block is a POSIX thread, __syncthreads a barrier, and
// the warp-wide instructions (ldmatrix.x4, mma.m16n8k32.s8) meet their 32 lanes at a
// per-warp barrier and compute what the PTX ISA says.  cp.async copies land either at
// issue (EARLY: a buffer overwritten while others still read it shows) or only when the
// issuing thread's cp.async.wait_group retires their group (LATE: a read before the wait
// shows); shared memory starts as garbage.  Outputs must equal the CPU reference formula
// bit for bit.  Dense and grouped-expert forms, every tile, pipeline depth, both weight
// paths.  The f16-MMA GEMM (kern_gemm_f16mma.cuh, with emulated mma.m16n8k16 and f16
// arithmetic): within one f32 rounding per MMA of the exact sum of its f16 inputs.  Also
// the f32 router GEMM (kern_gemm_f32.cuh), within f32 rounding of a double reference.
// Exit 0: all agree; 1: a difference (printed).  No GPU involved.
#include <pthread.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <vector>

// ---- the CUDA surface the kernel uses ----------------------------------------------------
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __CUDA_ARCH__ 800

#include "kernels/cuda/kern_gemm_f16mma_map.h"
#include "kernels/cuda/kern_gemm_i8_map.h"

#include "simt_common.h"

struct float2 {
    float x, y;
};
struct __half {
    uint16_t bits;
};
struct uint4 {
    unsigned x, y, z, w;
};
static uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

static float __half2float(__half h) { return sim_f16_bits_to_f32(h.bits); }
template <class T> static T __ldg(const T *p) { return *p; }
static float __int_as_float(int i)
{
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static float __fmul_rn(float a, float b) { return a * b; }
[[noreturn]] static void __trap() { abort(); }

static pthread_barrier_t sim_block_bar;
static void __syncthreads() { pthread_barrier_wait(&sim_block_bar); }

struct sim_warp {
    pthread_barrier_t bar;
    const void *addr[32];
    unsigned a[32][4], b[32][2];
};
static sim_warp sim_warps[8];
static int lane_id() { return (int)(threadIdx.x & 31); }
static sim_warp &my_warp() { return sim_warps[threadIdx.x >> 5]; }

// ldmatrix.sync.aligned.m8n8.x4.shared.b16: lane L's register j is 32-bit word L & 3 of
// the 16-byte row whose address lane 8 j + (L >> 2) gave.
static void ldsm_x4(unsigned r[4], const void *p)
{
    sim_warp &w = my_warp();
    const int l = lane_id();
    if ((uintptr_t)p % 16)
        __trap();
    w.addr[l] = p;
    pthread_barrier_wait(&w.bar);
    for (int j = 0; j < 4; j++)
        memcpy(&r[j], (const uint8_t *)w.addr[8 * j + (l >> 2)] + 4 * (l & 3), 4);
    pthread_barrier_wait(&w.bar);
}

// mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 with C = GI8_ACC_BIAS_BITS, read back
// as floats (GI8_ACC_BIAS plus the dot product) as the kernel does.  Fragments (PTX ISA): a_i = byte i & 3 of register i >> 2,
// row groupID (+8 for 4 <= i < 8 and i >= 12), column tig*4 + (i & 3) (+16 for i >= 8);
// b_i: row tig*4 + (i & 3) (+16 for i >= 4), column groupID; c_i: row groupID (+8 for
// i >= 2), column tig*2 + (i & 1).
static void mma_s8(float f[4], const unsigned a[4], const unsigned b[2])
{
    sim_warp &w = my_warp();
    const int l = lane_id();
    memcpy(w.a[l], a, sizeof w.a[l]);
    memcpy(w.b[l], b, sizeof w.b[l]);
    pthread_barrier_wait(&w.bar);
    int8_t A[16][32], B[32][8];
    for (int t = 0; t < 32; t++) {
        const int gid = t >> 2, tig = t & 3;
        for (int i = 0; i < 16; i++) {
            const int row = (i < 4 || (i >= 8 && i < 12)) ? gid : gid + 8;
            A[row][tig * 4 + (i & 3) + (i >= 8 ? 16 : 0)] = (int8_t)(w.a[t][i >> 2] >> (8 * (i & 3)));
        }
        for (int i = 0; i < 8; i++)
            B[tig * 4 + (i & 3) + (i >= 4 ? 16 : 0)][gid] = (int8_t)(w.b[t][i >> 2] >> (8 * (i & 3)));
    }
    pthread_barrier_wait(&w.bar);
    for (int i = 0; i < 4; i++) {
        const int row = (l >> 2) + (i >= 2 ? 8 : 0), col = (l & 3) * 2 + (i & 1);
        int32_t c = GI8_ACC_BIAS_BITS;
        for (int k = 0; k < 32; k++)
            c += A[row][k] * B[k][col];
        f[i] = __int_as_float(c);
    }
}

// cp.async: EARLY copies at issue; LATE keeps them per thread, by commit group, until the
// thread's wait_group lets that group complete.
static bool sim_late;
struct sim_copy {
    void *dst;
    const void *src;
    int n;
    bool ok;
};
static thread_local std::vector<std::vector<sim_copy>> sim_groups; // committed, oldest first
static thread_local std::vector<sim_copy> sim_open;
static void sim_land(const sim_copy &c)
{
    if (c.ok)
        memcpy(c.dst, c.src, (size_t)c.n);
    else
        memset(c.dst, 0, (size_t)c.n);
}
static void cp_async(void *dst, const void *src, bool ok, int n)
{
    if ((uintptr_t)dst % n || (ok && (uintptr_t)src % n))
        __trap(); // cp.async needs both addresses aligned to the copy size
    sim_copy c = {dst, src, n, ok};
    if (sim_late)
        sim_open.push_back(c);
    else
        sim_land(c);
}
static void cp_async4(void *dst, const void *src, bool ok) { cp_async(dst, src, ok, 4); }
static void cp_async8(void *dst, const void *src, bool ok) { cp_async(dst, src, ok, 8); }
static void cp_async16(void *dst, const void *src, bool ok) { cp_async(dst, src, ok, 16); }
static void cp_async_commit()
{
    sim_groups.push_back(sim_open);
    sim_open.clear();
}
static void cp_async_wait(int n)
{
    while ((int)sim_groups.size() > (n < 0 ? 0 : n)) {
        for (const sim_copy &c : sim_groups.front())
            sim_land(c);
        sim_groups.erase(sim_groups.begin());
    }
}

static uint8_t *sim_dyn;
#define GI8_DYN_SMEM(name) uint8_t *name = sim_dyn
#define GF_DYN_SMEM(name) uint8_t *name = sim_dyn

// ---- the f16-MMA kernel's primitives -------------------------------------------------------

// A double to the nearest f16 (ties to even), subnormals and overflow to infinity included.
static uint16_t sim_f2h(double v)
{
    const uint16_t sign = std::signbit(v) ? 0x8000 : 0;
    double a = std::fabs(v);
    if (std::isnan(v))
        return 0x7e00;
    if (a >= 65520.0) // rounds to infinity
        return (uint16_t)(sign | 0x7c00);
    int e;
    std::frexp(a, &e); // a = f 2^e, f in [0.5, 1)
    int ex = e - 1;    // a = 1.x 2^ex
    if (ex < -14)
        ex = -14; // subnormal range: fixed quantum 2^-24
    const double q = std::ldexp(1.0, ex - 10);
    double r = std::nearbyint(a / q); // ties to even (default rounding mode)
    double val = r * q;
    // back to bits
    if (val == 0)
        return sign;
    int e2;
    std::frexp(val, &e2);
    int ex2 = e2 - 1;
    if (ex2 < -14) // subnormal
        return (uint16_t)(sign | (uint16_t)(val / std::ldexp(1.0, -24)));
    const uint16_t mant = (uint16_t)(val / std::ldexp(1.0, ex2 - 10)) - 1024;
    return (uint16_t)(sign | ((ex2 + 15) << 10) | mant);
}
static double sim_h2d(uint16_t b)
{
    __half h = {b};
    return (double)__half2float(h);
}
// __hmul2(__hsub2(h, magic), d2): each operation rounded to f16 (the products and
// differences of two f16 values are exact in double).
static unsigned gf_sub_mul(unsigned h, unsigned magic, unsigned d2)
{
    unsigned r = 0;
    for (int i = 0; i < 2; i++) {
        const uint16_t a = (uint16_t)(h >> (16 * i)), m = (uint16_t)(magic >> (16 * i)), d = (uint16_t)(d2 >> (16 * i));
        const uint16_t t = sim_f2h(sim_h2d(a) - sim_h2d(m));
        r |= (unsigned)sim_f2h(sim_h2d(t) * sim_h2d(d)) << (16 * i);
    }
    return r;
}
// split-K's f32 add into y (RED.ADD.F32): one lock for the whole emulated grid
static std::mutex sim_red_lock;
static void gf_red_add(float *p, float v)
{
    std::lock_guard<std::mutex> g(sim_red_lock);
    *p += v;
}
static void gf_red_add4(float *p, const float v[4])
{
    if ((uintptr_t)p % 16)
        __trap(); // RED.ADD.V4 needs a 16-byte aligned address
    std::lock_guard<std::mutex> g(sim_red_lock);
    for (int i = 0; i < 4; i++)
        p[i] += v[i];
}
static void gf_ld4f(const float *p, float v[4])
{
    if ((uintptr_t)p % 16)
        __trap();
    memcpy(v, p, 16);
}
static void gf_st4f(float *p, const float v[4])
{
    if ((uintptr_t)p % 16)
        __trap();
    memcpy(p, v, 16);
}
static void gf_store4(unsigned *dst, unsigned a, unsigned b, unsigned c, unsigned d)
{
    if ((uintptr_t)dst % 16)
        __trap();
    const unsigned v[4] = {a, b, c, d};
    memcpy(dst, v, 16);
}
// mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32, c += a b.  Fragments (PTX ISA), lane
// = 4 g + t: a reg r holds A[g + 8 (r & 1)][2t + 8 (r >> 1) + {0, 1}] (low half first);
// b reg r holds B[2t + 8 r + {0, 1}][g]; c_i is C[g + 8 (i >> 1)][2t + (i & 1)].  The 16
// products are exact in double; one rounding to f32 per MMA (the hardware's internal order
// is its own: the tests allow f32 rounding per MMA).
static void mma_f16(float c[4], const unsigned a[4], const unsigned b[2])
{
    sim_warp &w = my_warp();
    const int l = lane_id();
    memcpy(w.a[l], a, sizeof w.a[l]);
    memcpy(w.b[l], b, sizeof w.b[l]);
    pthread_barrier_wait(&w.bar);
    double A[16][16], B[16][8];
    for (int t = 0; t < 32; t++) {
        const int g = t >> 2, tg = t & 3;
        for (int r = 0; r < 4; r++)
            for (int h = 0; h < 2; h++)
                A[g + 8 * (r & 1)][2 * tg + 8 * (r >> 1) + h] = sim_h2d((uint16_t)(w.a[t][r] >> (16 * h)));
        for (int r = 0; r < 2; r++)
            for (int h = 0; h < 2; h++)
                B[2 * tg + 8 * r + h][g] = sim_h2d((uint16_t)(w.b[t][r] >> (16 * h)));
    }
    pthread_barrier_wait(&w.bar);
    for (int i = 0; i < 4; i++) {
        const int row = (l >> 2) + 8 * (i >> 1), col = 2 * (l & 3) + (i & 1);
        double sum = c[i];
        for (int k = 0; k < 16; k++)
            sum += A[row][k] * B[k][col];
        c[i] = (float)sum;
    }
}

#include "kernels/cuda/kern_gemm_f16mma.cuh"
#include "kernels/cuda/kern_gemm_i8.cuh"
#include "kernels/cuda/kern_gemm_f32.cuh"
#include "kernels/cuda/kern_dequant.cuh"

// ---- launching --------------------------------------------------------------------------

static void launch(unsigned grid, unsigned threads, size_t smem, const std::function<void()> &body)
{
    std::vector<uint8_t> dyn(smem + 16);
    sim_dyn = dyn.data() + (16 - (uintptr_t)dyn.data() % 16) % 16;
    gridDim = {grid, 1, 1};
    blockDim = {threads, 1, 1};
    for (unsigned b = 0; b < grid; b++) {
        memset(sim_dyn, 0xa5, smem); // garbage where nothing is staged
        pthread_barrier_init(&sim_block_bar, nullptr, threads);
        for (unsigned w = 0; w < threads / 32; w++)
            pthread_barrier_init(&sim_warps[w].bar, nullptr, 32);
        std::vector<pthread_t> th(threads);
        struct arg {
            unsigned t, b;
            const std::function<void()> *body;
        };
        std::vector<arg> args(threads);
        for (unsigned t = 0; t < threads; t++) {
            args[t] = {t, b, &body};
            pthread_create(&th[t], nullptr,
                           [](void *p) -> void * {
                               arg *a = (arg *)p;
                               threadIdx = {a->t, 0, 0};
                               blockIdx = {a->b, 0, 0};
                               sim_groups.clear();
                               sim_open.clear();
                               (*a->body)();
                               return nullptr;
                           },
                           &args[t]);
        }
        for (unsigned t = 0; t < threads; t++)
            pthread_join(th[t], nullptr);
        pthread_barrier_destroy(&sim_block_bar);
        for (unsigned w = 0; w < threads / 32; w++)
            pthread_barrier_destroy(&sim_warps[w].bar);
    }
}

// ---- data and the reference ---------------------------------------------------------------

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd32()
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
// A normal f16 in [2^-9, 2^-3) (a plausible block scale), as bits.
static uint16_t rnd_f16() { return (uint16_t)(((6 + rnd32() % 6) << 10) | (rnd32() & 1023)); }

// m rows of k in ggml Q4_0 (wt 4) / Q8_0 (wt 8) blocks with random values, after pad bytes;
// wt 16: m x k f16 values (both signs, some zero, some subnormal).
static std::vector<uint8_t> make_w(int wt, int64_t m, int64_t k, size_t pad)
{
    if (wt == 16) {
        std::vector<uint8_t> w(pad + (size_t)(m * k * 2), 0x5a);
        for (int64_t i = 0; i < m * k; i++) {
            const uint32_t r = rnd32();
            uint16_t h = r % 53 == 0   ? 0
                         : r % 59 == 0 ? (uint16_t)(rnd32() % 1024)
                                       : (uint16_t)(((10 + rnd32() % 8) << 10) | (rnd32() & 1023));
            h |= (uint16_t)(r & 0x8000);
            memcpy(w.data() + pad + 2 * i, &h, 2);
        }
        return w;
    }
    const int bsz = wt == 4 ? 18 : 34;
    std::vector<uint8_t> w(pad + (size_t)(m * (k / 32) * bsz));
    for (size_t i = 0; i < pad; i++)
        w[i] = 0x5a;
    for (int64_t b = 0; b < m * (k / 32); b++) {
        uint8_t *blk = w.data() + pad + b * bsz;
        const uint16_t d = rnd_f16();
        memcpy(blk, &d, 2);
        for (int i = 2; i < bsz; i++)
            blk[i] = wt == 8 ? (uint8_t)(int8_t)((int)(rnd32() % 255) - 127) : (uint8_t)rnd32();
    }
    return w;
}

static void ref_gemm(int wt, const uint8_t *w, int64_t m, int64_t k, const int8_t *xq, const float *xd, int64_t xr,
                     float *y)
{
    const int64_t nb = k / 32;
    const int bsz = wt == 4 ? 18 : 34;
    for (int64_t r = 0; r < m; r++) {
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = w + (r * nb + b) * bsz;
            const int8_t *qa = xq + xr * k + b * 32;
            int32_t sum = 0;
            for (int j = 0; j < (wt == 8 ? 32 : 16); j++) {
                if (wt == 8)
                    sum += qa[j] * (int8_t)blk[2 + j];
                else
                    sum += qa[j] * ((blk[2 + j] & 15) - 8) + qa[j + 16] * ((blk[2 + j] >> 4) - 8);
            }
            __half h;
            memcpy(&h.bits, blk, 2);
            const float t = (float)sum * xd[xr * nb + b];
            acc = fmaf(t, __half2float(h), acc);
        }
        y[r] = acc;
    }
}

static int failures;

static void compare(const char *what, const std::vector<float> &got, const std::vector<float> &want)
{
    for (size_t i = 0; i < got.size(); i++)
        if (!(got[i] == want[i])) {
            printf("FAIL %s: element %zu is %.9g, the reference %.9g\n", what, i, (double)got[i], (double)want[i]);
            failures++;
            return;
        }
    printf("ok   %s\n", what);
}

static void make_x(int64_t n, int64_t k, std::vector<int8_t> &q, std::vector<float> &d)
{
    q.resize((size_t)(n * k));
    d.resize((size_t)(n * (k / 32)));
    for (auto &v : q)
        v = (int8_t)((int)(rnd32() % 255) - 127);
    for (auto &v : d) {
        __half h = {rnd_f16()};
        v = __half2float(h);
    }
}

template <int WT, int MT, int NT, int WM, int WN>
static void dense_case_t(int v, int stages, bool late, size_t pad, int64_t m, int64_t k, int64_t n, unsigned grid)
{
    std::vector<uint8_t> wbuf = make_w(WT, m, k, pad);
    const uint8_t *w = wbuf.data() + pad;
    std::vector<int8_t> xq;
    std::vector<float> xd;
    make_x(n, k, xq, xd);
    std::vector<float> got((size_t)(n * m), NAN), want((size_t)(n * m));
    for (int64_t i = 0; i < n; i++)
        ref_gemm(WT, w, m, k, xq.data(), xd.data(), i, want.data() + i * m);
    const int aligned = (k / 32) % GI8_KBS == 0 && (uintptr_t)w % 8 == 0;
    const int bm = 16 * MT * WM, bn = 8 * NT * WN;
    sim_late = late;
    launch(grid, 32 * WM * WN, (size_t)(stages * gi8_stage_bytes_n(WT, bm, bn)), [&] {
        gemm_i8<WT, MT, NT, WM, WN, false>(w, m, k, xq.data(), xd.data(), n, got.data(), stages, aligned, 1, nullptr,
                                           nullptr, 1);
    });
    char what[200];
    snprintf(what, sizeof what,
             "dense q%d_0 %lldx%lld x %lld, variant %d (%dx%d, warps %dx%d), %d stages, %s, cp.async %s, grid %u", WT,
             (long long)m, (long long)k, (long long)n, v, bm, bn, 16 * MT, 8 * NT, stages,
             aligned ? "cp.async weights" : "2-byte weights", late ? "late" : "early", grid);
    compare(what, got, want);
}

// Variant v of GI8_VARIANTS, the kernel the host launches as kern_gemm_i8_q*_v<v>.
template <int WT>
static void dense_case(int v, int stages, bool late, size_t pad, int64_t m, int64_t k, int64_t n, unsigned grid)
{
#define SIM_VAR(I, MT, NT, WM, WN, CPS)                                          \
    if (v == (I))                                                                \
        dense_case_t<WT, MT, NT, WM, WN>(v, stages, late, pad, m, k, n, grid);
    GI8_VARIANTS(SIM_VAR)
#undef SIM_VAR
}

// ---- the f16-MMA kernel: within f32 rounding of the exact sum of its f16 inputs ---------

// Weight (row r, k index i) of a Q4_0 / Q8_0 (f16: wt 16) matrix as the f16 the kernel must make:
// q d rounded once to f16 (computed here independently of the kernel's bit tricks).
static uint16_t f16_weight(int wt, const uint8_t *w, int64_t k, int64_t r, int64_t i)
{
    if (wt == 16) { // f16 weights: the value itself
        uint16_t h;
        memcpy(&h, w + 2 * (r * k + i), 2);
        return h;
    }
    const int bsz = wt == 4 ? 18 : 34;
    const uint8_t *blk = w + (r * (k / 32) + i / 32) * bsz;
    const int j = (int)(i % 32);
    int q;
    if (wt == 8)
        q = (int8_t)blk[2 + j];
    else
        q = (j < 16 ? (blk[2 + j] & 15) : (blk[2 + j - 16] >> 4)) - 8;
    uint16_t d;
    memcpy(&d, blk, 2);
    return sim_f2h((double)q * sim_h2d(d));
}

// x for the f16 kernels: n x k q8_0-like values rounded to f16, some exactly zero, some
// subnormal.
static std::vector<uint16_t> make_xh(int64_t n, int64_t k)
{
    std::vector<uint16_t> xh((size_t)(n * k));
    for (auto &h : xh) {
        const uint32_t r = rnd32();
        if (r % 61 == 0)
            h = 0;
        else if (r % 67 == 0)
            h = (uint16_t)(rnd32() % 1024) | (r & 0x100000 ? 0x8000 : 0);
        else {
            __half d = {rnd_f16()};
            h = sim_f2h((double)((int)(rnd32() % 255) - 127) * (double)__half2float(d) * 64.0);
        }
    }
    return xh;
}

// An f16 kernel's y (n x m) against the exact sum of its f16 inputs (the weights q d rounded
// once, computed here): within one f32 rounding per MMA of 16 k (and one per added k
// slice).  Prints the first difference or "ok".
static void check_f16_sum(const char *what, int wt, const uint8_t *w, int64_t m, int64_t k, int64_t n,
                          const std::vector<uint16_t> &xh, const std::vector<float> &got, int ksplit)
{
    std::vector<double> wrow((size_t)k);
    for (int64_t r = 0; r < m; r++) {
        for (int64_t i = 0; i < k; i++)
            wrow[(size_t)i] = sim_h2d(f16_weight(wt, w, k, r, i));
        for (int64_t t = 0; t < n; t++) {
            double want = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) {
                const double p = wrow[(size_t)i] * sim_h2d(xh[(size_t)(t * k + i)]);
                want += p;
                mag += std::fabs(p);
            }
            const double g = got[(size_t)(t * m + r)];
            if (!(std::fabs(g - want) <= (double)((k + 15) / 16 + ksplit) * std::ldexp(mag, -24) + 1e-30)) {
                printf("FAIL %s: token %lld row %lld is %.9g, the exact sum %.9g (|w x| %.3g)\n", what, (long long)t,
                       (long long)r, g, want, mag);
                failures++;
                return;
            }
        }
    }
    printf("ok   %s\n", what);
}

// The cases' y row length beyond m (0: ldy = m).
static int64_t g_ldy_pad = 0;

// y of rows ldy long back to rows of m, after checking that the kernel left every value
// past m as it was (NaN, or 0 under split-K).
static std::vector<float> unpad_y(const char *what, const std::vector<float> &got, int64_t m, int64_t n, int64_t ldy,
                                  int ksplit)
{
    std::vector<float> out((size_t)(n * m));
    int bad = 0;
    for (int64_t t = 0; t < n; t++) {
        for (int64_t r = 0; r < ldy; r++) {
            const float v = got[(size_t)(t * ldy + r)];
            if (r < m)
                out[(size_t)(t * m + r)] = v;
            else if (ksplit > 1 ? v != 0.0f : !std::isnan(v)) {
                if (!bad++)
                    printf("FAIL %s: y[%lld][%lld] past the slab's rows was written (%g)\n", what, (long long)t,
                           (long long)r, v);
            }
        }
    }
    failures += bad > 0;
    return out;
}

template <int WT, int MT, int NT, int WM, int WN, int KB>
static void f16_case_t(int v, int slots, bool late, size_t pad, int64_t m, int64_t k, int64_t n, unsigned grid,
                       int ksplit, bool staged)
{
    std::vector<uint8_t> wbuf = make_w(WT, m, k, pad);
    const uint8_t *w = wbuf.data() + pad;
    std::vector<uint16_t> xh = make_xh(n, k);
    // split-K adds its slices into y, which the host zeroes first (kern_zero_f32)
    // y's rows g_ldy_pad values longer than m (a slab of a larger y: the two-pass path)
    const int64_t ldy = m + g_ldy_pad;
    std::vector<float> got((size_t)(n * ldy), ksplit > 1 ? 0.0f : NAN);
    // as the host plan decides (f16 weights: every piece of every stage exists)
    const int aligned = WT == 16 ? k % (32 * KB) == 0 : gf_aligned(KB, k / 32, (uintptr_t)w);
    const int bm = 16 * MT * WM, bn = 8 * NT * WN;
    if (WT == 16 && !gf_f16_ok(bm, k, (uintptr_t)w))
        __trap(); // a case the plan would not give this kernel
    sim_late = late;
    const int flags = (aligned ? GF_FLAG_ALIGNED : 0) | (staged ? GF_FLAG_STAGED : 0);
    launch(grid, 32 * WM * WN, (size_t)gf_smem_bytes(WT, bm, bn, slots, KB), [&] {
        gemm_f16mma<WT, MT, NT, WM, WN, KB>(w, m, k, xh.data(), n, got.data(), slots, flags, ksplit, ldy);
    });
    char what[220];
    snprintf(what, sizeof what,
             "f16mma %s%s %lldx%lld x %lld, variant f%d (%dx%d, warps %dx%d, k stage %d), %d slots, %s, cp.async %s, "
             "%d k slice(s), %s stores, grid %u",
             WT == 16 ? "f16" : WT == 4 ? "q4" : "q8", WT == 16 ? "" : "_0", (long long)m, (long long)k, (long long)n,
             v, bm, bn, 16 * MT, 8 * NT, 32 * KB, slots,
             WT == 16 ? (aligned ? "f16 weights, whole stages" : "f16 weights, a part stage")
                      : aligned ? "cp.async weights" : "2-byte weights", late ? "late" : "early", ksplit,
             staged ? "staged" : "fragment", grid);
    if (g_ldy_pad)
        got = unpad_y(what, got, m, n, ldy, ksplit);
    check_f16_sum(what, WT, w, m, k, n, xh, got, ksplit);
}

static void f16_case(int wt, int v, int slots, bool late, size_t pad, int64_t m, int64_t k, int64_t n, unsigned grid,
                     int ksplit = 1, bool staged = false)
{
#define SIM_FVAR(I, MT, NT, WM, WN, CPS, KB)                                                         \
    if (v == (I)) {                                                                                \
        if (wt == 4)                                                                               \
            f16_case_t<4, MT, NT, WM, WN, KB>(v, slots, late, pad, m, k, n, grid, ksplit, staged); \
        else if (wt == 16)                                                                         \
            f16_case_t<16, MT, NT, WM, WN, KB>(v, slots, late, pad, m, k, n, grid, ksplit, staged); \
        else                                                                                       \
            f16_case_t<8, MT, NT, WM, WN, KB>(v, slots, late, pad, m, k, n, grid, ksplit, staged); \
    }
    GF_VARIANTS(SIM_FVAR)
#undef SIM_FVAR
}

// The conversion's magic: every Q8_0 byte and Q4_0 nibble, a range of steps, through
// gf_sub_mul, equal to q d rounded once.
static void f16_convert_case()
{
    int bad = 0;
    for (int s = 0; s < 4000 && !bad; s++) {
        const uint16_t d = s < 2000 ? (uint16_t)(s * 31 + 1) : rnd_f16();
        if (((d >> 10) & 31) == 31)
            continue;
        const unsigned d2 = d | (unsigned)d << 16;
        for (int q = -128; q < 128 && !bad; q++) {
            const unsigned b = (unsigned)(uint8_t)q ^ 0x80u;
            const unsigned h = 0x6400u | b;
            const unsigned r = gf_sub_mul(h | h << 16, GF_MAGIC_Q8, d2);
            if ((uint16_t)r != sim_f2h((double)q * sim_h2d(d)) || (r >> 16) != (r & 0xffff))
                bad = 1;
            if (q >= -8 && q < 8) {
                const unsigned h4 = 0x6400u | (unsigned)(q + 8);
                if ((uint16_t)gf_sub_mul(h4, GF_MAGIC_Q4, d2) != sim_f2h((double)q * sim_h2d(d)))
                    bad = 2;
            }
        }
    }
    // the f16 rounding itself against known values
    if (sim_f2h(1.0) != 0x3c00 || sim_f2h(-2.0) != 0xc000 || sim_f2h(65504.0) != 0x7bff ||
        sim_f2h(1.0 + 1.0 / 2048) != 0x3c00 || sim_f2h(1.0 + 3.0 / 2048) != 0x3c02 || sim_f2h(5.9604644775390625e-8) != 1 ||
        sim_f2h(1e6) != 0x7c00)
        bad = 3;
    if (bad) {
        printf("FAIL f16 conversion (case %d)\n", bad);
        failures++;
    } else
        printf("ok   f16 conversion: q d rounded once, every q8/q4 value, 4000 steps\n");
}

// The two-pass GEMM's first pass (kern_dequant.cuh): nb random blocks (pad bytes past a
// 4-byte boundary: the 2-byte loads), on `grid` CTAs (fewer than the 256 blocks per CTA the
// host launches: the CTAs stride on), against q d rounded once per value, element j of a
// Q4_0 block in the low nibble of byte j and j + 16 in the high one.
template <int WT>
static void dequant_case(long long nb, unsigned grid, size_t pad)
{
    constexpr int BSZ = WT == 4 ? 18 : 34;
    std::vector<uint8_t> wbuf((size_t)nb * BSZ + pad);
    uint8_t *w = wbuf.data() + pad;
    for (long long b = 0; b < nb; b++) {
        const uint16_t d = rnd_f16();
        memcpy(w + b * BSZ, &d, 2);
        for (int i = 2; i < BSZ; i++)
            w[b * BSZ + i] = (uint8_t)rnd32();
    }
    std::vector<__half> out((size_t)nb * 32, __half{0x7e00}); // NaN: a value left unwritten shows
    launch(grid, DQ_THREADS, 0, [&] { dequant_f16<WT>(w, nb, out.data(), blockIdx.x, gridDim.x); });
    int bad = 0;
    for (long long b = 0; b < nb && !bad; b++) {
        const uint8_t *blk = w + b * BSZ;
        uint16_t d;
        memcpy(&d, blk, 2);
        for (int j = 0; j < 32; j++) {
            const int q = WT == 8 ? (int)(int8_t)blk[2 + j] : (j < 16 ? blk[2 + j] & 15 : blk[2 + j - 16] >> 4) - 8;
            const uint16_t want = sim_f2h((double)q * sim_h2d(d)), got = out[(size_t)(b * 32 + j)].bits;
            if (got != want) {
                printf("FAIL dequant %s block %lld value %d: 0x%04x, want 0x%04x\n", WT == 4 ? "q4_0" : "q8_0", b, j,
                       got, want);
                bad = 1;
                break;
            }
        }
    }
    if (bad)
        failures++;
    else
        printf("ok   dequant %s to f16: %lld blocks, %u CTAs, weights %zu bytes past 4-byte alignment\n",
               WT == 4 ? "q4_0" : "q8_0", nb, grid, pad);
}

// The grouped expert matmul: g < 0 the old tile (MOE = 1, v0's 64 x 64), else GI8M tile g
// (MOE = 2, by token tiles) on a grid of `grid` CTAs (0: gi8m_items, as the host launches).
template <int WT>
static void moe_case(bool late, int n_expert, int64_t m, int64_t k, int64_t n_tok, int n_used, bool per_slot,
                     int g = -1, unsigned grid = 0, int stages = 3)
{
    std::vector<uint8_t> w = make_w(WT, m * n_expert, k, 0);
    const int64_t n_slots = n_tok * n_used, n_x = per_slot ? n_slots : n_tok;
    std::vector<int8_t> xq;
    std::vector<float> xd;
    make_x(n_x, k, xq, xd);
    std::vector<int> ids((size_t)n_slots), off((size_t)n_expert + 1), list;
    for (auto &e : ids)
        e = (int)(rnd32() % 7 == 0 ? n_expert - 1 : rnd32() % (uint32_t)(n_expert / 2)); // uneven, some idle
    for (int e = 0; e < n_expert; e++) { // kern_moe_sort's lists: by expert, slots in order
        off[(size_t)e] = (int)list.size();
        for (int64_t s = 0; s < n_slots; s++)
            if (ids[(size_t)s] == e)
                list.push_back((int)s);
    }
    off[(size_t)n_expert] = (int)list.size();
    const int x_div = per_slot ? 1 : n_used;
    std::vector<float> got((size_t)(n_slots * m), NAN), want((size_t)(n_slots * m));
    const size_t rs = (size_t)(k / 32) * (WT == 4 ? 18 : 34);
    for (int64_t s = 0; s < n_slots; s++)
        ref_gemm(WT, w.data() + rs * (size_t)(ids[(size_t)s] * m), m, k, xq.data(), xd.data(), s / x_div,
                 want.data() + s * m);
    const int aligned = (k / 32) % GI8_KBS == 0;
    sim_late = late;
    if (g < 0) {
        launch(3, 128, (size_t)(3 * gi8_stage_bytes(WT, 64)), [&] {
            gemm_i8<WT, 2, 4, 2, 2, 1>(w.data(), m, k, xq.data(), xd.data(), n_slots, got.data(), 3, aligned,
                                       n_expert, off.data(), list.data(), x_div);
        });
    } else {
        const int bm = gi8m_var_bm(g), bn = gi8m_var_bn(g);
        if (!grid)
            grid = (unsigned)gi8m_items(n_slots, n_expert, m, bm, bn);
        const size_t smem = (size_t)(stages * gi8_stage_bytes_n(WT, bm, bn));
#define SIM_MVAR(I, MT, NT, WM, CPS)                                                                               \
    if (g == (I))                                                                                                \
        launch(grid, 32 * WM, smem, [&] {                                                                        \
            gemm_i8<WT, MT, NT, WM, 1, 2>(w.data(), m, k, xq.data(), xd.data(), n_slots, got.data(), stages, aligned, \
                                          n_expert, off.data(), list.data(), x_div);                            \
        });
        GI8M_VARIANTS(SIM_MVAR)
#undef SIM_MVAR
    }
    int most = 0;
    for (int e = 0; e < n_expert; e++)
        most = off[(size_t)e + 1] - off[(size_t)e] > most ? off[(size_t)e + 1] - off[(size_t)e] : most;
    char what[200], tile[64] = "old tile";
    if (g >= 0)
        snprintf(tile, sizeof tile, "tile g%d (%dx%d), %d stages, grid %u", g, gi8m_var_bm(g), gi8m_var_bn(g), stages,
                 grid);
    snprintf(what, sizeof what, "moe q%d_0 %d experts of %lldx%lld, %lld tokens x %d (<= %d an expert), %s, %s, cp.async %s",
             WT, n_expert, (long long)m, (long long)k, (long long)n_tok, n_used, most,
             per_slot ? "x per slot" : "x per token", tile, late ? "late" : "early");
    compare(what, got, want);
}

// The f32 router GEMM (kern_gemm_f32.cuh): not bit-exact (the order of its f32 sums is
// its own), so within 1e-5 of the sum of |w x| of a double reference.
static void f32_case(bool few, int64_t m, int64_t k, int64_t n, unsigned grid)
{
    std::vector<float> w((size_t)(m * k)), x((size_t)(n * k)), got((size_t)(n * m), NAN);
    for (auto &v : w)
        v = (float)((int)(rnd32() % 2001) - 1000) / 997.0f;
    for (auto &v : x)
        v = (float)((int)(rnd32() % 2001) - 1000) / 311.0f;
    launch(grid, GF32_THREADS, 0, [&] {
        if (few)
            gemm_f32_few(w.data(), m, k, x.data(), n, got.data());
        else
            gemm_f32_tiles(w.data(), m, k, x.data(), n, got.data());
    });
    char what[160];
    snprintf(what, sizeof what, "f32 router %s %lldx%lld x %lld, grid %u", few ? "few-token" : "tiles", (long long)m,
             (long long)k, (long long)n, grid);
    for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < m; r++) {
            double want = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) {
                want += (double)w[(size_t)(r * k + i)] * x[(size_t)(t * k + i)];
                mag += fabs((double)w[(size_t)(r * k + i)] * x[(size_t)(t * k + i)]);
            }
            const float g = got[(size_t)(t * m + r)];
            if (!(fabs((double)g - want) <= 1e-5 * mag + 1e-30)) {
                printf("FAIL %s: token %lld row %lld is %.9g, the reference %.9g\n", what, (long long)t, (long long)r,
                       (double)g, want);
                failures++;
                return;
            }
        }
    printf("ok   %s\n", what);
}

int main()
{
    // the ring wraps (4 k stages, 2 to 4 buffers), partial m and n tiles, grid-stride tiles
    dense_case<8>(1, 2, true, 0, 150, 512, 70, 2);
    dense_case<8>(1, 3, false, 0, 150, 512, 70, 2);
    dense_case<8>(1, 4, true, 0, 150, 512, 70, 1);
    dense_case<4>(1, 3, true, 0, 130, 512, 65, 2);
    dense_case<8>(0, 3, true, 0, 100, 384, 70, 3);
    dense_case<4>(0, 2, false, 0, 100, 384, 70, 3);
    dense_case<4>(0, 4, true, 0, 64, 256, 64, 1);
    // every other variant, both types: partial tiles both ways, the ring wrapping
    for (int v = 2; v < GI8_NVAR; v++) {
        dense_case<4>(v, 2, v & 1, 0, 70, 384, 40, 3);
        dense_case<8>(v, v % 3 + 2, !(v & 1), 0, 40, 512, 37, 2);
    }
    // 2-byte weight loads: k % 128 != 0 (a 3-block stage), or a buffer only 2-byte aligned
    dense_case<8>(0, 3, true, 0, 70, 96, 37, 2);
    dense_case<4>(0, 3, true, 0, 70, 160, 9, 2);
    dense_case<8>(1, 3, true, 2, 40, 256, 5, 1);
    dense_case<4>(0, 2, false, 2, 33, 256, 1, 1);
    dense_case<4>(2, 3, true, 0, 70, 160, 9, 2);
    dense_case<8>(3, 3, true, 2, 40, 256, 5, 1);
    dense_case<4>(7, 2, false, 0, 33, 96, 20, 2);
    // grouped experts
    moe_case<4>(true, 8, 70, 256, 20, 3, false);
    moe_case<8>(true, 8, 64, 128, 25, 2, true);
    moe_case<8>(false, 6, 40, 96, 12, 3, true);
    // test_kern_engine's tiny model on the GPU (d 256, 4/2 heads of 64, 8 experts of 256,
    // 2 used, a 20-token prompt): its q/k/v/o GEMMs and grouped experts, 3 stages, auto tile
    dense_case<4>(0, 3, true, 0, 256, 256, 20, 4);
    dense_case<4>(0, 3, false, 0, 128, 256, 20, 2);
    moe_case<4>(true, 8, 256, 256, 20, 2, false);
    moe_case<4>(true, 8, 256, 256, 20, 2, true);
    // the grouped tiles by token tiles (GI8M): every tile, both types, both copy timings;
    // experts with no tokens, with fewer than 8, with several token tiles (200 slots: ~43
    // an expert for experts 0..3, 2 tiles of 32; 600 slots: 3 tiles of 64), counts not a
    // multiple of 8, partial row tiles, the 2-byte weight path, grid-stride (a grid smaller
    // than the items), 2 and 4 stages
    for (int g = 0; g < GI8M_NVAR; g++) {
        moe_case<4>(g & 1, 8, 70, 256, 20, 3, false, g);
        moe_case<8>(!(g & 1), 8, 64, 128, 100, 2, true, g);
    }
    moe_case<4>(true, 8, 40, 256, 300, 2, false, 0);
    moe_case<8>(true, 6, 40, 96, 12, 3, true, 1);
    moe_case<4>(false, 8, 130, 384, 100, 2, true, 2, 5, 2);
    moe_case<8>(true, 8, 70, 512, 50, 3, false, 0, 7, 4);
    moe_case<4>(true, 16, 64, 128, 1, 4, false, 5);
    // the f16-MMA kernel: every variant, both types, 3 and 4 slots, both copy timings,
    // partial tiles, grid-stride tiles, the 2-byte weight path
    f16_convert_case();
    for (int v = 0; v < GF_NVAR; v++) {
        f16_case(4, v, 3, true, 0, 150, 512, 70, 2);
        f16_case(8, v, 4, v & 1, 0, 70, 384, 37, 3);
    }
    f16_case(8, 2, 3, true, 0, 130, 640, 130, 2);  // 5 k stages through 3 slots, both token tiles partial
    f16_case(4, 3, 4, false, 0, 64, 1024, 64, 1); // 8 k stages, grid-stride tiles
    f16_case(8, 3, 3, true, 0, 70, 96, 37, 2);    // k % 128 != 0: 2-byte weight loads, a 3-block stage
    f16_case(4, 4, 3, true, 2, 40, 256, 5, 1);    // a buffer only 2-byte aligned
    f16_case(8, 0, 3, false, 2, 33, 160, 1, 1);   // one token
    // the k64 variants: 256-row tiles partial, k % 128 == 64 (whole 64-stages by cp.async),
    // an odd block count (2-byte loads), a buffer 4-byte aligned (cp.async here, not for
    // the 128-stages), grid-stride tiles, 4 slots
    f16_case(4, 5, 4, true, 0, 300, 192, 70, 2);
    f16_case(8, 5, 3, false, 0, 260, 320, 130, 2);
    f16_case(4, 6, 4, false, 4, 130, 448, 40, 2);
    f16_case(8, 6, 3, true, 0, 70, 96, 37, 2);
    f16_case(8, 7, 4, true, 4, 200, 576, 70, 2);
    f16_case(4, 7, 3, false, 2, 40, 256, 5, 1);
    f16_case(8, 7, 4, false, 0, 64, 2048, 1, 1);
    // split-K by 2: slices of 4 and 3 k stages (odd count), grid-stride over tiles x slices,
    // a 64-stage tile, the 2-byte weight path
    f16_case(4, 3, 3, true, 0, 100, 896, 70, 3, 2);
    f16_case(8, 5, 4, false, 0, 300, 640, 40, 2, 2);
    f16_case(4, 0, 3, false, 2, 70, 544, 37, 2, 2);
    // the staged epilogue (16-byte row pieces; RED.ADD.V4 under split-K): every variant with
    // partial tiles and m % 4 == 0 (vector path), m % 4 != 0 (4-byte fallback), grid-stride
    // tiles (the next tile's copies wait for the last reads of the staged tile), split-K
    for (int v = 0; v < GF_NVAR; v++)
        f16_case(v & 1 ? 8 : 4, v, 3, v & 1, 0, 148, 384, 70, 2, 1, true);
    f16_case(4, 5, 4, true, 0, 300, 448, 130, 2, 1, true);
    f16_case(8, 0, 3, false, 0, 150, 256, 37, 3, 1, true);
    f16_case(4, 3, 3, true, 0, 100, 896, 70, 3, 2, true);
    f16_case(8, 0, 3, false, 0, 132, 1024, 40, 1, 2, true);
    f16_case(8, 5, 3, true, 0, 260, 640, 130, 2, 2, true);
    // f8 (128 x 256): two token tiles, grid-stride over tiles x slices, staged RED.ADD.V4;
    // the 2-byte weight path with a 2-byte aligned buffer
    f16_case(8, 8, 4, true, 0, 200, 640, 300, 2, 2, true);
    f16_case(4, 8, 3, false, 2, 40, 256, 260, 1);
    // f16 weights (W pieces straight into the slot, read there by ldmatrix): every variant,
    // both timings, partial tiles, part stages (k % 64 == 8, k % 128 == 64), a 16-byte
    // pad, split-K, staged stores, grid-stride tiles
    for (int v = 0; v < GF_NVAR; v++) // whole stages (even v) or a part stage (odd v: k % 64 == 8)
        f16_case(16, v, 3 + (v & 1), v & 1, v % 3 ? 0 : 16, 70, v & 1 ? 328 : 512, 37, 3);
    f16_case(16, 0, 3, false, 0, 33, 160, 1, 1);             // one token
    f16_case(16, 3, 3, true, 0, 100, 896, 70, 3, 2);         // split-K
    f16_case(16, 5, 4, false, 16, 150, 648, 40, 2, 2);       // split-K, a part stage
    f16_case(16, 8, 4, false, 0, 130, 640, 260, 2, 2, true); // staged RED.ADD.V4
    // a slab of a longer y (the two-pass path's launches, ldy > m): fragment and staged
    // stores (16-byte pieces where ldy % 4 == 0, else one by one), split-K
    g_ldy_pad = 40;
    f16_case(16, 0, 3, true, 0, 130, 256, 70, 2);
    f16_case(16, 3, 4, false, 0, 100, 512, 40, 2, 2);
    f16_case(16, 8, 3, true, 0, 130, 256, 260, 2, 1, true);
    f16_case(16, 8, 3, true, 0, 128, 256, 260, 2, 2, true); // m, ldy % 4 == 0: 16-byte pieces, RED.V4
    g_ldy_pad = 3;
    f16_case(16, 8, 4, false, 0, 128, 640, 130, 2, 2, true);
    f16_case(16, 2, 3, true, 0, 64, 256, 33, 2);
    g_ldy_pad = 0;
    // the two-pass GEMM's first pass: a CTA per 256 blocks as launched, a partial last CTA,
    // fewer CTAs than that (they stride on), 2-byte aligned weights
    dequant_case<4>(512, 2, 0);
    dequant_case<8>(512, 2, 0);
    dequant_case<4>(777, 1, 2);
    dequant_case<8>(1000, 2, 2);
    dequant_case<8>(33, 1, 0);
    // the f32 router: partial tiles, several k stages, grid-stride tiles; decode
    f32_case(false, 8, 256, 20, 1);
    f32_case(false, 40, 288, 37, 3);
    f32_case(false, 128, 2048, 70, 5);
    f32_case(true, 8, 256, 1, 1);
    f32_case(true, 128, 2048, 3, 7);
    if (failures) {
        printf("%d case(s) differ from the reference\n", failures);
        return 1;
    }
    printf("all cases agree (the int8 GEMM bit for bit, the f16-MMA GEMM within f32 rounding)\n");
    return 0;
}
