#include "fuzz_util.h"

#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int fuzz_memfd(const char *name, const void *data, size_t size, char *path, size_t path_len)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    const uint8_t *p = data;
    size_t left = size;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        p += n;
        left -= (size_t)n;
    }
    lseek(fd, 0, SEEK_SET);
    snprintf(path, path_len, "/proc/self/fd/%d", fd);
    return fd;
}

void fuzz_quiet(void)
{
    static int done;
    if (done++ || getenv("FUZZ_VERBOSE"))
        return;
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    fflush(stdout);
    fflush(stderr);
    dup2(fd, STDOUT_FILENO);
    close(fd);
}

void fuzz_getopt_reset(void)
{
    static char arg0[] = "fuzz";
    static char *argv[] = {arg0, NULL};
    optind = 0;
    opterr = 0;
    while (getopt(1, argv, "") != -1) {
    }
    optind = 1;
    opterr = 1;
}

void fuzz_private_cwd(void)
{
    static int done;
    if (done++)
        return;
    char tmpl[] = "/tmp/amxdiag-fuzz-XXXXXX";
    if (mkdtemp(tmpl) && chdir(tmpl) == 0)
        return;
}
