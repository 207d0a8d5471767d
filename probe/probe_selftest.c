#include "probe/probe_selftest.h"

#include <errno.h>
#include <immintrin.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/adg_util.h"
#include "probe/probe_amx_asm.h"

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#define CHILD_TIMEOUT_S 10

/* ---- scalar references */

void probe_ref_tdpb(int32_t c[16][16], const uint8_t a[16][64], const uint8_t b[16][64], bool a_signed, bool b_signed)
{
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            int32_t acc = c[m][n];
            for (int k = 0; k < 16; k++)
                for (int i = 0; i < 4; i++) {
                    int32_t x = a_signed ? (int8_t)a[m][4 * k + i] : a[m][4 * k + i];
                    int32_t y = b_signed ? (int8_t)b[k][4 * n + i] : b[k][4 * n + i];
                    acc += x * y;
                }
            c[m][n] = acc;
        }
}

float probe_bf16_to_float(uint16_t v)
{
    uint32_t u = (uint32_t)v << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float probe_fp16_to_float(uint16_t v)
{
    int sign = v >> 15, exp = (v >> 10) & 0x1f, man = v & 0x3ff;
    float f;
    if (exp == 0)
        f = ldexpf((float)man, -24);
    else if (exp == 31)
        f = man ? NAN : INFINITY;
    else
        f = ldexpf((float)(man | 0x400), exp - 25);
    return sign ? -f : f;
}

void probe_ref_tdp_half(float c[16][16], const uint16_t a[16][32], const uint16_t b[16][32], bool fp16)
{
    float (*cv)(uint16_t) = fp16 ? probe_fp16_to_float : probe_bf16_to_float;
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            float acc = c[m][n];
            for (int k = 0; k < 16; k++)
                acc += cv(a[m][2 * k]) * cv(b[k][2 * n]) + cv(a[m][2 * k + 1]) * cv(b[k][2 * n + 1]);
            c[m][n] = acc;
        }
}

/* ---- random data: small integers, so that every product and sum is exact in fp32 and
 * the comparison can be exact whatever order the hardware adds in. */

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint16_t small_bf16(uint64_t *s)
{
    float f = (float)((int)(rnd(s) % 17) - 8);
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)(u >> 16);
}

static uint16_t small_fp16(uint64_t *s)
{
    int v = (int)(rnd(s) % 17) - 8;
    if (v == 0)
        return 0;
    unsigned a = (unsigned)(v < 0 ? -v : v), e = 0;
    while ((a >> (e + 1)) != 0)
        e++;
    uint16_t man = (uint16_t)((a << (10 - e)) & 0x3ff);
    return (uint16_t)((v < 0 ? 0x8000 : 0) | ((e + 15) << 10) | man);
}

/* ---- the child */

static volatile probe_st_result *shared; /* the child's report, in a MAP_SHARED page */

static void at(const char *step)
{
    /* Written before each instruction: if it kills the child, the parent reads where. */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    snprintf((char *)shared->at, sizeof shared->at, "%s", step);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

static probe_st_op *next_op(const char *insn)
{
    probe_st_op *op = (probe_st_op *)&shared->ops[shared->nops++];
    op->insn = insn;
    op->ran = false;
    return op;
}

static void tile_load(int t, const void *p)
{
    at("TILELOADD");
    long stride = 64;
    switch (t) {
    case 0: __asm__ volatile(PROBE_TILELOADD(0) ::"a"(p), "c"(stride) : "memory"); break;
    case 1: __asm__ volatile(PROBE_TILELOADD(1) ::"a"(p), "c"(stride) : "memory"); break;
    default: __asm__ volatile(PROBE_TILELOADD(2) ::"a"(p), "c"(stride) : "memory"); break;
    }
}

static void tile_store0(void *p)
{
    at("TILESTORED");
    long stride = 64;
    __asm__ volatile(PROBE_TILESTORED(0) ::"a"(p), "c"(stride) : "memory");
}

enum { OP_SSD, OP_SUD, OP_USD, OP_UUD, OP_BF16, OP_FP16 };

static void tile_dp(int which)
{
    switch (which) {
    case OP_SSD: __asm__ volatile(PROBE_TDPBSSD(0, 1, 2) ::: "memory"); break;
    case OP_SUD: __asm__ volatile(PROBE_TDPBSUD(0, 1, 2) ::: "memory"); break;
    case OP_USD: __asm__ volatile(PROBE_TDPBUSD(0, 1, 2) ::: "memory"); break;
    case OP_UUD: __asm__ volatile(PROBE_TDPBUUD(0, 1, 2) ::: "memory"); break;
    case OP_BF16: __asm__ volatile(PROBE_TDPBF16PS(0, 1, 2) ::: "memory"); break;
    default: __asm__ volatile(PROBE_TDPFP16PS(0, 1, 2) ::: "memory"); break;
    }
}

static void amx_int_op(const char *insn, int which, bool as, bool bs, uint64_t *seed)
{
    probe_st_op *op = next_op(insn);
    static uint8_t a[16][64] __attribute__((aligned(64))), b[16][64] __attribute__((aligned(64)));
    static int32_t c[16][16] __attribute__((aligned(64))), ref[16][16], init[16][16];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 64; j++) {
            a[i][j] = (uint8_t)rnd(seed);
            b[i][j] = (uint8_t)rnd(seed);
        }
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++)
            init[i][j] = ref[i][j] = (int32_t)(rnd(seed) % 2001) - 1000;
    probe_ref_tdpb(ref, a, b, as, bs);
    tile_load(0, init);
    tile_load(1, a);
    tile_load(2, b);
    at(insn);
    tile_dp(which);
    tile_store0(c);
    op->ran = true;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++)
            if (c[i][j] != ref[i][j] && op->mismatches++ == 0)
                snprintf(op->detail, sizeof op->detail, "C[%d][%d] = %d, reference %d", i, j, c[i][j], ref[i][j]);
    op->ok = op->mismatches == 0;
}

