/* The numa section: nodes, CPUs and memory per node, distances, this process's binding
 * (what numactl set), sub-NUMA clustering hints, NVIDIA devices' nodes, NUMA balancing
 * and transparent huge pages.  libnuma answers live; its results are recorded. */
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/adg_util.h"
#include "probe/probe_sections.h"

static json_t *bitmask_list(struct bitmask *bm, int max)
{
    json_t *a = json_array();
    for (int i = 0; i <= max && i < (int)(bm->size); i++)
        if (numa_bitmask_isbitset(bm, (unsigned)i))
            json_array_append_new(a, json_integer(i));
    return a;
}

static const char *policy_name(int mode)
{
    switch (mode) {
    case MPOL_DEFAULT: return "default";
    case MPOL_PREFERRED: return "preferred";
    case MPOL_BIND: return "bind";
    case MPOL_INTERLEAVE: return "interleave";
    case MPOL_LOCAL: return "local";
#ifdef MPOL_PREFERRED_MANY
    case MPOL_PREFERRED_MANY: return "preferred_many";
#endif
    default: return mode == 5 ? "preferred_many" : mode == 6 ? "weighted_interleave" : "unknown";
    }
}

static json_t *gather_numa(probe_src *src, void *ctx)
{
    (void)ctx;
    (void)src;
    json_t *o = json_object();
    bool avail = numa_available() >= 0;
    json_object_set_new(o, "available", json_boolean(avail));
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);
    json_object_set_new(o, "configured_cpus", json_integer(ncpu));
    /* This process's CPU affinity: what taskset/numactl -C/-N left us. */
    cpu_set_t set;
    json_t *aff = json_array();
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int i = 0; i < CPU_SETSIZE; i++)
            if (CPU_ISSET(i, &set))
                json_array_append_new(aff, json_integer(i));
    json_object_set_new(o, "affinity", aff);
    if (!avail)
        return o;
    int maxn = numa_max_node();
    json_t *nodes = json_array();
    json_t *ids = json_array();
    for (int n = 0; n <= maxn; n++) {
        if (!numa_bitmask_isbitset(numa_all_nodes_ptr, (unsigned)n) && !numa_bitmask_isbitset(numa_nodes_ptr, (unsigned)n))
            continue;
        long long freeb = 0, total = numa_node_size64(n, &freeb);
        struct bitmask *cpus = numa_allocate_cpumask();
        json_t *cl = json_array();
        if (cpus && numa_node_to_cpus(n, cpus) == 0)
            json_decref(cl), cl = bitmask_list(cpus, (int)ncpu + 64);
        numa_free_cpumask(cpus);
        json_array_append_new(nodes, json_pack("{s:i,s:o,s:I,s:I}", "id", n, "cpus", cl, "mem_total",
                                               (json_int_t)(total < 0 ? 0 : total), "mem_free", (json_int_t)freeb));
        json_array_append_new(ids, json_integer(n));
    }
    json_object_set_new(o, "nodes", nodes);
    json_t *dist = json_array();
    size_t i, j;
    json_t *a, *b;
    json_array_foreach(ids, i, a) {
        json_t *row = json_array();
        json_array_foreach(ids, j, b)
            json_array_append_new(row, json_integer(numa_distance((int)json_integer_value(a), (int)json_integer_value(b))));
        json_array_append_new(dist, row);
    }
    json_decref(ids);
    json_object_set_new(o, "distances", dist);
    int mode = 0;
    struct bitmask *mem = numa_allocate_nodemask();
    if (mem && get_mempolicy(&mode, mem->maskp, mem->size + 1, NULL, 0) == 0)
        json_object_set_new(o, "mempolicy", json_pack("{s:s,s:o}", "mode", policy_name(mode), "nodes",
                                                      mode == MPOL_DEFAULT || mode == MPOL_LOCAL ? json_array()
                                                                                              : bitmask_list(mem, maxn)));
    else
        json_object_set_new(o, "mempolicy", json_pack("{s:s,s:i}", "mode", "unknown", "errno", errno));
    numa_free_nodemask(mem);
    struct bitmask *run = numa_get_run_node_mask();
    if (run) {
        json_object_set_new(o, "run_nodes", bitmask_list(run, maxn));
        numa_free_nodemask(run);
    }
    return o;
}

