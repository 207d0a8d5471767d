/* The illegal-access report: the crash section of a run record (profiler/crash_analyze.h
 * builds it) laid out for a bug report: the error and the call, the op that reported it vs
 * the kernel that faulted, the launch ring, what was in flight, allocations near the
 * pointers, compute-sanitizer records, and what to try. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/adg_util.h"
#include "reports/rep_internal.h"

static const char *s_(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static const char *i_(const json_t *o, const char *k, char *buf, size_t len)
{
    json_t *v = json_object_get(o, k);
    if (json_is_integer(v))
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
    else if (json_is_string(v))
        snprintf(buf, len, "%s", json_string_value(v));
    else
        snprintf(buf, len, "-");
    return buf;
}

static const char *dim3(const json_t *a, char *buf, size_t len)
{
    if (json_array_size(a) != 3) {
        snprintf(buf, len, "-");
        return buf;
    }
    snprintf(buf, len, "(%lld,%lld,%lld)", (long long)json_integer_value(json_array_get(a, 0)),
             (long long)json_integer_value(json_array_get(a, 1)), (long long)json_integer_value(json_array_get(a, 2)));
    return buf;
}

static void launch_table(json_t *sec, const char *caption, json_t *launches, json_int_t fault_seq, json_int_t rep_seq)
{
    static const char *const cols[] = {"launch", "kernel", "grid", "block", "stream", "completed", "time", "note"};
    json_t *t = rep_doc_table(sec, caption, cols, 8);
    size_t i;
    json_t *l;
    json_array_foreach(launches, i, l) {
        char seq[32], g[48], b[48], done[48], dur[32], note[64] = "";
        json_int_t s = json_integer_value(json_object_get(l, "seq"));
        snprintf(seq, sizeof seq, "#%lld", (long long)s);
        bool completed = json_is_true(json_object_get(l, "completed"));
        snprintf(done, sizeof done, "%s%s%s%s", completed ? "yes" : "no", completed && *s_(l, "completed_by") ? " (" : "",
                 completed ? s_(l, "completed_by") : "", completed && *s_(l, "completed_by") ? ")" : "");
        if (json_is_integer(json_object_get(l, "duration_ns")))
            snprintf(dur, sizeof dur, "%.1f us", (double)json_integer_value(json_object_get(l, "duration_ns")) / 1e3);
        else
            snprintf(dur, sizeof dur, "-");
        if (s && s == fault_seq && s == rep_seq)
            snprintf(note, sizeof note, "faulted, reported");
        else if (s && s == fault_seq)
            snprintf(note, sizeof note, "FAULTED");
        else if (s && s == rep_seq)
            snprintf(note, sizeof note, "reported the error");
        rep_table_row(t, 8, seq, s_(l, "kernel"), dim3(json_object_get(l, "grid"), g, sizeof g),
                      dim3(json_object_get(l, "block"), b, sizeof b), s_(l, "stream"), done, dur, note);
    }
}

adg_error *rep_build_crash(rep_run *r, json_t **out)
{
    *out = NULL;
    json_t *c = json_object_get(r->rec, "crash");
    if (!json_is_object(c) || (!json_is_object(json_object_get(c, "error")) && !json_object_get(c, "sanitizer"))) {
        const char *status = json_string_value(json_object_get(r->rec, "status"));
        return adg_error_hint(adg_error_new(ADG_E_FORMAT,
                                            "run record %s has no crash section with a CUDA error (status: %s): "
                                            "there is nothing for an illegal-access report",
                                            r->path, status ? status : "?"),
                              "`amxdiag report %s` gives the run report; a crash section is written by `amxdiag "
                              "profile -- COMMAND` when COMMAND hits a fatal CUDA error",
                              r->path);
    }
    json_t *err = json_object_get(c, "error");
    json_t *fk = json_object_get(c, "faulting_kernel");
    json_t *rep = json_object_get(c, "reporting_op");
    json_int_t fseq = json_integer_value(json_object_get(fk, "seq"));
    json_int_t rseq = json_integer_value(json_object_get(rep, "seq"));

    char title[512];
    if (json_is_object(err))
        snprintf(title, sizeof title, "amxdiag illegal-access report: CUDA error %lld (%s)",
                 (long long)json_integer_value(json_object_get(err, "code")), s_(err, "name"));
    else
        snprintf(title, sizeof title, "amxdiag illegal-access report: compute-sanitizer findings");
    json_t *doc = rep_doc_new("crash", title);
    rep_doc_input(doc, r, NULL);
    char b1[64], b2[64], b3[64];

    json_t *sec = rep_doc_section(doc, "error", "The error");
    static const char *const c2[] = {"what", "value"};
    json_t *t = rep_doc_table(sec, NULL, c2, 2);
    char cmd[1024];
    rep_command_line(r, cmd, sizeof cmd);
    rep_table_row(t, 2, "command", cmd[0] ? cmd : "(none recorded)");
    if (json_is_object(err)) {
        rep_table_row(t, 2, "error", i_(err, "code", b1, sizeof b1));
        rep_table_row(t, 2, "name", s_(err, "name"));
        rep_table_row(t, 2, "description", s_(err, "description"));
        rep_table_row(t, 2, "returned by", s_(err, "api"));
        rep_table_row(t, 2, "API", s_(err, "domain"));
        snprintf(b2, sizeof b2, "%.3f s", (double)json_integer_value(json_object_get(err, "t_ns")) * 1e-9);
        rep_table_row(t, 2, "time into the run", b2);
        snprintf(b3, sizeof b3, "#%s", i_(err, "after_launch", b1, sizeof b1));
        rep_table_row(t, 2, "after launch", b3);
    } else
        rep_table_row(t, 2, "error", "no CUDA error was returned to the program; compute-sanitizer reported bad accesses");
    rep_table_row(t, 2, "launches in the run", i_(c, "launches_total", b1, sizeof b1));

    sec = rep_doc_section(doc, "verdict", "Which kernel faulted");
    t = rep_doc_table(sec, NULL, c2, 2);
    char buf[600];
    if (json_is_object(rep))
        snprintf(buf, sizeof buf, "launch #%lld '%s'", (long long)rseq, s_(rep, "kernel"));
    else
        snprintf(buf, sizeof buf, "not measured: the error came after no traced launch");
    rep_table_row(t, 2, "op that reported the error", buf);
    if (json_is_object(fk)) {
        if (fseq)
            snprintf(buf, sizeof buf, "launch #%lld '%s'", (long long)fseq, s_(fk, "kernel"));
        else
            snprintf(buf, sizeof buf, "'%s'", s_(fk, "kernel"));
        rep_table_row(t, 2, "kernel that faulted", buf);
        rep_table_row(t, 2, "confidence", s_(fk, "confidence"));
        rep_table_row(t, 2, "from", s_(fk, "source"));
        rep_table_row(t, 2, "evidence", s_(fk, "evidence"));
        if (json_object_get(fk, "address"))
            rep_table_row(t, 2, "address", s_(fk, "address"));
        if (json_object_get(fk, "thread")) {
            char th[48], bl[48];
            snprintf(buf, sizeof buf, "thread %s of block %s", dim3(json_object_get(fk, "thread"), th, sizeof th),
                     dim3(json_object_get(fk, "block_idx"), bl, sizeof bl));
            rep_table_row(t, 2, "where", buf);
        }
        if (json_is_boolean(json_object_get(fk, "launch_ring_agrees")))
            rep_table_row(t, 2, "launch ring agrees", json_is_true(json_object_get(fk, "launch_ring_agrees")) ? "yes" : "no");
    } else
        rep_table_row(t, 2, "kernel that faulted", "unknown from this record (see the evidence in the conclusion)");
    json_t *rf = json_object_get(c, "reporting_op_faulted");
    rep_table_row(t, 2, "reporting op = faulting kernel",
                  json_is_true(rf) ? "yes" : json_is_false(rf) ? "NO: the error message names the wrong op" : "unknown");

    json_t *ring = json_object_get(c, "launch_ring");
    sec = rep_doc_section(doc, "ring", "Launch ring (oldest first)");
    if (json_array_size(ring))
        launch_table(sec, NULL, ring, fseq, rseq);
    else {
        const char *why = rep_unavailable_reason(r, (const char *const[]){"gpu.launch_ring", "gpu", NULL});
        rep_doc_text(sec, "Launch ring: not measured: %s", why ? why : "the crash section has no launches");
    }
    json_t *inflight = json_object_get(c, "in_flight");
    if (json_array_size(inflight)) {
        sec = rep_doc_section(doc, "in-flight", "In flight when the error was returned");
        launch_table(sec, "launched before the error, never completed", inflight, fseq, rseq);
    }

    sec = rep_doc_section(doc, "pointers", "Pointer arguments and allocations nearby");
    json_t *ptrs = json_object_get(c, "pointer_args");
    if (json_array_size(ptrs)) {
        static const char *const cp[] = {"launch", "arg", "value", "where", "allocation", "size", "offset / distance",
                                         "freed"};
        t = rep_doc_table(sec, NULL, cp, 8);
        size_t i;
        json_t *p;
        json_array_foreach(ptrs, i, p) {
            char l[32], a[16], sz[32], off[48];
            snprintf(l, sizeof l, "#%lld", (long long)json_integer_value(json_object_get(p, "launch")));
            snprintf(a, sizeof a, "%lld", (long long)json_integer_value(json_object_get(p, "arg")));
            adg_fmt_bytes((double)json_integer_value(json_object_get(p, "allocation_bytes")), sz, sizeof sz);
            if (json_object_get(p, "offset"))
                snprintf(off, sizeof off, "+%lld", (long long)json_integer_value(json_object_get(p, "offset")));
            else
                snprintf(off, sizeof off, "%lld bytes", (long long)json_integer_value(json_object_get(p, "distance")));
            rep_table_row(t, 8, l, a, s_(p, "value"), s_(p, "where"), s_(p, "allocation"), sz, off,
                          json_is_true(json_object_get(p, "freed")) ? "FREED" : "no");
        }
    } else
        rep_doc_text(sec, "No pointer argument of the faulting or reporting launch lies near a known allocation "
                          "(%s allocations were traced).",
                     i_(c, "allocations_known", b1, sizeof b1));

    sec = rep_doc_section(doc, "sanitizer", "compute-sanitizer");
    json_t *san = json_object_get(c, "sanitizer");
    json_t *recs = json_object_get(san, "records");
    if (json_array_size(recs)) {
        static const char *const cs[] = {"kernel", "access", "address", "thread", "block", "nearest allocation",
                                         "distance", "location"};
        t = rep_doc_table(sec, NULL, cs, 8);
        size_t i;
        json_t *x;
        json_array_foreach(recs, i, x) {
            char th[48], bl[48], na[64], d[48];
            snprintf(na, sizeof na, "%s%s%s", s_(x, "nearest_allocation"),
                     json_object_get(x, "nearest_allocation_bytes") ? " " : "",
                     json_object_get(x, "nearest_allocation_bytes")
                         ? adg_fmt_bytes((double)json_integer_value(json_object_get(x, "nearest_allocation_bytes")),
                                         b3, sizeof b3)
                         : "");
            if (json_object_get(x, "distance"))
                snprintf(d, sizeof d, "%lld bytes", (long long)json_integer_value(json_object_get(x, "distance")));
            else
                snprintf(d, sizeof d, "-");
            rep_table_row(t, 8, s_(x, "kernel"), s_(x, "what"), s_(x, "address"),
                          dim3(json_object_get(x, "thread"), th, sizeof th),
                          dim3(json_object_get(x, "block"), bl, sizeof bl), na, d, s_(x, "location"));
        }
    } else
        rep_doc_text(sec, "compute-sanitizer: not measured: the record has no sanitizer records (rerun with `amxdiag "
                          "profile --sanitize -- COMMAND` to add them).");

    json_t *findings = json_array();
    rep_ctx ctx = {.run = r};
    rep_rules_run(REP_MODE_CRASH, &ctx, findings);
    rep_findings_sort(findings);
    size_t i;
    json_t *x;
    json_array_foreach(findings, i, x) {
        if (!strcmp(s_(x, "id"), "cuda-error")) /* its remedy points at this very report */
            json_object_set_new(x, "recommendation",
                                json_string(json_object_get(c, "sanitizer")
                                                ? "fix the faulting kernel named above; CUDA_LAUNCH_BLOCKING=1 makes "
                                                  "it report its own error"
                                                : "rerun with `amxdiag profile --sanitize -- COMMAND` (compute-sanitizer "
                                                  "names kernel, thread and address) or CUDA_LAUNCH_BLOCKING=1"));
    }

    sec = rep_doc_section(doc, "try", "What to try");
    json_array_foreach(findings, i, x) rep_doc_text(sec, "%s", s_(x, "recommendation"));
    json_array_foreach(json_object_get(c, "next_steps"), i, x) {
        const char *t = json_string_value(x);
        if (t && !(json_array_size(recs) && strstr(t, "--sanitize"))) /* done already */
            rep_doc_text(sec, "%s", t);
    }

    rep_doc_not_measured(doc, r, NULL);
    const char *concl = json_string_value(json_object_get(c, "conclusion"));
    rep_doc_finish(doc, findings, concl && *concl ? concl : "The crash section gives no conclusion.");
    json_decref(findings);
    *out = doc;
    return NULL;
}
