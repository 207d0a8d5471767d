#include "profiler/prof_isa.h"

#include <string.h>
#include <Zydis/Zydis.h>

static const char *const class_names[PROF_ISA_NCLASSES] = {"scalar", "sse", "avx2", "avx512", "amx", "unknown"};

const char *prof_isa_class_name(prof_isa_class c)
{
    return (unsigned)c < PROF_ISA_NCLASSES ? class_names[c] : "unknown";
}

int prof_isa_class_parse(const char *s)
{
    for (int i = 0; i < PROF_ISA_NCLASSES; i++)
        if (!strcmp(s, class_names[i]))
            return i;
    return -1;
}

static prof_isa_class insn_class(const ZydisDecodedInstruction *in)
{
    switch (in->meta.isa_ext) {
    case ZYDIS_ISA_EXT_AMX_TILE:
    case ZYDIS_ISA_EXT_AMX_INT8:
    case ZYDIS_ISA_EXT_AMX_BF16:
        return PROF_ISA_AMX;
    case ZYDIS_ISA_EXT_AVX512EVEX:
    case ZYDIS_ISA_EXT_AVX512VEX: /* kmov/kand...: opmask registers exist only with AVX-512 */
        return PROF_ISA_AVX512;
    case ZYDIS_ISA_EXT_BMI1:
    case ZYDIS_ISA_EXT_BMI2:       /* VEX-encoded but scalar GPR instructions */
        return PROF_ISA_SCALAR;
    case ZYDIS_ISA_EXT_SSE:
    case ZYDIS_ISA_EXT_SSE2:
    case ZYDIS_ISA_EXT_SSE3:
    case ZYDIS_ISA_EXT_SSSE3:
    case ZYDIS_ISA_EXT_SSE4:
    case ZYDIS_ISA_EXT_SSE4A:
    case ZYDIS_ISA_EXT_MMX:
    case ZYDIS_ISA_EXT_AES:
    case ZYDIS_ISA_EXT_PCLMULQDQ:
    case ZYDIS_ISA_EXT_SHA:
        return PROF_ISA_SSE;
    default:
        break;
    }
    /* Whatever else is EVEX-encoded (VAES, GFNI, VPCLMULQDQ in EVEX form) needs AVX-512;
     * VEX-encoded vector code (AVX, AVX2, FMA, F16C, AVX-VNNI, VEX GFNI/VAES) is the
     * AVX2 generation. */
    if (in->encoding == ZYDIS_INSTRUCTION_ENCODING_EVEX || in->encoding == ZYDIS_INSTRUCTION_ENCODING_MVEX)
        return PROF_ISA_AVX512;
    if (in->encoding == ZYDIS_INSTRUCTION_ENCODING_VEX || in->encoding == ZYDIS_INSTRUCTION_ENCODING_XOP)
        return PROF_ISA_AVX2;
    return PROF_ISA_SCALAR;
}

static void init_decoder(ZydisDecoder *d)
{
    ZydisDecoderInit(d, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
}

static prof_isa_class max_class(prof_isa_class a, prof_isa_class b)
{
    if (a == PROF_ISA_UNKNOWN)
        return b;
    if (b == PROF_ISA_UNKNOWN)
        return a;
    return a > b ? a : b;
}

prof_isa_class prof_isa_classify(const uint8_t *code, size_t len, uint64_t addr, prof_isa_counts *counts)
{
    ZydisDecoder dec;
    init_decoder(&dec);
    ZydisDecodedInstruction in;
    prof_isa_class best = len ? PROF_ISA_UNKNOWN : PROF_ISA_SCALAR;
    size_t off = 0;
    (void)addr; /* classes do not depend on the address; kept for symmetric call sites */
    while (off < len) {
        /* Decoding without operands is enough: isa_ext and encoding live in the
         * instruction itself, and it is several times faster. */
        if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(&dec, NULL, code + off, len - off, &in))) {
            if (counts) {
                counts->n[PROF_ISA_UNKNOWN]++;
                counts->total++;
            }
            off++;
            continue;
        }
        prof_isa_class c = insn_class(&in);
        if (counts) {
            counts->n[c]++;
            counts->total++;
        }
        best = max_class(best, c);
        off += in.length;
    }
    return best;
}

/* Ends a block: any jump, call or return. */
static bool is_branch(const ZydisDecodedInstruction *in)
{
    return in->meta.branch_type != ZYDIS_BRANCH_TYPE_NONE || in->meta.category == ZYDIS_CATEGORY_RET ||
           in->meta.category == ZYDIS_CATEGORY_CALL || in->meta.category == ZYDIS_CATEGORY_COND_BR ||
           in->meta.category == ZYDIS_CATEGORY_UNCOND_BR;
}

prof_isa_class prof_isa_classify_block(const uint8_t *code, size_t len, uint64_t addr, unsigned max_insns)
{
    ZydisDecoder dec;
    init_decoder(&dec);
    ZydisDecodedInstruction in;
    prof_isa_class best = PROF_ISA_UNKNOWN;
    size_t off = 0;
    (void)addr;
    for (unsigned i = 0; i < max_insns && off < len; i++) {
        if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(&dec, NULL, code + off, len - off, &in)))
            break;
        best = max_class(best, insn_class(&in));
        off += in.length;
        if (is_branch(&in))
            break;
    }
    return best;
}

/* Decodes code[from, to) and says whether a PAUSE is among the instructions. */
static bool has_pause(ZydisDecoder *dec, const uint8_t *code, size_t from, size_t to)
{
    ZydisDecodedInstruction in;
    for (size_t off = from; off < to;) {
        if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(dec, NULL, code + off, to - off, &in)))
            return false;
        if (in.mnemonic == ZYDIS_MNEMONIC_PAUSE)
            return true;
        off += in.length;
    }
    return false;
}

bool prof_isa_spins(const uint8_t *code, size_t len, size_t back, uint64_t addr)
{
    ZydisDecoder dec;
    init_decoder(&dec);
    ZydisDecodedInstruction in;
    (void)addr; /* relative branches are resolved within code[] */
    size_t off = back;
    for (unsigned i = 0; i < 32 && off < len; i++) {
        if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(&dec, NULL, code + off, len - off, &in)))
            return false;
        if (in.mnemonic == ZYDIS_MNEMONIC_PAUSE)
            return true;
        off += in.length;
        if (!is_branch(&in))
            continue;
        if ((in.meta.category != ZYDIS_CATEGORY_COND_BR && in.meta.category != ZYDIS_CATEGORY_UNCOND_BR) ||
            !in.raw.imm[0].is_relative)
            return false;
        const int64_t target = (int64_t)off + in.raw.imm[0].value.s;
        /* A backward jump to at or before the sampled instruction closes a loop around it. */
        return target >= 0 && target <= (int64_t)back && has_pause(&dec, code, (size_t)target, back);
    }
    return false;
}
