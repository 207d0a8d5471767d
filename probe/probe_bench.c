/* The bench section (--bench): measures the ceilings, caches them (common/adg_ceilings)
 * and reports each rate with its fraction of the theoretical peak at the measured clock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <numa.h>

#include "common/adg_ceilings.h"
#include "common/adg_log.h"
#include "common/adg_memread.h"
#include "common/adg_util.h"
#include "probe/probe_bench.h"
#include "probe/probe_cpu.h"
#include "probe/probe_sections.h"

static void fmt_rate(char *buf, size_t len, const adg_rate *r, const char *unit)
{
    int off = snprintf(buf, len, "%.3g %s (%d thread%s", r->ops_per_s / 1e12, unit, r->threads,
                       r->threads == 1 ? "" : "s");
    if (r->per_cycle > 0)
        off += snprintf(buf + off, len - (size_t)off, ", %.0f ops/cycle/core", r->per_cycle);
    if (r->peak_per_cycle > 0 && r->per_cycle > 0)
        snprintf(buf + off, len - (size_t)off, ", %.0f%% of %.0f", 100.0 * r->per_cycle / r->peak_per_cycle,
                 r->peak_per_cycle);
    snprintf(buf + strlen(buf), len - strlen(buf), ")");
}

int probe_bench_units(double scale, int threads, int siblings, char *why, size_t why_len)
{
    if (why_len)
        why[0] = 0;
    if (threads < 4 || !(scale > 0) || scale >= 0.6 * threads)
        return 0;
    const int units = scale < 1.5 ? 1 : (int)(scale + 0.5);
    if (siblings > 1)
        snprintf(why, why_len, "%d threads per core (SMT): siblings share one unit", siblings);
    else if (siblings == 1)
        snprintf(why, why_len, "the OS reports one thread per core, so the host shares cores between these CPUs: "
                               "a VM whose vCPUs are hyperthreads, or an oversubscribed host");
    else
        snprintf(why, why_len, "SMT siblings or a shared host (the topology is not known)");
    return units;
}

/* Threads per core of CPU 0 as the OS reports them (thread_siblings_list, parsed by
 * libnuma), 0 unknown. */
static int os_siblings(void)
{
    char *data = NULL;
    size_t len = 0;
    adg_error *e = adg_read_file("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list", 4096, &data, &len);
    if (e) {
        adg_error_free(e);
        return 0;
    }
    data[strcspn(data, "\n")] = 0;
    struct bitmask *bm = numa_parse_cpustring_all(data);
    free(data);
    const int n = bm ? (int)numa_bitmask_weight(bm) : 0;
    if (bm)
        numa_bitmask_free(bm);
    return n;
}

static void rate_check(probe_report *rep, const char *id, const char *title, const adg_rate *core,
                       const adg_rate *all, const char *unit, const char *what, int siblings)
{
    if (core->ops_per_s <= 0) {
        probe_add(rep, "bench", id, PROBE_SKIP, title, core->why[0] ? core->why : "not measured", "not measured");
        return;
    }
    char a[160], b[160], why[200];
    fmt_rate(a, sizeof a, core, unit);
    fmt_rate(b, sizeof b, all, unit);
    double scale = all->threads > 0 && core->ops_per_s > 0 ? all->ops_per_s / core->ops_per_s : 0;
    const int units = probe_bench_units(scale, all->threads, siblings, why, sizeof why);
    if (!units) {
        probe_add(rep, "bench", id, PROBE_INFO, title, what, "1 core: %s\nall cores: %s; scaling %.1fx on %d threads", a,
                  b, scale, all->threads);
        return;
    }
    probe_check *k = probe_add(rep, "bench", id, PROBE_INFO, title, what,
                               "1 core: %s\nall cores: %s; scaling %.1fx on %d threads: about %d units serve them (%s)",
                               a, b, scale, all->threads, units, why);
    probe_check_set_remedy(k, "past about %d threads this work gains little: compare `amxdiag bench kernels --threads %d` "
                              "with the default, and expect the all-thread figure, not %d x the one-core one",
                           units, units, all->threads);
}

static json_t *rate_json(const adg_rate *r)
{
    return json_pack("{s:f,s:i,s:f,s:f}", "ops_per_s", r->ops_per_s, "threads", r->threads, "per_cycle_per_core",
                     r->per_cycle, "peak_per_cycle_per_core", r->peak_per_cycle);
}

