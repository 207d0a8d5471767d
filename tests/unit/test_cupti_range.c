/* --gpu-metrics: the metric table, the naming of auto ranges, and the Range Profiler
 * session (profiler/cupti_range_prof.c) driven against a stand-in libcupti
 * (tests/fixtures/cupti/fake_range_cupti.c) that checks struct sizes, call order and the
 * images it handed out, and answers values the test can predict. */
#include "adg_test.h"

#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "profiler/cupti_proto.h"
#include "profiler/cupti_range.h"
#include "profiler/cupti_range_prof.h"

/* ---- the table ---- */

static const char *refuse;
static bool supported_but(void *ctx, const char *m)
{
    (void)ctx;
    return !refuse || !strstr(refuse, m);
}

static void test_select(void **st)
{
    (void)st;
    cupti_range_sel sel;
    char why[400];
    refuse = NULL;
    assert_true(cupti_range_select(supported_but, NULL, &sel, why, sizeof why));
    assert_int_equal(sel.n, CUPTI_RM_COUNT);
    assert_int_equal(sel.present, (1u << CUPTI_RM_COUNT) - 1);
    assert_string_equal(sel.names[CUPTI_RM_DRAM_READ], "dram__bytes_read.sum");
    assert_string_equal(sel.names[CUPTI_RM_SM_PCT], "sm__throughput.avg.pct_of_peak_sustained_elapsed");
    /* An optional role falls back to its next candidate, or is left out. */
    refuse = "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active "
             "sm__pipe_tensor_op_imma_cycles_active.avg.pct_of_peak_sustained_active";
    assert_true(cupti_range_select(supported_but, NULL, &sel, why, sizeof why));
    assert_int_equal(sel.n, CUPTI_RM_COUNT - 1);
    assert_false(sel.present & (1u << CUPTI_RM_TENSOR_IMMA_PCT));
    bool fallback = false;
    for (size_t i = 0; i < sel.n; i++)
        if (sel.role_of[i] == CUPTI_RM_TENSOR_HMMA_PCT)
            fallback = !strcmp(sel.names[i], "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active");
    assert_true(fallback);
    /* A required one missing: no metrics, and the reason names it. */
    refuse = "dram__bytes_write.sum";
    assert_false(cupti_range_select(supported_but, NULL, &sel, why, sizeof why));
    assert_non_null(strstr(why, "dram_write_bytes"));
    assert_non_null(strstr(why, "dram__bytes_write.sum"));
    assert_string_equal(cupti_range_role_key(CUPTI_RM_SM_PCT), "sm_throughput_pct");
    assert_string_equal(cupti_range_role_key(99), "?");
}

static void test_names(void **st)
{
    (void)st;
    cupti_range_names q = {0};
    assert_true(cupti_range_names_push(&q, "_Z4gemv"));
    assert_true(cupti_range_names_push(&q, NULL));
    assert_string_equal(cupti_range_names_at(&q, 0, 2), "_Z4gemv");
    assert_string_equal(cupti_range_names_at(&q, 1, 2), "?");
    assert_null(cupti_range_names_at(&q, 2, 3)); /* more ranges than launches */
    for (int i = 0; i < 200; i++)
        assert_true(cupti_range_names_push(&q, "k"));
    assert_int_equal(q.n, 202);
    cupti_range_names_clear(&q);
    assert_int_equal(q.n, 0);
    cupti_range_names_free(&q);
}

/* Optional entries of two kinds: each kind became ranges or did not, as a whole. */
static void test_names_optional_kinds(void **st)
{
    (void)st;
    cupti_range_names q = {0};
    assert_true(cupti_range_names_push(&q, "a"));
    assert_true(cupti_range_names_push_opt(&q, "<memset>"));
    assert_true(cupti_range_names_push(&q, "b"));
    assert_true(cupti_range_names_push_opt(&q, "<memcpy DtoD>"));
    assert_true(cupti_range_names_push_opt(&q, "<memcpy DtoD>"));
    assert_true(cupti_range_names_push(&q, "c"));
    /* 6 ranges: all; 3: none; 5: the copies, not the memset (unique); 4: the memset, not
     * the copies (unique). */
    assert_true(cupti_range_names_fit(&q, 6));
    assert_string_equal(cupti_range_names_at(&q, 3, 6), "<memcpy DtoD>");
    assert_true(cupti_range_names_fit(&q, 3));
    assert_string_equal(cupti_range_names_at(&q, 2, 3), "c");
    assert_true(cupti_range_names_fit(&q, 5));
    assert_string_equal(cupti_range_names_at(&q, 1, 5), "b");
    assert_string_equal(cupti_range_names_at(&q, 2, 5), "<memcpy DtoD>");
    assert_string_equal(cupti_range_names_at(&q, 4, 5), "c");
    assert_true(cupti_range_names_fit(&q, 4));
    assert_string_equal(cupti_range_names_at(&q, 1, 4), "<memset>");
    assert_string_equal(cupti_range_names_at(&q, 3, 4), "c");
    /* One copy only: one range more than the launches fits the memset or the copy, a
     * guess (the memset, seen first), and said to be one. */
    cupti_range_names_clear(&q);
    assert_true(cupti_range_names_push(&q, "a"));
    assert_true(cupti_range_names_push_opt(&q, "<memset>"));
    assert_true(cupti_range_names_push_opt(&q, "<memcpy DtoD>"));
    assert_true(cupti_range_names_push(&q, "b"));
    assert_false(cupti_range_names_fit(&q, 3));
    assert_string_equal(cupti_range_names_at(&q, 1, 3), "<memset>");
    assert_string_equal(cupti_range_names_at(&q, 2, 3), "b");
    /* More ranges than entries: no fit, by order, none past the end. */
    assert_false(cupti_range_names_fit(&q, 5));
    assert_null(cupti_range_names_at(&q, 4, 5));
    cupti_range_names_free(&q);
}

