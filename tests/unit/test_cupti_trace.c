/* The GPU trace model: launch ring, completion evidence, kernel summaries, buckets on
 * the bus, allocations, crash section from a synthetic stream. */
#include "adg_test.h"

#include <string.h>

#include "profiler/cupti_proto.h"
#include "profiler/cupti_trace.h"

#define BASE 1000000000ull

static void feed(cupti_trace *t, cupti_rec_type type, const void *fixed, const char *name)
{
    /* Through the encoder and parser, like the real streams. */
    unsigned char buf[CUPTI_PROTO_MAX_FRAME];
    size_t n = cupti_proto_encode(buf, sizeof buf, type, fixed, name, name ? strlen(name) : 0);
    assert_true(n > 0);
    cupti_parser p;
    cupti_parser_init(&p, cupti_trace_frame, t);
    assert_true(cupti_parser_feed(&p, buf, n));
    assert_true(cupti_parser_end(&p));
    cupti_parser_free(&p);
}

static void launch(cupti_trace *t, uint64_t seq, const char *name, uint64_t t_ns, uint64_t stream, uint32_t corr)
{
    cupti_launch_rec l;
    memset(&l, 0, sizeof l);
    l.seq = seq;
    l.t_ns = t_ns;
    l.stream = stream;
    l.correlation = corr;
    l.api = CUPTI_LAUNCH_KERNEL;
    l.grid[0] = 10, l.grid[1] = l.grid[2] = 1;
    l.block[0] = 128, l.block[1] = l.block[2] = 1;
    feed(t, CUPTI_REC_LAUNCH, &l, name);
}

static void kernel(cupti_trace *t, const char *name, uint64_t start, uint64_t end, uint32_t corr)
{
    cupti_kernel_rec k;
    memset(&k, 0, sizeof k);
    k.start_ns = start;
    k.end_ns = end;
    k.correlation = corr;
    k.grid[0] = 10, k.grid[1] = k.grid[2] = 1;
    k.block[0] = 128, k.block[1] = k.block[2] = 1;
    feed(t, CUPTI_REC_KERNEL, &k, name);
}

static json_t *find_launch(json_t *crash, json_int_t seq)
{
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(crash, "launch_ring"), i, l) if (json_integer_value(json_object_get(l, "seq")) == seq) return l;
    return NULL;
}

static void test_summaries_and_buckets(void **st)
{
    (void)st;
    adg_bus *bus = adg_bus_new();
    cupti_trace *t = cupti_trace_new(16, 100000000ull, BASE);
    cupti_trace_register(t, bus, "gpu");
    /* 5 x 10 ms of "a" in the first 100 ms bucket, one 20 ms "b": 70 % busy. */
    for (int i = 0; i < 5; i++) {
        launch(t, (uint64_t)i + 1, "_Z1aPf", BASE + (uint64_t)i * 15000000, 0, (uint32_t)(10 + i));
        kernel(t, "_Z1aPf", BASE + (uint64_t)i * 15000000, BASE + (uint64_t)i * 15000000 + 10000000, (uint32_t)(10 + i));
    }
    kernel(t, "b_kernel", BASE + 75000000, BASE + 95000000, 99);
    cupti_memcpy_rec m = {BASE + 200000000, BASE + 210000000, 50000000, 1, 0, 0, CUPTI_COPY_HTOD};
    feed(t, CUPTI_REC_MEMCPY, &m, NULL);
    cupti_trace_publish(t, bus, 350000000ull, 0, true);

    int busy = adg_bus_find(bus, "gpu.busy");
    assert_true(busy >= 0);
    adg_point *pts;
    size_t n = adg_bus_series_copy(bus, busy, "gpu0", &pts);
    assert_true(n >= 3);
    assert_float_equal(pts[0].value, 70.0, 1e-6);
    assert_float_equal(pts[1].value, 0.0, 1e-6);
    free(pts);
    int h2d = adg_bus_find(bus, "gpu.h2d_bw");
    n = adg_bus_series_copy(bus, h2d, NULL, &pts);
    assert_true(n >= 3);
    assert_float_equal(pts[2].value, 50000000 / 0.1, 1.0); /* all 50 MB in the third bucket */
    free(pts);
    int launches = adg_bus_find(bus, "gpu.launches");
    n = adg_bus_series_copy(bus, launches, NULL, &pts);
    assert_float_equal(pts[0].value, 50.0, 1e-6); /* 5 launches in 0.1 s */
    free(pts);

    json_t *k = cupti_trace_kernels_json(t);
    json_t *ks = json_object_get(k, "kernels");
    assert_int_equal(json_array_size(ks), 2);
    json_t *first = json_array_get(ks, 0); /* sorted by total time: a (50 ms) before b (20 ms) */
    assert_string_equal(json_string_value(json_object_get(first, "name")), "a(float*)");
    assert_string_equal(json_string_value(json_object_get(first, "symbol")), "_Z1aPf");
    assert_int_equal(json_integer_value(json_object_get(first, "count")), 5);
    assert_float_equal(json_real_value(json_object_get(first, "median_us")), 10000.0, 1e-6);
    assert_float_equal(json_real_value(json_object_get(first, "share")), 50.0 / 70.0, 1e-9);
    json_t *cp = json_array_get(json_object_get(k, "memcpy"), 0);
    assert_string_equal(json_string_value(json_object_get(cp, "kind")), "HtoD");
    assert_float_equal(json_real_value(json_object_get(cp, "bytes_per_s")), 5e9, 1.0);
    json_decref(k);
    assert_null(cupti_trace_crash_json(t)); /* no error, no crash section */
    cupti_trace_free(t);
    adg_bus_free(bus);
}

