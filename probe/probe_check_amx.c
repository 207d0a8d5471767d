/* The amx section: the four layers that must all hold for a tile instruction to run,
 * each reported on its own, then the executed self-test.
 *   1 CPU      CPUID.7.0:EDX[22,24,25], 7.1:EAX[21], 7.1:EDX[8]; /proc/cpuinfo agrees
 *   2 OS       OSXSAVE and XCR0[17,18]
 *   3 kernel   ARCH_GET_XCOMP_SUPP, ARCH_REQ_XCOMP_PERM(XTILEDATA), sigaltstack size
 *   4 palette  CPUID 0x1D (palettes, tile geometry), 0x1E (TMUL limits) */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/adg_util.h"
#include "probe/probe_cpu.h"
#include "probe/probe_sections.h"
#include "probe/probe_selftest.h"

#define XTILE_MASK ((1ull << 17) | (1ull << 18))

typedef struct amx_state {
    probe_cpu cpu;
    bool tile, int8, bf16, fp16, complex;
    bool xcr0_known, xcr0_ok;
    uint64_t xcr0;
    bool kernel_ok, perm_ok;
    unsigned palettes;
    const char *first_failed; /* the first layer that failed, for amx.usable */
} amx_state;

static void fail_layer(amx_state *s, const char *layer)
{
    if (!s->first_failed)
        s->first_failed = layer;
}

static probe_check *skip_no_amx(probe_report *rep, const char *id, const char *title, const char *evidence)
{
    return probe_add(rep, "amx", id, PROBE_SKIP, title, "the CPU does not report AMX-TILE: this layer does not apply",
                     "%s", evidence);
}

static void layer_cpuid(probe_report *rep, amx_state *s)
{
    const probe_cpu *c = &s->cpu;
    s->tile = c->feat[PROBE_F_AMX_TILE];
    s->int8 = c->feat[PROBE_F_AMX_INT8];
    s->bf16 = c->feat[PROBE_F_AMX_BF16];
    s->fp16 = c->feat[PROBE_F_AMX_FP16];
    s->complex = c->feat[PROBE_F_AMX_COMPLEX];
    char ev[200];
    snprintf(ev, sizeof ev, "CPUID.7.0:EDX AMX-BF16[22]=%d AMX-TILE[24]=%d AMX-INT8[25]=%d; 7.1:EAX AMX-FP16[21]=%d; "
                            "7.1:EDX AMX-COMPLEX[8]=%d",
             s->bf16, s->tile, s->int8, s->fp16, s->complex);
    char ua[128];
    probe_cpu_uarch_name(c, ua, sizeof ua);
    probe_check *k;
    if (s->tile && s->int8 && s->bf16) {
        k = probe_add(rep, "amx", "amx.cpuid", PROBE_PASS, "Layer 1: the CPU reports AMX",
                      "CPUID advertises tiles with int8 and bf16 multiply", "%s", ev);
    } else if (s->tile) {
        k = probe_add(rep, "amx", "amx.cpuid", PROBE_WARN, "Layer 1: the CPU reports AMX",
                      "AMX-TILE is there but INT8 or BF16 is missing: kernels that need the missing one cannot run",
                      "%s", ev);
        probe_check_set_remedy(k, "in a VM, pass all AMX features (QEMU: +amx-tile,+amx-int8,+amx-bf16)");
    } else {
        fail_layer(s, "CPU (CPUID)");
        const char *why = "the CPU does not report AMX: no tile instruction can run here";
        k = probe_add(rep, "amx", "amx.cpuid", PROBE_FAIL, "Layer 1: the CPU reports AMX", why, "%s; %s", ev, ua);
        if (c->uarch && c->uarch->amx && c->hypervisor[0])
            probe_check_set_remedy(k, "this %s has AMX but the hypervisor hides it: give the guest the host CPU model "
                                      "(QEMU -cpu host or +amx-tile,+amx-int8,+amx-bf16; libvirt "
                                      "mode='host-passthrough'; a cloud instance type with AMX)",
                                   c->uarch->name);
        else if (c->uarch && c->uarch->amx)
            probe_check_set_remedy(k, "this %s should report AMX: check the BIOS settings and microcode", c->uarch->name);
        else
            probe_check_set_remedy(k, "AMX needs an Intel Xeon of the 4th generation (Sapphire Rapids) or newer; on "
                                      "this CPU use the AVX-512/AVX2 builds of the inference engine");
    }
    probe_check_set_data(k, json_pack("{s:b,s:b,s:b,s:b,s:b}", "amx_tile", s->tile, "amx_int8", s->int8, "amx_bf16",
                                      s->bf16, "amx_fp16", s->fp16, "amx_complex", s->complex));
}

