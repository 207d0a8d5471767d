/* `probe --binary PATH`: the CUDA code in a file, and for each present GPU and each
 * --cc, whether it runs natively, via the PTX JIT, or fails (209 / arch-specific / 222);
 * then its x86-64 AMX code (probe/binary_amx.c). */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "probe/binary_amx.h"
#include "probe/gpu_checks.h"
#include "probe/probe.h"

typedef struct target {
    int cc;
    int ordinal;          /* -1 for a --cc target */
    char label[160];      /* "GPU 0 (NVIDIA H100, CC 9.0)" / "CC 12.0 (--cc)" */
} target;

static void listing_one(const fatbin_entry *e, size_t count, uint64_t stored, uint64_t size, bool first, adg_strbuf *sb)
{
    char nm[32], a[32], b[32];
    adg_sb_printf(sb, "%s%s %s", first ? "" : "; ", fatbin_entry_name(e, nm, sizeof nm),
                  e->kind == FATBIN_KIND_PTX ? "PTX" : e->kind == FATBIN_KIND_ELF ? "SASS" : "?");
    if (count > 1)
        adg_sb_printf(sb, " x%zu", count);
    if (e->kind == FATBIN_KIND_PTX && e->ptx_isa)
        adg_sb_printf(sb, " ISA %u.%u", e->ptx_isa / 10, e->ptx_isa % 10);
    if (e->compression != FATBIN_COMP_NONE)
        adg_sb_printf(sb, " %s %s->%s", fatbin_compression_name(e->compression),
                      adg_fmt_bytes((double)stored, a, sizeof a), adg_fmt_bytes((double)size, b, sizeof b));
    else
        adg_sb_printf(sb, " %s", adg_fmt_bytes((double)size, a, sizeof a));
    if (e->flags & FATBIN_FLAG_DEBUG)
        adg_sb_puts(sb, " debug");
    if (e->kind == FATBIN_KIND_ELF && e->ptxas_arch[0] && strcmp(e->ptxas_arch, nm) != 0)
        adg_sb_printf(sb, " (built by ptxas -arch %s; the ELF header says %s)", e->ptxas_arch, nm);
    if (!e->decoded)
        adg_sb_puts(sb, " (contents not decoded)");
}

/* One item per entry for small files; for libraries with hundreds of entries, one item
 * per code name with its count and total size (the JSON keeps every entry). */
static void listing(const fatbin_list *l, adg_strbuf *sb)
{
    if (l->n <= 16) {
        for (size_t i = 0; i < l->n; i++)
            listing_one(&l->v[i], 1, l->v[i].stored_size, l->v[i].size, i == 0, sb);
        return;
    }
    bool *done = calloc(l->n, sizeof *done);
    if (!done)
        return;
    bool first = true;
    for (size_t i = 0; i < l->n; i++) {
        if (done[i])
            continue;
        const fatbin_entry *e = &l->v[i];
        size_t count = 0;
        uint64_t stored = 0, size = 0;
        for (size_t j = i; j < l->n; j++) {
            const fatbin_entry *o = &l->v[j];
            if (done[j] || o->kind != e->kind || o->arch != e->arch || o->variant != e->variant)
                continue;
            done[j] = true;
            count++;
            stored += o->stored_size;
            size += o->size;
        }
        listing_one(e, count, stored, size, first, sb);
        first = false;
    }
    free(done);
}

