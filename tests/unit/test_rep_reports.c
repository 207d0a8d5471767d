/* amxdiag report: the findings and numbers that come out of the synthetic records modelled
 * on the seed report, the rules on hand-made records, bad input, and escaping. */
#include "adg_test.h"

#include <math.h>
#include <string.h>

#include "common/adg_json.h"
#include "common/adg_util.h"
#include "reports/rep_internal.h"
#include "reports/reports.h"

static char *fixture(const char *name)
{
    const char *dir = getenv("FIXTURES");
    char *p = NULL;
    if (asprintf(&p, "%s/records/%s", dir && *dir ? dir : "tests/fixtures", name) < 0)
        return NULL;
    return p;
}

static json_t *finding(const json_t *doc, const char *id, const char *run)
{
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(doc, "findings"), i, f) {
        const char *fid = json_string_value(json_object_get(f, "id"));
        const char *frun = json_string_value(json_object_get(f, "run"));
        if (fid && !strcmp(fid, id) && (!run || (frun && !strcmp(frun, run))))
            return f;
    }
    return NULL;
}

static double number(const json_t *f, const char *k)
{
    json_t *v = json_object_get(json_object_get(f, "numbers"), k);
    assert_non_null(v);
    return json_number_value(v);
}

static const char *sev(const json_t *f)
{
    return json_string_value(json_object_get(f, "severity"));
}

static json_t *compare_doc(void)
{
    char *a = fixture("report_base_avx512.json"), *b = fixture("report_new_amx.json");
    json_t *doc = NULL;
    ADG_ASSERT_OK(rep_report_compare(a, b, &doc));
    free(a);
    free(b);
    return doc;
}

static void test_compare_seed_pair(void **state)
{
    (void)state;
    json_t *doc = compare_doc();
    assert_string_equal(json_string_value(json_object_get(doc, "schema")), "amxdiag.report/1");
    assert_string_equal(json_string_value(json_object_get(doc, "kind")), "compare");

    json_t *f = finding(doc, "phase-speed", NULL);
    assert_non_null(f);
    assert_string_equal(sev(f), "critical");
    assert_true(fabs(number(f, "generation_base_tps") - 63.28) < 1e-6);
    assert_true(fabs(number(f, "generation_new_tps") - 52.99) < 1e-6);
    assert_true(fabs(number(f, "generation_delta_pct") - (-16.26)) < 0.01);
    assert_true(fabs(number(f, "prompt_delta_pct") - (-35.94)) < 0.01);
    json_t *fast = json_object_get(f, "faster");
    assert_string_equal(json_string_value(json_object_get(fast, "prompt")), "--cpu-kernels avx512");
    assert_string_equal(json_string_value(json_object_get(fast, "generation")), "--cpu-kernels avx512");

    /* tiles at M=1: the attention projections per call, amx vs vnni */
    f = finding(doc, "tiles-small-m", NULL);
    assert_non_null(f);
    assert_string_equal(sev(f), "warning");
    assert_true(number(f, "slower_pct") > 55 && number(f, "slower_pct") < 70);

    /* prompt: the tile products only 1.13x faster per call than the same ops on VNNI */
    f = finding(doc, "tiles-prompt-gain", NULL);
    assert_non_null(f);
    assert_string_equal(sev(f), "warning");
    assert_true(fabs(number(f, "tiles_speedup") - 2050.3 / 1810.62) < 0.01);
    assert_non_null(strstr(json_string_value(json_object_get(f, "evidence")), "1.13x"));

    /* the AVX-512 run's generation is bandwidth-bound: 2 nodes x 66 GB/s ceiling */
    f = finding(doc, "generation-memory-bound", "base");
    assert_non_null(f);
    assert_true(fabs(number(f, "ceiling_Bps") - 132e9) < 1);
    assert_true(number(f, "ceiling_pct") >= 80 && number(f, "ceiling_pct") < 90);
    assert_null(finding(doc, "generation-memory-bound", "new"));

    /* 486.00 MiB of 16.18 GiB */
    f = finding(doc, "amx-eligible-small", "new");
    assert_non_null(f);
    assert_true(fabs(number(f, "amx_eligible_bytes") - 509607936.0) < 1);
    assert_true(fabs(number(f, "amx_eligible_pct") - 2.933) < 0.01);
    assert_true(fabs(number(f, "expert_bytes") - 16307453952.0) < 1);
    assert_null(finding(doc, "amx-eligible-small", "base"));

    /* the prompt regression is in the experts, whose kernels did not change */
    f = finding(doc, "op-delta", NULL);
    assert_non_null(f);
    assert_true(fabs(number(f, "prompt_moe_gate_up_delta_s") - 2.119) < 0.01);
    assert_non_null(strstr(json_string_value(json_object_get(f, "evidence")), "ran the same kernels in both runs"));

    assert_non_null(finding(doc, "numa-spread", "new"));
    f = finding(doc, "remote-memory", "new");
    assert_non_null(f);
    assert_true(fabs(number(f, "node3_memory_pct") - 38.0) < 1e-6);
    assert_null(finding(doc, "amx-never-ran", NULL));
    assert_null(finding(doc, "threads-oversubscribed", NULL));
    assert_null(finding(doc, "gpu-idle", NULL));

    /* side by side: numbers and not-measured reasons */
    size_t i;
    json_t *row;
    bool seen_tg = false, seen_gpu = false;
    json_array_foreach(json_object_get(doc, "comparison"), i, row) {
        const char *fact = json_string_value(json_object_get(row, "fact"));
        if (!strcmp(fact, "tps.generation")) {
            seen_tg = true;
            assert_true(fabs(json_number_value(json_object_get(row, "pct")) - (-16.26)) < 0.01);
        }
        if (!strcmp(fact, "gpu.busy")) {
            seen_gpu = true;
            assert_true(json_is_null(json_object_get(row, "base")));
            assert_non_null(strstr(json_string_value(json_object_get(row, "base_why")), "never initialised CUDA"));
        }
    }
    assert_true(seen_tg && seen_gpu);
    const char *concl = json_string_value(json_object_get(doc, "conclusion"));
    assert_non_null(strstr(concl, "16.3% slower in token generation"));
    assert_non_null(strstr(concl, "35.9% slower in prompt evaluation"));
    assert_non_null(strstr(concl, "generation → --cpu-kernels avx512"));
    assert_int_equal(rep_doc_exit_code(doc), 1);
    json_decref(doc);
}

