/* The AMX checks of `probe --binary`: what tile code a binary holds and whether each
 * tile configuration it loads has rows and colsb (GCC 12's _tile_loadconfig bug leaves
 * them zero: SIGILL at the first tile instruction). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "probe/binary_amx.h"

/* Beyond this many LDTILECFG sites, the rest are summarised in one check. */
#define MAX_SITE_CHECKS 32

static const char *REMEDY_UNWRITTEN =
    "the tile configuration's rows and colsb are never stored, so the first tile instruction will raise SIGILL. "
    "This is GCC 12's _tile_loadconfig bug (the 64-byte block is passed as an 8-byte memory operand, so the "
    "compiler drops the stores): build with a compiler whose _tile_loadconfig keeps them (clang; a GCC whose "
    "amxtileintrin.h uses __builtin_ia32_ldtilecfg) and check the rebuilt binary with amxdiag probe --binary, or load "
    "the configuration with an ldtilecfg asm whose memory operand covers all 64 bytes, e.g. "
    "asm volatile(\"ldtilecfg %0\" :: \"m\"(*(const struct { char b[64]; } *)cfg)) (as amxdiag's kernels do)";

static void where(const amx_cfg_site *s, char *buf, size_t len)
{
    if (s->func[0])
        snprintf(buf, len, "0x%" PRIx64 " (%s+0x%" PRIx64 ")", s->addr, s->func, s->addr - s->func_addr);
    else
        snprintf(buf, len, "0x%" PRIx64, s->addr);
}

/* '.' not stored on the path, '0' zero, 'w' written (non-zero or computed). */
static void state_string(const amx_cfg_site *s, char out[65])
{
    for (int b = 0; b < 64; b++)
        out[b] = s->state[b] == AMX_BYTE_ZERO ? '0' : s->state[b] == AMX_BYTE_SET ? 'w' : '.';
    out[64] = '\0';
}

static json_t *site_json(const amx_cfg_site *s)
{
    char hex[32], st[65];
    json_t *d = json_object();
    snprintf(hex, sizeof hex, "0x%" PRIx64, s->addr);
    json_object_set_new(d, "address", json_string(hex));
    json_object_set_new(d, "function", s->func[0] ? json_string(s->func) : json_null());
    json_object_set_new(d, "instruction", json_string(s->insn));
    json_object_set_new(d, "verdict", json_string(amx_cfg_verdict_name(s->verdict)));
    json_object_set_new(d, "reason", json_string(s->reason));
    json_object_set_new(d, "palette", s->palette_known ? json_integer(s->palette) : json_null());
    if (s->absolute) {
        snprintf(hex, sizeof hex, "0x%" PRIx64, s->block_addr);
        json_object_set_new(d, "block_address", json_string(hex));
    } else {
        json_object_set_new(d, "block_address", json_null());
    }
    json_object_set_new(d, "data_section", s->data_section[0] ? json_string(s->data_section) : json_null());
    state_string(s, st);
    json_object_set_new(d, "bytes", json_string(st));
    json_t *stores = json_array(); /* program order */
    for (size_t i = 0; i < s->nstores; i++) {
        const amx_cfg_store *x = &s->stores[i];
        json_t *o = json_object();
        snprintf(hex, sizeof hex, "0x%" PRIx64, x->addr);
        json_object_set_new(o, "address", json_string(hex));
        json_object_set_new(o, "first_byte", json_integer(x->lo));
        json_object_set_new(o, "end_byte", json_integer(x->hi));
        json_object_set_new(o, "zero", json_boolean(x->zero));
        json_object_set_new(o, "instruction", json_string(x->text));
        json_array_append_new(stores, o);
    }
    json_object_set_new(d, "stores", stores);
    json_object_set_new(d, "stores_total", json_integer((json_int_t)s->nstores_total));
    return d;
}

static void site_evidence(const amx_cfg_site *s, adg_strbuf *sb)
{
    char at[200];
    where(s, at, sizeof at);
    adg_sb_printf(sb, "%s at %s: %s", s->insn, at, s->reason);
    if (s->palette_known)
        adg_sb_printf(sb, "; palette %u", s->palette);
    if (s->nstores) {
        adg_sb_puts(sb, "; stores into the block, in program order:");
        if (s->nstores_total > s->nstores)
            adg_sb_printf(sb, "\n  ... %zu earlier", s->nstores_total - s->nstores);
        for (size_t i = 0; i < s->nstores; i++) {
            const amx_cfg_store *x = &s->stores[i];
            adg_sb_printf(sb, "\n  0x%" PRIx64 " %s  (bytes %d-%d, %s)", x->addr, x->text, x->lo, x->hi - 1,
                          x->zero ? "zero" : "written");
        }
    } else {
        adg_sb_puts(sb, "; no store into the block on the path");
    }
}