static void layer_cpuinfo(probe_src *src, probe_report *rep, amx_state *s)
{
    int err = 0;
    const char *ci = probe_src_file(src, "/proc/cpuinfo", &err);
    int t = probe_cpuinfo_has_flag(ci, "amx_tile"), i8 = probe_cpuinfo_has_flag(ci, "amx_int8"),
        b16 = probe_cpuinfo_has_flag(ci, "amx_bf16");
    const char *title = "The kernel lists AMX in /proc/cpuinfo";
    if (t < 0) {
        probe_add(rep, "amx", "amx.cpuinfo", PROBE_SKIP, title, "no flags line in /proc/cpuinfo to compare with",
                  "/proc/cpuinfo %s", ci ? "has no flags line" : strerror(err));
        return;
    }
    char ev[160];
    snprintf(ev, sizeof ev, "/proc/cpuinfo flags: amx_tile %s, amx_int8 %s, amx_bf16 %s; CPUID AMX-TILE=%d",
             t ? "listed" : "absent", i8 ? "listed" : "absent", b16 ? "listed" : "absent", s->tile);
    if (s->tile && t) {
        probe_add(rep, "amx", "amx.cpuinfo", PROBE_PASS, title, "the kernel and CPUID agree", "%s", ev);
    } else if (s->tile && !t) {
        probe_check *k = probe_add(rep, "amx", "amx.cpuinfo", PROBE_WARN, title,
                                   "CPUID reports AMX but the kernel hides it: it is older than 5.16, was booted "
                                   "with clearcpuid=amx_tile, or disabled AMX (XFD)",
                                   "%s", ev);
        probe_check_set_remedy(k, "boot Linux 5.16 or newer without clearcpuid=amx_tile");
    } else if (!s->tile && t) {
        probe_add(rep, "amx", "amx.cpuinfo", PROBE_WARN, title,
                  "the kernel lists AMX that CPUID does not report: the VM was probably migrated to another host",
                  "%s", ev);
    } else {
        probe_add(rep, "amx", "amx.cpuinfo", PROBE_SKIP, title,
                  "the CPU does not report AMX-TILE and the kernel agrees", "%s", ev);
    }
}

static void layer_xcr0(probe_src *src, probe_report *rep, amx_state *s)
{
    const char *title = "Layer 2: the OS enables tile state (XCR0)";
    uint32_t d17[4], d18[4];
    probe_src_cpuid(src, 0xd, 17, d17);
    probe_src_cpuid(src, 0xd, 18, d18);
    s->xcr0_known = probe_src_xcr0(src, &s->xcr0);
    char ev[220];
    if (!s->cpu.feat[PROBE_F_OSXSAVE])
        snprintf(ev, sizeof ev, "CPUID.1:ECX OSXSAVE[27]=0: XCR0 cannot be read");
    else if (!s->xcr0_known)
        snprintf(ev, sizeof ev, "XCR0 not recorded");
    else
        snprintf(ev, sizeof ev, "XCR0=%#llx: XTILECFG[17]=%d XTILEDATA[18]=%d; XSAVE component 17: %u bytes, "
                                "component 18: %u bytes",
                 (unsigned long long)s->xcr0, (int)(s->xcr0 >> 17) & 1, (int)(s->xcr0 >> 18) & 1, d17[0], d18[0]);
    s->xcr0_ok = s->xcr0_known && (s->xcr0 & XTILE_MASK) == XTILE_MASK;
    if (!s->tile) {
        skip_no_amx(rep, "amx.xcr0", title, ev);
        return;
    }
    if (s->xcr0_ok) {
        probe_add(rep, "amx", "amx.xcr0", PROBE_PASS, title,
                  "the OS has enabled XTILECFG and XTILEDATA in XCR0; the kernel grants tile data per process", "%s",
                  ev);
        return;
    }
    if (!s->xcr0_known && s->cpu.feat[PROBE_F_OSXSAVE]) {
        probe_add(rep, "amx", "amx.xcr0", PROBE_SKIP, title, "the snapshot does not hold XCR0", "%s", ev);
        return;
    }
    fail_layer(s, "OS (XCR0)");
    probe_check *k = probe_add(rep, "amx", "amx.xcr0", PROBE_FAIL, title,
                               "XCR0 bits 17/18 are clear: every tile instruction raises #UD (SIGILL) whatever the "
                               "process does",
                               "%s", ev);
    probe_check_set_remedy(k, "boot Linux 5.16 or newer (it sets XCR0[18] when the CPU has AMX); in a VM the "
                              "hypervisor must expose XSAVE components 17/18 (KVM on Linux >= 5.17, QEMU >= 7.0 "
                              "with -cpu host)");
}

