/* `model inspect` views of a kern_model_analysis: the role table, the AMX conclusion,
 * and the same as JSON. */
#include "kernels/kern_model.h"

#include <string.h>

#include "common/adg_util.h"

#define INSPECT_SCHEMA "amxdiag.model.inspect/1"

static const char *types_str(const kern_role_stats *r, char *buf, size_t len)
{
    buf[0] = 0;
    size_t n = 0;
    for (uint32_t t = 0; t < 32; t++)
        if (r->type_mask_lo & (1u << t))
            n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%s", n ? "," : "", kern_ggml_type_name(t));
    if (r->type_hi && n < len)
        snprintf(buf + n, len - n, "%sother", n ? "," : "");
    return buf;
}

static double pct(uint64_t a, uint64_t b)
{
    return b ? 100.0 * (double)a / (double)b : 0.0;
}

/* One sentence per rule set, built from the numbers so that it stays true for any file. */
static void conclusion(adg_strbuf *sb, const kern_model_analysis *a)
{
    char b1[32], b2[32];
    const kern_role_stats *ex = &a->role[KERN_ROLE_EXPERTS];
    adg_fmt_bytes((double)a->cpu_bytes, b2, sizeof b2);
    adg_sb_printf(sb, "llama.cpp's AMX backend: %s eligible (%.1f%% of the %s on the CPU",
                  adg_fmt_bytes((double)a->amx_llamacpp, b1, sizeof b1), pct(a->amx_llamacpp, a->cpu_bytes), b2);
    if (a->ngl)
        adg_sb_printf(sb, " with --ngl %u", a->ngl);
    adg_sb_puts(sb, ")");
    int contributors = 0;
    kern_role only = KERN_ROLE_OTHER;
    for (int r = 0; r < KERN_ROLE_COUNT; r++)
        if (a->role[r].amx_llamacpp) {
            contributors++;
            only = (kern_role)r;
        }
    if (contributors == 1)
        adg_sb_printf(sb, " - all of it %s", kern_role_name(only));
    adg_sb_puts(sb, ".\n");
    if (ex->tensors) {
        uint64_t cpu_ex = ex->cpu_bytes - ex->amx_llamacpp;
        adg_sb_printf(sb, "%s of experts%s are not eligible: they are consumed by MUL_MAT_ID, which llama.cpp's AMX "
                          "backend does not take;\nthey run on its AVX-512 path instead.\n",
                      adg_fmt_bytes((double)cpu_ex, b1, sizeof b1), a->ngl ? " on the CPU" : "");
    }
    adg_sb_printf(sb, "amxdiag's kernels: %s eligible (%.1f%%)%s.\n",
                  adg_fmt_bytes((double)a->amx_amxdiag, b1, sizeof b1), pct(a->amx_amxdiag, a->cpu_bytes),
                  ex->amx_amxdiag ? ": they also run MUL_MAT_ID (the experts) on AMX tiles" : "");
    if (a->unsupported_tensors)
        adg_sb_printf(sb, "%llu tensor(s) have types amxdiag's engine does not compute (f32, f16, bf16, q4_0, q8_0 "
                          "are computed);\n'amxdiag run' will refuse this file.\n",
                      (unsigned long long)a->unsupported_tensors);
}

