/* Each kernel against a CPU reference on random data: used by kern_cuda_selftest, the
 * device tests and `bench kernels --gpu --check`.  A CUDA failure is the returned error;
 * a wrong result is r->pass == false with the worst element described in r->worst. */
#ifndef KERN_CUDA_CHECK_H
#define KERN_CUDA_CHECK_H

#include "kernels/cuda/kern_cuda.h"

typedef struct kern_cuda_check_result {
    char name[80];        /* "gemv q4_0 4096x2048" */
    int64_t n;            /* elements compared */
    double max_abs_err;
    double worst_ratio;   /* max over elements of err / allowed (<= 1 passes) */
    double rtol, atol;    /* allowed = atol + rtol * magnitude (see docs/cuda-kernels.md) */
    double ms;            /* kernel time (events), 0 when not timed */
    bool pass;
    char worst[160];      /* "element 17: gpu 0.1234 ref 0.1240" */
} kern_cuda_check_result;

adg_error *kern_cuda_check_get_rows(kern_cuda_ctx *c, kern_type t, int64_t nrows, int64_t ncols, int64_t n_ids,
                                    uint64_t seed, kern_cuda_check_result *r);
adg_error *kern_cuda_check_gemv(kern_cuda_ctx *c, kern_type t, int64_t m, int64_t k, uint64_t seed,
                                kern_cuda_check_result *r);
adg_error *kern_cuda_check_moe(kern_cuda_ctx *c, kern_type t, int n_expert, int64_t m, int64_t k, int n_used, int n_x,
                               uint64_t seed, kern_cuda_check_result *r);
adg_error *kern_cuda_check_gemm(kern_cuda_ctx *c, kern_type t, int64_t m, int64_t k, int64_t n, uint64_t seed,
                                kern_cuda_check_result *r);
adg_error *kern_cuda_check_moe_route(kern_cuda_ctx *c, int64_t n, int n_expert, int k, uint64_t seed,
                                     kern_cuda_check_result *r);
adg_error *kern_cuda_check_rmsnorm(kern_cuda_ctx *c, int64_t n, int64_t d, uint64_t seed, kern_cuda_check_result *r);
adg_error *kern_cuda_check_rope(kern_cuda_ctx *c, int64_t n_tok, int n_head, int hd, uint64_t seed,
                                kern_cuda_check_result *r);
adg_error *kern_cuda_check_softmax(kern_cuda_ctx *c, int64_t n, int64_t d, uint64_t seed, kern_cuda_check_result *r);
adg_error *kern_cuda_check_attention(kern_cuda_ctx *c, int n_head, int n_kv_head, int hd, int64_t n_kv, uint64_t seed,
                                     kern_cuda_check_result *r);
adg_error *kern_cuda_check_silu_mul(kern_cuda_ctx *c, int64_t n, uint64_t seed, kern_cuda_check_result *r);
adg_error *kern_cuda_check_add(kern_cuda_ctx *c, int64_t n, uint64_t seed, kern_cuda_check_result *r);

/* The batch ops of the GPU layers (tolerances in docs/cuda-kernels.md). */
adg_error *kern_cuda_check_kv_store(kern_cuda_ctx *c, int64_t cache_rows, int64_t pos0, int64_t n_tok,
                                    int64_t row_elems, uint64_t seed, kern_cuda_check_result *r);
adg_error *kern_cuda_check_moe_wsum(kern_cuda_ctx *c, int64_t n_tok, int k, int64_t d, uint64_t seed,
                                    kern_cuda_check_result *r);
adg_error *kern_cuda_check_attention_causal(kern_cuda_ctx *c, int n_head, int n_kv_head, int hd, int64_t n_tok,
                                            int64_t pos0, uint64_t seed, kern_cuda_check_result *r);
adg_error *kern_cuda_check_moe_gemm(kern_cuda_ctx *c, kern_type t, int n_expert, int64_t m, int64_t k, int64_t n_tok,
                                    int n_used, bool x_per_slot, uint64_t seed, kern_cuda_check_result *r);

/* The fused ops and the ops that read the position on the device, against the ops they
 * replace on the same device: equal bit for bit. */
adg_error *kern_cuda_check_qkv_post(kern_cuda_ctx *c, int64_t n_tok, int n_head, int n_kv_head, int hd, int64_t pos0,
                                    uint64_t seed, kern_cuda_check_result *r);
adg_error *kern_cuda_check_add_rmsnorm(kern_cuda_ctx *c, int64_t n, int64_t d, uint64_t seed,
                                       kern_cuda_check_result *r);
adg_error *kern_cuda_check_router_topk(kern_cuda_ctx *c, int n_expert, int64_t d, int k, uint64_t seed,
                                       kern_cuda_check_result *r);
adg_error *kern_cuda_check_q8_producers(kern_cuda_ctx *c, kern_type t, uint64_t seed, kern_cuda_check_result *r);
adg_error *kern_cuda_check_at_pos(kern_cuda_ctx *c, int n_head, int n_kv_head, int hd, int64_t pos, uint64_t seed,
                                  kern_cuda_check_result *r);

/* The result as {"kernel","n","max_abs_err","worst_ratio","rtol","atol","ms","pass","worst"}. */
json_t *kern_cuda_check_json(const kern_cuda_check_result *r);

#endif