static void amx_half_op(const char *insn, int which, bool fp16, uint64_t *seed)
{
    probe_st_op *op = next_op(insn);
    static uint16_t a[16][32] __attribute__((aligned(64))), b[16][32] __attribute__((aligned(64)));
    static float c[16][16] __attribute__((aligned(64))), ref[16][16], init[16][16];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 32; j++) {
            a[i][j] = fp16 ? small_fp16(seed) : small_bf16(seed);
            b[i][j] = fp16 ? small_fp16(seed) : small_bf16(seed);
        }
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++)
            init[i][j] = ref[i][j] = (float)((int)(rnd(seed) % 201) - 100);
    probe_ref_tdp_half(ref, a, b, fp16);
    tile_load(0, init);
    tile_load(1, a);
    tile_load(2, b);
    at(insn);
    tile_dp(which);
    tile_store0(c);
    op->ran = true;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++)
            if (c[i][j] != ref[i][j] && op->mismatches++ == 0)
                snprintf(op->detail, sizeof op->detail, "C[%d][%d] = %g, reference %g", i, j, (double)c[i][j],
                         (double)ref[i][j]);
    op->ok = op->mismatches == 0;
}

static void child_amx(const probe_st_opts *o, uint64_t seed)
{
    at("ARCH_REQ_XCOMP_PERM");
    shared->perm_ret = (int)syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, (unsigned long)XFEATURE_XTILEDATA);
    shared->perm_errno = shared->perm_ret ? errno : 0;
    if (shared->perm_ret && !o->ignore_perm)
        _exit(3);
    static probe_tilecfg cfg __attribute__((aligned(64)));
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 3; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    at("LDTILECFG");
    __asm__ volatile(PROBE_LDTILECFG_RAX ::"a"(&cfg) : "memory");
    amx_int_op("TDPBSSD", OP_SSD, true, true, &seed);
    amx_int_op("TDPBSUD", OP_SUD, true, false, &seed);
    amx_int_op("TDPBUSD", OP_USD, false, true, &seed);
    amx_int_op("TDPBUUD", OP_UUD, false, false, &seed);
    amx_half_op("TDPBF16PS", OP_BF16, false, &seed);
    if (o->fp16)
        amx_half_op("TDPFP16PS", OP_FP16, true, &seed);
    at("TILERELEASE");
    __asm__ volatile(PROBE_TILERELEASE ::: "memory");
}

__attribute__((target("avx512f,avx512vnni"))) static void run_vpdpbusd(int32_t *acc, const uint8_t *a, const uint8_t *b)
{
    __m512i c = _mm512_loadu_si512(acc);
    c = _mm512_dpbusd_epi32(c, _mm512_loadu_si512(a), _mm512_loadu_si512(b));
    _mm512_storeu_si512(acc, c);
}

__attribute__((target("avx512f,avx512bf16"))) static void run_vdpbf16ps(float *acc, const uint16_t *a, const uint16_t *b)
{
    __m512 c = _mm512_loadu_ps(acc);
    __m512i va = _mm512_loadu_si512(a), vb = _mm512_loadu_si512(b);
    c = _mm512_dpbf16_ps(c, (__m512bh)va, (__m512bh)vb);
    _mm512_storeu_ps(acc, c);
}