/* Copies that end before the first kernel starts are the setup (weights going up), told
 * apart from the computation's copies whatever order the records arrive in. */
static void test_copies_before_kernels(void **st)
{
    (void)st;
    cupti_trace *t = cupti_trace_new(16, 100000000ull, BASE);
    cupti_memcpy_rec late = {BASE + 10000000, BASE + 11000000, 4096, 1, 0, 0, CUPTI_COPY_DTOH};
    feed(t, CUPTI_REC_MEMCPY, &late, NULL); /* delivered first, made after the kernel */
    kernel(t, "k", BASE + 5000000, BASE + 6000000, 1);
    cupti_memcpy_rec w1 = {BASE + 1000000, BASE + 3000000, 1u << 30, 1, 0, 0, CUPTI_COPY_HTOD};
    cupti_memcpy_rec w2 = {BASE + 3000000, BASE + 4000000, 1u << 29, 1, 0, 0, CUPTI_COPY_HTOD};
    feed(t, CUPTI_REC_MEMCPY, &w1, NULL);
    feed(t, CUPTI_REC_MEMCPY, &w2, NULL);
    json_t *k = cupti_trace_kernels_json(t);
    json_t *pre = json_object_get(k, "memcpy_before_kernels");
    assert_true(json_is_object(pre));
    assert_int_equal(json_integer_value(json_object_get(pre, "count")), 2);
    assert_int_equal(json_integer_value(json_object_get(pre, "bytes")), (1 << 30) + (1 << 29));
    assert_float_equal(json_real_value(json_object_get(pre, "time_s")), 0.003, 1e-9);
    json_decref(k);
    cupti_trace_free(t);
}

static void test_ring_and_completion(void **st)
{
    (void)st;
    cupti_trace *t = cupti_trace_new(4, 100000000ull, BASE);
    /* 6 launches into a ring of 4: #3..#6 stay. */
    for (uint64_t i = 1; i <= 6; i++)
        launch(t, i, i == 4 ? "bad_kernel" : "good_kernel", BASE + i * 1000, 0x10, (uint32_t)(100 + i));
    /* #3 completes by correlation; #5's record comes with another correlation id (a
     * runtime launch): matched by name and shape. */
    kernel(t, "good_kernel", BASE + 3100, BASE + 3200, 103);
    kernel(t, "good_kernel", BASE + 5100, BASE + 5200, 9999);
    cupti_api_error_rec e = {BASE + 9000, 6, 1, 700, 1, 126, 1, 0};
    feed(t, CUPTI_REC_API_ERROR, &e, "cuStreamSynchronize");
    cupti_trace_counts c = cupti_trace_get_counts(t);
    assert_true(c.fatal);
    assert_int_equal(c.launches, 6);
    json_t *crash = cupti_trace_crash_json(t);
    assert_non_null(crash);
    assert_int_equal(json_array_size(json_object_get(crash, "launch_ring")), 4);
    assert_int_equal(json_integer_value(json_object_get(crash, "launches_total")), 6);
    assert_true(json_is_true(json_object_get(find_launch(crash, 3), "completed")));
    assert_string_equal(json_string_value(json_object_get(find_launch(crash, 5), "completed_by")), "activity");
    assert_false(json_is_true(json_object_get(find_launch(crash, 4), "completed")));
    json_t *fk = json_object_get(crash, "faulting_kernel");
    assert_string_equal(json_string_value(json_object_get(fk, "kernel")), "bad_kernel");
    assert_int_equal(json_integer_value(json_object_get(fk, "seq")), 4);
    assert_false(json_is_true(json_object_get(crash, "reporting_op_faulted")));
    json_decref(crash);
    cupti_trace_free(t);
}

