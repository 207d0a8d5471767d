#include "profiler/prof_collector.h"

#include <stdlib.h>
#include <string.h>

#include "common/adg_log.h"

void prof_pidset_init(prof_pidset *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
}

void prof_pidset_destroy(prof_pidset *s)
{
    pthread_mutex_destroy(&s->lock);
    free(s->pids);
    s->pids = NULL;
    s->n = s->cap = 0;
}

void prof_pidset_add(prof_pidset *s, pid_t pid)
{
    if (pid <= 0)
        return;
    pthread_mutex_lock(&s->lock);
    bool have = false;
    for (size_t i = 0; i < s->n && !have; i++)
        have = s->pids[i] == pid;
    if (!have) {
        if (s->n == s->cap) {
            size_t nc = s->cap ? s->cap * 2 : 16;
            pid_t *p = realloc(s->pids, nc * sizeof *p);
            if (p) {
                s->pids = p;
                s->cap = nc;
            }
        }
        if (s->n < s->cap)
            s->pids[s->n++] = pid;
    }
    pthread_mutex_unlock(&s->lock);
}

size_t prof_pidset_copy(prof_pidset *s, pid_t **out)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->n;
    *out = n ? malloc(n * sizeof **out) : NULL;
    if (*out)
        memcpy(*out, s->pids, n * sizeof **out);
    else
        n = 0;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int prof_register(prof_ctx *ctx, const char *collector, const char *name, const char *unit, adg_scope scope,
                  const char *meaning)
{
    int id = -1;
    adg_error *e = adg_bus_register(ctx->bus, collector, &(adg_metric_def){name, unit, scope, meaning}, &id);
    if (e) {
        adg_warn("%s: %s", collector, adg_error_msg(e));
        adg_error_free(e);
        return -1;
    }
    return id;
}
