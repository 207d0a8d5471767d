#include "probe/amx_scan.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <Zydis/Zydis.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define PERM_LOOKAHEAD 16

typedef struct win_insn {
    ZydisDecodedInstruction in;
    ZydisDecodedOperand op[ZYDIS_MAX_OPERAND_COUNT];
    uint64_t addr;
} win_insn;

const char *amx_cfg_verdict_name(amx_cfg_verdict v)
{
    return v == AMX_CFG_WRITTEN ? "written" : v == AMX_CFG_UNWRITTEN ? "unwritten" : "unknown";
}

void amx_scan_init(amx_scan *s)
{
    memset(s, 0, sizeof *s);
}

void amx_scan_free(amx_scan *s)
{
    free(s->sites);
    memset(s, 0, sizeof *s);
}

static ZydisRegister big(ZydisRegister r)
{
    return r == ZYDIS_REGISTER_NONE ? r : ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, r);
}

static void format(const win_insn *w, char *buf, size_t len)
{
    ZydisFormatter f;
    /* Intel syntax: Zydis's AT&T style adds size suffixes objdump does not print. */
    ZydisFormatterInit(&f, ZYDIS_FORMATTER_STYLE_INTEL);
    ZydisFormatterSetProperty(&f, ZYDIS_FORMATTER_PROP_HEX_UPPERCASE, ZYAN_FALSE);
    ZydisFormatterSetProperty(&f, ZYDIS_FORMATTER_PROP_ADDR_PADDING_ABSOLUTE, ZYDIS_PADDING_DISABLED);
    if (ZYAN_FAILED(ZydisFormatterFormatInstruction(&f, &w->in, w->op, w->in.operand_count_visible, buf, len,
                                                    w->addr, ZYAN_NULL)))
        snprintf(buf, len, "?");
}

static bool is_call(const ZydisDecodedInstruction *in)
{
    return in->meta.category == ZYDIS_CATEGORY_CALL;
}

/* Code before these is not on the path to the next instruction. */
static bool ends_path(const ZydisDecodedInstruction *in)
{
    return in->meta.category == ZYDIS_CATEGORY_RET || in->meta.category == ZYDIS_CATEGORY_UNCOND_BR ||
           in->mnemonic == ZYDIS_MNEMONIC_UD2 || in->mnemonic == ZYDIS_MNEMONIC_HLT;
}

static bool writes_reg(const win_insn *w, ZydisRegister r)
{
    for (unsigned i = 0; i < w->in.operand_count; i++) {
        const ZydisDecodedOperand *o = &w->op[i];
        if (o->type == ZYDIS_OPERAND_TYPE_REGISTER && (o->actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) &&
            big(o->reg.value) == r)
            return true;
    }
    return false;
}

