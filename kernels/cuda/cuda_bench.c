/* Placeholder until the CUDA kernels land. */
#include "kernels/cuda/kern_cuda_bench.h"

#include "common/adg_cmd.h"

int kern_cuda_bench_cmd(int argc, char **argv)
{
    return adg_cmd_placeholder(argc, argv, "bench kernels --gpu", "the CUDA kernels are not built yet");
}
