// The super-block GEMV's own device source (kernels/cuda/kern_gemv_sb.cuh) run on the
// host: each lane of a warp is a POSIX thread, __syncwarp a 32-thread barrier, and a
// shuffle meets its 32 lanes at that barrier.  Warps run one after another, so a grid
// smaller than the spans (the persistent grid) makes each warp loop over many spans.
// Shared memory starts as garbage.  Outputs are compared with a double-precision
// reference computed from the block formats (not from the kernel's register tricks):
// Q4_0 = f16 d + 16 bytes (element j in the low nibble of byte j, j + 16 in the high one,
// value d (q - 8)), Q8_0 = f16 d + 32 int8.  Dense and grouped shapes (shared and per-job
// inputs), every super-block count the kernel takes (1, 3, 8, 16, 32), partial last spans,
// 4- and 8-warp blocks, full and persistent grids, the validation reports.
// Exit 0: all agree; 1: a difference (printed).  No GPU involved.
#include <pthread.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__
#define __launch_bounds__(n)
#define __CUDA_ARCH__ 900

#include "simt_common.h"

struct int4 {
    int x, y, z, w;
};

template <typename T> static T __ldg(const T *p) { return *p; }
#define GEMV_SB_LOAD(LD, p) (*(p))
// kern_kernels.cu's, which the kernel source calls
static float f16_bits_to_f32(uint16_t h) { return sim_f16_bits_to_f32(h); }



static int __dp4a(int a, int b, int c)
{
    for (int i = 0; i < 4; i++)
        c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
    return c;
}

// ---- one warp: 32 threads, a barrier, shuffle slots -----------------------------------------
static pthread_barrier_t warp_bar;
static float shfl_slot[32];

static void __syncwarp() { pthread_barrier_wait(&warp_bar); }

static float __shfl_xor_sync(unsigned, float v, int o)
{
    const int lane = threadIdx.x & 31;
    pthread_barrier_wait(&warp_bar);
    shfl_slot[lane] = v;
    pthread_barrier_wait(&warp_bar);
    const float r = shfl_slot[lane ^ o];
    pthread_barrier_wait(&warp_bar);
    return r;
}

struct kval {
    unsigned int flag;
    int op;
    long long index, limit, pos;
};
enum { OP_GET_ROWS = 1, OP_GEMV = 2, OP_MOE_GEMV = 3, OP_GEMM = 4, OP_MOE_ROW = 5 };
static std::mutex kval_mu;
static void kval_report(kval *v, int op, long long index, long long limit, long long pos)
{
    std::lock_guard<std::mutex> g(kval_mu);
    if (v->flag == 0) {
        v->flag = 1, v->op = op, v->index = index, v->limit = limit, v->pos = pos;
    }
}

// Shared memory: one block's worth (warps run one at a time; each uses its own part).
int4 gemv_sb_smem[8 * 4 * 32 * 17 + 8 * 32];

// cp.async as the PTX ISA allows it: a copy lands either at issue (EARLY: a stage
// overwritten while other lanes still read it shows) or only when the issuing thread's
// cp.async.wait_group retires its group (LATE: a read before the wait sees garbage).
static bool cp_early = false;
struct cp_pending {
    int4 *dst;
    int4 val;
};
static thread_local std::vector<std::vector<cp_pending>> cp_groups;
static thread_local std::vector<cp_pending> cp_open;
static void gemv_sb_cp16(int4 *dst, const int4 *src)
{
    if (cp_early) {
        *dst = *src;
        usleep(50); // lets the other lanes run on into a stage that was overwritten too soon
    } else {
        cp_open.push_back({dst, *src});
    }
}
static void gemv_sb_cp_commit()
{
    cp_groups.push_back(cp_open);
    cp_open.clear();
}
template <int N> static void gemv_sb_cp_wait()
{
    while (cp_groups.size() > (size_t)N) {
        for (const cp_pending &c : cp_groups.front())
            *c.dst = c.val;
        cp_groups.erase(cp_groups.begin());
    }
}
#define GEMV_SB_CP_ASYNC 1

