/* Renders a probe report (and the cached ceilings) in the Prometheus text format. */
#include "probe/probe_prom.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "adg_version.h"
#include "common/adg_prom.h"

/* Worse statuses win when one id occurs twice (gpu.compute_mode is added per GPU). */
static int severity(probe_status s)
{
    static const int rank[] = {[PROBE_PASS] = 0, [PROBE_INFO] = 1, [PROBE_SKIP] = 2, [PROBE_WARN] = 3,
                               [PROBE_FAIL] = 4};
    return (unsigned)s < ADG_ARRAY_LEN(rank) ? rank[s] : 0;
}

/* The status of check id, merging duplicates; false when absent or already emitted. */
static bool merged_status(const probe_report *r, size_t i, probe_status *st)
{
    const probe_check *c = &r->checks[i];
    for (size_t k = 0; k < i; k++)
        if (!strcmp(r->checks[k].id, c->id) && !strcmp(r->checks[k].section, c->section))
            return false;
    *st = c->status;
    for (size_t k = i + 1; k < r->n; k++)
        if (!strcmp(r->checks[k].id, c->id) && !strcmp(r->checks[k].section, c->section) &&
            severity(r->checks[k].status) > severity(*st))
            *st = r->checks[k].status;
    return true;
}

static void checks(const probe_report *r, adg_strbuf *sb)
{
    adg_prom_family(sb, "amxdiag_probe_check_status", "gauge",
                    "Status of each probe check: 0 pass, 1 info, 2 warn, 3 fail, 4 skip (ids: docs/probe.md, "
                    "docs/probe-gpu.md)");
    for (size_t i = 0; i < r->n; i++) {
        probe_status st;
        if (!merged_status(r, i, &st))
            continue;
        adg_prom_label l[] = {{"section", r->checks[i].section}, {"check", r->checks[i].id}};
        adg_prom_sample(sb, "amxdiag_probe_check_status", l, 2, (double)st);
    }
    size_t k[5];
    probe_report_counts(r, k);
    adg_prom_family(sb, "amxdiag_probe_checks", "gauge", "Number of probe checks per status");
    for (int s = 0; s < 5; s++) {
        adg_prom_label l[] = {{"status", probe_status_name((probe_status)s)}};
        adg_prom_sample(sb, "amxdiag_probe_checks", l, 1, (double)k[s]);
    }
}

static const char *fact_str(const probe_report *r, const char *sec, const char *key)
{
    return json_string_value(json_object_get(json_object_get(r->facts, sec), key));
}

static void identity(const probe_report *r, const probe_prom_opts *o, adg_strbuf *sb)
{
    adg_prom_family(sb, "amxdiag_build_info", "gauge", "amxdiag's version; always 1");
    adg_prom_sample(sb, "amxdiag_build_info", (adg_prom_label[]){{"version", AMXDIAG_VERSION}}, 1, 1);
    json_t *cpu = json_object_get(r->facts, "cpu");
    if (cpu) {
        char model[32] = "";
        json_t *fam = json_object_get(cpu, "family"), *mod = json_object_get(cpu, "model");
        if (json_is_integer(fam) && json_is_integer(mod))
            snprintf(model, sizeof model, "%lld/%lld", (long long)json_integer_value(fam),
                     (long long)json_integer_value(mod));
        adg_prom_label l[] = {{"cpu", fact_str(r, "cpu", "brand")},       {"vendor", fact_str(r, "cpu", "vendor")},
                              {"family_model", model[0] ? model : NULL}, {"uarch", fact_str(r, "cpu", "uarch")},
                              {"hypervisor", fact_str(r, "cpu", "hypervisor")},
                              {"kernel", fact_str(r, "cpu", "kernel")}};
        adg_prom_family(sb, "amxdiag_probe_cpu_info", "gauge",
                        "The probed CPU (brand, family/model, microarchitecture, hypervisor, kernel); always 1");
        adg_prom_sample(sb, "amxdiag_probe_cpu_info", l, ADG_ARRAY_LEN(l), 1);
    }
    json_t *usable = json_object_get(json_object_get(r->facts, "amx"), "usable");
    if (json_is_boolean(usable)) {
        adg_prom_family(sb, "amxdiag_probe_amx_usable", "gauge",
                        "1 when all four AMX layers pass and the tile self-test ran (probe fact amx.usable)");
        adg_prom_sample(sb, "amxdiag_probe_amx_usable", NULL, 0, json_is_true(usable) ? 1 : 0);
    }
    json_t *nodes = json_object_get(json_object_get(r->facts, "numa"), "nodes");
    if (json_is_integer(nodes)) {
        adg_prom_family(sb, "amxdiag_probe_numa_nodes", "gauge", "NUMA nodes with memory or CPUs");
        adg_prom_sample(sb, "amxdiag_probe_numa_nodes", NULL, 0, (double)json_integer_value(nodes));
    }
    if (o && o->timestamp_s > 0) {
        adg_prom_family(sb, "amxdiag_probe_last_run_timestamp_seconds", "gauge",
                        "When the probe ran (Unix time): alert when the textfile goes stale");
        adg_prom_sample(sb, "amxdiag_probe_last_run_timestamp_seconds", NULL, 0, o->timestamp_s);
    }
    if (o && o->duration_s >= 0) {
        adg_prom_family(sb, "amxdiag_probe_duration_seconds", "gauge", "How long the probe ran");
        adg_prom_sample(sb, "amxdiag_probe_duration_seconds", NULL, 0, o->duration_s);
    }
}

