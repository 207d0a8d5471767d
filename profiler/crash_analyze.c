/* Crash section: which launch faulted, the evidence, and a conclusion a user can act on. */
#include "profiler/crash_analyze.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "kernels/cuda/cuda_driver.h"
#include "profiler/cupti_proto.h"

bool crash_error_is_fatal(int code)
{
    return cupti_error_is_fatal(code);
}

/* Errors a launch call returns for itself (bad image, bad configuration), as opposed to
 * the sticky errors of an earlier kernel that any later call reports. */
static bool error_is_synchronous(int code)
{
    return code == 200 || code == 209 || code == 218 || code == 222 || code == 701 || code == 720;
}

static bool api_is_launch(const char *api)
{
    return api && strstr(api, "Launch") != NULL && strstr(api, "HostFunc") == NULL;
}

static const crash_launch *find_seq(const crash_input *in, uint64_t seq)
{
    for (size_t i = 0; i < in->n_launches; i++)
        if (in->launches[i].seq == seq)
            return &in->launches[i];
    return NULL;
}

/* An 8-byte argument that looks like a device pointer but lies outside every known
 * allocation (within 1 TiB of one, so not a plain number): *dist gets the distance to the
 * nearest, *base its start. */
static bool ptr_outside(const crash_input *in, uint64_t p, int64_t *dist, uint64_t *base)
{
    if (!in->n_allocs || p < (1ull << 32))
        return false;
    int64_t best = INT64_MAX;
    *base = 0;
    for (size_t i = 0; i < in->n_allocs; i++) {
        const crash_alloc *a = &in->allocs[i];
        if (p >= a->ptr && p < a->ptr + a->bytes)
            return false;
        int64_t d = p >= a->ptr + a->bytes ? (int64_t)(p - (a->ptr + a->bytes)) : -(int64_t)(a->ptr - p);
        if (llabs(d) < llabs(best)) {
            best = d;
            *base = a->ptr;
        }
    }
    *dist = best;
    return llabs(best) <= (1ll << 40);
}