static void child_avx512(const probe_st_opts *o, uint64_t seed)
{
    if (o->vnni) {
        probe_st_op *op = next_op("VPDPBUSD");
        uint8_t a[64], b[64];
        int32_t acc[16], ref[16];
        for (int i = 0; i < 64; i++) {
            a[i] = (uint8_t)rnd(&seed);
            b[i] = (uint8_t)rnd(&seed);
        }
        for (int i = 0; i < 16; i++) {
            acc[i] = (int32_t)(rnd(&seed) % 2001) - 1000;
            ref[i] = acc[i];
            for (int j = 0; j < 4; j++)
                ref[i] += (int32_t)a[4 * i + j] * (int8_t)b[4 * i + j]; /* unsigned x signed */
        }
        at("VPDPBUSD");
        run_vpdpbusd(acc, a, b);
        op->ran = true;
        for (int i = 0; i < 16; i++)
            if (acc[i] != ref[i] && op->mismatches++ == 0)
                snprintf(op->detail, sizeof op->detail, "lane %d = %d, reference %d", i, acc[i], ref[i]);
        op->ok = op->mismatches == 0;
    }
    if (o->bf16) {
        probe_st_op *op = next_op("VDPBF16PS");
        uint16_t a[32], b[32];
        float acc[16], ref[16];
        for (int i = 0; i < 32; i++) {
            a[i] = small_bf16(&seed);
            b[i] = small_bf16(&seed);
        }
        for (int i = 0; i < 16; i++) {
            acc[i] = ref[i] = (float)((int)(rnd(&seed) % 201) - 100);
            ref[i] += probe_bf16_to_float(a[2 * i]) * probe_bf16_to_float(b[2 * i]) +
                      probe_bf16_to_float(a[2 * i + 1]) * probe_bf16_to_float(b[2 * i + 1]);
        }
        at("VDPBF16PS");
        run_vdpbf16ps(acc, a, b);
        op->ran = true;
        for (int i = 0; i < 16; i++)
            if (acc[i] != ref[i] && op->mismatches++ == 0)
                snprintf(op->detail, sizeof op->detail, "lane %d = %g, reference %g", i, (double)acc[i], (double)ref[i]);
        op->ok = op->mismatches == 0;
    }
}

/* ---- the parent */

static adg_error *run_child(const probe_st_opts *o, bool amx, probe_st_result *out)
{
    memset(out, 0, sizeof *out);
    uint64_t seed = o->seed ? o->seed : (adg_now_ns() | 1);
    probe_st_result *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return adg_error_errno(ADG_E_NOMEM, errno, "cannot map the self-test's report page");
    memset(sh, 0, sizeof *sh);
    sh->seed = seed;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        munmap(sh, sizeof *sh);
        return adg_error_hint(adg_error_errno(ADG_E_INTERNAL, e, "cannot fork the self-test child"),
                              "the process limit (ulimit -u) or memory is exhausted");
    }
    if (pid == 0) {
        shared = sh;
        /* Default dispositions: a faulting instruction must end the child with its signal
         * (sanitizer runtimes install SIGSEGV handlers that would turn it into exit 1). */
        int sigs[] = {SIGILL, SIGSEGV, SIGBUS, SIGFPE, SIGALRM};
        for (size_t i = 0; i < ADG_ARRAY_LEN(sigs); i++)
            signal(sigs[i], SIG_DFL);
        struct rlimit nocore = {0, 0};
        setrlimit(RLIMIT_CORE, &nocore);
        alarm(CHILD_TIMEOUT_S);
        if (amx)
            child_amx(o, seed);
        else
            child_avx512(o, seed);
        at("done");
        sh->completed = true;
        _exit(0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            int e = errno;
            munmap(sh, sizeof *sh);
            return adg_error_errno(ADG_E_INTERNAL, e, "cannot wait for the self-test child");
        }
    }
    *out = *sh;
    munmap(sh, sizeof *sh);
    out->at[sizeof out->at - 1] = '\0';
    if (WIFSIGNALED(st)) {
        out->signal = WTERMSIG(st);
        out->timed_out = out->signal == SIGALRM;
        out->completed = false;
    } else if (WIFEXITED(st)) {
        out->exit_code = WEXITSTATUS(st);
        if (out->exit_code != 0)
            out->completed = false;
    }
    return NULL;
}

adg_error *probe_selftest_amx(const probe_st_opts *o, probe_st_result *out)
{
    return run_child(o, true, out);
}

adg_error *probe_selftest_avx512(const probe_st_opts *o, probe_st_result *out)
{
    return run_child(o, false, out);
}
