/* The CUDA support matrix and the code-selection rules of the driver.
 *
 * Sources: NVIDIA's CUDA Toolkit release notes (minimum driver per toolkit), the CUDA
 * C++ Programming Guide ("Binary Compatibility", "Feature Availability": arch-specific
 * 'a' and family 'f' targets) and the PTX ISA release history.  Adding a CC is adding a
 * row. */
#include "probe/cc_matrix.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cc, architecture, examples, min driver branch, min toolkit, toolkit with 'a', with 'f' */
static const cc_row rows[] = {
    {75, "Turing", "RTX 20xx, T4, Quadro RTX", 410, 10000, 0, 0},
    {80, "Ampere", "A100, A30", 450, 11000, 0, 0},
    {86, "Ampere", "RTX 30xx, A10, A40, RTX A6000", 455, 11010, 0, 0},
    {87, "Ampere (Jetson)", "Jetson AGX Orin", 470, 11040, 0, 0},
    {88, "(listed by nvcc 13.0)", "no public product", 580, 13000, 0, 0},
    {89, "Ada Lovelace", "RTX 40xx, L4, L40, RTX 6000 Ada", 520, 11080, 0, 0},
    {90, "Hopper", "H100, H200, GH200", 520, 11080, 12000, 0},
    {100, "Blackwell", "B200, GB200", 570, 12080, 12080, 12090},
    {103, "Blackwell Ultra", "B300, GB300", 575, 12090, 12090, 12090},
    {110, "Blackwell (Thor)", "Jetson Thor (sm_101 before CUDA 13)", 580, 13000, 13000, 13000},
    {120, "Blackwell (GeForce/RTX Pro)", "RTX 5090, RTX 5080, RTX PRO 6000 Blackwell", 570, 12080, 12080, 12090},
    {121, "Blackwell (GB10)", "DGX Spark", 575, 12090, 12090, 12090},
};

/* PTX ISA version -> CUDA version that introduced it (PTX ISA release history). */
static const struct { int isa, cuda; } ptx_isa_table[] = {
    {63, 10000}, {64, 10010}, {65, 10020}, {70, 11000}, {71, 11010}, {72, 11020}, {73, 11030},
    {74, 11040}, {75, 11050}, {76, 11060}, {77, 11070}, {78, 11080}, {80, 12000}, {81, 12010},
    {82, 12020}, {83, 12030}, {84, 12040}, {85, 12050}, {86, 12070}, {87, 12080}, {88, 12090},
    {90, 13000},
};

const cc_row *cc_rows(size_t *n)
{
    *n = sizeof rows / sizeof rows[0];
    return rows;
}

const cc_row *cc_lookup(int cc)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (rows[i].cc == cc)
            return &rows[i];
    return NULL;
}

int cc_cuda_for_ptx_isa(int isa)
{
    for (size_t i = 0; i < sizeof ptx_isa_table / sizeof ptx_isa_table[0]; i++)
        if (ptx_isa_table[i].isa == isa)
            return ptx_isa_table[i].cuda;
    return 0;
}

int cc_max_ptx_isa(int cuda_version)
{
    int best = 0;
    for (size_t i = 0; i < sizeof ptx_isa_table / sizeof ptx_isa_table[0]; i++)
        if (ptx_isa_table[i].cuda <= cuda_version && ptx_isa_table[i].isa > best)
            best = ptx_isa_table[i].isa;
    /* A driver newer than this table knows at least what the table's last row knows. */
    return best;
}

const char *cc_fmt(int cc, char *buf, size_t len)
{
    snprintf(buf, len, "%d.%d", cc / 10, cc % 10);
    return buf;
}

const char *cc_fmt_cuda(int v, char *buf, size_t len)
{
    snprintf(buf, len, "%d.%d", v / 1000, (v % 1000) / 10);
    return buf;
}

const char *cc_code_name(const cc_code *c, char *buf, size_t len)
{
    if (c->variant)
        snprintf(buf, len, "%s_%d%c", c->ptx ? "compute" : "sm", c->arch, c->variant);
    else
        snprintf(buf, len, "%s_%d", c->ptx ? "compute" : "sm", c->arch);
    return buf;
}

