/* The --gpu-metrics metric table and the naming of auto ranges. */
#include "profiler/cupti_range.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Names as Nsight Compute and CUPTI's metric list use them.  The tensor pipes are named
 * per generation: hmma (Volta on, f16/bf16 mma.sync), imma (integer; not on every chip),
 * gmma (Hopper's wgmma, the path cuBLAS takes on H100). */
static const cupti_range_metric metrics[] = {
    {CUPTI_RM_DURATION, "duration_ns", true, NAMES("gpu__time_duration.sum")},
    {CUPTI_RM_DRAM_READ, "dram_read_bytes", true, NAMES("dram__bytes_read.sum")},
    {CUPTI_RM_DRAM_WRITE, "dram_write_bytes", true, NAMES("dram__bytes_write.sum")},
    {CUPTI_RM_DRAM_PCT, "dram_pct_of_peak", false, NAMES("dram__throughput.avg.pct_of_peak_sustained_elapsed")},
    {CUPTI_RM_SM_PCT, "sm_throughput_pct", false, NAMES("sm__throughput.avg.pct_of_peak_sustained_elapsed")},
    {CUPTI_RM_TENSOR_HMMA_PCT, "tensor_hmma_pct", false,
     NAMES("sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",
           "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active")},
    {CUPTI_RM_TENSOR_IMMA_PCT, "tensor_imma_pct", false,
     NAMES("sm__pipe_tensor_op_imma_cycles_active.avg.pct_of_peak_sustained_active")},
    {CUPTI_RM_TENSOR_GMMA_PCT, "tensor_gmma_pct", false,
     NAMES("sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active")},
    {CUPTI_RM_DRAM_PEAK_BPC, "dram_peak_bytes_per_cycle", false, NAMES("dram__bytes.sum.peak_sustained")},
    {CUPTI_RM_DRAM_CPS, "dram_cycles_per_s", false, NAMES("dram__cycles_elapsed.avg.per_second")},
};
_Static_assert(sizeof metrics / sizeof metrics[0] == CUPTI_RM_COUNT, "one row per role");

const cupti_range_metric *cupti_range_metrics(size_t *n)
{
    *n = CUPTI_RM_COUNT;
    return metrics;
}

const char *cupti_range_role_key(unsigned role)
{
    return role < CUPTI_RM_COUNT ? metrics[role].key : "?";
}

bool cupti_range_select(bool (*supported)(void *ctx, const char *metric), void *ctx, cupti_range_sel *sel, char *why,
                        size_t why_len)
{
    memset(sel, 0, sizeof *sel);
    if (why_len)
        why[0] = 0;
    bool ok = true;
    for (size_t r = 0; r < CUPTI_RM_COUNT; r++) {
        const cupti_range_metric *m = &metrics[r];
        const char *chosen = NULL;
        for (const char *const *c = m->names; *c && !chosen; c++)
            if (supported(ctx, *c))
                chosen = *c;
        if (chosen) {
            sel->names[sel->n] = chosen;
            sel->role_of[sel->n] = (int)m->role;
            sel->n++;
            sel->present |= 1u << m->role;
        } else if (m->required && ok) {
            ok = false;
            size_t l = (size_t)snprintf(why, why_len, "this GPU's counters do not provide %s (tried", m->key);
            for (const char *const *c = m->names; *c && l < why_len; c++)
                l += (size_t)snprintf(why + l, why_len - l, " %s", *c);
            if (l < why_len)
                snprintf(why + l, why_len - l, ")");
        }
    }
    return ok;
}

static bool names_add(cupti_range_names *q, const char *name, bool opt)
{
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 64;
        char **nn = realloc(q->name, nc * sizeof *nn);
        if (!nn)
            return false;
        q->name = nn;
        bool *no = realloc(q->opt, nc * sizeof *no);
        if (!no)
            return false;
        q->opt = no;
        q->cap = nc;
    }
    char *c = strdup(name ? name : "?");
    if (!c)
        return false;
    q->opt[q->n] = opt;
    q->name[q->n++] = c;
    if (opt)
        q->n_opt++;
    return true;
}