/* ---- the session against the stand-in ---- */

#if defined(ADG_HAVE_CUPTI) && defined(ADG_FAKE_RANGE_CUPTI)

typedef struct got {
    int n_kmetric, n_mconfig, n_notes;
    cupti_kmetric_rec k[64];
    char kname[64][64];
    cupti_mconfig_rec mc;
    char chip[32];
    char notes[8][700];
    uint32_t note_codes[8];
    int n_steps;       /* CUPTI_NOTE_METRICS_STEP: setup calls announced */
    char last_step[64];
    int n_mstats;
    cupti_mstats_rec ms; /* the latest */
} got;
static got G;
static void *fake;
static void (*kernel_ran)(void);
static void (*memset_ran)(void);
static void (*in_launch)(int);
static const char *(*calls)(void);
static int ctx_a, ctx_b;
static void *cur_ctx;
static int cur_dev;
static uint64_t clock_ns;
/* cupti_range_env.settled, when a test sets it (NULL otherwise). */
static void (*settled_hook)(void);

static void t_emit(cupti_rec_type type, const void *fixed, const char *name)
{
    if (type == CUPTI_REC_KMETRIC && G.n_kmetric < 64) {
        memcpy(&G.k[G.n_kmetric], fixed, sizeof G.k[0]);
        snprintf(G.kname[G.n_kmetric], sizeof G.kname[0], "%s", name);
        G.n_kmetric++;
    } else if (type == CUPTI_REC_MSTATS) {
        memcpy(&G.ms, fixed, sizeof G.ms);
        G.n_mstats++;
    } else if (type == CUPTI_REC_MCONFIG) {
        memcpy(&G.mc, fixed, sizeof G.mc);
        snprintf(G.chip, sizeof G.chip, "%s", name);
        G.n_mconfig++;
    }
}
static void t_note(cupti_note_code code, const char *text)
{
    if (code == CUPTI_NOTE_METRICS_STEP) {
        G.n_steps++;
        snprintf(G.last_step, sizeof G.last_step, "%s", text);
        return;
    }
    if (G.n_notes < 8) {
        G.note_codes[G.n_notes] = code;
        snprintf(G.notes[G.n_notes], sizeof G.notes[0], "%s", text);
    }
    G.n_notes++;
}
static int t_ctx(void **ctx)
{
    *ctx = cur_ctx;
    return 0;
}
static int t_dev(int *d)
{
    *d = cur_dev;
    return 0;
}
static uint64_t t_now(void)
{
    return clock_ns;
}

static int setup_fake(void **st)
{
    (void)st;
    if (!fake) {
        /* The build's path, or where a copied build put it (a device bundle). */
        const char *path = getenv("AMXDIAG_FAKE_RANGE_CUPTI");
        fake = dlopen(path && *path ? path : ADG_FAKE_RANGE_CUPTI, RTLD_NOW | RTLD_LOCAL);
        if (!fake) {
            print_error("cannot load the stand-in libcupti: %s\n", dlerror());
            return -1;
        }
        *(void **)&kernel_ran = dlsym(fake, "fake_cupti_kernel_ran");
        *(void **)&memset_ran = dlsym(fake, "fake_cupti_memset_ran");
        *(void **)&calls = dlsym(fake, "fake_cupti_calls");
        *(void **)&in_launch = dlsym(fake, "fake_cupti_in_launch");
    }
    memset(&G, 0, sizeof G);
    cur_ctx = &ctx_a;
    cur_dev = 0;
    clock_ns = 1000000000ull;
    unsetenv("FAKE_CUPTI_PRIVILEGES");
    unsetenv("FAKE_CUPTI_NO_METRIC");
    unsetenv("FAKE_CUPTI_UNSUPPORTED");
    unsetenv("FAKE_CUPTI_ONE_CONFIG");
    unsetenv("FAKE_CUPTI_CONFIG_PER_WINDOW");
    unsetenv("FAKE_CUPTI_NO_PUSH_NEEDED");
    unsetenv("FAKE_CUPTI_MEMSET_KERNEL");
    unsetenv("AMXDIAG_GPU_METRICS_PUSH");
    unsetenv("FAKE_CUPTI_EXIT_WORK");
    settled_hook = NULL;
    return 0;
}

/* Every launch profiled (no sampling), or per kernel and grid, with a cap and a skip. */
static void start_sampled(unsigned max_ranges, unsigned per_kernel, unsigned max_launches, unsigned skip)
{
    cupti_range_env env = {fake,       t_emit,       t_note, t_ctx, t_dev, t_now, max_ranges, 200, per_kernel,
                           max_launches, skip,        settled_hook};
    assert_true(cupti_range_prof_init(&env));
}

static void start(unsigned max_ranges)
{
    start_sampled(max_ranges, 0, 0, 0);
}

/* The program's previous CUDA call returned (where the session starts). */
static void returned(void)
{
    cupti_range_prof_api_exit();
}

/* A launch's ENTER callback: the stand-in refuses setup calls made inside it. */
static void enter(const char *name, bool runtime, bool graph)
{
    in_launch(1);
    cupti_range_prof_launch_enter(name, 0, runtime, graph);
    in_launch(0);
}

