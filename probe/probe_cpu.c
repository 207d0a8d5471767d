#include "probe/probe_cpu.h"

#include <stdio.h>
#include <string.h>

#include "common/adg_util.h"

static const probe_isa_row isa_rows[] = {
    {PROBE_F_OSXSAVE, "osxsave", "OSXSAVE", 1, 0, PROBE_ECX, 27, NULL, false, "the OS manages extended state (XGETBV)"},
    {PROBE_F_AVX, "avx", "AVX", 1, 0, PROBE_ECX, 28, "avx", false, "256-bit vectors"},
    {PROBE_F_FMA, "fma", "FMA", 1, 0, PROBE_ECX, 12, "fma", false, "fused multiply-add"},
    {PROBE_F_HYPERVISOR, "hypervisor", "hypervisor present", 1, 0, PROBE_ECX, 31, "hypervisor", false, ""},
    {PROBE_F_AVX2, "avx2", "AVX2", 7, 0, PROBE_EBX, 5, "avx2", true, "baseline of every inference engine's x86 kernels"},
    {PROBE_F_AVX_VNNI, "avx_vnni", "AVX-VNNI", 7, 1, PROBE_EAX, 4, "avx_vnni", true, "int8 dot products on 256-bit vectors"},
    {PROBE_F_AVX512F, "avx512f", "AVX-512 F", 7, 0, PROBE_EBX, 16, "avx512f", true, "512-bit vectors"},
    {PROBE_F_AVX512DQ, "avx512dq", "AVX-512 DQ", 7, 0, PROBE_EBX, 17, "avx512dq", false, ""},
    {PROBE_F_AVX512BW, "avx512bw", "AVX-512 BW", 7, 0, PROBE_EBX, 30, "avx512bw", true, "byte/word ops of the quantized kernels"},
    {PROBE_F_AVX512VL, "avx512vl", "AVX-512 VL", 7, 0, PROBE_EBX, 31, "avx512vl", true, "AVX-512 ops on 128/256-bit registers"},
    {PROBE_F_AVX512_VNNI, "avx512_vnni", "AVX-512 VNNI", 7, 0, PROBE_ECX, 11, "avx512_vnni", true,
     "int8 dot products (VPDPBUSD): llama.cpp's AMX backend uses them at batch 1"},
    {PROBE_F_AVX512_BF16, "avx512_bf16", "AVX-512 BF16", 7, 1, PROBE_EAX, 5, "avx512_bf16", true, "bf16 dot products (VDPBF16PS)"},
    {PROBE_F_AVX512_FP16, "avx512_fp16", "AVX-512 FP16", 7, 0, PROBE_EDX, 23, "avx512_fp16", true, "half-precision arithmetic"},
    {PROBE_F_AMX_BF16, "amx_bf16", "AMX-BF16", 7, 0, PROBE_EDX, 22, "amx_bf16", true, "TDPBF16PS"},
    {PROBE_F_AMX_TILE, "amx_tile", "AMX-TILE", 7, 0, PROBE_EDX, 24, "amx_tile", true, "tile registers and LDTILECFG"},
    {PROBE_F_AMX_INT8, "amx_int8", "AMX-INT8", 7, 0, PROBE_EDX, 25, "amx_int8", true, "TDPBSSD/TDPBSUD/TDPBUSD/TDPBUUD"},
    {PROBE_F_AMX_FP16, "amx_fp16", "AMX-FP16", 7, 1, PROBE_EAX, 21, "amx_fp16", true, "TDPFP16PS (Granite Rapids)"},
    {PROBE_F_AMX_COMPLEX, "amx_complex", "AMX-COMPLEX", 7, 1, PROBE_EDX, 8, "amx_complex", true, "complex-number tiles"},
};

const probe_isa_row *probe_isa_table(size_t *n)
{
    *n = ADG_ARRAY_LEN(isa_rows);
    return isa_rows;
}

const probe_isa_row *probe_isa_row_of(probe_feature f)
{
    for (size_t i = 0; i < ADG_ARRAY_LEN(isa_rows); i++)
        if (isa_rows[i].f == f)
            return &isa_rows[i];
    return NULL;
}

#define INTEL "GenuineIntel"
#define AMD "AuthenticAMD"
#define ANY_STEP 0, 255
/* Theoretical per-core rates: AMX TMUL does 1024 int8 / 512 bf16 multiply-adds per cycle;
 * 512-bit VPDPBUSD (64 multiply-adds) issues on two ports on Xeon server cores and on
 * Zen 5, one on Zen 4 (double-pumped 256-bit units). */
