/* What the CPU and the OS offer to the kernels, read from CPUID/XGETBV directly (kernels
 * must not depend on probe/), and the per-process AMX permission request. */
#include "kernels/kern_cpu.h"

#include <cpuid.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static kern_cpu_features feat;
static pthread_once_t feat_once = PTHREAD_ONCE_INIT;

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    bool osxsave = c & (1u << 27);
    feat.fma = c & (1u << 12);
    feat.f16c = c & (1u << 29);
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    /* AVX-512 needs XMM|YMM|opmask|ZMM_Hi256|Hi16_ZMM (bits 1,2,5,6,7). */
    feat.os_avx512 = (xcr0 & 0xE6) == 0xE6;
    feat.os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);
    if (__get_cpuid_max(0, NULL) < 7)
        return;
    __cpuid_count(7, 0, a, b, c, d);
    feat.avx512f = b & (1u << 16);
    feat.avx512bw = b & (1u << 30);
    feat.avx512vl = b & (1u << 31);
    feat.avx512vnni = c & (1u << 11);
    feat.amx_bf16 = d & (1u << 22);
    feat.amx_tile = d & (1u << 24);
    feat.amx_int8 = d & (1u << 25);
    unsigned max7 = a;
    if (max7 >= 1) {
        __cpuid_count(7, 1, a, b, c, d);
        feat.avx512bf16 = a & (1u << 5);
    }
    if (feat.amx_tile && __get_cpuid_max(0, NULL) >= 0x1D) {
        __cpuid_count(0x1D, 0, a, b, c, d);
        feat.amx_palettes = (int)a;
    }
}

const kern_cpu_features *kern_cpu_features_get(void)
{
    pthread_once(&feat_once, detect);
    return &feat;
}

static adg_error *perm_err;
static pthread_once_t perm_once = PTHREAD_ONCE_INIT;

static void request_perm(void)
{
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0)
        return;
    int err = errno;
    adg_error *e = adg_error_errno(err == EPERM ? ADG_E_PERMISSION : ADG_E_UNSUPPORTED, err,
                                   "the kernel refused AMX tile data permission "
                                   "(arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA)");
    if (err == EINVAL)
        adg_error_hint(e, "Linux 5.16 or later is needed for AMX; on this kernel use --cpu-kernels avx512");
    else if (err == EPERM)
        adg_error_hint(e, "a seccomp filter or container policy blocks it; allow arch_prctl or use --cpu-kernels avx512");
    else if (err == EOPNOTSUPP)
        adg_error_hint(e, "this CPU (or the hypervisor) does not offer AMX tile data; use --cpu-kernels avx512");
    else if (err == ENOSPC)
        adg_error_hint(e, "a sigaltstack too small for the AMX state is installed; enlarge it, or use --cpu-kernels avx512");
    else
        adg_error_hint(e, "run `amxdiag probe` for the full AMX check, or use --cpu-kernels avx512");
    perm_err = e;
}

adg_error *kern_amx_request_permission(void)
{
    pthread_once(&perm_once, request_perm);
    if (!perm_err)
        return NULL;
    adg_error *e = adg_error_new(adg_error_kind(perm_err), "%s", adg_error_msg(perm_err));
    if (adg_error_remedy(perm_err))
        adg_error_hint(e, "%s", adg_error_remedy(perm_err));
    return e;
}

static adg_error *need_avx512(void)
{
    const kern_cpu_features *f = kern_cpu_features_get();
    const char *missing = !f->avx512f ? "AVX-512F" : !f->avx512bw ? "AVX-512BW" : !f->avx512vl ? "AVX-512VL"
                        : !f->avx512vnni ? "AVX-512 VNNI" : !f->avx512bf16 ? "AVX-512 BF16" : !f->fma ? "FMA"
                        : !f->f16c ? "F16C" : NULL;
    if (missing)
        return adg_error_hint(adg_error_new(ADG_E_HARDWARE, "this CPU lacks %s, which the avx512 kernels need", missing),
                              "use --cpu-kernels ref (or auto)");
    if (!f->os_avx512)
        return adg_error_hint(adg_error_new(ADG_E_HARDWARE, "the OS has not enabled AVX-512 state (XCR0)"),
                              "use --cpu-kernels ref (or auto)");
    return NULL;
}

adg_error *kern_impl_check(kern_impl impl)
{
    const kern_cpu_features *f = kern_cpu_features_get();
    switch (impl) {
    case KERN_IMPL_AUTO:
    case KERN_IMPL_REF:
        return NULL;
    case KERN_IMPL_AVX512:
        return need_avx512();
    case KERN_IMPL_AMX_EMU: {
        /* The emulated AMX kernels still use AVX-512 for everything around the tiles. */
        adg_error *e = need_avx512();
        return e ? adg_error_prefix(e, "amx-emu") : NULL;
    }
    case KERN_IMPL_AMX: {
        adg_error *e = need_avx512();
        if (e)
            return adg_error_prefix(e, "amx");
        if (!f->amx_tile || !f->amx_int8 || !f->amx_bf16)
            return adg_error_hint(adg_error_new(ADG_E_HARDWARE, "this CPU does not report AMX-TILE/INT8/BF16 in CPUID"),
                                  "AMX needs Sapphire Rapids or later; use --cpu-kernels avx512");
        if (!f->os_amx)
            return adg_error_hint(adg_error_new(ADG_E_HARDWARE, "the OS has not enabled AMX tile state (XCR0 bits 17/18)"),
                                  "a hypervisor or kernel may hide AMX; use --cpu-kernels avx512");
        if (f->amx_palettes < 1)
            return adg_error_hint(adg_error_new(ADG_E_HARDWARE, "CPUID leaf 0x1D reports no AMX palette"),
                                  "some VMs advertise AMX without palettes; use --cpu-kernels avx512");
        return kern_amx_request_permission();
    }
    }
    return adg_error_new(ADG_E_USAGE, "unknown kernel implementation %d", (int)impl);
}

static const char *impl_names[] = {"auto", "ref", "avx512", "amx", "amx-emu"};

const char *kern_impl_name(kern_impl impl)
{
    return (unsigned)impl < sizeof impl_names / sizeof impl_names[0] ? impl_names[impl] : "unknown";
}

bool kern_amx_scales_parse(const char *s, bool *row)
{
    if (!s || (strcmp(s, "block") && strcmp(s, "row")))
        return false;
    *row = !strcmp(s, "row");
    return true;
}

bool kern_impl_parse(const char *s, kern_impl *out)
{
    for (unsigned i = 0; s && i < sizeof impl_names / sizeof impl_names[0]; i++)
        if (strcmp(s, impl_names[i]) == 0) {
            *out = (kern_impl)i;
            return true;
        }
    return false;
}
