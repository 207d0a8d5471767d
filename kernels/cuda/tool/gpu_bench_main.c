/* amxdiag-gpu-bench: `amxdiag bench kernels --gpu` as a stand-alone program, so that the
 * GPU benchmark, --check and --inject-fault can run where only this part is built. */
#include "kernels/cuda/kern_cuda_bench.h"

int main(int argc, char **argv)
{
    return kern_cuda_bench_cmd(argc, argv);
}