static const probe_uarch uarch_rows[] = {
    {INTEL, 6, 85, 85, 0, 4, "Skylake-SP", "1st Gen Xeon Scalable", false, 0, 0, 0, "skx"},
    {INTEL, 6, 85, 85, 5, 7, "Cascade Lake", "2nd Gen Xeon Scalable", false, 0, 0, 256, "clx"},
    {INTEL, 6, 85, 85, 8, 255, "Cooper Lake", "3rd Gen Xeon Scalable", false, 0, 0, 256, "clx"},
    {INTEL, 6, 106, 106, ANY_STEP, "Ice Lake-SP", "3rd Gen Xeon Scalable", false, 0, 0, 256, "icx"},
    {INTEL, 6, 108, 108, ANY_STEP, "Ice Lake-D", "Xeon D", false, 0, 0, 256, "icx"},
    {INTEL, 6, 143, 143, ANY_STEP, "Sapphire Rapids", "4th Gen Xeon Scalable", true, 2048, 1024, 256, "spr"},
    {INTEL, 6, 207, 207, ANY_STEP, "Emerald Rapids", "5th Gen Xeon Scalable", true, 2048, 1024, 256, "spr"},
    {INTEL, 6, 173, 173, ANY_STEP, "Granite Rapids", "Xeon 6 P-core", true, 2048, 1024, 256, "spr"},
    {INTEL, 6, 174, 174, ANY_STEP, "Granite Rapids-D", "Xeon 6 SoC", true, 2048, 1024, 256, "spr"},
    {INTEL, 6, 175, 175, ANY_STEP, "Sierra Forest", "Xeon 6 E-core", false, 0, 0, 0, NULL},
    {INTEL, 6, 221, 221, ANY_STEP, "Clearwater Forest", "Xeon 6+ E-core", false, 0, 0, 0, NULL},
    {INTEL, 6, 126, 126, ANY_STEP, "Ice Lake", "10th Gen Core", false, 0, 0, 128, "icl"},
    {INTEL, 6, 140, 141, ANY_STEP, "Tiger Lake", "11th Gen Core", false, 0, 0, 128, "tgl"},
    {INTEL, 6, 151, 154, ANY_STEP, "Alder Lake", "12th Gen Core", false, 0, 0, 0, "adl_glc"},
    {INTEL, 6, 183, 183, ANY_STEP, "Raptor Lake", "13th/14th Gen Core", false, 0, 0, 0, "adl_glc"},
    {INTEL, 6, 186, 186, ANY_STEP, "Raptor Lake", "13th/14th Gen Core", false, 0, 0, 0, "adl_glc"},
    {INTEL, 6, 191, 191, ANY_STEP, "Raptor Lake", "13th/14th Gen Core", false, 0, 0, 0, "adl_glc"},
    {INTEL, 6, 170, 172, ANY_STEP, "Meteor Lake", "Core Ultra 1", false, 0, 0, 0, NULL},
    {INTEL, 6, 189, 189, ANY_STEP, "Lunar Lake", "Core Ultra 200V", false, 0, 0, 0, NULL},
    {INTEL, 6, 197, 198, ANY_STEP, "Arrow Lake", "Core Ultra 200", false, 0, 0, 0, NULL},
    {AMD, 0x17, 0x00, 0x2f, ANY_STEP, "Zen / Zen+", "EPYC 7001 / Ryzen 1000-2000", false, 0, 0, 0, "amd64_fam17h_zen1"},
    {AMD, 0x17, 0x30, 0xff, ANY_STEP, "Zen 2", "EPYC 7002 / Ryzen 3000", false, 0, 0, 0, "amd64_fam17h_zen2"},
    {AMD, 0x19, 0x00, 0x0f, ANY_STEP, "Zen 3", "EPYC 7003", false, 0, 0, 0, "amd64_fam19h_zen3"},
    {AMD, 0x19, 0x10, 0x1f, ANY_STEP, "Zen 4", "EPYC 9004 (Genoa)", false, 0, 0, 128, "amd64_fam19h_zen4"},
    {AMD, 0x19, 0x20, 0x5f, ANY_STEP, "Zen 3", "Ryzen 5000", false, 0, 0, 0, "amd64_fam19h_zen3"},
    {AMD, 0x19, 0x60, 0x7f, ANY_STEP, "Zen 4", "Ryzen 7000", false, 0, 0, 128, "amd64_fam19h_zen4"},
    {AMD, 0x19, 0xa0, 0xaf, ANY_STEP, "Zen 4c", "EPYC 9704/8004 (Bergamo, Siena)", false, 0, 0, 128, "amd64_fam19h_zen4"},
    {AMD, 0x1a, 0x00, 0xff, ANY_STEP, "Zen 5", "EPYC 9005 (Turin) / Ryzen 9000", false, 0, 0, 256, "amd64_fam1ah_zen5"},
};