void kern_model_inspect_print(FILE *out, const kern_gguf *g, const kern_model_analysis *a, bool tensors)
{
    char b1[32], b2[32], b3[32], b4[32], ty[64];
    const kern_model_hparams *hp = &a->hp;
    fprintf(out, "model     %s (%s)\n", a->name ? a->name : "(unnamed)", a->arch_str ? a->arch_str : "no architecture");
    if (a->hp_ok) {
        fprintf(out, "shape     %u layers, d=%u, %u/%u heads of %u", hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv,
                hp->head_dim);
        if (hp->n_expert)
            fprintf(out, ", %u experts of %u (%u used)", hp->n_expert, hp->n_ff_exp, hp->n_expert_used);
        else
            fprintf(out, ", FFN %u", hp->n_ff);
        fprintf(out, ", vocab %u\n", hp->n_vocab);
    } else {
        fprintf(out, "shape     unknown: %s\n", a->hp_error ? a->hp_error : "");
    }
    fprintf(out, "file      %s: %s, GGUF v%u, %llu tensors, %.2f B parameters\n", g->path,
            adg_fmt_bytes((double)g->size, b1, sizeof b1), g->version, (unsigned long long)g->n_tensors,
            (double)a->total_params / 1e9);
    if (a->ngl) {
        uint32_t nl = hp->n_layer, k = a->ngl < nl ? a->ngl : nl;
        fprintf(out, "offload   --ngl %u: layers %u-%u and the output on the GPU (%s); %s stay on the CPU\n", a->ngl,
                nl - k, nl ? nl - 1 : 0, adg_fmt_bytes((double)a->gpu_bytes, b1, sizeof b1),
                adg_fmt_bytes((double)a->cpu_bytes, b2, sizeof b2));
    } else {
        fprintf(out, "offload   none (--ngl 0): everything on the CPU\n");
    }
    fprintf(out, "\n%-22s %7s  %-10s %-11s %11s %11s %14s %12s\n", "role", "tensors", "types", "consumed by", "bytes",
            "on CPU", "AMX llama.cpp", "AMX amxdiag");
    for (int r = 0; r < KERN_ROLE_COUNT; r++) {
        const kern_role_stats *s = &a->role[r];
        if (!s->tensors)
            continue;
        fprintf(out, "%-22s %7llu  %-10s %-11s %11s %11s %14s %12s\n", kern_role_name((kern_role)r),
                (unsigned long long)s->tensors, types_str(s, ty, sizeof ty), kern_consumer_name(s->op),
                adg_fmt_bytes((double)s->bytes, b1, sizeof b1), adg_fmt_bytes((double)s->cpu_bytes, b2, sizeof b2),
                adg_fmt_bytes((double)s->amx_llamacpp, b3, sizeof b3),
                adg_fmt_bytes((double)s->amx_amxdiag, b4, sizeof b4));
    }
    fprintf(out, "%-22s %7llu  %-10s %-11s %11s %11s %14s %12s\n", "total", (unsigned long long)g->n_tensors, "", "",
            adg_fmt_bytes((double)a->total_bytes, b1, sizeof b1), adg_fmt_bytes((double)a->cpu_bytes, b2, sizeof b2),
            adg_fmt_bytes((double)a->amx_llamacpp, b3, sizeof b3), adg_fmt_bytes((double)a->amx_amxdiag, b4, sizeof b4));
    if (tensors) {
        fprintf(out, "\n%-34s %-7s %-24s %11s %-4s %-10s  %s\n", "tensor", "type", "shape (ne0=K first)", "bytes", "on",
                "op", "llama.cpp AMX verdict");
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const kern_gguf_tensor *t = &g->tensors[i];
            kern_tensor_class c;
            kern_model_classify(t->name, &c);
            bool gpu = kern_model_on_gpu(&c, hp->n_layer, a->ngl);
            kern_amx_verdict v = kern_amx_llamacpp(t, &c, gpu);
            char shape[64];
            int n = snprintf(shape, sizeof shape, "%lld", (long long)t->ne[0]);
            for (uint32_t d = 1; d < t->n_dims && n > 0 && (size_t)n < sizeof shape; d++)
                n += snprintf(shape + n, sizeof shape - (size_t)n, " x %lld", (long long)t->ne[d]);
            fprintf(out, "%-34s %-7s %-24s %11s %-4s %-10s  %s%s\n", t->name, kern_ggml_type_name(t->type), shape,
                    adg_fmt_bytes((double)t->nbytes, b1, sizeof b1), gpu ? "GPU" : "CPU", kern_consumer_name(c.op),
                    v.eligible ? "eligible: " : "no: ", v.reason);
        }
    }
    adg_strbuf sb;
    adg_sb_init(&sb);
    conclusion(&sb, a);
    fprintf(out, "\nAMX eligibility\n");
    /* Indent every line of the conclusion. */
    for (const char *p = sb.buf ? sb.buf : ""; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(out, "  %.*s\n", (int)n, p);
        p += n + (nl ? 1 : 0);
    }
    adg_sb_free(&sb);
}