long crash_find_faulting(const crash_input *in, const char **confidence, char *evidence, size_t evidence_len)
{
    *confidence = "unknown";
    snprintf(evidence, evidence_len, "no CUDA error was seen");
    if (!in->error)
        return -1;
    const crash_error *e = in->error;
    if (in->blocking) {
        /* Every launch returned only after its kernel finished: the last launch made
         * before the error is the one. */
        long last = -1;
        for (size_t i = 0; i < in->n_launches; i++)
            if (in->launches[i].seq <= e->launch_seq && (last < 0 || in->launches[i].seq > in->launches[last].seq))
                last = (long)i;
        if (last >= 0) {
            *confidence = "certain";
            snprintf(evidence, evidence_len,
                     "launches were synchronous (CUDA_LAUNCH_BLOCKING=1): launch #%" PRIu64 " is the last one before "
                     "the error, every earlier one had finished",
                     in->launches[last].seq);
            return last;
        }
    }
    if (error_is_synchronous(e->code) && api_is_launch(e->api)) {
        for (size_t i = 0; i < in->n_launches; i++)
            if (in->launches[i].seq == e->launch_seq) {
                *confidence = "certain";
                snprintf(evidence, evidence_len, "the launch call itself (%s) returned error %d", e->api, e->code);
                return (long)i;
            }
    }
    long oldest = -1;
    size_t n_cand = 0;
    uint64_t first_stream = 0;
    bool many_streams = false;
    for (size_t i = 0; i < in->n_launches; i++) {
        const crash_launch *l = &in->launches[i];
        if (l->seq > e->launch_seq || l->completed)
            continue;
        if (n_cand == 0)
            first_stream = l->stream;
        else if (l->stream != first_stream)
            many_streams = true;
        n_cand++;
        if (oldest < 0 || l->seq < in->launches[oldest].seq)
            oldest = (long)i;
    }
    if (oldest < 0) {
        snprintf(evidence, evidence_len,
                 in->n_launches ? "every launch before the error has a completion record, so the faulting work "
                                  "was not a traced kernel launch (a graph, a memcpy, or a kernel older than the "
                                  "launch ring)"
                                : "no kernel launch was traced before the error");
        return -1;
    }
    /* A never-completed launch whose pointer argument lies outside every allocation is
     * the better suspect than the oldest one. */
    long suspect = -1;
    size_t n_suspects = 0;
    int s_arg = -1;
    int64_t s_dist = 0;
    uint64_t s_base = 0;
    for (size_t i = 0; i < in->n_launches; i++) {
        const crash_launch *l = &in->launches[i];
        if (l->seq > e->launch_seq || l->completed)
            continue;
        for (uint32_t j = 0; j < l->n_ptr && j < CRASH_MAX_PTRS; j++) {
            int64_t d = 0;
            uint64_t b = 0;
            if (ptr_outside(in, l->ptr[j], &d, &b)) {
                if (suspect < 0 || l->seq < in->launches[suspect].seq) {
                    suspect = (long)i;
                    s_arg = (int)j;
                    s_dist = d;
                    s_base = b;
                }
                n_suspects++;
                break;
            }
        }
    }
    if (suspect >= 0 && n_cand > 1) {
        const crash_launch *l = &in->launches[suspect];
        *confidence = "likely";
        snprintf(evidence, evidence_len,
                 "launch #%" PRIu64 " never completed and its argument %d (0x%" PRIx64 ") points outside every known "
                 "allocation, %lld bytes %s the one at 0x%" PRIx64 "%s",
                 l->seq, s_arg, l->ptr[s_arg], (long long)llabs(s_dist), s_dist >= 0 ? "after" : "before", s_base,
                 n_suspects > 1 ? " (other unfinished launches do too)" : "");
        return suspect;
    }
    const crash_launch *f = &in->launches[oldest];
    bool ring_edge = in->total_launches > in->n_launches && oldest == 0;
    if (ring_edge) {
        *confidence = "likely";
        snprintf(evidence, evidence_len,
                 "launch #%" PRIu64 " is the oldest launch without a completion record, but the ring keeps only "
                 "the last %zu of %" PRIu64 " launches: an older one may have faulted",
                 f->seq, in->n_launches, in->total_launches);
    } else if (n_cand == 1) {
        *confidence = "certain";
        snprintf(evidence, evidence_len,
                 "launch #%" PRIu64 " is the only launch before the error without a completion record; every "
                 "other traced launch completed",
                 f->seq);
    } else if (!many_streams) {
        /* Stream order makes the oldest the first that did not finish, if completion
         * evidence were complete; after a fault CUPTI loses the timestamps of kernels that
         * had finished since its last flush, so an earlier one may be counted unfinished. */
        *confidence = "likely";
        snprintf(evidence, evidence_len,
                 "launch #%" PRIu64 " is the oldest of %zu launches on its stream without completion evidence; "
                 "kernels that finished just before the fault can lack it too, so a later one of them may be the "
                 "culprit: CUDA_LAUNCH_BLOCKING=1 or --sanitize makes this certain",
                 f->seq, n_cand);
    } else {
        *confidence = "likely";
        snprintf(evidence, evidence_len,
                 "launch #%" PRIu64 " is the oldest of %zu launches without a completion record, on more than "
                 "one stream: a kernel on another stream may have faulted instead",
                 f->seq, n_cand);
    }
    return oldest;
}

static json_t *dim3(const uint32_t d[3])
{
    return json_pack("[i,i,i]", (json_int_t)d[0], (json_int_t)d[1], (json_int_t)d[2]);
}

static json_t *hex(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "0x%" PRIx64, v);
    return json_string(buf);
}

static json_t *launch_json(const crash_launch *l)
{
    json_t *ptrs = json_array();
    for (uint32_t i = 0; i < l->n_ptr && i < CRASH_MAX_PTRS; i++)
        json_array_append_new(ptrs, hex(l->ptr[i]));
    json_t *o = json_pack("{s:I,s:s,s:s,s:o,s:o,s:I,s:o,s:o,s:I,s:b}", "seq", (json_int_t)l->seq, "kernel",
                          l->kernel ? l->kernel : "?", "api", l->api ? l->api : "?", "grid", dim3(l->grid), "block",
                          dim3(l->block), "shared_bytes", (json_int_t)l->smem, "stream", hex(l->stream), "args",
                          ptrs, "t_ns", (json_int_t)l->t_ns, "completed", l->completed);
    if (l->completed && l->completed_by)
        json_object_set_new(o, "completed_by", json_string(l->completed_by));
    if (l->completed && l->end_ns > l->start_ns)
        json_object_set_new(o, "duration_ns", json_integer((json_int_t)(l->end_ns - l->start_ns)));
    return o;
}

