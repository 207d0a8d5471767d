/* Entry points of the commands that live in kernels/. */
#ifndef KERN_CMDS_H
#define KERN_CMDS_H

int kern_bench_cmd_main(int argc, char **argv);
int kern_model_cmd_main(int argc, char **argv);
int kern_run_cmd_main(int argc, char **argv);

#endif
