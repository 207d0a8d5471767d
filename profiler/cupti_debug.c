/* The AMXDIAG_CUPTI_DEBUG trace (see cupti_debug.h). */
#include "profiler/cupti_debug.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_int state; /* 0 not read yet, 1 off, 2 on */

bool cupti_debug_on(void)
{
    int s = atomic_load_explicit(&state, memory_order_relaxed);
    if (!s) {
        const char *e = getenv("AMXDIAG_CUPTI_DEBUG");
        s = e && *e && strcmp(e, "0") ? 2 : 1;
        atomic_store_explicit(&state, s, memory_order_relaxed);
    }
    return s == 2;
}

void cupti_debug(const char *fmt, ...)
{
    if (!cupti_debug_on())
        return;
    char line[768];
    int n = snprintf(line, sizeof line, "amxdiag-cupti[%d]: ", (int)getpid());
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    /* One write per line: lines of several threads do not interleave, and nothing waits
     * in a buffer when the process dies. */
    for (size_t off = 0; off < len;) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

/* ---- the stack of a fatal signal (AMXDIAG_CUPTI_DEBUG only) ----
 * Written from the signal handler: write(2) only, numbers formatted by hand.  backtrace()
 * loads libgcc's unwinder on its first call (malloc, dlopen): cupti_debug_crash_prepare
 * makes that first call outside the handler.  dladdr takes the loader's lock; a fault
 * inside the loader could stall the dump, which is the accepted cost of a debug aid. */
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <ucontext.h>

static void put(const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* Unsigned v in base 10 or 16 ("0x" prefix) into out (at least 24 bytes). */
static const char *num(char *out, uintptr_t v, unsigned base)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v && n < sizeof tmp);
    size_t o = 0;
    if (base == 16) {
        out[o++] = '0';
        out[o++] = 'x';
    }
    while (n)
        out[o++] = tmp[--n];
    out[o] = 0;
    return out;
}

static void put_frame(const char *tag, unsigned i, void *pc)
{
    char a[24], b[24];
    put("amxdiag-cupti[");
    put(num(a, (uintptr_t)getpid(), 10));
    put("]: ");
    put(tag);
    put(" #");
    put(num(a, i, 10));
    put(" ");
    put(num(a, (uintptr_t)pc, 16));
    Dl_info di;
    if (dladdr(pc, &di) && di.dli_fname) {
        put(" ");
        put(di.dli_fname);
        put("+");
        put(num(b, (uintptr_t)pc - (uintptr_t)di.dli_fbase, 16));
        if (di.dli_sname) {
            put(" (");
            put(di.dli_sname);
            put("+");
            put(num(b, (uintptr_t)pc - (uintptr_t)di.dli_saddr, 16));
            put(")");
        }
    } else
        put(" (no module)");
    put("\n");
}

static const char *sig_name(int sig)
{
    switch (sig) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGABRT:
        return "SIGABRT";
    case SIGBUS:
        return "SIGBUS";
    case SIGILL:
        return "SIGILL";
    case SIGFPE:
        return "SIGFPE";
    default:
        return "signal";
    }
}

void cupti_debug_crash_prepare(void)
{
    if (!cupti_debug_on())
        return;
    void *f[4];
    backtrace(f, 4);
    /* The handler runs on its own stack where the thread has none: a fault from a
     * corrupted stack pointer still gets its dump.  One per thread that prepares (the
     * thread that loads CUDA, usually the one that exits); kept for the process's life. */
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
        stack_t ss = {.ss_sp = malloc(1u << 16), .ss_size = 1u << 16, .ss_flags = 0};
        if (ss.ss_sp && sigaltstack(&ss, NULL) != 0)
            free(ss.ss_sp);
    }
}

void cupti_debug_crash_dump(int sig, const siginfo_t *si, const void *uc)
{
    if (!cupti_debug_on())
        return;
    char a[24];
    put("amxdiag-cupti[");
    put(num(a, (uintptr_t)getpid(), 10));
    put("]: FATAL ");
    put(sig_name(sig));
    put(" (");
    put(num(a, (uintptr_t)sig, 10));
    put(") in thread ");
    put(num(a, (uintptr_t)syscall(SYS_gettid), 10));
    if (si && (sig == SIGSEGV || sig == SIGBUS)) {
        put(", fault address ");
        put(num(a, (uintptr_t)si->si_addr, 16));
        put(", code ");
        put(num(a, (uintptr_t)(unsigned)si->si_code, 10));
    }
    put("\n");
#if defined(__x86_64__)
    if (uc) {
        const ucontext_t *u = uc;
        put_frame("faulting pc", 0, (void *)(uintptr_t)u->uc_mcontext.gregs[REG_RIP]);
    }
#else
    (void)uc;
#endif
    void *frames[64];
    int n = backtrace(frames, 64);
    put("amxdiag-cupti: backtrace_symbols_fd:\n");
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    for (int i = 0; i < n; i++)
        put_frame("frame", (unsigned)i, frames[i]);
    put("amxdiag-cupti: end of stack\n");
}

static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

static void on_crash(int sig, siginfo_t *si, void *uc)
{
    cupti_debug_crash_dump(sig, si, uc);
    signal(sig, SIG_DFL);
    raise(sig);
}

void cupti_debug_install_crash_handler(void)
{
    if (!cupti_debug_on())
        return;
    cupti_debug_crash_prepare();
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++) {
        struct sigaction old, sa;
        if (sigaction(crash_signals[i], NULL, &old) != 0 || (old.sa_flags & SA_SIGINFO) ||
            old.sa_handler != SIG_DFL)
            continue; /* the program's own handler stays */
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_crash;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
        sigemptyset(&sa.sa_mask);
        sigaction(crash_signals[i], &sa, NULL);
    }
}
