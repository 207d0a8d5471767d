/* The same AMX kernels compiled against the tile emulator (kernels/amx/amx_emu.h), so
 * their tiling, repacking and tails are tested on machines without AMX.  AVX-512 is still
 * used around the tiles, as on hardware. */
#include <immintrin.h>

#include "kernels/amx/amx_emu.h"
#include "kernels/kern_internal.h"

#undef _tile_loadd
#undef _tile_stored
#undef _tile_zero
#undef _tile_dpbssd
#undef _tile_dpbsud
#undef _tile_dpbusd
#undef _tile_dpbuud
#undef _tile_dpbf16ps
#define AMX_LOADCFG(cfg) kern_amx_emu_loadconfig(cfg)
#define _tile_release() kern_amx_emu_release()
#define _tile_loadd(t, base, stride) kern_amx_emu_loadd((t), (base), (long)(stride))
#define _tile_stored(t, base, stride) kern_amx_emu_stored((t), (base), (long)(stride))
#define _tile_zero(t) kern_amx_emu_zero(t)
#define _tile_dpbssd(c, a, b) kern_amx_emu_dp(KERN_AMX_EMU_DPBSSD, (c), (a), (b))
#define _tile_dpbsud(c, a, b) kern_amx_emu_dp(KERN_AMX_EMU_DPBSUD, (c), (a), (b))
#define _tile_dpbusd(c, a, b) kern_amx_emu_dp(KERN_AMX_EMU_DPBUSD, (c), (a), (b))
#define _tile_dpbuud(c, a, b) kern_amx_emu_dp(KERN_AMX_EMU_DPBUUD, (c), (a), (b))
#define _tile_dpbf16ps(c, a, b) kern_amx_emu_dp(KERN_AMX_EMU_DPBF16PS, (c), (a), (b))

#define AMX_SYM(x) emu_##x
#include "kernels/amx/amx_gemm.inc.c"
#include "kernels/amx/amx_attn.inc.c"
#include "kernels/amx/amx_rowq.inc.c"   /* the row-scaled experiment (amx_rowq.h) */

const kern_amx_kernels kern_amx_emu = {"amx-emu", emu_gemm_q_ring, emu_gemm_bf16, emu_attn_block, emu_attn_scratch};
const kern_rowq_kernels kern_rowq_emu = {"amx-emu", emu_rowq_gemm, emu_rowq_quant_row};