static void remedy_for(probe_check *c, const cc_verdict *v, int cc)
{
    if (!c)
        return;
    switch (v->outcome) {
    case CC_JIT:
        probe_check_set_remedy(c, "to skip the JIT, add SASS for it: nvcc -gencode arch=compute_%d,code=sm_%d "
                                  "(CMake: CMAKE_CUDA_ARCHITECTURES=%d)", cc, cc, cc);
        break;
    case CC_ARCH_SPECIFIC:
        probe_check_set_remedy(c, "rebuild with a target that is not arch-specific: -gencode arch=compute_%d,code=sm_%d, "
                                  "or the family target sm_%df (runs on every CC %d.x from %d.0), or add PTX "
                                  "(code=compute_%d) so the driver can JIT it",
                               cc, cc, (cc / 10) * 10, cc / 10, cc / 10, (cc / 10) * 10);
        break;
    case CC_PTX_TOO_NEW:
        probe_check_set_remedy(c, "upgrade the NVIDIA driver to one for the toolkit that built the PTX, or add SASS "
                                  "for this GPU (-gencode arch=compute_%d,code=sm_%d)", cc, cc);
        break;
    case CC_NO_IMAGE:
        probe_check_set_remedy(c, "rebuild with SASS for this GPU: nvcc -gencode arch=compute_%d,code=sm_%d (CMake: "
                                  "CMAKE_CUDA_ARCHITECTURES=%d; llama.cpp: -DCMAKE_CUDA_ARCHITECTURES=%d), or add PTX "
                                  "for an older arch (code=compute_XY) that the driver can JIT", cc, cc, cc, cc);
        break;
    default:
        break;
    }
}

/* The runtime loads each container (one per compiled file) as its own module, so each
 * must have code for the GPU: the verdict is the worst container's. */
typedef struct container_verdict {
    cc_verdict worst;
    size_t worst_container;
    size_t counts[5];      /* per cc_outcome */
    char chosen[32];       /* code the worst container would load, "" none */
    int chosen_isa;
} container_verdict;

static int severity(cc_outcome o)
{
    switch (o) {
    case CC_NATIVE: return 0;
    case CC_JIT: return 1;
    case CC_PTX_TOO_NEW: return 2;
    case CC_ARCH_SPECIFIC: return 3;
    default: return 4;
    }
}

static void evaluate_containers(const fatbin_list *l, cc_code *scratch, int cc, int driver_cuda, container_verdict *cv)
{
    memset(cv, 0, sizeof *cv);
    bool have = false;
    size_t i = 0;
    while (i < l->n) {
        size_t ct = l->v[i].container, j = i;
        while (j < l->n && l->v[j].container == ct)
            j++;
        fatbin_list part = {.v = l->v + i, .n = j - i};
        size_t nc = gpu_codes_from_fatbin(&part, scratch, j - i);
        cc_verdict v;
        cc_evaluate(scratch, nc, cc, driver_cuda, &v);
        cv->counts[v.outcome]++;
        if (!have || severity(v.outcome) > severity(cv->worst.outcome)) {
            have = true;
            cv->worst = v;
            cv->worst_container = ct;
            cv->chosen[0] = '\0';
            cv->chosen_isa = 0;
            if (v.chosen >= 0) {
                cc_code_name(&scratch[v.chosen], cv->chosen, sizeof cv->chosen);
                cv->chosen_isa = scratch[v.chosen].ptx_isa;
            }
        }
        i = j;
    }
}