static const char *errno_name(int e)
{
    switch (e) {
    case 0: return "0";
    case EINVAL: return "EINVAL";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOSPC: return "ENOSPC";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOSYS: return "ENOSYS";
    case ENOENT: return "ENOENT";
    case ENODEV: return "ENODEV";
    case ENOMEM: return "ENOMEM";
    case E2BIG: return "E2BIG";
    case EBUSY: return "EBUSY";
    case EINTR: return "EINTR";
    case ECHILD: return "ECHILD";
    case EFAULT: return "EFAULT";
    default: return "errno";
    }
}

static void kernel_words(probe_src *src, char *buf, size_t len)
{
    const char *rel = probe_src_uname(src, "release");
    int ma, mi;
    if (probe_kernel_version(rel, &ma, &mi))
        snprintf(buf, len, "kernel %s (%d.%d)%s", rel, ma, mi,
                 (ma < 5 || (ma == 5 && mi < 16)) ? " is older than 5.16, which added AMX support" : "");
    else
        snprintf(buf, len, "kernel release %s", rel ? rel : "not recorded");
}

static void layer_kernel(probe_src *src, probe_report *rep, amx_state *s)
{
    const char *title = "Layer 3: the kernel supports AMX (ARCH_GET_XCOMP_SUPP)";
    probe_prctl r = probe_src_prctl(src, PROBE_PRCTL_GET_XCOMP_SUPP);
    char kw[160], ev[300];
    kernel_words(src, kw, sizeof kw);
    if (!r.recorded) {
        probe_add(rep, "amx", "amx.kernel", PROBE_SKIP, title, "the snapshot does not hold the arch_prctl results",
                  "not recorded");
        return;
    }
    if (r.ret == 0)
        snprintf(ev, sizeof ev, "arch_prctl(ARCH_GET_XCOMP_SUPP) = 0, supported features %#llx: XTILEDATA[18]=%d; %s",
                 (unsigned long long)r.value, (int)(r.value >> 18) & 1, kw);
    else
        snprintf(ev, sizeof ev, "arch_prctl(ARCH_GET_XCOMP_SUPP) = -1, errno %s (%d): %s; %s", errno_name(r.err), r.err,
                 strerror(r.err), kw);
    s->kernel_ok = r.ret == 0 && (r.value >> 18 & 1);
    if (!s->tile) {
        skip_no_amx(rep, "amx.kernel", title, ev);
        return;
    }
    if (s->kernel_ok) {
        probe_add(rep, "amx", "amx.kernel", PROBE_PASS, title, "the kernel manages tile data and hands it out on request",
                  "%s", ev);
        return;
    }
    fail_layer(s, "kernel (arch_prctl)");
    probe_check *k;
    if (r.ret != 0 && r.err == EINVAL) {
        k = probe_add(rep, "amx", "amx.kernel", PROBE_FAIL, title,
                      "EINVAL: the kernel does not know the request, i.e. it is older than 5.16", "%s", ev);
        probe_check_set_remedy(k, "boot Linux 5.16 or newer (Debian 12's 6.1, Ubuntu 22.04's HWE 6.x kernels work)");
    } else if (r.ret != 0) {
        k = probe_add(rep, "amx", "amx.kernel", PROBE_FAIL, title, "the request failed", "%s", ev);
        probe_check_set_remedy(k, "check for a seccomp filter (container runtime, sandbox) that blocks arch_prctl");
    } else {
        k = probe_add(rep, "amx", "amx.kernel", PROBE_FAIL, title,
                      "the kernel supports dynamic XSAVE features but not XTILEDATA: it did not enable AMX (XCR0 or "
                      "XFD setup)",
                      "%s", ev);
        probe_check_set_remedy(k, "boot without clearcpuid=amx_tile; check dmesg for 'x86/fpu' messages about AMX");
    }
}