/* Where an argument value points: inside an allocation, or next to one. */
static json_t *locate_ptr(const crash_input *in, uint64_t p, int index, uint64_t seq)
{
    const crash_alloc *best = NULL;
    int64_t best_dist = INT64_MAX;
    for (size_t i = 0; i < in->n_allocs; i++) {
        const crash_alloc *a = &in->allocs[i];
        if (p >= a->ptr && p < a->ptr + a->bytes) {
            return json_pack("{s:I,s:i,s:o,s:s,s:o,s:I,s:I,s:b}", "launch", (json_int_t)seq, "arg", index, "value",
                             hex(p), "where", "inside", "allocation", hex(a->ptr), "allocation_bytes",
                             (json_int_t)a->bytes, "offset", (json_int_t)(p - a->ptr), "freed", a->freed);
        }
        int64_t d = p >= a->ptr + a->bytes ? (int64_t)(p - (a->ptr + a->bytes)) : -(int64_t)(a->ptr - p);
        if (llabs(d) < llabs(best_dist)) {
            best_dist = d;
            best = a;
        }
    }
    /* An 8-byte argument far from every allocation (or small) is a number, not a pointer. */
    if (!best || llabs(best_dist) > (1ll << 40) || p < (1ull << 32))
        return NULL;
    return json_pack("{s:I,s:i,s:o,s:s,s:o,s:I,s:I,s:b}", "launch", (json_int_t)seq, "arg", index, "value", hex(p),
                     "where", best_dist > 0 ? "after" : "before", "allocation", hex(best->ptr), "allocation_bytes",
                     (json_int_t)best->bytes, "distance", (json_int_t)best_dist, "freed", best->freed);
}

static void add_ptr_facts(const crash_input *in, const crash_launch *l, json_t *arr)
{
    if (!l)
        return;
    for (uint32_t i = 0; i < l->n_ptr && i < CRASH_MAX_PTRS; i++) {
        json_t *j = locate_ptr(in, l->ptr[i], (int)i, l->seq);
        if (j)
            json_array_append_new(arr, j);
    }
}

static char *conclusion_text(const json_t *error, const char *fault_kernel, json_int_t fault_seq,
                             const char *source, const char *reporter_kernel, json_int_t reporter_seq,
                             const char *why_unknown)
{
    adg_strbuf sb;
    adg_sb_init(&sb);
    int code = (int)json_integer_value(json_object_get(error, "code"));
    const char *name = json_string_value(json_object_get(error, "name"));
    const char *api = json_string_value(json_object_get(error, "api"));
    adg_sb_printf(&sb, "CUDA error %d (%s) was returned by %s", code, name ? name : "?", api ? api : "a CUDA call");
    if (reporter_kernel)
        adg_sb_printf(&sb, " after launch #%lld '%s'", (long long)reporter_seq, reporter_kernel);
    adg_sb_puts(&sb, ". ");
    if (!fault_kernel) {
        adg_sb_printf(&sb, "amxdiag could not tell which kernel faulted: %s. Rerun with `amxdiag profile --sanitize` "
                           "or with CUDA_LAUNCH_BLOCKING=1.",
                      why_unknown ? why_unknown : "no evidence");
        return adg_sb_take(&sb);
    }
    bool same = reporter_kernel && (fault_seq ? fault_seq == reporter_seq : !strcmp(fault_kernel, reporter_kernel));
    if (same) {
        adg_sb_printf(&sb, "The faulting kernel is '%s'", fault_kernel);
        if (fault_seq)
            adg_sb_printf(&sb, " (launch #%lld)", (long long)fault_seq);
        adg_sb_printf(&sb, ", the op the error was reported for (%s).", source);
    } else {
        adg_sb_printf(&sb, "The faulting kernel is '%s'", fault_kernel);
        if (fault_seq)
            adg_sb_printf(&sb, " (launch #%lld)", (long long)fault_seq);
        adg_sb_printf(&sb, " (%s)", source);
        if (reporter_kernel)
            adg_sb_printf(&sb, ", not '%s': the reporting op was not the faulting one. The error is sticky and "
                               "asynchronous, so the first check after the fault (here %s after '%s') reports it.",
                          reporter_kernel, api ? api : "the call", reporter_kernel);
        else
            adg_sb_puts(&sb, ".");
    }
    return adg_sb_take(&sb);
}

