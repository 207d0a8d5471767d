#include "profiler/prof_workload.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* llama-bench: "| llama 1B Q4_0 | 606.53 MiB | 1.10 B | CPU | 16 | pp512 | 473.12 ± 58.01 |" */
static bool parse_bench(const char *line, prof_tps *out)
{
    const char *p = line;
    while (*p == ' ')
        p++;
    if (*p != '|')
        return false;
    char cells[16][64];
    int n = 0;
    p++;
    while (*p && n < 16) {
        const char *end = strchr(p, '|');
        if (!end)
            break;
        size_t len = (size_t)(end - p);
        while (len && isspace((unsigned char)*p))
            p++, len--;
        while (len && isspace((unsigned char)p[len - 1]))
            len--;
        if (len >= sizeof cells[0])
            len = sizeof cells[0] - 1;
        memcpy(cells[n], p, len);
        cells[n][len] = 0;
        n++;
        p = end + 1;
    }
    if (n < 2)
        return false;
    /* The figure is the last cell ("123.45 ± 1.23"); the test is a cell like pp512,
     * tg128, pp512+tg128 or "pp512 @ d1024". */
    int test = -1;
    for (int i = 0; i < n - 1; i++)
        if ((!strncmp(cells[i], "pp", 2) || !strncmp(cells[i], "tg", 2)) && isdigit((unsigned char)cells[i][2]))
            test = i;
    if (test < 0)
        return false;
    char *end;
    double v = strtod(cells[n - 1], &end);
    if (end == cells[n - 1])
        return false;
    double sd = 0;
    const char *pm = strstr(end, "\xc2\xb1"); /* ± in UTF-8 */
    if (pm)
        sd = strtod(pm + 2, NULL);
    snprintf(out->test, sizeof out->test, "%s", cells[test]);
    out->tps = v;
    out->stddev = sd;
    out->source = "llama-bench";
    return true;
}

/* llama-cli / llama_perf_context_print / llama_print_timings:
 *   "...prompt eval time =  123.45 ms /  12 tokens (... ms per token,  97.20 tokens per second)"
 *   "...       eval time = 1234.56 ms / 127 runs   (... ms per token, 102.88 tokens per second)" */
static bool parse_cli(const char *line, prof_tps *out)
{
    const char *tps = strstr(line, "tokens per second");
    const char *et = strstr(line, "eval time");
    if (!tps || !et || et > tps)
        return false;
    const char *comma = tps;
    while (comma > line && *comma != ',')
        comma--;
    if (*comma != ',')
        return false;
    char *end;
    double v = strtod(comma + 1, &end);
    if (end == comma + 1)
        return false;
    bool prompt = et >= line + 7 && !strncmp(et - 7, "prompt ", 7);
    snprintf(out->test, sizeof out->test, "%s", prompt ? "prompt" : "eval");
    out->tps = v;
    out->stddev = 0;
    out->source = "llama-cli";
    return true;
}

bool prof_workload_parse_line(const char *line, prof_tps *out)
{
    memset(out, 0, sizeof *out);
    return parse_bench(line, out) || parse_cli(line, out);
}
