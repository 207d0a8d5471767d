/* The one table that ties the screen to metric names.  Collectors own the names
 * (profiler/prof_*.c, kernels' engine, the CUPTI collector); a rename there is a one-line
 * change here.  `collector` is the name a collector uses in the record's unavailable
 * list, so that a panel can say why a metric is missing. */
#include "tui/tui_internal.h"

const tui_metric_ref tui_metrics[TUI_NMETRICS] = {
    [TUI_M_CPU_UTIL] = {TUI_P_CPU, "cpu.util", "cpu", "CPU"},
    [TUI_M_WL_CPU] = {TUI_P_CPU, "workload.cpu", "sampler", "workload CPU"},
    [TUI_M_ISA_AMX] = {TUI_P_CPU, "isa.share.amx", "sampler", "AMX"},
    [TUI_M_ISA_AVX512] = {TUI_P_CPU, "isa.share.avx512", "sampler", "AVX-512"},
    [TUI_M_ISA_AVX2] = {TUI_P_CPU, "isa.share.avx2", "sampler", "AVX2"},
    [TUI_M_ISA_SSE] = {TUI_P_CPU, "isa.share.sse", "sampler", "SSE"},
    [TUI_M_ISA_SCALAR] = {TUI_P_CPU, "isa.share.scalar", "sampler", "scalar"},
    [TUI_M_ISA_UNKNOWN] = {TUI_P_CPU, "isa.share.unknown", "sampler", "unknown"},
    [TUI_M_AMX_BUSY] = {TUI_P_CPU, "amx.busy", "pmu", "AMX busy"},
    [TUI_M_AMX_OPS] = {TUI_P_CPU, "amx.ops", "pmu", "AMX ops"},
    [TUI_M_IPC] = {TUI_P_CPU, "cpu.ipc", "pmu", "IPC"},
    [TUI_M_MEM_RD] = {TUI_P_MEM, "mem.read_bw", "uncore", "read"},
    [TUI_M_MEM_WR] = {TUI_P_MEM, "mem.write_bw", "uncore", "write"},
    [TUI_M_MEM_MBM] = {TUI_P_MEM, "mem.mbm_bw", "resctrl", "MBM total"},
    [TUI_M_NUMA_RES] = {TUI_P_MEM, "numa.resident", "numa", "resident"},
    [TUI_M_NUMA_THR] = {TUI_P_MEM, "numa.threads", "numa", "threads"},
    [TUI_M_GPU_BUSY] = {TUI_P_GPU, "gpu.busy", "gpu", "busy"},
    /* NVML's when the nvml collector runs (every interval, any process); else the CUPTI
     * tracer's cuMemGetInfo. */
    [TUI_M_GPU_MEM] = {TUI_P_GPU, "gpu.mem_used", "nvml", "memory", "gpu"},
    [TUI_M_GPU_MEM_TOTAL] = {TUI_P_GPU, "gpu.mem_total", "nvml", "memory total", "gpu"},
    [TUI_M_GPU_KTIME] = {TUI_P_GPU, "gpu.kernel_time", "gpu", "kernel time"},
    [TUI_M_GPU_H2D] = {TUI_P_GPU, "gpu.h2d_bw", "gpu", "H2D"},
    [TUI_M_GPU_D2H] = {TUI_P_GPU, "gpu.d2h_bw", "gpu", "D2H"},
    [TUI_M_GPU_LAUNCHES] = {TUI_P_GPU, "gpu.launches", "gpu", "launches"},
    [TUI_M_GPU_ERRORS] = {TUI_P_GPU, "gpu.errors", "gpu", "errors"},
    [TUI_M_GPU_UTIL] = {TUI_P_GPU, "gpu.util", "nvml", "util"},
    [TUI_M_GPU_MEM_UTIL] = {TUI_P_GPU, "gpu.mem_util", "nvml", "mem util"},
    [TUI_M_GPU_POWER] = {TUI_P_GPU, "gpu.power", "nvml", "power"},
    [TUI_M_GPU_TEMP] = {TUI_P_GPU, "gpu.temp", "nvml", "temperature"},
    [TUI_M_GPU_CLOCK] = {TUI_P_GPU, "gpu.sm_clock", "nvml", "SM clock"},
    [TUI_M_GPU_PCIE_RX] = {TUI_P_GPU, "gpu.pcie_rx_bw", "nvml", "PCIe rx"},
    [TUI_M_GPU_PCIE_TX] = {TUI_P_GPU, "gpu.pcie_tx_bw", "nvml", "PCIe tx"},
    [TUI_M_GPU_WL_MEM] = {TUI_P_GPU, "gpu.workload_mem", "nvml", "workload memory"},
    [TUI_M_ENGINE_TPS] = {-1, "engine.tokens_per_s", "engine", "tokens/s"},
    [TUI_M_WL_TPS] = {-1, "workload.tokens_per_s", "workload", "tokens/s"},
};