json_t *crash_build(const crash_input *in)
{
    json_t *c = json_object();
    if (!in->error) {
        json_object_set_new(c, "error", json_null());
        json_object_set_new(c, "conclusion", json_string("no CUDA error was seen"));
        return c;
    }
    const crash_error *e = in->error;
    json_t *err = json_pack("{s:i,s:s,s:s,s:s,s:s,s:I,s:I}", "code", e->code, "name", kern_cuda_result_name(e->code),
                            "description", kern_cuda_result_string(e->code), "api", e->api ? e->api : "?", "domain",
                            e->domain ? e->domain : "?", "t_ns", (json_int_t)e->t_ns, "after_launch",
                            (json_int_t)e->launch_seq);
    json_object_set_new(c, "error", err);

    const crash_launch *reporter = find_seq(in, e->launch_seq);
    json_object_set_new(c, "reporting_op",
                        reporter ? json_pack("{s:I,s:s}", "seq", (json_int_t)reporter->seq, "kernel",
                                             reporter->kernel ? reporter->kernel : "?")
                                 : json_null());

    const char *conf;
    char evidence[512];
    long fi = crash_find_faulting(in, &conf, evidence, sizeof evidence);
    const crash_launch *fault = fi >= 0 ? &in->launches[fi] : NULL;
    if (fault) {
        json_t *fk = launch_json(fault);
        json_object_set_new(fk, "confidence", json_string(conf));
        json_object_set_new(fk, "evidence", json_string(evidence));
        json_object_set_new(fk, "source", json_string("launch ring"));
        json_object_set_new(c, "faulting_kernel", fk);
    } else
        json_object_set_new(c, "faulting_kernel", json_null());
    json_object_set_new(c, "reporting_op_faulted",
                        fault && reporter ? json_boolean(fault->seq == reporter->seq) : json_null());

    json_t *inflight = json_array(), *ring = json_array();
    for (size_t i = 0; i < in->n_launches; i++) {
        const crash_launch *l = &in->launches[i];
        json_array_append_new(ring, launch_json(l));
        if (l->seq <= e->launch_seq && !l->completed)
            json_array_append_new(inflight, launch_json(l));
    }
    json_object_set_new(c, "in_flight", inflight);
    json_object_set_new(c, "launch_ring", ring);
    json_object_set_new(c, "launches_total", json_integer((json_int_t)in->total_launches));

    json_t *ptrs = json_array();
    add_ptr_facts(in, fault, ptrs);
    if (reporter && reporter != fault)
        add_ptr_facts(in, reporter, ptrs);
    json_object_set_new(c, "pointer_args", ptrs);
    json_object_set_new(c, "allocations_known", json_integer((json_int_t)in->n_allocs));

    char *text = conclusion_text(err, fault ? fault->kernel : NULL, fault ? (json_int_t)fault->seq : 0,
                                 fault ? (strcmp(conf, "certain") ? "likely, from the launch ring"
                                                                  : "from the launch ring: it never completed")
                                       : NULL,
                                 reporter ? reporter->kernel : NULL, reporter ? (json_int_t)reporter->seq : 0,
                                 evidence);
    if (fault && strcmp(conf, "certain")) {
        /* Not certain: say which launches are in question and how to settle it. */
        adg_strbuf sb;
        adg_sb_init(&sb);
        adg_sb_puts(&sb, text ? text : "");
        adg_sb_puts(&sb, " Not certain: launches before the error without completion evidence:");
        int listed = 0;
        for (size_t i = 0; i < in->n_launches && listed < 8; i++) {
            const crash_launch *l = &in->launches[i];
            if (l->seq <= e->launch_seq && !l->completed) {
                adg_sb_printf(&sb, "%s #%" PRIu64 " '%s'", listed ? "," : "", l->seq, l->kernel ? l->kernel : "?");
                listed++;
            }
        }
        adg_sb_puts(&sb, ". Rerun with CUDA_LAUNCH_BLOCKING=1 in the environment (launches become synchronous and "
                         "the faulting one reports its own error) or with --sanitize to be certain.");
        free(text);
        text = adg_sb_take(&sb);
    }
    json_object_set_new(c, "conclusion", json_string(text ? text : ""));
    free(text);
    json_object_set_new(c, "next_steps",
                        json_pack("[s,s]", "amxdiag profile --sanitize -- COMMAND: compute-sanitizer memcheck names "
                                           "the kernel, thread and address",
                                  "CUDA_LAUNCH_BLOCKING=1 COMMAND: the faulting op then reports its own error"));
    if (in->n_san) {
        json_t *merged = crash_merge_sanitizer(c, in->san, in->n_san, NULL, NULL);
        (void)merged;
    }
    return c;
}