static probe_status site_status(const amx_cfg_site *s)
{
    return s->verdict == AMX_CFG_WRITTEN ? PROBE_PASS : s->verdict == AMX_CFG_UNWRITTEN ? PROBE_FAIL : PROBE_INFO;
}

static void site_check(probe_report *rep, size_t k, size_t i, const amx_cfg_site *s)
{
    char id[64], title[300], at[200];
    snprintf(id, sizeof id, "binary.%zu.amx.cfg.%zu", k, i);
    where(s, at, sizeof at);
    snprintf(title, sizeof title, "tile configuration loaded at %s is complete", at);
    const char *expl = s->verdict == AMX_CFG_WRITTEN
                           ? "rows and colsb are stored before the LDTILECFG: the tiles it configures are usable"
                       : s->verdict == AMX_CFG_UNWRITTEN
                           ? "every tile of this configuration has 0 rows: the first tile instruction after it raises "
                             "#UD (SIGILL)"
                           : "could not be decided from the code before the LDTILECFG";
    adg_strbuf sb;
    adg_sb_init(&sb);
    site_evidence(s, &sb);
    probe_check *c = probe_add(rep, "binary", id, site_status(s), title, expl, "%s", sb.buf ? sb.buf : "");
    adg_sb_free(&sb);
    if (s->verdict == AMX_CFG_UNWRITTEN)
        probe_check_set_remedy(c, "%s", REMEDY_UNWRITTEN);
    probe_check_set_data(c, site_json(s));
}

/* The sites past MAX_SITE_CHECKS, as one check with the worst status. */
static void rest_check(probe_report *rep, size_t k, const amx_scan *s)
{
    size_t n[3] = {0, 0, 0};
    adg_strbuf sb;
    adg_sb_init(&sb);
    json_t *fails = json_array();
    for (size_t i = MAX_SITE_CHECKS; i < s->nsites; i++) {
        n[s->sites[i].verdict]++;
        if (s->sites[i].verdict == AMX_CFG_UNWRITTEN && json_array_size(fails) < 64)
            json_array_append_new(fails, site_json(&s->sites[i]));
    }
    adg_sb_printf(&sb, "%zu more LDTILECFG sites: %zu written, %zu never written, %zu undecided", s->nsites - MAX_SITE_CHECKS,
                  n[AMX_CFG_WRITTEN], n[AMX_CFG_UNWRITTEN], n[AMX_CFG_UNKNOWN]);
    for (size_t i = MAX_SITE_CHECKS, shown = 0; i < s->nsites && shown < 8; i++) {
        if (s->sites[i].verdict != AMX_CFG_UNWRITTEN)
            continue;
        char at[200];
        where(&s->sites[i], at, sizeof at);
        adg_sb_printf(&sb, "\n  never written: %s", at);
        shown++;
    }
    char id[64];
    snprintf(id, sizeof id, "binary.%zu.amx.cfg.more", k);
    probe_status st = n[AMX_CFG_UNWRITTEN] ? PROBE_FAIL : n[AMX_CFG_UNKNOWN] ? PROBE_INFO : PROBE_PASS;
    probe_check *c = probe_add(rep, "binary", id, st, "the other tile configurations are complete",
                               "the LDTILECFG sites past the first 32, summarised", "%s", sb.buf ? sb.buf : "");
    adg_sb_free(&sb);
    if (n[AMX_CFG_UNWRITTEN])
        probe_check_set_remedy(c, "%s", REMEDY_UNWRITTEN);
    json_t *d = json_object();
    json_object_set_new(d, "written", json_integer((json_int_t)n[AMX_CFG_WRITTEN]));
    json_object_set_new(d, "unwritten", json_integer((json_int_t)n[AMX_CFG_UNWRITTEN]));
    json_object_set_new(d, "unknown", json_integer((json_int_t)n[AMX_CFG_UNKNOWN]));
    json_object_set_new(d, "unwritten_sites", fails);
    probe_check_set_data(c, d);
}

static json_t *counts_json(const amx_scan *s, double secs)
{
    json_t *d = json_object();
    const amx_counts *c = &s->counts;
    json_object_set_new(d, "instructions", json_integer((json_int_t)c->total));
    json_object_set_new(d, "tdp", json_integer((json_int_t)c->tdp));
    json_object_set_new(d, "tileloadd", json_integer((json_int_t)c->tileloadd));
    json_object_set_new(d, "tilestored", json_integer((json_int_t)c->tilestored));
    json_object_set_new(d, "ldtilecfg", json_integer((json_int_t)c->ldtilecfg));
    json_object_set_new(d, "sttilecfg", json_integer((json_int_t)c->sttilecfg));
    json_object_set_new(d, "tilezero", json_integer((json_int_t)c->tilezero));
    json_object_set_new(d, "tilerelease", json_integer((json_int_t)c->tilerelease));
    json_object_set_new(d, "decoded_instructions", json_integer((json_int_t)s->insns));
    json_object_set_new(d, "code_bytes", json_integer((json_int_t)s->bytes));
    json_object_set_new(d, "seconds", json_real(secs));
    return d;
}

