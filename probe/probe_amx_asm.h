/* AMX instructions as raw encodings, so that the probe builds with any assembler and
 * without -mamx-* flags (the tile instructions then appear only where they are run,
 * behind the checks).  Verified against binutils 2.40's encodings:
 *   ldtilecfg (%rax)                c4 e2 78 49 00
 *   tilerelease                     c4 e2 78 49 c0
 *   tileloadd (%rax,%rcx,1),%tmmN   c4 e2 7b 4b (04|N<<3) 08
 *   tilestored %tmmN,(%rax,%rcx,1)  c4 e2 7a 4b (04|N<<3) 08
 *   tilezero %tmmN                  c4 e2 7b 49 (c0|N<<3)
 *   tdp* %tmmB,%tmmA,%tmmC          c4 e2 ((15-B)<<3|pp) op (c0|C<<3|A)
 * with pp 0=NP 1=66 2=F3 3=F2: TDPBUUD NP.5e, TDPBUSD 66.5e, TDPBSUD F3.5e, TDPBSSD F2.5e,
 * TDPBF16PS F3.5c, TDPFP16PS F2.5c.  Memory operands use %rax (base) and %rcx (stride). */
#ifndef PROBE_AMX_ASM_H
#define PROBE_AMX_ASM_H

#define PROBE_LDTILECFG_RAX ".byte 0xc4,0xe2,0x78,0x49,0x00\n\t"
#define PROBE_TILERELEASE ".byte 0xc4,0xe2,0x78,0x49,0xc0\n\t"
#define PROBE_TILELOADD(t) ".byte 0xc4,0xe2,0x7b,0x4b,0x04|(" #t "<<3),0x08\n\t"
#define PROBE_TILESTORED(t) ".byte 0xc4,0xe2,0x7a,0x4b,0x04|(" #t "<<3),0x08\n\t"
#define PROBE_TILEZERO(t) ".byte 0xc4,0xe2,0x7b,0x49,0xc0|(" #t "<<3)\n\t"
#define PROBE_TDP_(pp, op, c, a, b) ".byte 0xc4,0xe2,((15-" #b ")<<3)|" #pp "," #op ",0xc0|(" #c "<<3)|" #a "\n\t"
#define PROBE_TDPBSSD(c, a, b) PROBE_TDP_(3, 0x5e, c, a, b)
#define PROBE_TDPBSUD(c, a, b) PROBE_TDP_(2, 0x5e, c, a, b)
#define PROBE_TDPBUSD(c, a, b) PROBE_TDP_(1, 0x5e, c, a, b)
#define PROBE_TDPBUUD(c, a, b) PROBE_TDP_(0, 0x5e, c, a, b)
#define PROBE_TDPBF16PS(c, a, b) PROBE_TDP_(2, 0x5c, c, a, b)
#define PROBE_TDPFP16PS(c, a, b) PROBE_TDP_(3, 0x5c, c, a, b)

/* The 64-byte tile configuration of palette 1. */
typedef struct probe_tilecfg {
    unsigned char palette, start_row, reserved[14];
    unsigned short colsb[16];
    unsigned char rows[16];
} probe_tilecfg;

#endif