static json_t *san_json(const crash_san *s)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:o,s:i,s:[i,i,i],s:[i,i,i]}", "kernel", s->kernel ? s->kernel : "?",
                          "what", s->what ? s->what : "", "kind", s->kind ? s->kind : "", "address", hex(s->address),
                          "size", (int)s->size, "thread", s->thread[0], s->thread[1], s->thread[2], "block",
                          s->block[0], s->block[1], s->block[2]);
    if (s->has_nearest) {
        json_object_set_new(o, "nearest_allocation", hex(s->nearest_base));
        json_object_set_new(o, "nearest_allocation_bytes", json_integer((json_int_t)s->nearest_size));
        json_object_set_new(o, "distance", json_integer((json_int_t)s->distance));
    }
    if (s->location)
        json_object_set_new(o, "location", json_string(s->location));
    return o;
}

/* The launch of the ring (JSON) that best matches a kernel name: the oldest one that
 * never completed, else the last one. */
static json_t *ring_match(json_t *crash, const char *kernel)
{
    json_t *ring = json_object_get(crash, "launch_ring");
    json_t *best = NULL, *last = NULL;
    size_t i;
    json_t *l;
    json_array_foreach(ring, i, l) {
        const char *k = json_string_value(json_object_get(l, "kernel"));
        if (!k || !kernel)
            continue;
        /* The sanitizer prints the demangled name with parameter types; the ring may hold
         * a bare symbol: a prefix match on the name up to '(' is enough. */
        size_t n = strcspn(kernel, "(<");
        size_t m = strcspn(k, "(<");
        if (n != m || strncmp(kernel, k, n))
            continue;
        last = l;
        if (!best && !json_is_true(json_object_get(l, "completed")))
            best = l;
    }
    return best ? best : last;
}