static void test_sync_completes_earlier_launches(void **st)
{
    (void)st;
    cupti_trace *t = cupti_trace_new(16, 100000000ull, BASE);
    launch(t, 1, "k1", BASE + 1000, 0xA, 1);
    launch(t, 2, "k2", BASE + 2000, 0xB, 2);
    /* A successful cuStreamSynchronize(0xA) called at +2500: k1 completed, k2 (other stream) not. */
    cupti_sync_rec s = {BASE + 2500, 0xA, 0, 0};
    feed(t, CUPTI_REC_SYNC, &s, "cuStreamSynchronize");
    launch(t, 3, "k3", BASE + 3000, 0xA, 3);
    cupti_api_error_rec e = {BASE + 4000, 3, 4, 719, 1, 17, 1, 0};
    feed(t, CUPTI_REC_API_ERROR, &e, "cuCtxSynchronize");
    json_t *crash = cupti_trace_crash_json(t);
    assert_string_equal(json_string_value(json_object_get(find_launch(crash, 1), "completed_by")), "sync");
    assert_false(json_is_true(json_object_get(find_launch(crash, 2), "completed")));
    /* k2 and k3 on two streams: the oldest, k2, is the likely one. */
    json_t *fk = json_object_get(crash, "faulting_kernel");
    assert_string_equal(json_string_value(json_object_get(fk, "kernel")), "k2");
    assert_string_equal(json_string_value(json_object_get(fk, "confidence")), "likely");
    assert_int_equal(json_array_size(json_object_get(crash, "in_flight")), 2);
    json_decref(crash);
    /* a context-wide sync completes everything before it */
    cupti_sync_rec all = {BASE + 5000, 0, 1, 0};
    feed(t, CUPTI_REC_SYNC, &all, "cuCtxSynchronize");
    crash = cupti_trace_crash_json(t);
    assert_int_equal(json_array_size(json_object_get(crash, "in_flight")), 0);
    assert_true(json_is_null(json_object_get(crash, "faulting_kernel")));
    json_decref(crash);
    cupti_trace_free(t);
}

static void test_untimed_records_are_not_completion(void **st)
{
    (void)st;
    /* After a fault CUPTI delivers the records it held with zero timestamps (seen on an
     * H100): they neither complete a launch nor count in the timing. */
    cupti_trace *t = cupti_trace_new(8, 100000000ull, BASE);
    launch(t, 1, "k1", BASE + 1000, 0x10, 1);
    launch(t, 2, "k2", BASE + 2000, 0x10, 2);
    kernel(t, "k1", 0, 0, 1);
    kernel(t, "k2", 0, 0, 2);
    cupti_api_error_rec e = {BASE + 9000, 2, 3, 700, 1, 126, 1, 0};
    feed(t, CUPTI_REC_API_ERROR, &e, "cuStreamSynchronize");
    json_t *crash = cupti_trace_crash_json(t);
    assert_int_equal(json_array_size(json_object_get(crash, "in_flight")), 2);
    assert_string_equal(json_string_value(json_object_get(json_object_get(crash, "faulting_kernel"), "kernel")), "k1");
    json_decref(crash);
    json_t *k = cupti_trace_kernels_json(t);
    assert_int_equal(json_integer_value(json_object_get(k, "untimed_records")), 2);
    json_t *k0 = json_array_get(json_object_get(k, "kernels"), 0);
    assert_int_equal(json_integer_value(json_object_get(k0, "count")), 0);
    assert_int_equal(json_integer_value(json_object_get(k0, "untimed")), 1);
    json_decref(k);
    /* Under CUDA_LAUNCH_BLOCKING=1 (hello flag 4) the last launch is the certain one. */
    cupti_hello_rec h = {1, 130001, 13000, 7, BASE};
    feed(t, CUPTI_REC_HELLO, &h, NULL);
    crash = cupti_trace_crash_json(t);
    json_t *fk = json_object_get(crash, "faulting_kernel");
    assert_string_equal(json_string_value(json_object_get(fk, "kernel")), "k2");
    assert_string_equal(json_string_value(json_object_get(fk, "confidence")), "certain");
    json_decref(crash);
    cupti_trace_free(t);
}

