/* The cpu section: identity, hypervisor, kernel, ISA features, XSAVE state for AVX and
 * AVX-512, and the executed AVX-512 VNNI/BF16 self-test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "probe/probe_cpu.h"
#include "probe/probe_sections.h"
#include "probe/probe_selftest.h"

bool probe_kernel_version(const char *release, int *major, int *minor)
{
    return release && sscanf(release, "%d.%d", major, minor) == 2;
}

void probe_fmt_cpulist(const json_t *cpus, char *buf, size_t len)
{
    size_t n = json_array_size(cpus), off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off < len;) {
        long lo = (long)json_integer_value(json_array_get(cpus, i)), hi = lo;
        size_t j = i + 1;
        while (j < n && json_integer_value(json_array_get(cpus, j)) == hi + 1)
            hi = (long)json_integer_value(json_array_get(cpus, j++));
        int w = hi > lo ? snprintf(buf + off, len - off, "%s%ld-%ld", off ? "," : "", lo, hi)
                        : snprintf(buf + off, len - off, "%s%ld", off ? "," : "", lo);
        if (w < 0)
            break;
        off += (size_t)w;
        i = j;
    }
    if (!n)
        snprintf(buf, len, "none");
}

static const char *hypervisor_name(const char *sig)
{
    static const struct { const char *sig, *name; } t[] = {
        {"KVMKVMKVM", "KVM"},        {"Microsoft Hv", "Hyper-V"}, {"VMwareVMware", "VMware"},
        {"XenVMMXenVMM", "Xen"},     {"TCGTCGTCGTCG", "QEMU TCG (instruction emulation)"},
        {"VBoxVBoxVBox", "VirtualBox"}, {"ACRNACRNACRN", "ACRN"}, {"bhyve bhyve ", "bhyve"},
        {" lrpepyh  vr", "Parallels"}, {"QNXQVMBSQG", "QNX"},
    };
    for (size_t i = 0; i < ADG_ARRAY_LEN(t); i++)
        if (!strncmp(sig, t[i].sig, strlen(t[i].sig)))
            return t[i].name;
    return "unknown hypervisor";
}

static void identity(probe_src *src, probe_report *rep, const probe_cpu *c)
{
    char ua[128];
    probe_cpu_uarch_name(c, ua, sizeof ua);
    probe_check *k = probe_add(rep, "cpu", "cpu.identity", PROBE_INFO, "CPU model",
                               c->uarch ? "the microarchitecture sets the theoretical rates and the PMU event table"
                                        : "this model is not in amxdiag's table: --bench reports rates without "
                                          "fractions of a theoretical peak",
                               "%s family %u model %u stepping %u: %s; \"%s\"", c->vendor, c->family, c->model,
                               c->stepping, ua, c->brand[0] ? c->brand : "no brand string");
    probe_check_set_data(k, json_pack("{s:s,s:i,s:i,s:i,s:s,s:s?,s:b}", "vendor", c->vendor, "family", c->family,
                                      "model", c->model, "stepping", c->stepping, "brand", c->brand, "uarch",
                                      c->uarch ? c->uarch->name : NULL, "amx_silicon", c->uarch && c->uarch->amx));
    probe_report_set_fact(rep, "cpu", "vendor", json_string(c->vendor));
    probe_report_set_fact(rep, "cpu", "family", json_integer(c->family));
    probe_report_set_fact(rep, "cpu", "model", json_integer(c->model));
    probe_report_set_fact(rep, "cpu", "stepping", json_integer(c->stepping));
    probe_report_set_fact(rep, "cpu", "brand", json_string(c->brand));
    probe_report_set_fact(rep, "cpu", "uarch", c->uarch ? json_string(c->uarch->name) : json_null());

    if (c->hypervisor[0]) {
        k = probe_add(rep, "cpu", "cpu.hypervisor", PROBE_INFO, "Hypervisor",
                      "a virtual machine: the hypervisor decides which CPUID bits, XSAVE state and PMU the guest sees",
                      "CPUID.1:ECX[31]=1; CPUID 0x40000000 signature \"%s\": %s", c->hypervisor,
                      hypervisor_name(c->hypervisor));
        probe_report_set_fact(rep, "cpu", "hypervisor", json_string(hypervisor_name(c->hypervisor)));
    } else {
        k = probe_add(rep, "cpu", "cpu.hypervisor", PROBE_INFO, "Hypervisor", "no hypervisor bit: bare metal",
                      "CPUID.1:ECX[31]=0: none (bare metal)");
        probe_report_set_fact(rep, "cpu", "hypervisor", json_null());
    }
    if (!strncmp(c->hypervisor, "TCGTCGTCGTCG", 12))
        k->status = PROBE_WARN, probe_check_set_remedy(k, "run under KVM (-accel kvm -cpu host): TCG emulates "
                                                         "instructions, so every rate measured here is meaningless");

    const char *rel = probe_src_uname(src, "release"), *mach = probe_src_uname(src, "machine");
    probe_add(rep, "cpu", "cpu.kernel", PROBE_INFO, "Kernel", "AMX needs Linux 5.16 or newer (ARCH_REQ_XCOMP_PERM)",
              "%s %s %s", probe_src_uname(src, "sysname") ? probe_src_uname(src, "sysname") : "?",
              rel ? rel : "release not recorded", mach ? mach : "");
    if (rel)
        probe_report_set_fact(rep, "cpu", "kernel", json_string(rel));
}

static const char *reg_name(int r) { return (const char *[]){"EAX", "EBX", "ECX", "EDX"}[r & 3]; }

static void isa(probe_src *src, probe_report *rep, const probe_cpu *c)
{
    int err = 0;
    const char *cpuinfo = probe_src_file(src, "/proc/cpuinfo", &err);
    size_t n;
    const probe_isa_row *rows = probe_isa_table(&n);
    json_t *present = json_array();
    for (size_t i = 0; i < n; i++) {
        const probe_isa_row *r = &rows[i];
        if (!r->isa_check)
            continue;
        char id[48];
        snprintf(id, sizeof id, "cpu.isa.%s", r->id);
        if (!c->feat_known[r->f]) {
            probe_add(rep, "cpu", id, PROBE_SKIP, r->name, "the snapshot does not hold this CPUID leaf",
                      "CPUID.(EAX=%#x,ECX=%u) not recorded", r->leaf, r->subleaf);
            continue;
        }
        bool has = c->feat[r->f];
        int listed = r->cpuinfo ? probe_cpuinfo_has_flag(cpuinfo, r->cpuinfo) : -1;
        char kernel[96];
        if (listed < 0)
            snprintf(kernel, sizeof kernel, "/proc/cpuinfo: %s", cpuinfo ? "no flags line" : "not readable");
        else
            snprintf(kernel, sizeof kernel, "/proc/cpuinfo: '%s' %s", r->cpuinfo, listed ? "listed" : "not listed");
        probe_status st;
        const char *why;
        bool amx = r->f >= PROBE_F_AMX_TILE && r->f <= PROBE_F_AMX_COMPLEX;
        if (amx && has) {
            st = PROBE_PASS; /* the amx section judges the kernel's view (amx.cpuinfo) */
            why = r->use;
        } else if (has && listed == 0) {
            st = PROBE_WARN;
            why = "the CPU reports it but the kernel does not list it: the kernel is too old to know it or it was "
                  "disabled (clearcpuid=, noxsave)";
        } else if (has) {
            st = PROBE_PASS;
            why = r->use;
        } else if (r->f == PROBE_F_AVX2) {
            st = PROBE_WARN;
            why = "without AVX2 inference engines fall back to slow SSE kernels";
        } else {
            st = PROBE_INFO;
            why = "not present on this CPU: code paths that need it are not used";
        }
        probe_check *k = probe_add(rep, "cpu", id, st, r->name, why, "CPUID.(EAX=%#x,ECX=%u):%s[%d]=%d; %s", r->leaf,
                                   r->subleaf, reg_name(r->reg), r->bit, has, kernel);
        if (st == PROBE_WARN && has)
            probe_check_set_remedy(k, "boot a kernel that knows %s (see amx.cpuinfo for AMX) and without clearcpuid= "
                                      "for it", r->name);
        if (has)
            json_array_append_new(present, json_string(r->id));
    }
    probe_report_set_fact(rep, "cpu", "isa", present);
}