/* Packages and NVIDIA PCI functions come from sysfs files, recorded one by one. */
static json_t *gather_sysfs(probe_src *src, void *ctx)
{
    (void)ctx;
    json_t *o = json_object();
    json_t *pk = json_array();
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);
    for (long c = 0; c < ncpu && c < 4096; c++) {
        char path[96];
        int err;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/physical_package_id", c);
        const char *t = probe_src_file(src, path, &err);
        long id;
        if (!t || sscanf(t, "%ld", &id) != 1)
            continue;
        bool seen = false;
        size_t i;
        json_t *v;
        json_array_foreach(pk, i, v) seen |= json_integer_value(v) == id;
        if (!seen)
            json_array_append_new(pk, json_integer(id));
    }
    json_object_set_new(o, "packages", pk);
    json_t *gpus = json_array();
    int err;
    const json_t *devs = probe_src_dir(src, "/sys/bus/pci/devices", &err);
    size_t i;
    json_t *d;
    json_array_foreach(devs, i, d) {
        const char *addr = json_string_value(d);
        if (!addr)   /* a directory listing of anything but names (a damaged snapshot) */
            continue;
        char path[256];
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/vendor", addr);
        char *vend = NULL;
        size_t len;
        adg_error *e = adg_read_file(path, 64, &vend, &len);
        if (e) {
            adg_error_free(e);
            continue;
        }
        bool nv = !strncmp(vend, "0x10de", 6);
        free(vend);
        if (!nv)
            continue;
        char *cls = NULL, *node = NULL, *dev = NULL;
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/class", addr);
        adg_error_free(adg_read_file(path, 64, &cls, &len));
        if (!cls || strncmp(cls, "0x03", 4)) { /* display / 3D controllers only, not audio or bridges */
            free(cls);
            continue;
        }
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/numa_node", addr);
        adg_error_free(adg_read_file(path, 64, &node, &len));
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/device", addr);
        adg_error_free(adg_read_file(path, 64, &dev, &len));
        json_array_append_new(gpus, json_pack("{s:s,s:s,s:i}", "address", addr, "device",
                                              dev ? adg_rstrip(dev) : "?", "numa_node", node ? atoi(node) : -1));
        free(cls);
        free(node);
        free(dev);
    }
    json_object_set_new(o, "nvidia_pci", gpus);
    return o;
}

static bool list_has(const json_t *a, json_int_t v)
{
    size_t i;
    json_t *x;
    json_array_foreach(a, i, x) if (json_integer_value(x) == v) return true;
    return false;
}

/* MemTotal of /proc/meminfo in bytes, 0 when unknown. */
static double meminfo_total(probe_src *src)
{
    int err;
    const char *mi = probe_src_file(src, "/proc/meminfo", &err);
    const char *p = mi ? strstr(mi, "MemTotal:") : NULL;
    unsigned long long kb;
    return p && sscanf(p + 9, "%llu", &kb) == 1 ? (double)kb * 1024.0 : 0;
}