json_t *crash_merge_sanitizer(json_t *crash, const crash_san *san, size_t n_san, const char *tool_version,
                              const char *source_file)
{
    bool fresh = !json_is_object(crash);
    json_t *c = fresh ? json_object() : crash;
    json_t *arr = json_array();
    for (size_t i = 0; i < n_san; i++)
        json_array_append_new(arr, san_json(&san[i]));
    json_t *s = json_pack("{s:o,s:i}", "records", arr, "count", (int)n_san);
    if (tool_version)
        json_object_set_new(s, "tool_version", json_string(tool_version));
    if (source_file)
        json_object_set_new(s, "file", json_string(source_file));
    json_object_set_new(c, "sanitizer", s);
    if (!n_san)
        return c;

    const crash_san *first = &san[0];
    json_t *match = ring_match(c, first->kernel);
    json_t *fk = json_pack("{s:s,s:s,s:s,s:s}", "kernel", first->kernel ? first->kernel : "?", "confidence",
                           "certain", "source", "compute-sanitizer", "evidence",
                           first->what ? first->what : "memcheck report");
    if (match) {
        json_object_set(fk, "seq", json_object_get(match, "seq"));
        json_object_set(fk, "grid", json_object_get(match, "grid"));
        json_object_set(fk, "block", json_object_get(match, "block"));
    }
    json_object_set_new(fk, "address", hex(first->address));
    json_object_set_new(fk, "thread", json_pack("[i,i,i]", first->thread[0], first->thread[1], first->thread[2]));
    json_object_set_new(fk, "block_idx", json_pack("[i,i,i]", first->block[0], first->block[1], first->block[2]));
    json_t *old = json_object_get(c, "faulting_kernel");
    if (json_is_object(old)) {
        const char *ok = json_string_value(json_object_get(old, "kernel"));
        json_object_set_new(fk, "launch_ring_agrees", json_boolean(ok && first->kernel && ring_match(c, ok) == match &&
                                                                   match != NULL));
    }
    json_object_set_new(c, "faulting_kernel", fk);

    json_t *err = json_object_get(c, "error");
    json_t *rep = json_object_get(c, "reporting_op");
    const char *rk = json_string_value(json_object_get(rep, "kernel"));
    json_int_t rs = json_integer_value(json_object_get(rep, "seq"));
    json_int_t fs = match ? json_integer_value(json_object_get(match, "seq")) : 0;
    if (json_is_object(rep) && match)
        json_object_set_new(c, "reporting_op_faulted", json_boolean(fs == rs));
    char *text;
    if (json_is_object(err)) {
        text = conclusion_text(err, first->kernel, fs, "compute-sanitizer memcheck saw its bad access", rk, rs, NULL);
    } else {
        adg_strbuf sb;
        adg_sb_init(&sb);
        adg_sb_printf(&sb, "compute-sanitizer memcheck found %zu error%s; the first: %s in kernel '%s'", n_san,
                      n_san == 1 ? "" : "s", first->what ? first->what : "bad access",
                      first->kernel ? first->kernel : "?");
        text = adg_sb_take(&sb);
    }
    adg_strbuf sb;
    adg_sb_init(&sb);
    adg_sb_puts(&sb, text ? text : "");
    adg_sb_printf(&sb, " compute-sanitizer: %s at address 0x%" PRIx64 " by thread (%d,%d,%d) of block (%d,%d,%d)",
                  first->what ? first->what : "bad access", first->address, first->thread[0], first->thread[1],
                  first->thread[2], first->block[0], first->block[1], first->block[2]);
    if (first->has_nearest) {
        char b[32];
        adg_sb_printf(&sb, ", %lld bytes %s the nearest allocation (0x%" PRIx64 ", %s)",
                      (long long)llabs(first->distance), first->distance >= 0 ? "after" : "before",
                      first->nearest_base, adg_fmt_bytes((double)first->nearest_size, b, sizeof b));
    }
    adg_sb_puts(&sb, ".");
    free(text);
    char *t2 = adg_sb_take(&sb);
    json_object_set_new(c, "conclusion", json_string(t2 ? t2 : ""));
    free(t2);
    return c;
}

bool crash_needs_confirmation(const json_t *crash)
{
    if (!json_is_object(crash) || !json_is_object(json_object_get(crash, "error")))
        return false;
    json_t *fk = json_object_get(crash, "faulting_kernel");
    const char *conf = json_string_value(json_object_get(fk, "confidence"));
    return !json_is_object(fk) || !conf || strcmp(conf, "certain") != 0;
}

static bool same_kernel(const char *a, const char *b)
{
    if (!a || !b)
        return false;
    size_t n = strcspn(a, "(<"), m = strcspn(b, "(<");
    return n == m && !strncmp(a, b, n);
}