bool cupti_range_names_push(cupti_range_names *q, const char *name)
{
    return names_add(q, name, false);
}

bool cupti_range_names_push_opt(cupti_range_names *q, const char *name)
{
    return names_add(q, name, true);
}

/* The optional entries' kinds (their labels: "<memset>", "<memcpy DtoD>"), at most 8,
 * and how many of each; -1 past 8. */
#define OPT_KINDS 8
static int opt_kinds(const cupti_range_names *q, const char **label, size_t *count)
{
    int k = 0;
    for (size_t e = 0; e < q->n; e++) {
        if (!q->opt[e])
            continue;
        int j = 0;
        while (j < k && strcmp(label[j], q->name[e]))
            j++;
        if (j == k) {
            if (k == OPT_KINDS)
                return -1;
            label[k] = q->name[e];
            count[k++] = 0;
        }
        count[j]++;
    }
    return k;
}

/* Which kinds of optional entries became ranges: a set whose entries with the launches
 * make n_ranges (the driver runs every memset of a window the same way, and every
 * device-to-device copy).  Several sets may fit (a memset and a copy, one range more than
 * the launches): the one with the most kinds, then the kinds seen first; *unique says
 * whether it was the only one.  False when none fits. */
static bool opt_fit(const cupti_range_names *q, size_t n_ranges, const char **label, int *k_out, unsigned *mask,
                    bool *unique)
{
    size_t count[OPT_KINDS];
    int k = opt_kinds(q, label, count);
    if (k < 0)
        return false;
    int fits = 0;
    for (int p = k; p >= 0; p--)
        for (unsigned m = 0; m < (1u << k); m++) {
            if (__builtin_popcount(m) != p)
                continue;
            size_t sum = q->n - q->n_opt;
            for (int j = 0; j < k; j++)
                if (m & (1u << j))
                    sum += count[j];
            if (sum == n_ranges && fits++ == 0)
                *mask = m;
        }
    *k_out = k;
    *unique = fits == 1;
    return fits > 0;
}

bool cupti_range_names_fit(const cupti_range_names *q, size_t n_ranges)
{
    const char *label[OPT_KINDS];
    int k;
    unsigned mask;
    bool unique = false;
    return n_ranges == q->n || (q->n_opt && opt_fit(q, n_ranges, label, &k, &mask, &unique) && unique);
}

const char *cupti_range_names_at(const cupti_range_names *q, size_t i, size_t n_ranges)
{
    /* Some kinds of optional entries made no range: the i-th of the others. */
    const char *label[OPT_KINDS];
    int k;
    unsigned mask;
    bool unique;
    if (q->n_opt && n_ranges != q->n && opt_fit(q, n_ranges, label, &k, &mask, &unique)) {
        for (size_t e = 0; e < q->n; e++) {
            if (q->opt[e]) {
                int j = 0;
                while (j < k && strcmp(label[j], q->name[e]))
                    j++;
                if (!(mask & (1u << j)))
                    continue;
            }
            if (i-- == 0)
                return q->name[e];
        }
        return NULL;
    }
    /* With the counts equal the mapping is exact; with fewer ranges than launches (a
     * launch that did not become a range) it is by order, the best there is; past the
     * launches seen there is no name. */
    return i < q->n ? q->name[i] : NULL;
}

void cupti_range_names_clear(cupti_range_names *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->name[i]);
    q->n = 0;
    q->n_opt = 0;
    q->graph_launches = 0;
}

void cupti_range_names_free(cupti_range_names *q)
{
    cupti_range_names_clear(q);
    free(q->name);
    free(q->opt);
    q->name = NULL;
    q->opt = NULL;
    q->cap = 0;
}