static void test_run_report(void **state)
{
    (void)state;
    char *p = fixture("report_new_amx.json");
    json_t *doc = NULL;
    ADG_ASSERT_OK(rep_report_run(p, &doc));
    free(p);
    assert_string_equal(json_string_value(json_object_get(doc, "kind")), "run");
    assert_non_null(finding(doc, "amx-eligible-small", NULL));
    json_t *f = finding(doc, "tiles-small-m", NULL);
    assert_non_null(f);
    assert_string_equal(sev(f), "info");
    assert_null(finding(doc, "phase-speed", NULL));
    assert_int_equal(rep_doc_exit_code(doc), 0);
    assert_non_null(strstr(json_string_value(json_object_get(doc, "conclusion")), "generation 52.99 t/s"));
    json_decref(doc);

    p = fixture("report_hybrid_gpu.json");
    ADG_ASSERT_OK(rep_report_run(p, &doc));
    free(p);
    f = finding(doc, "gpu-idle", NULL);
    assert_non_null(f);
    assert_true(number(f, "gpu_busy_pct") < 30);
    assert_true(fabs(number(f, "gpu_layers") - 10) < 1e-9);
    f = finding(doc, "transfer-bound", NULL);
    assert_non_null(f);
    assert_true(fabs(number(f, "copy_s") - 5.95) < 1e-6);
    assert_true(fabs(number(f, "kernel_s") - 1.09) < 1e-6);
    json_decref(doc);
}

