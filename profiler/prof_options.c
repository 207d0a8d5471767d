/* One parser for the session options of profile, top and export (prof_options.h). */
#include "profiler/prof_options.h"

#include <stdlib.h>
#include <string.h>

#include "common/adg_cmd.h"
#include "common/adg_exit.h"
#include "common/adg_util.h"
#include "kernels/kern_cpu.h"
#include "profiler/prof_collector.h"

enum {
    OPT_TOP = PROF_CLI_OPT_BASE,
    OPT_NOTEE,
    OPT_DURATION,
    OPT_GPU_METRICS,
    OPT_SANITIZE,
    OPT_NO_CONFIRM,
    OPT_NPROMPT,
    OPT_IMPL,
    OPT_NUMA,
    OPT_PIN,
    OPT_SEED,
    OPT_NGL,
    OPT_CTX,
    OPT_SCALES,
    OPT_END_, /* session options above: is_session_opt() tells them from the command's */
};

static const struct option session_longopts[] = {
    {"out", required_argument, NULL, 'o'},          {"pid", required_argument, NULL, 'p'},
    {"interval", required_argument, NULL, 'i'},     {"freq", required_argument, NULL, 'F'},
    {"events", required_argument, NULL, 'e'},       {"top", required_argument, NULL, OPT_TOP},
    {"no-tee", no_argument, NULL, OPT_NOTEE},       {"duration", required_argument, NULL, OPT_DURATION},
    {"gpu-metrics", no_argument, NULL, OPT_GPU_METRICS}, {"sanitize", no_argument, NULL, OPT_SANITIZE},
    {"no-confirm", no_argument, NULL, OPT_NO_CONFIRM},
    {"model", required_argument, NULL, 'm'},        {"n-prompt", required_argument, NULL, OPT_NPROMPT},
    {"n-gen", required_argument, NULL, 'n'},        {"repetitions", required_argument, NULL, 'r'},
    {"threads", required_argument, NULL, 't'},      {"cpu-kernels", required_argument, NULL, OPT_IMPL},
    {"numa", required_argument, NULL, OPT_NUMA},    {"pin", no_argument, NULL, OPT_PIN},
    {"seed", required_argument, NULL, OPT_SEED},    {"ngl", required_argument, NULL, OPT_NGL},
    {"ctx", required_argument, NULL, OPT_CTX},      {"amx-scales", required_argument, NULL, OPT_SCALES},
};

void prof_options_usage(FILE *f)
{
    fputs("  -o, --out FILE        run record path (default: amxdiag-run.json)\n"
          "  -p, --pid PID         attach to a running process (all its threads) instead of COMMAND\n"
          "      --duration SEC    with --pid: stop after SEC seconds (default: until it exits or Ctrl-C)\n"
          "  -i, --interval MS     sampling interval of the time series (default 100, 10..60000)\n"
          "  -F, --freq HZ         cpu-clock sampling frequency (default 999, 10..20000)\n"
          "  -e, --events SETS     comma-separated: amx, simd, core, mem, sampling, numa, gpu, cpu,\n"
          "                        nvml, pmu (=amx,simd,core), all (default: all that are available\n"
          "                        here); gpu is the CUPTI trace and nvml (per-GPU memory, use, power)\n"
          "      --gpu-metrics     gpu: per-kernel DRAM bytes, achieved bandwidth, SM and tensor-pipe use\n"
          "                        (CUPTI Range Profiler; replays each kernel, so GPU time grows; where\n"
          "                        the driver permits counters; a sample of launches, see docs/cupti.md)\n"
          "      --sanitize        then run COMMAND again under compute-sanitizer memcheck and merge its\n"
          "                        reports (kernel, thread, block, address) into the record's crash section\n"
          "      --no-confirm      gpu: when a CUDA fault's kernel is not certain, do not run COMMAND again\n"
          "                        with CUDA_LAUNCH_BLOCKING=1 to confirm it (docs/crash-report.md)\n"
          "      --top N           hot functions kept in the record (default 30)\n"
          "      --no-tee          leave COMMAND's stdout/stderr untouched (no tokens/s parsing)\n",
          f);
}