adg_error *probe_bench_section(const probe_opts *o, probe_src *src, probe_report *rep)
{
    (void)o;
    if (probe_src_is_replay(src)) {
        probe_add(rep, "bench", "bench.run", PROBE_SKIP, "Machine ceilings", "not run from a snapshot", "snapshot");
        return NULL;
    }
    probe_cpu cpu;
    probe_cpu_decode(src, &cpu);
    uint64_t xcr0 = 0;
    bool x = probe_src_xcr0(src, &xcr0);
    probe_bench_opts bo = {
        .amx = cpu.feat[PROBE_F_AMX_TILE] && cpu.feat[PROBE_F_AMX_INT8] && cpu.feat[PROBE_F_AMX_BF16] && x &&
               (xcr0 & 0x60000) == 0x60000,
        .vnni = cpu.feat[PROBE_F_AVX512_VNNI] && x && (xcr0 & 0xe6) == 0xe6,
    };
    if (cpu.uarch) {
        bo.amx_int8_peak = cpu.uarch->amx_int8_ops;
        bo.amx_bf16_peak = cpu.uarch->amx_bf16_ops;
        bo.vnni_peak = cpu.uarch->vnni512_ops;
    }
    const char *env = getenv("AMXDIAG_BENCH_SECONDS"); /* tests shorten the run */
    double secs;
    if (env && adg_parse_double(env, &secs) && secs > 0 && secs < 10)
        bo.seconds = secs;
    /* tests: a disturbed clock measurement (docs/probe.md, bench.clock) */
    const char *cs = getenv("AMXDIAG_BENCH_CLOCK_SCALE");
    double scale;
    if (cs && adg_parse_double(cs, &scale) && scale > 0 && scale <= 1)
        bo.clock_scale = scale;
    /* the read pass also with software prefetch this far ahead (AMXDIAG_BENCH_READ_PF: bytes,
     * 0 = the plain loop only) */
    bo.read_pf = adg_read_pf_bytes();
    const char *mb = getenv("AMXDIAG_BENCH_MEM_MIB");
    uint64_t mib;
    if (mb && adg_parse_u64(mb, &mib) && mib >= 1 && mib <= 65536)
        bo.mem_bytes = (size_t)mib << 20;
    adg_ceilings c;
    probe_bench_timing tm;
    adg_error *e = probe_bench_run(&bo, &c, &tm);
    if (e) {
        probe_check *k = probe_add(rep, "bench", "bench.run", PROBE_FAIL, "Machine ceilings",
                                   "the benchmark did not finish", "%s", adg_error_msg(e));
        probe_check_set_remedy(k, "%s", adg_error_remedy(e) ? adg_error_remedy(e) : "run it again");
        adg_error_free(e);
        return NULL;
    }
    if (c.clock_ghz > 0)
        probe_add(rep, "bench", "bench.clock", PROBE_INFO, "Core clock",
                  "measured with a chain of dependent multiplies (3 cycles each); AMX-heavy code may run at a lower "
                  "licence clock",
                  "%.2f GHz on 1 core, %.2f GHz mean with all %d threads running", c.clock_ghz, c.clock_all_ghz,
                  c.vnni_all.threads ? c.vnni_all.threads : c.amx_int8_all.threads);
    else {
        probe_check *k = probe_add(
            rep, "bench", "bench.clock", PROBE_WARN, "Core clock",
            "the dependent-multiply loop gave an implausible clock (outside 0.3-7 GHz, or one at which a compute loop "
            "beat its theoretical peak: the host took the vCPU away or throttled it while the clock was measured): "
            "rates are reported without fractions of the theoretical peak",
            "%s", c.clock_note[0] ? c.clock_note : "no plausible clock measured");
        probe_check_set_remedy(k, "run `amxdiag probe --bench` again when the host is quieter (the figures are cached "
                                  "per machine; a new run replaces them)");
    }
    const int sib = os_siblings();
    rate_check(rep, "bench.amx_int8", "AMX int8 (TDPBSSD)", &c.amx_int8_core, &c.amx_int8_all, "TOPS",
               "2x2-blocked tile loop without memory traffic: the compute ceiling of int8 AMX kernels", sib);
    rate_check(rep, "bench.amx_bf16", "AMX bf16 (TDPBF16PS)", &c.amx_bf16_core, &c.amx_bf16_all, "TFLOPS",
               "2x2-blocked tile loop without memory traffic: the compute ceiling of bf16 AMX kernels", sib);
    rate_check(rep, "bench.vnni", "AVX-512 VNNI (VPDPBUSD)", &c.vnni_core, &c.vnni_all, "TOPS",
               "12 independent zmm accumulators: the ceiling of int8 kernels without tiles (llama.cpp at batch 1)", sib);
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    for (size_t i = 0; i < c.nnodes; i++) {
        const adg_node_bw *n = &c.nodes[i];
        char id[48], buf[32], l3s[32];
        snprintf(id, sizeof id, "bench.memory.node%d", n->node);
        /* A read buffer that is not well above the L3 measures the cache, not the memory. */
        bool small = l3 > 0 && n->buffer_bytes < 4.0 * (double)l3;
        probe_check *k = probe_add(
            rep, "bench", id, small ? PROBE_WARN : PROBE_INFO, "Memory bandwidth",
            small ? "the buffer is less than 4x the L3 (too little free memory, or AMXDIAG_BENCH_MEM_MIB): part of each pass hits the cache, so "
                    "these figures overstate the memory's bandwidth"
                  : "reads with 512-bit loads and a STREAM triad (24 bytes per element) from memory on this node, "
                    "threads pinned to its CPUs: the ceiling of bandwidth-bound token generation",
            "node %d, %s buffer%s%s: read %.1f GB/s (%d threads; plain loop %.1f, prefetching %.1f, %d streams per "
            "thread %.1f), %.1f GB/s (1 core); triad %.1f GB/s",
            n->node, adg_fmt_bytes(n->buffer_bytes, buf, sizeof buf), small ? " vs L3 " : "",
            small ? adg_fmt_bytes((double)l3, l3s, sizeof l3s) : "", n->read_gbs, n->threads, n->read_plain_gbs,
            n->read_pf_gbs, ADG_MEMREAD_STREAMS, n->read_multi_gbs, n->read_core_gbs, n->triad_gbs);
        if (small)
            probe_check_set_remedy(k, "run --bench on a machine (or VM size) with at least 10x the L3 in free memory");
    }
    char *path = NULL;
    e = adg_ceilings_save(&c);
    adg_error *pe = adg_ceilings_path(c.cpu, c.ncpus, &path);
    if (pe)
        adg_error_free(pe);
    adg_strbuf steps;
    adg_sb_init(&steps);
    for (int i = 0; i < tm.n && i < 16; i++)
        adg_sb_printf(&steps, "%s%s %.2f s", i ? ", " : "", tm.name[i], tm.seconds[i]);
    probe_check *k = probe_add(rep, "bench", "bench.cache", e ? PROBE_WARN : PROBE_INFO, "Ceilings cache",
                               e ? "the figures could not be cached: later commands will not compare against them"
                                 : "later commands (bench, report) compare their rates against these figures",
                               "%s %s\nmeasured in %.1f s: %s", e ? "not written:" : "written to",
                               e ? adg_error_msg(e) : path, c.seconds, steps.buf ? steps.buf : "");
    adg_sb_free(&steps);
    if (e) {
        probe_check_set_remedy(k, "%s", adg_error_remedy(e) ? adg_error_remedy(e) : "check the cache directory");
        adg_error_free(e);
    }
    free(path);
    json_t *mem = json_array();
    for (size_t i = 0; i < c.nnodes; i++)
        json_array_append_new(mem, json_pack("{s:i,s:f,s:f,s:f,s:f,s:f,s:f}", "node", c.nodes[i].node, "read_gbs",
                                             c.nodes[i].read_gbs, "read_core_gbs", c.nodes[i].read_core_gbs,
                                             "read_plain_gbs", c.nodes[i].read_plain_gbs, "read_pf_gbs",
                                             c.nodes[i].read_pf_gbs, "read_multi_gbs", c.nodes[i].read_multi_gbs,
                                             "triad_gbs", c.nodes[i].triad_gbs));
    probe_report_set_fact(rep, "bench", "clock_ghz", json_real(c.clock_ghz));
    probe_report_set_fact(rep, "bench", "amx_int8_core", rate_json(&c.amx_int8_core));
    probe_report_set_fact(rep, "bench", "amx_int8_all", rate_json(&c.amx_int8_all));
    probe_report_set_fact(rep, "bench", "amx_bf16_core", rate_json(&c.amx_bf16_core));
    probe_report_set_fact(rep, "bench", "amx_bf16_all", rate_json(&c.amx_bf16_all));
    probe_report_set_fact(rep, "bench", "vnni_core", rate_json(&c.vnni_core));
    probe_report_set_fact(rep, "bench", "vnni_all", rate_json(&c.vnni_all));
    probe_report_set_fact(rep, "bench", "memory", mem);
    probe_report_set_fact(rep, "bench", "seconds", json_real(c.seconds));
    return NULL;
}