/* A kernel launched (callback ENTER) after an earlier call returned, and run on the GPU
 * while profiling. */
static void launch(const char *name)
{
    returned();
    enter(name, false, false);
    cupti_range_prof_launch_exit(false);
    kernel_ran();
}

static void test_session_windows(void **st)
{
    (void)st;
    start(2);
    const char *names[] = {"_Z4gemvPKvPf", "_Z8quantizePKfPv", "_Z4gemvPKvPf", "_Z7softmaxPf", "_Z4gemvPKvPf"};
    launch(names[0]);
    launch(names[1]);
    /* Full: decoded at the return of the launch that filled it, not inside the next launch. */
    assert_int_equal(cupti_range_prof_stats().windows, 0);
    returned();
    assert_int_equal(cupti_range_prof_stats().windows, 1);
    for (int i = 2; i < 5; i++)
        launch(names[i]);
    cupti_range_stats s = cupti_range_prof_stats();
    assert_int_equal(s.state, 1);
    assert_int_equal(s.passes, 3);
    assert_int_equal(s.windows, 2); /* full at the 3rd and the 5th launch */
    cupti_range_prof_finish();
    s = cupti_range_prof_stats();
    assert_int_equal(s.windows, 3);
    assert_int_equal(s.ranges, 5);
    assert_int_equal(s.dropped, 0);
    assert_int_equal(s.unnamed, 0);
    assert_int_equal(G.n_mconfig, 1);
    assert_string_equal(G.chip, "GH100");
    assert_int_equal(G.mc.passes, 3);
    assert_int_equal(G.mc.max_ranges, 2);
    assert_int_equal(G.mc.replay, 1);
    /* The stand-in knows no imma metric. */
    assert_false(G.mc.present & (1u << CUPTI_RM_TENSOR_IMMA_PCT));
    assert_true(G.mc.present & (1u << CUPTI_RM_TENSOR_GMMA_PCT));
    assert_int_equal(G.n_kmetric, 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(G.kname[i], names[i]);
        assert_int_equal(G.k[i].seq, (uint64_t)i + 1);
        assert_true(G.k[i].v[CUPTI_RM_DURATION] == 1000.0 * (i + 1));
        assert_true(G.k[i].v[CUPTI_RM_DRAM_READ] == 1e6 * (i + 1));
        assert_true(G.k[i].v[CUPTI_RM_DRAM_WRITE] == 5e5);
        assert_true(G.k[i].v[CUPTI_RM_SM_PCT] == 40.0);
        /* gmma came back NaN: absent from this range. */
        assert_false(G.k[i].present & (1u << CUPTI_RM_TENSOR_GMMA_PCT));
        assert_true(G.k[i].present & (1u << CUPTI_RM_DRAM_PEAK_BPC));
    }
    assert_int_equal(G.n_notes, 0);
    /* Call order as CUPTI requires it: setup, then per window stop/decode and a fresh
     * image, started again under the same configuration. */
    const char *log = calls();
    assert_non_null(strstr(log, "init host-init add-metrics enable set-config start push"));
    assert_non_null(strstr(log, "pop stop decode start push pop stop decode start push pop stop decode disable "
                                "host-deinit deinit"));
    assert_int_equal(s.reenabled, 0);
}

static void test_runtime_launch_counted_once(void **st)
{
    (void)st;
    start(8);
    /* cudaLaunchKernel (ENTER), then the driver launch inside it: one kernel. */
    returned();
    enter("_Z3addPfS_", true, false);
    returned(); /* the driver launch's own return, inside the runtime launch: not a start point */
    enter("_Z3addPfS_", false, false);
    cupti_range_prof_launch_exit(true);
    kernel_ran();
    launch("_Z5scalePf");
    /* A successful synchronisation decodes a window older than the period. */
    clock_ns += 300000000ull;
    cupti_range_prof_sync();
    cupti_range_stats s = cupti_range_prof_stats();
    assert_int_equal(s.windows, 1);
    assert_int_equal(G.n_kmetric, 2);
    assert_string_equal(G.kname[0], "_Z3addPfS_");
    assert_string_equal(G.kname[1], "_Z5scalePf");
    /* Nothing pending: another sync decodes nothing. */
    clock_ns += 300000000ull;
    cupti_range_prof_sync();
    assert_int_equal(cupti_range_prof_stats().windows, 1);
    /* The context ends: pending launches are decoded, the next launch starts a new session. */
    launch("_Z3addPfS_");
    cupti_range_prof_ctx_ending();
    assert_int_equal(G.n_kmetric, 3);
    assert_int_equal(cupti_range_prof_stats().state, 0);
    launch("_Z3addPfS_");
    assert_int_equal(G.n_mconfig, 2);
    cupti_range_prof_finish();
    assert_int_equal(G.n_kmetric, 4);
}

/* Kernels inside a CUDA graph have no launch callback of their own: the graph's ranges
 * get their own window, named as graph kernels, and the launches around keep their names. */
static void test_graph_window(void **st)
{
    (void)st;
    start(16);
    launch("_Z1aPf");
    enter(NULL, true, true); /* cudaGraphLaunch: three kernels run */
    enter(NULL, false, true);
    cupti_range_prof_launch_exit(true);
    kernel_ran();
    kernel_ran();
    kernel_ran();
    launch("_Z1bPf");
    cupti_range_prof_finish();
    assert_int_equal(G.n_kmetric, 5);
    assert_string_equal(G.kname[0], "_Z1aPf");
    for (int i = 1; i <= 3; i++)
        assert_string_equal(G.kname[i], "<CUDA graph kernel>");
    assert_string_equal(G.kname[4], "_Z1bPf");
    assert_int_equal(cupti_range_prof_stats().windows, 3);
    assert_int_equal(cupti_range_prof_stats().unnamed, 3);
    assert_int_equal(G.n_notes, 0);
}

