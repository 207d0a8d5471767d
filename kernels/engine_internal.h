/* Shared between the engine's files; not part of the public surface. */
#ifndef ENGINE_INTERNAL_H
#define ENGINE_INTERNAL_H

#include "kernels/kern_engine.h"

enum {
    OPK_GET_ROWS, OPK_NORM, OPK_QKV, OPK_QK_NORM, OPK_ROPE, OPK_KV_STORE, OPK_ATTN, OPK_ATTN_OUT,
    OPK_ROUTER, OPK_TOPK, OPK_MOE_GATE_UP, OPK_SILU, OPK_MOE_DOWN, OPK_MOE_SUM, OPK_FFN, OPK_LM_HEAD, OPK_ADD, OPK_SOFTMAX,
    OPK_COUNT
};

const char *kern_engine_op_name(int opk);

typedef struct engine_opstat {
    uint64_t calls, ns, bytes, flops;
    kern_impl impl;
    char variant[48];
} engine_opstat;

typedef struct engine_layer {
    kern_weight *wq, *wk, *wv, *wo, *router, *gate_exps, *up_exps, *down_exps, *ffn_gate, *ffn_up, *ffn_down;
} engine_layer;

/* Activations for one ubatch. */
typedef struct engine_buf {
    float *x, *h, *q, *k, *v, *att, *o, *router, *rw, *gate, *up, *down;
    int32_t *ids, *pos;
} engine_buf;

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
    adg_bus *bus;
    int m_tps, m_lat;           /* metric ids on the bus */
};

/* Clears the op counters (start of a phase). */
void engine_stats_reset(kern_engine *e);

#endif