const probe_uarch *probe_uarch_table(size_t *n)
{
    *n = ADG_ARRAY_LEN(uarch_rows);
    return uarch_rows;
}

const probe_uarch *probe_uarch_lookup(const char *vendor, unsigned family, unsigned model, unsigned stepping)
{
    for (size_t i = 0; i < ADG_ARRAY_LEN(uarch_rows); i++) {
        const probe_uarch *u = &uarch_rows[i];
        if (!strcmp(u->vendor, vendor) && u->family == family && model >= u->model_lo && model <= u->model_hi &&
            stepping >= u->step_lo && stepping <= u->step_hi)
            return u;
    }
    return NULL;
}

static void regs_str(char *dst, const uint32_t *regs, size_t n)
{
    memcpy(dst, regs, n * 4);
    dst[n * 4] = '\0';
}

void probe_cpu_decode(probe_src *s, probe_cpu *c)
{
    memset(c, 0, sizeof *c);
    uint32_t r[4];
    if (!probe_src_cpuid(s, 0, 0, r))
        return;
    uint32_t v[3] = {r[1], r[3], r[2]}; /* EBX, EDX, ECX spell the vendor */
    regs_str(c->vendor, v, 3);
    if (!probe_src_cpuid(s, 1, 0, r))
        return;
    c->ok = true;
    unsigned fam = (r[0] >> 8) & 0xf, model = (r[0] >> 4) & 0xf;
    c->stepping = r[0] & 0xf;
    if (fam == 0xf)
        fam += (r[0] >> 20) & 0xff;
    if (fam == 0x6 || fam >= 0xf)
        model |= ((r[0] >> 16) & 0xf) << 4;
    c->family = fam;
    c->model = model;
    uint32_t brand[12];
    bool have_brand = true;
    for (uint32_t i = 0; i < 3; i++)
        have_brand &= probe_src_cpuid(s, 0x80000002u + i, 0, brand + 4 * i);
    if (have_brand) {
        regs_str(c->brand, brand, 12);
        char *p = c->brand;
        while (*p == ' ')
            p++;
        memmove(c->brand, p, strlen(p) + 1);
        adg_rstrip(c->brand);
    }
    for (size_t i = 0; i < ADG_ARRAY_LEN(isa_rows); i++) {
        const probe_isa_row *row = &isa_rows[i];
        if (probe_src_cpuid(s, row->leaf, row->subleaf, r)) {
            c->feat_known[row->f] = true;
            c->feat[row->f] = (r[row->reg] >> row->bit) & 1;
        }
    }
    /* Leaf 7 subleaf 1 exists only when 7.0:EAX says so. */
    if (probe_src_cpuid(s, 7, 0, r) && r[0] < 1)
        for (size_t i = 0; i < ADG_ARRAY_LEN(isa_rows); i++)
            if (isa_rows[i].leaf == 7 && isa_rows[i].subleaf == 1)
                c->feat[isa_rows[i].f] = false;
    if (c->feat[PROBE_F_HYPERVISOR] && probe_src_cpuid(s, 0x40000000u, 0, r)) {
        uint32_t h[3] = {r[1], r[2], r[3]};
        regs_str(c->hypervisor, h, 3);
        for (char *p = c->hypervisor; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
                *p = '?';
        if (!c->hypervisor[0])
            snprintf(c->hypervisor, sizeof c->hypervisor, "unnamed");
    }
    c->uarch = probe_uarch_lookup(c->vendor, c->family, c->model, c->stepping);
}

void probe_cpu_uarch_name(const probe_cpu *c, char *buf, size_t len)
{
    if (c->uarch)
        snprintf(buf, len, "%s (%s)", c->uarch->name, c->uarch->product);
    else
        snprintf(buf, len, "unknown (%s family %u model %u)", c->vendor, c->family, c->model);
}

int probe_cpuinfo_has_flag(const char *cpuinfo, const char *flag)
{
    if (!cpuinfo)
        return -1;
    const char *line = strstr(cpuinfo, "\nflags");
    if (!line && !strncmp(cpuinfo, "flags", 5))
        line = cpuinfo;
    else if (line)
        line++;
    if (!line)
        return -1;
    const char *colon = strchr(line, ':');
    const char *eol = strchr(line, '\n');
    if (!colon || (eol && colon > eol))
        return -1;
    size_t fl = strlen(flag);
    for (const char *p = colon + 1; p && (!eol || p < eol);) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t w = strcspn(p, " \t\n");
        if (w == fl && !strncmp(p, flag, fl))
            return 1;
        if (!p[w] || p[w] == '\n')
            break;
        p += w;
    }
    return 0;
}
