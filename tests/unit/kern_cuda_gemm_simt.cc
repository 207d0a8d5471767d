// The int8 tensor-core GEMM's own device source (kernels/cuda/kern_gemm_i8.cuh), run on
// the host: every CUDA thread of a block is a POSIX thread, __syncthreads a barrier, and
// the warp-wide instructions (ldmatrix.x4, mma.m16n8k32.s8) meet their 32 lanes at a
// per-warp barrier and compute what the PTX ISA says.  cp.async copies land either at
// issue (EARLY: a buffer overwritten while others still read it shows) or only when the
// issuing thread's cp.async.wait_group retires their group (LATE: a read before the wait
// shows); shared memory starts as garbage.  Outputs must equal the CPU reference formula
// bit for bit.  Dense and grouped-expert forms, every tile, pipeline depth, both weight
// paths.  Also the f32 router GEMM (kern_gemm_f32.cuh), within f32 rounding of a double
// reference.  Exit 0: all agree; 1: a difference (printed).  No GPU involved.
#include <pthread.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

// ---- the CUDA surface the kernel uses ----------------------------------------------------
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __CUDA_ARCH__ 800

#include "kernels/cuda/kern_gemm_i8_map.h"

struct sim_dim3 {
    unsigned x, y, z;
};
static thread_local sim_dim3 threadIdx;
static thread_local sim_dim3 blockIdx;
static sim_dim3 gridDim, blockDim;

struct float2 {
    float x, y;
};
struct __half {
    uint16_t bits;
};

static float __half2float(__half h)
{
    const uint32_t s = (uint32_t)(h.bits >> 15) << 31, e = (h.bits >> 10) & 31, m = h.bits & 1023;
    uint32_t bits;
    if (e == 0 && m == 0)
        bits = s;
    else if (e == 0) { // subnormal: m * 2^-24
        float f = (float)m * 5.9604644775390625e-8f;
        return s ? -f : f;
    } else if (e == 31)
        bits = s | 0x7f800000u | (m << 13);
    else
        bits = s | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
static unsigned __byte_perm(unsigned x, unsigned y, unsigned s)
{
    const uint64_t v = (uint64_t)y << 32 | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++)
        r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
    return r;
}
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

#include "kernels/cuda/kern_gemm_i8.cuh"
#include "kernels/cuda/kern_gemm_f32.cuh"

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

// m rows of k in ggml Q4_0 (wt 4) / Q8_0 (wt 8) blocks with random values, after pad bytes.
static std::vector<uint8_t> make_w(int wt, int64_t m, int64_t k, size_t pad)
{
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

template <int WT>
static void moe_case(bool late, int n_expert, int64_t m, int64_t k, int64_t n_tok, int n_used, bool per_slot)
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
    launch(3, 128, (size_t)(3 * gi8_stage_bytes(WT, 64)), [&] {
        gemm_i8<WT, 2, 4, 2, 2, true>(w.data(), m, k, xq.data(), xd.data(), n_slots, got.data(), 3, aligned, n_expert,
                              off.data(), list.data(), x_div);
    });
    char what[160];
    snprintf(what, sizeof what, "moe q%d_0 %d experts of %lldx%lld, %lld tokens x %d, %s, cp.async %s", WT, n_expert,
             (long long)m, (long long)k, (long long)n_tok, n_used, per_slot ? "x per slot" : "x per token",
             late ? "late" : "early");
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
    printf("all cases agree (the int8 GEMM bit for bit)\n");
    return 0;
}
