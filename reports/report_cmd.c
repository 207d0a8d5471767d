/* amxdiag report: option parsing and output; the reports themselves are built elsewhere. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_cmd.h"
#include "common/adg_exit.h"
#include "common/adg_json.h"
#include "common/adg_util.h"
#include "reports/rep_internal.h"
#include "reports/reports.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amxdiag report RUN.json [--format md|html|json] [-o FILE]\n"
            "       amxdiag report --compare BASE.json NEW.json [--format ...] [-o FILE]\n"
            "       amxdiag report --crash RUN.json [--format ...] [-o FILE]\n"
            "       amxdiag report --rules [--json]\n"
            "\n"
            "Reports from run records (amxdiag profile --out RUN.json): what ran where, how fast, and\n"
            "findings that explain it with numbers and say what to try.\n"
            "\n"
            "  (default)            the run report: throughput per phase, time per op and layer, AMX/AVX-512\n"
            "                       shares, bandwidth vs the probe's ceiling, NUMA placement, GPU time, findings\n"
            "  --compare BASE NEW   the regression report: each figure side by side with its delta and %%,\n"
            "                       the faster setting per phase, and the findings that explain the difference\n"
            "  --crash RUN          the illegal-access report from the record's crash section: the error and\n"
            "                       the call, the op that reported it vs the kernel that faulted, the launch\n"
            "                       ring, allocations near the pointers, compute-sanitizer records\n"
            "  --rules              list the findings rules (id, severity, threshold, what to try)\n"
            "  -f, --format FMT     md (default; Markdown for issues and chats), html (one self-contained\n"
            "                       file with SVG charts), json (schema %s)\n"
            "      --json           same as --format json\n"
            "  -o, --out FILE       write there (atomically) instead of stdout\n"
            "      --exit-zero      exit 0 even when a finding is critical\n"
            "  -h, --help           this text\n"
            "\n"
            "Anything a record does not hold is shown as \"not measured: <reason>\", the reason taken from\n"
            "the record's unavailable list.\n"
            "\n"
            "exit codes: 0 report written, no critical finding; 1 report written and at least one finding\n"
            "is critical (a crash, a >= 10%% slower phase, AMX asked for but never run, ...); 2 usage error,\n"
            "unreadable/corrupt/foreign record, a record without what the mode needs (e.g. --crash without a\n"
            "crash section), or a failed write - then no output file is written.\n"
            "See docs/reports.md.\n",
            REP_SCHEMA);
}

static int print_rules(bool json)
{
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < rep_rule_count(); i++) {
            const rep_rule *r = rep_rule_at(i);
            json_t *modes = json_array();
            if (r->modes & REP_MODE_RUN)
                json_array_append_new(modes, json_string("run"));
            if (r->modes & REP_MODE_COMPARE)
                json_array_append_new(modes, json_string("compare"));
            if (r->modes & REP_MODE_CRASH)
                json_array_append_new(modes, json_string("crash"));
            json_array_append_new(arr, json_pack("{s:s,s:s,s:o,s:s,s:s,s:s,s:s}", "id", r->id, "severity",
                                                 rep_severity_name(r->severity), "modes", modes, "title", r->title,
                                                 "threshold", r->threshold, "evidence", r->evidence, "try", r->remedy));
        }
        json_t *root = json_pack("{s:s,s:o}", "schema", "amxdiag.report.rules/1", "rules", arr);
        adg_error *e = adg_json_print(stdout, root);
        json_decref(root);
        if (e) {
            adg_error_print(e, stderr);
            int rc = adg_exit_for_error(e);
            adg_error_free(e);
            return rc;
        }
        return ADG_EXIT_OK;
    }
    for (size_t i = 0; i < rep_rule_count(); i++) {
        const rep_rule *r = rep_rule_at(i);
        printf("%-24s %-8s %s\n  threshold: %s\n  evidence:  %s\n  try:       %s\n\n", r->id,
               rep_severity_name(r->severity), r->title, r->threshold, r->evidence, r->remedy);
    }
    return ADG_EXIT_OK;
}

static int fail(adg_error *e)
{
    adg_error_print(e, stderr);
    int rc = adg_exit_for_error(e);
    adg_error_free(e);
    return rc;
}

int rep_report_cmd_main(int argc, char **argv)
{
    enum { O_COMPARE = 256, O_CRASH, O_RULES, O_JSON, O_EXIT_ZERO };
    static const struct option opts[] = {
        {"compare", no_argument, NULL, O_COMPARE}, {"crash", no_argument, NULL, O_CRASH},
        {"rules", no_argument, NULL, O_RULES},     {"format", required_argument, NULL, 'f'},
        {"json", no_argument, NULL, O_JSON},       {"out", required_argument, NULL, 'o'},
        {"exit-zero", no_argument, NULL, O_EXIT_ZERO}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    bool compare = false, crash = false, rules = false, exit_zero = false;
    rep_format fmt = REP_FORMAT_MD;
    const char *out = NULL;
    optind = 1;
    opterr = 1;
    int c;
    while ((c = getopt_long(argc, argv, "f:o:h", opts, NULL)) != -1) {
        switch (c) {
        case O_COMPARE: compare = true; break;
        case O_CRASH: crash = true; break;
        case O_RULES: rules = true; break;
        case O_JSON: fmt = REP_FORMAT_JSON; break;
        case O_EXIT_ZERO: exit_zero = true; break;
        case 'o': out = optarg; break;
        case 'f':
            if (!strcmp(optarg, "md") || !strcmp(optarg, "markdown"))
                fmt = REP_FORMAT_MD;
            else if (!strcmp(optarg, "html"))
                fmt = REP_FORMAT_HTML;
            else if (!strcmp(optarg, "json"))
                fmt = REP_FORMAT_JSON;
            else
                return fail(adg_error_hint(adg_error_new(ADG_E_USAGE, "unknown report format '%s'", optarg),
                                           "use --format md, html or json"));
            break;
        case 'h': usage(stdout); return ADG_EXIT_OK;
        default: return adg_cmd_usage_error("report");
        }
    }
    int npos = argc - optind;
    if (rules)
        return npos || compare || crash ? fail(adg_error_hint(adg_error_new(ADG_E_USAGE, "--rules takes no record"),
                                                              "amxdiag report --rules [--json]"))
                                        : print_rules(fmt == REP_FORMAT_JSON);
    if (compare && crash)
        return fail(adg_error_hint(adg_error_new(ADG_E_USAGE, "--compare and --crash are different reports"),
                                   "make one report per command"));
    int want = compare ? 2 : 1;
    if (npos != want)
        return fail(adg_error_hint(
            adg_error_new(ADG_E_USAGE, "%s needs %s, got %d", compare ? "--compare" : crash ? "--crash" : "report",
                          compare ? "two run records (BASE.json NEW.json)" : "one run record", npos),
            compare ? "amxdiag report --compare BASE.json NEW.json" : "amxdiag report [--crash] RUN.json"));
    if (out && !*out)
        return fail(adg_error_new(ADG_E_USAGE, "-o needs a file name"));

    json_t *doc = NULL;
    adg_error *e = compare ? rep_report_compare(argv[optind], argv[optind + 1], &doc)
                   : crash ? rep_report_crash(argv[optind], &doc)
                           : rep_report_run(argv[optind], &doc);
    if (e)
        return fail(e);
    char *text = NULL;
    if ((e = rep_render(doc, fmt, &text))) {
        json_decref(doc);
        return fail(e);
    }
    if (out)
        e = adg_write_file_atomic(out, text, strlen(text));
    else if (fputs(text, stdout) == EOF || fflush(stdout) != 0)
        e = adg_error_new(ADG_E_IO, "cannot write the report to stdout");
    free(text);
    int rc = rep_doc_exit_code(doc);
    json_decref(doc);
    if (e)
        return fail(adg_error_prefix(e, "report"));
    return exit_zero ? ADG_EXIT_OK : rc;
}
