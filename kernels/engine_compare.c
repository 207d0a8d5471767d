/* Teacher-forced comparison of two engines on one model: both are fed the same tokens (the
 * prompt, then the reference's greedy choice at each step), so a near-tie that one side
 * breaks differently does not send the two down different continuations — comparing two
 * free-running greedy decodes says nothing after their first difference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kern_engine.h"
#include "kernels/kern_model.h"

static int32_t argmax(const float *l, uint32_t n)
{
    int32_t best = 0;
    for (uint32_t v = 1; v < n; v++)
        best = l[v] > l[best] ? (int32_t)v : best;
    return best;
}

/* The gap between the two largest logits. */
static float top_gap(const float *l, uint32_t n)
{
    float t1 = -INFINITY, t2 = -INFINITY;
    for (uint32_t v = 0; v < n; v++) {
        if (l[v] > t1) {
            t2 = t1;
            t1 = l[v];
        } else if (l[v] > t2) {
            t2 = l[v];
        }
    }
    return t1 - t2;
}

void kern_compare_result_free(kern_compare_result *r)
{
    free(r->step_diff);
    free(r->ref_tokens);
    free(r->tokens);
    memset(r, 0, sizeof *r);
}

adg_error *kern_engine_compare(kern_engine *ref, kern_engine *e, const int32_t *prompt, uint32_t n_prompt,
                               uint32_t n_gen, kern_compare_result *out)
{
    memset(out, 0, sizeof *out);
    const uint32_t nv = kern_engine_model(ref)->hp.n_vocab;
    if (kern_engine_model(e)->hp.n_vocab != nv)
        return adg_error_new(ADG_E_USAGE, "compare: the engines' vocabularies differ (%u vs %u tokens)", nv,
                             kern_engine_model(e)->hp.n_vocab);
    if (n_prompt == 0)
        return adg_error_new(ADG_E_USAGE, "compare: the prompt is empty");
    float *lr = malloc((size_t)nv * sizeof *lr), *l = malloc((size_t)nv * sizeof *l);
    out->step_diff = malloc(((size_t)n_gen + 1) * sizeof *out->step_diff);
    out->ref_tokens = malloc(((size_t)n_gen + 1) * sizeof *out->ref_tokens);
    out->tokens = malloc(((size_t)n_gen + 1) * sizeof *out->tokens);
    adg_error *err = NULL;
    if (!lr || !l || !out->step_diff || !out->ref_tokens || !out->tokens) {
        err = adg_error_new(ADG_E_NOMEM, "out of memory");
        goto done;
    }
    kern_engine_reset(ref);
    kern_engine_reset(e);
    if ((err = kern_engine_eval(ref, prompt, n_prompt, lr)) || (err = kern_engine_eval(e, prompt, n_prompt, l)))
        goto done;
    out->first_split = -1;
    for (uint32_t step = 0;; step++) {
        float d = 0;
        for (uint32_t v = 0; v < nv; v++)
            d = fmaxf(d, fabsf(l[v] - lr[v]));
        const int32_t tok = argmax(lr, nv), etok = argmax(l, nv);
        out->step_diff[step] = d;
        out->ref_tokens[step] = tok;
        out->tokens[step] = etok;
        out->max_diff = fmaxf(out->max_diff, d);
        out->same += etok == tok;
        if (top_gap(lr, nv) > 2 * d) {
            out->decisive++;
            if (etok == tok)
                out->decisive_same++;
            else if (out->first_split < 0)
                out->first_split = (int32_t)step;
        }
        out->steps = step + 1;
        if (step == n_gen)
            break;
        if ((err = kern_engine_eval(ref, &tok, 1, lr)) || (err = kern_engine_eval(e, &tok, 1, l)))
            goto done;
    }
done:
    free(lr);
    free(l);
    if (err)
        kern_compare_result_free(out);
    return err;
}
