/* amxdiag run: option parsing, then kern_engine_open / kern_engine_bench and a
 * llama-bench-style table.  All the work is in kernels/engine*.c. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_cmd.h"
#include "common/adg_exit.h"
#include "common/adg_json.h"
#include "common/adg_log.h"
#include "common/adg_util.h"
#include "kernels/kern_cmds.h"
#include "kernels/kern_engine.h"

/* Not a run record (amxdiag.run/1): a benchmark result, so its own schema name. */
#define RUN_SCHEMA "amxdiag.run-result/1"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: amxdiag run [-m FILE.gguf] [-p N] [-n N] [-r N] [--ngl N] [--cpu-kernels IMPL]\n"
            "                   [--threads N] [--numa POLICY] [--pin] [--seed S] [--ops] [--greedy] [--json]\n"
            "                   [--inject-fault NAME] [--gpu-validate] [--sync-each] [--no-gpu-graphs]\n"
            "                   [--amx-scales block|row] [--greedy --compare IMPL]\n"
            "\n"
            "Runs the built-in inference path (qwen3moe / llama over GGUF) and reports like llama-bench:\n"
            "pp<N> evaluates N prompt tokens from an empty context, tg<N> generates N tokens one at a\n"
            "time; each test is repeated -r times after a warm-up.  Without -m, a small synthetic\n"
            "qwen3moe model is created once (cached in $XDG_CACHE_HOME/amxdiag/models) and run.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE     GGUF model (types f32, f16, bf16, q4_0, q8_0)\n"
            "  -p, --n-prompt N     prompt tokens (default 512; 0 skips the test)\n"
            "  -n, --n-gen N        generated tokens (default 128; 0 skips the test)\n"
            "  -r, --repetitions N  repetitions of each test (default 3)\n"
            "      --ngl N          offload the last N layers and the output to the GPU, as llama.cpp's -ngl\n"
            "                       (qwen3moe, q4_0/q8_0; needs an NVIDIA GPU and driver)\n"
            "      --cpu-kernels I  auto (default), amx, avx512, ref, amx-emu\n"
            "      --amx-scales S   block (default): the AMX tile products keep the formats' per-32 scales,\n"
            "                       bit for bit the other kernels' integer sums; row: the prompt's Q4_0/Q8_0\n"
            "                       products that take tiles use one scale per weight row and per token\n"
            "                       (an int8 copy of those weights, made at load; not the model's own\n"
            "                       numbers: check them with --greedy --compare ref).  Needs --cpu-kernels\n"
            "                       amx or amx-emu, or auto on a machine with usable AMX\n"
            "  -t, --threads N      kernel threads (default: every CPU this process may use)\n"
            "      --numa POLICY    memory policy: local (default), interleave, node=N\n"
            "      --pin            pin kernel threads to CPUs\n"
            "      --ctx N          KV cache positions (default: enough for -p / -n, at least 512)\n"
            "      --seed S         seed of the random tokens (default 1)\n"
            "      --ops            also show where the time went, per op kind and kernel variant\n"
            "      --greedy         instead of benchmarking: greedy-decode -n tokens after a random\n"
            "                       -p token prompt, print the token ids and logit statistics\n"
            "      --compare IMPL   with --greedy: feed this run and a second engine with --cpu-kernels IMPL\n"
            "                       (and no GPU layers) the same tokens, the reference's greedy choices\n"
            "                       (teacher forcing), and compare their logits at every step; exit 1\n"
            "                       when a decisive step (the reference's two best logits further apart\n"
            "                       than twice the difference) picks another token\n"
            "      --inject-fault F plant a GPU fault in the first forward pass (needs --ngl): get_rows-oob,\n"
            "                       matvec-oob, async-before-get_rows; the run stops with the error, the op that\n"
            "                       reported it and the GPU's last launches (exit 2)\n"
            "      --gpu-validate   GPU kernels check their indices: a bad one is named instead of error 700\n"
            "      --sync-each      wait after every GPU launch, so a fault is reported by its own kernel\n"
            "      --no-gpu-graphs  launch a generated token's GPU kernels one by one instead of replaying\n"
            "                       them as one CUDA graph (also $AMXDIAG_GPU_GRAPHS=0)\n"
            "      --json           machine-readable output (schema " RUN_SCHEMA ", docs/run.md)\n"
            "  -o, --output FILE    also write the JSON result to FILE (atomically)\n"
            "  -v, --verbose        progress on stderr\n"
            "  -h, --help           this text\n"
            "\n"
            "exit codes: 0 done, 1 --compare found a decisive step that picks another token, 2 usage\n"
            "error, unreadable model, missing hardware (e.g. --cpu-kernels amx without AMX), a GPU error\n"
            "(an injected fault included; also when one went unreported) or internal error.\n");
}