json_t *kern_model_inspect_json(const kern_gguf *g, const kern_model_analysis *a, bool tensors)
{
    const kern_model_hparams *hp = &a->hp;
    json_t *root = json_object();
    json_object_set_new(root, "schema", json_string(INSPECT_SCHEMA));
    json_object_set_new(root, "file", json_pack("{s:s,s:I,s:i,s:I,s:I,s:I}", "path", g->path, "bytes",
                                                (json_int_t)g->size, "gguf_version", (int)g->version, "tensors",
                                                (json_int_t)g->n_tensors, "alignment", (json_int_t)g->alignment,
                                                "data_offset", (json_int_t)g->data_offset));
    json_t *m = json_object();
    json_object_set_new(m, "name", a->name ? json_string(a->name) : json_null());
    json_object_set_new(m, "architecture", a->arch_str ? json_string(a->arch_str) : json_null());
    json_object_set_new(m, "params", json_integer((json_int_t)a->total_params));
    if (a->hp_ok) {
        json_object_set_new(m, "hparams",
                            json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f}", "n_layer", (int)hp->n_layer,
                                      "n_embd", (int)hp->n_embd, "n_head", (int)hp->n_head, "n_head_kv",
                                      (int)hp->n_head_kv, "head_dim", (int)hp->head_dim, "n_ff", (int)hp->n_ff,
                                      "n_expert", (int)hp->n_expert, "n_expert_used", (int)hp->n_expert_used,
                                      "n_ff_exp", (int)hp->n_ff_exp, "n_vocab", (int)hp->n_vocab, "n_ctx_train",
                                      (int)hp->n_ctx_train, "rope_freq_base", (double)hp->rope_base, "rms_eps",
                                      (double)hp->rms_eps));
    } else {
        json_object_set_new(m, "hparams", json_null());
        json_object_set_new(m, "hparams_error", json_string(a->hp_error ? a->hp_error : ""));
    }
    json_object_set_new(root, "model", m);
    json_object_set_new(root, "ngl", json_integer(a->ngl));
    json_t *roles = json_array();
    for (int r = 0; r < KERN_ROLE_COUNT; r++) {
        const kern_role_stats *s = &a->role[r];
        if (!s->tensors)
            continue;
        char ty[64];
        json_array_append_new(
            roles, json_pack("{s:s,s:s,s:I,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "role", kern_role_key((kern_role)r),
                             "label", kern_role_name((kern_role)r), "tensors", (json_int_t)s->tensors, "types",
                             types_str(s, ty, sizeof ty), "op", kern_consumer_name(s->op), "bytes", (json_int_t)s->bytes,
                             "params", (json_int_t)s->params, "cpu_bytes", (json_int_t)s->cpu_bytes, "gpu_bytes",
                             (json_int_t)s->gpu_bytes, "amx_llamacpp_bytes", (json_int_t)s->amx_llamacpp,
                             "amx_amxdiag_bytes", (json_int_t)s->amx_amxdiag));
    }
    json_object_set_new(root, "roles", roles);
    json_object_set_new(root, "totals",
                        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "bytes", (json_int_t)a->total_bytes, "cpu_bytes",
                                  (json_int_t)a->cpu_bytes, "gpu_bytes", (json_int_t)a->gpu_bytes, "amx_llamacpp_bytes",
                                  (json_int_t)a->amx_llamacpp, "amx_amxdiag_bytes", (json_int_t)a->amx_amxdiag,
                                  "unsupported_tensors", (json_int_t)a->unsupported_tensors));
    adg_strbuf sb;
    adg_sb_init(&sb);
    conclusion(&sb, a);
    json_object_set_new(root, "conclusion", json_string(sb.buf ? sb.buf : ""));
    adg_sb_free(&sb);
    if (tensors) {
        json_t *arr = json_array();
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const kern_gguf_tensor *t = &g->tensors[i];
            kern_tensor_class c;
            kern_model_classify(t->name, &c);
            bool gpu = kern_model_on_gpu(&c, hp->n_layer, a->ngl);
            kern_amx_verdict v1 = kern_amx_llamacpp(t, &c, gpu), v2 = kern_amx_amxdiag(t, &c, gpu);
            json_t *ne = json_array();
            for (uint32_t d = 0; d < t->n_dims; d++)
                json_array_append_new(ne, json_integer(t->ne[d]));
            json_array_append_new(
                arr, json_pack("{s:s,s:s,s:o,s:I,s:I,s:s,s:s,s:i,s:s,s:{s:b,s:s},s:{s:b,s:s}}", "name", t->name,
                               "type", kern_ggml_type_name(t->type), "ne", ne, "offset", (json_int_t)t->offset, "bytes",
                               (json_int_t)t->nbytes, "role", kern_role_key(c.role), "op", kern_consumer_name(c.op),
                               "layer", c.layer, "placement", gpu ? "gpu" : "cpu", "amx_llamacpp", "eligible",
                               v1.eligible, "reason", v1.reason, "amx_amxdiag", "eligible", v2.eligible, "reason",
                               v2.reason));
        }
        json_object_set_new(root, "tensors", arr);
    }
    return root;
}