/* A CUPTI that takes one configuration per Range Profiler object: the next window gets
 * a fresh object, and no value is lost. */
static void test_one_config_per_object(void **st)
{
    (void)st;
    setenv("FAKE_CUPTI_ONE_CONFIG", "1", 1);
    setenv("FAKE_CUPTI_CONFIG_PER_WINDOW", "1", 1);
    start(2);
    for (int i = 0; i < 5; i++)
        launch("_Z1kPf");
    cupti_range_prof_finish();
    cupti_range_stats s = cupti_range_prof_stats();
    assert_int_equal(G.n_kmetric, 5);
    assert_true(G.k[4].v[CUPTI_RM_DURATION] == 5000.0);
    assert_int_equal(s.reenabled, 2);
    assert_int_equal(G.n_notes, 0);
    assert_non_null(strstr(calls(), "pop stop decode disable enable set-config start push"));
}

/* A CUPTI that wants the configuration set again for every window: it is, on the same
 * object. */
static void test_config_per_window(void **st)
{
    (void)st;
    setenv("FAKE_CUPTI_CONFIG_PER_WINDOW", "1", 1);
    start(2);
    for (int i = 0; i < 5; i++)
        launch("_Z1kPf");
    cupti_range_prof_finish();
    assert_int_equal(G.n_kmetric, 5);
    assert_int_equal(cupti_range_prof_stats().reenabled, 0);
    assert_int_equal(G.n_notes, 0);
    assert_non_null(
        strstr(calls(), "pop stop decode set-config start push pop stop decode set-config start push"));
}

/* The diagnostic minimal set: the required metrics only. */
static void test_minimal_set(void **st)
{
    (void)st;
    setenv("AMXDIAG_GPU_METRICS_MINIMAL", "1", 1);
    start(4);
    launch("_Z1kPf");
    cupti_range_prof_finish();
    unsetenv("AMXDIAG_GPU_METRICS_MINIMAL");
    assert_int_equal(G.n_mconfig, 1);
    assert_int_equal(G.mc.present, (1u << CUPTI_RM_DURATION) | (1u << CUPTI_RM_DRAM_READ) | (1u << CUPTI_RM_DRAM_WRITE));
    assert_int_equal(G.n_kmetric, 1);
    assert_true(G.k[0].v[CUPTI_RM_DRAM_READ] == 1e6);
    assert_false(G.k[0].present & (1u << CUPTI_RM_SM_PCT));
}

static void test_privileges(void **st)
{
    (void)st;
    setenv("FAKE_CUPTI_PRIVILEGES", "1", 1);
    start(4);
    launch("_Z3addPfS_");
    launch("_Z3addPfS_");
    cupti_range_stats s = cupti_range_prof_stats();
    assert_int_equal(s.state, 2);
    assert_int_equal(G.n_notes, 1);
    assert_int_equal(G.note_codes[0], CUPTI_NOTE_NO_METRICS);
    assert_non_null(strstr(G.notes[0], "restricted to administrators"));
    assert_non_null(strstr(G.notes[0], "CUPTI_ERROR_INSUFFICIENT_PRIVILEGES"));
    assert_non_null(strstr(G.notes[0], "NVreg_RestrictProfilingToAdminUsers=0"));
    assert_non_null(strstr(G.notes[0], "kernel trace is complete"));
    assert_int_equal(G.n_kmetric, 0);
    cupti_range_prof_finish();
    assert_int_equal(G.n_notes, 1);
}

static void test_unsupported_and_missing_metric(void **st)
{
    (void)st;
    setenv("FAKE_CUPTI_UNSUPPORTED", "1", 1);
    start(4);
    launch("k");
    assert_int_equal(G.n_notes, 1);
    assert_non_null(strstr(G.notes[0], "cannot run on GPU 0"));
    assert_non_null(strstr(G.notes[0], "vGPU disabled"));
    cupti_range_prof_finish();

    setup_fake(NULL);
    setenv("FAKE_CUPTI_NO_METRIC", "dram__bytes_read.sum", 1);
    start(4);
    launch("k");
    assert_int_equal(G.n_notes, 1);
    assert_non_null(strstr(G.notes[0], "do not provide dram_read_bytes"));
    assert_non_null(strstr(G.notes[0], "GH100"));
    cupti_range_prof_finish();
}

static void test_fatal_and_other_context(void **st)
{
    (void)st;
    start(8);
    launch("_Z1aPf");
    cur_ctx = &ctx_b; /* a second context: noted once, not profiled */
    launch("_Z1bPf");
    launch("_Z1bPf");
    cur_ctx = &ctx_a;
    launch("_Z1aPf");
    cupti_range_stats s = cupti_range_prof_stats();
    assert_int_equal(s.other_ctx, 2);
    assert_int_equal(G.n_notes, 1);
    assert_int_equal(G.note_codes[0], CUPTI_NOTE_INFO);
    assert_non_null(strstr(G.notes[0], "second CUDA context"));
    /* Error 700: the pending launches are lost, and said to be. */
    cupti_range_prof_fatal();
    s = cupti_range_prof_stats();
    assert_int_equal(s.state, 2);
    assert_int_equal(s.lost, 2);
    assert_int_equal(G.n_notes, 2);
    assert_non_null(strstr(G.notes[1], "last 2 kernel launches were lost"));
    launch("_Z1aPf"); /* nothing more is called */
    cupti_range_prof_finish();
    assert_int_equal(G.n_kmetric, 0);
    assert_null(strstr(calls(), "disable"));
}