void crash_merge_confirmation(json_t *crash, const json_t *confirm, int rc)
{
    if (!json_is_object(crash))
        return;
    /* Held: the first guess's strings are used after faulting_kernel is replaced. */
    json_t *old = json_incref(json_object_get(crash, "faulting_kernel"));
    const char *k1 = json_string_value(json_object_get(old, "kernel"));
    json_int_t s1 = json_integer_value(json_object_get(old, "seq"));
    const char *c1 = json_string_value(json_object_get(old, "confidence"));
    json_t *cerr = json_object_get(confirm, "error");
    json_t *fk2 = json_object_get(confirm, "faulting_kernel");
    const char *k2 = json_string_value(json_object_get(fk2, "kernel"));
    const char *c2 = json_string_value(json_object_get(fk2, "confidence"));
    bool reproduced = json_is_object(cerr);
    bool certain = reproduced && k2 && c2 && !strcmp(c2, "certain");

    json_t *conf = json_pack("{s:b,s:i,s:b}", "ran", 1, "rc", rc, "reproduced", reproduced);
    json_object_set_new(conf, "kernel", k2 && reproduced ? json_string(k2) : json_null());
    json_object_set_new(conf, "confidence", c2 && reproduced ? json_string(c2) : json_null());
    if (reproduced) {
        json_object_set(conf, "seq", json_object_get(fk2, "seq") ? json_object_get(fk2, "seq") : json_null());
        json_object_set_new(conf, "error",
                            json_pack("{s:O,s:O}", "code", json_object_get(cerr, "code"), "api",
                                      json_object_get(cerr, "api") ? json_object_get(cerr, "api") : json_null()));
    }
    json_object_set_new(conf, "agrees", certain && k1 ? json_boolean(same_kernel(k1, k2)) : json_null());
    json_object_set_new(conf, "first_guess",
                        k1 ? json_pack("{s:s,s:I,s:s}", "kernel", k1, "seq", s1, "confidence", c1 ? c1 : "?")
                           : json_null());
    json_object_set_new(crash, "confirmation", conf);

    json_t *err = json_object_get(crash, "error");
    json_t *rep = json_object_get(crash, "reporting_op");
    const char *rk = json_string_value(json_object_get(rep, "kernel"));
    json_int_t rs = json_integer_value(json_object_get(rep, "seq"));
    adg_strbuf sb;
    adg_sb_init(&sb);
    if (!certain) {
        /* Nothing certain came back: the first run's analysis stands, with what was tried. */
        const char *was = json_string_value(json_object_get(crash, "conclusion"));
        adg_sb_puts(&sb, was ? was : "");
        if (!reproduced)
            adg_sb_printf(&sb, " A confirmation re-run with CUDA_LAUNCH_BLOCKING=1 did not reproduce the error (exit "
                               "status %d): the attribution stays as above; --sanitize may still settle it.",
                          rc);
        else
            adg_sb_printf(&sb, " A confirmation re-run with CUDA_LAUNCH_BLOCKING=1 failed again (exit status %d) "
                               "but could not name the kernel for certain%s%s%s.",
                          rc, k2 ? " (it suggests '" : "", k2 ? k2 : "", k2 ? "')" : "");
        char *t = adg_sb_take(&sb);
        json_object_set_new(crash, "conclusion", json_string(t ? t : ""));
        free(t);
        json_decref(old);
        return;
    }

    json_t *match = ring_match(crash, k2);
    json_t *fk = match ? json_deep_copy(match) : json_pack("{s:s}", "kernel", k2);
    json_int_t fs = match ? json_integer_value(json_object_get(match, "seq")) : 0;
    char ev[512];
    snprintf(ev, sizeof ev,
             "re-run with CUDA_LAUNCH_BLOCKING=1 (every launch waits for its kernel): launch #%lld '%s' returned "
             "error %lld itself from %s",
             (long long)json_integer_value(json_object_get(fk2, "seq")), k2,
             (long long)json_integer_value(json_object_get(cerr, "code")),
             json_string_value(json_object_get(cerr, "api")) ? json_string_value(json_object_get(cerr, "api"))
                                                             : "the launch");
    json_object_set_new(fk, "confidence", json_string("certain"));
    json_object_set_new(fk, "source", json_string("blocking re-run"));
    json_object_set_new(fk, "evidence", json_string(ev));
    if (k1)
        json_object_set_new(fk, "launch_ring_agrees", json_boolean(same_kernel(k1, k2)));
    json_object_set_new(crash, "faulting_kernel", fk);
    if (json_is_object(rep) && match)
        json_object_set_new(crash, "reporting_op_faulted", json_boolean(fs == rs));

    char *text = conclusion_text(err, k2, fs, "certain: confirmed by a blocking re-run", rk, rs, NULL);
    adg_sb_puts(&sb, text ? text : "");
    free(text);
    if (k1 && !same_kernel(k1, k2))
        adg_sb_printf(&sb, " The confirmation disagrees with the first guess from the launch ring, '%s' (launch "
                           "#%lld, %s): with CUDA_LAUNCH_BLOCKING=1 the faulting launch reported its own error, so "
                           "'%s' is the kernel to look at.",
                      k1, (long long)s1, c1 ? c1 : "likely", k2);
    else if (k1)
        adg_sb_printf(&sb, " A blocking re-run (CUDA_LAUNCH_BLOCKING=1) confirmed the launch ring's first guess.");
    else
        adg_sb_puts(&sb, " The launch ring alone could not tell; a blocking re-run (CUDA_LAUNCH_BLOCKING=1) did.");
    char *t = adg_sb_take(&sb);
    json_object_set_new(crash, "conclusion", json_string(t ? t : ""));
    free(t);
    json_decref(old);
}