static void layer_permission(probe_src *src, probe_report *rep, amx_state *s)
{
    const char *title = "Layer 3: the kernel grants tile data (ARCH_REQ_XCOMP_PERM)";
    probe_prctl before = probe_src_prctl(src, PROBE_PRCTL_GET_XCOMP_PERM);
    probe_prctl r = probe_src_prctl(src, PROBE_PRCTL_REQ_XTILEDATA);
    if (!r.recorded) {
        probe_add(rep, "amx", "amx.permission", PROBE_SKIP, title, "the snapshot does not hold the arch_prctl results",
                  "not recorded");
        return;
    }
    char kw[160], ev[400];
    kernel_words(src, kw, sizeof kw);
    int off = snprintf(ev, sizeof ev, "in a child process: arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA=18) = %d", r.ret);
    if (r.ret)
        off += snprintf(ev + off, sizeof ev - (size_t)off, ", errno %s (%d): %s", errno_name(r.err), r.err,
                        strerror(r.err));
    else
        off += snprintf(ev + off, sizeof ev - (size_t)off, "; permitted features after %#llx",
                        (unsigned long long)r.perm_after);
    if (before.recorded && before.ret == 0)
        snprintf(ev + off, sizeof ev - (size_t)off, "; before the request %#llx", (unsigned long long)before.value);
    s->perm_ok = r.ret == 0;
    if (!s->tile) {
        skip_no_amx(rep, "amx.permission", title, ev);
        return;
    }
    if (s->perm_ok) {
        probe_add(rep, "amx", "amx.permission", PROBE_PASS, title,
                  "a process that asks gets tile data; permission is per process, inherited on fork, cleared on exec",
                  "%s", ev);
        return;
    }
    fail_layer(s, "kernel (arch_prctl)");
    probe_check *k;
    switch (r.err) {
    case EINVAL:
        k = probe_add(rep, "amx", "amx.permission", PROBE_FAIL, title,
                      "EINVAL: the kernel is older than 5.16 and has no AMX permission request", "%s; %s", ev, kw);
        probe_check_set_remedy(k, "boot Linux 5.16 or newer; until then no process can use AMX on this machine");
        break;
    case ENOSPC:
        k = probe_add(rep, "amx", "amx.permission", PROBE_FAIL, title,
                      "ENOSPC: a sigaltstack is installed that is too small for the AMX signal frame", "%s", ev);
        probe_check_set_remedy(k, "request AMX before installing the sigaltstack, or make it at least "
                                  "getauxval(AT_MINSIGSTKSZ) bytes");
        break;
    case EOPNOTSUPP:
        k = probe_add(rep, "amx", "amx.permission", PROBE_FAIL, title,
                      "EOPNOTSUPP: the kernel does not support XTILEDATA on this CPU (AMX not enabled at boot)", "%s",
                      ev);
        probe_check_set_remedy(k, "boot without clearcpuid=amx_tile; check dmesg for 'x86/fpu' about AMX");
        break;
    case EPERM:
    case EACCES:
    case ENOSYS:
        k = probe_add(rep, "amx", "amx.permission", PROBE_FAIL, title,
                      "the request was refused before the kernel's AMX code saw it: a seccomp filter (container "
                      "runtime, sandbox) blocks arch_prctl",
                      "%s", ev);
        probe_check_set_remedy(k, "allow arch_prctl(ARCH_REQ_XCOMP_PERM) in the seccomp profile (Docker: "
                                  "--security-opt seccomp=<profile allowing arch_prctl>)");
        break;
    default:
        k = probe_add(rep, "amx", "amx.permission", PROBE_FAIL, title, "the permission request failed", "%s", ev);
        probe_check_set_remedy(k, "run the probe again; if it persists, report the errno with the snapshot");
    }
}

