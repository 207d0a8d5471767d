/* The GPU part of profile's summaries. */
#include "profiler/cupti_summary.h"

#include <string.h>

#include "common/adg_term.h"
#include "common/adg_util.h"

static double num(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

/* "kern_gemv_q4_0(...)" is enough to recognise a kernel; the full signature is in the record. */
static const char *short_name(const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s", name ? name : "?");
    char *paren = strchr(buf, '(');
    if (paren && paren != buf)
        *paren = 0;
    return buf;
}

void prof_cupti_summary_print(FILE *f, json_t *rec, bool color)
{
    json_t *gk = json_object_get(rec, "gpu_kernels");
    json_t *kernels = json_object_get(gk, "kernels");
    if (!json_is_object(gk))
        return;
    const char *B = color ? ADG_SGR_BOLD : "", *R = color ? ADG_SGR_RESET : "", *D = color ? ADG_SGR_DIM : "";
    json_t *gm = json_object_get(gk, "metrics");
    fprintf(f, "\n%sGPU kernels%s %s(%lld launches, %.3f s of kernel time)%s\n", B, R, D,
            (long long)json_integer_value(json_object_get(gk, "launches")), num(gk, "kernel_time_s"), R);
    if (!json_array_size(kernels)) {
        fprintf(f, "  no kernel ran\n");
        return;
    }
    fprintf(f, "  %7s %8s %10s  %-36s", "share", "count", "median", "kernel");
    if (gm)
        fprintf(f, " %10s %10s %6s %5s %6s", "DRAM/launch", "DRAM GB/s", "%peak", "SM%", "tensor");
    fputc('\n', f);
    size_t i;
    json_t *k;
    json_array_foreach(kernels, i, k) {
        if (i >= 10)
            break;
        char nb[256];
        fprintf(f, "  %6.1f%% %8lld %8.2f us  %-36.36s", 100 * num(k, "share"),
                (long long)json_integer_value(json_object_get(k, "count")), num(k, "median_us"),
                short_name(json_string_value(json_object_get(k, "name")), nb, sizeof nb));
        json_t *m = json_object_get(k, "metrics");
        if (gm && m) {
            char b[32];
            json_t *per = json_object_get(m, "dram_bytes_per_launch");
            fprintf(f, " %10s", per ? adg_fmt_bytes(json_number_value(per), b, sizeof b) : "-");
            json_t *bw = json_object_get(m, "dram_Bps");
            if (bw)
                fprintf(f, " %10.1f", json_number_value(bw) / 1e9);
            else
                fprintf(f, " %10s", "-");
            json_t *pk = json_object_get(m, "dram_pct_of_peak_bytes");
            if (!pk)
                pk = json_object_get(m, "dram_pct_of_peak");
            if (pk)
                fprintf(f, " %5.1f%%", json_number_value(pk));
            else
                fprintf(f, " %6s", "-");
            json_t *sm = json_object_get(m, "sm_throughput_pct");
            if (sm)
                fprintf(f, " %4.0f%%", json_number_value(sm));
            else
                fprintf(f, " %5s", "-");
            double t = 0;
            bool have_t = false;
            static const char *const tk[] = {"tensor_hmma_pct", "tensor_imma_pct", "tensor_gmma_pct"};
            for (size_t j = 0; j < ADG_ARRAY_LEN(tk); j++) {
                json_t *x = json_object_get(m, tk[j]);
                if (x && json_number_value(x) >= t) {
                    t = json_number_value(x);
                    have_t = true;
                }
            }
            if (have_t)
                fprintf(f, " %5.1f%%", t);
            else
                fprintf(f, " %6s", "-");
        } else if (gm)
            fprintf(f, " %10s", "(not profiled)");
        fputc('\n', f);
    }
    if (gm) {
        char pb[32] = "";
        json_t *peak = json_object_get(gm, "dram_peak_Bps");
        if (peak)
            snprintf(pb, sizeof pb, ", DRAM peak %.0f GB/s", json_number_value(peak) / 1e9);
        fprintf(f, "  %s(--gpu-metrics: CUPTI Range Profiler on %s, %lld launches profiled, kernel replay with %d "
                   "pass(es) per launch%s; DRAM and SM figures are per profiled pass, tensor = the busiest tensor "
                   "pipe's share of active cycles)%s\n",
                D, json_string_value(json_object_get(gm, "chip")) ? json_string_value(json_object_get(gm, "chip"))
                                                                   : "?",
                (long long)json_integer_value(json_object_get(gm, "profiled_launches")),
                (int)json_integer_value(json_object_get(gm, "passes")), pb, R);
        json_t *seen = json_object_get(gm, "launches_seen"), *smp = json_object_get(gm, "sampling");
        if (json_is_integer(seen) && json_is_object(smp)) {
            /* Which launches carry counters, and what the replay cost the run. */
            long long pk = (long long)json_integer_value(json_object_get(smp, "per_kernel"));
            long long cap = (long long)json_integer_value(json_object_get(smp, "max_launches"));
            char how[96];
            if (pk)
                snprintf(how, sizeof how, "at most %lld per kernel and grid%s", pk, cap ? "," : "");
            else
                snprintf(how, sizeof how, "%s", cap ? "every launch," : "every launch");
            if (cap)
                snprintf(how + strlen(how), sizeof how - strlen(how), " %lld in all", cap);
            fprintf(f, "  %s(counters for %lld of %lld launches: %s; the replay took %.2f s of the run, the "
                       "profiler's own calls %.2f s; AMXDIAG_GPU_METRICS_PER_KERNEL=0 and "
                       "AMXDIAG_GPU_METRICS_MAX_LAUNCHES=0 profile every launch)%s\n",
                    D, (long long)json_integer_value(json_object_get(gm, "launches_profiled")),
                    (long long)json_integer_value(seen), how, json_number_value(json_object_get(gm, "replay_s")),
                    json_number_value(json_object_get(gm, "overhead_s")), R);
        }
    }
}

json_t *prof_cupti_summary_json(json_t *rec)
{
    json_t *gk = json_object_get(rec, "gpu_kernels");
    if (!json_is_object(gk))
        return NULL;
    json_t *top = json_array();
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(gk, "kernels"), i, k) {
        if (i >= 10)
            break;
        json_t *o = json_pack("{s:O?,s:O?,s:O?,s:O?,s:O?}", "name", json_object_get(k, "name"), "count",
                              json_object_get(k, "count"), "total_s", json_object_get(k, "total_s"), "median_us",
                              json_object_get(k, "median_us"), "share", json_object_get(k, "share"));
        if (json_object_get(k, "metrics"))
            json_object_set(o, "metrics", json_object_get(k, "metrics"));
        json_array_append_new(top, o);
    }
    json_t *out = json_pack("{s:O?,s:O?,s:o}", "kernel_time_s", json_object_get(gk, "kernel_time_s"), "launches",
                            json_object_get(gk, "launches"), "kernels", top);
    if (json_object_get(gk, "metrics"))
        json_object_set(out, "metrics", json_object_get(gk, "metrics"));
    return out;
}
