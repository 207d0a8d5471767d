/* Transformer models over GGUF: architectures qwen3moe and llama with llama.cpp's tensor
 * names and metadata keys, synthetic model presets, and the per-role / AMX-eligibility
 * analysis behind `amxdiag model inspect`.
 *
 * ggml's dimension order: ne[0] is the input (K) dimension, ne[1] the output (N) one, so
 * attn_q is {n_embd, n_head*head_dim} and ffn_gate_exps {n_embd, n_ff_exp, n_expert}. */
#ifndef KERN_MODEL_H
#define KERN_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "common/adg_error.h"
#include "kernels/kern_gguf.h"
#include "kernels/kern_quant.h"

typedef enum kern_arch { KERN_ARCH_QWEN3MOE, KERN_ARCH_LLAMA } kern_arch;
const char *kern_arch_name(kern_arch a);

typedef struct kern_model_hparams {
    kern_arch arch;
    uint32_t n_layer, n_embd, n_head, n_head_kv, head_dim; /* head_dim = key_length = value_length */
    uint32_t n_ff;               /* dense FFN width (llama; qwen3moe records it but has no dense FFN) */
    uint32_t n_expert, n_expert_used, n_ff_exp; /* 0 experts: dense FFN */
    uint32_t n_vocab, n_ctx_train;
    float rope_base, rms_eps;
} kern_model_hparams;

/* ---- loaded model ---- */

typedef struct kern_model_layer {
    const kern_gguf_tensor *attn_norm, *wq, *wk, *wv, *wo, *q_norm, *k_norm, *ffn_norm;
    const kern_gguf_tensor *gate_inp, *gate_exps, *up_exps, *down_exps; /* MoE */
    const kern_gguf_tensor *ffn_gate, *ffn_up, *ffn_down;               /* dense */
} kern_model_layer;

typedef struct kern_model {
    kern_gguf *gguf;
    kern_model_hparams hp;
    char *name;                  /* general.name, or the file's base name */
    const kern_gguf_tensor *tok_embd, *output_norm, *output; /* output == tok_embd when tied */
    kern_model_layer *layers;
    uint64_t n_params;
    uint32_t main_type;          /* type of most weight bytes (for "Q4_0" in tables) */
} kern_model;

/* Opens and checks a model: architecture, hyper-parameters, every tensor's presence,
 * shape and type (types the engine cannot compute are named). */
adg_error *kern_model_load(const char *path, kern_model **out);
/* Same over an opened GGUF (ownership passes to the model, also on error). */
adg_error *kern_model_from_gguf(kern_gguf *g, kern_model **out);
void kern_model_free(kern_model *m);
/* Reads the hyper-parameters only (inspect works on files the engine cannot run). */
adg_error *kern_model_read_hparams(const kern_gguf *g, kern_model_hparams *hp);

/* ---- presets and synthetic models ---- */

typedef struct kern_model_preset {
    const char *name;
    const char *summary;
    kern_model_hparams hp;
} kern_model_preset;

const kern_model_preset *kern_model_presets(int *n);
const kern_model_preset *kern_model_preset_find(const char *name);

typedef struct kern_model_create_opts {
    const char *preset;
    kern_type quant;      /* Q4_0, Q8_0 or BF16 for the 2-D weights; norms and router stay F32 */
    uint32_t layers;      /* 0: the preset's */
    uint64_t seed;
    bool sparse;          /* tensor layout only, data left as holes */
    int threads;          /* 0: online CPUs */
    const volatile int *cancel; /* optional: set non-zero (e.g. from a SIGINT handler) to stop;
                                 * the temporary file is removed and ADG_E_INTERRUPTED returned */
} kern_model_create_opts;

typedef struct kern_model_create_result {
    uint64_t file_bytes, n_params, n_tensors;
    double seconds;
} kern_model_create_result;

/* Deterministic for a given preset, quant, layers and seed, whatever the thread count. */
adg_error *kern_model_create(const kern_model_create_opts *o, const char *path, kern_model_create_result *res);

/* ---- roles, ops and AMX eligibility ---- */