static void test_crash_reports(void **state)
{
    (void)state;
    char *p = fixture("report_crash_getrows.json");
    json_t *doc = NULL;
    ADG_ASSERT_OK(rep_report_crash(p, &doc));
    free(p);
    assert_string_equal(json_string_value(json_object_get(doc, "kind")), "crash");
    json_t *f = finding(doc, "reporter-not-faulting", NULL);
    assert_non_null(f);
    assert_string_equal(sev(f), "critical");
    assert_int_equal((int)number(f, "reporting_launch"), 42);
    assert_int_equal((int)number(f, "faulting_launch"), 41);
    assert_non_null(strstr(json_string_value(json_object_get(f, "evidence")), "'kern_add'"));
    assert_int_equal(rep_doc_exit_code(doc), 1);
    /* the ring table marks the faulting and the reporting launch */
    char *md = NULL;
    ADG_ASSERT_OK(rep_render(doc, REP_FORMAT_MD, &md));
    assert_non_null(strstr(md, "| #41 | kern_add | (64,1,1) | (256,1,1) | 0x55d0c2a1e000 | no | - | FAULTED |"));
    assert_non_null(strstr(md, "reported the error"));
    assert_non_null(strstr(md, "| op that reported the error | launch #42 'kern_get_rows_q4_0' |"));
    free(md);
    json_decref(doc);

    p = fixture("report_crash_nobinary.json");
    ADG_ASSERT_OK(rep_report_crash(p, &doc));
    free(p);
    f = finding(doc, "no-code-for-cc", NULL);
    assert_non_null(f);
    assert_int_equal((int)number(f, "code"), 209);
    assert_non_null(strstr(json_string_value(json_object_get(f, "evidence")), "CC 12.0"));
    assert_non_null(strstr(json_string_value(json_object_get(f, "evidence")), "sm_90"));
    assert_null(finding(doc, "cuda-error", NULL));
    json_decref(doc);
}

/* Real records of the built-in path (profile of `amxdiag run`, dev machine, no PMU). */
static void test_real_records(void **state)
{
    (void)state;
    char *a = fixture("report_real_ref.json"), *b = fixture("report_real_avx512.json");
    json_t *doc = NULL;
    ADG_ASSERT_OK(rep_report_compare(a, b, &doc));
    json_t *f = finding(doc, "phase-speed", NULL);
    assert_non_null(f);
    assert_string_equal(sev(f), "info"); /* the new run is faster */
    assert_string_equal(json_string_value(json_object_get(json_object_get(f, "faster"), "generation")),
                        "--cpu-kernels avx512");
    assert_true(number(f, "generation_new_tps") > number(f, "generation_base_tps"));
    assert_int_equal(rep_doc_exit_code(doc), 0);
    /* what the VM could not measure comes with the profiler's reason */
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(doc, "comparison"), i, row) {
        if (!strcmp(json_string_value(json_object_get(row, "fact")), "amx.busy"))
            assert_non_null(strstr(json_string_value(json_object_get(row, "new_why")), "not measured: "));
        if (!strcmp(json_string_value(json_object_get(row, "fact")), "isa.amx"))
            assert_true(json_number_value(json_object_get(row, "new")) == 0.0);
    }
    json_decref(doc);
    ADG_ASSERT_OK(rep_report_run(b, &doc));
    assert_null(finding(doc, "amx-never-ran", NULL));
    json_decref(doc);
    free(a);
    free(b);

    /* the GPU collector's own crash section (stand-in CUDA program, stub driver) */
    a = fixture("report_real_crash_async.json");
    ADG_ASSERT_OK(rep_report_crash(a, &doc));
    f = finding(doc, "reporter-not-faulting", NULL);
    assert_non_null(f);
    assert_int_equal((int)number(f, "reporting_launch"), 3);
    assert_int_equal((int)number(f, "faulting_launch"), 2);
    assert_non_null(strstr(json_string_value(json_object_get(f, "evidence")), "'oob_write_kernel(float*, int)'"));
    assert_null(finding(doc, "run-incomplete", NULL)); /* the crash explains the status */
    char *md = NULL;
    ADG_ASSERT_OK(rep_render(doc, REP_FORMAT_MD, &md));
    assert_non_null(strstr(md, "| kernel that faulted | launch #2 'oob_write_kernel(float\\*, int)' |"));
    free(md);
    json_decref(doc);
    free(a);
}

static void expect_error(adg_error *e, adg_errkind kind, const char *msg_part, const char *hint_part)
{
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), kind);
    if (msg_part && !strstr(adg_error_msg(e), msg_part)) {
        print_error("message '%s' lacks '%s'\n", adg_error_msg(e), msg_part);
        fail();
    }
    if (hint_part && (!adg_error_remedy(e) || !strstr(adg_error_remedy(e), hint_part))) {
        print_error("hint '%s' lacks '%s'\n", adg_error_remedy(e) ? adg_error_remedy(e) : "(none)", hint_part);
        fail();
    }
    adg_error_free(e);
}