bool cc_code_fits(const cc_code *c, int cc)
{
    int cmaj = c->arch / 10, cmin = c->arch % 10, dmaj = cc / 10, dmin = cc % 10;
    if (c->variant == 'a')
        return c->arch == cc;               /* arch-specific: that CC only */
    if (c->variant == 'f')
        return cmaj == dmaj && dmin >= cmin; /* family: same major, same or later minor */
    if (c->ptx)
        return cc >= c->arch;               /* PTX JITs forward to any later CC */
    return cmaj == dmaj && dmin >= cmin;    /* SASS: binary compatible within a major */
}

/* The driver prefers SASS to PTX, and among candidates of one kind the highest arch
 * (closest to the device); an exact variant match beats a plain one of equal arch. */
static int better(const cc_code *a, const cc_code *b)
{
    if (a->arch != b->arch)
        return a->arch > b->arch;
    return a->variant && !b->variant;
}

void cc_evaluate(const cc_code *codes, size_t n, int cc, int driver_cuda, cc_verdict *out)
{
    char ccs[16], nm[32];
    memset(out, 0, sizeof *out);
    out->chosen = -1;
    cc_fmt(cc, ccs, sizeof ccs);

    int sass = -1, ptx = -1, ptx_old = -1;
    int max_isa = driver_cuda ? cc_max_ptx_isa(driver_cuda) : 0;
    for (size_t i = 0; i < n; i++) {
        const cc_code *c = &codes[i];
        if (!cc_code_fits(c, cc))
            continue;
        if (!c->ptx) {
            if (sass < 0 || better(c, &codes[sass]))
                sass = (int)i;
        } else if (max_isa && c->ptx_isa > max_isa) {
            if (ptx_old < 0 || better(c, &codes[ptx_old]))
                ptx_old = (int)i;
        } else if (ptx < 0 || better(c, &codes[ptx])) {
            ptx = (int)i;
        }
    }
    if (sass >= 0) {
        out->outcome = CC_NATIVE;
        out->chosen = sass;
        const cc_code *c = &codes[sass];
        if (c->arch == cc)
            snprintf(out->reason, sizeof out->reason, "%s SASS runs natively on CC %s",
                     cc_code_name(c, nm, sizeof nm), ccs);
        else
            snprintf(out->reason, sizeof out->reason,
                     "%s SASS runs natively on CC %s (binary compatible within major %d)",
                     cc_code_name(c, nm, sizeof nm), ccs, cc / 10);
        return;
    }
    if (ptx >= 0) {
        out->outcome = CC_JIT;
        out->chosen = ptx;
        snprintf(out->reason, sizeof out->reason,
                 "no SASS for CC %s; the driver JIT-compiles %s PTX at first load (seconds to minutes "
                 "for large binaries, cached in ~/.nv/ComputeCache)",
                 ccs, cc_code_name(&codes[ptx], nm, sizeof nm));
        return;
    }
    if (ptx_old >= 0) {
        char need[16], have[16];
        const cc_code *c = &codes[ptx_old];
        out->outcome = CC_PTX_TOO_NEW;
        out->chosen = -1;
        out->cuda_error = 222;
        snprintf(out->reason, sizeof out->reason,
                 "only %s PTX (ISA %d.%d) fits CC %s, and this driver (CUDA %s) JITs PTX ISA up to %d.%d: "
                 "CUDA_ERROR_UNSUPPORTED_PTX_VERSION (222); it needs a driver for CUDA %s",
                 cc_code_name(c, nm, sizeof nm), c->ptx_isa / 10, c->ptx_isa % 10, ccs,
                 cc_fmt_cuda(driver_cuda, have, sizeof have), max_isa / 10, max_isa % 10,
                 cc_fmt_cuda(cc_cuda_for_ptx_isa(c->ptx_isa), need, sizeof need));
        return;
    }
    out->cuda_error = 209;
    /* Arch-specific code for a sibling CC is the trap of the seed report: sm_120a built
     * for an RTX 5090 does not load on a 12.1 GB10, although sm_120 would. */
    for (size_t i = 0; i < n; i++) {
        const cc_code *c = &codes[i];
        if ((c->variant == 'a' && c->arch / 10 == cc / 10) || (c->variant == 'f' && c->arch / 10 == cc / 10)) {
            out->outcome = CC_ARCH_SPECIFIC;
            snprintf(out->reason, sizeof out->reason,
                     "only %s code matches major %d, and %s code runs on %s only: "
                     "CUDA_ERROR_NO_BINARY_FOR_GPU (209, \"no kernel image is available for execution on "
                     "the device\")",
                     cc_code_name(c, nm, sizeof nm), cc / 10, c->variant == 'a' ? "arch-specific" : "family",
                     c->variant == 'a' ? "exactly that CC" : "the same family with a minor at least as high");
            return;
        }
    }
    out->outcome = CC_NO_IMAGE;
    char have[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < n && used + 24 < sizeof have; i++) {
        int w = snprintf(have + used, sizeof have - used, "%s%s", i ? ", " : "", cc_code_name(&codes[i], nm, sizeof nm));
        if (w > 0)
            used += (size_t)w;
    }
    snprintf(out->reason, sizeof out->reason,
             "no SASS for major %d with minor <= %d and no PTX for CC <= %s (has: %s): "
             "CUDA_ERROR_NO_BINARY_FOR_GPU (209, \"no kernel image is available for execution on the device\")",
             cc / 10, cc % 10, ccs, n ? have : "no device code");
}

