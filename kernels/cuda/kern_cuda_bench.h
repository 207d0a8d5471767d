/* `amxdiag bench kernels --gpu`: implemented by the CUDA kernels (kernels/cuda). */
#ifndef KERN_CUDA_BENCH_H
#define KERN_CUDA_BENCH_H

/* argv as given to `amxdiag bench kernels ...`; returns an exit code. */
int kern_cuda_bench_cmd(int argc, char **argv);

#endif