static void layer_sigaltstack(probe_src *src, probe_report *rep, amx_state *s)
{
    const char *title = "A too-small sigaltstack blocks the request";
    probe_prctl r = probe_src_prctl(src, PROBE_PRCTL_REQ_SMALL_ALTSTACK);
    uint64_t minsig = 0;
    bool have_min = probe_src_minsigstksz(src, &minsig);
    if (!r.recorded) {
        probe_add(rep, "amx", "amx.sigaltstack", PROBE_SKIP, title, "the snapshot does not hold this result",
                  "not recorded");
        return;
    }
    char ev[300];
    if (r.altstack_err)
        snprintf(ev, sizeof ev, "sigaltstack(4096 bytes) itself failed: %s; AT_MINSIGSTKSZ = %llu",
                 strerror(r.altstack_err), (unsigned long long)minsig);
    else
        snprintf(ev, sizeof ev, "with a 4096-byte sigaltstack: ARCH_REQ_XCOMP_PERM = %d%s%s; AT_MINSIGSTKSZ = %s%llu",
                 r.ret, r.ret ? ", errno " : "", r.ret ? errno_name(r.err) : "", have_min ? "" : "?",
                 (unsigned long long)minsig);
    if (!s->tile || !s->perm_ok) {
        probe_add(rep, "amx", "amx.sigaltstack", PROBE_SKIP, title,
                  s->tile ? "the plain request fails already" : "the CPU does not report AMX-TILE", "%s", ev);
        return;
    }
    probe_check *k;
    if (r.ret && r.err == ENOSPC) {
        k = probe_add(rep, "amx", "amx.sigaltstack", PROBE_INFO, title,
                      "the kernel refuses AMX to a process whose sigaltstack cannot hold the AMX signal frame: "
                      "runtimes that install small alternate stacks (Go, some JITs) must request AMX first",
                      "%s", ev);
        probe_check_set_remedy(k, "in your engine, call ARCH_REQ_XCOMP_PERM before sigaltstack(), or size alternate "
                                  "stacks from getauxval(AT_MINSIGSTKSZ) (%llu here) plus your handler's needs",
                               (unsigned long long)minsig);
    } else if (r.altstack_err) {
        probe_add(rep, "amx", "amx.sigaltstack", PROBE_SKIP, title,
                  "the small sigaltstack could not be installed, so the kernel's check was not exercised", "%s", ev);
    } else {
        probe_add(rep, "amx", "amx.sigaltstack", PROBE_INFO, title,
                  "the request succeeded even with a small sigaltstack: this kernel does not check its size", "%s", ev);
    }
}

static void layer_palette(probe_src *src, probe_report *rep, amx_state *s)
{
    const char *title = "Layer 4: tile palette (CPUID 0x1D)";
    uint32_t l0[4], p0[4], p1[4];
    probe_src_cpuid(src, 0, 0, l0);
    bool recorded = probe_src_cpuid(src, 0x1d, 0, p0);
    probe_src_cpuid(src, 0x1d, 1, p1);
    s->palettes = l0[0] >= 0x1d ? p0[0] : 0;
    unsigned total = p1[0] & 0xffff, per_tile = p1[0] >> 16, per_row = p1[1] & 0xffff, names = p1[1] >> 16,
             rows = p1[2] & 0xffff;
    char ev[300];
    if (l0[0] < 0x1d)
        snprintf(ev, sizeof ev, "max basic CPUID leaf %#x < 0x1d: no palette information", l0[0]);
    else if (!recorded)
        snprintf(ev, sizeof ev, "CPUID 0x1d not recorded");
    else if (s->palettes == 0)
        snprintf(ev, sizeof ev, "CPUID.0x1D.0:EAX = 0 palettes");
    else
        snprintf(ev, sizeof ev, "%u palette(s); palette 1: %u tiles x %u bytes (%u rows x %u bytes), %u bytes in all",
                 s->palettes, names, per_tile, rows, per_row, total);
    if (!s->tile) {
        skip_no_amx(rep, "amx.palette", title, ev);
        return;
    }
    probe_check *k;
    if (s->palettes == 0) {
        fail_layer(s, "palette (CPUID 0x1D)");
        k = probe_add(rep, "amx", "amx.palette", PROBE_FAIL, title,
                      "the CPU advertises AMX with zero palettes (seen in VMs): LDTILECFG with palette 1 raises #UD",
                      "%s", ev);
        probe_check_set_remedy(k, "the hypervisor passes the AMX feature bits but not CPUID leaf 0x1D: use a "
                                  "hypervisor version that supports AMX guests (KVM >= 5.17, QEMU >= 7.0, -cpu host)");
    } else if (names == 8 && per_tile == 1024 && rows == 16 && per_row == 64) {
        k = probe_add(rep, "amx", "amx.palette", PROBE_PASS, title,
                      "palette 1 has the geometry AMX kernels assume: 8 tiles of 16 rows x 64 bytes", "%s", ev);
    } else {
        k = probe_add(rep, "amx", "amx.palette", PROBE_WARN, title,
                      "palette 1's geometry differs from the 8 x 1024-byte tiles AMX kernels assume", "%s", ev);
        probe_check_set_remedy(k, "report this CPU; kernels built for 16x64-byte tiles will fault or compute wrongly");
    }
    probe_check_set_data(k, json_pack("{s:i,s:i,s:i,s:i,s:i,s:i}", "palettes", s->palettes, "tiles", names,
                                      "bytes_per_tile", per_tile, "rows", rows, "bytes_per_row", per_row,
                                      "total_bytes", total));
    probe_report_set_fact(rep, "amx", "palettes", json_integer(s->palettes));
    if (s->palettes)
        probe_report_set_fact(rep, "amx", "palette1", json_pack("{s:i,s:i,s:i}", "tiles", names, "rows", rows,
                                                                "bytes_per_row", per_row));
}

