/* Helpers shared by the fuzz targets: fuzzed bytes as a file path (a memfd, so nothing
 * touches the disk), quiet standard streams, and a getopt reset between calls. */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes data to a fresh memfd; *path gets "/proc/self/fd/N" (buf of >= 32 bytes).
 * Returns the fd (the caller closes it), -1 on failure. */
int fuzz_memfd(const char *name, const void *data, size_t size, char *path, size_t path_len);
/* Sends stdout to /dev/null once (commands print their results), unless FUZZ_VERBOSE
 * is set.  stderr stays: the sanitizers report there (libFuzzer's -close_fd_mask=2
 * quiets the commands' messages in long campaigns). */
void fuzz_quiet(void);
/* A full getopt reset: a command parses its argv with optind = 1, which keeps glibc's
 * pointer into the previous argv when that parse stopped inside a cluster ("-hv"). */
void fuzz_getopt_reset(void);
/* Runs once: a private temporary working directory, so that a fuzzed output option
 * writes nowhere else. */
void fuzz_private_cwd(void);

#endif