static void topology(probe_src *src, probe_report *rep, const json_t *nu, const json_t *sys)
{
    const json_t *nodes = json_object_get(nu, "nodes");
    size_t nn = json_array_size(nodes);
    adg_strbuf ev;
    adg_sb_init(&ev);
    size_t i;
    json_t *n;
    size_t memonly = 0;
    json_array_foreach(nodes, i, n) {
        char cl[256], tot[32], fr[32];
        probe_fmt_cpulist(json_object_get(n, "cpus"), cl, sizeof cl);
        size_t ncpu = json_array_size(json_object_get(n, "cpus"));
        if (!ncpu)
            memonly++;
        adg_sb_printf(&ev, "%snode %d: %zu CPUs (%s), %s (%s free)%s", i ? "\n" : "",
                      (int)json_integer_value(json_object_get(n, "id")), ncpu, cl,
                      adg_fmt_bytes((double)json_integer_value(json_object_get(n, "mem_total")), tot, sizeof tot),
                      adg_fmt_bytes((double)json_integer_value(json_object_get(n, "mem_free")), fr, sizeof fr),
                      ncpu ? "" : " - memory only (CXL or HBM?)");
    }
    /* Nodes that together report much less than the kernel's total: seen in VMs whose memory
     * is added by virtio-mem, where node meminfo undercounts. */
    double nodes_total = 0, mt = meminfo_total(src);
    json_array_foreach(nodes, i, n) nodes_total += (double)json_integer_value(json_object_get(n, "mem_total"));
    if (mt > 0 && nodes_total > 0 && nodes_total < 0.75 * mt) {
        char a[32], b[32];
        adg_sb_printf(&ev, "\nthe nodes report %s but /proc/meminfo MemTotal is %s: the per-node figures "
                           "undercount (seen in VMs whose memory is added by virtio-mem)",
                      adg_fmt_bytes(nodes_total, a, sizeof a), adg_fmt_bytes(mt, b, sizeof b));
    }
    probe_check *k = probe_add(rep, "numa", "numa.topology", PROBE_INFO, "NUMA nodes",
                               memonly ? "memory-only nodes hold no CPUs: threads never run local to them"
                                       : "each node's CPUs reach its memory fastest",
                               "%zu node%s\n%s", nn, nn == 1 ? "" : "s", ev.buf ? ev.buf : "");
    probe_check_set_data(k, json_deep_copy(nodes));
    adg_sb_free(&ev);

    adg_sb_init(&ev);
    const json_t *dist = json_object_get(nu, "distances");
    json_t *row;
    json_array_foreach(dist, i, row) {
        adg_sb_printf(&ev, "%snode %d:", i ? "\n" : "",
                      (int)json_integer_value(json_object_get(json_array_get(nodes, i), "id")));
        size_t j;
        json_t *d;
        json_array_foreach(row, j, d) adg_sb_printf(&ev, " %3d", (int)json_integer_value(d));
    }
    if (nn > 1)
        probe_add(rep, "numa", "numa.distances", PROBE_INFO, "Node distances",
                  "SLIT distances: 10 is local; remote memory costs roughly distance/10 times the latency", "%s",
                  ev.buf ? ev.buf : "");
    adg_sb_free(&ev);

    size_t npk = json_array_size(json_object_get(sys, "packages"));
    size_t cpu_nodes = nn - memonly;
    if (npk == 0) {
        probe_add(rep, "numa", "numa.snc", PROBE_SKIP, "Sub-NUMA clustering", "package ids not readable",
                  "%zu nodes with CPUs", cpu_nodes);
    } else if (cpu_nodes > npk) {
        probe_add(rep, "numa", "numa.snc", PROBE_INFO, "Sub-NUMA clustering",
                  "more nodes than packages: each socket is split (SNC2/SNC4 on Xeon, NPS2/NPS4 on EPYC); a thread "
                  "reaching the other half of its own socket pays a remote access, so bind threads and memory to "
                  "the same node",
                  "%zu package%s, %zu nodes with CPUs: %zu nodes per package - sub-NUMA clustering is probably on",
                  npk, npk == 1 ? "" : "s", cpu_nodes, cpu_nodes / npk);
    } else {
        probe_add(rep, "numa", "numa.snc", PROBE_INFO, "Sub-NUMA clustering",
                  "one node per package: no sub-NUMA clustering (or a VM that shows one node)",
                  "%zu package%s, %zu node%s with CPUs", npk, npk == 1 ? "" : "s", cpu_nodes, cpu_nodes == 1 ? "" : "s");
    }
}

