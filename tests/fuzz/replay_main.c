/* A main() for the fuzz targets in builds without libFuzzer (gcc, the ASan+UBSan CI
 * build): runs LLVMFuzzerTestOneInput once on every file named on the command line or
 * found in the directories named, so that the seed corpora and every input that once
 * crashed are replayed by ctest under the sanitizers. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            unsigned char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            } else {
                buf = nb;
            }
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", path);
        return 1;
    }
    /* An exact-size copy, so that ASan sees a read one past the input. */
    unsigned char *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return 1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    int bad = 0;
    size_t runs = 0;
    /* Absolute paths first: a target may change its working directory. */
    char **abs = calloc((size_t)argc, sizeof *abs);
    for (int i = 1; abs && i < argc; i++)
        abs[i] = realpath(argv[i], NULL);
    for (int i = 1; abs && i < argc; i++) {
        struct stat st;
        if (!abs[i] || stat(abs[i], &st) != 0)
            continue; /* an optional directory (no regressions yet) */
        argv[i] = abs[i];
        if (!S_ISDIR(st.st_mode)) {
            fprintf(stderr, "replay %s\n", argv[i]);
            bad |= run_file(argv[i]);
            runs++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            perror(argv[i]);
            bad = 1;
            continue;
        }
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.' || !strcmp(de->d_name, "README.md"))
                continue;
            char **nn = realloc(names, (n + 1) * sizeof *names);
            if (!nn)
                break;
            names = nn;
            names[n] = malloc(strlen(argv[i]) + strlen(de->d_name) + 2);
            if (!names[n])
                break;
            sprintf(names[n], "%s/%s", argv[i], de->d_name);
            n++;
        }
        closedir(d);
        qsort(names, n, sizeof *names, cmp);
        for (size_t k = 0; k < n; k++) {
            fprintf(stderr, "replay %s\n", names[k]);
            bad |= run_file(names[k]);
            runs++;
            free(names[k]);
        }
        free(names);
    }
    for (int i = 1; abs && i < argc; i++)
        free(abs[i]);
    free(abs);
    fprintf(stderr, "replayed %zu input(s)\n", runs);
    return bad;
}