static void test_allocs_and_notes(void **st)
{
    (void)st;
    cupti_trace *t = cupti_trace_new(8, 100000000ull, BASE);
    cupti_alloc_rec a = {BASE, 0x1000000, 4096, 1, 0};
    feed(t, CUPTI_REC_ALLOC, &a, "cuMemAlloc_v2");
    feed(t, CUPTI_REC_ALLOC, &a, "cudaMalloc"); /* the runtime call around it: same block */
    cupti_free_rec f = {BASE + 10, 0x1000000};
    feed(t, CUPTI_REC_FREE, &f, NULL);
    cupti_note_rec n = {CUPTI_NOTE_NO_CALLBACKS, 0};
    feed(t, CUPTI_REC_NOTE, &n, "another CUPTI client is attached");
    cupti_trace_counts c = cupti_trace_get_counts(t);
    assert_int_equal(c.allocs, 2);
    assert_int_equal(c.frees, 1);
    assert_int_equal(c.notes, 1);
    json_t *k = cupti_trace_kernels_json(t);
    assert_string_equal(json_string_value(json_array_get(json_object_get(k, "notes"), 0)),
                        "another CUPTI client is attached");
    json_decref(k);
    cupti_trace_free(t);
}

static void test_memory_and_error_metrics(void **st)
{
    (void)st;
    adg_bus *bus = adg_bus_new();
    cupti_trace *t = cupti_trace_new(8, 100000000ull, BASE);
    cupti_trace_register(t, bus, "gpu");
    /* Before any MEMINFO or error: nothing published for them. */
    cupti_trace_publish(t, bus, 100000000ull, 0, false);
    adg_point *pts;
    assert_int_equal(adg_bus_series_copy(bus, adg_bus_find(bus, "gpu.mem_used"), "gpu0", &pts), 0);
    free(pts);
    assert_int_equal(adg_bus_series_copy(bus, adg_bus_find(bus, "gpu.errors"), NULL, &pts), 0);
    free(pts);
    cupti_meminfo_rec m = {BASE + 150000000ull, 60ull << 30, 80ull << 30, 0, 0};
    feed(t, CUPTI_REC_MEMINFO, &m, NULL);
    m.device = 1;
    m.free_bytes = 80ull << 30;
    feed(t, CUPTI_REC_MEMINFO, &m, NULL);
    m.device = 200; /* past the devices a trace keeps: counted, not published */
    feed(t, CUPTI_REC_MEMINFO, &m, NULL);
    cupti_api_error_rec e = {BASE + 160000000ull, 0, 3, 1, 1, 20, 1, 0};
    feed(t, CUPTI_REC_API_ERROR, &e, "cuMemAlloc_v2");
    feed(t, CUPTI_REC_API_ERROR, &e, "cuMemAlloc_v2");
    cupti_trace_publish(t, bus, 200000000ull, 0, false);
    assert_int_equal(cupti_trace_get_counts(t).meminfos, 3);
    size_t n = adg_bus_series_copy(bus, adg_bus_find(bus, "gpu.mem_used"), "gpu0", &pts);
    assert_int_equal(n, 1);
    assert_float_equal(pts[0].value, (double)(20ull << 30), 1.0);
    free(pts);
    n = adg_bus_series_copy(bus, adg_bus_find(bus, "gpu.mem_used"), "gpu1", &pts);
    assert_int_equal(n, 1);
    assert_float_equal(pts[0].value, 0.0, 1e-9);
    free(pts);
    n = adg_bus_series_copy(bus, adg_bus_find(bus, "gpu.mem_total"), "gpu0", &pts);
    assert_int_equal(n, 1);
    assert_float_equal(pts[0].value, (double)(80ull << 30), 1.0);
    free(pts);
    n = adg_bus_series_copy(bus, adg_bus_find(bus, "gpu.errors"), NULL, &pts);
    assert_int_equal(n, 1);
    assert_float_equal(pts[0].value, 2.0, 1e-9);
    free(pts);
    /* The latest value at every publish (a state, not a per-bucket sum). */
    m.device = 0;
    m.free_bytes = 50ull << 30;
    feed(t, CUPTI_REC_MEMINFO, &m, NULL);
    cupti_trace_publish(t, bus, 300000000ull, 0, true);
    n = adg_bus_series_copy(bus, adg_bus_find(bus, "gpu.mem_used"), "gpu0", &pts);
    assert_int_equal(n, 2);
    assert_float_equal(pts[1].value, (double)(30ull << 30), 1.0);
    free(pts);
    cupti_trace_free(t);
    adg_bus_free(bus);
}