static void test_bad_input(void **state)
{
    (void)state;
    json_t *doc = NULL;
    char *p = fixture("report_truncated.json");
    expect_error(rep_report_run(p, &doc), ADG_E_FORMAT, "line", NULL);
    assert_null(doc);
    free(p);
    p = fixture("report_foreign.json");
    expect_error(rep_report_run(p, &doc), ADG_E_FORMAT, "amxdiag.probe/1", NULL);
    free(p);
    p = fixture("report_runjson.json");
    expect_error(rep_report_run(p, &doc), ADG_E_FORMAT, "amxdiag.run-result/1", "amxdiag profile --out");
    free(p);
    p = fixture("report_base_avx512.json");
    expect_error(rep_report_crash(p, &doc), ADG_E_FORMAT, "no crash section", "amxdiag report");
    free(p);
    expect_error(rep_report_run("/nonexistent/run.json", &doc), ADG_E_IO, "/nonexistent/run.json", NULL);
    p = fixture("report_base_avx512.json");
    char *q = fixture("report_truncated.json");
    expect_error(rep_report_compare(p, q, &doc), ADG_E_FORMAT, "new", NULL);
    expect_error(rep_report_compare(q, p, &doc), ADG_E_FORMAT, "base", NULL);
    free(p);
    free(q);
}

/* ---- hand-made records for single rules ---- */

static json_t *skeleton(const char *kernels)
{
    json_t *r = json_pack("{s:s,s:{s:s,s:s},s:s,s:s,s:s,s:[],s:[],s:[],s:[]}", "schema", "amxdiag.run/1", "tool", "name",
                          "amxdiag", "version", "0", "created", "2026-11-25T00:00:00Z", "host", "h", "status",
                          "complete", "metrics", "series", "events", "unavailable");
    json_object_set_new(r, "workload", json_pack("{s:[s,s,s,s]}", "command", "amxdiag", "run", "--cpu-kernels", kernels));
    return r;
}

static json_t *run_on(json_t *rec, char *dir)
{
    char *path = NULL;
    assert_true(asprintf(&path, "%s/r.json", dir) > 0);
    ADG_ASSERT_OK(adg_json_write_atomic(path, rec));
    json_decref(rec);
    json_t *doc = NULL;
    ADG_ASSERT_OK(rep_report_run(path, &doc));
    free(path);
    return doc;
}

static void phase(json_t *rec, double t0, double t1, const char *name)
{
    json_t *ev = json_object_get(rec, "events");
    json_array_append_new(ev, json_pack("{s:I,s:s,s:s,s:{s:s}}", "t_ns", (json_int_t)(t0 * 1e9), "kind", "phase", "name",
                                        name, "detail", "state", "begin"));
    json_array_append_new(ev, json_pack("{s:I,s:s,s:s,s:{s:s,s:f}}", "t_ns", (json_int_t)(t1 * 1e9), "kind", "phase",
                                        "name", name, "detail", "state", "end", "t_s", 100.0));
}