#include "kernels/cuda/kern_gemv_sb.cuh"

GEMV_SB_KERNEL(emu_gemv_q4_0, 4, 0)
GEMV_SB_KERNEL(emu_gemv_q8_0, 8, 0)
GEMV_SBA_KERNEL(emu_gemva2_q4_0, 4, 2)
GEMV_SBA_KERNEL(emu_gemva2_q8_0, 8, 2)
GEMV_SBA_KERNEL(emu_gemva3_q4_0, 4, 3)
GEMV_SBA_KERNEL(emu_gemva3_q8_0, 8, 3)

// ---- the launch -------------------------------------------------------------------------------
struct args {
    int qt;
    int stages; // 0: the register path; 2, 3: the cp.async ring
    const uint8_t *w;
    long long nrows, ncols;
    const int *ids;
    int n_expert, n_jobs;
    const int8_t *xq;
    const float *xd;
    const int *xs;
    long long x_stride;
    float *y;
    long long row_fault, w_rows;
    kval *v;
};
struct lane_arg {
    const args *a;
    unsigned block, thread;
};

static void *lane_main(void *p)
{
    const lane_arg *l = (const lane_arg *)p;
    blockIdx = {l->block, 0, 0};
    threadIdx = {l->thread, 0, 0};
    const args *a = l->a;
    typedef void (*kfn)(const uint8_t *, long long, long long, const int *, int, int, const int8_t *, const float *,
                        const int *, long long, float *, long long, long long, kval *);
    static const kfn k[3][2] = {{emu_gemv_q4_0, emu_gemv_q8_0},
                                {emu_gemva2_q4_0, emu_gemva2_q8_0},
                                {emu_gemva3_q4_0, emu_gemva3_q8_0}};
    k[a->stages == 0 ? 0 : a->stages - 1][a->qt == 4 ? 0 : 1](a->w, a->nrows, a->ncols, a->ids, a->n_expert,
                                                              a->n_jobs, a->xq, a->xd, a->xs, a->x_stride, a->y,
                                                              a->row_fault, a->w_rows, a->v);
    if (!cp_groups.empty() || !cp_open.empty()) {
        printf("FAIL: a lane left the kernel with cp.async copies outstanding\n");
        abort();
    }
    return NULL;
}

static void launch(const args &a, unsigned grid, unsigned warps)
{
    gridDim = {grid, 1, 1};
    blockDim = {warps * 32, 1, 1};
    for (size_t i = 0; i < sizeof gemv_sb_smem / sizeof gemv_sb_smem[0]; i++)
        gemv_sb_smem[i] = {(int)0xdeadbeef, 0x7fc00001, -1, 12345}; // garbage
    for (unsigned b = 0; b < grid; b++)
        for (unsigned w = 0; w < warps; w++) {
            pthread_t th[32];
            lane_arg la[32];
            pthread_barrier_init(&warp_bar, NULL, 32);
            for (unsigned l = 0; l < 32; l++) {
                la[l] = {&a, b, w * 32 + l};
                pthread_create(&th[l], NULL, lane_main, &la[l]);
            }
            for (unsigned l = 0; l < 32; l++)
                pthread_join(th[l], NULL);
            pthread_barrier_destroy(&warp_bar);
        }
}

// ---- data and reference ---------------------------------------------------------------------
static uint64_t rng = 88172645463325252ull;
static uint32_t rnd()
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)rng;
}

static int failures = 0;

// One case: n_expert matrices of nrows x ncols (n_expert 0: dense), n_jobs jobs (ids),
// n_x input rows (1 shared or one per job), launched on `grid` blocks (0: one block per
// `warps` spans) of `warps` warps.
static int stages_now = 0; // the kernel the cases run (main sets it)