/* xor r,r / pxor x,x / vpxor x,y,y (and the xorps forms), or a move of immediate 0. */
static bool zero_idiom(const win_insn *w)
{
    const ZydisDecodedOperand *o = w->op;
    switch (w->in.mnemonic) {
    case ZYDIS_MNEMONIC_XOR:
    case ZYDIS_MNEMONIC_SUB:
    case ZYDIS_MNEMONIC_PXOR:
    case ZYDIS_MNEMONIC_XORPS:
    case ZYDIS_MNEMONIC_XORPD:
        return w->in.operand_count_visible >= 2 && o[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
               o[1].type == ZYDIS_OPERAND_TYPE_REGISTER && o[0].reg.value == o[1].reg.value;
    case ZYDIS_MNEMONIC_VPXOR:
    case ZYDIS_MNEMONIC_VPXORD:
    case ZYDIS_MNEMONIC_VPXORQ:
    case ZYDIS_MNEMONIC_VXORPS:
    case ZYDIS_MNEMONIC_VXORPD:
        /* A merge-masked form keeps old lanes: not a zeroing. */
        if (w->in.avx.mask.reg != ZYDIS_REGISTER_NONE && w->in.avx.mask.reg != ZYDIS_REGISTER_K0 &&
            w->in.avx.mask.mode != ZYDIS_MASK_MODE_ZEROING)
            return false;
        return w->in.operand_count_visible >= 3 && o[1].type == ZYDIS_OPERAND_TYPE_REGISTER &&
               o[2].type == ZYDIS_OPERAND_TYPE_REGISTER && o[1].reg.value == o[2].reg.value;
    case ZYDIS_MNEMONIC_MOV:
        return w->in.operand_count_visible >= 2 && o[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
               o[1].type == ZYDIS_OPERAND_TYPE_IMMEDIATE && o[1].imm.value.u == 0;
    default:
        return false;
    }
}

/* The value of register r just before win[i], when its last writer on the path is a zero
 * idiom or a move of an immediate. */
static bool reg_value_before(const win_insn *win, size_t i, ZydisRegister r, uint64_t *val)
{
    r = big(r);
    while (i-- > 0) {
        if (is_call(&win[i].in) || ends_path(&win[i].in))
            return false;
        if (!writes_reg(&win[i], r))
            continue;
        if (zero_idiom(&win[i])) {
            *val = 0;
            return true;
        }
        const ZydisDecodedOperand *o = win[i].op;
        if (win[i].in.mnemonic == ZYDIS_MNEMONIC_MOV && o[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
            o[1].type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
            *val = o[1].imm.value.u;
            return true;
        }
        return false;
    }
    return false;
}

static bool reg_zero_before(const win_insn *win, size_t i, ZydisRegister r)
{
    uint64_t v;
    return reg_value_before(win, i, r, &v) && v == 0;
}

/* The block being tracked: [base + disp, +64) for a register base, or an absolute address. */
typedef struct block_key {
    bool absolute;
    ZydisRegister base;
    int64_t disp;    /* or the absolute address */
} block_key;

/* Offset of a memory operand's address within the block's frame; false when the operand
 * is not relative to the same base. */
static bool mem_offset(const win_insn *w, const ZydisDecodedOperand *o, const block_key *k, int64_t *off)
{
    if (o->mem.index != ZYDIS_REGISTER_NONE)
        return false;
    if (o->mem.segment == ZYDIS_REGISTER_FS || o->mem.segment == ZYDIS_REGISTER_GS)
        return false;
    if (k->absolute) {
        if (o->mem.base == ZYDIS_REGISTER_RIP) {
            ZyanU64 a;
            if (ZYAN_FAILED(ZydisCalcAbsoluteAddress(&w->in, o, w->addr, &a)))
                return false;
            *off = (int64_t)(a - (uint64_t)k->disp);
            return true;
        }
        if (o->mem.base == ZYDIS_REGISTER_NONE) {
            *off = o->mem.disp.value - k->disp;
            return true;
        }
        return false;
    }
    if (big(o->mem.base) != k->base)
        return false;
    *off = o->mem.disp.value - k->disp;
    return true;
}

static void add_store(amx_cfg_site *s, const win_insn *w, int64_t lo, int64_t hi, bool zero)
{
    s->nstores_total++;
    if (s->nstores >= AMX_SCAN_MAX_STORES)
        return;
    amx_cfg_store *st = &s->stores[s->nstores++];
    st->addr = w->addr;
    st->lo = (int)(lo < 0 ? 0 : lo);
    st->hi = (int)(hi > 64 ? 64 : hi);
    st->zero = zero;
    format(w, st->text, sizeof st->text);
}

static bool all_seen(const amx_cfg_site *s)
{
    for (int b = 0; b < 64; b++)
        if (s->state[b] == AMX_BYTE_UNSEEN)
            return false;
    return true;
}

static void mark(amx_cfg_site *s, int64_t lo, int64_t hi, uint8_t st)
{
    for (int64_t b = lo < 0 ? 0 : lo; b < hi && b < 64; b++)
        if (s->state[b] == AMX_BYTE_UNSEEN)
            s->state[b] = st;
}

/* The stores of win[i] into the block. Returns true when one touched it. */
static bool stores_into(amx_cfg_site *s, const win_insn *win, size_t i, const block_key *k)
{
    const win_insn *w = &win[i];
    bool touched = false;
    for (unsigned j = 0; j < w->in.operand_count; j++) {
        const ZydisDecodedOperand *o = &w->op[j];
        if (o->type != ZYDIS_OPERAND_TYPE_MEMORY || o->mem.type != ZYDIS_MEMOP_TYPE_MEM ||
            !(o->actions & ZYDIS_OPERAND_ACTION_MASK_WRITE))
            continue;
        int64_t off;
        if (!mem_offset(w, o, k, &off))
            continue;
        int64_t size = o->size / 8;
        if (size <= 0 || off + size <= 0 || off >= 64)
            continue;
        /* The value: the other explicit operand of a move (imm or register). */
        bool zero = false;
        bool masked = w->in.avx.mask.reg != ZYDIS_REGISTER_NONE && w->in.avx.mask.reg != ZYDIS_REGISTER_K0;
        const ZydisDecodedOperand *src = NULL;
        for (unsigned m = 0; m < w->in.operand_count_visible; m++)
            if (m != j && (w->op[m].type == ZYDIS_OPERAND_TYPE_IMMEDIATE ||
                           (w->op[m].type == ZYDIS_OPERAND_TYPE_REGISTER && w->op[m].reg.value != w->in.avx.mask.reg)))
                src = &w->op[m];
        bool is_move = w->in.meta.category == ZYDIS_CATEGORY_DATAXFER || w->in.meta.category == ZYDIS_CATEGORY_AVX512 ||
                       w->in.meta.category == ZYDIS_CATEGORY_SSE || w->in.meta.category == ZYDIS_CATEGORY_AVX ||
                       w->in.mnemonic == ZYDIS_MNEMONIC_MOV;
        if (src && is_move && !masked) {
            if (src->type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
                zero = src->imm.value.u == 0;
            else
                zero = reg_zero_before(win, i, src->reg.value);
        } else if (w->in.mnemonic == ZYDIS_MNEMONIC_AND && src && src->type == ZYDIS_OPERAND_TYPE_IMMEDIATE &&
                   src->imm.value.u == 0) {
            zero = true;
        }
        if (off <= 0 && off + size > 0 && s->state[0] == AMX_BYTE_UNSEEN && src && is_move && !masked) {
            uint64_t v = 0;
            if (src->type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
                v = src->imm.value.u;
                s->palette_known = true;
            } else {
                s->palette_known = reg_value_before(win, i, src->reg.value, &v);
            }
            s->palette = (uint8_t)(v >> (8 * -off));
        }
        /* A read-modify-write of a byte not yet seen (or, add ...) leaves it unknown:
         * counted as written, never as proof of zero. */
        mark(s, off, off + size, zero ? AMX_BYTE_ZERO : AMX_BYTE_SET);
        add_store(s, w, off, off + size, zero);
        touched = true;
    }
    return touched;
}

/* lea OFF(block), %rdi before a call: the call fills the block (memcpy, an init helper). */
static bool call_fills_block(const win_insn *win, size_t call, const block_key *k)
{
    for (size_t j = call, n = 0; j-- > 0 && n < 8; n++) {
        const win_insn *w = &win[j];
        if (is_call(&w->in) || ends_path(&w->in))
            return false;
        if (!writes_reg(w, ZYDIS_REGISTER_RDI))
            continue;
        if (w->in.mnemonic != ZYDIS_MNEMONIC_LEA)
            return false;
        int64_t off;
        return mem_offset(w, &w->op[1], k, &off) && off > -64 && off < 64;
    }
    return false;
}

/* A write to the tracked base register: follow it when it is an address computation
 * (lea X(%rip) / lea d(%reg) / mov %reg2,%reg), else the block is lost. */
static bool follow_base(const win_insn *w, block_key *k)
{
    const ZydisDecodedOperand *o = w->op;
    if (w->in.mnemonic == ZYDIS_MNEMONIC_LEA && o[1].mem.index == ZYDIS_REGISTER_NONE) {
        if (o[1].mem.base == ZYDIS_REGISTER_RIP) {
            ZyanU64 a;
            if (ZYAN_FAILED(ZydisCalcAbsoluteAddress(&w->in, &o[1], w->addr, &a)))
                return false;
            k->absolute = true;
            k->disp = (int64_t)a + k->disp;
            return true;
        }
        if (o[1].mem.base != ZYDIS_REGISTER_NONE && o[0].size == 64) {
            k->base = big(o[1].mem.base);
            k->disp += o[1].mem.disp.value;
            return true;
        }
        return false;
    }
    if (w->in.mnemonic == ZYDIS_MNEMONIC_MOV && o[0].size == 64 && o[1].type == ZYDIS_OPERAND_TYPE_REGISTER) {
        k->base = big(o[1].reg.value);
        return true;
    }
    if (w->in.mnemonic == ZYDIS_MNEMONIC_MOV && o[0].size == 64 && o[1].type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
        k->absolute = true;
        k->disp = (int64_t)o[1].imm.value.u + k->disp;
        return true;
    }
    return false;
}

static void decide(amx_cfg_site *s, const block_key *k, const char *stop, bool fresh_frame, amx_data_fn data,
                   void *ctx)
{
    size_t set = 0, zero = 0, unseen = 0;
    for (int b = 16; b < 64; b++) {
        set += s->state[b] == AMX_BYTE_SET;
        zero += s->state[b] == AMX_BYTE_ZERO;
        unseen += s->state[b] == AMX_BYTE_UNSEEN;
    }
    s->absolute = k->absolute;
    s->block_addr = k->absolute ? (uint64_t)k->disp : 0;
    if (!set && s->palette_known && s->palette != 1) {
        /* Palette 0 loads the init state (a release, as TILERELEASE is); palette 2 (ACE)
         * has fixed tile shapes and wants bytes 1-63 zero: no rows to miss. */
        s->verdict = AMX_CFG_UNKNOWN;
        snprintf(s->reason, sizeof s->reason, "palette %u: %s", s->palette,
                 s->palette == 0 ? "the load puts the tiles in their init state (a release), rows are not used"
                                 : "not AMX's palette 1, whose rows/colsb this check is about");
        return;
    }
    if (set) {
        s->verdict = AMX_CFG_WRITTEN;
        snprintf(s->reason, sizeof s->reason, "%zu of the 48 colsb/rows bytes are stored with a non-zero or computed "
                 "value before the load", set);
        return;
    }
    if (!unseen) {
        s->verdict = AMX_CFG_UNWRITTEN;
        snprintf(s->reason, sizeof s->reason, "the block is zeroed and bytes 16-63 (colsb, rows) are never stored%s",
                 s->state[0] == AMX_BYTE_SET ? ": only the palette byte is" : "");
        return;
    }
    if (fresh_frame && !k->absolute && k->base == ZYDIS_REGISTER_RSP) {
        /* The walk reached the function's entry or its frame allocation: whatever was not
         * stored since is stack garbage. */
        s->verdict = AMX_CFG_UNWRITTEN;
        snprintf(s->reason, sizeof s->reason, "bytes 16-63 (colsb, rows) are never stored with a non-zero value in "
                 "the function before the load: %zu hold uninitialised stack (%s)%s", unseen, stop,
                 s->state[0] == AMX_BYTE_SET ? "; the palette byte is stored" : "");
        return;
    }
    if (k->absolute && data) {
        uint8_t bytes[64];
        amx_data_kind dk = data(ctx, (uint64_t)k->disp, bytes, s->data_section, sizeof s->data_section);
        if (dk != AMX_DATA_NONE) {
            size_t nz = 0;
            for (int b = 16; b < 64; b++)
                nz += s->state[b] == AMX_BYTE_UNSEEN && bytes[b] != 0;
            if (s->state[0] == AMX_BYTE_UNSEEN && (nz || dk == AMX_DATA_READONLY)) {
                /* Writable data zero in the file says nothing of the palette at run time. */
                s->palette = bytes[0];
                s->palette_known = true;
            }
            if (nz) {
                for (int b = 0; b < 64; b++)
                    if (s->state[b] == AMX_BYTE_UNSEEN)
                        s->state[b] = bytes[b] ? AMX_BYTE_SET : AMX_BYTE_ZERO;
                s->verdict = AMX_CFG_WRITTEN;
                snprintf(s->reason, sizeof s->reason, "the configuration is initialised data in %s (palette %u, %zu "
                         "non-zero colsb/rows bytes)", s->data_section, s->palette, nz);
                return;
            }
            if (dk == AMX_DATA_READONLY && s->palette_known && s->palette != 1) {
                s->verdict = AMX_CFG_UNKNOWN;
                snprintf(s->reason, sizeof s->reason, "palette %u in %s: not AMX's palette 1, whose rows/colsb this "
                         "check is about", s->palette, s->data_section);
                return;
            }
            if (dk == AMX_DATA_READONLY) {
                for (int b = 0; b < 64; b++)
                    if (s->state[b] == AMX_BYTE_UNSEEN)
                        s->state[b] = bytes[b] ? AMX_BYTE_SET : AMX_BYTE_ZERO;
                s->verdict = AMX_CFG_UNWRITTEN;
                snprintf(s->reason, sizeof s->reason, "the configuration is read-only data in %s whose colsb and rows "
                         "(bytes 16-63) are all zero", s->data_section);
                return;
            }
            s->verdict = AMX_CFG_UNKNOWN;
            snprintf(s->reason, sizeof s->reason, "the configuration lives in writable data (%s), zero in the file: "
                     "it is filled at run time by code not on this path (%s)", s->data_section, stop);
            return;
        }
    }
    s->verdict = AMX_CFG_UNKNOWN;
    snprintf(s->reason, sizeof s->reason, "%zu of the 48 colsb/rows bytes are not stored on the path before the load "
             "(%s)", unseen, stop);
}

/* Stores through a copy of the block's address (lea d(%rsp),%rdx; movw $64,0x10(%rdx)):
 * the backward walk matches only the LDTILECFG's own base, so without this a block filled
 * through a second register would look unwritten.  A forward pass over the walked code
 * tracks such copies; a non-zero store through one into colsb/rows counts as written. */
static void alias_stores(amx_cfg_site *s, const win_insn *win, size_t first, size_t n, const block_key *k0)
{
    if (k0->absolute)
        return;
    int64_t off[ZYDIS_REGISTER_MAX_VALUE + 1];
    bool has[ZYDIS_REGISTER_MAX_VALUE + 1];
    memset(has, 0, sizeof has);
    for (size_t j = first; j < n; j++) {
        const win_insn *w = &win[j];
        for (unsigned m = 0; m < w->in.operand_count; m++) {
            const ZydisDecodedOperand *o = &w->op[m];
            if (o->type != ZYDIS_OPERAND_TYPE_MEMORY || o->mem.type != ZYDIS_MEMOP_TYPE_MEM ||
                !(o->actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) || o->mem.index != ZYDIS_REGISTER_NONE)
                continue;
            ZydisRegister b = big(o->mem.base);
            if (b == ZYDIS_REGISTER_NONE || b == k0->base || (unsigned)b > ZYDIS_REGISTER_MAX_VALUE || !has[b])
                continue;
            int64_t lo = off[b] + o->mem.disp.value, hi = lo + o->size / 8;
            if (hi <= 16 || lo >= 64)
                continue;
            const ZydisDecodedOperand *src = m + 1 < w->in.operand_count_visible ? &w->op[m + 1] : NULL;
            bool zero = src && ((src->type == ZYDIS_OPERAND_TYPE_IMMEDIATE && src->imm.value.u == 0) ||
                                (src->type == ZYDIS_OPERAND_TYPE_REGISTER && reg_zero_before(win, j, src->reg.value)));
            if (zero)
                continue;
            for (int64_t x = lo < 16 ? 16 : lo; x < hi && x < 64; x++)
                s->state[x] = AMX_BYTE_SET;
            add_store(s, w, lo, hi, false);
        }
        const ZydisDecodedOperand *o = w->op;
        bool made = false;
        if (w->in.operand_count_visible >= 2 && o[0].type == ZYDIS_OPERAND_TYPE_REGISTER && o[0].size == 64) {
            ZydisRegister d = big(o[0].reg.value);
            if (w->in.mnemonic == ZYDIS_MNEMONIC_LEA && o[1].mem.index == ZYDIS_REGISTER_NONE &&
                big(o[1].mem.base) == k0->base) {
                off[d] = o[1].mem.disp.value - k0->disp;
                has[d] = made = true;
            } else if (w->in.mnemonic == ZYDIS_MNEMONIC_MOV && o[1].type == ZYDIS_OPERAND_TYPE_REGISTER &&
                       big(o[1].reg.value) == k0->base) {
                off[d] = -k0->disp;
                has[d] = made = true;
            }
        }
        if (made)
            continue;
        for (unsigned m = 0; m < w->in.operand_count; m++)
            if (w->op[m].type == ZYDIS_OPERAND_TYPE_REGISTER && (w->op[m].actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) &&
                (unsigned)big(w->op[m].reg.value) <= ZYDIS_REGISTER_MAX_VALUE)
                has[big(w->op[m].reg.value)] = false;
    }
}

static int store_cmp(const void *a, const void *b)
{
    const amx_cfg_store *x = a, *y = b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static void analyse_site(amx_cfg_site *s, win_insn *win, size_t n, const amx_env *env)
{
    const win_insn *ld = &win[n];
    format(ld, s->insn, sizeof s->insn);
    const ZydisDecodedOperand *mo = NULL;
    for (unsigned i = 0; i < ld->in.operand_count_visible; i++)
        if (ld->op[i].type == ZYDIS_OPERAND_TYPE_MEMORY)
            mo = &ld->op[i];
    block_key k = {0};
    char stop[200];
    if (!mo || mo->mem.index != ZYDIS_REGISTER_NONE) {
        s->verdict = AMX_CFG_UNKNOWN;
        snprintf(s->reason, sizeof s->reason, "the operand is indexed: its address is computed at run time");
        return;
    }
    if (mo->mem.base == ZYDIS_REGISTER_RIP) {
        ZyanU64 a = 0;
        ZydisCalcAbsoluteAddress(&ld->in, mo, ld->addr, &a);
        k.absolute = true;
        k.disp = (int64_t)a;
    } else {
        k.base = big(mo->mem.base);
        k.disp = mo->mem.disp.value;
    }
    bool fresh_frame = false, stopped = false;
    if (n < AMX_SCAN_WINDOW)
        snprintf(stop, sizeof stop, "the code section starts %zu instructions before it", n);
    else
        snprintf(stop, sizeof stop, "the %d instructions before it were looked at", AMX_SCAN_WINDOW);
    const block_key k0 = k;
    size_t first = n;
    for (size_t i = n; i-- > 0;) {
        const win_insn *w = &win[i];
        char t[96];
        first = i;
        if (env && env->is_entry && env->is_entry(env->ctx, win[i + 1].addr)) {
            snprintf(stop, sizeof stop, "the function starts at 0x%" PRIx64, win[i + 1].addr);
            fresh_frame = true;
            stopped = true;
            break;
        }
        if (ends_path(&w->in)) {
            format(w, t, sizeof t);
            snprintf(stop, sizeof stop, "the path starts after '%s' at 0x%" PRIx64, t, w->addr);
            stopped = true;
            break;
        }
        if (is_call(&w->in)) {
            if (call_fills_block(win, i, &k)) {
                for (int b = 0; b < 64; b++)
                    if (s->state[b] == AMX_BYTE_UNSEEN)
                        s->state[b] = AMX_BYTE_SET;
                add_store(s, w, 0, 64, false);
                stopped = true;
                break;
            }
            format(w, t, sizeof t);
            snprintf(stop, sizeof stop, "the path starts after '%s' at 0x%" PRIx64, t, w->addr);
            stopped = true;
            break;
        }
        if ((w->in.attributes & ZYDIS_ATTRIB_HAS_REP) &&
            (w->in.mnemonic == ZYDIS_MNEMONIC_MOVSB || w->in.mnemonic == ZYDIS_MNEMONIC_MOVSQ ||
             w->in.mnemonic == ZYDIS_MNEMONIC_MOVSD || w->in.mnemonic == ZYDIS_MNEMONIC_MOVSW)) {
            /* A block copy (inlined memcpy): counted as a written configuration. */
            for (int b = 0; b < 64; b++)
                if (s->state[b] == AMX_BYTE_UNSEEN)
                    s->state[b] = AMX_BYTE_SET;
            add_store(s, w, 0, 64, false);
            stopped = true;
            break;
        }
        if ((w->in.attributes & ZYDIS_ATTRIB_HAS_REP) &&
            (w->in.mnemonic == ZYDIS_MNEMONIC_STOSB || w->in.mnemonic == ZYDIS_MNEMONIC_STOSW ||
             w->in.mnemonic == ZYDIS_MNEMONIC_STOSD || w->in.mnemonic == ZYDIS_MNEMONIC_STOSQ)) {
            /* An inlined memset of memory at %rdi: what it covers is not tracked. */
            format(w, t, sizeof t);
            snprintf(stop, sizeof stop, "'%s' at 0x%" PRIx64 " fills memory the walk does not follow", t, w->addr);
            stopped = true;
            break;
        }
        if (!k.absolute && writes_reg(w, k.base)) {
            if (!follow_base(w, &k)) {
                format(w, t, sizeof t);
                if (k.base == ZYDIS_REGISTER_RSP &&
                    (w->in.mnemonic == ZYDIS_MNEMONIC_SUB || w->in.mnemonic == ZYDIS_MNEMONIC_PUSH)) {
                    snprintf(stop, sizeof stop, "the stack frame is allocated by '%s' at 0x%" PRIx64, t, w->addr);
                    fresh_frame = true;
                    stopped = true;
                    break;
                }
                snprintf(stop, sizeof stop, "the base register is computed by '%s' at 0x%" PRIx64, t, w->addr);
                stopped = true;
                break;
            }
            continue;
        }
        stores_into(s, win, i, &k);
        if (all_seen(s)) {
            snprintf(stop, sizeof stop, "every byte of the block is accounted for");
            stopped = true;
            break;
        }
    }
    if (!stopped && n < AMX_SCAN_WINDOW)
        fresh_frame = true;
    alias_stores(s, win, first, n, &k0);
    qsort(s->stores, s->nstores, sizeof *s->stores, store_cmp);
    decide(s, &k, stop, fresh_frame, env ? env->data : NULL, env ? env->ctx : NULL);
}

static adg_error *site_add(amx_scan *s, amx_cfg_site **out)
{
    if (s->nsites == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        amx_cfg_site *v = realloc(s->sites, cap * sizeof *v);
        if (!v)
            return adg_error_new(ADG_E_NOMEM, "out of memory");
        s->sites = v;
        s->cap = cap;
    }
    *out = &s->sites[s->nsites++];
    memset(*out, 0, sizeof **out);
    return NULL;
}

static void count(amx_counts *c, ZydisMnemonic m)
{
    c->total++;
    switch (m) {
    case ZYDIS_MNEMONIC_LDTILECFG: c->ldtilecfg++; break;
    case ZYDIS_MNEMONIC_STTILECFG: c->sttilecfg++; break;
    case ZYDIS_MNEMONIC_TILELOADD:
    case ZYDIS_MNEMONIC_TILELOADDT1: c->tileloadd++; break;
    case ZYDIS_MNEMONIC_TILESTORED: c->tilestored++; break;
    case ZYDIS_MNEMONIC_TILEZERO: c->tilezero++; break;
    case ZYDIS_MNEMONIC_TILERELEASE: c->tilerelease++; break;
    default: c->tdp++; break; /* the TDP* dot products: the rest of AMX-INT8/BF16 */
    }
}

/* The window's instructions, decoded again with their operands (only at LDTILECFG sites:
 * the sweep itself decodes without operands, several times faster). */
static size_t decode_window(const uint8_t *code, size_t len, uint64_t vaddr, const size_t *ring, size_t nring,
                            size_t head, size_t site_off, win_insn *win)
{
    ZydisDecoder dec;
    ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    size_t n = 0;
    for (size_t i = 0; i < nring; i++) {
        size_t off = ring[(head + AMX_SCAN_WINDOW - nring + i) % AMX_SCAN_WINDOW];
        if (ZYAN_FAILED(ZydisDecoderDecodeFull(&dec, code + off, len - off, &win[n].in, win[n].op)))
            continue;
        win[n++].addr = vaddr + off;
    }
    ZydisDecoderDecodeFull(&dec, code + site_off, len - site_off, &win[n].in, win[n].op);
    win[n].addr = vaddr + site_off;
    return n;
}

adg_error *amx_scan_code(amx_scan *s, const uint8_t *code, size_t len, uint64_t vaddr, const amx_env *env)
{
    ZydisDecoder dec;
    ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    ZydisDecodedInstruction in;
    size_t ring[AMX_SCAN_WINDOW];
    size_t nring = 0, head = 0;
    unsigned perm_left = 0;
    uint64_t perm_addr = 0;
    win_insn *win = NULL;
    s->bytes += len;
    for (size_t off = 0; off < len;) {
        if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(&dec, NULL, code + off, len - off, &in))) {
            /* Data or padding in the code: the straight line is broken. */
            s->undecodable++;
            nring = 0;
            perm_left = 0;
            off++;
            continue;
        }
        s->insns++;
        if (in.meta.isa_ext == ZYDIS_ISA_EXT_AMX_TILE || in.meta.isa_ext == ZYDIS_ISA_EXT_AMX_INT8 ||
            in.meta.isa_ext == ZYDIS_ISA_EXT_AMX_BF16) {
            if (!s->counts.total)
                s->first_amx = vaddr + off;
            count(&s->counts, in.mnemonic);
            if (in.mnemonic == ZYDIS_MNEMONIC_LDTILECFG) {
                if (!win && !(win = malloc((AMX_SCAN_WINDOW + 1) * sizeof *win)))
                    return adg_error_new(ADG_E_NOMEM, "out of memory");
                amx_cfg_site *site = NULL;
                adg_error *e = site_add(s, &site);
                if (e) {
                    free(win);
                    return e;
                }
                size_t n = decode_window(code, len, vaddr, ring, nring, head, off, win);
                site->addr = vaddr + off;
                analyse_site(site, win, n, env);
            }
        }
        /* arch_prctl(ARCH_REQ_XCOMP_PERM, ...): the constant into a register, then a
         * syscall or a call (of syscall()) shortly after. */
        if (in.raw.imm[0].size && in.raw.imm[0].value.u == ARCH_REQ_XCOMP_PERM && in.mnemonic == ZYDIS_MNEMONIC_MOV) {
            perm_left = PERM_LOOKAHEAD;
            perm_addr = vaddr + off;
        } else if (perm_left) {
            perm_left--;
            if (in.mnemonic == ZYDIS_MNEMONIC_SYSCALL || in.meta.category == ZYDIS_CATEGORY_CALL) {
                if (s->nperm < AMX_SCAN_MAX_PERM)
                    s->perm_sites[s->nperm++] = perm_addr;
                perm_left = 0;
            }
        }
        ring[head] = off;
        head = (head + 1) % AMX_SCAN_WINDOW;
        if (nring < AMX_SCAN_WINDOW)
            nring++;
        off += in.length;
    }
    free(win);
    return NULL;
}