static void kmetric(cupti_trace *t, const char *name, double dur_ns, double rd, double wr, double sm, uint32_t extra,
                    double peak_bpc)
{
    cupti_kmetric_rec k;
    memset(&k, 0, sizeof k);
    k.v[0] = dur_ns;
    k.v[1] = rd;
    k.v[2] = wr;
    k.v[4] = sm;
    k.v[8] = peak_bpc;
    k.v[9] = 1e9;
    k.present = 0x17 | extra | (peak_bpc > 0 ? 0x300u : 0);
    feed(t, CUPTI_REC_KMETRIC, &k, name);
}

/* --gpu-metrics: bytes add up, percentages are weighted by each launch's duration, the
 * bandwidth is bytes / profiled time, the peak comes from the DRAM peak counters; launches
 * without a name are counted as such; no metrics block without the session's records. */
static void test_kernel_metrics(void **st)
{
    (void)st;
    cupti_trace *t = cupti_trace_new(16, 100000000, BASE);
    json_t *plain = cupti_trace_kernels_json(t);
    assert_null(json_object_get(plain, "metrics"));
    json_decref(plain);
    cupti_mconfig_rec mc = {BASE, 3, 0x31f, 256, 0, 1, 0};
    feed(t, CUPTI_REC_MCONFIG, &mc, "AD102");
    kernel(t, "_Z4gemvPKvPf", BASE + 10, BASE + 1010, 1);
    /* 1 us at 10 % SM, 3 us at 50 %: weighted 40 %. */
    kmetric(t, "_Z4gemvPKvPf", 1000, 1.0e6, 0, 10, 0, 1000);
    kmetric(t, "_Z4gemvPKvPf", 3000, 3.0e6, 1.0e6, 50, 0, 1000);
    kmetric(t, "<unnamed>", 500, 10, 10, 1, 0, 0);
    json_t *o = cupti_trace_kernels_json(t);
    json_t *gm = json_object_get(o, "metrics");
    assert_non_null(gm);
    assert_string_equal(json_string_value(json_object_get(gm, "chip")), "AD102");
    assert_int_equal(json_integer_value(json_object_get(gm, "passes")), 3);
    assert_int_equal(json_integer_value(json_object_get(gm, "profiled_launches")), 3);
    assert_int_equal(json_integer_value(json_object_get(gm, "unnamed")), 1);
    assert_true(json_number_value(json_object_get(gm, "dram_peak_Bps")) == 1e12);
    assert_null(json_object_get(gm, "sampling")); /* no account yet */
    json_decref(o);
    /* The sampling's account: the latest one counts. */
    cupti_mstats_rec ms = {BASE, 10, 2, 500000000ull, 100000000ull, 2, 128, 0, 1};
    feed(t, CUPTI_REC_MSTATS, &ms, NULL);
    ms.seen = 40;
    ms.profiled = 3;
    ms.replay_ns = 1500000000ull;
    feed(t, CUPTI_REC_MSTATS, &ms, NULL);
    o = cupti_trace_kernels_json(t);
    gm = json_object_get(o, "metrics");
    assert_int_equal(json_integer_value(json_object_get(gm, "launches_seen")), 40);
    assert_int_equal(json_integer_value(json_object_get(gm, "launches_not_profiled")), 37);
    assert_true(json_number_value(json_object_get(gm, "replay_s")) == 1.5);
    assert_true(json_number_value(json_object_get(gm, "overhead_s")) == 0.1);
    json_t *sm = json_object_get(gm, "sampling");
    assert_int_equal(json_integer_value(json_object_get(sm, "per_kernel")), 2);
    assert_int_equal(json_integer_value(json_object_get(sm, "max_launches")), 128);
    json_t *gemv = NULL, *x;
    size_t i;
    json_array_foreach(json_object_get(o, "kernels"), i, x) if (!strcmp(json_string_value(json_object_get(x, "symbol")),
                                                                        "_Z4gemvPKvPf")) gemv = x;
    assert_non_null(gemv);
    json_t *m = json_object_get(gemv, "metrics");
    assert_int_equal(json_integer_value(json_object_get(m, "ranges")), 2);
    assert_true(json_number_value(json_object_get(m, "dram_read_bytes")) == 4.0e6);
    assert_true(json_number_value(json_object_get(m, "dram_write_bytes")) == 1.0e6);
    assert_true(json_number_value(json_object_get(m, "dram_bytes_per_launch")) == 2.5e6);
    /* 5 MB in 4 us = 1.25e12 B/s = 125 % of a 1e12 peak (CUPTI's peak is sustained, not absolute). */
    assert_true(json_number_value(json_object_get(m, "dram_Bps")) > 1.2499e12 &&
                json_number_value(json_object_get(m, "dram_Bps")) < 1.2501e12);
    assert_true(json_number_value(json_object_get(m, "dram_pct_of_peak_bytes")) > 124.99);
    /* The faster launch: 4 MB in 3 us. */
    assert_true(json_number_value(json_object_get(m, "dram_Bps_max")) > 1.3333e12 &&
                json_number_value(json_object_get(m, "dram_Bps_max")) < 1.3334e12);
    assert_true(json_number_value(json_object_get(m, "sm_throughput_pct")) > 39.999 &&
                json_number_value(json_object_get(m, "sm_throughput_pct")) < 40.001);
    assert_null(json_object_get(m, "tensor_hmma_pct"));
    assert_true(json_number_value(json_object_get(m, "mean_us")) == 2.0);
    /* The kernel's trace figures are untouched by its metrics. */
    assert_int_equal(json_integer_value(json_object_get(gemv, "count")), 1);
    json_decref(o);
    cupti_trace_counts c = cupti_trace_get_counts(t);
    assert_true(c.mconfig);
    assert_int_equal(c.kmetrics, 3);
    assert_int_equal(c.metrics_notes, 0);
    cupti_note_rec n = {CUPTI_NOTE_NO_METRICS, 0};
    feed(t, CUPTI_REC_NOTE, &n, "--gpu-metrics: a fatal CUDA error ended the profiling session");
    assert_int_equal(cupti_trace_get_counts(t).metrics_notes, 1);
    cupti_trace_free(t);

    /* Setup steps are counted, the last one kept (what a crash inside CUPTI died in),
     * and they are not notes of the record. */
    t = cupti_trace_new(8, 100000000ull, BASE);
    cupti_note_rec s1 = {CUPTI_NOTE_METRICS_STEP, 0};
    feed(t, CUPTI_REC_NOTE, &s1, "cuptiProfilerInitialize");
    feed(t, CUPTI_REC_NOTE, &s1, "cuptiRangeProfilerEnable");
    c = cupti_trace_get_counts(t);
    assert_int_equal(c.metrics_steps, 2);
    assert_string_equal(c.metrics_last_step, "cuptiRangeProfilerEnable");
    assert_int_equal(c.notes, 0);
    assert_int_equal(c.metrics_notes, 0);
    o = cupti_trace_kernels_json(t);
    assert_int_equal(json_array_size(json_object_get(o, "notes")), 0);
    json_decref(o);
    cupti_trace_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_summaries_and_buckets),
        cmocka_unit_test(test_kernel_metrics),
        cmocka_unit_test(test_copies_before_kernels), cmocka_unit_test(test_ring_and_completion),
        cmocka_unit_test(test_sync_completes_earlier_launches),
        cmocka_unit_test(test_untimed_records_are_not_completion),
        cmocka_unit_test(test_allocs_and_notes),
        cmocka_unit_test(test_memory_and_error_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