static void layer_tmul(probe_src *src, probe_report *rep, amx_state *s)
{
    const char *title = "TMUL limits (CPUID 0x1E)";
    uint32_t l0[4], t[4];
    probe_src_cpuid(src, 0, 0, l0);
    probe_src_cpuid(src, 0x1e, 0, t);
    unsigned maxk = t[1] & 0xff, maxn = (t[1] >> 8) & 0xffff;
    char ev[160];
    if (l0[0] < 0x1e)
        snprintf(ev, sizeof ev, "max basic CPUID leaf %#x < 0x1e", l0[0]);
    else
        snprintf(ev, sizeof ev, "tmul_maxk %u rows, tmul_maxn %u bytes", maxk, maxn);
    if (!s->tile) {
        skip_no_amx(rep, "amx.tmul", title, ev);
        return;
    }
    bool ok = maxk >= 16 && maxn >= 64;
    probe_check *k = probe_add(rep, "amx", "amx.tmul", ok ? PROBE_PASS : PROBE_WARN, title,
                               ok ? "the multiply unit takes full 16-row, 64-byte tiles"
                                  : "the multiply unit reports smaller limits than full tiles",
                               "%s", ev);
    if (!ok)
        probe_check_set_remedy(k, "a hypervisor that does not pass CPUID 0x1E: use -cpu host");
}

static const char *signal_layer(const amx_state *s, const probe_st_result *r)
{
    if (!strcmp(r->at, "LDTILECFG")) {
        if (r->signal == SIGSEGV || r->signal == SIGBUS)
            return "palette layer: LDTILECFG raised #GP, the configuration (palette 1, 16x64-byte tiles) was rejected";
        if (!s->xcr0_ok)
            return "OS layer: XCR0 does not enable tile state";
        if (!s->perm_ok)
            return "kernel layer: the process has no tile-data permission";
        if (s->palettes == 0)
            return "palette layer: the CPU advertises no palette";
        return "CPU layer: tile instructions are disabled although CPUID, XCR0, the kernel and CPUID 0x1D say "
               "otherwise (hypervisor)";
    }
    if (!strncmp(r->at, "TDPBF16PS", 9))
        return "CPU layer: AMX-BF16 is not executable";
    if (!strncmp(r->at, "TDPFP16PS", 9))
        return "CPU layer: AMX-FP16 is not executable";
    if (!strncmp(r->at, "TDPB", 4))
        return "CPU layer: AMX-INT8 is not executable";
    return "CPU layer: tile loads/stores are not executable";
}