static void test_rules_single(void **state)
{
    (void)state;
    char *dir = adg_test_tmpdir();
    assert_non_null(dir);

    /* AMX asked for, never ran */
    json_t *r = skeleton("amx");
    json_object_set_new(r, "isa_share", json_pack("{s:I,s:{s:f,s:f}}", "samples", (json_int_t)5000, "by_function", "amx",
                                                  0.0, "avx512", 90.0));
    json_t *doc = run_on(r, dir);
    json_t *f = finding(doc, "amx-never-ran", NULL);
    assert_non_null(f);
    assert_string_equal(sev(f), "critical");
    assert_true(number(f, "amx_share_pct") == 0.0);
    assert_int_equal(rep_doc_exit_code(doc), 1);
    json_decref(doc);

    /* AMX asked for, generation only: the engine's op records show VNNI at M = 1, which
     * the dispatcher picks by design: an info finding, exit 0 */
    for (int with_prompt = 0; with_prompt < 2; with_prompt++) {
        r = skeleton("amx");
        json_object_set_new(r, "isa_share", json_pack("{s:I,s:{s:f,s:f}}", "samples", (json_int_t)5000, "by_function",
                                                      "amx", 0.0, "avx512", 90.0));
        json_t *ev = json_object_get(r, "events");
        json_array_append_new(ev, json_pack("{s:I,s:s,s:s,s:{s:s,s:s,s:s,s:s,s:i,s:f,s:f}}", "t_ns", (json_int_t)1000,
                                            "kind", "op", "name", "matmul_qkv", "detail", "phase", "generation",
                                            "variant", "avx512-vnni-q4_0", "impl", "avx512", "backend", "CPU", "layer",
                                            0, "calls", 10.0, "seconds", 0.5));
        if (with_prompt)
            json_array_append_new(ev, json_pack("{s:I,s:s,s:s,s:{s:s,s:s,s:s,s:s,s:i,s:f,s:f}}", "t_ns",
                                                (json_int_t)2000, "kind", "op", "name", "matmul_qkv", "detail", "phase",
                                                "prompt", "variant", "avx512-vnni-q4_0", "impl", "avx512", "backend",
                                                "CPU", "layer", 0, "calls", 1.0, "seconds", 0.5));
        doc = run_on(r, dir);
        f = finding(doc, "amx-never-ran", NULL);
        assert_non_null(f);
        assert_string_equal(sev(f), with_prompt ? "critical" : "info");
        assert_int_equal(rep_doc_exit_code(doc), with_prompt ? 1 : 0);
        json_decref(doc);
    }

    /* the same on an AVX-512 run: nothing to say */
    r = skeleton("avx512");
    json_object_set_new(r, "isa_share", json_pack("{s:I,s:{s:f,s:f}}", "samples", (json_int_t)5000, "by_function", "amx",
                                                  0.0, "avx512", 90.0));
    doc = run_on(r, dir);
    assert_int_equal(json_array_size(json_object_get(doc, "findings")), 0);
    assert_int_equal(rep_doc_exit_code(doc), 0);
    json_decref(doc);

    /* AMX only in prompt: the isa.share.amx series inside the phase windows */
    r = skeleton("amx");
    json_array_append_new(json_object_get(r, "metrics"),
                          json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", "isa.share.amx", "unit", "%", "scope", "process",
                                    "meaning", "m", "collector", "sampler"));
    json_t *t = json_array(), *v = json_array();
    for (int k = 1; k <= 20; k++) {
        json_array_append_new(t, json_integer((json_int_t)k * 100000000));
        json_array_append_new(v, json_real(k <= 10 ? 40.0 : 0.2));
    }
    json_array_append_new(json_object_get(r, "series"),
                          json_pack("{s:s,s:n,s:o,s:o}", "metric", "isa.share.amx", "instance", "t_ns", t, "value", v));
    phase(r, 0.05, 1.0, "prompt");
    phase(r, 1.05, 2.0, "generation");
    doc = run_on(r, dir);
    f = finding(doc, "amx-prompt-only", NULL);
    assert_non_null(f);
    assert_true(fabs(number(f, "amx_prompt_pct") - 40.0) < 1e-9);
    assert_true(fabs(number(f, "amx_generation_pct") - 0.2) < 1e-9);
    assert_null(finding(doc, "amx-never-ran", NULL));
    json_decref(doc);

    /* oversubscribed: 32 threads on 16 CPUs */
    r = skeleton("avx512");
    json_object_set_new(r, "workload", json_pack("{s:[s,s,s,s]}", "command", "llama-bench", "-t", "32", "-p"));
    json_object_set_new(r, "machine", json_pack("{s:i}", "online_cpus", 16));
    doc = run_on(r, dir);
    f = finding(doc, "threads-oversubscribed", NULL);
    assert_non_null(f);
    assert_int_equal((int)number(f, "threads"), 32);
    assert_int_equal((int)number(f, "cpus"), 16);
    json_decref(doc);

    /* nothing measured: every cell says why, from the unavailable list */
    r = skeleton("avx512");
    json_array_append_new(json_object_get(r, "unavailable"),
                          json_pack("{s:s,s:s,s:s}", "collector", "pmu", "what", "pmu", "reason", "no PMU in this VM"));
    doc = run_on(r, dir);
    char *md = NULL;
    ADG_ASSERT_OK(rep_render(doc, REP_FORMAT_MD, &md));
    assert_non_null(strstr(md, "| AMX busy (EXE.AMX_BUSY / cycles) | not measured: no PMU in this VM |"));
    assert_non_null(strstr(md, "not measured: the record has none of"));
    free(md);
    json_decref(doc);
    adg_test_rmtree(dir);
}