static void test_no_context_yet(void **st)
{
    (void)st;
    start(4);
    cur_ctx = NULL; /* a runtime launch before the runtime made its context current */
    launch("_Z1aPf");
    assert_int_equal(cupti_range_prof_stats().state, 0);
    cur_ctx = &ctx_a;
    launch("_Z1aPf");
    assert_int_equal(cupti_range_prof_stats().state, 1);
    cupti_range_prof_finish();
    assert_int_equal(G.n_kmetric, 1);
}

/* The session starts when one of the program's calls returns with a context current,
 * never inside a launch (CUDA's range_profiling sample sets up between calls): a launch
 * before that is counted, not profiled.  Every setup call is announced, and the host
 * object's availability image stays alive until the host object goes. */
static void test_setup_between_calls(void **st)
{
    (void)st;
    start(4);
    cur_ctx = NULL;
    returned(); /* cuInit: no context yet */
    assert_int_equal(cupti_range_prof_stats().state, 0);
    cur_ctx = &ctx_a;
    /* The first call is a launch (its context made inside it): not profiled. */
    enter("_Z5firstPf", true, false);
    assert_int_equal(cupti_range_prof_stats().state, 0);
    assert_int_equal(G.n_steps, 0);
    cupti_range_prof_launch_exit(true);
    kernel_ran();
    returned(); /* ... and at its return the session starts */
    cupti_range_stats s = cupti_range_prof_stats();
    assert_int_equal(s.state, 1);
    assert_int_equal(s.early, 1);
    assert_int_equal(G.n_mconfig, 1);
    assert_true(G.n_steps >= 15);
    assert_string_equal(G.last_step, "cuptiRangeProfilerPushRange");
    /* Another return while active starts nothing. */
    returned();
    assert_int_equal(G.n_mconfig, 1);
    launch("_Z6secondPf");
    launch("_Z5thirdPf");
    cupti_range_prof_finish();
    assert_int_equal(G.n_kmetric, 2);
    assert_string_equal(G.kname[0], "_Z6secondPf");
    assert_string_equal(G.kname[1], "_Z5thirdPf");
    assert_int_equal(G.n_notes, 0);
    const char *log = calls();
    assert_null(strstr(log, "setup-inside-launch"));
    assert_null(strstr(log, "availability-image-gone"));
    /* Steps are announced during setup only: not for the windows' calls. */
    assert_string_equal(G.last_step, "cuptiRangeProfilerPushRange");
}

/* A callback that comes back on the same thread while the Range Profiler's own CUPTI
 * calls run (CUPTI's driver calls inside Initialize, Enable, Disable): each hook must
 * return at once.  Taking the session's lock again would hang the program before its
 * first kernel, as an injected run did on an H200. */
/* How often the stand-in's call log holds the call word w. */
static int tokens(const char *log, const char *w)
{
    int n = 0;
    size_t l = strlen(w);
    for (const char *p = log; (p = strstr(p, w)); p += l)
        if ((p == log || p[-1] == ' ') && (p[l] == ' ' || !p[l]))
            n++;
    return n;
}

static int reentries;
static void reenter_all(void)
{
    reentries++;
    cupti_range_prof_api_exit();
    cupti_range_prof_launch_enter("_Z6nestedv", 0, false, false);
    cupti_range_prof_launch_exit(false);
    cupti_range_prof_sync();
    cupti_range_prof_ctx_ending();
}

static void test_reentrant_callbacks(void **st)
{
    (void)st;
    void (*on_call)(void (*)(void));
    *(void **)&on_call = dlsym(fake, "fake_cupti_on_call");
    assert_non_null(on_call);
    reentries = 0;
    on_call(reenter_all);
    alarm(10); /* a deadlock fails the test instead of hanging it */
    start(4);
    launch("_Z1aPf");
    launch("_Z1bPf");
    cupti_range_prof_finish();
    alarm(0);
    on_call(NULL);
    assert_true(reentries >= 3); /* init, enable, disable */
    cupti_range_stats s = cupti_range_prof_stats();
    /* Nothing of the nested calls counted: one session, the program's two launches. */
    assert_int_equal(s.windows, 1);
    assert_int_equal(s.ranges, 2);
    assert_int_equal(s.early, 0);
    assert_int_equal(s.other_ctx, 0);
    assert_int_equal(G.n_kmetric, 2);
    assert_string_equal(G.kname[0], "_Z1aPf");
    assert_string_equal(G.kname[1], "_Z1bPf");
    /* One profiler initialisation, one object, one teardown. */
    assert_int_equal(tokens(calls(), "init"), 1);
    assert_int_equal(tokens(calls(), "enable"), 1);
    assert_int_equal(tokens(calls(), "disable"), 1);
    assert_int_equal(tokens(calls(), "deinit"), 1);
}

/* The order of the built-in run on the H200: the context ends first (Disable and
 * HostDeinitialize there, "session ended with its context"), the tracer stops later
 * (finish, DeInitialize).  Everything is released once; under ASan a second free of an
 * image or of the names would fail here.  A later context starts a fresh session. */
