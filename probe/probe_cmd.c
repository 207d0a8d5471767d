/* amxdiag probe: option parsing and wiring of the sections. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_cmd.h"
#include "common/adg_exit.h"
#include "common/adg_json.h"
#include "common/adg_util.h"
#include "probe/probe.h"
#include "probe/probe_prom.h"
#include "probe/probe_sections.h"
#include "probe/probe_source.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: amxdiag probe [options]\n"
            "\n"
            "Checks whether AMX, the GPUs, NUMA and the PMU are usable on this machine; every\n"
            "check has its evidence and, when it fails, a remedy.\n"
            "\n"
            "options:\n"
            "  --only LIST          sections to run: cpu,amx,numa,pmu,gpu (default: all)\n"
            "  --format FMT         text (default), json (schema amxdiag.probe/1, docs/probe-schema.md) or\n"
            "                       prometheus (text exposition format; docs/fleet.md)\n"
            "  --json               the same as --format json\n"
            "  --textfile DIR       write the Prometheus metrics atomically to DIR/amxdiag_probe.prom\n"
            "                       (node_exporter's textfile collector); stdout then gets one line\n"
            "                       unless --format is given\n"
            "  --bench              also measure AMX/VNNI rates and memory bandwidth (cached)\n"
            "  --binary PATH        list the CUDA code in PATH and give a verdict per GPU; check its\n"
            "                       AMX code (tile configurations, XTILEDATA request) (repeatable)\n"
            "  --cc X.Y             also give --binary verdicts for compute capability X.Y (repeatable)\n"
            "  --save-snapshot FILE record the raw inputs (CPUID, XCR0, sysfs, ...) to FILE\n"
            "  --snapshot FILE      evaluate a recorded snapshot instead of this machine\n"
            "  --color WHEN         auto (default), always, never\n"
            "  -v, --verbose        show the explanation of passing checks too\n"
            "  -h, --help           this text\n"
            "\n"
            "AMX is checked in four layers (CPUID, XCR0, the kernel's arch_prctl permission, the\n"
            "CPUID 0x1D palette) and then proven by executing tile instructions in a child process.\n"
            "A snapshot replays every check that does not execute code; attach one to a bug report.\n"
            "--bench writes $XDG_CACHE_HOME/amxdiag/ceilings-<cpu>-<N>cpu.json (~/.cache when unset).\n"
            "\n"
            "Prometheus: amxdiag_probe_check_status{section,check} is 0 pass, 1 info, 2 warn, 3 fail,\n"
            "4 skip; the cached ceilings and the GPU verdicts follow (docs/fleet.md).\n"
            "\n"
            "exit codes: 0 every check passed or warned, 1 a check failed, 2 usage or internal error.\n"
            "docs: docs/probe.md (CPU, AMX, NUMA, PMU, bench), docs/probe-gpu.md, docs/probe-schema.md,\n"
            "docs/fleet.md\n");
}

static bool parse_sections(const char *list, unsigned *out)
{
    static const struct { const char *name; unsigned bit; } names[] = {
        {"cpu", PROBE_SEC_CPU}, {"amx", PROBE_SEC_AMX}, {"numa", PROBE_SEC_NUMA},
        {"pmu", PROBE_SEC_PMU}, {"gpu", PROBE_SEC_GPU}, {"all", PROBE_SEC_ALL},
    };
    unsigned mask = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        bool found = false;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (!strcmp(tok, names[i].name)) {
                mask |= names[i].bit;
                found = true;
            }
        if (!found) {
            fprintf(stderr, "amxdiag probe: error: unknown section '%s' in --only\n"
                            "  hint: sections are cpu, amx, numa, pmu, gpu\n", tok);
            return false;
        }
    }
    *out = mask;
    return mask != 0;
}

int probe_cmd_main(int argc, char **argv)
{
    probe_opts o = {.sections = PROBE_SEC_ALL, .color = ADG_COLOR_AUTO};
    enum { OPT_ONLY = 256, OPT_JSON, OPT_BENCH, OPT_BINARY, OPT_CC, OPT_SAVE, OPT_SNAP, OPT_COLOR, OPT_FORMAT,
           OPT_TEXTFILE };
    bool prom = false, format_given = false;
    const char *textfile = NULL;
    uint64_t t0 = adg_now_ns();
    static const struct option longopts[] = {
        {"only", required_argument, 0, OPT_ONLY},   {"json", no_argument, 0, OPT_JSON},
        {"bench", no_argument, 0, OPT_BENCH},       {"binary", required_argument, 0, OPT_BINARY},
        {"cc", required_argument, 0, OPT_CC},       {"save-snapshot", required_argument, 0, OPT_SAVE},
        {"snapshot", required_argument, 0, OPT_SNAP}, {"color", required_argument, 0, OPT_COLOR},
        {"format", required_argument, 0, OPT_FORMAT}, {"textfile", required_argument, 0, OPT_TEXTFILE},
        {"verbose", no_argument, 0, 'v'},           {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_ONLY:
            if (!parse_sections(optarg, &o.sections))
                return ADG_EXIT_USAGE;
            break;
        case OPT_JSON: o.json = true, prom = false, format_given = true; break;
        case OPT_FORMAT:
            if (strcmp(optarg, "text") && strcmp(optarg, "json") && strcmp(optarg, "prometheus")) {
                fprintf(stderr, "amxdiag probe: error: --format takes text, json or prometheus, not '%s'\n", optarg);
                return adg_cmd_usage_error("probe");
            }
            o.json = !strcmp(optarg, "json");
            prom = !strcmp(optarg, "prometheus");
            format_given = true;
            break;
        case OPT_TEXTFILE: textfile = optarg; break;
        case OPT_BENCH: o.bench = true; break;
        case OPT_BINARY:
            if (o.nbinaries == PROBE_MAX_LIST) {
                fprintf(stderr, "amxdiag probe: error: at most %d --binary options\n", PROBE_MAX_LIST);
                return ADG_EXIT_USAGE;
            }
            o.binaries[o.nbinaries++] = optarg;
            break;
        case OPT_CC:
            if (o.nccs == PROBE_MAX_LIST) {
                fprintf(stderr, "amxdiag probe: error: at most %d --cc options\n", PROBE_MAX_LIST);
                return ADG_EXIT_USAGE;
            }
            o.ccs[o.nccs++] = optarg;
            break;
        case OPT_SAVE: o.snapshot_out = optarg; break;
        case OPT_SNAP: o.snapshot_in = optarg; break;
        case OPT_COLOR:
            if (!adg_term_parse_color(optarg, &o.color)) {
                fprintf(stderr, "amxdiag probe: error: --color takes auto, always or never\n");
                return ADG_EXIT_USAGE;
            }
            break;
        case 'v': o.verbose = true; break;
        case 'h': usage(stdout); return ADG_EXIT_OK;
        default: return adg_cmd_usage_error("probe");
        }
    }
    if (optind < argc) {
        fprintf(stderr, "amxdiag probe: error: unexpected argument '%s'\n", argv[optind]);
        return adg_cmd_usage_error("probe");
    }

    if (o.snapshot_in && o.snapshot_out) {
        fprintf(stderr, "amxdiag probe: error: --snapshot and --save-snapshot cannot be combined\n"
                        "  hint: --save-snapshot records this machine; copy a snapshot file instead\n");
        return ADG_EXIT_USAGE;
    }
    if (o.snapshot_in && o.bench) {
        fprintf(stderr, "amxdiag probe: error: --bench measures this machine; it cannot run from a snapshot\n"
                        "  hint: drop --bench, or run without --snapshot\n");
        return ADG_EXIT_USAGE;
    }

    if (textfile) {
        adg_error *te = probe_prom_check_dir(textfile);
        if (te) {
            adg_error_print(te, stderr);
            adg_error_free(te);
            return ADG_EXIT_USAGE;
        }
    }

    probe_src *src = NULL;
    adg_error *err = o.snapshot_in ? probe_src_load(o.snapshot_in, &src) : probe_src_live(&src);
    if (err) {
        adg_error_print(err, stderr);
        int code = adg_exit_for_error(err);
        adg_error_free(err);
        return code == ADG_EXIT_OK ? ADG_EXIT_USAGE : code;
    }
    probe_report rep;
    probe_report_init(&rep);
    if (probe_src_is_replay(src))
        probe_report_set_fact(&rep, "probe", "source", json_string(probe_src_origin(src)));
    /* A snapshot records every CPU-side input, whatever --only selects for display. */
    unsigned run = o.snapshot_out ? (o.sections | PROBE_SEC_CPU | PROBE_SEC_AMX | PROBE_SEC_NUMA | PROBE_SEC_PMU)
                                  : o.sections;
    static const struct {
        unsigned bit;
        adg_error *(*fn)(const probe_opts *, probe_src *, probe_report *);
    } sections[] = {
        {PROBE_SEC_CPU, probe_cpu_section},
        {PROBE_SEC_AMX, probe_amx_section},
        {PROBE_SEC_NUMA, probe_numa_section},
        {PROBE_SEC_PMU, probe_pmu_section},
    };
    probe_report scratch;
    probe_report_init(&scratch);
    for (size_t i = 0; i < sizeof sections / sizeof sections[0] && !err; i++)
        if (run & sections[i].bit)
            err = sections[i].fn(&o, src, (o.sections & sections[i].bit) ? &rep : &scratch);
    probe_report_free(&scratch);
    if (!err && (o.sections & PROBE_SEC_GPU) && !probe_src_is_replay(src))
        err = probe_gpu_section(&o, &rep);
    if (!err)
        err = probe_binary_section(&o, &rep);
    if (!err && o.bench)
        err = probe_bench_section(&o, src, &rep);
    if (!err && o.snapshot_out)
        err = probe_src_save(src, o.snapshot_out);
    bool replay = probe_src_is_replay(src);
    probe_src_free(src);
    if (err) {
        adg_error_print(err, stderr);
        adg_error_free(err);
        probe_report_free(&rep);
        return ADG_EXIT_USAGE;
    }
    int rc = ADG_EXIT_OK;
    size_t k[5];
    if (probe_report_counts(&rep, k))
        rc = ADG_EXIT_CHECK_FAILED;
    if (prom || textfile) {
        char *written = NULL;
        err = probe_prom_emit(&rep, replay, (double)(adg_now_ns() - t0) * 1e-9, textfile,
                              prom ? stdout : NULL, &written);
        if (!err && written && !format_given)
            printf("wrote %s: %zu checks, %zu failed\n", written, rep.n, k[PROBE_FAIL]);
        free(written);
    }
    if (err || prom || (textfile && !format_given)) {
        /* done: the metrics (or the textfile's line) are the output */
    } else if (o.json) {
        json_t *j = probe_report_json(&rep);
        err = adg_json_print(stdout, j);
        json_decref(j);
    } else {
        probe_report_print(&rep, stdout, adg_term_use_color(stdout, o.color), o.verbose);
    }
    probe_report_free(&rep);
    if (err) {
        adg_error_print(err, stderr);
        adg_error_free(err);
        return ADG_EXIT_USAGE;
    }
    return rc;
}