void prof_options_usage_builtin(FILE *f)
{
    fputs("  -m, --model FILE      GGUF model (default: the built-in default model)\n"
          "      --n-prompt N      prompt tokens of the pp test (default 512; 0 skips it)\n"
          "  -n, --n-gen N         generated tokens of the tg test (default 128; 0 skips it)\n"
          "  -r, --repetitions N   repetitions of each test (default 3)\n"
          "  -t, --threads N       kernel threads (default: every allowed CPU but one, from 4 CPUs up: the\n"
          "                        profiler's own threads need one)\n"
          "      --cpu-kernels K   auto, amx, avx512, ref, amx-emu\n"
          "      --amx-scales S    block (default) or row: the prompt's tile products with one scale per\n"
          "                        weight row and token (as `amxdiag run --amx-scales`, docs/run.md)\n"
          "      --numa POLICY     local, interleave, node=N;  --pin: pin kernel threads\n"
          "      --ngl N           layers on the GPU;  --ctx N: KV positions;  --seed S\n",
          f);
}

void prof_cli_init(prof_cli *cli)
{
    memset(cli, 0, sizeof *cli);
    cli->o = (prof_options){.interval_ms = 100, .freq_hz = 999, .sets = PROF_SET_ALL, .top_n = 30, .tee = true,
                            .out = "amxdiag-run.json"};
    cli->o.engine.engine.impl = KERN_IMPL_AUTO;
    cli->o.engine.bench = (kern_bench_opts){.n_prompt = 512, .n_gen = 128, .reps = 3, .seed = 1};
}

static bool parse_sets(const char *arg, unsigned *sets)
{
    static const struct {
        const char *name;
        unsigned bits;
    } names[] = {{"amx", PROF_SET_AMX},   {"simd", PROF_SET_SIMD},         {"core", PROF_SET_CORE},
                 {"mem", PROF_SET_MEM},   {"sampling", PROF_SET_SAMPLING}, {"numa", PROF_SET_NUMA},
                 {"all", PROF_SET_ALL},   {"pmu", PROF_SET_AMX | PROF_SET_SIMD | PROF_SET_CORE},
                 {"gpu", PROF_SET_GPU | PROF_SET_NVML}, {"cpu", PROF_SET_CPU}, {"nvml", PROF_SET_NVML}};
    char *copy = strdup(arg);
    if (!copy)
        return false;
    *sets = 0;
    bool ok = true;
    for (char *save, *tok = strtok_r(copy, ",", &save); tok && ok; tok = strtok_r(NULL, ",", &save)) {
        bool found = false;
        for (size_t i = 0; i < ADG_ARRAY_LEN(names); i++)
            if (!strcmp(tok, names[i].name)) {
                *sets |= names[i].bits;
                found = true;
            }
        if (!found) {
            fprintf(stderr, "amxdiag: error: unknown event set '%s'\n", tok);
            ok = false;
        }
    }
    free(copy);
    if (ok && !*sets)
        fprintf(stderr, "amxdiag: error: --events needs at least one set\n");
    return ok && *sets;
}