static void test_teardown_order(void **st)
{
    (void)st;
    start(4);
    launch("_Z1aPf");
    launch("_Z1bPf");
    cupti_range_prof_ctx_ending();
    cupti_range_stats s = cupti_range_prof_stats();
    assert_int_equal(s.state, 0); /* idle: a later context may start another */
    assert_int_equal(s.ranges, 2);
    const char *log = calls();
    assert_non_null(strstr(log, "pop stop decode disable host-deinit"));
    cupti_range_prof_ctx_ending(); /* the primary context's release after cuCtxDestroy: nothing left */
    cupti_range_prof_finish();
    cupti_range_prof_finish(); /* a second stop (the collector's close after its finish) */
    log = calls();
    assert_non_null(strstr(log, "disable host-deinit deinit"));
    assert_int_equal(tokens(log, "disable"), 1);
    assert_int_equal(tokens(log, "host-deinit"), 1);
    assert_int_equal(tokens(log, "deinit"), 1);
    assert_int_equal(G.n_kmetric, 2);
    /* Started again, then finished with its context alive. */
    start(4);
    launch("_Z1cPf");
    cupti_range_prof_finish();
    assert_int_equal(cupti_range_prof_stats().ranges, 1);
    assert_int_equal(G.n_kmetric, 3);
    assert_string_equal(G.kname[2], "_Z1cPf");
}

/* Auto ranges are collected inside a pushed range only (CUDA 13's sample pushes one; on an
 * H200 a session without it decoded "0 ranges for 256 launches" in every window once the
 * kernel activity records were off).  Without the push the stand-in collects nothing, as
 * that GPU did; with it every launch is a range. */
static void test_push_needed(void **st)
{
    (void)st;
    setenv("AMXDIAG_GPU_METRICS_PUSH", "0", 1);
    start(8);
    launch("_Z1aPf");
    launch("_Z1bPf");
    cupti_range_prof_finish();
    unsetenv("AMXDIAG_GPU_METRICS_PUSH");
    assert_int_equal(G.n_kmetric, 0);
    assert_int_equal(G.n_notes, 1);
    assert_non_null(strstr(G.notes[0], "0 profiled ranges for 2 kernel launches"));
    assert_null(strstr(calls(), "push"));

    setup_fake(NULL);
    start(8);
    launch("_Z1aPf");
    launch("_Z1bPf");
    cupti_range_prof_finish();
    assert_int_equal(G.n_kmetric, 2);
    assert_int_equal(G.n_notes, 0);
    assert_non_null(strstr(calls(), "start push pop stop decode"));
    assert_null(strstr(calls(), "stop-inside-range"));
}

/* A cudaMemset the driver runs as a kernel is an auto range of its own (61 ranges for 60
 * launches on an H200, every name after it one off): it is named "<memset>", and where
 * the driver used no kernel the launches keep their names all the same. */
static void memset_call(void)
{
    returned();
    cupti_range_prof_memset();
    memset_ran();
}

static void test_memset_range(void **st)
{
    (void)st;
    start(16);
    launch("_Z1aPf");
    memset_call();
    launch("_Z1bPf");
    launch("_Z1cPf");
    cupti_range_prof_finish();
    assert_int_equal(G.n_kmetric, 4);
    assert_string_equal(G.kname[0], "_Z1aPf");
    assert_string_equal(G.kname[1], "<memset>");
    assert_string_equal(G.kname[2], "_Z1bPf");
    assert_string_equal(G.kname[3], "_Z1cPf");
    assert_int_equal(cupti_range_prof_stats().memsets, 1);
    assert_int_equal(G.n_notes, 0);

    setup_fake(NULL);
    setenv("FAKE_CUPTI_MEMSET_KERNEL", "0", 1);
    start(16);
    memset_call(); /* before any launch: starts the session */
    launch("_Z1aPf");
    memset_call();
    launch("_Z1bPf");
    cupti_range_prof_finish();
    assert_int_equal(G.n_kmetric, 2);
    assert_string_equal(G.kname[0], "_Z1aPf");
    assert_string_equal(G.kname[1], "_Z1bPf");
    assert_int_equal(G.n_notes, 0);
}

/* Kernel replay costs each profiled launch milliseconds per pass (about 65 ms at 8 passes
 * on an H200, a GPU idle in between): by default at most N launches of each kernel and
 * grid are profiled.  The decision for a launch is taken at the return of the one before
 * (the Range Profiler is started and stopped between the program's calls), from the key
 * that followed that one last time. */
static void launch_shape(const char *name, uint64_t shape)
{
    returned();
    in_launch(1);
    cupti_range_prof_launch_enter(name, shape, false, false);
    in_launch(0);
    cupti_range_prof_launch_exit(false);
    kernel_ran();
}