adg_error *binary_amx_checks(probe_report *rep, size_t k, const char *path, const char *base)
{
    amx_scan s;
    amx_scan_init(&s);
    bool applies = false;
    char machine[64];
    uint64_t t0 = adg_now_ns();
    adg_error *e = binary_amx_scan(path, &s, &applies, machine, sizeof machine);
    double secs = (double)(adg_now_ns() - t0) / 1e9;
    if (e) {
        amx_scan_free(&s);
        return e;
    }
    char id[64], title[300], b1[32];
    snprintf(id, sizeof id, "binary.%zu.amx", k);
    snprintf(title, sizeof title, "AMX code in %s", base);
    if (!applies) {
        /* A .fatbin or cubin has no host code: nothing to say. */
        if (strcmp(machine, "not an ELF file") != 0 && strcmp(machine, "CUDA (a cubin)") != 0)
            probe_add(rep, "binary", id, PROBE_SKIP, title, "AMX is an x86-64 feature and this is not x86-64 code",
                      "%s: %s", path, machine);
        amx_scan_free(&s);
        return NULL;
    }
    const amx_counts *c = &s.counts;
    probe_check *chk;
    if (!c->total) {
        chk = probe_add(rep, "binary", id, PROBE_INFO, title,
                        "the binary holds no tile instructions: nothing to check for AMX (if it uses AMX through a "
                        "shared library, probe that library)",
                        "%" PRIu64 " instructions decoded in %s of code: no AMX instruction", s.insns,
                        adg_fmt_bytes((double)s.bytes, b1, sizeof b1));
        probe_check_set_data(chk, counts_json(&s, secs));
        amx_scan_free(&s);
        return NULL;
    }
    chk = probe_add(rep, "binary", id, PROBE_INFO, title, "the tile instructions in the binary's code",
                    "%" PRIu64 " AMX instructions: %" PRIu64 " TDP* (dot products), %" PRIu64 " TILELOADD, %" PRIu64
                    " TILESTORED, %" PRIu64 " LDTILECFG, %" PRIu64 " STTILECFG, %" PRIu64 " TILEZERO, %" PRIu64
                    " TILERELEASE; first at 0x%" PRIx64 " (%" PRIu64 " instructions decoded in %s of code)",
                    c->total, c->tdp, c->tileloadd, c->tilestored, c->ldtilecfg, c->sttilecfg, c->tilezero,
                    c->tilerelease, s.first_amx, s.insns, adg_fmt_bytes((double)s.bytes, b1, sizeof b1));
    probe_check_set_data(chk, counts_json(&s, secs));

    snprintf(id, sizeof id, "binary.%zu.amx.permission", k);
    json_t *pd = json_object();
    json_t *sites = json_array();
    for (size_t i = 0; i < s.nperm; i++) {
        char hex[32];
        snprintf(hex, sizeof hex, "0x%" PRIx64, s.perm_sites[i]);
        json_array_append_new(sites, json_string(hex));
    }
    json_object_set_new(pd, "sites", sites);
    if (s.nperm) {
        adg_strbuf sb;
        adg_sb_init(&sb);
        for (size_t i = 0; i < s.nperm; i++)
            adg_sb_printf(&sb, "%s0x%" PRIx64, i ? ", " : "", s.perm_sites[i]);
        chk = probe_add(rep, "binary", id, PROBE_PASS, "the binary requests the tile data permission",
                        "arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) is made before tiles are used (Linux "
                        "refuses tile data to a process that did not ask)",
                        "the constant 0x1023 (ARCH_REQ_XCOMP_PERM) is loaded before a syscall or a call at %s",
                        sb.buf ? sb.buf : "");
        adg_sb_free(&sb);
    } else {
        chk = probe_add(rep, "binary", id, PROBE_INFO, "the binary requests the tile data permission",
                        "not seen: no load of the constant 0x1023 (ARCH_REQ_XCOMP_PERM) before a syscall or a call "
                        "was found; the request may be made by another module of the process or with a computed "
                        "argument. Without it Linux refuses tile data and the first tile instruction raises SIGILL",
                        "%" PRIu64 " AMX instructions, no ARCH_REQ_XCOMP_PERM request seen", c->total);
        probe_check_set_remedy(chk, "make sure the process calls syscall(SYS_arch_prctl, 0x1023 /* "
                                    "ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) before its first tile "
                                    "instruction (amxdiag probe's amx checks say whether this machine grants it)");
    }
    probe_check_set_data(chk, pd);

    for (size_t i = 0; i < s.nsites && i < MAX_SITE_CHECKS; i++)
        site_check(rep, k, i, &s.sites[i]);
    if (s.nsites > MAX_SITE_CHECKS)
        rest_check(rep, k, &s);
    amx_scan_free(&s);
    return NULL;
}
