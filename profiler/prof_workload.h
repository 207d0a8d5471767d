/* The workload's own figures, recognised in its output while it is passed through
 * unchanged: llama-bench table rows and llama-cli / llama.cpp timing lines. */
#ifndef PROF_WORKLOAD_H
#define PROF_WORKLOAD_H

#include <stdbool.h>

typedef struct prof_tps {
    char test[64];      /* "pp512", "tg128", "prompt", "eval" */
    double tps, stddev; /* tokens per second; stddev 0 when not given */
    const char *source; /* "llama-bench" or "llama-cli" */
} prof_tps;

/* Parses one output line; true when it carries a tokens/s figure. */
bool prof_workload_parse_line(const char *line, prof_tps *out);

#endif
