/* The memory section and the summaries (human and --json) of a run record. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_ceilings.h"
#include "common/adg_term.h"
#include "common/adg_util.h"
#include "profiler/cupti_summary.h"
#include "profiler/prof_nvml.h"
#include "profiler/prof_session.h"

/* Mean and peak of a metric summed over its instances (samples aligned by index:
 * every instance is sampled at the same ticks). */
static bool bus_stats(adg_bus *bus, const char *name, double *mean, double *peak)
{
    int m = adg_bus_find(bus, name);
    if (m < 0)
        return false;
    char **names;
    size_t ni = adg_bus_instances(bus, m, &names);
    double *sum = NULL;
    size_t n = 0;
    for (size_t i = 0; i < ni; i++) {
        adg_point *pts;
        size_t np = adg_bus_series_copy(bus, m, names[i], &pts);
        if (!sum) {
            sum = calloc(np ? np : 1, sizeof *sum);
            n = np;
        }
        for (size_t k = 0; sum && k < np && k < n; k++)
            sum[k] += pts[k].value;
        free(pts);
    }
    adg_bus_free_names(names, ni);
    if (!sum || !n) {
        free(sum);
        return false;
    }
    double s = 0, p = 0;
    for (size_t k = 0; k < n; k++) {
        s += sum[k];
        if (sum[k] > p)
            p = sum[k];
    }
    free(sum);
    *mean = s / (double)n;
    *peak = p;
    return true;
}

json_t *prof_memory_section(adg_bus *bus)
{
    json_t *sec = json_object();
    double rm, rp, wm, wp;
    if (bus_stats(bus, "mem.read_bw", &rm, &rp) && bus_stats(bus, "mem.write_bw", &wm, &wp)) {
        json_object_set_new(sec, "source", json_string("uncore IMC CAS counts (whole sockets)"));
        json_object_set_new(sec, "read_Bps_mean", json_real(rm));
        json_object_set_new(sec, "read_Bps_peak", json_real(rp));
        json_object_set_new(sec, "write_Bps_mean", json_real(wm));
        json_object_set_new(sec, "write_Bps_peak", json_real(wp));
    } else if (bus_stats(bus, "mem.mbm_bw", &rm, &rp)) {
        json_object_set_new(sec, "source", json_string("resctrl MBM total bytes (whole system)"));
        json_object_set_new(sec, "total_Bps_mean", json_real(rm));
        json_object_set_new(sec, "total_Bps_peak", json_real(rp));
    } else {
        json_object_set_new(sec, "source", json_null());
        json_object_set_new(sec, "note", json_string("no bandwidth source here: no uncore IMC PMU and no resctrl MBM "
                                                     "(see unavailable)"));
    }
    /* The reference: the read bandwidth `amxdiag probe --bench` measured on this machine. */
    adg_ceilings c;
    bool found = false;
    adg_error *e = adg_ceilings_load_current(&c, &found);
    double ceil = 0;
    for (size_t i = 0; !e && found && i < c.nnodes; i++)
        ceil += c.nodes[i].read_gbs * 1e9;
    if (e || !found || ceil <= 0) {
        json_object_set_new(sec, "ceiling_Bps", json_null());
        json_object_set_new(sec, "ceiling_note",
                            json_string(e ? adg_error_msg(e) : "no measured ceiling — run amxdiag probe --bench"));
    } else {
        char note[160];
        snprintf(note, sizeof note, "%.1f GB/s read, all nodes (amxdiag probe --bench, %s)", ceil * 1e-9, c.created);
        json_object_set_new(sec, "ceiling_Bps", json_real(ceil));
        json_object_set_new(sec, "ceiling_note", json_string(note));
        json_t *m = json_object_get(sec, "read_Bps_mean");
        if (!m)
            m = json_object_get(sec, "total_Bps_mean");
        if (m)
            json_object_set_new(sec, "mean_pct_of_ceiling", json_real(100.0 * json_number_value(m) / ceil));
    }
    adg_error_free(e);
    return sec;
}

static const char *const classes[] = {"amx", "avx512", "avx2", "sse", "scalar", "unknown"};

