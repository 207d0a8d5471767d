/* Confirmation re-run with CUDA_LAUNCH_BLOCKING=1, merged into the crash section. */
#include "profiler/crash_confirm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/adg_json.h"
#include "common/adg_log.h"
#include "common/adg_record.h"
#include "profiler/crash_analyze.h"
#include "profiler/prof_collector.h"

void prof_confirm_record_path(const char *record_path, char *buf, size_t len)
{
    size_t n = strlen(record_path);
    if (n > 5 && !strcmp(record_path + n - 5, ".json"))
        n -= 5;
    snprintf(buf, len, "%.*s.confirm.json", (int)n, record_path);
}

/* The variable is set in our own environment for the length of the re-run (the session
 * gives the command our environment plus the collectors' entries), then put back. */
typedef struct env_save {
    char *old;
    bool had;
} env_save;

static void env_set_blocking(env_save *s)
{
    const char *v = getenv("CUDA_LAUNCH_BLOCKING");
    s->had = v != NULL;
    s->old = v ? strdup(v) : NULL;
    setenv("CUDA_LAUNCH_BLOCKING", "1", 1);
}

static void env_restore(env_save *s)
{
    if (s->had && s->old)
        setenv("CUDA_LAUNCH_BLOCKING", s->old, 1);
    else
        unsetenv("CUDA_LAUNCH_BLOCKING");
    free(s->old);
}

/* The run's "crash" event (what a timeline or a replay shows) follows the section. */
static void update_crash_events(json_t *root, json_t *crash)
{
    const char *k = json_string_value(json_object_get(json_object_get(crash, "faulting_kernel"), "kernel"));
    json_t *concl = json_object_get(crash, "conclusion");
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(root, "events"), i, ev) {
        const char *kind = json_string_value(json_object_get(ev, "kind"));
        if (!kind || strcmp(kind, "crash"))
            continue;
        if (k)
            json_object_set_new(ev, "name", json_string(k));
        json_t *d = json_object_get(ev, "detail");
        if (json_is_object(d) && json_is_string(concl))
            json_object_set(d, "conclusion", concl);
    }
}

static bool prof_confirm_wanted_path(const prof_options *o);

adg_error *prof_confirm_run(const prof_options *o, bool *ran, int *rc)
{
    return prof_confirm_run_msg(o, true, ran, rc);
}

adg_error *prof_confirm_run_msg(const prof_options *o, bool quiet, bool *ran, int *rc)
{
    prof_confirm_result res;
    if (!quiet && prof_confirm_wanted_path(o))
        fprintf(stderr, "amxdiag: the kernel behind the CUDA error is not certain: running the command again with "
                        "CUDA_LAUNCH_BLOCKING=1 to confirm it (--no-confirm skips this)\n");
    fflush(NULL);
    adg_error *e = prof_confirm_run_ex(o, &res);
    *ran = res.ran;
    *rc = res.rc;
    if (!quiet && res.summary[0])
        fprintf(stderr, "amxdiag: %s\n", res.summary);
    return e;
}

static bool blocking_already(void)
{
    /* The first run was blocking already: a second one would only repeat it. */
    const char *lb = getenv("CUDA_LAUNCH_BLOCKING");
    return lb && !strcmp(lb, "1");
}

bool prof_confirm_wanted(const prof_options *o, const json_t *record)
{
    if (!o->argv || !o->out || blocking_already() || !json_is_object(record))
        return false;
    const char *status = json_string_value(json_object_get(record, "status"));
    return crash_needs_confirmation(json_object_get(record, "crash")) && !(status && !strcmp(status, "interrupted"));
}

static bool prof_confirm_wanted_path(const prof_options *o)
{
    if (!o->argv || !o->out || blocking_already())
        return false;
    json_t *root;
    adg_error *e = adg_record_load(o->out, &root);
    if (e) {
        adg_error_free(e);
        return false;
    }
    bool want = prof_confirm_wanted(o, root);
    json_decref(root);
    return want;
}