static void test_sampling_per_kernel(void **st)
{
    (void)st;
    start_sampled(64, 2, 0, 0);
    for (int it = 0; it < 5; it++) {
        launch_shape("_Z1aPf", 1);
        launch_shape("_Z1bPf", 1);
        launch_shape("_Z1cPf", 1);
    }
    cupti_range_stats s = cupti_range_prof_stats();
    assert_int_equal(s.seen, 15);
    assert_int_equal(s.profiled, 6); /* two of each, then the loop is known and left alone */
    /* A new kernel: its first launch was expected to be a (not profiled), the next ones are. */
    launch_shape("_Z1dPf", 1);
    launch_shape("_Z1dPf", 1);
    launch_shape("_Z1dPf", 1);
    /* The same kernel at another grid is another key. */
    launch_shape("_Z1aPf", 7);
    launch_shape("_Z1aPf", 7);
    cupti_range_prof_finish();
    s = cupti_range_prof_stats();
    assert_int_equal(s.seen, 20);
    assert_int_equal(s.profiled, 9);
    assert_int_equal(G.n_kmetric, 9);
    const char *want[] = {"_Z1aPf", "_Z1bPf", "_Z1cPf", "_Z1aPf", "_Z1bPf", "_Z1cPf", "_Z1dPf", "_Z1dPf", "_Z1aPf"};
    for (int i = 0; i < 9; i++)
        assert_string_equal(G.kname[i], want[i]);
    assert_int_equal(G.n_notes, 0); /* every window's ranges matched its launches */
    /* The account the record gets. */
    assert_true(G.n_mstats >= 1);
    assert_int_equal(G.ms.seen, 20);
    assert_int_equal(G.ms.profiled, 9);
    assert_int_equal(G.ms.per_kernel, 2);
    assert_true(G.ms.toggles >= 3);
    assert_true(G.ms.overhead_ns > 0);
}

static void test_sampling_cap_and_skip(void **st)
{
    (void)st;
    start_sampled(64, 0, 3, 2);
    for (int i = 0; i < 7; i++)
        launch_shape("_Z1xPf", 1);
    cupti_range_prof_finish();
    cupti_range_stats s = cupti_range_prof_stats();
    assert_int_equal(s.seen, 7);
    assert_int_equal(s.profiled, 3); /* launches 3, 4 and 5 */
    assert_int_equal(G.n_kmetric, 3);
    assert_true(G.k[0].v[CUPTI_RM_DURATION] == 1000.0); /* the stand-in's first range */
    assert_int_equal(G.ms.skip, 2);
    assert_int_equal(G.ms.max_launches, 3);
    /* Configured at setup, started only when the skip was over. */
    assert_non_null(strstr(calls(), "enable set-config start push"));
    assert_int_equal(tokens(calls(), "start"), 1);
}

/* The tracer's stop: the last window decoded, the activity flushed while the profiler is
 * still initialised, the profiler torn down last.  The other order (the one before) makes
 * the stand-in abort where CUDA 13.0.1 died with SIGSEGV. */
static void fake_flush(void *arg)
{
    (void)arg;
    int (*flush_all)(uint32_t);
    *(void **)&flush_all = dlsym(fake, "cuptiActivityFlushAll");
    assert_non_null(flush_all);
    assert_int_equal(flush_all(1), 0);
}

static void test_stop_order(void **st)
{
    (void)st;
    start(8);
    launch("_Z1aPf");
    launch("_Z1bPf");
    cupti_range_prof_stop(fake_flush, NULL);
    assert_non_null(strstr(calls(), "pop stop decode flush disable host-deinit deinit"));
    assert_int_equal(G.n_kmetric, 2);
    /* A launch after the drain (another thread, the tracer stopping) starts nothing. */
    launch("_Z1cPf");
    assert_int_equal(tokens(calls(), "start"), 1);

    setup_fake(NULL);
    start(8);
    launch("_Z1aPf");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) /* the stand-in says why it aborts */
            _exit(3);
        cupti_range_prof_finish(); /* the order that died: deinitialised, then flushed */
        int (*flush_all)(uint32_t);
        *(void **)&flush_all = dlsym(fake, "cuptiActivityFlushAll");
        flush_all(1);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    cupti_range_prof_stop(fake_flush, NULL);
}

/* The settled hook: after the setup, after the first decoded window, after a session
 * ended with its context (Disable and the host object's end are CUPTI's first run of
 * those too), not at the final stop (the injection library registers its exit handler
 * again each time). */
static int n_settled;
static void count_settled(void)
{
    n_settled++;
}

static void test_settled_hook(void **st)
{
    (void)st;
    n_settled = 0;
    settled_hook = count_settled;
    start(1);
    launch("_Z1aPf");
    assert_int_equal(n_settled, 1);
    returned(); /* the full window decoded */
    assert_int_equal(n_settled, 2);
    launch("_Z1bPf");
    returned();
    launch("_Z1cPf");
    cupti_range_prof_ctx_ending();
    assert_int_equal(n_settled, 3);
    cupti_range_prof_ctx_ending(); /* no session: nothing */
    assert_int_equal(n_settled, 3);
    launch("_Z1dPf"); /* a new session: its setup */
    assert_int_equal(n_settled, 4);
    cupti_range_prof_finish();
    assert_int_equal(cupti_range_prof_stats().windows, 4);
    assert_int_equal(n_settled, 4); /* the new session's first window decoded at the stop: not then */
}

/* The failure of an injected program at exit, in the stand-in: CUPTI's profiler registers
 * exit work of its own when it first runs, after the injection's exit handler (registered
 * at cuInit); exit() runs the later registration first, so the handler's flush and
 * teardown called into a torn-down CUPTI.  Registered again when the profiler has run
 * (the settled hook), the handler runs first and the process exits cleanly. */
static void child_final(void)
{
    _exit(0); /* registered first, runs last: no leak report of the forked child */
}
static void child_stop(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    cupti_range_prof_stop(fake_flush, NULL);
}
static void register_child_stop(void)
{
    atexit(child_stop);
}

