/* The tile emulator: plain C, thread-local state.  TDPBF16PS follows the SDM's
 * pseudo-code: the two products of a pair are added to the accumulator one after the
 * other in fp32, denormal inputs and outputs flushed to zero. */
#include "kernels/amx/amx_emu.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct emu_state {
    bool configured;
    uint8_t rows[8];
    uint16_t colsb[8];
    uint8_t data[8][16][64];
    uint64_t count;
    int nonfatal;
    char fault[200];
    bool has_fault;
} emu_state;

static __thread emu_state st;

static bool fault(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool fault(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st.fault, sizeof st.fault, fmt, ap);
    va_end(ap);
    st.has_fault = true;
    if (!st.nonfatal) {
        fprintf(stderr, "amxdiag: AMX tile emulator: %s (this would fault on AMX hardware)\n", st.fault);
        abort();
    }
    return false;
}

void kern_amx_emu_set_trap(int nonfatal) { st.nonfatal = nonfatal; }

const char *kern_amx_emu_last_fault(void)
{
    if (!st.has_fault)
        return NULL;
    st.has_fault = false;
    return st.fault;
}

uint64_t kern_amx_emu_count(void) { return st.count; }

void kern_amx_emu_loadconfig(const void *cfg)
{
    const uint8_t *c = cfg;
    st.count++;
    if (c[0] != 1) {
        fault("ldtilecfg: palette %u, only palette 1 exists", c[0]);
        return;
    }
    for (int i = 2; i < 16; i++)
        if (c[i]) {
            fault("ldtilecfg: reserved byte %d is %u, must be 0", i, c[i]);
            return;
        }
    uint8_t rows[8];
    uint16_t colsb[8];
    for (int t = 0; t < 8; t++) {
        memcpy(&colsb[t], c + 16 + 2 * t, 2);
        rows[t] = c[48 + t];
        if (rows[t] > 16 || colsb[t] > 64 || (colsb[t] & 3)) {
            fault("ldtilecfg: tile %d has %u rows x %u bytes (palette 1: rows <= 16, colsb <= 64, colsb %% 4 == 0)",
                  t, rows[t], colsb[t]);
            return;
        }
        if ((rows[t] == 0) != (colsb[t] == 0)) {
            fault("ldtilecfg: tile %d has rows %u but colsb %u (both or neither must be 0)", t, rows[t], colsb[t]);
            return;
        }
    }
    for (int i = 32; i < 48; i++)     /* colsb of tiles 8..15 */
        if (c[i]) {
            fault("ldtilecfg: palette 1 has 8 tiles; colsb of tile %d is set", 8 + (i - 32) / 2);
            return;
        }
    for (int t = 56; t < 64; t++)
        if (c[t]) {
            fault("ldtilecfg: palette 1 has 8 tiles; rows of tile %d are set", t - 48);
            return;
        }
    memcpy(st.rows, rows, sizeof rows);
    memcpy(st.colsb, colsb, sizeof colsb);
    memset(st.data, 0, sizeof st.data);
    st.configured = true;
}

void kern_amx_emu_release(void)
{
    st.count++;
    st.configured = false;
    memset(st.data, 0, sizeof st.data);
}

static bool usable(const char *insn, int t)
{
    if (t < 0 || t > 7)
        return fault("%s: tile %d does not exist (tmm0..tmm7)", insn, t);
    if (!st.configured)
        return fault("%s: no tile configuration loaded (ldtilecfg first)", insn);
    if (!st.rows[t])
        return fault("%s: tile %d is not configured", insn, t);
    return true;
}

void kern_amx_emu_loadd(int t, const void *base, long stride)
{
    st.count++;
    if (!usable("tileloadd", t))
        return;
    memset(st.data[t], 0, sizeof st.data[t]);   /* rows beyond the configured ones read as 0 */
    for (int r = 0; r < st.rows[t]; r++)
        memcpy(st.data[t][r], (const uint8_t *)base + (long)r * stride, st.colsb[t]);
}

void kern_amx_emu_stored(int t, void *base, long stride)
{
    st.count++;
    if (!usable("tilestored", t))
        return;
    for (int r = 0; r < st.rows[t]; r++)
        memcpy((uint8_t *)base + (long)r * stride, st.data[t][r], st.colsb[t]);
}

void kern_amx_emu_zero(int t)
{
    st.count++;
    if (!usable("tilezero", t))
        return;
    memset(st.data[t], 0, sizeof st.data[t]);
}

static float ftz(float x)
{
    return fpclassify(x) == FP_SUBNORMAL ? copysignf(0.0f, x) : x;
}

static float bf16f(const uint8_t *p)
{
    uint32_t u = (uint32_t)(p[0] | (p[1] << 8)) << 16;
    float f;
    memcpy(&f, &u, 4);
    return ftz(f);
}

void kern_amx_emu_dp(kern_amx_emu_op op, int c, int a, int b)
{
    static const char *names[] = {"tdpbssd", "tdpbsud", "tdpbusd", "tdpbuud", "tdpbf16ps"};
    const char *insn = names[op];
    st.count++;
    if (!usable(insn, c) || !usable(insn, a) || !usable(insn, b))
        return;
    if (c == a || c == b || a == b) {
        fault("%s: tmm%d, tmm%d, tmm%d: the three tiles must differ", insn, c, a, b);
        return;
    }
    const int M = st.rows[a], K4 = st.colsb[a] / 4, N = st.colsb[c] / 4;
    if (st.rows[c] != M || st.rows[b] != K4 || st.colsb[b] != st.colsb[c]) {
        fault("%s: shapes do not match: C %ux%u bytes, A %ux%u, B %ux%u (need C.rows == A.rows, "
              "A.colsb == 4 * B.rows, C.colsb == B.colsb)",
              insn, st.rows[c], st.colsb[c], st.rows[a], st.colsb[a], st.rows[b], st.colsb[b]);
        return;
    }
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            if (op == KERN_AMX_EMU_DPBF16PS) {
                float acc;
                memcpy(&acc, &st.data[c][m][4 * n], 4);
                for (int k = 0; k < K4; k++) {
                    acc = ftz(acc + bf16f(&st.data[a][m][4 * k]) * bf16f(&st.data[b][k][4 * n]));
                    acc = ftz(acc + bf16f(&st.data[a][m][4 * k + 2]) * bf16f(&st.data[b][k][4 * n + 2]));
                }
                memcpy(&st.data[c][m][4 * n], &acc, 4);
                continue;
            }
            int32_t acc;
            memcpy(&acc, &st.data[c][m][4 * n], 4);
            const bool as = op == KERN_AMX_EMU_DPBSSD || op == KERN_AMX_EMU_DPBSUD;
            const bool bs = op == KERN_AMX_EMU_DPBSSD || op == KERN_AMX_EMU_DPBUSD;
            int64_t sum = acc;
            for (int k = 0; k < K4; k++)
                for (int i = 0; i < 4; i++) {
                    uint8_t av = st.data[a][m][4 * k + i], bv = st.data[b][k][4 * n + i];
                    int32_t x = as ? (int8_t)av : av, y = bs ? (int8_t)bv : bv;
                    sum += x * y;
                }
            acc = (int32_t)(uint32_t)(uint64_t)sum;   /* wraps like the hardware */
            memcpy(&st.data[c][m][4 * n], &acc, 4);
        }
}
