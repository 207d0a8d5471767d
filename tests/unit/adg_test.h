/* Shared by the cmocka unit tests. */
#ifndef ADG_TEST_H
#define ADG_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

/* Skips the current test, saying why in a line the CI log keeps. */
#define ADG_SKIP(...)                                      \
    do {                                                   \
        printf("SKIP: " __VA_ARGS__);                      \
        printf("\n");                                      \
        fflush(stdout);                                    \
        skip();                                            \
    } while (0)

/* Asserts an adg_error * is NULL, printing its message when it is not. */
#define ADG_ASSERT_OK(expr)                                                      \
    do {                                                                         \
        adg_error *adg_test_e_ = (expr);                                         \
        if (adg_test_e_) {                                                       \
            print_error("%s failed: %s\n", #expr, adg_error_msg(adg_test_e_));   \
            adg_error_free(adg_test_e_);                                         \
            fail();                                                              \
        }                                                                        \
    } while (0)

/* A fresh directory under $TMPDIR (or /tmp) for one test; removed by adg_test_rmtree. */
static inline char *adg_test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *path = NULL;
    if (asprintf(&path, "%s/amxdiag-test-XXXXXX", base && *base ? base : "/tmp") < 0)
        return NULL;
    extern char *mkdtemp(char *);
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

static inline void adg_test_rmtree(char *dir)
{
    if (!dir)
        return;
    char *cmd = NULL;
    if (asprintf(&cmd, "rm -rf '%s'", dir) >= 0) {
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
        free(cmd);
    }
    free(dir);
}

#endif
