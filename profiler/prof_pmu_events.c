/* The PMU event table: adding an event is adding a row. */
#include "profiler/prof_collector.h"
#include "profiler/prof_pmu.h"

const prof_pmu_event prof_pmu_events[] = {
    /* core: generic events, any CPU with a PMU */
    {PROF_SET_CORE, "cycles", "perf::PERF_COUNT_HW_CPU_CYCLES", 0, 1, "core clock cycles"},
    {PROF_SET_CORE, "instructions", "perf::PERF_COUNT_HW_INSTRUCTIONS", 0, 1, "instructions retired"},
    /* amx: Intel SPR/EMR core PMU */
    {PROF_SET_AMX, "core_clocks", "CPU_CLK_UNHALTED:THREAD_P", 0x003c, 1, "core clocks (for AMX busy %)"},
    {PROF_SET_AMX, "amx_busy", "EXE:AMX_BUSY", 0x02b7, 1, "cycles the AMX unit was busy"},
    {PROF_SET_AMX, "amx_ops_int8", "AMX_OPS_RETIRED:INT8", 0x01ce, 1,
     "AMX int8 ops retired (event withdrawn by Intel in 2024; counter 0 only)"},
    {PROF_SET_AMX, "amx_ops_bf16", "AMX_OPS_RETIRED:BF16", 0x02ce, 1,
     "AMX bf16 ops retired (event withdrawn by Intel in 2024; counter 0 only)"},
    /* simd */
    {PROF_SET_SIMD, "fp_512_ps", "FP_ARITH_INST_RETIRED:512B_PACKED_SINGLE", 0x80c7, 16, "512-bit packed fp32"},
    {PROF_SET_SIMD, "fp_512_pd", "FP_ARITH_INST_RETIRED:512B_PACKED_DOUBLE", 0x40c7, 8, "512-bit packed fp64"},
    {PROF_SET_SIMD, "fp_256_ps", "FP_ARITH_INST_RETIRED:256B_PACKED_SINGLE", 0x20c7, 8, "256-bit packed fp32"},
    {PROF_SET_SIMD, "fp_256_pd", "FP_ARITH_INST_RETIRED:256B_PACKED_DOUBLE", 0x10c7, 4, "256-bit packed fp64"},
    {PROF_SET_SIMD, "fp_scalar", "FP_ARITH_INST_RETIRED:SCALAR", 0x03c7, 1, "scalar fp32/fp64"},
    {PROF_SET_SIMD, "fp16_512", "FP_ARITH_INST_RETIRED2:512B_PACKED_HALF", 0x10cf, 32, "512-bit packed fp16"},
    {PROF_SET_SIMD, "fp16_vector", "FP_ARITH_INST_RETIRED2:VECTOR", 0x1ccf, 1, "packed fp16 instructions, any width"},
    {PROF_SET_SIMD, "int_vec_vnni", "INT_VEC_RETIRED:VNNI_256", 0x20e7, 1,
     "256-bit VNNI instructions (the event has no 512-bit VNNI umask)"},
    {PROF_SET_SIMD, "int_vec_256", "INT_VEC_RETIRED:256BIT", 0xace7, 1, "256-bit integer vector instructions"},
};
const unsigned prof_pmu_nevents = sizeof prof_pmu_events / sizeof prof_pmu_events[0];