/* gpu.N.<verdict> checks, labelled with the GPU's compute capability from the facts. */
static void gpu_verdicts(const probe_report *r, adg_strbuf *sb)
{
    json_t *devs = json_object_get(json_object_get(r->facts, "gpu"), "devices");
    size_t i;
    json_t *d;
    if (json_array_size(devs)) {
        adg_prom_family(sb, "amxdiag_probe_gpu_info", "gauge",
                        "A GPU the CUDA driver lists (name, compute capability, PCI bus id); always 1");
        json_array_foreach(devs, i, d)
        {
            char ord[16];
            snprintf(ord, sizeof ord, "%lld", (long long)json_integer_value(json_object_get(d, "ordinal")));
            adg_prom_label l[] = {{"gpu", ord},
                                  {"name", json_string_value(json_object_get(d, "name"))},
                                  {"cc", json_string_value(json_object_get(d, "cc"))},
                                  {"pci_bus_id", json_string_value(json_object_get(d, "pci_bus_id"))}};
            adg_prom_sample(sb, "amxdiag_probe_gpu_info", l, ADG_ARRAY_LEN(l), 1);
        }
        adg_prom_family(sb, "amxdiag_probe_gpu_memory_bytes", "gauge", "Memory of each GPU");
        json_array_foreach(devs, i, d)
        {
            char ord[16];
            snprintf(ord, sizeof ord, "%lld", (long long)json_integer_value(json_object_get(d, "ordinal")));
            adg_prom_sample(sb, "amxdiag_probe_gpu_memory_bytes", (adg_prom_label[]){{"gpu", ord}}, 1,
                            (double)json_integer_value(json_object_get(d, "memory_bytes")));
        }
    }
    bool header = false;
    for (size_t k = 0; k < r->n; k++) {
        const probe_check *c = &r->checks[k];
        int ord, used = 0;
        if (strcmp(c->section, "gpu") || sscanf(c->id, "gpu.%d.%n", &ord, &used) != 1 || !used)
            continue;
        const char *verdict = c->id + used;
        if (!strcmp(verdict, "device")) /* identity, in amxdiag_probe_gpu_info */
            continue;
        const char *cc = NULL;
        json_array_foreach(devs, i, d)
            if (json_integer_value(json_object_get(d, "ordinal")) == ord)
                cc = json_string_value(json_object_get(d, "cc"));
        if (!header) {
            adg_prom_family(sb, "amxdiag_probe_gpu_verdict", "gauge",
                            "Per-GPU verdicts (support: driver and code for the CC; numa: placement; selftest.*: "
                            "amxdiag's kernels run and match the CPU): 0 pass, 1 info, 2 warn, 3 fail, 4 skip");
            header = true;
        }
        char o[16];
        snprintf(o, sizeof o, "%d", ord);
        adg_prom_label l[] = {{"gpu", o}, {"cc", cc}, {"verdict", verdict}};
        adg_prom_sample(sb, "amxdiag_probe_gpu_verdict", l, ADG_ARRAY_LEN(l), (double)c->status);
    }
}