static void test_escaping(void **state)
{
    (void)state;
    char *p = fixture("report_hostile.json");
    json_t *doc = NULL;
    ADG_ASSERT_OK(rep_report_crash(p, &doc));
    char *html = NULL, *md = NULL;
    ADG_ASSERT_OK(rep_render(doc, REP_FORMAT_HTML, &html));
    ADG_ASSERT_OK(rep_render(doc, REP_FORMAT_MD, &md));
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "<img"));
    assert_null(strstr(html, "<iframe"));
    assert_non_null(strstr(html, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&gt;&lt;img"));
    assert_null(strstr(md, "<script"));
    assert_null(strstr(md, "<img"));
    assert_non_null(strstr(md, "&lt;script&gt;"));
    assert_non_null(strstr(md, "\\|\\*\\*md\\*\\*\\`")); /* no cell split, no bold, no code span */
    free(html);
    free(md);
    json_decref(doc);
    ADG_ASSERT_OK(rep_report_run(p, &doc));
    ADG_ASSERT_OK(rep_render(doc, REP_FORMAT_HTML, &html));
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "<b>evil"));
    assert_non_null(strstr(html, "<svg"));
    free(html);
    json_decref(doc);
    free(p);
}

static void test_html_charts(void **state)
{
    (void)state;
    json_t *doc = compare_doc();
    char *html = NULL;
    ADG_ASSERT_OK(rep_render(doc, REP_FORMAT_HTML, &html));
    int svgs = 0;
    for (const char *s = html; (s = strstr(s, "<svg")); s++)
        svgs++;
    /* ISA shares, op bars (prompt, generation), 2 x (ISA and bandwidth over time) */
    assert_true(svgs >= 7);
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "src=\"http")); /* self-contained: nothing to fetch */
    assert_null(strstr(html, "href=\"http"));
    assert_null(strstr(html, "@import"));
    assert_non_null(strstr(html, "<polyline"));
    free(html);
    char *js = NULL;
    ADG_ASSERT_OK(rep_render(doc, REP_FORMAT_JSON, &js));
    json_error_t err;
    json_t *back = json_loads(js, 0, &err);
    assert_non_null(back);
    assert_string_equal(json_string_value(json_object_get(back, "schema")), "amxdiag.report/1");
    json_decref(back);
    free(js);
    json_decref(doc);
}

/* Sections of unexpected types, anywhere a report looks: an error or a report, never a
 * crash (ASan/UBSan build). */
static void try_all(const char *path, const char *good)
{
    json_t *doc = NULL;
    adg_error *e;
    const char *modes[3] = {"run", "crash", "compare"};
    for (int m = 0; m < 3; m++) {
        e = m == 0 ? rep_report_run(path, &doc) : m == 1 ? rep_report_crash(path, &doc) : rep_report_compare(good, path, &doc);
        (void)modes;
        if (e) {
            assert_null(doc);
            assert_non_null(adg_error_msg(e));
            adg_error_free(e);
            continue;
        }
        for (int f = 0; f < 3; f++) {
            char *text = NULL;
            ADG_ASSERT_OK(rep_render(doc, (rep_format)f, &text));
            assert_non_null(text);
            free(text);
        }
        json_decref(doc);
        doc = NULL;
    }
}