static adg_error *one_binary(probe_report *rep, size_t k, const char *path, const target *t, size_t nt,
                             int driver_cuda)
{
    fatbin_list l;
    adg_error *e = fatbin_read_file(path, &l);
    if (e)
        return e;
    char *dup = strdup(path);
    const char *base = dup ? basename(dup) : path;
    char id[64], title[300];
    adg_strbuf sb;
    adg_sb_init(&sb);
    listing(&l, &sb);
    snprintf(id, sizeof id, "binary.%zu.entries", k);
    snprintf(title, sizeof title, "CUDA code in %s", base);
    json_t *data = json_object();
    json_object_set_new(data, "path", json_string(path));
    json_object_set_new(data, "source", json_string(l.source));
    json_object_set_new(data, "containers", json_integer((json_int_t)l.ncontainers));
    json_object_set_new(data, "entries", fatbin_list_json(&l));
    probe_check *c;
    if (l.n == 0) {
        c = probe_add(rep, "binary", id, PROBE_WARN, title,
                      "no CUDA device code: if this program's kernels live in a shared library (libggml-cuda.so, "
                      "...), probe that library",
                      "%s: %s", path, l.source);
    } else {
        c = probe_add(rep, "binary", id, PROBE_INFO, title, "the device code the driver can choose from",
                      "%zu entr%s (%s): %s", l.n, l.n == 1 ? "y" : "ies", l.source, sb.buf ? sb.buf : "");
    }
    probe_check_set_data(c, data);
    adg_sb_free(&sb);

    size_t undecoded = 0;
    for (size_t i = 0; i < l.n; i++)
        undecoded += !l.v[i].decoded;
    if (undecoded) {
        adg_sb_init(&sb);
        char nm[32];
        for (size_t i = 0; i < l.n; i++)
            if (!l.v[i].decoded)
                adg_sb_printf(&sb, "%s%s: %s", sb.len ? "; " : "", fatbin_entry_name(&l.v[i], nm, sizeof nm),
                              l.v[i].decode_error);
        snprintf(id, sizeof id, "binary.%zu.decode", k);
        probe_add(rep, "binary", id, PROBE_WARN, "every entry could be decoded",
                  "the listing of these entries comes from their headers only (no PTX version / cubin header)", "%s",
                  sb.buf ? sb.buf : "");
        adg_sb_free(&sb);
    }

    cc_code *codes = calloc(l.n ? l.n : 1, sizeof *codes);
    if (!codes) {
        free(dup);
        fatbin_list_free(&l);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    if (nt == 0 && l.n) {
        snprintf(id, sizeof id, "binary.%zu.verdict", k);
        probe_add(rep, "binary", id, PROBE_SKIP, "verdict per GPU",
                  "no GPU is visible here and no --cc was given", "add --cc X.Y (e.g. --cc 12.0) for a verdict");
    }
    for (size_t i = 0; i < nt && l.n; i++) {
        container_verdict cv;
        evaluate_containers(&l, codes, t[i].cc, driver_cuda, &cv);
        const cc_verdict *v = &cv.worst;
        if (t[i].ordinal >= 0)
            snprintf(id, sizeof id, "binary.%zu.gpu%d", k, t[i].ordinal);
        else
            snprintf(id, sizeof id, "binary.%zu.cc%d", k, t[i].cc);
        snprintf(title, sizeof title, "%s runs on %s", base, t[i].label);
        probe_status st = v->outcome == CC_NATIVE ? PROBE_PASS : v->outcome == CC_JIT ? PROBE_WARN : PROBE_FAIL;
        const char *what = v->outcome == CC_NATIVE     ? "runs natively"
                           : v->outcome == CC_JIT       ? "runs via PTX JIT: the first run pays the JIT-compile cost"
                           : v->outcome == CC_ARCH_SPECIFIC ? "will fail: arch-specific code for another CC (error 209)"
                           : v->outcome == CC_PTX_TOO_NEW   ? "will fail: PTX newer than the driver (error 222)"
                                                            : "will fail: no kernel image for this GPU (error 209)";
        char extra[160] = "";
        if (v->outcome == CC_JIT && !driver_cuda && cv.chosen_isa) {
            char need[16];
            int cuda = cc_cuda_for_ptx_isa(cv.chosen_isa);
            if (cuda)
                snprintf(extra, sizeof extra, "; PTX ISA %d.%d needs a driver for CUDA >= %s", cv.chosen_isa / 10,
                         cv.chosen_isa % 10, cc_fmt_cuda(cuda, need, sizeof need));
        }
        size_t failing = l.ncontainers > 1 ? l.ncontainers - cv.counts[CC_NATIVE] - cv.counts[CC_JIT] : 0;
        bool partial = failing && failing < l.ncontainers;
        if (partial) {
            /* Kernels of the other files run; a library that dispatches by architecture
             * (cuBLAS keeps sm_75-only files for Turing) never launches the failing ones. */
            st = PROBE_WARN;
            what = "partly: kernels from the files without code for this GPU fail with error 209 when launched "
                   "(harmless if the program never launches them, as libraries that dispatch by architecture do)";
        }
        if (l.ncontainers > 1 && cv.counts[v->outcome] != l.ncontainers) {
            c = probe_add(rep, "binary", id, st, title, what,
                          "%zu containers (one per compiled file, each loaded on its own): %zu native, %zu via PTX JIT, "
                          "%zu failing; container %zu: %s%s",
                          l.ncontainers, cv.counts[CC_NATIVE], cv.counts[CC_JIT],
                          l.ncontainers - cv.counts[CC_NATIVE] - cv.counts[CC_JIT], cv.worst_container, v->reason, extra);
        } else if (l.ncontainers > 1) {
            c = probe_add(rep, "binary", id, st, title, what, "all %zu containers: %s%s", l.ncontainers, v->reason, extra);
        } else {
            c = probe_add(rep, "binary", id, st, title, what, "%s%s", v->reason, extra);
        }
        remedy_for(c, v, t[i].cc);
        if (c) {
            json_t *d = json_object();
            char ccs[16];
            json_object_set_new(d, "cc", json_string(cc_fmt(t[i].cc, ccs, sizeof ccs)));
            static const char *names[] = {"native", "ptx_jit", "no_binary_for_gpu", "arch_specific_mismatch",
                                          "ptx_too_new"};
            json_object_set_new(d, "outcome", json_string(names[v->outcome]));
            json_object_set_new(d, "cuda_error", v->cuda_error ? json_integer(v->cuda_error) : json_null());
            if (cv.chosen[0])
                json_object_set_new(d, "chosen", json_string(cv.chosen));
            json_t *per = json_object();
            for (int o = 0; o < 5; o++)
                json_object_set_new(per, names[o], json_integer((json_int_t)cv.counts[o]));
            json_object_set_new(d, "containers", per);
            json_object_set_new(d, "partial", json_boolean(partial));
            if (t[i].ordinal >= 0)
                json_object_set_new(d, "gpu", json_integer(t[i].ordinal));
            probe_check_set_data(c, d);
        }
    }
    free(codes);
    fatbin_list_free(&l);
    e = binary_amx_checks(rep, k, path, base);
    free(dup);
    return e;
}

adg_error *probe_binary_section(const probe_opts *opts, probe_report *rep)
{
    if (opts->nbinaries == 0) {
        if (opts->nccs)
            return adg_error_hint(adg_error_new(ADG_E_USAGE, "--cc gives verdicts for --binary files, and none was given"),
                                  "add --binary PATH (an executable, shared library, .fatbin or .cubin)");
        return NULL;
    }
    target t[PROBE_MAX_LIST + GPU_MAX_DEVS];
    size_t nt = 0;
    int ccs[PROBE_MAX_LIST];
    for (size_t i = 0; i < opts->nccs; i++) {
        adg_error *e = cc_parse(opts->ccs[i], &ccs[i]);
        if (e)
            return adg_error_prefix(e, "--cc");
    }
    const gpu_facts *f = gpu_facts_get();
    int driver_cuda = f->init_called && f->init_rc == 0 ? f->driver_cuda : 0;
    char cc[16];
    for (int i = 0; i < f->ndevs; i++) {
        t[nt].cc = f->devs[i].cc;
        t[nt].ordinal = f->devs[i].ordinal;
        snprintf(t[nt].label, sizeof t[nt].label, "GPU %d (%s, CC %s)", f->devs[i].ordinal, f->devs[i].name,
                 cc_fmt(f->devs[i].cc, cc, sizeof cc));
        nt++;
    }
    for (size_t i = 0; i < opts->nccs; i++) {
        bool dup = false;
        for (size_t j = 0; j < nt; j++)
            dup |= t[j].ordinal < 0 && t[j].cc == ccs[i];
        if (dup)
            continue;
        t[nt].cc = ccs[i];
        t[nt].ordinal = -1;
        const cc_row *r = cc_lookup(ccs[i]);
        snprintf(t[nt].label, sizeof t[nt].label, "CC %s%s%s%s", cc_fmt(ccs[i], cc, sizeof cc), r ? " (" : "",
                 r ? r->examples : "", r ? ")" : "");
        nt++;
    }
    for (size_t k = 0; k < opts->nbinaries; k++) {
        adg_error *e = one_binary(rep, k, opts->binaries[k], t, nt, driver_cuda);
        if (e)
            return adg_error_prefix(e, "--binary");
    }
    return NULL;
}