adg_error *cc_parse(const char *s, int *cc)
{
    const char *p = s;
    if (!strncmp(p, "sm_", 3))
        p += 3;
    else if (!strncmp(p, "compute_", 8))
        p += 8;
    int major = 0, minor = 0;
    char *end = NULL;
    long v = strtol(p, &end, 10);
    if (end == p || v < 0)
        goto bad;
    if (*end == '.') {
        const char *q = end + 1;
        if (!isdigit((unsigned char)q[0]) || q[1] != '\0')
            goto bad;
        major = (int)v;
        minor = q[0] - '0';
    } else if (*end == '\0' || ((*end == 'a' || *end == 'f') && end[1] == '\0')) {
        if (v < 10 || v > 999)
            goto bad;
        major = (int)(v / 10);
        minor = (int)(v % 10);
    } else {
        goto bad;
    }
    if (major < 1 || major > 99)
        goto bad;
    *cc = major * 10 + minor;
    return NULL;
bad:
    return adg_error_hint(adg_error_new(ADG_E_USAGE, "'%s' is not a compute capability", s),
                          "write it as MAJOR.MINOR (--cc 12.0) or as an SM name (--cc sm_120)");
}

bool cc_driver_supports(int cc, int driver_branch, char *reason, size_t len)
{
    char ccs[16], tk[16];
    const cc_row *r = cc_lookup(cc);
    cc_fmt(cc, ccs, sizeof ccs);
    if (!r) {
        snprintf(reason, len, "CC %s is not in amxdiag's support matrix (7.5 ... 12.1)", ccs);
        return cc > 121; /* newer than the table: cannot judge, assume the driver knows it */
    }
    if (driver_branch >= 100 && driver_branch < r->min_driver) {
        snprintf(reason, len, "CC %s (%s) needs driver >= %d and toolkit >= %s; this driver is %d", ccs,
                 r->arch_name, r->min_driver, cc_fmt_cuda(r->min_toolkit, tk, sizeof tk), driver_branch);
        return false;
    }
    snprintf(reason, len, "CC %s (%s, e.g. %s) needs driver >= %d and toolkit >= %s%s", ccs, r->arch_name,
             r->examples, r->min_driver, cc_fmt_cuda(r->min_toolkit, tk, sizeof tk),
             driver_branch ? "; the driver is new enough" : "");
    return true;
}
