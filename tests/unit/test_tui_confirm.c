/* What amxdiag top says about the blocking re-run that confirms a CUDA fault's kernel
 * (tui/tui_live.c): while it runs, and for each way it can end; and that the GPU panel
 * and the snapshot carry it.  The re-run itself (profiler/crash_confirm.c) is tested in
 * test_crash_confirm.c and, end to end through the stand-in program, in top_confirm.sh. */
#include "adg_test.h"

#include <string.h>

#include "tui/tui_internal.h"
#include "tui/tui_live.h"

static void setup_live(tui_live *l, tui_app *a)
{
    memset(l, 0, sizeof *l);
    tui_app_init(a);
    a->bus = adg_bus_new();
    l->o.out = "run.json";
    l->out.exit_code = 134;
    l->out.record = json_pack("{s:s,s:{}}", "status", "workload-crashed", "workload");
    atomic_init(&l->done, false);
    atomic_init(&l->confirm_state, 0);
}

static void teardown_live(tui_live *l, tui_app *a)
{
    json_decref(l->out.record);
    json_decref(l->confirmed_record);
    adg_bus_free(a->bus);
    a->bus = NULL;
    tui_app_free(a);
}

static char *render(tui_app *a, int w, int h)
{
    tui_canvas c = {0};
    ADG_ASSERT_OK(tui_canvas_init(&c, w, h, true));
    tui_render(a, &c);
    char *text = tui_canvas_text(&c);
    json_t *snap = tui_snapshot_json(a, &c);
    json_t *cc = json_object_get(snap, "crash_confirmation");
    if (a->confirm_summary[0]) {
        assert_string_equal(json_string_value(json_object_get(cc, "summary")), a->confirm_summary);
        assert_string_equal(json_string_value(json_object_get(cc, "state")), a->confirming ? "running" : "done");
    } else
        assert_true(json_is_null(cc));
    json_decref(snap);
    tui_canvas_free(&c);
    return text;
}

static void test_running_then_found(void **st)
{
    (void)st;
    tui_live l;
    tui_app a;
    setup_live(&l, &a);
    /* Nothing ran: no note, no snapshot field. */
    assert_false(tui_live_poll(&l, &a));
    assert_string_equal(a.confirm_note, "");
    free(render(&a, 100, 30));

    /* Running: the first run's end is shown, with the confirmation in front of it. */
    atomic_store(&l.confirm_state, 1);
    assert_false(tui_live_poll(&l, &a));
    assert_true(a.confirming);
    assert_string_equal(a.confirm_note, "confirming the fault's kernel (CUDA_LAUNCH_BLOCKING=1)...");
    assert_non_null(strstr(a.finish_note, "confirming the faulting kernel: the command runs again with "
                                          "CUDA_LAUNCH_BLOCKING=1; workload ended (workload-crashed, exit 134)"));
    char *text = render(&a, 100, 30);
    assert_non_null(strstr(text, "confirming the fault's kernel"));
    free(text);

    /* Done, certain, the ring had guessed another kernel. */
    l.confirm_res = (prof_confirm_result){.ran = true, .rc = 134, .reproduced = true, .certain = true, .agrees = 0};
    snprintf(l.confirm_res.kernel, sizeof l.confirm_res.kernel, "kern_gemv_q4_0_mr");
    snprintf(l.confirm_res.first_guess, sizeof l.confirm_res.first_guess, "kern_quantize_q8");
    snprintf(l.confirm_res.summary, sizeof l.confirm_res.summary, "confirmed by a blocking re-run: the faulting kernel is "
             "'kern_gemv_q4_0_mr' (not 'kern_quantize_q8', the launch ring's first guess)");
    l.confirmed_record = json_pack("{s:s}", "status", "workload-crashed");
    atomic_store(&l.confirm_state, 2);
    atomic_store(&l.done, true);
    assert_true(tui_live_poll(&l, &a));
    assert_false(a.confirming);
    assert_string_equal(a.confirm_note, "fault: kern_gemv_q4_0_mr (confirmed; ring guessed kern_quantize_q8)");
    assert_int_equal(strncmp(a.finish_note, "confirmed by a blocking re-run", 30), 0);
    text = render(&a, 200, 60);
    assert_non_null(strstr(text, "fault: kern_gemv_q4_0_mr (confirmed; ring guessed kern_quantiz")); /* cut to the panel */
    free(text);
    /* After the screen, the merged record is the one the command reports on. */
    tui_live_adopt_confirmed(&l);
    assert_null(l.confirmed_record);
    assert_string_equal(json_string_value(json_object_get(l.out.record, "status")), "workload-crashed");
    assert_null(json_object_get(l.out.record, "workload"));
    teardown_live(&l, &a);
}

static void test_other_endings(void **st)
{
    (void)st;
    static const struct {
        prof_confirm_result r;
        const char *error, *note;
    } cases[] = {
        {{.ran = true, .rc = 134, .reproduced = true, .certain = true, .agrees = 1, .kernel = "k1"}, "", "fault: k1 (confirmed)"},
        {{.ran = true, .rc = 0, .agrees = -1}, "", "blocking re-run: no error (exit 0)"},
        {{.ran = true, .rc = 134, .reproduced = true, .agrees = -1}, "", "blocking re-run: the kernel is still uncertain"},
        {{.ran = true, .rc = 130, .interrupted = true, .agrees = -1}, "", "confirmation stopped: the ring's guess stands"},
        {{.agrees = -1}, "cannot fork: out of memory", "confirmation failed: cannot fork: out of memory"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tui_live l;
        tui_app a;
        setup_live(&l, &a);
        l.confirm_res = cases[i].r;
        snprintf(l.confirm_res.summary, sizeof l.confirm_res.summary, "summary %zu", i);
        snprintf(l.confirm_error, sizeof l.confirm_error, "%s", cases[i].error);
        atomic_store(&l.confirm_state, 2);
        atomic_store(&l.done, true);
        assert_true(tui_live_poll(&l, &a));
        assert_string_equal(a.confirm_note, cases[i].note);
        if (!cases[i].error[0])
            assert_int_equal(strncmp(a.finish_note, l.confirm_res.summary, strlen(l.confirm_res.summary)), 0);
        else
            assert_non_null(strstr(a.finish_note, cases[i].error));
        free(render(&a, 80, 24));
        teardown_live(&l, &a);
    }
}

/* Without --no-confirm a record that needs no confirmation does not start one. */
static void test_not_wanted(void **st)
{
    (void)st;
    tui_live l;
    tui_app a;
    setup_live(&l, &a);
    l.confirm = true;
    char *argv[] = {"true", NULL};
    l.o.argv = argv;
    assert_false(tui_live_confirm(&l)); /* no crash section */
    json_object_set_new(l.out.record, "crash", json_pack("{s:{s:i},s:{s:s,s:s}}", "error", "code", 700,
                                                          "faulting_kernel", "kernel", "k", "confidence", "certain"));
    assert_false(tui_live_confirm(&l)); /* already certain */
    l.confirm = false;
    json_object_set_new(json_object_get(l.out.record, "crash"), "faulting_kernel", json_pack("{s:s,s:s}", "kernel", "k",
                                                                                            "confidence", "likely"));
    assert_false(tui_live_confirm(&l)); /* --no-confirm */
    assert_int_equal(atomic_load(&l.confirm_state), 0);
    teardown_live(&l, &a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_running_then_found),
        cmocka_unit_test(test_other_endings),
        cmocka_unit_test(test_not_wanted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
