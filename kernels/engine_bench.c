/* llama-bench's pp/tg tests over the engine, and what the engine tells the metrics bus:
 * phase markers, one event and one latency sample per generated token, and per-op
 * records aggregated per op kind and layer at the end of each phase. */
#include "kernels/kern_engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "kernels/engine_internal.h"

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static int32_t rand_token(const kern_engine *e, uint64_t *s)
{
    /* Ordinary tokens only: the last three ids are the control tokens of our vocabularies. */
    uint32_t n = e->model->hp.n_vocab > 16 ? e->model->hp.n_vocab - 3 : e->model->hp.n_vocab;
    return (int32_t)(rng_next(s) % n);
}

void kern_engine_attach_bus(kern_engine *e, adg_bus *bus)
{
    e->bus = bus;
    e->m_tps = e->m_lat = -1;
    if (!bus)
        return;
    static const adg_metric_def tps = {"engine.tokens_per_s", "t/s", ADG_SCOPE_PROCESS,
                                       "tokens per second of the built-in engine's current phase (prompt or generation)"};
    static const adg_metric_def lat = {"engine.token_latency", "s", ADG_SCOPE_PROCESS,
                                       "wall time of one generated token in the built-in engine"};
    adg_error *err = adg_bus_register(bus, "engine", &tps, &e->m_tps);
    if (err) {
        adg_error_free(err);
        e->m_tps = -1;
    }
    if ((err = adg_bus_register(bus, "engine", &lat, &e->m_lat))) {
        adg_error_free(err);
        e->m_lat = -1;
    }
}

static void phase_event(kern_engine *e, const char *name, const char *state, uint32_t rep, uint32_t tokens,
                        double seconds)
{
    if (!e->bus)
        return;
    json_t *d = json_pack("{s:s,s:i,s:i}", "state", state, "rep", (int)rep, "tokens", (int)tokens);
    if (seconds > 0) {
        json_object_set_new(d, "seconds", json_real(seconds));
        json_object_set_new(d, "t_s", json_real(tokens / seconds));
    }
    uint64_t t = adg_bus_elapsed_ns(e->bus);
    adg_bus_event(e->bus, t, "phase", name, d);
    if (seconds > 0 && e->m_tps >= 0)
        adg_bus_sample(e->bus, e->m_tps, name, t, tokens / seconds);
}

/* Per op kind and layer, one "op" event each. */
static void publish_ops(kern_engine *e, const char *phase)
{
    if (!e->bus)
        return;
    uint64_t t = adg_bus_elapsed_ns(e->bus);
    for (uint32_t l = 0; l <= e->model->hp.n_layer; l++)
        for (int k = 0; k < OPK_COUNT; k++) {
            const engine_opstat *s = &e->stats[(size_t)l * OPK_COUNT + (size_t)k];
            if (!s->calls)
                continue;
            json_t *d = json_pack("{s:s,s:i,s:s,s:s,s:s,s:I,s:f,s:I,s:I}", "phase", phase, "layer", (int)l - 1,
                                  "backend", s->backend ? s->backend : "CPU", "impl", kern_impl_name(s->impl), "variant", s->variant, "calls",
                                  (json_int_t)s->calls, "seconds", (double)s->ns / 1e9, "bytes", (json_int_t)s->bytes,
                                  "flops", (json_int_t)s->flops);
            adg_bus_event(e->bus, t, "op", kern_engine_op_name(k), d);
        }
}

static int cmp_op_ns(const void *a, const void *b)
{
    const kern_bench_op *x = a, *y = b;
    return x->ns < y->ns ? 1 : x->ns > y->ns ? -1 : strcmp(x->op, y->op);
}

/* Sums the layers into one row per op kind and variant. */
static adg_error *collect_ops(kern_engine *e, kern_bench_test *t)
{
    t->ops = calloc(OPK_COUNT * 4, sizeof *t->ops);
    if (!t->ops)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    for (uint32_t l = 0; l <= e->model->hp.n_layer; l++)
        for (int k = 0; k < OPK_COUNT; k++) {
            const engine_opstat *s = &e->stats[(size_t)l * OPK_COUNT + (size_t)k];
            if (!s->calls)
                continue;
            int i;
            for (i = 0; i < t->n_ops; i++)
                if (!strcmp(t->ops[i].op, kern_engine_op_name(k)) && !strcmp(t->ops[i].variant, s->variant))
                    break;
            if (i == t->n_ops) {
                if (t->n_ops == OPK_COUNT * 4)
                    continue;
                snprintf(t->ops[i].op, sizeof t->ops[i].op, "%s", kern_engine_op_name(k));
                snprintf(t->ops[i].variant, sizeof t->ops[i].variant, "%s", s->variant);
                t->ops[i].impl = s->impl;
                t->ops[i].backend = s->backend ? s->backend : "CPU";
                t->n_ops++;
            }
            t->ops[i].calls += s->calls;
            t->ops[i].ns += s->ns;
            t->ops[i].bytes += s->bytes;
            t->ops[i].flops += s->flops;
        }
    qsort(t->ops, (size_t)t->n_ops, sizeof *t->ops, cmp_op_ns);
    return NULL;
}

