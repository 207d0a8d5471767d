#include "probe/probe_source.h"

#include <cpuid.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "adg_version.h"
#include "common/adg_json.h"
#include "common/adg_util.h"

#define ARCH_GET_XCOMP_SUPP 0x1021
#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#ifndef AT_MINSIGSTKSZ
#define AT_MINSIGSTKSZ 51
#endif

struct probe_src {
    bool replay;
    char *origin;
    json_t *doc; /* the snapshot document: recorded (live) or loaded (replay) */
};

static const char *prctl_keys[PROBE_PRCTL_N] = {
    "get_xcomp_supp", "get_xcomp_perm", "req_xcomp_perm_xtiledata", "req_xcomp_perm_small_sigaltstack",
};

static json_t *sub(json_t *doc, const char *key)
{
    json_t *o = json_object_get(doc, key);
    if (!o) {
        o = json_object();
        json_object_set_new(doc, key, o);
    }
    return o;
}

static json_t *hex_str(uint64_t v)
{
    char b[24];
    snprintf(b, sizeof b, "0x%llx", (unsigned long long)v);
    return json_string(b);
}

static bool parse_hex(const json_t *j, uint64_t *out)
{
    const char *s = json_string_value(j);
    if (!s || strncmp(s, "0x", 2) != 0 || !s[2])
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s + 2, &end, 16);
    if (*end || errno)
        return false;
    *out = v;
    return true;
}