static void run_case(int qt, long long nrows, long long ncols, int n_expert, int n_jobs, int n_x, unsigned grid,
                     unsigned warps)
{
    const int bsz = qt == 4 ? 18 : 34;
    const long long nb = ncols / 32, row_bytes = nb * bsz, ne = n_expert ? n_expert : 1;
    const int jobs = n_expert ? n_jobs : 1;
    std::vector<uint8_t> wbuf((size_t)(ne * nrows * row_bytes) + 16);
    uint8_t *w = wbuf.data() + (16 - ((uintptr_t)wbuf.data() & 15)) % 16; // 16-byte aligned, as on the GPU
    for (long long i = 0; i < ne * nrows * row_bytes; i++)
        w[i] = (uint8_t)rnd();
    for (long long b = 0; b < ne * nrows * nb; b++) { // finite scales: exponent 10..17, random sign and mantissa
        const uint16_t h = (uint16_t)(((rnd() & 1) << 15) | ((10 + rnd() % 8) << 10) | (rnd() & 1023));
        memcpy(w + b * bsz, &h, 2);
    }
    std::vector<int8_t> xq((size_t)(n_x * ncols));
    std::vector<float> xd((size_t)(n_x * nb));
    std::vector<int> xs((size_t)(n_x * nb));
    for (auto &q : xq)
        q = (int8_t)((int)(rnd() % 255) - 127);
    for (long long b = 0; b < n_x * nb; b++) {
        xd[b] = (float)(rnd() % 1000 + 1) / 1024.0f;
        int s = 0;
        for (int i = 0; i < 32; i++)
            s += xq[b * 32 + i];
        xs[b] = s;
    }
    std::vector<int> ids(jobs);
    for (int j = 0; j < jobs; j++)
        ids[j] = n_expert ? (int)((j * 37 + 5) % n_expert) : 0;
    std::vector<float> y((size_t)(jobs * nrows), NAN);
    args a = {qt, stages_now, w, nrows, ncols, n_expert ? ids.data() : NULL, (int)ne, jobs, xq.data(), xd.data(), xs.data(),
              n_x > 1 ? nb : 0, y.data(), 0, ne * nrows, NULL};
    const int nsb = (int)(nb / 8), rpi = 32 / nsb;
    const long long spans = (long long)jobs * ((nrows + rpi - 1) / rpi);
    if (grid == 0)
        grid = (unsigned)((spans + warps - 1) / warps);
    launch(a, grid, warps);
    for (int j = 0; j < jobs; j++)
        for (long long r = 0; r < nrows; r++) {
            const uint8_t *row = w + ((long long)ids[j] * nrows + r) * row_bytes;
            const long long xo = n_x > 1 ? j * nb : 0;
            double ref = 0, mag = 0;
            for (long long b = 0; b < nb; b++) {
                uint16_t h;
                memcpy(&h, row + b * bsz, 2);
                const double d = f16_bits_to_f32(h) * (double)xd[xo + b];
                long long s = 0;
                for (int i = 0; i < 32; i++) {
                    int q;
                    if (qt == 4) {
                        const uint8_t byte = row[b * bsz + 2 + (i % 16)];
                        q = (i < 16 ? (byte & 15) : (byte >> 4)) - 8;
                    } else {
                        q = (int8_t)row[b * bsz + 2 + i];
                    }
                    s += (long long)q * xq[(xo + b) * 32 + i];
                }
                ref += d * (double)s;
                mag += std::fabs(d * (double)s);
            }
            const float got = y[j * nrows + r];
            if (!(std::fabs(got - ref) <= 1e-5 * mag + 1e-6)) {
                if (failures++ < 10)
                    printf("FAIL q%d_0 stages %d %lldx%lld experts %d jobs %d n_x %d grid %u warps %u: y[%d][%lld] = "
                           "%.7g, want %.7g (mag %.3g)\n",
                           qt, stages_now, nrows, ncols, n_expert, jobs, n_x, grid, warps, j, r, got, ref, mag);
                return;
            }
        }
    printf("ok   q%d_0 %s %lldx%lld experts %d jobs %d n_x %d, %lld spans on %u blocks of %u warps\n", qt,
           stages_now ? (stages_now == 2 ? (cp_early ? "cp.async x2 early" : "cp.async x2 late") : (cp_early ? "cp.async x3 early" : "cp.async x3 late")) : "registers", nrows, ncols, n_expert, jobs,
           n_x, spans, grid, warps);
}

