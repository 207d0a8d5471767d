/* The built-in inference path: a Qwen3-MoE / llama forward pass over a GGUF model on
 * the CPU kernels (kern_cpu.h), with llama-bench-style measurement and instrumentation
 * on the metrics bus.
 *
 * Forward pass per ubatch of T tokens (<= 512):
 *   x = GET_ROWS(token_embd)
 *   per layer: h = RMSNorm(x)*attn_norm; q,k,v = h*Wq,Wk,Wv; (qwen3moe) q,k = RMSNorm per
 *   head * q_norm,k_norm; RoPE (neox for qwen3moe, normal for llama); k,v -> KV cache (f16);
 *   a = causal GQA attention; x += a*Wo; h = RMSNorm(x)*ffn_norm;
 *   MoE: p = softmax(h*Wrouter), top-k, weights renormalised to sum 1,
 *        x += sum_j w_j * down_e(silu(gate_e(h)) * up_e(h));   dense: x += down(silu(gate h) * up h)
 *   logits = (RMSNorm(x_last)*output_norm) * Woutput
 *
 * Determinism: the kernels split rows statically, so the same model, tokens, --cpu-kernels
 * and --threads give bit-identical logits.  Across implementations, logits agree within
 * the tolerance documented in docs/run.md.
 *
 * Instrumentation (when a bus is attached, see kern_engine_attach_bus): events
 *   "phase"  name "prompt"/"generation", detail {state: begin|end, rep, tokens, seconds, t_s}
 *   "token"  name "generation", detail {rep, index, seconds}   (one per generated token)
 *   "op"     name = op kind, detail {layer, backend, impl, variant, calls, seconds, bytes, flops}
 *            at the end of every phase, aggregated per op kind and layer (no per-call event)
 * and samples of "engine.tokens_per_s" (t/s, per phase) and "engine.token_latency" (s). */
#ifndef KERN_ENGINE_H
#define KERN_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/adg_error.h"
#include "common/adg_metrics.h"
#include "kernels/kern_cpu.h"
#include "kernels/kern_model.h"
#include "kernels/cuda/kern_cuda.h"

typedef struct kern_engine_opts {
    const char *model_path;
    kern_impl impl;        /* --cpu-kernels */
    int threads;           /* 0: every CPU the process may use */
    bool pin;              /* pin kernel workers to CPUs */
    uint32_t ngl;          /* layers offloaded to the GPU (the last ones, plus the output), as llama.cpp's -ngl;
                            * qwen3moe with q4_0/q8_0 weights; weights are uploaded once at open */
    uint32_t n_ctx;        /* KV cache positions; 0: 4096 or the model's training context if smaller */
    bool amx_row_scales;   /* --amx-scales row: the prompt's Q4_0/Q8_0 products that the crossover sends to
                            * AMX tiles run under the row-scaled contract (kernels/amx/amx_rowq.h) on a
                            * second copy of those weights, made at open; generation (M = 1) keeps the
                            * block-scaled GEMV.  Needs an amx or amx-emu context (docs/run.md) */
    /* GPU diagnostics (with ngl > 0): */
    const char *gpu_fault; /* a kern_cuda fault name ("get_rows-oob", ...) planted in the first forward pass */
    bool gpu_validate;     /* --gpu-validate: bad indices become errors naming them instead of error 700 */
    bool gpu_sync_each;    /* --sync-each: wait after every launch, so a fault is reported by its own kernel */
    bool gpu_no_graphs;    /* --no-gpu-graphs: launch a generated token's kernels one by one instead of
                            * replaying them as one CUDA graph ($AMXDIAG_GPU_GRAPHS=0 too) */
} kern_engine_opts;

typedef struct kern_engine kern_engine;

/* The built-in default model: the "tiny" qwen3moe preset in q4_0 (seed 1), created once
 * under $XDG_CACHE_HOME/amxdiag/models (or ~/.cache/amxdiag/models) and reused.
 * *path is heap (caller frees); *created says whether this call wrote it. */
adg_error *kern_engine_default_model(char **path, bool *created);

/* Memory policy for what the process allocates next (weights, KV cache): "local"
 * (first touch, the default), "interleave" (all nodes), or "node=N" (bind to node N).
 * Call before kern_engine_open.  Needs libnuma's view of the machine. */
adg_error *kern_engine_set_numa(const char *policy);

adg_error *kern_engine_open(const kern_engine_opts *o, kern_engine **out);
void kern_engine_close(kern_engine *e);