typedef enum kern_role {
    KERN_ROLE_ATTN,     /* attn_q/k/v/output */
    KERN_ROLE_EXPERTS,  /* ffn_*_exps */
    KERN_ROLE_FFN,      /* dense ffn_gate/up/down */
    KERN_ROLE_ROUTER,   /* ffn_gate_inp */
    KERN_ROLE_EMBED,    /* token_embd */
    KERN_ROLE_NORM,     /* *_norm */
    KERN_ROLE_OUTPUT,   /* output (LM head) */
    KERN_ROLE_OTHER,
    KERN_ROLE_COUNT
} kern_role;

typedef enum kern_consumer { KERN_OP_MUL_MAT, KERN_OP_MUL_MAT_ID, KERN_OP_GET_ROWS, KERN_OP_MUL, KERN_OP_NONE } kern_consumer;

const char *kern_role_name(kern_role r);    /* "attention projections", ... */
const char *kern_role_key(kern_role r);     /* "attention", "experts", ... (JSON) */
const char *kern_consumer_name(kern_consumer c); /* "MUL_MAT", ... */

typedef struct kern_tensor_class {
    kern_role role;
    kern_consumer op;
    int layer;          /* -1 for the input and output layers */
} kern_tensor_class;

void kern_model_classify(const char *name, kern_tensor_class *c);

/* Why a tensor is or is not AMX-eligible under one rule set. */
typedef struct kern_amx_verdict {
    bool eligible;
    const char *reason;   /* static text: "MUL_MAT_ID (llama.cpp's AMX backend takes MUL_MAT only)", ... */
} kern_amx_verdict;

/* llama.cpp's rules (ggml-cpu/amx): MUL_MAT only; Q4_0/Q4_1/Q8_0/Q4_K/Q5_K/Q6_K/IQ4_XS;
 * N % 32 == 0; K a multiple of the block; weights of a repeating layer kept on the CPU
 * (llama.cpp keeps the input and output layers out of the AMX buffer). */
kern_amx_verdict kern_amx_llamacpp(const kern_gguf_tensor *t, const kern_tensor_class *c, bool on_gpu);
/* amxdiag's own kernels: MUL_MAT and MUL_MAT_ID; Q4_0/Q8_0/BF16; N % 16 == 0; K % 32 == 0;
 * on the CPU (the output layer included). */
kern_amx_verdict kern_amx_amxdiag(const kern_gguf_tensor *t, const kern_tensor_class *c, bool on_gpu);

/* Placement like llama.cpp's -ngl: the last ngl repeating layers and, when ngl > 0, the
 * output layer on the GPU; the input layer (token_embd) always on the CPU. */
bool kern_model_on_gpu(const kern_tensor_class *c, uint32_t n_layer, uint32_t ngl);

typedef struct kern_role_stats {
    uint64_t tensors, bytes, params;
    uint64_t cpu_bytes, gpu_bytes;
    uint64_t amx_llamacpp, amx_amxdiag;   /* eligible bytes on the CPU */
    uint32_t type_mask_lo;                /* bit t set: a tensor of ggml type t (t < 32) */
    bool type_hi;                         /* a type id >= 32 */
    kern_consumer op;
} kern_role_stats;

typedef struct kern_model_analysis {
    kern_model_hparams hp;
    bool hp_ok;                           /* false: hyper-parameters unreadable (hp_error says why) */
    char *hp_error;
    char *arch_str, *name;
    uint32_t ngl;
    kern_role_stats role[KERN_ROLE_COUNT];
    uint64_t total_bytes, total_params, cpu_bytes, gpu_bytes;
    uint64_t amx_llamacpp, amx_amxdiag;
    uint64_t unsupported_tensors;         /* tensors whose type amxdiag cannot compute */
} kern_model_analysis;

adg_error *kern_model_analyse(const kern_gguf *g, uint32_t ngl, kern_model_analysis *a);
void kern_model_analysis_free(kern_model_analysis *a);

/* `model inspect` views: human text (with the conclusion; `tensors` lists every tensor)
 * and JSON (schema amxdiag.model.inspect/1, docs/model.md). */
void kern_model_inspect_print(FILE *out, const kern_gguf *g, const kern_model_analysis *a, bool tensors);
json_t *kern_model_inspect_json(const kern_gguf *g, const kern_model_analysis *a, bool tensors);

#endif