static double num(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

/* Spin-wait samples (threads in PAUSE loops: pool barriers, spin locks) and the classes of
 * the rest, when the record has them (prof_isa_spins). */
static void spin_line(FILE *f, json_t *o, const char *indent, const char *B, const char *R, const char *D)
{
    json_t *busy = json_object_get(o, "by_function_busy");
    const double spin = num(o, "spin_share");
    if (!busy || spin < 0.05)
        return;
    fprintf(f, "%sspin-wait %.1f%% %s(PAUSE loops: threads waiting for work)%s; the rest:", indent, spin, D, R);
    for (size_t c = 0; c < ADG_ARRAY_LEN(classes); c++) {
        double x = num(busy, classes[c]);
        if (x >= 0.05)
            fprintf(f, " %s%s %.1f%%%s", c == 0 ? B : "", classes[c], x, c == 0 ? R : "");
    }
    fprintf(f, "\n");
}

static const char *str(json_t *o, const char *k, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : dflt;
}

static const char *basename_of(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

void prof_summary_print(FILE *f, json_t *rec, const char *path, bool color)
{
    const char *B = color ? ADG_SGR_BOLD : "", *R = color ? ADG_SGR_RESET : "", *D = color ? ADG_SGR_DIM : "";
    json_t *wl = json_object_get(rec, "workload");
    char cmd[512] = "";
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(wl, "command"), i, v)
    {
        size_t l = strlen(cmd);
        snprintf(cmd + l, sizeof cmd - l, "%s%s", i ? " " : "", json_string_value(v));
    }
    fprintf(f, "%samxdiag profile%s: %s (pid %d) — %s", B, R, cmd[0] ? cmd : "attached process",
            (int)json_integer_value(json_object_get(wl, "pid")), str(rec, "status", "?"));
    if (json_object_get(wl, "exit_code"))
        fprintf(f, ", exit %d", (int)json_integer_value(json_object_get(wl, "exit_code")));
    if (json_object_get(wl, "signal_name"))
        fprintf(f, ", killed by %s", str(wl, "signal_name", "?"));
    fprintf(f, ", %.2f s\n", num(wl, "duration_s"));
    fprintf(f, "record: %s\n", path);

    json_t *isa = json_object_get(rec, "isa_share");
    if (isa) {
        fprintf(f, "\n%sCPU time by ISA class%s %s(%lld cpu-clock samples of user code at %d Hz%s)%s\n", B, R, D,
                (long long)json_integer_value(json_object_get(isa, "samples")),
                (int)json_integer_value(json_object_get(isa, "freq_hz")),
                json_integer_value(json_object_get(isa, "lost")) ? ", some lost" : "", R);
        fprintf(f, "  %-8s %10s %10s\n", "class", "functions", "blocks");
        for (size_t c = 0; c < ADG_ARRAY_LEN(classes); c++)
            fprintf(f, "  %-8s %9.1f%% %9.1f%%\n", classes[c], num(json_object_get(isa, "by_function"), classes[c]),
                    num(json_object_get(isa, "by_block"), classes[c]));
        fprintf(f, "  %s(functions: class of the whole sampled function; blocks: class of the sampled instruction's "
                   "block)%s\n", D, R);
        spin_line(f, isa, "  ", B, R, D);
        const char *pname;
        json_t *ph;
        json_object_foreach(json_object_get(isa, "phases"), pname, ph)
        {
            fprintf(f, "  during %-10s", pname);
            for (size_t c = 0; c < ADG_ARRAY_LEN(classes); c++) {
                double x = num(json_object_get(ph, "by_function"), classes[c]);
                if (x >= 0.05)
                    fprintf(f, " %s %.1f%%", classes[c], x);
            }
            fprintf(f, "  %s(by function, %lld samples)%s\n", D,
                    (long long)json_integer_value(json_object_get(ph, "samples")), R);
            spin_line(f, ph, "              ", B, R, D);
        }
        json_t *hot = json_object_get(rec, "hot_functions");
        if (json_array_size(hot)) {
            fprintf(f, "\n%shot functions%s\n  %7s  %-7s %-40s %s\n", B, R, "share", "class", "function", "module");
            json_array_foreach(hot, i, v)
            {
                if (i >= 12)
                    break;
                fprintf(f, "  %6.1f%%  %-7s %-40.40s %s\n", num(v, "share"), str(v, "class", "?"),
                        str(v, "function", "?"), basename_of(str(v, "module", "?")));
            }
        }
        json_t *threads = json_object_get(isa, "threads");
        if (json_array_size(threads) > 1) {
            fprintf(f, "\n%sthreads%s (by function class)\n  %8s %-16s %7s", B, R, "tid", "comm", "cpu s");
            for (size_t c = 0; c < ADG_ARRAY_LEN(classes); c++)
                fprintf(f, " %7s", classes[c]);
            fputc('\n', f);
            json_array_foreach(threads, i, v)
            {
                if (i >= 8)
                    break;
                fprintf(f, "  %8d %-16.16s %7.2f", (int)json_integer_value(json_object_get(v, "tid")),
                        str(v, "comm", "?"), num(v, "cpu_s"));
                for (size_t c = 0; c < ADG_ARRAY_LEN(classes); c++)
                    fprintf(f, " %6.1f%%", num(json_object_get(v, "by_function"), classes[c]));
                fputc('\n', f);
            }
        }
    }

    json_t *mem = json_object_get(rec, "memory");
    if (mem) {
        char a[32], b[32];
        fprintf(f, "\n%smemory bandwidth%s: ", B, R);
        if (json_object_get(mem, "read_Bps_mean"))
            fprintf(f, "read %s/s mean, write %s/s mean (%s)\n", adg_fmt_bytes(num(mem, "read_Bps_mean"), a, sizeof a),
                    adg_fmt_bytes(num(mem, "write_Bps_mean"), b, sizeof b), str(mem, "source", ""));
        else if (json_object_get(mem, "total_Bps_mean"))
            fprintf(f, "%s/s mean, %s/s peak (%s)\n", adg_fmt_bytes(num(mem, "total_Bps_mean"), a, sizeof a),
                    adg_fmt_bytes(num(mem, "total_Bps_peak"), b, sizeof b), str(mem, "source", ""));
        else
            fprintf(f, "not measured here (%s)\n", str(mem, "note", ""));
        json_array_foreach(json_object_get(mem, "estimated"), i, v)
            fprintf(f, "  %-10s %s/s estimated (bytes the ops move / time in ops)\n", str(v, "test", "?"),
                    adg_fmt_bytes(num(v, "Bps"), a, sizeof a));
        fprintf(f, "  ceiling: %s\n", str(mem, "ceiling_note", "?"));
    }
    json_t *numa = json_object_get(rec, "numa");
    if (numa) {
        fprintf(f, "\n%sNUMA%s: %d node(s)", B, R, (int)json_integer_value(json_object_get(numa, "nodes")));
        json_array_foreach(json_object_get(numa, "per_node"), i, v)
        {
            char a[32];
            fprintf(f, "%s node%d %s resident, %.0f%% of thread time", i ? ";" : ":",
                    (int)json_integer_value(json_object_get(v, "node")),
                    adg_fmt_bytes(num(v, "resident_bytes_peak"), a, sizeof a), num(v, "thread_time_pct"));
        }
        fputc('\n', f);
        json_array_foreach(json_object_get(numa, "warnings"), i, v) fprintf(f, "  warning: %s\n", json_string_value(v));
    }
    json_t *res = json_object_get(wl, "results");
    if (json_array_size(res)) {
        fprintf(f, "\n%sworkload%s (%s output)\n", B, R, str(wl, "recognised", "?"));
        if (json_string_value(json_object_get(wl, "threads_note")))
            fprintf(f, "  %skernel threads: %s%s\n", D, str(wl, "threads_note", ""), R);
        json_array_foreach(res, i, v)
        {
            fprintf(f, "  %-14s %10.2f t/s", str(v, "test", "?"), num(v, "tokens_per_s"));
            if (num(v, "stddev") > 0)
                fprintf(f, " ± %.2f", num(v, "stddev"));
            fputc('\n', f);
        }
    }
    prof_cupti_summary_print(f, rec, color);
    prof_nvml_summary_print(f, rec, color);
    json_t *un = json_object_get(rec, "unavailable");
    if (json_array_size(un)) {
        fprintf(f, "\n%snot measured here%s\n", B, R);
        json_array_foreach(un, i, v) fprintf(f, "  %s: %s\n", str(v, "what", "?"), str(v, "reason", "?"));
    }
}

json_t *prof_summary_json(json_t *rec, const char *path, int exit_code)
{
    json_t *hot = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rec, "hot_functions"), i, v)
    {
        if (i >= 10)
            break;
        json_array_append(hot, v);
    }
    json_t *isa = json_object_get(rec, "isa_share");
    json_t *out = json_pack("{s:s,s:s,s:s,s:i,s:O?,s:O?,s:O?,s:o,s:O?,s:O?,s:O?,s:O?}", "schema", "amxdiag.profile/1",
                     "record", path, "status", str(rec, "status", "?"), "exit_code", exit_code, "workload",
                     json_object_get(rec, "workload"), "isa_share_by_function", json_object_get(isa, "by_function"),
                     "isa_share_by_block", json_object_get(isa, "by_block"), "hot_functions", hot, "memory",
                     json_object_get(rec, "memory"), "numa", json_object_get(rec, "numa"), "pmu",
                     json_object_get(rec, "pmu"), "unavailable", json_object_get(rec, "unavailable"));
    json_t *gpu = prof_cupti_summary_json(rec);
    if (out && gpu)
        json_object_set_new(out, "gpu", gpu);
    else
        json_decref(gpu);
    json_t *nv = prof_nvml_summary_json(rec);
    if (out && nv)
        json_object_set_new(out, "nvml", nv);
    else
        json_decref(nv);
    return out;
}