/* binary.K.gpuN / binary.K.ccNN: may this binary's CUDA code run on that GPU / CC. */
static void binary_verdicts(const probe_report *r, adg_strbuf *sb)
{
    bool header = false;
    for (size_t k = 0; k < r->n; k++) {
        const probe_check *c = &r->checks[k];
        size_t bin;
        int used = 0;
        if (strcmp(c->section, "binary") || sscanf(c->id, "binary.%zu.%n", &bin, &used) != 1 || !used)
            continue;
        const char *what = c->id + used;
        if (strncmp(what, "gpu", 3) && strncmp(what, "cc", 2))
            continue;
        char entries[64];
        snprintf(entries, sizeof entries, "binary.%zu.entries", bin);
        const probe_check *e = probe_report_find(r, entries);
        const char *path = e ? json_string_value(json_object_get(e->data, "path")) : NULL;
        json_t *gpu = json_object_get(c->data, "gpu");
        char g[16];
        if (json_is_integer(gpu))
            snprintf(g, sizeof g, "%lld", (long long)json_integer_value(gpu));
        if (!header) {
            adg_prom_family(sb, "amxdiag_probe_binary_verdict", "gauge",
                            "Whether a --binary's CUDA code runs on a GPU / compute capability (outcome: native, "
                            "ptx_jit, no_binary_for_gpu, arch_specific_mismatch, ptx_too_new): 0 pass, 2 warn, 3 fail");
            header = true;
        }
        adg_prom_label l[] = {{"binary", path},
                              {"gpu", json_is_integer(gpu) ? g : NULL},
                              {"cc", json_string_value(json_object_get(c->data, "cc"))},
                              {"outcome", json_string_value(json_object_get(c->data, "outcome"))}};
        adg_prom_sample(sb, "amxdiag_probe_binary_verdict", l, ADG_ARRAY_LEN(l), (double)c->status);
    }
}

static void rate(adg_strbuf *sb, const char *name, const char *op, const char *cores, const adg_rate *r, bool frac)
{
    if (r->ops_per_s <= 0)
        return;
    adg_prom_label l[] = {{"op", op}, {"cores", cores}};
    if (!frac)
        adg_prom_sample(sb, name, l, 2, r->ops_per_s);
    else if (r->per_cycle > 0 && r->peak_per_cycle > 0)
        adg_prom_sample(sb, name, l, 2, r->per_cycle / r->peak_per_cycle);
}

static double iso8601_seconds(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return end && !*end ? (double)timegm(&tm) : 0;
}

static void ceilings(const adg_ceilings *c, adg_strbuf *sb)
{
    if (!c)
        return;
    static const char *const ops[] = {"amx_int8", "amx_bf16", "vnni"};
    const adg_rate *core[] = {&c->amx_int8_core, &c->amx_bf16_core, &c->vnni_core};
    const adg_rate *all[] = {&c->amx_int8_all, &c->amx_bf16_all, &c->vnni_all};
    adg_prom_family(sb, "amxdiag_ceiling_ops_per_second", "gauge",
                    "Measured compute ceiling (probe --bench; a multiply-add counts 2): op amx_int8 (TDPBSSD), "
                    "amx_bf16 (TDPBF16PS), vnni (VPDPBUSD); cores one or all");
    for (size_t i = 0; i < ADG_ARRAY_LEN(ops); i++) {
        rate(sb, "amxdiag_ceiling_ops_per_second", ops[i], "one", core[i], false);
        rate(sb, "amxdiag_ceiling_ops_per_second", ops[i], "all", all[i], false);
    }
    adg_prom_family(sb, "amxdiag_ceiling_peak_ratio", "gauge",
                    "Measured ops per cycle per core over the microarchitecture's theoretical peak");
    for (size_t i = 0; i < ADG_ARRAY_LEN(ops); i++) {
        rate(sb, "amxdiag_ceiling_peak_ratio", ops[i], "one", core[i], true);
        rate(sb, "amxdiag_ceiling_peak_ratio", ops[i], "all", all[i], true);
    }
    if (c->nnodes) {
        adg_prom_family(sb, "amxdiag_ceiling_memory_read_bytes_per_second", "gauge",
                        "Measured memory read bandwidth per NUMA node (512-bit loads; cores one or all of the node)");
        for (size_t i = 0; i < c->nnodes && i < ADG_CEIL_MAX_NODES; i++) {
            char node[16];
            snprintf(node, sizeof node, "%d", c->nodes[i].node);
            adg_prom_sample(sb, "amxdiag_ceiling_memory_read_bytes_per_second",
                            (adg_prom_label[]){{"node", node}, {"cores", "all"}}, 2, c->nodes[i].read_gbs * 1e9);
            adg_prom_sample(sb, "amxdiag_ceiling_memory_read_bytes_per_second",
                            (adg_prom_label[]){{"node", node}, {"cores", "one"}}, 2, c->nodes[i].read_core_gbs * 1e9);
        }
        adg_prom_family(sb, "amxdiag_ceiling_memory_triad_bytes_per_second", "gauge",
                        "Measured STREAM triad bandwidth per NUMA node (24 bytes per element)");
        for (size_t i = 0; i < c->nnodes && i < ADG_CEIL_MAX_NODES; i++) {
            char node[16];
            snprintf(node, sizeof node, "%d", c->nodes[i].node);
            adg_prom_sample(sb, "amxdiag_ceiling_memory_triad_bytes_per_second", (adg_prom_label[]){{"node", node}},
                            1, c->nodes[i].triad_gbs * 1e9);
        }
    }
    if (c->clock_ghz > 0) {
        adg_prom_family(sb, "amxdiag_ceiling_clock_hertz", "gauge",
                        "Core clock measured with a dependent-multiply chain (cores one, or the mean of all)");
        adg_prom_sample(sb, "amxdiag_ceiling_clock_hertz", (adg_prom_label[]){{"cores", "one"}}, 1, c->clock_ghz * 1e9);
        if (c->clock_all_ghz > 0)
            adg_prom_sample(sb, "amxdiag_ceiling_clock_hertz", (adg_prom_label[]){{"cores", "all"}}, 1,
                            c->clock_all_ghz * 1e9);
    }
    double t = iso8601_seconds(c->created);
    if (t > 0) {
        adg_prom_family(sb, "amxdiag_ceiling_measured_timestamp_seconds", "gauge",
                        "When the cached ceilings were measured (Unix time)");
        adg_prom_sample(sb, "amxdiag_ceiling_measured_timestamp_seconds", NULL, 0, t);
    }
}

