/* amxdiag profile: options → prof_session_run → summary. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_cmd.h"
#include "common/adg_exit.h"
#include "common/adg_json.h"
#include "common/adg_log.h"
#include "common/adg_record.h"
#include "common/adg_term.h"
#include "common/adg_util.h"
#include "profiler/prof_collector.h"
#include "kernels/kern_cpu.h"
#include "profiler/profiler.h"
#include "profiler/sanitizer_run.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amxdiag profile [options] [--out RUN.json] [-- COMMAND ARGS...]\n"
            "       amxdiag profile [options] --pid PID [--duration SEC]\n"
            "       amxdiag profile [options] [built-in path options]   (no command: amxdiag's own engine)\n"
            "\n"
            "Runs COMMAND (directly, not through a shell) or attaches to a running process and\n"
            "measures what its CPU code executed: CPU time by ISA class (AMX, AVX-512, AVX2, SSE,\n"
            "scalar) from cpu-clock sampling and Zydis disassembly (no hardware PMU needed), hot\n"
            "functions with their class, PMU counters where the CPU exposes them (AMX busy,\n"
            "FP ops by width, IPC), DRAM bandwidth (uncore IMC or resctrl MBM), NUMA placement,\n"
            "and tokens/s from llama-bench / llama-cli output. Writes a run record (amxdiag.run/1).\n"
            "\n"
            "options:\n"
            "  -o, --out FILE        run record path (default: amxdiag-run.json)\n"
            "  -p, --pid PID         attach to a running process (all its threads) instead of COMMAND\n"
            "      --duration SEC    with --pid: stop after SEC seconds (default: until it exits or Ctrl-C)\n"
            "  -i, --interval MS     sampling interval of the time series (default 100, 10..60000)\n"
            "  -F, --freq HZ         cpu-clock sampling frequency (default 999, 10..20000)\n"
            "  -e, --events SETS     comma-separated: amx, simd, core, mem, sampling, numa, gpu, cpu,\n"
            "                        pmu (=amx,simd,core), all (default: all that are available here)\n"
            "      --gpu-metrics     gpu: per-kernel DRAM bytes and SM throughput where the driver permits\n"
            "                        (see docs/cupti.md); the kernel trace runs without it\n"
            "      --sanitize        then run COMMAND again under compute-sanitizer memcheck and merge its\n"
            "                        reports (kernel, thread, block, address) into the record's crash section\n"
            "      --top N           hot functions kept in the record (default 30)\n"
            "      --no-tee          leave COMMAND's stdout/stderr untouched (no tokens/s parsing)\n"
            "      --json            print a JSON summary (schema amxdiag.profile/1) on stdout; COMMAND's\n"
            "                        stdout then goes to stderr\n"
            "  -q, --quiet           no summary\n"
            "      --color WHEN      auto, always, never (default auto)\n"
            "  -v, --verbose         say which collectors cannot run and why\n"
            "      --tui             the live screen: runs as amxdiag top (same session and record;\n"
            "                        see docs/top.md)\n"
            "  -h, --help            this help\n"
            "\n"
            "built-in path (no COMMAND, no --pid; as 'amxdiag run', profiled in process):\n"
            "  -m, --model FILE      GGUF model (default: the built-in default model)\n"
            "      --n-prompt N      prompt tokens of the pp test (default 512; 0 skips it)\n"
            "  -n, --n-gen N         generated tokens of the tg test (default 128; 0 skips it)\n"
            "  -r, --repetitions N   repetitions of each test (default 3)\n"
            "  -t, --threads N       kernel threads (default: every allowed CPU)\n"
            "      --cpu-kernels K   auto, amx, avx512, ref, amx-emu\n"
            "      --numa POLICY     local, interleave, node=N;  --pin: pin kernel threads\n"
            "      --ngl N           layers on the GPU;  --ctx N: KV positions;  --seed S\n"
            "\n"
            "exit status: COMMAND's own exit status; 128+N if it died of signal N (record status\n"
            "workload-crashed); 128+N if amxdiag got SIGINT/SIGTERM (N) and stopped it (status\n"
            "interrupted); 127/126 if COMMAND could not be found/executed; 2 on a usage error or\n"
            "if the record could not be written. With --pid: 0, or 2 on error. With --sanitize: 2 if\n"
            "compute-sanitizer could not run or its report could not be read (the record of the first\n"
            "run is kept).\n"
            "See docs/profile.md and docs/run-record.md.\n");
}

static bool parse_sets(const char *arg, unsigned *sets)
{
    static const struct {
        const char *name;
        unsigned bits;
    } names[] = {{"amx", PROF_SET_AMX},   {"simd", PROF_SET_SIMD},         {"core", PROF_SET_CORE},
                 {"mem", PROF_SET_MEM},   {"sampling", PROF_SET_SAMPLING}, {"numa", PROF_SET_NUMA},
                 {"all", PROF_SET_ALL},   {"pmu", PROF_SET_AMX | PROF_SET_SIMD | PROF_SET_CORE},
                 {"gpu", PROF_SET_GPU},   {"cpu", PROF_SET_CPU}};
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
    return ok && *sets;
}

static bool parse_uint(const char *opt, const char *arg, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!adg_parse_u64(arg, out) || *out < lo || *out > hi) {
        fprintf(stderr, "amxdiag: error: %s takes a whole number from %llu to %llu, not '%s'\n", opt,
                (unsigned long long)lo, (unsigned long long)hi, arg);
        return false;
    }
    return true;
}

int prof_profile_cmd_main(int argc, char **argv)
{
    enum { OPT_TOP = 256, OPT_NOTEE, OPT_JSON, OPT_COLOR, OPT_DURATION, OPT_GPU_METRICS, OPT_SANITIZE,
           OPT_NPROMPT, OPT_IMPL, OPT_NUMA, OPT_PIN, OPT_SEED, OPT_NGL, OPT_CTX };
    static const struct option longopts[] = {
        {"out", required_argument, NULL, 'o'},       {"pid", required_argument, NULL, 'p'},
        {"interval", required_argument, NULL, 'i'},  {"freq", required_argument, NULL, 'F'},
        {"events", required_argument, NULL, 'e'},    {"top", required_argument, NULL, OPT_TOP},
        {"no-tee", no_argument, NULL, OPT_NOTEE},    {"json", no_argument, NULL, OPT_JSON},
        {"quiet", no_argument, NULL, 'q'},           {"color", required_argument, NULL, OPT_COLOR},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"gpu-metrics", no_argument, NULL, OPT_GPU_METRICS}, {"sanitize", no_argument, NULL, OPT_SANITIZE},
        {"verbose", no_argument, NULL, 'v'},         {"help", no_argument, NULL, 'h'},
        {"model", required_argument, NULL, 'm'},     {"n-prompt", required_argument, NULL, OPT_NPROMPT},
        {"n-gen", required_argument, NULL, 'n'},     {"repetitions", required_argument, NULL, 'r'},
        {"threads", required_argument, NULL, 't'},   {"cpu-kernels", required_argument, NULL, OPT_IMPL},
        {"numa", required_argument, NULL, OPT_NUMA}, {"pin", no_argument, NULL, OPT_PIN},
        {"seed", required_argument, NULL, OPT_SEED}, {"ngl", required_argument, NULL, OPT_NGL},
        {"ctx", required_argument, NULL, OPT_CTX},
        {NULL, 0, NULL, 0},
    };
    prof_options o = {.interval_ms = 100, .freq_hz = 999, .sets = PROF_SET_ALL, .top_n = 30, .tee = true,
                      .out = "amxdiag-run.json"};
    bool json = false, quiet = false, sanitize = false, engine_opt = false;
    uint64_t n_ctx = 0;
    o.engine.engine.impl = KERN_IMPL_AUTO;
    o.engine.bench = (kern_bench_opts){.n_prompt = 512, .n_gen = 128, .reps = 3, .seed = 1};
    adg_color_mode color = ADG_COLOR_AUTO;
    uint64_t v;
    double d;
    optind = 1;
    int c;
    /* '+': options end at the command's name, so its own options are left alone. */
    while ((c = getopt_long(argc, argv, "+o:p:i:F:e:qvhm:n:r:t:", longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            o.out = optarg;
            break;
        case 'p':
            if (!parse_uint("--pid", optarg, 1, 0x7fffffff, &v))
                return adg_cmd_usage_error("profile");
            o.pid = (pid_t)v;
            break;
        case 'i':
            if (!parse_uint("--interval", optarg, 10, 60000, &v))
                return adg_cmd_usage_error("profile");
            o.interval_ms = (unsigned)v;
            break;
        case 'F':
            if (!parse_uint("--freq", optarg, 10, 20000, &v))
                return adg_cmd_usage_error("profile");
            o.freq_hz = (unsigned)v;
            break;
        case 'e':
            if (!parse_sets(optarg, &o.sets)) {
                fprintf(stderr, "  hint: sets are amx, simd, core, mem, sampling, numa, gpu, cpu, pmu, all\n");
                return ADG_EXIT_USAGE;
            }
            o.sets_explicit = true;
            break;
        case OPT_TOP:
            if (!parse_uint("--top", optarg, 1, 100000, &v))
                return adg_cmd_usage_error("profile");
            o.top_n = (unsigned)v;
            break;
        case OPT_DURATION:
            if (!adg_parse_double(optarg, &d) || d <= 0) {
                fprintf(stderr, "amxdiag: error: --duration takes a positive number of seconds, not '%s'\n", optarg);
                return adg_cmd_usage_error("profile");
            }
            o.duration_s = d;
            break;
        case OPT_GPU_METRICS:
            o.gpu_metrics = true;
            break;
        case OPT_SANITIZE:
            sanitize = true;
            break;
        case OPT_NOTEE:
            o.tee = false;
            break;
        case OPT_JSON:
            json = true;
            break;
        case 'q':
            quiet = true;
            break;
        case OPT_COLOR:
            if (!adg_term_parse_color(optarg, &color)) {
                fprintf(stderr, "amxdiag: error: --color takes auto, always or never, not '%s'\n", optarg);
                return adg_cmd_usage_error("profile");
            }
            break;
        case 'v':
            adg_log_set_level(ADG_LOG_INFO);
            break;
        case 'h':
            usage(stdout);
            return ADG_EXIT_OK;
        case 'm':
            o.engine.engine.model_path = optarg;
            engine_opt = true;
            break;
        case OPT_NPROMPT:
        case 'n':
        case 'r':
        case 't':
        case OPT_NGL:
        case OPT_CTX:
            if (!parse_uint(c == OPT_NPROMPT ? "--n-prompt" : c == 'n' ? "--n-gen" : c == 'r' ? "--repetitions"
                            : c == 't' ? "--threads" : c == OPT_NGL ? "--ngl" : "--ctx",
                            optarg, (c == 'r' || c == 't') ? 1 : 0, c == 't' ? 1024 : c == 'r' ? 1000 : 1u << 20, &v))
                return adg_cmd_usage_error("profile");
            if (c == OPT_NPROMPT)
                o.engine.bench.n_prompt = (uint32_t)v;
            else if (c == 'n')
                o.engine.bench.n_gen = (uint32_t)v;
            else if (c == 'r')
                o.engine.bench.reps = (uint32_t)v;
            else if (c == 't')
                o.engine.engine.threads = (int)v;
            else if (c == OPT_NGL)
                o.engine.engine.ngl = (uint32_t)v;
            else
                n_ctx = v;
            engine_opt = true;
            break;
        case OPT_IMPL:
            if (!kern_impl_parse(optarg, &o.engine.engine.impl)) {
                fprintf(stderr, "amxdiag: error: --cpu-kernels '%s' is not one of auto, amx, avx512, ref, amx-emu\n",
                        optarg);
                return adg_cmd_usage_error("profile");
            }
            engine_opt = true;
            break;
        case OPT_NUMA:
            o.engine.numa = optarg;
            engine_opt = true;
            break;
        case OPT_PIN:
            o.engine.engine.pin = true;
            engine_opt = true;
            break;
        case OPT_SEED:
            if (!adg_parse_u64(optarg, &o.engine.bench.seed)) {
                fprintf(stderr, "amxdiag: error: --seed '%s' is not a non-negative integer\n", optarg);
                return adg_cmd_usage_error("profile");
            }
            engine_opt = true;
            break;
        default:
            return adg_cmd_usage_error("profile");
        }
    }
    if (optind < argc)
        o.argv = argv + optind;
    if (engine_opt && (o.argv || o.pid)) {
        fprintf(stderr, "amxdiag: error: built-in path options (--model, --cpu-kernels, ...) apply only without a "
                        "command or --pid\n");
        return adg_cmd_usage_error("profile");
    }
    if (!o.argv && !o.pid) {
        o.builtin = true;
        uint32_t need = o.engine.bench.n_prompt > o.engine.bench.n_gen ? o.engine.bench.n_prompt : o.engine.bench.n_gen;
        o.engine.engine.n_ctx = n_ctx ? (uint32_t)n_ctx : (need < 512 ? 512 : need);
    }
    if (o.argv && o.pid) {
        fprintf(stderr, "amxdiag: error: give either a command or --pid, not both\n");
        return adg_cmd_usage_error("profile");
    }
    if (o.duration_s > 0 && !o.pid) {
        fprintf(stderr, "amxdiag: error: --duration applies to --pid only (a command runs until it exits)\n");
        return adg_cmd_usage_error("profile");
    }
    if (!*o.out) {
        fprintf(stderr, "amxdiag: error: --out needs a file name\n");
        return adg_cmd_usage_error("profile");
    }
    if (sanitize && !o.argv) {
        fprintf(stderr, "amxdiag: error: --sanitize reruns a command: give one after --\n");
        return adg_cmd_usage_error("profile");
    }
    if (json) {
        /* Our stdout carries the JSON summary: keep the command's stdout off it. */
        o.output_to_stderr = true;
        o.tee = true;
    }

    prof_outcome out;
    adg_error *e = prof_session_run(&o, &out);
    if (e) {
        adg_error_print(e, stderr);
        int code = out.exit_code ? out.exit_code : adg_exit_for_error(e);
        adg_error_free(e);
        return code;
    }
    if (out.workload_error) {
        /* The built-in path failed; the record (status workload-failed) was written. */
        adg_error_print(out.workload_error, stderr);
        adg_error_free(out.workload_error);
    }
    if (sanitize) {
        int san_status;
        e = prof_sanitize_run(o.argv, o.out, &san_status);
        if (e) {
            adg_error_print(e, stderr);
            adg_error_free(e);
            json_decref(out.record);
            return ADG_EXIT_USAGE;
        }
        json_t *merged;
        if (!(e = adg_record_load(o.out, &merged))) {
            json_decref(out.record);
            out.record = merged;
        } else
            adg_error_free(e);
    }
    if (json) {
        json_t *sum = prof_summary_json(out.record, o.out, out.exit_code);
        adg_error_free(adg_json_print(stdout, sum));
        json_decref(sum);
    } else if (!quiet) {
        /* The command may have written to the same terminal: the summary goes to stderr
         * like perf stat's, unless stdout is not shared with the command (--no-tee does
         * not matter: the command wrote wherever it wanted). */
        prof_summary_print(stderr, out.record, o.out, adg_term_use_color(stderr, color));
    }
    json_decref(out.record);
    fflush(stdout);
    return out.exit_code;
}