static void stats_of(kern_bench_test *t, uint32_t tokens)
{
    double sum = 0, sum2 = 0;
    for (uint32_t r = 0; r < t->reps; r++) {
        double ts = tokens / t->seconds[r];
        sum += ts;
        sum2 += ts * ts;
    }
    t->avg_ts = sum / t->reps;
    t->sd_ts = t->reps > 1 ? sqrt(fmax(0.0, (sum2 - t->reps * t->avg_ts * t->avg_ts) / (t->reps - 1))) : 0.0;
}

adg_error *kern_engine_bench(kern_engine *e, const kern_bench_opts *o, kern_bench_result *r)
{
    memset(r, 0, sizeof *r);
    if (o->reps == 0 || (o->n_prompt == 0 && o->n_gen == 0))
        return adg_error_new(ADG_E_USAGE, "nothing to measure: -p and -n are 0 or -r is 0");
    if (o->n_prompt > e->n_ctx || o->n_gen > e->n_ctx)
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "-p %u / -n %u do not fit a context of %u positions",
                                            o->n_prompt, o->n_gen, e->n_ctx),
                              "use fewer tokens");
    uint32_t n_tok = o->n_prompt > o->n_gen ? o->n_prompt : o->n_gen;
    int32_t *tokens = malloc((size_t)(n_tok ? n_tok : 1) * sizeof *tokens);
    if (!tokens)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    uint64_t s = o->seed;
    for (uint32_t i = 0; i < n_tok; i++)
        tokens[i] = rand_token(e, &s);
    adg_error *err = NULL;

    /* Warm-up: caches, page faults, AMX tile configuration, thread wake-up. */
    kern_engine_reset(e);
    uint32_t wn = o->n_prompt ? (o->n_prompt < 32 ? o->n_prompt : 32) : 1;
    err = kern_engine_eval(e, tokens, wn, e->logits);

    if (!err && o->n_prompt) {
        kern_bench_test *t = &r->tests[r->n_tests++];
        snprintf(t->name, sizeof t->name, "pp%u", o->n_prompt);
        t->n_prompt = o->n_prompt;
        t->reps = o->reps;
        if (!(t->seconds = calloc(o->reps, sizeof *t->seconds)))
            err = adg_error_new(ADG_E_NOMEM, "out of memory");
        engine_stats_reset(e);
        for (uint32_t rep = 0; !err && rep < o->reps; rep++) {
            kern_engine_reset(e);
            phase_event(e, "prompt", "begin", rep, o->n_prompt, 0);
            uint64_t t0 = adg_now_ns();
            err = kern_engine_eval(e, tokens, o->n_prompt, e->logits);
            t->seconds[rep] = (double)(adg_now_ns() - t0) / 1e9;
            phase_event(e, "prompt", "end", rep, o->n_prompt, t->seconds[rep]);
        }
        if (!err) {
            stats_of(t, o->n_prompt);
            publish_ops(e, "prompt");
            err = collect_ops(e, t);
        }
    }
    if (!err && o->n_gen) {
        kern_bench_test *t = &r->tests[r->n_tests++];
        snprintf(t->name, sizeof t->name, "tg%u", o->n_gen);
        t->n_gen = o->n_gen;
        t->reps = o->reps;
        if (!(t->seconds = calloc(o->reps, sizeof *t->seconds)))
            err = adg_error_new(ADG_E_NOMEM, "out of memory");
        engine_stats_reset(e);
        for (uint32_t rep = 0; !err && rep < o->reps; rep++) {
            kern_engine_reset(e);
            uint64_t gs = o->seed ^ (0x5bd1e995ull * (rep + 1));
            int32_t tok = rand_token(e, &gs);
            phase_event(e, "generation", "begin", rep, o->n_gen, 0);
            uint64_t t0 = adg_now_ns();
            for (uint32_t i = 0; !err && i < o->n_gen; i++) {
                uint64_t ts = adg_now_ns();
                err = kern_engine_eval(e, &tok, 1, e->logits);
                tok = rand_token(e, &gs);
                if (e->bus) {
                    double sec = (double)(adg_now_ns() - ts) / 1e9;
                    uint64_t now = adg_bus_elapsed_ns(e->bus);
                    if (e->m_lat >= 0)
                        adg_bus_sample(e->bus, e->m_lat, NULL, now, sec);
                    adg_bus_event(e->bus, now, "token", "generation",
                                  json_pack("{s:i,s:i,s:f}", "rep", (int)rep, "index", (int)i, "seconds", sec));
                }
            }
            t->seconds[rep] = (double)(adg_now_ns() - t0) / 1e9;
            phase_event(e, "generation", "end", rep, o->n_gen, t->seconds[rep]);
        }
        if (!err) {
            stats_of(t, o->n_gen);
            publish_ops(e, "generation");
            err = collect_ops(e, t);
        }
    }
    free(tokens);
    if (err)
        kern_bench_result_free(r);
    return err;
}

void kern_bench_result_free(kern_bench_result *r)
{
    for (int i = 0; i < 2; i++) {
        free(r->tests[i].seconds);
        free(r->tests[i].ops);
    }
    memset(r, 0, sizeof *r);
}