void probe_prom_render(const probe_report *r, const probe_prom_opts *o, adg_strbuf *out)
{
    identity(r, o, out);
    checks(r, out);
    gpu_verdicts(r, out);
    binary_verdicts(r, out);
    ceilings(o ? o->ceilings : NULL, out);
}

adg_error *probe_prom_check_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return adg_error_hint(adg_error_errno(ADG_E_IO, errno, "--textfile directory %s", dir),
                              "give node_exporter's --collector.textfile.directory (it must exist)");
    if (!S_ISDIR(st.st_mode))
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "--textfile %s is not a directory", dir),
                              "give node_exporter's --collector.textfile.directory, not a file");
    return NULL;
}

adg_error *probe_prom_write_textfile(const char *dir, const char *text, char **path_out)
{
    if (path_out)
        *path_out = NULL;
    adg_error *e = probe_prom_check_dir(dir);
    if (e)
        return e;
    char *path = NULL;
    if (asprintf(&path, "%s/%s", dir, PROBE_PROM_TEXTFILE) < 0)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    e = adg_write_file_atomic(path, text, strlen(text));
    if (e) {
        free(path);
        return e;
    }
    if (path_out)
        *path_out = path;
    else
        free(path);
    return NULL;
}

adg_error *probe_prom_emit(const probe_report *r, bool replay, double duration_s, const char *textfile_dir,
                           FILE *out, char **written)
{
    if (written)
        *written = NULL;
    adg_ceilings c;
    bool found = false;
    if (!replay) {
        adg_error *e = adg_ceilings_load_current(&c, &found);
        if (e) { /* a corrupt cache must not cost the fleet the checks */
            fprintf(stderr, "amxdiag probe: warning: ceilings left out: %s\n", adg_error_msg(e));
            adg_error_free(e);
            found = false;
        }
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    probe_prom_opts o = {.ceilings = found ? &c : NULL,
                         .duration_s = duration_s,
                         .timestamp_s = (double)now.tv_sec + now.tv_nsec * 1e-9};
    adg_strbuf sb;
    adg_sb_init(&sb);
    probe_prom_render(r, &o, &sb);
    if (sb.failed) {
        adg_sb_free(&sb);
        return adg_error_new(ADG_E_NOMEM, "out of memory rendering the metrics");
    }
    adg_error *e = NULL;
    if (textfile_dir)
        e = probe_prom_write_textfile(textfile_dir, sb.buf ? sb.buf : "", written);
    if (!e && out && sb.buf && fputs(sb.buf, out) == EOF)
        e = adg_error_errno(ADG_E_IO, errno, "cannot write the metrics to standard output");
    adg_sb_free(&sb);
    return e;
}
