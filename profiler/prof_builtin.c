#include "profiler/prof_builtin.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kern_cpu.h"

struct prof_builtin {
    prof_builtin_opts o;
    adg_bus *bus;
    pthread_t th;
    atomic_bool done;
    adg_error *err;
    kern_engine *eng;
    kern_bench_result res;
    bool have_res;
    char *model_path;
    char threads_note[200]; /* why the kernel threads are what they are, when amxdiag chose */
};

static void *engine_main(void *arg)
{
    prof_builtin *b = arg;
    adg_error *e = kern_engine_set_numa(b->o.numa);
    if (!e && !b->o.engine.model_path) {
        bool created;
        e = kern_engine_default_model(&b->model_path, &created);
        b->o.engine.model_path = b->model_path;
    }
    if (!e)
        e = kern_engine_open(&b->o.engine, &b->eng);
    if (!e) {
        kern_engine_attach_bus(b->eng, b->bus);
        e = kern_engine_bench(b->eng, &b->o.bench, &b->res);
        b->have_res = !e;
        kern_engine_attach_bus(b->eng, NULL);
    }
    b->err = e;
    atomic_store(&b->done, true);
    return NULL;
}

/* Kernel threads when none were asked for: every allowed CPU but one, from 4 CPUs up.  The
 * sampler and the collectors need a CPU; with a kernel thread on every CPU they preempt
 * workers that the pool's barriers then wait for (measured on a 16-CPU machine:
 * profiling cost 14 % of tg128 and 19 % of pp512 at 16 threads, 3 % and 2 % at 15;
 * docs/PERFORMANCE.md). */
static int default_threads(char *why, size_t len)
{
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    if (n < 4)
        return 0;
    snprintf(why, len,
             "%d of %d CPUs: one left to the profiler's own threads, which otherwise preempt kernel threads "
             "that every barrier waits for (about 15-20%% slower); -t %d uses them all",
             n - 1, n, n);
    return n - 1;
}

adg_error *prof_builtin_start(const prof_builtin_opts *o, adg_bus *bus, prof_builtin **out)
{
    prof_builtin *b = calloc(1, sizeof *b);
    if (!b)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    b->o = *o;
    if (b->o.engine.threads <= 0)
        b->o.engine.threads = default_threads(b->threads_note, sizeof b->threads_note);
    b->bus = bus;
    atomic_init(&b->done, false);
    if (pthread_create(&b->th, NULL, engine_main, b) != 0) {
        free(b);
        return adg_error_new(ADG_E_INTERNAL, "cannot start the engine thread");
    }
    *out = b;
    return NULL;
}

bool prof_builtin_done(prof_builtin *b)
{
    return atomic_load(&b->done);
}

adg_error *prof_builtin_finish(prof_builtin *b, json_t *workload, json_t *results, adg_record *rec)
{
    pthread_join(b->th, NULL);
    json_object_set_new(workload, "builtin", json_true());
    if (b->o.engine.model_path)
        json_object_set_new(workload, "model", json_string(b->o.engine.model_path));
    json_object_set_new(workload, "cpu_kernels", json_string(kern_impl_name(b->o.engine.impl)));
    json_object_set_new(workload, "amx_scales", json_string(b->o.engine.amx_row_scales ? "row" : "block"));
    json_object_set_new(workload, "threads", json_integer(b->o.engine.threads));
    if (b->threads_note[0])
        json_object_set_new(workload, "threads_note", json_string(b->threads_note));
    if (b->eng)
        json_object_set_new(workload, "backend", json_string(kern_engine_backend(b->eng)));
    json_t *ops = json_array();
    json_t *est = json_array();
    for (int i = 0; b->have_res && i < b->res.n_tests; i++) {
        const kern_bench_test *t = &b->res.tests[i];
        json_array_append_new(results, json_pack("{s:s,s:f,s:f,s:s}", "test", t->name, "tokens_per_s", t->avg_ts,
                                                 "stddev", t->sd_ts, "source", "amxdiag engine"));
        json_t *list = json_array();
        uint64_t ns = 0, bytes = 0;
        for (int k = 0; k < t->n_ops; k++) {
            const kern_bench_op *op = &t->ops[k];
            ns += op->ns;
            bytes += op->bytes;
            json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:s,s:I,s:f,s:I,s:I}", "op", op->op, "variant",
                                                  op->variant, "impl", kern_impl_name(op->impl), "backend", op->backend,
                                                  "calls", (json_int_t)op->calls, "seconds", (double)op->ns * 1e-9,
                                                  "bytes", (json_int_t)op->bytes, "flops", (json_int_t)op->flops));
        }
        json_array_append_new(ops, json_pack("{s:s,s:i,s:o}", "test", t->name, "reps", (int)t->reps, "ops", list));
        if (ns)
            json_array_append_new(est, json_pack("{s:s,s:f}", "test", t->name, "Bps",
                                                 (double)bytes / ((double)ns * 1e-9)));
    }
    adg_error_free(adg_record_set_section(rec, "ops", ops));
    /* The session merges this into its memory section. */
    if (json_array_size(est))
        adg_error_free(adg_record_set_section(
            rec, "memory",
            json_pack("{s:o,s:s}", "estimated", est, "estimated_note",
                      "estimated: bytes each op moves (weights, activations, KV) / time in ops, per test; not "
                      "measured traffic")));
    else
        json_decref(est);
    adg_error *e = b->err;
    if (b->have_res)
        kern_bench_result_free(&b->res);
    if (b->eng)
        kern_engine_close(b->eng);
    free(b->model_path);
    free(b);
    return e;
}

void prof_builtin_abandon(prof_builtin *b)
{
    /* Leaked on purpose: the thread still uses b and the engine; the process exits next. */
    pthread_detach(b->th);
}
