/* Rerun under compute-sanitizer and merge its report into the run record. */
#include "profiler/sanitizer_run.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/adg_json.h"
#include "common/adg_log.h"
#include "common/adg_record.h"
#include "common/adg_util.h"
#include "profiler/crash_analyze.h"
#include "profiler/sanitizer_parse.h"

static bool executable(const char *p)
{
    return access(p, X_OK) == 0;
}

adg_error *prof_sanitizer_find(char *buf, size_t len)
{
    const char *env = getenv("COMPUTE_SANITIZER");
    if (env && *env) {
        if (executable(env)) {
            snprintf(buf, len, "%s", env);
            return NULL;
        }
        return adg_error_hint(adg_error_errno(ADG_E_USAGE, errno, "COMPUTE_SANITIZER=%s", env),
                              "point COMPUTE_SANITIZER at the compute-sanitizer program, or unset it");
    }
    const char *path = getenv("PATH");
    if (path) {
        char *copy = strdup(path);
        for (char *save, *d = copy ? strtok_r(copy, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
            snprintf(buf, len, "%s/compute-sanitizer", d);
            if (executable(buf)) {
                free(copy);
                return NULL;
            }
        }
        free(copy);
    }
    const char *homes[] = {getenv("CUDA_HOME"), getenv("CUDA_PATH"), "/usr/local/cuda"};
    for (size_t i = 0; i < ADG_ARRAY_LEN(homes); i++) {
        if (!homes[i] || !*homes[i])
            continue;
        snprintf(buf, len, "%s/bin/compute-sanitizer", homes[i]);
        if (executable(buf))
            return NULL;
        snprintf(buf, len, "%s/compute-sanitizer/compute-sanitizer", homes[i]);
        if (executable(buf))
            return NULL;
    }
    return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "compute-sanitizer not found (looked in $COMPUTE_SANITIZER, "
                                                           "PATH, $CUDA_HOME/bin and /usr/local/cuda/bin)"),
                          "install the CUDA toolkit's compute-sanitizer or set COMPUTE_SANITIZER to it");
}

void prof_sanitizer_report_path(const char *record_path, char *buf, size_t len)
{
    size_t n = strlen(record_path);
    if (n > 5 && !strcmp(record_path + n - 5, ".json"))
        n -= 5;
    snprintf(buf, len, "%.*s.sanitizer.xml", (int)n, record_path);
}

adg_error *prof_sanitize_merge(const char *record_path, const char *report_path, size_t *merged)
{
    if (merged)
        *merged = 0;
    san_report rep;
    adg_error *e = san_parse_file(report_path, &rep);
    if (e)
        return e;
    json_t *root;
    if ((e = adg_record_load(record_path, &root))) {
        san_report_free(&rep);
        return e;
    }
    json_t *crash = json_object_get(root, "crash");
    if (rep.n || json_is_object(crash)) {
        json_t *c = crash_merge_sanitizer(json_is_object(crash) ? crash : NULL, rep.recs, rep.n, NULL, report_path);
        json_t *s = json_object_get(c, "sanitizer");
        json_object_set_new(s, "format", json_string(rep.format));
        json_object_set_new(s, "other_reports", json_integer((json_int_t)rep.other));
        json_object_set_new(s, "errors_total", json_integer(rep.errors_total));
        json_object_set_new(s, "truncated", json_boolean(rep.truncated));
        if (!rep.n)
            json_object_set_new(s, "note", json_string("compute-sanitizer memcheck reported no memory-access error "
                                                       "in this run: the fault did not reproduce under it, or it "
                                                       "is not a memory access (see other_reports)"));
        if (!json_is_object(crash))
            json_object_set_new(root, "crash", c);
    } else {
        json_object_set_new(root, "sanitizer",
                            json_pack("{s:s,s:s,s:i,s:I,s:I,s:b,s:s}", "file", report_path, "format", rep.format,
                                      "count", 0, "other_reports", (json_int_t)rep.other, "errors_total",
                                      (json_int_t)rep.errors_total, "truncated", rep.truncated, "conclusion",
                                      "compute-sanitizer memcheck found no memory-access error"));
    }
    if (merged)
        *merged = rep.n;
    san_report_free(&rep);
    e = adg_json_write_atomic(record_path, root);
    json_decref(root);
    return e ? adg_error_prefix(e, "run record") : NULL;
}

adg_error *prof_sanitize_run(char *const *argv, const char *record_path, int *exit_status)
{
    *exit_status = 0;
    char tool[PATH_MAX];
    adg_error *e = prof_sanitizer_find(tool, sizeof tool);
    if (e)
        return e;
    char report[PATH_MAX + 32], save[PATH_MAX + 48];
    prof_sanitizer_report_path(record_path, report, sizeof report);
    if (unlink(report) != 0 && errno != ENOENT)
        return adg_error_errno(ADG_E_IO, errno, "cannot replace %s", report);
    snprintf(save, sizeof save, "--save=%s", report);
    size_t n = 0;
    while (argv[n])
        n++;
    /* compute-sanitizer 2025.3: --xml is a flag (no value; "--xml yes" is refused), and it
     * needs --save. */
    const char *pre[] = {tool, "--tool=memcheck", "--xml", save, "--print-limit=100"};
    char **av = calloc(ADG_ARRAY_LEN(pre) + n + 1, sizeof *av);
    if (!av)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    for (size_t i = 0; i < ADG_ARRAY_LEN(pre); i++)
        av[i] = (char *)pre[i];
    for (size_t i = 0; i < n; i++)
        av[ADG_ARRAY_LEN(pre) + i] = argv[i];
    adg_info("running under compute-sanitizer: %s ... %s", tool, argv[0]);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        free(av);
        return adg_error_errno(ADG_E_IO, err, "cannot fork for compute-sanitizer");
    }
    if (pid == 0) {
        /* Our stdout may carry --json: the sanitized run prints on stderr. */
        dup2(2, 1);
        execv(tool, av);
        _exit(127);
    }
    free(av);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    *exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 0;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127 && access(report, F_OK) != 0)
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "compute-sanitizer (%s) could not run the command", tool),
                              "check the command and that compute-sanitizer runs on this machine");
    if (access(report, F_OK) != 0)
        return adg_error_hint(adg_error_new(ADG_E_IO, "compute-sanitizer exited (status %d) without writing %s",
                                            *exit_status, report),
                              "run it by hand to see why: %s --tool=memcheck %s", tool, argv[0]);
    size_t merged;
    if ((e = prof_sanitize_merge(record_path, report, &merged)))
        return e;
    adg_info("compute-sanitizer: %zu memory-access report(s) merged into %s", merged, record_path);
    return NULL;
}