static void binding(probe_report *rep, const json_t *nu, const json_t *sys)
{
    const json_t *nodes = json_object_get(nu, "nodes"), *aff = json_object_get(nu, "affinity");
    const json_t *pol = json_object_get(nu, "mempolicy");
    const char *mode = json_string_value(json_object_get(pol, "mode"));
    const json_t *memnodes = json_object_get(pol, "nodes");
    bool restricted_mem = mode && (!strcmp(mode, "bind") || !strcmp(mode, "preferred") ||
                                   !strcmp(mode, "preferred_many") || !strcmp(mode, "interleave"));
    /* Nodes whose CPUs this process may run on, and nodes left out entirely. */
    adg_strbuf left, cpun;
    adg_sb_init(&left);
    adg_sb_init(&cpun);
    size_t i, nleft = 0, total_cpus = 0;
    json_t *n;
    json_t *cpu_nodes = json_array();
    json_array_foreach(nodes, i, n) {
        json_int_t id = json_integer_value(json_object_get(n, "id"));
        const json_t *cl = json_object_get(n, "cpus");
        size_t j, inside = 0;
        json_t *c;
        json_array_foreach(cl, j, c) inside += list_has(aff, json_integer_value(c));
        total_cpus += json_array_size(cl);
        bool cpu_in = inside > 0, mem_in = !restricted_mem || list_has(memnodes, id);
        if (cpu_in)
            json_array_append_new(cpu_nodes, json_integer(id)), adg_sb_printf(&cpun, "%s%d", cpun.len ? "," : "", (int)id);
        bool has_mem = json_integer_value(json_object_get(n, "mem_total")) > 0;
        if ((!cpu_in && json_array_size(cl)) || (!mem_in && has_mem)) {
            adg_sb_printf(&left, "%snode %d (%s%s%s)", nleft ? ", " : "", (int)id, !cpu_in && json_array_size(cl) ? "CPUs" : "",
                          (!cpu_in && json_array_size(cl)) && (!mem_in && has_mem) ? " and " : "",
                          !mem_in && has_mem ? "memory" : "");
            nleft++;
        }
    }
    char al[256], ml[256];
    probe_fmt_cpulist(aff, al, sizeof al);
    probe_fmt_cpulist(memnodes, ml, sizeof ml);
    /* Memory bound away from where the threads run: every access is remote. */
    bool remote = false;
    if (restricted_mem && !strcmp(mode, "bind")) {
        remote = true;
        json_array_foreach(cpu_nodes, i, n) remote &= !list_has(memnodes, json_integer_value(n));
    }
    probe_status st = PROBE_PASS;
    const char *why = "this process may run on every CPU and allocate on every node";
    if (remote)
        st = PROBE_WARN, why = "memory is bound to nodes where none of the allowed CPUs are: every access is remote";
    else if (nleft)
        st = PROBE_WARN, why = "the binding leaves out nodes that hold CPUs or memory: their cores and memory "
                               "bandwidth are unused, and a GPU attached to them is remote";
    else if (json_array_size(aff) < total_cpus)
        st = PROBE_INFO, why = "the CPU affinity is a subset of the CPUs, within the nodes shown";
    probe_check *k = probe_add(rep, "numa", "numa.binding", st, "This process's CPU and memory binding", why,
                               "CPUs allowed: %s (%zu of %zu, on node%s %s); memory policy: %s%s%s%s%s", al,
                               json_array_size(aff), total_cpus, json_array_size(cpu_nodes) == 1 ? "" : "s",
                               cpun.buf ? cpun.buf : "none", mode ? mode : "unknown",
                               restricted_mem ? " nodes " : "", restricted_mem ? ml : "", nleft ? "; left out: " : "",
                               nleft ? left.buf : "");
    if (st == PROBE_WARN)
        probe_check_set_remedy(k, "if that is not what you meant, run without numactl/taskset or bind CPUs and "
                                  "memory to the same nodes (numactl -N X -m X); for a GPU run keep the GPU's node "
                                  "in the binding (see numa.gpu and the gpu section)");
    probe_check_set_data(k, json_pack("{s:O,s:O}", "affinity", aff, "mempolicy", pol ? pol : json_null()));
    (void)sys;
    json_decref(cpu_nodes);
    adg_sb_free(&left);
    adg_sb_free(&cpun);
}

