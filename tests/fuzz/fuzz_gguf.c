/* GGUF reader: header, metadata, tensor infos, then everything a model file goes
 * through in `model inspect` (hyper-parameters, roles, AMX analysis, text and JSON
 * views) and in the engine's loader (every tensor's shape and type). */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "common/adg_error.h"
#include "fuzz_util.h"
#include "kernels/kern_gguf.h"
#include "kernels/kern_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    kern_gguf *g = NULL;
    adg_error *e = kern_gguf_parse(data, size, "fuzz.gguf", &g);
    if (e) {
        adg_error_free(e);
        return 0;
    }
    /* Walk what callers walk: string arrays (the vocabulary) and typed getters. */
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const kern_gguf_kv *kv = &g->kv[i];
        if (kv->type == KERN_GGUF_ARRAY && kv->arr_type == KERN_GGUF_STRING) {
            uint64_t pos = 0;
            const uint8_t *cur = NULL;
            kern_gguf_str s;
            volatile size_t total = 0;
            while (kern_gguf_arr_str_next(kv, &pos, &cur, &s))
                total += s.len ? (unsigned char)s.ptr[s.len - 1] : 0;
        }
        uint64_t u;
        float f;
        char *str = NULL;
        adg_error_free(kern_gguf_get_u64(g, kv->key, false, &u));
        adg_error_free(kern_gguf_get_f32(g, kv->key, false, &f));
        adg_error_free(kern_gguf_get_str(g, kv->key, false, &str));
        free(str);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const kern_gguf_tensor *t = &g->tensors[i];
        volatile uint8_t sink = 0;
        if (t->nbytes)
            sink ^= t->data[0] ^ t->data[t->nbytes - 1];
        (void)sink;
        (void)kern_gguf_find_tensor(g, t->name);
    }
    kern_model_analysis a;
    for (uint32_t ngl = 0; ngl < 2; ngl++) {
        if ((e = kern_model_analyse(g, ngl ? 1000 : 0, &a))) {
            adg_error_free(e);
            continue;
        }
        kern_model_inspect_print(stdout, g, &a, true);
        json_t *j = kern_model_inspect_json(g, &a, true);
        json_decref(j);
        kern_model_analysis_free(&a);
    }
    kern_model *m = NULL;
    e = kern_model_from_gguf(g, &m); /* owns g from here, also on error */
    adg_error_free(e);
    kern_model_free(m);
    return 0;
}