static void test_mutations(void **state)
{
    (void)state;
    char *dir = adg_test_tmpdir();
    char *good = fixture("report_hybrid_gpu.json");
    static const char *const srcs[] = {"report_crash_getrows.json", "report_hybrid_gpu.json"};
    json_t *repl[] = {json_null(), json_integer(7), json_string("x"), json_array(), json_object(),
                      json_pack("[{s:s}]", "x", "y")};
    char *path = NULL;
    assert_true(asprintf(&path, "%s/m.json", dir) > 0);
    int runs = 0;
    for (size_t si = 0; si < ADG_ARRAY_LEN(srcs); si++) {
        char *src = fixture(srcs[si]);
        json_t *rec = NULL;
        ADG_ASSERT_OK(adg_json_load_file(src, "fixture", &rec));
        free(src);
        /* every top-level key, then every key of the sections reports dig into */
        const char *key;
        json_t *val;
        json_t *targets = json_array();
        json_array_append(targets, rec);
        static const char *const subs[] = {"crash", "gpu_kernels", "workload", "isa_share", "numa", "machine"};
        for (size_t k = 0; k < ADG_ARRAY_LEN(subs); k++)
            if (json_is_object(json_object_get(rec, subs[k])))
                json_array_append(targets, json_object_get(rec, subs[k]));
        size_t ti;
        json_t *target;
        json_array_foreach(targets, ti, target) {
            json_t *keys = json_array();
            json_object_foreach(target, key, val) json_array_append_new(keys, json_string(key));
            size_t ki;
            json_t *kj;
            json_array_foreach(keys, ki, kj) {
                const char *k = json_string_value(kj);
                json_t *saved = json_incref(json_object_get(target, k));
                for (size_t r = 0; r < ADG_ARRAY_LEN(repl); r++) {
                    json_object_set(target, k, repl[r]);
                    assert_int_equal(json_dump_file(rec, path, 0), 0); /* no fsync: hundreds of files */
                    try_all(path, good);
                    runs++;
                }
                json_object_set_new(target, k, saved);
            }
            json_decref(keys);
        }
        json_decref(targets);
        json_decref(rec);
    }
    assert_true(runs > 100);
    for (size_t r = 0; r < ADG_ARRAY_LEN(repl); r++)
        json_decref(repl[r]);
    free(path);
    free(good);
    adg_test_rmtree(dir);
}

/* docs/reports.md documents every rule of the table. */
static void test_rules_documented(void **state)
{
    (void)state;
    const char *src = getenv("SRC_DIR");
    if (!src || !*src)
        ADG_SKIP("SRC_DIR is not set (run through ctest)");
    char *path = NULL;
    assert_true(asprintf(&path, "%s/docs/reports.md", src) > 0);
    char *text = NULL;
    size_t len;
    ADG_ASSERT_OK(adg_read_file(path, 0, &text, &len));
    int missing = 0;
    for (size_t i = 0; i < rep_rule_count(); i++) {
        char want[64];
        snprintf(want, sizeof want, "`%s`", rep_rule_at(i)->id);
        if (!strstr(text, want)) {
            print_error("docs/reports.md does not document rule %s\n", rep_rule_at(i)->id);
            missing++;
        }
    }
    free(text);
    free(path);
    assert_int_equal(missing, 0);
}


/* Fixture `name` after edit() changed it, written to dir/edited.json (the reports read
 * records from files); returns that path (static). */
static const char *edited_fixture(const char *name, void (*edit)(json_t *rec), const char *dir)
{
    static char path[512];
    char *p = fixture(name);
    json_t *rec = json_load_file(p, 0, NULL);
    free(p);
    assert_non_null(rec);
    edit(rec);
    snprintf(path, sizeof path, "%s/edited.json", dir);
    assert_int_equal(json_dump_file(rec, path, 0), 0);
    json_decref(rec);
    return path;
}

/* The run report of a fixture record after edit() changed it. */
static json_t *report_of_edited(const char *name, void (*edit)(json_t *rec))
{
    char *dir = adg_test_tmpdir();
    json_t *doc = NULL;
    ADG_ASSERT_OK(rep_report_run(edited_fixture(name, edit, dir), &doc));
    adg_test_rmtree(dir);
    return doc;
}

/* The regression report of the seed pair after edit() changed the new (AMX) run. */
static json_t *compare_of_edited_new(void (*edit)(json_t *rec))
{
    char *dir = adg_test_tmpdir(), *base = fixture("report_base_avx512.json");
    json_t *doc = NULL;
    ADG_ASSERT_OK(rep_report_compare(base, edited_fixture("report_new_amx.json", edit, dir), &doc));
    free(base);
    adg_test_rmtree(dir);
    return doc;
}