/* One session option: PROF_CLI_CONTINUE, or the exit code (message printed). */
static int session_option(prof_cli *cli, int c, const char *arg, const char *cmd, uint64_t *n_ctx)
{
    prof_options *o = &cli->o;
    uint64_t v;
    double d;
    bool engine = false;
    switch (c) {
    case 'o':
        o->out = arg;
        break;
    case 'p':
        if (!adg_cmd_parse_uint("--pid", arg, 1, 0x7fffffff, &v))
            return adg_cmd_usage_error(cmd);
        o->pid = (pid_t)v;
        break;
    case 'i':
        if (!adg_cmd_parse_uint("--interval", arg, 10, 60000, &v))
            return adg_cmd_usage_error(cmd);
        o->interval_ms = (unsigned)v;
        break;
    case 'F':
        if (!adg_cmd_parse_uint("--freq", arg, 10, 20000, &v))
            return adg_cmd_usage_error(cmd);
        o->freq_hz = (unsigned)v;
        break;
    case 'e':
        if (!parse_sets(arg, &o->sets)) {
            fprintf(stderr, "  hint: sets are amx, simd, core, mem, sampling, numa, gpu, cpu, nvml, pmu, all\n");
            return ADG_EXIT_USAGE;
        }
        o->sets_explicit = true;
        break;
    case OPT_TOP:
        if (!adg_cmd_parse_uint("--top", arg, 1, 100000, &v))
            return adg_cmd_usage_error(cmd);
        o->top_n = (unsigned)v;
        break;
    case OPT_DURATION:
        if (!adg_parse_double(arg, &d) || !(d > 0) || d > 1e9) {
            fprintf(stderr, "amxdiag: error: --duration takes a positive number of seconds, not '%s'\n", arg);
            return adg_cmd_usage_error(cmd);
        }
        o->duration_s = d;
        break;
    case OPT_GPU_METRICS:
        o->gpu_metrics = true;
        break;
    case OPT_SANITIZE:
        cli->sanitize = true;
        break;
    case OPT_NO_CONFIRM:
        cli->no_confirm = true;
        break;
    case OPT_NOTEE:
        o->tee = false;
        break;
    case 'm':
        o->engine.engine.model_path = arg;
        engine = true;
        break;
    case OPT_NPROMPT:
    case 'n':
    case 'r':
    case 't':
    case OPT_NGL:
    case OPT_CTX: {
        const char *name = c == OPT_NPROMPT ? "--n-prompt" : c == 'n' ? "--n-gen" : c == 'r' ? "--repetitions"
                         : c == 't' ? "--threads" : c == OPT_NGL ? "--ngl" : "--ctx";
        uint64_t lo = (c == 'r' || c == 't') ? 1 : 0, hi = c == 't' ? 1024 : c == 'r' ? 1000 : 1u << 20;
        if (!adg_cmd_parse_uint(name, arg, lo, hi, &v))
            return adg_cmd_usage_error(cmd);
        if (c == OPT_NPROMPT)
            o->engine.bench.n_prompt = (uint32_t)v;
        else if (c == 'n')
            o->engine.bench.n_gen = (uint32_t)v;
        else if (c == 'r')
            o->engine.bench.reps = (uint32_t)v;
        else if (c == 't')
            o->engine.engine.threads = (int)v;
        else if (c == OPT_NGL)
            o->engine.engine.ngl = (uint32_t)v;
        else
            *n_ctx = v;
        engine = true;
        break;
    }
    case OPT_IMPL:
        if (!kern_impl_parse(arg, &o->engine.engine.impl)) {
            fprintf(stderr, "amxdiag: error: --cpu-kernels '%s' is not one of auto, amx, avx512, ref, amx-emu\n", arg);
            return adg_cmd_usage_error(cmd);
        }
        engine = true;
        break;
    case OPT_SCALES:
        if (!kern_amx_scales_parse(arg, &o->engine.engine.amx_row_scales)) {
            fprintf(stderr, "amxdiag: error: --amx-scales '%s' is not block or row\n", arg);
            return adg_cmd_usage_error(cmd);
        }
        engine = true;
        break;
    case OPT_NUMA:
        o->engine.numa = arg;
        engine = true;
        break;
    case OPT_PIN:
        o->engine.engine.pin = true;
        engine = true;
        break;
    case OPT_SEED:
        if (!adg_parse_u64(arg, &o->engine.bench.seed)) {
            fprintf(stderr, "amxdiag: error: --seed '%s' is not a non-negative integer\n", arg);
            return adg_cmd_usage_error(cmd);
        }
        engine = true;
        break;
    default:
        return adg_cmd_usage_error(cmd);
    }
    if (engine)
        cli->engine_opts = true;
    else
        cli->session_opts = true;
    return PROF_CLI_CONTINUE;
}

static bool is_session_opt(int c)
{
    if (c >= PROF_CLI_OPT_BASE && c < OPT_END_)
        return true;
    return c > 0 && c < 256 && strchr(PROF_CLI_SHORTOPTS, c) && c != ':';
}

