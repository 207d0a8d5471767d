/* The raw AMX encodings the self-test and --bench execute (probe/probe_amx_asm.h), decoded
 * by a second implementation (Zydis): right instruction, right tile registers.  Runs on
 * any machine; a wrong byte here would otherwise only show up as a SIGILL or a silently
 * different instruction on AMX hardware. */
#include "adg_test.h"

#include <Zydis/Zydis.h>
#include <string.h>

#include "probe/probe_amx_asm.h"

__asm__(".pushsection .rodata.probe_enc,\"a\"\n"
        ".globl adg_probe_enc_start\nadg_probe_enc_start:\n\t"
        PROBE_LDTILECFG_RAX PROBE_TILERELEASE PROBE_TILELOADD(0) PROBE_TILELOADD(7) PROBE_TILESTORED(0)
        PROBE_TILESTORED(3) PROBE_TILEZERO(5) PROBE_TDPBSSD(0, 1, 2) PROBE_TDPBSUD(3, 6, 7) PROBE_TDPBUSD(0, 4, 6)
        PROBE_TDPBUUD(2, 5, 7) PROBE_TDPBF16PS(1, 4, 6) PROBE_TDPBSSD(3, 5, 7) PROBE_TDPFP16PS(0, 1, 2)
        "\n.globl adg_probe_enc_end\nadg_probe_enc_end:\n.popsection\n");
extern const unsigned char adg_probe_enc_start[], adg_probe_enc_end[];

static const struct {
    const char *mnemonic;
    int tmm[3]; /* expected tile register operands in Intel order, -1 = none */
} want[] = {
    {"ldtilecfg", {-1, -1, -1}}, {"tilerelease", {-1, -1, -1}}, {"tileloadd", {0, -1, -1}},
    {"tileloadd", {7, -1, -1}},  {"tilestored", {-1, -1, -1}},  {"tilestored", {-1, -1, -1}},
    {"tilezero", {5, -1, -1}},   {"tdpbssd", {0, 1, 2}},        {"tdpbsud", {3, 6, 7}},
    {"tdpbusd", {0, 4, 6}},      {"tdpbuud", {2, 5, 7}},        {"tdpbf16ps", {1, 4, 6}},
    {"tdpbssd", {3, 5, 7}},      {"tdpfp16ps", {0, 1, 2}},
};

static void test_decode(void **state)
{
    (void)state;
    ZydisDecoder dec;
    assert_true(ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)));
    const unsigned char *p = adg_probe_enc_start;
    size_t left = (size_t)(adg_probe_enc_end - adg_probe_enc_start);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ZydisDecodedInstruction in;
        ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
        if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, p, left, &in, ops))) {
            if (!strcmp(want[i].mnemonic, "tdpfp16ps")) {
                printf("note: this Zydis does not know AMX-FP16: tdpfp16ps checked by objdump only\n");
                return;
            }
            fail_msg("instruction %zu (%s) does not decode", i, want[i].mnemonic);
        }
        const char *m = ZydisMnemonicGetString(in.mnemonic);
        if (strcmp(m, want[i].mnemonic))
            fail_msg("instruction %zu decodes as %s, expected %s", i, m, want[i].mnemonic);
        for (int k = 0; k < 3; k++) {
            if (want[i].tmm[k] < 0)
                continue;
            assert_true(k < in.operand_count_visible);
            assert_int_equal(ops[k].type, ZYDIS_OPERAND_TYPE_REGISTER);
            assert_int_equal(ops[k].reg.value, ZYDIS_REGISTER_TMM0 + want[i].tmm[k]);
        }
        /* Memory forms address [rax + rcx*1]. */
        if (!strcmp(m, "tileloadd") || !strcmp(m, "tilestored")) {
            const ZydisDecodedOperand *mem = !strcmp(m, "tileloadd") ? &ops[1] : &ops[0];
            assert_int_equal(mem->type, ZYDIS_OPERAND_TYPE_MEMORY);
            assert_int_equal(mem->mem.base, ZYDIS_REGISTER_RAX);
            assert_int_equal(mem->mem.index, ZYDIS_REGISTER_RCX);
            assert_int_equal(mem->mem.scale, 1);
            if (!strcmp(m, "tilestored"))
                assert_int_equal(ops[1].reg.value, ZYDIS_REGISTER_TMM0 + (i == 4 ? 0 : 3));
        }
        if (!strcmp(m, "ldtilecfg")) {
            assert_int_equal(ops[0].type, ZYDIS_OPERAND_TYPE_MEMORY);
            assert_int_equal(ops[0].mem.base, ZYDIS_REGISTER_RAX);
        }
        p += in.length;
        left -= in.length;
    }
    assert_int_equal(left, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_decode)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