adg_error *probe_src_live(probe_src **out)
{
    probe_src *s = calloc(1, sizeof *s);
    if (!s)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    char created[32];
    adg_utc_iso8601(created, sizeof created);
    s->origin = strdup("this machine");
    s->doc = json_pack("{s:s,s:{s:s,s:s},s:s}", "schema", PROBE_SNAPSHOT_FAMILY "/1", "tool", "name", "amxdiag",
                       "version", AMXDIAG_VERSION, "created", created);
    if (!s->origin || !s->doc) {
        probe_src_free(s);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    *out = s;
    return NULL;
}

void probe_src_free(probe_src *s)
{
    if (!s)
        return;
    json_decref(s->doc);
    free(s->origin);
    free(s);
}

bool probe_src_is_replay(const probe_src *s) { return s->replay; }
const char *probe_src_origin(const probe_src *s) { return s->origin; }
const json_t *probe_src_json(const probe_src *s) { return s->doc; }

/* ---- validation of a loaded snapshot: every field a check reads has the right shape,
 * so that the checks never meet a surprise and a bad file is rejected up front. */

static adg_error *bad(const char *what, const char *fmt, const char *key)
{
    return adg_error_hint(adg_error_new(ADG_E_FORMAT, "%s: %s%s%s", what, fmt, key ? " " : "", key ? key : ""),
                          "the snapshot is corrupt or was edited by hand; record it again with "
                          "'amxdiag probe --save-snapshot FILE'");
}

static adg_error *validate(json_t *root, const char *what)
{
    adg_error *e = adg_json_check_schema(root, PROBE_SNAPSHOT_FAMILY, PROBE_SNAPSHOT_MAJOR, what);
    if (e)
        return e;
    json_t *cpuid = json_object_get(root, "cpuid");
    if (!json_is_object(cpuid) || !json_object_get(cpuid, "0x0.0x0"))
        return bad(what, "has no \"cpuid\" object with leaf 0x0.0x0", NULL);
    const char *key;
    json_t *v;
    json_object_foreach(cpuid, key, v) {
        unsigned leaf, subleaf;
        int n = 0;
        if (sscanf(key, "0x%x.0x%x%n", &leaf, &subleaf, &n) != 2 || key[n])
            return bad(what, "has a malformed CPUID key", key);
        uint64_t r;
        if (!json_is_array(v) || json_array_size(v) != 4)
            return bad(what, "needs four registers for CPUID leaf", key);
        for (size_t i = 0; i < 4; i++)
            if (!parse_hex(json_array_get(v, i), &r) || r > 0xffffffffu)
                return bad(what, "has a register that is not a 32-bit hex string in CPUID leaf", key);
    }
    json_t *x = json_object_get(root, "xcr0");
    uint64_t u;
    if (x && !json_is_null(x) && !parse_hex(x, &u))
        return bad(what, "\"xcr0\" is neither null nor a hex string", NULL);
    json_t *ap = json_object_get(root, "arch_prctl");
    if (ap) {
        if (!json_is_object(ap))
            return bad(what, "\"arch_prctl\" is not an object", NULL);
        json_object_foreach(ap, key, v) {
            if (!json_is_object(v) || !json_is_integer(json_object_get(v, "ret")) ||
                !json_is_integer(json_object_get(v, "errno")))
                return bad(what, "needs integer \"ret\" and \"errno\" in arch_prctl result", key);
            json_t *val = json_object_get(v, "value");
            if (val && !parse_hex(val, &u))
                return bad(what, "has a malformed \"value\" in arch_prctl result", key);
            val = json_object_get(v, "perm_after");
            if (val && !parse_hex(val, &u))
                return bad(what, "has a malformed \"perm_after\" in arch_prctl result", key);
        }
    }
    json_t *files = json_object_get(root, "files");
    if (files) {
        if (!json_is_object(files))
            return bad(what, "\"files\" is not an object", NULL);
        json_object_foreach(files, key, v) {
            if (!json_is_object(v) ||
                !(json_is_string(json_object_get(v, "text")) || json_is_integer(json_object_get(v, "errno"))))
                return bad(what, "needs \"text\" or \"errno\" for file", key);
        }
    }
    json_t *dirs = json_object_get(root, "dirs");
    if (dirs) {
        if (!json_is_object(dirs))
            return bad(what, "\"dirs\" is not an object", NULL);
        json_object_foreach(dirs, key, v) {
            json_t *ent = json_object_get(v, "entries");
            if (!json_is_object(v) || !(json_is_array(ent) || json_is_integer(json_object_get(v, "errno"))))
                return bad(what, "needs \"entries\" or \"errno\" for directory", key);
            size_t i;
            json_t *it;
            json_array_foreach(ent, i, it) if (!json_is_string(it)) return bad(what, "has a non-string entry in", key);
        }
    }
    json_t *g = json_object_get(root, "gathered");
    if (g && !json_is_object(g))
        return bad(what, "\"gathered\" is not an object", NULL);
    json_t *un = json_object_get(root, "uname");
    if (un && !json_is_object(un))
        return bad(what, "\"uname\" is not an object", NULL);
    return NULL;
}

adg_error *probe_src_from_json(json_t *root, const char *what, probe_src **out)
{
    *out = NULL;
    adg_error *e = validate(root, what);
    if (e)
        return e;
    probe_src *s = calloc(1, sizeof *s);
    if (!s || !(s->origin = strdup(what))) {
        free(s);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    s->replay = true;
    s->doc = json_incref(root);
    *out = s;
    return NULL;
}

adg_error *probe_src_load(const char *path, probe_src **out)
{
    *out = NULL;
    char what[512];
    snprintf(what, sizeof what, "snapshot %s", path);
    json_t *root;
    adg_error *e = adg_json_load_file(path, "snapshot", &root);
    if (e)
        return e;
    e = probe_src_from_json(root, what, out);
    json_decref(root);
    return e;
}

/* ---- CPUID and XCR0 */

static void cpuid_raw(uint32_t leaf, uint32_t subleaf, uint32_t r[4])
{
    __cpuid_count(leaf, subleaf, r[0], r[1], r[2], r[3]);
}

static bool cpuid_lookup(probe_src *s, uint32_t leaf, uint32_t subleaf, uint32_t r[4])
{
    char key[32];
    snprintf(key, sizeof key, "0x%x.0x%x", leaf, subleaf);
    json_t *cpuid = sub(s->doc, "cpuid");
    json_t *v = json_object_get(cpuid, key);
    if (v) {
        for (size_t i = 0; i < 4; i++) {
            uint64_t x = 0;
            parse_hex(json_array_get(v, i), &x);
            r[i] = (uint32_t)x;
        }
        return true;
    }
    if (s->replay)
        return false;
    cpuid_raw(leaf, subleaf, r);
    json_object_set_new(cpuid, key, json_pack("[o,o,o,o]", hex_str(r[0]), hex_str(r[1]), hex_str(r[2]), hex_str(r[3])));
    return true;
}

bool probe_src_cpuid(probe_src *s, uint32_t leaf, uint32_t subleaf, uint32_t r[4])
{
    memset(r, 0, 4 * sizeof r[0]);
    uint32_t base = leaf & 0xffff0000u, b[4];
    if (base == 0x40000000u) {
        /* Hypervisor leaves mean something only when CPUID.1:ECX[31] says a hypervisor is there. */
        if (!cpuid_lookup(s, 1, 0, b))
            return false;
        if (!(b[2] & (1u << 31)))
            return true;
    }
    if (leaf != base) {
        if (!cpuid_lookup(s, base, 0, b))
            return false;
        uint32_t max = b[0];
        if (base == 0x40000000u && max < 0x40000000u)
            max = 0x40000001u; /* KVM reports 0 in EAX on some hosts: two leaves are defined */
        if (leaf > max)
            return true;
    }
    return cpuid_lookup(s, leaf, subleaf, r);
}

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

bool probe_src_xcr0(probe_src *s, uint64_t *xcr0)
{
    json_t *v = json_object_get(s->doc, "xcr0");
    if (!v) {
        if (s->replay)
            return false;
        uint32_t r[4];
        probe_src_cpuid(s, 1, 0, r);
        v = (r[2] & (1u << 27)) ? hex_str(xgetbv0()) : json_null();
        json_object_set_new(s->doc, "xcr0", v);
    }
    return parse_hex(v, xcr0);
}

/* ---- arch_prctl */

/* Runs a permission request in a child so this process's own xstate permission stays
 * as it was (permission is per process and cannot be dropped once granted). */
static probe_prctl req_in_child(bool small_altstack)
{
    probe_prctl res = {.recorded = true, .ret = -1, .err = ECHILD};
    int fd[2];
    if (pipe(fd) != 0) {
        res.err = errno;
        return res;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        res.err = errno;
        close(fd[0]);
        close(fd[1]);
        return res;
    }
    if (pid == 0) {
        close(fd[0]);
        probe_prctl r = {.recorded = true};
        /* Above MINSIGSTKSZ and the AVX-512 frame, far below the ~11 KiB AMX frame. */
        static char small_stack[4096] __attribute__((aligned(64)));
        if (small_altstack) {
            stack_t ss = {.ss_sp = small_stack, .ss_size = sizeof small_stack};
            r.altstack_err = sigaltstack(&ss, NULL) ? errno : 0;
        }
        r.ret = (int)syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, (unsigned long)XFEATURE_XTILEDATA);
        r.err = r.ret ? errno : 0;
        uint64_t perm = 0;
        if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &perm) == 0)
            r.perm_after = perm;
        ssize_t w = write(fd[1], &r, sizeof r);
        _exit(w == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fd[1]);
    probe_prctl r;
    ssize_t n = read(fd[0], &r, sizeof r);
    close(fd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return n == (ssize_t)sizeof r ? r : res;
}

probe_prctl probe_src_prctl(probe_src *s, probe_prctl_op op)
{
    probe_prctl r = {0};
    json_t *ap = sub(s->doc, "arch_prctl");
    json_t *v = json_object_get(ap, prctl_keys[op]);
    if (!v) {
        if (s->replay)
            return r;
        switch (op) {
        case PROBE_PRCTL_GET_XCOMP_SUPP:
        case PROBE_PRCTL_GET_XCOMP_PERM: {
            uint64_t mask = 0;
            r.ret = (int)syscall(SYS_arch_prctl, op == PROBE_PRCTL_GET_XCOMP_SUPP ? ARCH_GET_XCOMP_SUPP
                                                                                   : ARCH_GET_XCOMP_PERM, &mask);
            r.err = r.ret ? errno : 0;
            r.value = mask;
            break;
        }
        case PROBE_PRCTL_REQ_XTILEDATA: r = req_in_child(false); break;
        case PROBE_PRCTL_REQ_SMALL_ALTSTACK: r = req_in_child(true); break;
        default: return r;
        }
        v = json_pack("{s:i,s:i}", "ret", r.ret, "errno", r.err);
        if (op == PROBE_PRCTL_GET_XCOMP_SUPP || op == PROBE_PRCTL_GET_XCOMP_PERM)
            json_object_set_new(v, "value", hex_str(r.value));
        else
            json_object_set_new(v, "perm_after", hex_str(r.perm_after));
        if (op == PROBE_PRCTL_REQ_SMALL_ALTSTACK)
            json_object_set_new(v, "sigaltstack_errno", json_integer(r.altstack_err));
        json_object_set_new(ap, prctl_keys[op], v);
    }
    r.recorded = true;
    r.ret = (int)json_integer_value(json_object_get(v, "ret"));
    r.err = (int)json_integer_value(json_object_get(v, "errno"));
    r.value = 0;
    r.perm_after = 0;
    parse_hex(json_object_get(v, "value"), &r.value);
    parse_hex(json_object_get(v, "perm_after"), &r.perm_after);
    r.altstack_err = (int)json_integer_value(json_object_get(v, "sigaltstack_errno"));
    return r;
}

bool probe_src_minsigstksz(probe_src *s, uint64_t *v)
{
    json_t *aux = sub(s->doc, "auxv");
    json_t *j = json_object_get(aux, "minsigstksz");
    if (!j) {
        if (s->replay)
            return false;
        j = json_integer((json_int_t)getauxval(AT_MINSIGSTKSZ));
        json_object_set_new(aux, "minsigstksz", j);
    }
    *v = (uint64_t)json_integer_value(j);
    return json_is_integer(j);
}

/* ---- uname, euid */

const char *probe_src_uname(probe_src *s, const char *field)
{
    json_t *u = json_object_get(s->doc, "uname");
    if (!u) {
        if (s->replay)
            return NULL;
        struct utsname un;
        if (uname(&un) != 0)
            return NULL;
        u = json_pack("{s:s,s:s,s:s,s:s}", "sysname", un.sysname, "release", un.release, "version", un.version,
                      "machine", un.machine);
        json_object_set_new(s->doc, "uname", u);
    }
    return json_string_value(json_object_get(u, field));
}

long probe_src_euid(probe_src *s)
{
    json_t *j = json_object_get(s->doc, "euid");
    if (!j) {
        if (s->replay)
            return -1;
        j = json_integer((json_int_t)geteuid());
        json_object_set_new(s->doc, "euid", j);
    }
    return json_is_integer(j) ? (long)json_integer_value(j) : -1;
}

/* ---- files and directories */

const char *probe_src_file(probe_src *s, const char *path, int *err)
{
    json_t *files = sub(s->doc, "files");
    json_t *v = json_object_get(files, path);
    if (!v) {
        if (s->replay) {
            *err = ENODATA;
            return NULL;
        }
        char *data = NULL;
        size_t len = 0;
        adg_error *e = adg_read_file(path, 1u << 20, &data, &len);
        if (e) {
            v = json_pack("{s:i}", "errno", adg_error_errnum(e) ? adg_error_errnum(e) : EIO);
            adg_error_free(e);
        } else {
            if (!strcmp(path, "/proc/cpuinfo")) {
                /* One processor's block says all a check needs; 128 of them would bloat snapshots. */
                char *blank = strstr(data, "\n\n");
                if (blank)
                    blank[1] = '\0';
            }
            v = json_pack("{s:s}", "text", data);
            if (!v) /* not UTF-8: keep the fact that it was unreadable as text */
                v = json_pack("{s:i}", "errno", EILSEQ);
            free(data);
        }
        json_object_set_new(files, path, v);
    }
    const char *text = json_string_value(json_object_get(v, "text"));
    if (!text)
        *err = (int)json_integer_value(json_object_get(v, "errno"));
    return text;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

const json_t *probe_src_dir(probe_src *s, const char *path, int *err)
{
    json_t *dirs = sub(s->doc, "dirs");
    json_t *v = json_object_get(dirs, path);
    if (!v) {
        if (s->replay) {
            *err = ENODATA;
            return NULL;
        }
        DIR *d = opendir(path);
        if (!d) {
            v = json_pack("{s:i}", "errno", errno);
        } else {
            char **names = NULL;
            size_t n = 0, cap = 0;
            struct dirent *de;
            while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                    continue;
                if (n == cap) {
                    cap = cap ? cap * 2 : 32;
                    char **nn = realloc(names, cap * sizeof *nn);
                    if (!nn)
                        break;
                    names = nn;
                }
                if ((names[n] = strdup(de->d_name)))
                    n++;
            }
            closedir(d);
            qsort(names, n, sizeof *names, cmp_str);
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++) {
                json_array_append_new(arr, json_string(names[i]));
                free(names[i]);
            }
            free(names);
            v = json_pack("{s:o}", "entries", arr);
        }
        json_object_set_new(dirs, path, v);
    }
    const json_t *ent = json_object_get(v, "entries");
    if (!ent)
        *err = (int)json_integer_value(json_object_get(v, "errno"));
    return ent;
}

const json_t *probe_src_gathered(probe_src *s, const char *key, probe_gather_fn gather, void *ctx)
{
    json_t *g = sub(s->doc, "gathered");
    json_t *v = json_object_get(g, key);
    if (!v && !s->replay && gather) {
        v = gather(s, ctx);
        if (v)
            json_object_set_new(g, key, v);
    }
    return v;
}

/* ---- saving */

adg_error *probe_src_save(probe_src *s, const char *path)
{
    if (s->replay)
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "--save-snapshot records this machine; it cannot be "
                                                         "combined with --snapshot"),
                              "copy the snapshot file instead");
    return adg_json_write_atomic(path, s->doc);
}