/* The cross-option rules and the built-in path's defaults. */
static int finish(prof_cli *cli, const char *cmd, uint64_t n_ctx)
{
    prof_options *o = &cli->o;
    if (cli->engine_opts && (o->argv || o->pid)) {
        fprintf(stderr, "amxdiag: error: built-in path options (--model, --cpu-kernels, ...) apply only without a "
                        "command or --pid\n");
        return adg_cmd_usage_error(cmd);
    }
    if (o->argv && o->pid) {
        fprintf(stderr, "amxdiag: error: give either a command or --pid, not both\n");
        return adg_cmd_usage_error(cmd);
    }
    if (o->duration_s > 0 && !o->pid) {
        fprintf(stderr, "amxdiag: error: --duration applies to --pid only (a command runs until it exits)\n");
        return adg_cmd_usage_error(cmd);
    }
    if (!*o->out) {
        fprintf(stderr, "amxdiag: error: --out needs a file name\n");
        return adg_cmd_usage_error(cmd);
    }
    if (o->gpu_metrics && !(o->sets & PROF_SET_GPU))
        fprintf(stderr, "amxdiag: warning: --gpu-metrics reads counters through the gpu set, which -e leaves out: "
                        "no GPU counters will be read (add gpu to -e)\n");
    if (cli->sanitize && !o->argv) {
        fprintf(stderr, "amxdiag: error: --sanitize reruns a command: give one after --\n");
        return adg_cmd_usage_error(cmd);
    }
    if (!o->argv && !o->pid) {
        o->builtin = true;
        uint32_t need = o->engine.bench.n_prompt > o->engine.bench.n_gen ? o->engine.bench.n_prompt
                                                                         : o->engine.bench.n_gen;
        o->engine.engine.n_ctx = n_ctx ? (uint32_t)n_ctx : (need < 512 ? 512 : need);
        /* The Range Profiler samples and replays kernels per cuLaunchKernel; a generated
         * token replayed as one CUDA graph would hide its kernels from it. */
        if (o->gpu_metrics)
            o->engine.engine.gpu_no_graphs = true;
    }
    return PROF_CLI_CONTINUE;
}

int prof_options_parse(int argc, char **argv, const char *cmd, const prof_cli_extra *extra, prof_cli *cli)
{
    size_t nsess = ADG_ARRAY_LEN(session_longopts), nextra = 0;
    if (extra && extra->longopts)
        while (extra->longopts[nextra].name)
            nextra++;
    const char *xshort = extra && extra->shortopts ? extra->shortopts : "";
    /* A command's option that shadows a session one would silently never be seen. */
    for (const char *p = xshort; *p; p++)
        if (*p != ':' && strchr(PROF_CLI_SHORTOPTS, *p)) {
            fprintf(stderr, "amxdiag: internal error: %s defines -%c, a session option\n", cmd, *p);
            return ADG_EXIT_USAGE;
        }
    for (size_t i = 0; i < nextra; i++)
        if (extra->longopts[i].val >= PROF_CLI_OPT_BASE || is_session_opt(extra->longopts[i].val)) {
            fprintf(stderr, "amxdiag: internal error: %s's option --%s collides with a session option\n", cmd,
                    extra->longopts[i].name);
            return ADG_EXIT_USAGE;
        }
    struct option *all = calloc(nsess + nextra + 1, sizeof *all);
    size_t slen = strlen(PROF_CLI_SHORTOPTS) + strlen(xshort) + 2;
    char *shortopts = malloc(slen);
    if (!all || !shortopts) {
        free(all);
        free(shortopts);
        fprintf(stderr, "amxdiag: error: out of memory\n");
        return ADG_EXIT_USAGE;
    }
    memcpy(all, session_longopts, sizeof session_longopts);
    if (nextra)
        memcpy(all + nsess, extra->longopts, nextra * sizeof *all);
    /* '+': options end at the command's name, so its own options are left alone. */
    snprintf(shortopts, slen, "+%s%s", PROF_CLI_SHORTOPTS, xshort);

    uint64_t n_ctx = 0;
    int rc = PROF_CLI_CONTINUE, c;
    optind = 1;
    while (rc == PROF_CLI_CONTINUE && (c = getopt_long(argc, argv, shortopts, all, NULL)) != -1) {
        if (c == '?' || c == ':')
            rc = adg_cmd_usage_error(cmd);
        else if (is_session_opt(c))
            rc = session_option(cli, c, optarg, cmd, &n_ctx);
        else if (extra && extra->handle)
            rc = extra->handle(extra->ctx, c, optarg);
        else
            rc = adg_cmd_usage_error(cmd);
    }
    free(all);
    free(shortopts);
    if (rc != PROF_CLI_CONTINUE)
        return rc;
    cli->o.argv = optind < argc ? argv + optind : NULL;
    return finish(cli, cmd, n_ctx);
}

bool prof_options_takes_value(const char *arg)
{
    if (!arg || arg[0] != '-')
        return false;
    if (arg[1] != '-') {
        const char *p = arg[1] && !arg[2] ? strchr(PROF_CLI_SHORTOPTS, arg[1]) : NULL;
        return p && arg[1] != ':' && p[1] == ':';
    }
    for (size_t i = 0; i < ADG_ARRAY_LEN(session_longopts); i++)
        if (session_longopts[i].has_arg == required_argument && !strcmp(arg + 2, session_longopts[i].name))
            return true;
    return false;
}