// Validation: an expert id out of range and a row past the buffer are reported (first
// one), their spans skipped, and the others computed.
static void run_validate(int qt)
{
    const long long nrows = 20, ncols = 512, nb = ncols / 32, row_bytes = nb * (qt == 4 ? 18 : 34);
    std::vector<uint8_t> w((size_t)(2 * nrows * row_bytes) + 16, 0);
    std::vector<int8_t> xq(ncols, 1);
    std::vector<float> xd(nb, 1.0f);
    std::vector<int> xs(nb, 32);
    int ids[2] = {1, 7};
    std::vector<float> y(2 * nrows, -1.0f);
    kval v = {};
    args a = {qt, stages_now, w.data(), nrows, ncols, ids, 2, 2, xq.data(), xd.data(), xs.data(), 0, y.data(), 0, 2 * nrows, &v};
    launch(a, 2, 4);
    if (!v.flag || v.op != OP_MOE_GEMV || v.index != 7 || v.limit != 2 || v.pos != 1 || y[nrows] != -1.0f ||
        y[0] != 0.0f) {
        printf("FAIL q%d_0 validate expert: flag %u op %d index %lld limit %lld pos %lld\n", qt, v.flag, v.op, v.index,
               v.limit, v.pos);
        failures++;
        return;
    }
    kval v2 = {};
    args b = {qt, stages_now, w.data(), nrows, ncols, NULL, 1, 1, xq.data(), xd.data(), xs.data(), 0, y.data(), 1000, nrows, &v2};
    launch(b, 1, 4);
    if (!v2.flag || v2.op != OP_GEMV || v2.index != 1000 || v2.limit != nrows) {
        printf("FAIL q%d_0 validate row: flag %u op %d index %lld\n", qt, v2.flag, v2.op, v2.index);
        failures++;
        return;
    }
    printf("ok   q%d_0 validation reports (expert id, row past the buffer)\n", qt);
}

int main()
{
    for (int mode = 0; mode < 3; mode++) // registers; cp.async landing late; landing early
    for (stages_now = mode ? 2 : 0; stages_now <= (mode ? 3 : 0); stages_now++)
    for (int qt = 4; qt <= 8; qt += 4) {
        cp_early = mode == 2;
        run_case(qt, 64, 2048, 0, 1, 1, 0, 4);    // nsb 8: 4 rows a span
        run_case(qt, 67, 2048, 0, 1, 1, 0, 8);    // partial last span
        run_case(qt, 67, 2048, 0, 1, 1, 2, 4);    // persistent: 8 warps over 17 spans
        run_case(qt, 37, 768, 0, 1, 1, 0, 4);     // nsb 3: 10 rows a span, lanes 30-31 idle
        run_case(qt, 37, 768, 0, 1, 1, 1, 4);     // the same, persistent
        run_case(qt, 9, 4096, 0, 1, 1, 1, 4);     // nsb 16
        run_case(qt, 5, 8192, 0, 1, 1, 1, 4);     // nsb 32: one row a span
        run_case(qt, 70, 256, 0, 1, 1, 1, 4);     // nsb 1: 32 rows a span
        run_case(qt, 30, 1280, 0, 1, 1, 1, 4);    // nsb 5
        run_case(qt, 24, 512, 6, 5, 1, 1, 4);     // grouped, shared input
        run_case(qt, 24, 512, 6, 5, 5, 1, 4);     // grouped, an input per job: x reloaded per job
        run_case(qt, 21, 768, 6, 4, 4, 0, 8);     // grouped, nsb 3, a span per warp
    }
    for (stages_now = 0; stages_now <= 3; stages_now += stages_now ? 1 : 2) {
        run_validate(4);
        run_validate(8);
    }
    if (failures)
        printf("%d case(s) FAILED\n", failures);
    return failures ? 1 : 0;
}