static void copy_str(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

/* The one line that says what the merged confirmation found. */
static void summarise(const json_t *crash, prof_confirm_result *res)
{
    json_t *cf = json_object_get(crash, "confirmation");
    const char *k = json_string_value(json_object_get(cf, "kernel"));
    const char *first = json_string_value(json_object_get(json_object_get(cf, "first_guess"), "kernel"));
    json_t *agrees = json_object_get(cf, "agrees");
    res->reproduced = json_is_true(json_object_get(cf, "reproduced"));
    res->certain = res->reproduced && k && json_is_boolean(agrees);
    res->agrees = json_is_boolean(agrees) ? json_is_true(agrees) : -1;
    copy_str(res->kernel, sizeof res->kernel, res->certain ? k : NULL);
    copy_str(res->first_guess, sizeof res->first_guess, first);
    if (!res->reproduced)
        snprintf(res->summary, sizeof res->summary, "the blocking re-run did not reproduce the error (exit status %d)",
                 res->rc);
    else if (res->certain)
        snprintf(res->summary, sizeof res->summary, "confirmed by a blocking re-run: the faulting kernel is '%s'%s%s%s",
                 k, res->agrees == 0 ? " (not '" : "", res->agrees == 0 && first ? first : "",
                 res->agrees == 0 ? "', the launch ring's first guess)" : "");
    else
        snprintf(res->summary, sizeof res->summary,
                 "the blocking re-run failed too but could not name the kernel for certain");
}

adg_error *prof_confirm_run_ex(const prof_options *o, prof_confirm_result *res)
{
    memset(res, 0, sizeof *res);
    res->agrees = -1;
    if (!o->argv || !o->out || blocking_already())
        return NULL;
    json_t *root;
    adg_error *e = adg_record_load(o->out, &root);
    if (e)
        return adg_error_prefix(e, "run record");
    json_t *crash = json_object_get(root, "crash");
    if (!prof_confirm_wanted(o, root)) {
        json_decref(root);
        return NULL;
    }

    char tmp[4096];
    prof_confirm_record_path(o->out, tmp, sizeof tmp);
    prof_options o2 = *o;
    o2.out = tmp;
    o2.sets = PROF_SET_GPU;
    o2.sets_explicit = false;
    o2.bus = NULL;
    o2.gpu_metrics = false;
    /* Our stdout may carry --json: the re-run's output goes to stderr. */
    o2.tee = true;
    o2.output_to_stderr = true;
    adg_info("running the command again with CUDA_LAUNCH_BLOCKING=1 to confirm the faulting kernel");
    fflush(NULL);
    env_save env;
    env_set_blocking(&env);
    prof_outcome out;
    memset(&out, 0, sizeof out);
    e = prof_session_run(&o2, &out);
    env_restore(&env);
    res->ran = true;
    res->rc = out.exit_code;
    if (out.workload_error)
        adg_error_free(out.workload_error);
    if (e) {
        json_decref(out.record);
        json_decref(root);
        unlink(tmp);
        return adg_error_prefix(e, "confirmation re-run (CUDA_LAUNCH_BLOCKING=1)");
    }
    const char *st2 = json_string_value(json_object_get(out.record, "status"));
    if (st2 && !strcmp(st2, "interrupted")) {
        /* Stopped half-way: it proves nothing either way. */
        res->interrupted = true;
        snprintf(res->summary, sizeof res->summary,
                 "the blocking re-run was stopped before it ended: the launch ring's analysis stands");
        json_decref(out.record);
        json_decref(root);
        unlink(tmp);
        return NULL;
    }
    json_t *c2 = json_object_get(out.record, "crash");
    crash_merge_confirmation(crash, json_is_object(c2) ? c2 : NULL, out.exit_code);
    update_crash_events(root, crash);
    summarise(crash, res);
    json_decref(out.record);
    unlink(tmp);
    e = adg_json_write_atomic(o->out, root);
    json_decref(root);
    return e ? adg_error_prefix(e, "run record") : NULL;
}