static int fail(adg_error *e)
{
    adg_error_print(e, stderr);
    int rc = adg_exit_for_error(e);
    adg_error_free(e);
    return rc;
}

static bool parse_count(const char *opt, const char *s, uint64_t max, uint32_t *out)
{
    uint64_t v;
    if (!adg_parse_u64(s, &v) || v > max) {
        fprintf(stderr, "amxdiag run: error: %s '%s' is not a number in 0..%llu\n", opt, s, (unsigned long long)max);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

static void fmt_params(uint64_t n, char *buf, size_t len)
{
    if (n >= 1000000000ull)
        snprintf(buf, len, "%.2f B", (double)n / 1e9);
    else
        snprintf(buf, len, "%.2f M", (double)n / 1e6);
}

static void model_label(const kern_model *m, char *buf, size_t len)
{
    char p[32];
    fmt_params(m->n_params, p, sizeof p);
    char ty[16];
    snprintf(ty, sizeof ty, "%s", kern_ggml_type_name(m->main_type));
    for (char *c = ty; *c; c++)
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
    snprintf(buf, len, "%s %s %s", kern_arch_name(m->hp.arch), p, ty);
    for (char *c = buf; *c; c++)
        if (*c == ' ' && c[1] && c[-1] >= '0' && c[-1] <= '9' && (c[1] == 'M' || c[1] == 'B'))
            memmove(c, c + 1, strlen(c)); /* "8.06M" as llama-bench writes it */
}

static void print_table(const kern_engine *e, const kern_bench_result *r, bool ops)
{
    const kern_model *m = kern_engine_model(e);
    char label[64], size[32], params[32], backend[48];
    model_label(m, label, sizeof label);
    adg_fmt_bytes((double)m->gguf->tensor_bytes, size, sizeof size);
    fmt_params(m->n_params, params, sizeof params);
    snprintf(backend, sizeof backend, "%s %s%s", kern_engine_backend(e), kern_impl_name(kern_cpu_impl(kern_engine_cpu(e))),
             strcmp(kern_engine_amx_scales(e), "row") ? "" : " row");
    printf("| %-24s | %10s | %10s | %-16s | %7s | %7s | %20s |\n", "model", "size", "params", "backend", "threads",
           "test", "t/s");
    printf("| %-24s | %10s | %10s | %-16s | %7s | %7s | %20s |\n", "------------------------", "---------:",
           "---------:", "----------------", "------:", "------:", "-------------------:");
    for (int i = 0; i < r->n_tests; i++) {
        const kern_bench_test *t = &r->tests[i];
        char ts[48];
        snprintf(ts, sizeof ts, "%.2f ± %.2f", t->avg_ts, t->sd_ts);
        /* "±" is two bytes: pad by hand so the column stays aligned. */
        printf("| %-24s | %10s | %10s | %-16s | %7d | %7s | %21s |\n", label, size, params, backend,
               kern_cpu_threads(kern_engine_cpu(e)), t->name, ts);
    }
    if (!ops)
        return;
    for (int i = 0; i < r->n_tests; i++) {
        const kern_bench_test *t = &r->tests[i];
        uint64_t total = 0;
        for (int k = 0; k < t->n_ops; k++)
            total += t->ops[k].ns;
        printf("\n%s: where the time went (all layers, %u reps; %.3f s in ops)\n", t->name, t->reps, (double)total / 1e9);
        printf("  %-16s %-24s %-8s %9s %9s %7s %9s %9s\n", "op", "variant", "impl", "calls", "time s", "share",
               "GFLOP/s", "GB/s");
        for (int k = 0; k < t->n_ops; k++) {
            const kern_bench_op *o = &t->ops[k];
            double s = (double)o->ns / 1e9;
            printf("  %-16s %-24s %-8s %9llu %9.4f %6.1f%% %9.1f %9.1f\n", o->op, o->variant,
                   strcmp(o->backend, "CUDA") ? kern_impl_name(o->impl) : "cuda",
                   (unsigned long long)o->calls, s, total ? 100.0 * (double)o->ns / (double)total : 0.0,
                   s > 0 ? (double)o->flops / s / 1e9 : 0.0, s > 0 ? (double)o->bytes / s / 1e9 : 0.0);
        }
    }
}

static json_t *result_json(const kern_engine *e, const kern_bench_result *r, const char *path, uint64_t seed)
{
    const kern_model *m = kern_engine_model(e);
    const kern_cpu *c = kern_engine_cpu(e);
    json_t *tests = json_array();
    for (int i = 0; i < r->n_tests; i++) {
        const kern_bench_test *t = &r->tests[i];
        json_t *secs = json_array(), *tss = json_array(), *ops = json_array();
        for (uint32_t k = 0; k < t->reps; k++) {
            json_array_append_new(secs, json_real(t->seconds[k]));
            json_array_append_new(tss, json_real((t->n_prompt + t->n_gen) / t->seconds[k]));
        }
        for (int k = 0; k < t->n_ops; k++)
            json_array_append_new(ops, json_pack("{s:s,s:s,s:s,s:s,s:I,s:f,s:I,s:I}", "op", t->ops[k].op, "variant",
                                                 t->ops[k].variant, "backend", t->ops[k].backend, "impl",
                                                 kern_impl_name(t->ops[k].impl), "calls",
                                                 (json_int_t)t->ops[k].calls, "seconds", (double)t->ops[k].ns / 1e9,
                                                 "bytes", (json_int_t)t->ops[k].bytes, "flops",
                                                 (json_int_t)t->ops[k].flops));
        json_array_append_new(tests, json_pack("{s:s,s:i,s:i,s:i,s:o,s:o,s:f,s:f,s:o}", "test", t->name, "n_prompt",
                                               (int)t->n_prompt, "n_gen", (int)t->n_gen, "reps", (int)t->reps,
                                               "seconds", secs, "samples_ts", tss, "avg_ts", t->avg_ts, "stddev_ts",
                                               t->sd_ts, "ops", ops));
    }
    json_t *root = json_pack("{s:s,s:{s:s,s:s,s:s,s:I,s:I,s:s,s:i,s:i,s:i},s:s,s:s,s:s,s:i,s:i,s:i,s:I,s:o}", "schema",
                     RUN_SCHEMA, "model", "path", path, "name", m->name ? m->name : "", "architecture",
                     kern_arch_name(m->hp.arch), "bytes", (json_int_t)m->gguf->tensor_bytes, "params",
                     (json_int_t)m->n_params, "type", kern_ggml_type_name(m->main_type), "n_layer", (int)m->hp.n_layer,
                     "n_expert", (int)m->hp.n_expert, "n_expert_used", (int)m->hp.n_expert_used, "backend",
                     kern_engine_backend(e), "cpu_kernels", kern_impl_name(kern_cpu_impl(c)), "cpu_description",
                     kern_cpu_describe(c), "threads", kern_cpu_threads(c), "ngl", (int)kern_engine_gpu_layers(e), "n_ctx", (int)kern_engine_n_ctx(e),
                     "seed", (json_int_t)seed, "tests", tests);
    if (root)
        json_object_set_new(root, "amx_scales", json_string(kern_engine_amx_scales(e)));
    if (root && kern_engine_gpu_layers(e))
        json_object_set_new(root, "gpu", json_string(kern_engine_gpu_name(e)));
    return root;
}

/* After a failed run with GPU layers: which engine op reported the error and what the
 * GPU launched last.  An asynchronous fault (error 700) is seen by whatever call comes
 * next, so the reporting op is often not the kernel that faulted: the ring shows what ran
 * before it. */
static json_t *gpu_error_report(const kern_engine *e, const adg_error *err, const char *fault, bool print)
{
    const char *op = NULL;
    int layer = -1;
    if (!kern_engine_gpu_layers(e) || !kern_engine_gpu_error_op(e, &op, &layer))
        return NULL;
    kern_cuda_launch ring[KERN_CUDA_LAUNCH_RING];
    size_t n = kern_engine_gpu_launches(e, ring, KERN_CUDA_LAUNCH_RING);
    char where[48];
    if (layer >= 0)
        snprintf(where, sizeof where, "layer %d", layer);
    else
        snprintf(where, sizeof where, "outside the layers");
    if (print) {
        fprintf(stderr, "amxdiag run: the GPU error was reported by op '%s' (%s)%s%s\n", op, where,
                fault ? "; injected fault: " : "", fault ? fault : "");
        if (n) {
            fprintf(stderr, "amxdiag run: the last kernel launched before it: %s (launch #%llu)\n",
                    ring[n - 1].kernel, (unsigned long long)ring[n - 1].seq);
            fprintf(stderr, "amxdiag run: last %zu GPU launches, oldest first:\n", n);
            for (size_t i = 0; i < n; i++) {
                const kern_cuda_launch *l = &ring[i];
                fprintf(stderr, "  #%-6llu %-24s grid %u block %u", (unsigned long long)l->seq, l->kernel, l->grid[0],
                        l->block[0]);
                for (int k = 0; k < 4; k++)
                    if (l->ptr[k])
                        fprintf(stderr, "  p%d=0x%llx (%zu B to the end)", k, (unsigned long long)l->ptr[k],
                                l->ptr_bytes[k]);
                fputc('\n', stderr);
            }
        }
    }
    json_t *launches = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *ptrs = json_array();
        for (int k = 0; k < 4; k++)
            if (ring[i].ptr[k])
                json_array_append_new(ptrs, json_pack("{s:I,s:I}", "address", (json_int_t)ring[i].ptr[k],
                                                      "bytes_to_end", (json_int_t)ring[i].ptr_bytes[k]));
        json_array_append_new(launches, json_pack("{s:I,s:s,s:[i,i,i],s:[i,i,i],s:i,s:o}", "seq",
                                                  (json_int_t)ring[i].seq, "kernel", ring[i].kernel, "grid",
                                                  (int)ring[i].grid[0], (int)ring[i].grid[1], (int)ring[i].grid[2],
                                                  "block", (int)ring[i].block[0], (int)ring[i].block[1],
                                                  (int)ring[i].block[2], "shmem", (int)ring[i].shmem, "ptrs", ptrs));
    }
    const char *hint = adg_error_remedy(err);
    return json_pack("{s:s?,s:s,s:i,s:s,s:s,s:s?,s:s?,s:o}", "name", fault, "reported_by", op, "layer", layer,
                     "error", adg_error_msg(err), "error_kind", adg_error_kind_name(adg_error_kind(err)), "hint", hint,
                     "launched_before", n ? ring[n - 1].kernel : NULL, "launches", launches);
}

/* A failed run: the error (and with GPU layers the report above); with --json also a
 * document with schema and "fault" on stdout, for tools that capture crashes. */
static int fail_run(const kern_engine *e, adg_error *err, const char *fault, bool json, const char *json_out)
{
    json_t *rep = gpu_error_report(e, err, fault, true);
    int rc = fail(err);
    if (rep && (json || json_out)) {
        json_t *root = json_pack("{s:s,s:s,s:o}", "schema", RUN_SCHEMA, "status", "error", "fault", rep);
        rep = NULL;
        adg_error *pe = NULL;
        if (json)
            pe = adg_json_print(stdout, root);
        if (!pe && json_out)
            pe = adg_json_write_atomic(json_out, root);
        if (pe)
            fail(pe);
        json_decref(root);
    }
    json_decref(rep);
    return rc;
}

/* The prompt of --greedy: n_prompt tokens from a seeded LCG (ids below n_vocab - 3). */
static void random_prompt(int32_t *prompt, uint32_t n_prompt, uint32_t nv, uint64_t seed)
{
    uint64_t s = seed;
    for (uint32_t i = 0; i < n_prompt; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        prompt[i] = (int32_t)((s >> 33) % (nv > 16 ? nv - 3 : nv));
    }
}

static int run_greedy(kern_engine *e, uint32_t n_prompt, uint32_t n_gen, uint64_t seed, bool json, const char *path,
                      const char *fault)
{
    const kern_model *m = kern_engine_model(e);
    uint32_t nv = m->hp.n_vocab;
    if (n_prompt == 0)
        n_prompt = 1;
    int32_t *prompt = malloc(n_prompt * sizeof *prompt), *out = malloc((n_gen ? n_gen : 1) * sizeof *out);
    float *logits = malloc(nv * sizeof *logits);
    if (!prompt || !out || !logits) {
        free(prompt);
        free(out);
        free(logits);
        return fail(adg_error_new(ADG_E_NOMEM, "out of memory"));
    }
    random_prompt(prompt, n_prompt, nv, seed);
    adg_error *e2 = kern_engine_greedy(e, prompt, n_prompt, n_gen, out, logits);
    int rc = ADG_EXIT_OK;
    if (e2) {
        rc = fail_run(e, e2, fault, json, NULL);
    } else {
        double sum = 0, sum2 = 0, mx = logits[0];
        bool finite = true;
        for (uint32_t i = 0; i < nv; i++) {
            sum += logits[i];
            sum2 += (double)logits[i] * logits[i];
            if (logits[i] > mx)
                mx = logits[i];
            finite &= logits[i] == logits[i] && logits[i] - logits[i] == 0;
        }
        if (json) {
            json_t *toks = json_array(), *lg = json_array();
            for (uint32_t i = 0; i < n_gen; i++)
                json_array_append_new(toks, json_integer(out[i]));
            for (uint32_t i = 0; i < nv && i < 16; i++)
                json_array_append_new(lg, json_real(logits[i]));
            json_t *root = json_pack("{s:s,s:s,s:s,s:i,s:i,s:I,s:o,s:{s:f,s:f,s:f,s:b,s:o}}", "schema", RUN_SCHEMA,
                                     "mode", "greedy", "model", path, "n_prompt", (int)n_prompt, "n_gen", (int)n_gen,
                                     "seed", (json_int_t)seed, "tokens", toks, "logits", "mean", sum / nv, "rms",
                                     sqrt(sum2 / nv), "max", mx, "finite", finite, "first", lg);
            adg_error *pe = adg_json_print(stdout, root);
            json_decref(root);
            if (pe)
                rc = fail(pe);
        } else {
            printf("greedy: %u prompt tokens (seed %llu), %u generated with %s:\n", n_prompt, (unsigned long long)seed,
                   n_gen, kern_impl_name(kern_cpu_impl(kern_engine_cpu(e))));
            for (uint32_t i = 0; i < n_gen; i++)
                printf("%s%d", i ? " " : "", out[i]);
            printf("\nlast logits: mean %.6f, rms %.6f, max %.6f%s\n", sum / nv, sqrt(sum2 / nv), mx,
                   finite ? "" : " (NOT FINITE)");
        }
    }
    free(prompt);
    free(out);
    free(logits);
    return rc;
}

static int cmp_float(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* --greedy --compare IMPL: e against a reference engine on the same model (docs/run.md). */
static int run_compare(kern_engine *e, const kern_engine_opts *eo, kern_impl ref_impl, uint32_t n_prompt,
                       uint32_t n_gen, uint64_t seed, bool json, const char *json_out)
{
    kern_engine_opts ro = *eo;
    ro.impl = ref_impl;
    ro.amx_row_scales = false;   /* the reference keeps the model's own format */
    ro.ngl = 0;
    ro.gpu_fault = NULL;
    ro.gpu_validate = ro.gpu_sync_each = false;
    kern_engine *r;
    adg_error *err = kern_engine_open(&ro, &r);
    if (err)
        return fail(adg_error_prefix(err, "--compare %s", kern_impl_name(ref_impl)));
    const uint32_t nv = kern_engine_model(e)->hp.n_vocab;
    if (n_prompt == 0)
        n_prompt = 1;
    int32_t *prompt = malloc(n_prompt * sizeof *prompt);
    if (!prompt) {
        kern_engine_close(r);
        return fail(adg_error_new(ADG_E_NOMEM, "out of memory"));
    }
    random_prompt(prompt, n_prompt, nv, seed);
    kern_compare_result c;
    err = kern_engine_compare(r, e, prompt, n_prompt, n_gen, &c);
    free(prompt);
    char ename[96], rname[96];
    snprintf(ename, sizeof ename, "%s%s%s", kern_impl_name(kern_cpu_impl(kern_engine_cpu(e))),
             eo->amx_row_scales ? " (row scales)" : "", eo->ngl ? " + GPU layers" : "");
    snprintf(rname, sizeof rname, "%s", kern_impl_name(kern_cpu_impl(kern_engine_cpu(r))));
    kern_engine_close(r);
    if (err)
        return fail(err);
    float *sorted = malloc(c.steps * sizeof *sorted);
    float median = 0;
    if (sorted) {
        memcpy(sorted, c.step_diff, c.steps * sizeof *sorted);
        qsort(sorted, c.steps, sizeof *sorted, cmp_float);
        median = sorted[c.steps / 2];
        free(sorted);
    }
    const bool agrees = c.decisive_same == c.decisive;
    int rc = agrees ? ADG_EXIT_OK : ADG_EXIT_CHECK_FAILED;
    json_t *steps = json_array();
    for (uint32_t i = 0; i < c.steps; i++)
        json_array_append_new(steps, json_pack("{s:i,s:f,s:i,s:i}", "step", (int)i, "max_abs_diff",
                                               (double)c.step_diff[i], "ref_token", (int)c.ref_tokens[i], "token",
                                               (int)c.tokens[i]));
    json_t *root = json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:I,s:f,s:f,s:i,s:i,s:i,s:i,s:b,s:o}", "schema", RUN_SCHEMA,
                             "mode", "compare", "engine", ename, "reference", rname, "n_prompt", (int)n_prompt,
                             "n_gen", (int)n_gen, "seed", (json_int_t)seed, "max_abs_diff", (double)c.max_diff,
                             "median_abs_diff", (double)median, "steps", (int)c.steps, "same_token", (int)c.same,
                             "decisive", (int)c.decisive, "decisive_same", (int)c.decisive_same, "agrees", agrees,
                             "per_step", steps);
    if (c.first_split >= 0)
        json_object_set_new(root, "first_split", json_integer(c.first_split));
    if (json) {
        if ((err = adg_json_print(stdout, root)))
            rc = fail(err);
    } else {
        printf("compare: %s vs %s, teacher-forced: %u prompt tokens (seed %llu), then %u steps fed the reference's "
               "greedy tokens\n",
               ename, rname, n_prompt, (unsigned long long)seed, n_gen);
        printf("  max |logit diff| %.5f, median over steps %.5f\n", (double)c.max_diff, (double)median);
        printf("  same arg-max on %u of %u steps; decisive steps %u, same token on %u\n", c.same, c.steps,
               c.decisive, c.decisive_same);
        if (agrees)
            printf("  agrees: every decisive step picks the reference's token\n");
        else
            printf("  DIFFERS: decisive step %d picks %d, the reference %d (|diff| %.5f)\n", c.first_split,
                   c.tokens[c.first_split], c.ref_tokens[c.first_split], (double)c.step_diff[c.first_split]);
    }
    if (json_out && (err = adg_json_write_atomic(json_out, root)))
        rc = fail(err);
    json_decref(root);
    kern_compare_result_free(&c);
    return rc;
}