const kern_model *kern_engine_model(const kern_engine *e);
const kern_cpu *kern_engine_cpu(const kern_engine *e);
uint32_t kern_engine_n_ctx(const kern_engine *e);
/* "row" under --amx-scales row, else "block" (the GGUF formats' own per-32 scales) */
const char *kern_engine_amx_scales(const kern_engine *e);
/* "CPU" or "CPU+CUDA" */
const char *kern_engine_backend(const kern_engine *e);
/* Resident bytes of the weights: repacked on the CPU plus uploaded to the GPU. */
uint64_t kern_engine_weight_bytes(const kern_engine *e);
/* Layers on the GPU (0 without --ngl) and the GPU's name ("" without). */
uint32_t kern_engine_gpu_layers(const kern_engine *e);
const char *kern_engine_gpu_name(const kern_engine *e);
/* After a GPU error: the GPU's last launches, oldest first (see kern_cuda_launch_ring),
 * and the engine op whose call returned the error (layer -1: outside the layers, e.g.
 * the embedding gather or the output).  An asynchronous fault is reported by a later op
 * than the kernel that caused it; the ring shows what ran before. */
size_t kern_engine_gpu_launches(const kern_engine *e, kern_cuda_launch *out, size_t max);
bool kern_engine_gpu_error_op(const kern_engine *e, const char **op, int *layer);

/* Publishes phase markers, per-token samples and per-op records on bus (NULL detaches).
 * The bus must outlive the engine or be detached first. */
void kern_engine_attach_bus(kern_engine *e, adg_bus *bus);

/* Empties the KV cache. */
void kern_engine_reset(kern_engine *e);
/* Positions filled so far. */
uint32_t kern_engine_n_past(const kern_engine *e);

/* Appends n tokens at the current position (split into ubatches of <= 512) and, when
 * logits is not NULL, writes the last token's n_vocab logits. */
adg_error *kern_engine_eval(kern_engine *e, const int32_t *tokens, uint32_t n, float *logits);

/* Greedy decoding from an empty cache: evaluates the prompt, then n_gen times picks the
 * arg-max token (lowest id on ties) and feeds it back.  out_tokens gets n_gen ids;
 * last_logits (may be NULL) the logits after the final step. */
adg_error *kern_engine_greedy(kern_engine *e, const int32_t *prompt, uint32_t n_prompt, uint32_t n_gen,
                              int32_t *out_tokens, float *last_logits);

/* Teacher forcing (engine_compare.c): ref and e are both fed the prompt, then the
 * reference's greedy token at each of n_gen steps; after every evaluation (the prompt's,
 * then each step's) the two logit vectors are compared.  A step is "decisive" where the
 * reference's two best logits are further apart than twice the step's difference: there e
 * must choose the same token (a near-tie may go either way).  Both caches are reset first. */
typedef struct kern_compare_result {
    uint32_t steps;            /* evaluations compared: n_gen + 1 */
    float max_diff;            /* max |logit - logit_ref| over every step */
    float *step_diff;          /* per step */
    int32_t *ref_tokens;       /* the reference's arg-max per step (what both were fed next) */
    int32_t *tokens;           /* e's arg-max per step */
    uint32_t same;             /* steps where both arg-maxes agree */
    uint32_t decisive, decisive_same;
    int32_t first_split;       /* first decisive step where they differ, -1 if none */
} kern_compare_result;
adg_error *kern_engine_compare(kern_engine *ref, kern_engine *e, const int32_t *prompt, uint32_t n_prompt,
                               uint32_t n_gen, kern_compare_result *out);
void kern_compare_result_free(kern_compare_result *r);

/* llama-bench's tests: pp<n_prompt> evaluates n_prompt tokens from an empty cache; tg<n_gen>
 * generates n_gen tokens one at a time from an empty cache.  Each is repeated `reps`
 * times after one warm-up; the tokens are random (seeded). */
typedef struct kern_bench_opts {
    uint32_t n_prompt, n_gen, reps;
    uint64_t seed;
} kern_bench_opts;

typedef struct kern_bench_op {
    char op[24];           /* "matmul_qkv", "moe_gate_up", "attention", ... */
    char variant[48];      /* the kernel variant that ran: "avx512-vnni-q4_0", "engine-scalar", ... */
    kern_impl impl;
    const char *backend;   /* "CPU" or "CUDA" */
    uint64_t calls, ns, bytes, flops;   /* totals over all layers and reps */
} kern_bench_op;

typedef struct kern_bench_test {
    char name[24];         /* "pp512", "tg128" */
    uint32_t n_prompt, n_gen;
    uint32_t reps;
    double *seconds;       /* reps entries */
    double avg_ts, sd_ts;  /* tokens per second: mean and sample standard deviation */
    kern_bench_op *ops;    /* per op kind and variant, largest time first */
    int n_ops;
} kern_bench_test;

typedef struct kern_bench_result {
    kern_bench_test tests[2];
    int n_tests;
} kern_bench_result;

adg_error *kern_engine_bench(kern_engine *e, const kern_bench_opts *o, kern_bench_result *r);
void kern_bench_result_free(kern_bench_result *r);

#endif