/* The AMX op records of the prompt take `prompt_tiles_scale` of their time. */
static double prompt_tiles_scale;
static void scale_prompt_tiles(json_t *rec)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(rec, "events"), i, e) {
        json_t *d = json_object_get(e, "detail");
        const char *impl = json_string_value(json_object_get(d, "impl"));
        const char *phase = json_string_value(json_object_get(d, "phase"));
        if (impl && phase && !strcmp(impl, "amx") && !strcmp(phase, "prompt"))
            json_object_set_new(d, "seconds",
                                json_real(json_number_value(json_object_get(d, "seconds")) * prompt_tiles_scale));
    }
}

/* The AMX run as if it were the tile emulator's. */
static void as_emulator(json_t *rec)
{
    json_object_set_new(json_object_get(rec, "config"), "cpu_kernels", json_string("amx-emu"));
}

/* tiles-prompt-gain fires below 1.2x (1810.6 us x 0.95 against 2050.3: 1.19x), not above
 * it (x 0.9: 1.26x, x 0.5: 2.26x), and not for the tile emulator. */
static void test_tiles_prompt_gain_threshold(void **state)
{
    (void)state;
    const double scale[] = {0.95, 0.9, 0.5};
    for (size_t i = 0; i < sizeof scale / sizeof scale[0]; i++) {
        prompt_tiles_scale = scale[i];
        json_t *doc = compare_of_edited_new(scale_prompt_tiles);
        json_t *f = finding(doc, "tiles-prompt-gain", NULL);
        if (i == 0) {
            assert_non_null(f);
            assert_true(fabs(number(f, "tiles_speedup") - 2050.3 / (1810.62 * 0.95)) < 0.01);
        } else {
            assert_null(f);
        }
        json_decref(doc);
    }
    json_t *doc = compare_of_edited_new(as_emulator);
    assert_null(finding(doc, "tiles-prompt-gain", NULL));
    assert_null(finding(doc, "tiles-small-m", NULL));
    json_decref(doc);
}

/* A CPU-only built-in run whose GPU tracer was loaded reports 0 s of kernels: that is not
 * "GPU idle while CPU layers run" (seen on the device: the finding fired on --ngl 0). */
static void no_gpu_kernels(json_t *rec)
{
    json_object_set_new(rec, "gpu_kernels", json_pack("{s:f,s:[]}", "kernel_time_s", 0.0, "kernels"));
}

static void test_gpu_idle_needs_gpu_use(void **state)
{
    (void)state;
    json_t *doc = report_of_edited("report_base_avx512.json", no_gpu_kernels);
    assert_null(finding(doc, "gpu-idle", NULL));
    json_decref(doc);
}

/* Copies before the first kernel are setup (the weights going up once): transfer-bound
 * judges the copies made while the GPU computed.  The hybrid fixture's 42 GiB of HtoD in
 * 5.9 s, all before its first kernel: no finding, and the setup facts say what it was. */
static void copies_before_kernels(json_t *rec)
{
    json_t *gk = json_object_get(rec, "gpu_kernels");
    assert_true(json_is_object(gk));
    json_object_set_new(gk, "memcpy_before_kernels",
                        json_pack("{s:I,s:I,s:f}", "count", (json_int_t)2100, "bytes", (json_int_t)(41.9 * (1u << 30)),
                                  "time_s", 5.85));
}

static void test_setup_copies_not_transfer_bound(void **state)
{
    (void)state;
    json_t *doc = report_of_edited("report_hybrid_gpu.json", copies_before_kernels);
    assert_null(finding(doc, "transfer-bound", NULL));
    char *md = NULL;
    ADG_ASSERT_OK(rep_render(doc, REP_FORMAT_MD, &md));
    assert_non_null(strstr(md, "bytes copied before the first kernel (setup)"));
    free(md);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compare_seed_pair), cmocka_unit_test(test_run_report),
        cmocka_unit_test(test_crash_reports),     cmocka_unit_test(test_real_records),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_gpu_idle_needs_gpu_use),
        cmocka_unit_test(test_tiles_prompt_gain_threshold), cmocka_unit_test(test_setup_copies_not_transfer_bound),
        cmocka_unit_test(test_rules_single),      cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_html_charts),       cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_rules_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