static void gpus(probe_report *rep, const json_t *nu, const json_t *sys)
{
    const json_t *g = json_object_get(sys, "nvidia_pci");
    if (!json_array_size(g))
        return;
    const json_t *aff = json_object_get(nu, "affinity"), *nodes = json_object_get(nu, "nodes");
    adg_strbuf ev;
    adg_sb_init(&ev);
    size_t i;
    json_t *d;
    json_array_foreach(g, i, d) {
        int node = (int)json_integer_value(json_object_get(d, "numa_node"));
        const char *inside = "";
        size_t j;
        json_t *n;
        json_array_foreach(nodes, j, n) if (json_integer_value(json_object_get(n, "id")) == node) {
            size_t c;
            json_t *cpu;
            bool any = false;
            json_array_foreach(json_object_get(n, "cpus"), c, cpu) any |= list_has(aff, json_integer_value(cpu));
            inside = any ? ", inside this binding" : ", OUTSIDE this process's CPU binding";
        }
        /* A corrupt snapshot may lack either string: print "?" rather than follow NULL. */
        const char *addr = json_string_value(json_object_get(d, "address"));
        const char *dev = json_string_value(json_object_get(d, "device"));
        dev = dev && !strncmp(dev, "0x", 2) ? dev + 2 : dev ? dev : "?";
        adg_sb_printf(&ev, "%s%s (10de:%s): %s%d%s", i ? "; " : "", addr ? addr : "?", dev,
                      node < 0 ? "no NUMA node reported (" : "node ",
                      node, node < 0 ? ")" : inside);
    }
    probe_add(rep, "numa", "numa.gpu", PROBE_INFO, "NVIDIA devices' NUMA nodes",
              "host-device copies are fastest from the GPU's own node; the gpu section diagnoses CUDA under numactl",
              "%s", ev.buf ? ev.buf : "");
    adg_sb_free(&ev);
}

static void tunables(probe_src *src, probe_report *rep, size_t nnodes)
{
    int err;
    const char *bal = probe_src_file(src, "/proc/sys/kernel/numa_balancing", &err);
    if (bal && nnodes > 1)
        probe_add(rep, "numa", "numa.balancing", PROBE_INFO, "Automatic NUMA balancing",
                  "when on, the kernel migrates pages toward the threads touching them: helpful for unpinned runs, "
                  "noise (page faults, migrations) for pinned inference",
                  "/proc/sys/kernel/numa_balancing = %.*s", (int)strcspn(bal, "\n"), bal);
    const char *thp = probe_src_file(src, "/sys/kernel/mm/transparent_hugepage/enabled", &err);
    if (thp) {
        bool never = strstr(thp, "[never]") != NULL;
        probe_check *k = probe_add(rep, "numa", "numa.thp", never ? PROBE_WARN : PROBE_INFO, "Transparent huge pages",
                                   never ? "huge pages are off: multi-GiB weight buffers pay a TLB miss every 4 KiB"
                                         : "large weight buffers can use 2 MiB pages (fewer TLB misses)",
                                   "/sys/kernel/mm/transparent_hugepage/enabled: %.*s", (int)strcspn(thp, "\n"), thp);
        if (never)
            probe_check_set_remedy(k, "echo madvise | sudo tee /sys/kernel/mm/transparent_hugepage/enabled");
    }
}

adg_error *probe_numa_section(const probe_opts *o, probe_src *src, probe_report *rep)
{
    (void)o;
    const json_t *nu = probe_src_gathered(src, "numa", gather_numa, NULL);
    const json_t *sys = probe_src_gathered(src, "numa_sysfs", gather_sysfs, NULL);
    if (!json_is_object(nu)) {
        probe_add(rep, "numa", "numa.topology", PROBE_SKIP, "NUMA nodes", "the snapshot holds no NUMA facts",
                  "not recorded");
        return NULL;
    }
    if (!json_is_true(json_object_get(nu, "available"))) {
        probe_check *k = probe_add(rep, "numa", "numa.topology", PROBE_WARN, "NUMA nodes",
                                   "libnuma says NUMA is not available (kernel without NUMA, or a container hiding "
                                   "it): amxdiag treats the machine as one node",
                                   "numa_available() < 0");
        probe_check_set_remedy(k, "run on the host or give the container /sys/devices/system/node");
        return NULL;
    }
    size_t nn = json_array_size(json_object_get(nu, "nodes"));
    probe_report_set_fact(rep, "numa", "nodes", json_integer((json_int_t)nn));
    topology(src, rep, nu, sys);
    binding(rep, nu, sys);
    gpus(rep, nu, sys);
    tunables(src, rep, nn);
    return NULL;
}