static void xsave(probe_src *src, probe_report *rep, const probe_cpu *c)
{
    uint64_t xcr0 = 0;
    bool have = probe_src_xcr0(src, &xcr0);
    if (!c->feat[PROBE_F_OSXSAVE]) {
        probe_check *k = probe_add(rep, "cpu", "cpu.xsave", c->feat[PROBE_F_AVX] ? PROBE_FAIL : PROBE_INFO,
                                   "OS-enabled vector state (XCR0)",
                                   "OSXSAVE is clear: the OS did not enable XSAVE, so AVX, AVX-512 and AMX all fault",
                                   "CPUID.1:ECX[27] OSXSAVE=0");
        probe_check_set_remedy(k, "boot without 'noxsave'; in a VM expose xsave to the guest");
        return;
    }
    if (!have) {
        probe_add(rep, "cpu", "cpu.xsave", PROBE_SKIP, "OS-enabled vector state (XCR0)",
                  "the snapshot does not hold XCR0", "XCR0 not recorded");
        return;
    }
    bool avx_ok = (xcr0 & 0x6) == 0x6, z_ok = (xcr0 & 0xe0) == 0xe0;
    probe_status st = PROBE_PASS;
    const char *why = "XCR0 enables the register state of every vector extension the CPU reports";
    if (c->feat[PROBE_F_AVX] && !avx_ok)
        st = PROBE_FAIL, why = "the CPU reports AVX but XCR0 does not enable YMM state: AVX instructions raise #UD";
    else if (c->feat[PROBE_F_AVX512F] && !z_ok)
        st = PROBE_FAIL, why = "the CPU reports AVX-512 but XCR0 bits 5-7 (opmask, ZMM_Hi256, Hi16_ZMM) are not all "
                               "set: AVX-512 instructions raise #UD";
    probe_check *k = probe_add(rep, "cpu", "cpu.xsave", st, "OS-enabled vector state (XCR0)", why,
                               "XCR0=%#llx: SSE %d, AVX %d, opmask %d, ZMM_Hi256 %d, Hi16_ZMM %d",
                               (unsigned long long)xcr0, (int)(xcr0 >> 1) & 1, (int)(xcr0 >> 2) & 1,
                               (int)(xcr0 >> 5) & 1, (int)(xcr0 >> 6) & 1, (int)(xcr0 >> 7) & 1);
    if (st == PROBE_FAIL)
        probe_check_set_remedy(k, "boot without 'noxsave'/'clearcpuid=avx512f'; in a VM give the guest the host's "
                                  "XSAVE features (QEMU -cpu host)");
    probe_report_set_fact(rep, "cpu", "xcr0", json_integer((json_int_t)xcr0));
}

