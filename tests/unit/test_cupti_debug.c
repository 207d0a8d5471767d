/* The fatal-signal stack of AMXDIAG_CUPTI_DEBUG (profiler/cupti_debug.c): what the device
 * run reads to tell a fault inside libcupti from one in a callback of ours.  Each case
 * runs in a forked child whose stderr is a pipe. */
#include "adg_test.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "profiler/cupti_debug.h"

typedef void (*child_fn)(void);

/* Runs fn in a child with AMXDIAG_CUPTI_DEBUG=1 and stderr to a pipe; returns what it
 * wrote (caller frees) and its wait status. */
static char *run_child(child_fn fn, int *status)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], STDERR_FILENO);
        setenv("AMXDIAG_CUPTI_DEBUG", "1", 1);
        fn();
        _exit(0);
    }
    close(p[1]);
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    for (;;) {
        if (n + 4096 > cap)
            out = realloc(out, cap *= 2);
        ssize_t r = read(p[0], out + n, cap - n - 1);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    out[n] = 0;
    close(p[0]);
    waitpid(pid, status, 0);
    return out;
}

static __attribute__((noinline)) void dump_segv(void)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = SIGSEGV;
    si.si_addr = (void *)(uintptr_t)0x1234;
    cupti_debug_crash_dump(SIGSEGV, &si, NULL);
}

static void test_dump_lines(void **st)
{
    (void)st;
    int status;
    char *out = run_child(dump_segv, &status);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_non_null(strstr(out, "FATAL SIGSEGV (11) in thread "));
    assert_non_null(strstr(out, "fault address 0x1234"));
    assert_non_null(strstr(out, "backtrace_symbols_fd:"));
    assert_non_null(strstr(out, "]: frame #0 0x"));
    /* module+offset from dladdr: this test program, then libc's start */
    char self[300];
    snprintf(self, sizeof self, "/%s+0x", program_invocation_short_name);
    assert_non_null(strstr(out, self));
    assert_non_null(strstr(out, "libc.so"));
    assert_non_null(strstr(out, "end of stack"));
    free(out);
}

static void dump_off(void)
{
    setenv("AMXDIAG_CUPTI_DEBUG", "0", 1);
    cupti_debug_crash_dump(SIGSEGV, NULL, NULL);
}

static void test_dump_off_without_debug(void **st)
{
    (void)st;
    int status;
    char *out = run_child(dump_off, &status);
    assert_string_equal(out, "");
    free(out);
}

static void abort_with_handler(void)
{
    cupti_debug_install_crash_handler();
    raise(SIGABRT);
}

/* The handler dumps, then the signal kills the process as it would have. */
static void test_handler_reraises(void **st)
{
    (void)st;
    struct sigaction cur;
    sigaction(SIGABRT, NULL, &cur);
    if (cur.sa_handler != SIG_DFL)
        ADG_SKIP("SIGABRT already has a handler in this test process (a sanitizer's)");
    int status;
    char *out = run_child(abort_with_handler, &status);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_non_null(strstr(out, "FATAL SIGABRT (6)"));
    /* raise() is libc's: the faulting pc (from the signal's context) is there */
    char *pc = strstr(out, "faulting pc #0 0x");
    assert_non_null(pc);
    assert_non_null(strstr(pc, "libc.so"));
    free(out);
}

static void segv_with_program_handler(void)
{
    signal(SIGSEGV, SIG_IGN); /* stands for a program's own handler: ours is not installed */
    cupti_debug_install_crash_handler();
    struct sigaction cur;
    sigaction(SIGSEGV, NULL, &cur);
    _exit(cur.sa_handler == SIG_IGN ? 0 : 3);
}

static void test_program_handler_kept(void **st)
{
    (void)st;
    int status;
    char *out = run_child(segv_with_program_handler, &status);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dump_lines),
        cmocka_unit_test(test_dump_off_without_debug),
        cmocka_unit_test(test_handler_reraises),
        cmocka_unit_test(test_program_handler_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
