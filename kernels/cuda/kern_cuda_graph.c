/* CUDA graphs (kern_cuda.h): stream capture of the context's launches, instantiated
 * once and replayed with cuGraphLaunch.
 *
 * The capture runs on the context's own stream in relaxed mode: amxdiag makes no
 * capture-unsafe call while capturing (copies and waits refuse, see kern_cuda.c), and
 * relaxed mode lets another thread or library make calls that global mode would refuse
 * during a capture.  Work on the legacy stream while capturing still invalidates it (the
 * context's stream is a blocking one): the capture's end then fails and says so. */
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "kernels/cuda/kern_cuda_internal.h"

struct kern_cuda_graph {
    kern_cu_graph graph;
    kern_cu_graph_exec exec;
    kern_cuda_launch *rec; /* the captured launches, in order */
    size_t n_rec, cap_rec;
};

const char *kern_cuda_graph_unavailable(const kern_cuda_ctx *c)
{
    const kern_cuda_driver *d = c->d;
    if (!d->cuStreamBeginCapture || !d->cuStreamEndCapture || !d->cuGraphInstantiate || !d->cuGraphLaunch ||
        !d->cuGraphExecDestroy || !d->cuGraphDestroy || !d->cuEventRecordWithFlags)
        return "the driver lacks the CUDA graph calls";
    if (c->validate)
        return "--gpu-validate checks each launch";
    if (c->sync_each)
        return "--sync-each waits after each launch";
    if (c->armed != KERN_CUDA_FAULT_NONE)
        return "a planted fault is armed";
    return NULL;
}

void kern_cuda_graph_free(kern_cuda_ctx *c, kern_cuda_graph *g)
{
    if (!g)
        return;
    if (c && c->d) {
        if (g->exec)
            c->d->cuGraphExecDestroy(g->exec);
        if (g->graph)
            c->d->cuGraphDestroy(g->graph);
    }
    free(g->rec);
    free(g);
}

adg_error *kern_cuda_graph_begin(kern_cuda_ctx *c)
{
    const char *why = kern_cuda_graph_unavailable(c);
    if (why)
        return adg_error_new(ADG_E_UNSUPPORTED, "CUDA graphs are off: %s", why);
    if (c->capturing)
        return adg_error_new(ADG_E_USAGE, "a CUDA graph capture is already under way");
    adg_error *e = kern_cuda_make_current(c);
    if (e)
        return e;
    kern_cuda_graph *g = calloc(1, sizeof *g);
    if (!g)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    kern_cu_result r = c->d->cuStreamBeginCapture(c->stream, KERN_CU_STREAM_CAPTURE_MODE_RELAXED);
    if (r != KERN_CU_SUCCESS) {
        free(g);
        return kern_cuda_errf(r, "starting a CUDA graph capture on %s", c->info.name);
    }
    c->capturing = g;
    return NULL;
}

adg_error *kern_cuda_graph_record(kern_cuda_graph *g, const kern_cuda_launch *l)
{
    if (!adg_grow(&g->rec, &g->cap_rec, g->n_rec, sizeof *g->rec, 256))
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    g->rec[g->n_rec++] = *l;
    return NULL;
}

adg_error *kern_cuda_graph_end(kern_cuda_ctx *c, bool keep, kern_cuda_graph **out)
{
    *out = NULL;
    kern_cuda_graph *g = c->capturing;
    if (!g)
        return adg_error_new(ADG_E_USAGE, "no CUDA graph capture is under way");
    c->capturing = NULL;
    adg_error *e = kern_cuda_make_current(c);
    kern_cu_result r = c->d->cuStreamEndCapture(c->stream, &g->graph);
    if (!e && r != KERN_CU_SUCCESS)
        e = kern_cuda_errf(r, "ending the CUDA graph capture on %s", c->info.name);
    if (!e && keep && g->n_rec == 0)
        e = adg_error_new(ADG_E_USAGE, "the CUDA graph capture recorded no launch");
    if (!e && keep && (r = c->d->cuGraphInstantiate(&g->exec, g->graph, 0)) != KERN_CU_SUCCESS)
        e = kern_cuda_errf(r, "instantiating a CUDA graph of %zu launches", g->n_rec);
    if (e || !keep) {
        kern_cuda_graph_free(c, g);
        return e;
    }
    *out = g;
    return NULL;
}

adg_error *kern_cuda_graph_launch(kern_cuda_ctx *c, kern_cuda_graph *g)
{
    if (!g || !g->exec)
        return adg_error_new(ADG_E_USAGE, "no CUDA graph to launch");
    if (c->capturing)
        return adg_error_new(ADG_E_USAGE, "a CUDA graph cannot be launched while another is being captured");
    adg_error *e = kern_cuda_make_current(c);
    if (e)
        return e;
    kern_cu_result r = c->d->cuGraphLaunch(g->exec, c->stream);
    if (r != KERN_CU_SUCCESS)
        return kern_cuda_errf(r, "launching a CUDA graph of %zu kernels on %s", g->n_rec, c->info.name);
    size_t first = g->n_rec > KERN_CUDA_LAUNCH_RING ? g->n_rec - KERN_CUDA_LAUNCH_RING : 0;
    c->seq += first; /* the earlier launches ran too: keep the sequence numbers counting them */
    for (size_t i = first; i < g->n_rec; i++) {
        kern_cuda_launch *l = &c->ring[c->seq % KERN_CUDA_LAUNCH_RING];
        *l = g->rec[i];
        l->seq = ++c->seq;
    }
    return NULL;
}

size_t kern_cuda_graph_nodes(const kern_cuda_graph *g)
{
    return g ? g->n_rec : 0;
}