static void selftest(probe_src *src, probe_report *rep, const probe_cpu *c)
{
    const char *title = "AVX-512 VNNI and BF16 executed";
    if (probe_src_is_replay(src)) {
        probe_add(rep, "cpu", "cpu.selftest", PROBE_SKIP, title, "not run from a snapshot: it executes instructions",
                  "snapshot");
        return;
    }
    uint64_t xcr0 = 0;
    bool zmm = probe_src_xcr0(src, &xcr0) && (xcr0 & 0xe6) == 0xe6 && c->feat[PROBE_F_AVX512F];
    probe_st_opts o = {.vnni = zmm && c->feat[PROBE_F_AVX512_VNNI], .bf16 = zmm && c->feat[PROBE_F_AVX512_BF16]};
    if (!o.vnni && !o.bf16) {
        probe_add(rep, "cpu", "cpu.selftest", PROBE_SKIP, title, "the CPU (or XCR0) lacks AVX-512 VNNI and BF16",
                  "AVX-512 VNNI %d, BF16 %d, ZMM state %d", c->feat[PROBE_F_AVX512_VNNI],
                  c->feat[PROBE_F_AVX512_BF16], zmm);
        return;
    }
    probe_st_result r;
    adg_error *e = probe_selftest_avx512(&o, &r);
    if (e) {
        probe_check *k = probe_add(rep, "cpu", "cpu.selftest", PROBE_FAIL, title, "the self-test could not start",
                                   "%s", adg_error_msg(e));
        probe_check_set_remedy(k, "%s", adg_error_remedy(e) ? adg_error_remedy(e) : "run the probe again");
        adg_error_free(e);
        return;
    }
    adg_strbuf ev;
    adg_sb_init(&ev);
    bool ok = r.completed;
    for (size_t i = 0; i < r.nops; i++) {
        const probe_st_op *op = &r.ops[i];
        ok &= op->ok;
        if (op->ok)
            adg_sb_printf(&ev, "%s%s: 16 lanes match the scalar reference", i ? "; " : "", op->insn);
        else if (op->ran)
            adg_sb_printf(&ev, "%s%s: %u lanes differ (%s)", i ? "; " : "", op->insn, op->mismatches, op->detail);
    }
    if (r.signal)
        adg_sb_printf(&ev, "%schild killed by signal %d (%s) at %s", ev.len ? "; " : "", r.signal, strsignal(r.signal),
                      r.at);
    adg_sb_printf(&ev, " (seed %#llx)", (unsigned long long)r.seed);
    probe_check *k = probe_add(rep, "cpu", "cpu.selftest", ok ? PROBE_PASS : PROBE_FAIL, title,
                               ok ? "the instructions ran in a child process and agree with a scalar reference"
                                  : "an AVX-512 instruction the CPU reports faulted or computed wrongly",
                               "%s", ev.buf ? ev.buf : "");
    if (!ok)
        probe_check_set_remedy(k, "do not use the AVX-512 %s kernels on this machine; report the CPU and hypervisor "
                                  "(a hypervisor that advertises instructions it does not pass through)",
                               r.at);
    adg_sb_free(&ev);
}

adg_error *probe_cpu_section(const probe_opts *o, probe_src *src, probe_report *rep)
{
    (void)o;
    probe_cpu c;
    probe_cpu_decode(src, &c);
    if (!c.ok) {
        probe_add(rep, "cpu", "cpu.identity", PROBE_SKIP, "CPU model", "the snapshot lacks CPUID leaf 1",
                  "CPUID leaf 1 not recorded");
        return NULL;
    }
    identity(src, rep, &c);
    isa(src, rep, &c);
    xsave(src, rep, &c);
    selftest(src, rep, &c);
    return NULL;
}