static void selftest(probe_src *src, probe_report *rep, amx_state *s)
{
    const char *title = "Tile instructions executed (self-test)";
    if (probe_src_is_replay(src)) {
        probe_add(rep, "amx", "amx.selftest", PROBE_SKIP, title, "not run from a snapshot: it executes instructions",
                  "snapshot");
        return;
    }
    if (!s->tile) {
        probe_add(rep, "amx", "amx.selftest", PROBE_SKIP, title, "the CPU lacks AMX: nothing to execute",
                  "CPUID AMX-TILE=0");
        return;
    }
    probe_st_opts o = {.fp16 = s->fp16};
    probe_st_result r;
    adg_error *e = probe_selftest_amx(&o, &r);
    if (e) {
        probe_check *k = probe_add(rep, "amx", "amx.selftest", PROBE_FAIL, title, "the self-test could not start",
                                   "%s", adg_error_msg(e));
        probe_check_set_remedy(k, "%s", adg_error_remedy(e) ? adg_error_remedy(e) : "run the probe again");
        adg_error_free(e);
        fail_layer(s, "self-test");
        return;
    }
    adg_strbuf ev;
    adg_sb_init(&ev);
    bool ok = r.completed;
    unsigned bad = 0;
    for (size_t i = 0; i < r.nops; i++) {
        const probe_st_op *op = &r.ops[i];
        if (!op->ran)
            continue;
        ok &= op->ok;
        if (op->ok)
            adg_sb_printf(&ev, "%s%s ok", ev.len ? ", " : "", op->insn);
        else
            adg_sb_printf(&ev, "%s%s: %u of 256 differ (%s)", ev.len ? ", " : "", op->insn, op->mismatches,
                          op->detail), bad++;
    }
    probe_check *k;
    if (ok) {
        adg_sb_printf(&ev, " on random 16x16x64 tiles against a scalar reference (seed %#llx)",
                      (unsigned long long)r.seed);
        k = probe_add(rep, "amx", "amx.selftest", PROBE_PASS, title,
                      "LDTILECFG (palette 1), TILELOADD, the dot products and TILESTORED ran in a child process and "
                      "agree bit for bit with the reference",
                      "%s", ev.buf);
    } else if (r.exit_code == 3) {
        k = probe_add(rep, "amx", "amx.selftest", PROBE_FAIL, title, "kernel layer: the child could not get tile data",
                      "ARCH_REQ_XCOMP_PERM in the child = %d, errno %d (%s)", r.perm_ret, r.perm_errno,
                      strerror(r.perm_errno));
        probe_check_set_remedy(k, "see amx.permission");
        fail_layer(s, "self-test");
    } else if (r.signal) {
        const char *layer = r.timed_out ? "the child hung" : signal_layer(s, &r);
        k = probe_add(rep, "amx", "amx.selftest", PROBE_FAIL, title, layer,
                      "child killed by signal %d (%s) at %s%s%s", r.signal, strsignal(r.signal), r.at,
                      ev.len ? "; before it: " : "", ev.len ? ev.buf : "");
        probe_check_set_remedy(k, "fix the layer named above (its check says how); until then run the AVX-512 build");
        probe_check_set_data(k, json_pack("{s:s,s:i,s:s}", "instruction", r.at, "signal", r.signal, "layer", layer));
        fail_layer(s, "self-test");
    } else {
        k = probe_add(rep, "amx", "amx.selftest", PROBE_FAIL, title,
                      bad ? "tile results differ from the scalar reference: the CPU or an emulating hypervisor "
                            "computes wrongly"
                          : "the child stopped before reporting",
                      "%s%sexit code %d at %s", ev.len ? ev.buf : "", ev.len ? "; " : "", r.exit_code, r.at);
        probe_check_set_remedy(k, "do not use AMX on this machine; report the CPU, microcode and hypervisor");
        fail_layer(s, "self-test");
    }
    adg_sb_free(&ev);
}

adg_error *probe_amx_section(const probe_opts *o, probe_src *src, probe_report *rep)
{
    (void)o;
    amx_state s;
    memset(&s, 0, sizeof s);
    probe_cpu_decode(src, &s.cpu);
    if (!s.cpu.ok) {
        probe_add(rep, "amx", "amx.cpuid", PROBE_SKIP, "Layer 1: the CPU reports AMX", "the snapshot lacks CPUID leaf 1",
                  "not recorded");
        return NULL;
    }
    layer_cpuid(rep, &s);
    layer_cpuinfo(src, rep, &s);
    layer_xcr0(src, rep, &s);
    layer_kernel(src, rep, &s);
    layer_permission(src, rep, &s);
    layer_sigaltstack(src, rep, &s);
    layer_palette(src, rep, &s);
    layer_tmul(src, rep, &s);
    selftest(src, rep, &s);
    bool usable = s.tile && !s.first_failed;
    bool proven = usable && !probe_src_is_replay(src);
    probe_add(rep, "amx", "amx.usable", PROBE_INFO, "AMX usable here",
              usable ? (proven ? "every layer holds and the tile instructions ran"
                               : "every recorded layer holds (the self-test needs the live machine)")
                     : "the first failing layer is where to start",
              "%s%s%s", usable ? "yes" : "no: first failing layer: ", usable ? "" : s.first_failed,
              usable && !proven ? " (from a snapshot)" : "");
    probe_report_set_fact(rep, "amx", "usable", json_boolean(usable));
    probe_report_set_fact(rep, "amx", "fp16", json_boolean(s.fp16));
    return NULL;
}
