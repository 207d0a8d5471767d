/* Shared between the engine's files; not part of the public surface. */
#ifndef ENGINE_INTERNAL_H
#define ENGINE_INTERNAL_H

#include "kernels/kern_engine.h"
#include "kernels/amx/amx_rowq.h"

enum {
    OPK_GET_ROWS, OPK_NORM, OPK_QKV, OPK_QK_NORM, OPK_ROPE, OPK_KV_STORE, OPK_ATTN, OPK_ATTN_OUT,
    OPK_ROUTER, OPK_TOPK, OPK_MOE_GATE_UP, OPK_SILU, OPK_MOE_DOWN, OPK_MOE_SUM, OPK_FFN, OPK_LM_HEAD, OPK_ADD, OPK_SOFTMAX, OPK_GPU_LAYER,
    OPK_COUNT
};

const char *kern_engine_op_name(int opk);

typedef struct engine_opstat {
    uint64_t calls, ns, bytes, flops;
    kern_impl impl;
    const char *backend;        /* "CPU" or "CUDA" (static) */
    char variant[48];
} engine_opstat;

typedef struct engine_layer {
    kern_weight *wq, *wk, *wv, *wo, *router, *gate_exps, *up_exps, *down_exps, *ffn_gate, *ffn_up, *ffn_down;
    /* --amx-scales row: row-scaled copies of the Q4_0/Q8_0 ones above for the prompt's tile
     * products (NULL otherwise, and for other types) */
    kern_rowq_weight *rq_wq, *rq_wk, *rq_wv, *rq_wo, *rq_gate_exps, *rq_up_exps, *rq_down_exps, *rq_ffn_gate,
        *rq_ffn_up, *rq_ffn_down;
} engine_layer;

/* Activations for one ubatch. */
typedef struct engine_buf {
    float *x, *h, *q, *k, *v, *att, *o, *router, *rw, *gate, *up, *down;
    int32_t *ids, *pos;
} engine_buf;

typedef struct engine_gpu engine_gpu;
typedef struct engine_fused engine_fused;

struct kern_engine {
    kern_engine_opts opts;
    kern_model *model;
    kern_cpu *cpu;
    engine_layer *layers;
    kern_weight *output;
    uint64_t weight_bytes;
    uint32_t n_ctx, n_past;
    uint16_t *kcache, *vcache;  /* [n_layer][n_ctx][n_head_kv*head_dim] f16 */
    engine_buf buf;
    float *logits;
    engine_opstat *stats;       /* [(n_layer + 1) * OPK_COUNT], row 0 = outside the layers */
    engine_gpu *gpu;            /* NULL without --ngl */
    uint32_t gpu_first;         /* first layer on the GPU (n_layer when none) */
    adg_bus *bus;
    int m_tps, m_lat;           /* metric ids on the bus */
    bool fuse;                  /* fused generation schedule (AMXDIAG_ENGINE_FUSE, default on) */
    bool fuse_prefetch;         /* its waiting workers prefetch their next weights (AMXDIAG_ENGINE_PREFETCH=1) */
    bool fuse_down_rows;        /* its down phase as row chunks of all experts (AMXDIAG_ENGINE_DOWN=rows), not
                                 * (expert, row chunk) items */
    engine_fused *fz;           /* its state, made on first use */
    uint64_t rowq_bytes;        /* of the row-scaled copies (--amx-scales row), in weight_bytes too */
};

/* Clears the op counters (start of a phase). */
void engine_stats_reset(kern_engine *e);
/* Adds one op's record to the counters of (layer, op kind); layer -1 = outside the layers. */
void engine_account(kern_engine *e, int layer, int opk, const kern_op_info *info, const char *backend);

/* Top-k of one row of E probabilities: ids largest first (lowest index on ties), weights
 * renormalised to sum 1 when norm is set. */
void engine_topk(const float *probs, int64_t E, int64_t K, bool norm, int32_t *ids, float *w);

/* The fused schedule of one token through CPU layer il at position pos (engine_fused.c);
 * *ran false: the layer is not eligible (or the schedule is off), run layer_forward. */
adg_error *engine_fused_layer(kern_engine *e, uint32_t il, int32_t pos, bool *ran);
void engine_fused_free(engine_fused *f);

/* GPU layers (engine_gpu.c): the layers from `first` on and the output. */
adg_error *engine_gpu_open(kern_engine *e, uint32_t first, engine_gpu **out);
void engine_gpu_close(engine_gpu *g);
uint64_t engine_gpu_weight_bytes(const engine_gpu *g);
const char *engine_gpu_name(const engine_gpu *g);
/* The embedding gather on the GPU when it runs there (*done true; x is then on the device,
 * or copied to e->buf.x when CPU layers come first); *done false: gather on the CPU.
 * Called first in every pass; logits: the pass ends with engine_gpu_output (else
 * engine_gpu_finish) — a generated token replays the CUDA graph of its kind. */
adg_error *engine_gpu_embed(kern_engine *e, const int32_t *tokens, uint32_t T, bool logits, bool *done);
/* One layer over the residual stream on the device (uploaded from e->buf.x by the first
 * GPU layer when the CPU produced it); T tokens at positions pos. */
adg_error *engine_gpu_layer(kern_engine *e, uint32_t il, uint32_t T, const int32_t *pos);
/* The last token's logits from the device residual stream (waits for the GPU). */
adg_error *engine_gpu_output(kern_engine *e, uint32_t T, float *logits);
/* Waits for the queued GPU work of a ubatch without logits. */
adg_error *engine_gpu_finish(kern_engine *e);
size_t engine_gpu_launches(const engine_gpu *g, kern_cuda_launch *out, size_t max);
bool engine_gpu_error_op(const engine_gpu *g, const char **op, int *layer);

#endif
