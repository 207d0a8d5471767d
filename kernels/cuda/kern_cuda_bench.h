/* `amxdiag bench kernels --gpu`: implemented by the CUDA kernels (kernels/cuda). */
#ifndef KERN_CUDA_BENCH_H
#define KERN_CUDA_BENCH_H

/* argv as given to `amxdiag bench ...` (argv[0] is the command's name; the words "bench"
 * and "kernels" and the flag --gpu are accepted anywhere).  Options: see --help and
 * docs/cuda-kernels.md.  Returns an exit code (0 ran, 1 a check failed or an injected
 * fault was reported, 2 usage/driver/CUDA error). */
int kern_cuda_bench_cmd(int argc, char **argv);

#endif
