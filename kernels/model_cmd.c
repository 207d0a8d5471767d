/* amxdiag model create | inspect | presets: option parsing and wiring only. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/adg_cmd.h"
#include "common/adg_exit.h"
#include "common/adg_json.h"
#include "common/adg_util.h"
#include "kernels/kern_cmds.h"
#include "kernels/kern_model.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: amxdiag model create --preset NAME [--quant q4_0|q8_0|bf16] [--layers N] [--seed S]\n"
            "                            [--sparse] [--threads N] [--json] OUT.gguf\n"
            "       amxdiag model inspect FILE.gguf [--ngl N] [--tensors] [--json]\n"
            "       amxdiag model presets [--json]\n"
            "\n"
            "create   writes a synthetic model (deterministic random weights, llama.cpp's tensor names and\n"
            "         metadata) that llama.cpp-style engines and 'amxdiag run' load.  --sparse writes the\n"
            "         exact layout with the data left as holes: the full 30B shape in a few MB of disk,\n"
            "         for 'inspect' (not for running).\n"
            "inspect  groups the tensors by role (attention projections, experts, router, embeddings, norms,\n"
            "         output) with their bytes, the op that consumes them (MUL_MAT / MUL_MAT_ID), where\n"
            "         --ngl N places them, and which bytes AMX can take under llama.cpp's rules and under\n"
            "         amxdiag's kernels.\n"
            "presets  lists the presets.\n"
            "\n"
            "options:\n"
            "  --preset NAME   qwen3-30b-a3b, qwen3-moe-small, tiny, llama-tiny\n"
            "  --quant TYPE    type of the 2-D weights: q4_0 (default), q8_0, bf16; norms and router stay f32\n"
            "  --layers N      override the preset's layer count\n"
            "  --seed S        random seed (default 1); the same seed gives the same bytes\n"
            "  --sparse        layout only, no data (a sparse file)\n"
            "  --threads N     generation threads (default: all CPUs; does not change the bytes)\n"
            "  --ngl N         offload the last N layers and the output, as llama.cpp's -ngl\n"
            "  --tensors       also list every tensor with its AMX verdict\n"
            "  --json          machine-readable output (schemas amxdiag.model.create/1, amxdiag.model.inspect/1,\n"
            "                  amxdiag.model.presets/1; docs/model.md)\n"
            "  -h, --help      this text\n"
            "\n"
            "exit codes: 0 done, 2 usage error, unreadable or corrupt file, or write failure.\n");
}

static volatile int interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int fail(adg_error *e)
{
    adg_error_print(e, stderr);
    int rc = adg_exit_for_error(e);
    adg_error_free(e);
    return rc;
}

static int cmd_presets(bool json)
{
    int n;
    const kern_model_preset *p = kern_model_presets(&n);
    if (json) {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:i}", "name", p[i].name, "summary",
                                                 p[i].summary, "architecture", kern_arch_name(p[i].hp.arch), "n_layer",
                                                 (int)p[i].hp.n_layer, "n_embd", (int)p[i].hp.n_embd, "n_expert",
                                                 (int)p[i].hp.n_expert, "n_expert_used", (int)p[i].hp.n_expert_used,
                                                 "n_ff_exp", (int)p[i].hp.n_ff_exp, "n_vocab", (int)p[i].hp.n_vocab));
        json_t *root = json_pack("{s:s,s:o}", "schema", "amxdiag.model.presets/1", "presets", arr);
        adg_error *e = adg_json_print(stdout, root);
        json_decref(root);
        return e ? fail(e) : ADG_EXIT_OK;
    }
    for (int i = 0; i < n; i++)
        printf("%-16s %s\n", p[i].name, p[i].summary);
    return ADG_EXIT_OK;
}

int kern_model_cmd_main(int argc, char **argv)
{
    kern_model_create_opts co = {.quant = KERN_TYPE_Q4_0, .seed = 1};
    uint64_t ngl = 0;
    bool json = false, tensors = false;
    enum { O_PRESET = 256, O_QUANT, O_LAYERS, O_SEED, O_SPARSE, O_THREADS, O_NGL, O_TENSORS, O_JSON };
    static const struct option longopts[] = {
        {"preset", required_argument, 0, O_PRESET}, {"quant", required_argument, 0, O_QUANT},
        {"layers", required_argument, 0, O_LAYERS}, {"seed", required_argument, 0, O_SEED},
        {"sparse", no_argument, 0, O_SPARSE},       {"threads", required_argument, 0, O_THREADS},
        {"ngl", required_argument, 0, O_NGL},       {"tensors", no_argument, 0, O_TENSORS},
        {"json", no_argument, 0, O_JSON},           {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    if (argc < 2) {
        usage(stderr);
        return ADG_EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
        usage(stdout);
        return ADG_EXIT_OK;
    }
    if (strcmp(sub, "create") && strcmp(sub, "inspect") && strcmp(sub, "presets")) {
        fprintf(stderr, "amxdiag model: error: unknown subcommand '%s'\n", sub);
        return adg_cmd_usage_error("model");
    }
    argc--;
    argv++;
    optind = 1;
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_PRESET: co.preset = optarg; break;
        case O_QUANT:
            if (!kern_type_parse(optarg, &co.quant) ||
                (co.quant != KERN_TYPE_Q4_0 && co.quant != KERN_TYPE_Q8_0 && co.quant != KERN_TYPE_BF16)) {
                fprintf(stderr, "amxdiag model: error: --quant '%s' is not one of q4_0, q8_0, bf16\n", optarg);
                return adg_cmd_usage_error("model");
            }
            break;
        case O_LAYERS:
            if (!adg_parse_u64(optarg, &v) || v == 0 || v > 4096) {
                fprintf(stderr, "amxdiag model: error: --layers '%s' is not a number in 1..4096\n", optarg);
                return adg_cmd_usage_error("model");
            }
            co.layers = (uint32_t)v;
            break;
        case O_SEED:
            if (!adg_parse_u64(optarg, &co.seed)) {
                fprintf(stderr, "amxdiag model: error: --seed '%s' is not a non-negative integer\n", optarg);
                return adg_cmd_usage_error("model");
            }
            break;
        case O_SPARSE: co.sparse = true; break;
        case O_THREADS:
            if (!adg_parse_u64(optarg, &v) || v == 0 || v > 256) {
                fprintf(stderr, "amxdiag model: error: --threads '%s' is not a number in 1..256\n", optarg);
                return adg_cmd_usage_error("model");
            }
            co.threads = (int)v;
            break;
        case O_NGL:
            if (!adg_parse_u64(optarg, &ngl) || ngl > 100000) {
                fprintf(stderr, "amxdiag model: error: --ngl '%s' is not a non-negative layer count\n", optarg);
                return adg_cmd_usage_error("model");
            }
            break;
        case O_TENSORS: tensors = true; break;
        case O_JSON: json = true; break;
        case 'h': usage(stdout); return ADG_EXIT_OK;
        default: return adg_cmd_usage_error("model");
        }
    }
    int npos = argc - optind;
    if (!strcmp(sub, "presets")) {
        if (npos) {
            fprintf(stderr, "amxdiag model presets: error: unexpected argument '%s'\n", argv[optind]);
            return adg_cmd_usage_error("model");
        }
        return cmd_presets(json);
    }
    if (npos != 1) {
        fprintf(stderr, "amxdiag model %s: error: %s\n", sub, npos ? "one file argument expected" : "missing file argument");
        return adg_cmd_usage_error("model");
    }
    const char *file = argv[optind];
    if (!strcmp(sub, "create")) {
        if (!co.preset) {
            fprintf(stderr, "amxdiag model create: error: --preset is required\n"
                            "  hint: presets are qwen3-30b-a3b, qwen3-moe-small, tiny, llama-tiny\n");
            return ADG_EXIT_USAGE;
        }
        /* Ctrl-C stops the generation and removes the temporary file. */
        struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        co.cancel = &interrupted;
        kern_model_create_result r;
        adg_error *e = kern_model_create(&co, file, &r);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        if (e)
            return fail(e);
        char b[32];
        if (json) {
            json_t *root = json_pack("{s:s,s:s,s:s,s:s,s:I,s:b,s:I,s:I,s:I,s:f}", "schema", "amxdiag.model.create/1",
                                     "path", file, "preset", co.preset, "quant", kern_type_name(co.quant), "seed",
                                     (json_int_t)co.seed, "sparse", co.sparse, "bytes", (json_int_t)r.file_bytes,
                                     "params", (json_int_t)r.n_params, "tensors", (json_int_t)r.n_tensors, "seconds",
                                     r.seconds);
            e = adg_json_print(stdout, root);
            json_decref(root);
            return e ? fail(e) : ADG_EXIT_OK;
        }
        printf("wrote %s: preset %s, %s, %.3f B parameters, %llu tensors, %s%s in %.2f s\n", file, co.preset,
               kern_type_name(co.quant), (double)r.n_params / 1e9, (unsigned long long)r.n_tensors,
               adg_fmt_bytes((double)r.file_bytes, b, sizeof b), co.sparse ? " (sparse: layout only, no data)" : "",
               r.seconds);
        return ADG_EXIT_OK;
    }
    /* inspect */
    kern_gguf *g;
    adg_error *e = kern_gguf_open(file, &g);
    if (e)
        return fail(e);
    kern_model_analysis a;
    if ((e = kern_model_analyse(g, (uint32_t)ngl, &a))) {
        kern_gguf_close(g);
        return fail(e);
    }
    if (json) {
        json_t *root = kern_model_inspect_json(g, &a, tensors);
        e = adg_json_print(stdout, root);
        json_decref(root);
    } else {
        kern_model_inspect_print(stdout, g, &a, tensors);
    }
    kern_model_analysis_free(&a);
    kern_gguf_close(g);
    return e ? fail(e) : ADG_EXIT_OK;
}
