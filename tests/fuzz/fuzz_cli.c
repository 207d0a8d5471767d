/* Command-line parsing of the commands that read files and run no workload, in
 * process: `probe --snapshot FILE ...`, `model inspect FILE ...`,
 * `top --replay FILE --dump ...` and `report ... FILE`, each with fuzzed options and a
 * fuzzed input file.
 *
 * Input: byte 0 picks the command, byte 1 the number of arguments (0-15), then that
 * many NUL-terminated arguments, then the file's bytes.  An argument "@" or one holding
 * a '/' becomes the file's path, so no fuzzed path reaches the real file system;
 * options that would run something (probe --bench, --binary) are dropped, and the
 * target runs in a private working directory (for output options). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "kernels/kern_cmds.h"
#include "probe/probe.h"
#include "reports/reports.h"
#include "tui/tui.h"

#define MAX_ARGS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    fuzz_private_cwd();
    if (size < 2)
        return 0;
    int cmd = data[0] % 4;
    int nargs = data[1] % MAX_ARGS;
    size_t off = 2;
    char *args[MAX_ARGS];
    int n = 0;
    for (int i = 0; i < nargs && off < size; i++) {
        const uint8_t *z = memchr(data + off, 0, size - off);
        size_t len = z ? (size_t)(z - (data + off)) : size - off;
        args[n] = strndup((const char *)data + off, len);
        if (!args[n])
            break;
        n++;
        off += len + (z ? 1 : 0);
    }
    char path[64];
    int fd = fuzz_memfd("cli", data + off, size - off, path, sizeof path);
    if (fd < 0)
        goto out;

    char *argv[MAX_ARGS + 8];
    int argc = 0;
    char s_probe[] = "probe", s_snap[] = "--snapshot", s_model[] = "model", s_inspect[] = "inspect", s_top[] = "top",
         s_replay[] = "--replay", s_dump[] = "--dump", s_report[] = "report";
    switch (cmd) {
    case 0:
        argv[argc++] = s_probe;
        argv[argc++] = s_snap;
        argv[argc++] = path;
        break;
    case 1:
        argv[argc++] = s_model;
        argv[argc++] = s_inspect;
        argv[argc++] = path;
        break;
    case 2:
        argv[argc++] = s_top;
        argv[argc++] = s_replay;
        argv[argc++] = path;
        argv[argc++] = s_dump;
        break;
    default:
        argv[argc++] = s_report; /* the record comes among the fuzzed arguments ("@") */
        break;
    }
    for (int i = 0; i < n; i++) {
        if (!strcmp(args[i], "@") || strchr(args[i], '/'))
            argv[argc++] = path;
        else if (cmd == 0 && !strncmp(args[i], "--b", 3))
            continue;
        else
            argv[argc++] = args[i];
    }
    argv[argc] = NULL;
    fuzz_getopt_reset();
    switch (cmd) {
    case 0:
        (void)probe_cmd_main(argc, argv);
        break;
    case 1:
        (void)kern_model_cmd_main(argc, argv);
        break;
    case 2:
        (void)tui_top_cmd_main(argc, argv);
        break;
    default:
        (void)rep_report_cmd_main(argc, argv);
        break;
    }
    close(fd);
out:
    for (int i = 0; i < n; i++)
        free(args[i]);
    return 0;
}