int kern_run_cmd_main(int argc, char **argv)
{
    kern_engine_opts eo = {.impl = KERN_IMPL_AUTO};
    kern_bench_opts bo = {.n_prompt = 512, .n_gen = 128, .reps = 3, .seed = 1};
    const char *numa = NULL, *json_out = NULL;
    bool json = false, ops = false, greedy = false, compare = false;
    kern_impl compare_impl = KERN_IMPL_REF;
    uint32_t threads = 0, ctx = 0;
    enum { O_NGL = 256, O_IMPL, O_NUMA, O_PIN, O_SEED, O_OPS, O_GREEDY, O_JSON, O_CTX, O_FAULT, O_VALIDATE, O_SYNC, O_COMPARE,
           O_NO_GRAPHS, O_SCALES };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},     {"n-prompt", required_argument, 0, 'p'},
        {"n-gen", required_argument, 0, 'n'},     {"repetitions", required_argument, 0, 'r'},
        {"threads", required_argument, 0, 't'},   {"ngl", required_argument, 0, O_NGL},
        {"n-gpu-layers", required_argument, 0, O_NGL}, {"cpu-kernels", required_argument, 0, O_IMPL},
        {"numa", required_argument, 0, O_NUMA},   {"pin", no_argument, 0, O_PIN},
        {"seed", required_argument, 0, O_SEED},   {"ops", no_argument, 0, O_OPS},
        {"greedy", no_argument, 0, O_GREEDY},     {"json", no_argument, 0, O_JSON},
        {"ctx", required_argument, 0, O_CTX},     {"verbose", no_argument, 0, 'v'},
        {"output", required_argument, 0, 'o'},    {"inject-fault", required_argument, 0, O_FAULT},
        {"gpu-validate", no_argument, 0, O_VALIDATE}, {"sync-each", no_argument, 0, O_SYNC},
        {"compare", required_argument, 0, O_COMPARE}, {"no-gpu-graphs", no_argument, 0, O_NO_GRAPHS},
        {"amx-scales", required_argument, 0, O_SCALES},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0},
    };
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "m:p:n:r:t:o:vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': eo.model_path = optarg; break;
        case 'o': json_out = optarg; break;
        case 'p': if (!parse_count("-p", optarg, 1u << 20, &bo.n_prompt)) return adg_cmd_usage_error("run"); break;
        case 'n': if (!parse_count("-n", optarg, 1u << 20, &bo.n_gen)) return adg_cmd_usage_error("run"); break;
        case 'r':
            if (!parse_count("-r", optarg, 1000, &bo.reps) || bo.reps == 0) {
                if (bo.reps == 0)
                    fprintf(stderr, "amxdiag run: error: -r must be at least 1\n");
                return adg_cmd_usage_error("run");
            }
            break;
        case 't':
            if (!parse_count("--threads", optarg, 1024, &threads) || threads == 0) {
                if (threads == 0)
                    fprintf(stderr, "amxdiag run: error: --threads must be at least 1\n");
                return adg_cmd_usage_error("run");
            }
            break;
        case O_NGL: if (!parse_count("--ngl", optarg, 100000, &eo.ngl)) return adg_cmd_usage_error("run"); break;
        case O_CTX: if (!parse_count("--ctx", optarg, 1u << 20, &ctx)) return adg_cmd_usage_error("run"); break;
        case O_IMPL:
            if (!kern_impl_parse(optarg, &eo.impl)) {
                fprintf(stderr, "amxdiag run: error: --cpu-kernels '%s' is not one of auto, amx, avx512, ref, amx-emu\n",
                        optarg);
                return adg_cmd_usage_error("run");
            }
            break;
        case O_SCALES:
            if (!kern_amx_scales_parse(optarg, &eo.amx_row_scales)) {
                fprintf(stderr, "amxdiag run: error: --amx-scales '%s' is not block or row\n", optarg);
                return adg_cmd_usage_error("run");
            }
            break;
        case O_NUMA: numa = optarg; break;
        case O_PIN: eo.pin = true; break;
        case O_SEED:
            if (!adg_parse_u64(optarg, &bo.seed)) {
                fprintf(stderr, "amxdiag run: error: --seed '%s' is not a non-negative integer\n", optarg);
                return adg_cmd_usage_error("run");
            }
            break;
        case O_OPS: ops = true; break;
        case O_GREEDY: greedy = true; break;
        case O_COMPARE:
            if (!kern_impl_parse(optarg, &compare_impl)) {
                fprintf(stderr, "amxdiag run: error: --compare '%s' is not one of auto, amx, avx512, ref, amx-emu\n",
                        optarg);
                return adg_cmd_usage_error("run");
            }
            compare = true;
            break;
        case O_JSON: json = true; break;
        case O_FAULT: {
            kern_cuda_fault f;
            if (!kern_cuda_fault_parse(optarg, &f)) {
                fprintf(stderr, "amxdiag run: error: --inject-fault '%s' is not one of %s\n", optarg,
                        kern_cuda_fault_names());
                return adg_cmd_usage_error("run");
            }
            eo.gpu_fault = optarg;
            break;
        }
        case O_VALIDATE: eo.gpu_validate = true; break;
        case O_SYNC: eo.gpu_sync_each = true; break;
        case O_NO_GRAPHS: eo.gpu_no_graphs = true; break;
        case 'v': adg_log_set_level(ADG_LOG_INFO); break;
        case 'h': usage(stdout); return ADG_EXIT_OK;
        default: return adg_cmd_usage_error("run");
        }
    }
    if (optind < argc) {
        fprintf(stderr, "amxdiag run: error: unexpected argument '%s'\n", argv[optind]);
        return adg_cmd_usage_error("run");
    }
    if ((eo.gpu_fault || eo.gpu_validate || eo.gpu_sync_each) && eo.ngl == 0) {
        fprintf(stderr, "amxdiag run: error: %s acts on the GPU layers: add --ngl N (N >= 1)\n",
                eo.gpu_fault ? "--inject-fault" : eo.gpu_validate ? "--gpu-validate" : "--sync-each");
        return adg_cmd_usage_error("run");
    }
    if (compare && !greedy) {
        fprintf(stderr, "amxdiag run: error: --compare compares greedy decodes: add --greedy\n");
        return adg_cmd_usage_error("run");
    }
    if (compare && eo.gpu_fault) {
        fprintf(stderr, "amxdiag run: error: --compare and --inject-fault do not go together\n");
        return adg_cmd_usage_error("run");
    }
    eo.threads = (int)threads;
    uint32_t need = (bo.n_prompt > bo.n_gen ? bo.n_prompt : bo.n_gen);
    if (greedy)
        need = bo.n_prompt + bo.n_gen + 1;
    eo.n_ctx = ctx ? ctx : (need < 512 ? 512 : need);
    adg_error *e = kern_engine_set_numa(numa);
    if (e)
        return fail(e);
    char *default_path = NULL;
    if (!eo.model_path) {
        bool created;
        if ((e = kern_engine_default_model(&default_path, &created)))
            return fail(e);
        if (created && !json)
            fprintf(stderr, "amxdiag run: created the default model %s\n", default_path);
        eo.model_path = default_path;
    }
    kern_engine *eng;
    if ((e = kern_engine_open(&eo, &eng))) {
        free(default_path);
        return fail(e);
    }
    int rc;
    if (compare) {
        rc = run_compare(eng, &eo, compare_impl, bo.n_prompt, bo.n_gen, bo.seed, json, json_out);
    } else if (greedy) {
        rc = run_greedy(eng, bo.n_prompt, bo.n_gen, bo.seed, json, eo.model_path, eo.gpu_fault);
    } else {
        kern_bench_result r;
        e = kern_engine_bench(eng, &bo, &r);
        if (e) {
            rc = fail_run(eng, e, eo.gpu_fault, json, json_out);
        } else if (eo.gpu_fault) {
            /* The fault was planted but nothing noticed it: that is a finding, not success. */
            fprintf(stderr, "amxdiag run: error: the injected fault %s was not reported by any GPU op\n", eo.gpu_fault);
            rc = ADG_EXIT_USAGE;
            kern_bench_result_free(&r);
        } else {
            rc = ADG_EXIT_OK;
            json_t *root = result_json(eng, &r, eo.model_path, bo.seed);
            if (json) {
                if ((e = adg_json_print(stdout, root)))
                    rc = fail(e);
            } else {
                print_table(eng, &r, ops);
            }
            if (json_out && (e = adg_json_write_atomic(json_out, root)))
                rc = fail(e);
            json_decref(root);
            kern_bench_result_free(&r);
        }
    }
    kern_engine_close(eng);
    free(default_path);
    return rc;
}
