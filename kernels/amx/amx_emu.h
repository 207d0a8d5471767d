/* A C emulation of the AMX tile instructions (palette 1) the kernels use, so the AMX
 * kernels' tiling, repacking and tails run and are checked on machines without AMX.
 * State (config + 8 tiles of 1 KiB) is per thread, like the hardware's.  Every
 * instruction checks what the hardware would fault on (#UD/#GP): palette 1 only,
 * rows <= 16, colsb <= 64, an unconfigured tile, shapes that do not match
 * (C.rows == A.rows, A.colsb == 4 * B.rows, C.colsb == B.colsb), the same tile twice.
 * A violation is a bug in a kernel: it prints what was wrong and aborts, like the
 * SIGILL it would be on hardware. */
#ifndef KERN_AMX_EMU_H
#define KERN_AMX_EMU_H

#include <stddef.h>
#include <stdint.h>

typedef enum kern_amx_emu_op {
    KERN_AMX_EMU_DPBSSD,
    KERN_AMX_EMU_DPBSUD,
    KERN_AMX_EMU_DPBUSD,
    KERN_AMX_EMU_DPBUUD,
    KERN_AMX_EMU_DPBF16PS,
} kern_amx_emu_op;

void kern_amx_emu_loadconfig(const void *cfg);
void kern_amx_emu_release(void);
void kern_amx_emu_loadd(int tile, const void *base, long stride);
void kern_amx_emu_stored(int tile, void *base, long stride);
void kern_amx_emu_zero(int tile);
void kern_amx_emu_dp(kern_amx_emu_op op, int c, int a, int b);

/* Instructions executed on this thread since it started (for tests: proves the emulated
 * kernels really went through the tiles). */
uint64_t kern_amx_emu_count(void);
/* Checks are fatal by default; a test may make them return here instead: after a
 * violation the instruction does nothing and the message is kept for the caller. */
void kern_amx_emu_set_trap(int nonfatal);
const char *kern_amx_emu_last_fault(void);   /* NULL when none since the last call */

#endif