static int exit_child(bool late)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) /* the stand-in says why it aborts */
            _exit(3);
        atexit(child_final);
        atexit(child_stop); /* InitializeInjection's registration, before CUPTI ran */
        setenv("FAKE_CUPTI_EXIT_WORK", "1", 1);
        settled_hook = late ? register_child_stop : NULL;
        start(1);
        launch("_Z1aPf");
        returned();
        launch("_Z1bPf");
        exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void test_exit_handler_after_cupti(void **st)
{
    (void)st;
    int status = exit_child(false);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    status = exit_child(true);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A device-to-device copy the driver runs as a kernel is an auto range of its own (an
 * H200 left 8 of amxdiag-gpu-bench's unnamed, and the names after them shifted). */
static void test_copy_range(void **st)
{
    (void)st;
    start(16);
    launch("_Z1aPf");
    cupti_range_prof_driver_op("<memcpy DtoD>");
    kernel_ran(); /* the copy ran as a kernel */
    launch("_Z1bPf");
    cupti_range_prof_driver_op("<memcpy DtoD>"); /* this one did not */
    launch("_Z1cPf");
    cupti_range_prof_finish();
    /* 4 ranges for 5 entries, 2 of them optional: named by order, the best there is. */
    assert_int_equal(G.n_kmetric, 4);
    assert_string_equal(G.kname[0], "_Z1aPf");
    assert_string_equal(G.kname[1], "<memcpy DtoD>");
    assert_string_equal(G.kname[2], "_Z1bPf");

    setup_fake(NULL);
    start(16);
    launch("_Z1aPf");
    cupti_range_prof_driver_op("<memcpy DtoD>");
    kernel_ran();
    launch("_Z1bPf");
    cupti_range_prof_finish();
    assert_int_equal(G.n_kmetric, 3);
    assert_string_equal(G.kname[1], "<memcpy DtoD>");
    assert_string_equal(G.kname[2], "_Z1bPf");
    assert_int_equal(G.n_notes, 0);
}

/* CUPTI's resource callback CONTEXT_DESTROY_STARTING ends the session in the profiled
 * context only; the next call that returns with a context starts another. */
static void test_ctx_destroying(void **st)
{
    (void)st;
    start(8);
    launch("_Z1aPf");
    cupti_range_prof_ctx_destroying(&ctx_b);
    assert_int_equal(cupti_range_prof_stats().state, 1);
    assert_int_equal(G.n_kmetric, 0);
    cupti_range_prof_ctx_destroying(&ctx_a);
    cupti_range_stats s = cupti_range_prof_stats();
    assert_int_equal(s.state, 0);
    assert_int_equal(G.n_kmetric, 1);
    assert_string_equal(G.kname[0], "_Z1aPf");
    assert_non_null(strstr(calls(), "pop stop decode disable host-deinit"));
    launch("_Z1bPf");
    assert_int_equal(G.n_mconfig, 2);
    cupti_range_prof_finish();
    assert_int_equal(G.n_kmetric, 2);
}

static void test_missing_entry_points(void **st)
{
    (void)st;
    /* libc as "libcupti": none of the Range Profiler's symbols. */
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(libc);
    cupti_range_env env = {libc, t_emit, t_note, t_ctx, t_dev, t_now, 4, 200, 0, 0, 0, NULL};
    assert_false(cupti_range_prof_init(&env));
    assert_int_equal(G.n_notes, 1);
    assert_non_null(strstr(G.notes[0], "this libcupti has no cupti"));
    launch("k");
    assert_int_equal(G.n_kmetric, 0);
    dlclose(libc);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_names_optional_kinds),
#if defined(ADG_HAVE_CUPTI) && defined(ADG_FAKE_RANGE_CUPTI)
        cmocka_unit_test_setup(test_session_windows, setup_fake),
        cmocka_unit_test_setup(test_runtime_launch_counted_once, setup_fake),
        cmocka_unit_test_setup(test_graph_window, setup_fake),
        cmocka_unit_test_setup(test_one_config_per_object, setup_fake),
        cmocka_unit_test_setup(test_config_per_window, setup_fake),
        cmocka_unit_test_setup(test_minimal_set, setup_fake),
        cmocka_unit_test_setup(test_privileges, setup_fake),
        cmocka_unit_test_setup(test_unsupported_and_missing_metric, setup_fake),
        cmocka_unit_test_setup(test_fatal_and_other_context, setup_fake),
        cmocka_unit_test_setup(test_no_context_yet, setup_fake),
        cmocka_unit_test_setup(test_setup_between_calls, setup_fake),
        cmocka_unit_test_setup(test_reentrant_callbacks, setup_fake),
        cmocka_unit_test_setup(test_teardown_order, setup_fake),
        cmocka_unit_test_setup(test_push_needed, setup_fake),
        cmocka_unit_test_setup(test_memset_range, setup_fake),
        cmocka_unit_test_setup(test_sampling_per_kernel, setup_fake),
        cmocka_unit_test_setup(test_sampling_cap_and_skip, setup_fake),
        cmocka_unit_test_setup(test_stop_order, setup_fake),
        cmocka_unit_test_setup(test_settled_hook, setup_fake),
        cmocka_unit_test_setup(test_exit_handler_after_cupti, setup_fake),
        cmocka_unit_test_setup(test_copy_range, setup_fake),
        cmocka_unit_test_setup(test_ctx_destroying, setup_fake),
        cmocka_unit_test_setup(test_missing_entry_points, setup_fake),
#endif
    };
#if !(defined(ADG_HAVE_CUPTI) && defined(ADG_FAKE_RANGE_CUPTI))
    printf("SKIP: the Range Profiler session tests need the CUPTI headers (built without them)\n");
#endif
    return cmocka_run_group_tests(tests, NULL, NULL);
}
