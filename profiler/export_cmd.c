/* amxdiag export: options → HTTP endpoint → prof_session_run on a bus it serves. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "adg_version.h"
#include "common/adg_cmd.h"
#include "common/adg_exit.h"
#include "common/adg_json.h"
#include "common/adg_log.h"
#include "common/adg_prom.h"
#include "common/adg_util.h"
#include "profiler/export.h"
#include "profiler/crash_confirm.h"
#include "profiler/http_server.h"
#include "profiler/prof_options.h"
#include "profiler/profiler.h"
#include "reports/prom_bus.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amxdiag export [--listen ADDR:PORT] [options] [-- COMMAND ARGS...]\n"
            "       amxdiag export [--listen ADDR:PORT] [options] --pid PID [--duration SEC]\n"
            "       amxdiag export [--listen ADDR:PORT] [options] [built-in path options]\n"
            "\n"
            "Profiles like 'amxdiag profile' (the same collectors and run record) and serves the live\n"
            "metrics to Prometheus: GET /metrics (text exposition format 0.0.4: units in the names,\n"
            "labels cpu, node, socket, gpu, kernel from each metric's scope) and GET /healthz\n"
            "(200 while the session runs, 503 after). Exits when the session ends (after --linger).\n"
            "\n"
            "server options:\n"
            "  -l, --listen ADDR:PORT  where to serve (default 127.0.0.1:%d); a port alone means\n"
            "                          loopback, [::1]:PORT for IPv6, port 0 picks a free port\n"
            "      --listen-any        allow a non-loopback address (0.0.0.0:PORT, :PORT, a NIC's address):\n"
            "                          without it amxdiag refuses to open the metrics to the network\n"
            "      --port-file FILE    write the bound ADDR:PORT to FILE once serving (for port 0)\n"
            "      --linger SEC        keep serving the final values SEC seconds after the session ends\n"
            "                          (default 0; give at least 2 scrape intervals to keep the last one)\n"
            "      --http-threads N    serving threads (default 2, 1..16)\n"
            "      --max-connections N open connections at once (default 64); more wait in the backlog\n"
            "      --max-per-ip N      open connections per client address (default 0: no limit)\n"
            "      --http-timeout SEC  close a connection idle this long (default 10, 1..3600)\n"
            "      --http-nice N       niceness of the serving threads (default 10, 0..19): scrapes yield\n"
            "                          the CPU to the workload\n"
            "\n"
            "profile options (as 'amxdiag profile'; --sanitize is refused here, see below):\n",
            PROF_HTTP_DEFAULT_PORT);
    prof_options_usage(f);
    fprintf(f,
            "\n"
            "other options:\n"
            "      --json            print a JSON summary (schema %s) on stdout at the end;\n"
            "                        COMMAND's stdout then goes to stderr\n"
            "  -v, --verbose         say which collectors cannot run, and libmicrohttpd's messages\n"
            "  -h, --help            this help\n"
            "\n"
            "built-in path (no COMMAND, no --pid; as 'amxdiag run', profiled in process):\n",
            PROF_EXPORT_SCHEMA);
    prof_options_usage_builtin(f);
    fputs("\n"
          "--sanitize is not accepted: export serves one live session, and a second, much slower\n"
          "run under compute-sanitizer would leave the endpoint serving stale values; use\n"
          "'amxdiag profile --sanitize -- COMMAND' for that.\n"
          "\n"
          "exit status: as 'amxdiag profile' (COMMAND's own status, 128+N for a signal); 2 on a usage\n"
          "error, when the address cannot be served (in use, not loopback without --listen-any), or\n"
          "when the record cannot be written.\n"
          "See docs/export.md (metrics, labels, limits) and docs/fleet.md (Prometheus, Grafana).\n",
          f);
}

typedef struct exporter {
    adg_bus *bus;
    prof_http *http;
    volatile int running;          /* read on the serving threads */
    int exit_code;
    uint64_t cache_ns;             /* re-render the bus at most this often */
    pthread_mutex_t lock;
    char *cache;
    size_t cache_len;
    uint64_t cache_t;
    double render_s;
} exporter;

static int serve_metrics(void *ctx, adg_strbuf *body, const char **type)
{
    exporter *x = ctx;
    *type = ADG_PROM_CONTENT_TYPE;
    pthread_mutex_lock(&x->lock);
    uint64_t now = adg_now_ns();
    /* The bus changes once per sampling interval: concurrent scrapes share one rendering,
     * so a burst of them costs the workload one rendering per interval, not one each. */
    if (!x->cache || now - x->cache_t >= x->cache_ns) {
        adg_strbuf sb;
        adg_sb_init(&sb);
        rep_prom_bus(x->bus, &sb);
        if (!sb.failed) {
            free(x->cache);
            x->cache_len = sb.len;
            x->cache = adg_sb_take(&sb);
            x->cache_t = now;
            x->render_s = (double)(adg_now_ns() - now) * 1e-9;
        }
        adg_sb_free(&sb);
    }
    if (x->cache)
        adg_sb_append(body, x->cache, x->cache_len);
    double render_s = x->render_s;
    pthread_mutex_unlock(&x->lock);

    prof_http_stats st;
    prof_http_get_stats(x->http, &st);
    adg_prom_family(body, "amxdiag_build_info", "gauge", "amxdiag's version; always 1");
    adg_prom_sample(body, "amxdiag_build_info", (adg_prom_label[]){{"version", AMXDIAG_VERSION}}, 1, 1);
    adg_prom_family(body, "amxdiag_export_session_running", "gauge",
                    "1 while the profiling session runs, 0 once it has ended (--linger)");
    adg_prom_sample(body, "amxdiag_export_session_running", NULL, 0, x->running ? 1 : 0);
    adg_prom_family(body, "amxdiag_export_elapsed_seconds", "gauge", "Time since the session started");
    adg_prom_sample(body, "amxdiag_export_elapsed_seconds", NULL, 0, (double)adg_bus_elapsed_ns(x->bus) * 1e-9);
    adg_prom_family(body, "amxdiag_export_scrapes_total", "counter", "Successful GET /metrics requests");
    adg_prom_sample(body, "amxdiag_export_scrapes_total", NULL, 0, (double)st.scrapes + 1);
    adg_prom_family(body, "amxdiag_export_http_requests_total", "counter",
                    "HTTP requests by result (ok, not_found, method_not_allowed, error)");
    uint64_t bad = st.not_found + st.not_allowed + st.errors;
    adg_prom_sample(body, "amxdiag_export_http_requests_total", (adg_prom_label[]){{"result", "ok"}}, 1,
                    (double)(st.requests > bad ? st.requests - bad : 0));
    adg_prom_sample(body, "amxdiag_export_http_requests_total", (adg_prom_label[]){{"result", "not_found"}}, 1,
                    (double)st.not_found);
    adg_prom_sample(body, "amxdiag_export_http_requests_total", (adg_prom_label[]){{"result", "method_not_allowed"}},
                    1, (double)st.not_allowed);
    adg_prom_sample(body, "amxdiag_export_http_requests_total", (adg_prom_label[]){{"result", "error"}}, 1,
                    (double)st.errors);
    adg_prom_family(body, "amxdiag_export_render_seconds", "gauge",
                    "Time the last rendering of the bus took (shared by the scrapes of one interval)");
    adg_prom_sample(body, "amxdiag_export_render_seconds", NULL, 0, render_s);
    return 200;
}

static int serve_health(void *ctx, adg_strbuf *body, const char **type)
{
    exporter *x = ctx;
    *type = "text/plain; charset=utf-8";
    if (x->running) {
        adg_sb_printf(body, "ok: session running, %zu metrics registered\n", adg_bus_metric_count(x->bus));
        return 200;
    }
    adg_sb_printf(body, "session ended (exit status %d)\n", x->exit_code);
    return 503;
}

static volatile sig_atomic_t linger_stop;
static void on_linger_signal(int sig)
{
    linger_stop = sig;
}

static void linger(double seconds)
{
    struct sigaction sa, oi, ot;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_linger_signal;
    sigemptyset(&sa.sa_mask);
    linger_stop = 0;
    sigaction(SIGINT, &sa, &oi);
    sigaction(SIGTERM, &sa, &ot);
    uint64_t end = adg_now_ns() + (uint64_t)(seconds * 1e9);
    while (!linger_stop && adg_now_ns() < end) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    sigaction(SIGINT, &oi, NULL);
    sigaction(SIGTERM, &ot, NULL);
}

static json_t *summary_json(const exporter *x, const char *address, const char *record, int exit_code)
{
    prof_http_stats st;
    prof_http_get_stats(x->http, &st);
    /* amxdiag's own CPU time (collectors, serving threads; not a command's): what
     * profiling and serving cost the machine. */
    struct rusage ru;
    double cpu = -1;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
              ru.ru_stime.tv_usec * 1e-6;
    return json_pack("{s:s,s:{s:s,s:s},s:s,s:s?,s:i,s:f,s:{s:I,s:I,s:I,s:I,s:I}}", "schema", PROF_EXPORT_SCHEMA,
                     "tool", "name", "amxdiag", "version", AMXDIAG_VERSION, "listen", address, "record", record,
                     "exit_code", exit_code, "cpu_seconds", cpu, "http", "requests", (json_int_t)st.requests, "scrapes",
                     (json_int_t)st.scrapes, "not_found", (json_int_t)st.not_found, "method_not_allowed",
                     (json_int_t)st.not_allowed, "errors", (json_int_t)st.errors);
}

/* export's own options: the server's and the summary's (the session's are
 * prof_options_parse's). */
enum { OPT_JSON = 256, OPT_ANY, OPT_PORTFILE, OPT_LINGER, OPT_THREADS, OPT_MAXCONN, OPT_PERIP, OPT_TIMEOUT,
       OPT_NICE };

typedef struct export_flags {
    prof_http_opts h;
    const char *port_file;
    double linger_s;
    unsigned nice;      /* --http-nice, into h.nice */
    bool json;
} export_flags;

static int export_option(void *ctx, int c, const char *arg)
{
    export_flags *f = ctx;
    const struct {
        int opt;
        const char *name;
        uint64_t lo, hi;
        unsigned *dst;
    } limits[] = {
        {OPT_THREADS, "--http-threads", 1, 16, &f->h.threads},
        {OPT_MAXCONN, "--max-connections", 1, 10000, &f->h.max_connections},
        {OPT_PERIP, "--max-per-ip", 0, 10000, &f->h.max_per_ip},
        {OPT_TIMEOUT, "--http-timeout", 1, 3600, &f->h.timeout_s},
        {OPT_NICE, "--http-nice", 0, 19, &f->nice},
    };
    uint64_t v;
    double d;
    for (size_t i = 0; i < ADG_ARRAY_LEN(limits); i++)
        if (c == limits[i].opt) {
            if (!adg_cmd_parse_uint(limits[i].name, arg, limits[i].lo, limits[i].hi, &v))
                return adg_cmd_usage_error("export");
            *limits[i].dst = (unsigned)v;
            return PROF_CLI_CONTINUE;
        }
    switch (c) {
    case 'l': f->h.listen = arg; break;
    case OPT_ANY: f->h.listen_any = true; break;
    case OPT_PORTFILE: f->port_file = arg; break;
    case OPT_LINGER:
        if (!adg_parse_double(arg, &d) || !(d >= 0) || d > 86400) {
            fprintf(stderr, "amxdiag export: error: --linger takes seconds from 0 to 86400, not '%s'\n", arg);
            return adg_cmd_usage_error("export");
        }
        f->linger_s = d;
        break;
    case OPT_JSON: f->json = true; break;
    case 'v': adg_log_set_level(ADG_LOG_DEBUG); break;
    case 'h': usage(stdout); return ADG_EXIT_OK;
    default: return adg_cmd_usage_error("export");
    }
    return PROF_CLI_CONTINUE;
}

int prof_export_cmd_main(int argc, char **argv)
{
    static const struct option own[] = {
        {"listen", required_argument, NULL, 'l'},     {"listen-any", no_argument, NULL, OPT_ANY},
        {"port-file", required_argument, NULL, OPT_PORTFILE}, {"linger", required_argument, NULL, OPT_LINGER},
        {"http-threads", required_argument, NULL, OPT_THREADS},
        {"max-connections", required_argument, NULL, OPT_MAXCONN},
        {"max-per-ip", required_argument, NULL, OPT_PERIP}, {"http-timeout", required_argument, NULL, OPT_TIMEOUT},
        {"http-nice", required_argument, NULL, OPT_NICE},
        {"json", no_argument, NULL, OPT_JSON},        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0},
    };
    export_flags fl = {.h = {.threads = 2, .max_connections = 64, .timeout_s = 10}, .nice = 10};
    prof_cli cli;
    prof_cli_init(&cli);
    prof_cli_extra xo = {.shortopts = "l:vh", .longopts = own, .handle = export_option, .ctx = &fl};
    int rc = prof_options_parse(argc, argv, "export", &xo, &cli);
    if (rc != PROF_CLI_CONTINUE)
        return rc;
    if (cli.sanitize) {
        /* The endpoint serves one live session: a second run under compute-sanitizer (10-100x
         * slower, not on the bus) would keep it serving stale values for as long. */
        fprintf(stderr, "amxdiag export: error: --sanitize is not available in export: it serves one live "
                        "session\n"
                        "  hint: run 'amxdiag profile --sanitize -- COMMAND ...' for a compute-sanitizer "
                        "memcheck run\n");
        return ADG_EXIT_USAGE;
    }
    prof_options o = cli.o;
    prof_http_opts h = fl.h;
    h.nice = (int)fl.nice;
    const char *port_file = fl.port_file;
    double linger_s = fl.linger_s;
    bool json = fl.json;
    if (json) {
        o.output_to_stderr = true;
        o.tee = true;
    }

    exporter x = {.running = 1, .cache_ns = (uint64_t)o.interval_ms * 1000000ull};
    pthread_mutex_init(&x.lock, NULL);
    x.bus = adg_bus_new();
    if (!x.bus) {
        fprintf(stderr, "amxdiag export: error: out of memory\n");
        return ADG_EXIT_USAGE;
    }
    o.bus = x.bus;
    /* Serve first: an address that cannot be served is an error before the workload runs. */
    prof_http_routes routes = {serve_metrics, serve_health, &x};
    adg_error *e = prof_http_start(&h, &routes, &x.http);
    if (!e && port_file) {
        char line[96];
        int n = snprintf(line, sizeof line, "%s\n", prof_http_address(x.http));
        if ((e = adg_write_file_atomic(port_file, line, (size_t)n)))
            adg_error_prefix(e, "--port-file");
    }
    if (e) {
        adg_error_print(e, stderr);
        int code = adg_exit_for_error(e);
        adg_error_free(e);
        prof_http_stop(x.http);
        adg_bus_free(x.bus);
        pthread_mutex_destroy(&x.lock);
        return code == ADG_EXIT_OK ? ADG_EXIT_USAGE : code;
    }
    char address[96];
    snprintf(address, sizeof address, "%s", prof_http_address(x.http));
    fprintf(stderr, "amxdiag export: serving http://%s/metrics\n", address);

    prof_outcome out;
    e = prof_session_run(&o, &out);
    int code = e ? (out.exit_code ? out.exit_code : adg_exit_for_error(e)) : out.exit_code;
    bool session_ok = !e;
    x.exit_code = code;
    __atomic_store_n(&x.running, 0, __ATOMIC_SEQ_CST);
    if (e) {
        adg_error_print(e, stderr);
        adg_error_free(e);
    }
    if (out.workload_error) {
        adg_error_print(out.workload_error, stderr);
        adg_error_free(out.workload_error);
    }
    if (session_ok && !cli.no_confirm && o.argv) {
        /* A CUDA fault whose kernel is not certain: one blocking re-run settles it, as in
         * amxdiag profile.  It is not on the bus: /healthz already says the session ended. */
        bool ran;
        int crc;
        adg_error *ce = prof_confirm_run_msg(&o, false, &ran, &crc);
        if (ce) {
            adg_error_print(ce, stderr);
            adg_error_free(ce);
        }
    }
    if (linger_s > 0)
        linger(linger_s);
    prof_http_stats st;
    prof_http_get_stats(x.http, &st);
    if (json) {
        json_t *sum = summary_json(&x, address, out.record ? o.out : NULL, code);
        adg_error_free(adg_json_print(stdout, sum));
        json_decref(sum);
    } else {
        fprintf(stderr, "amxdiag export: %llu scrapes, %llu requests; run record %s\n",
                (unsigned long long)st.scrapes, (unsigned long long)st.requests, out.record ? o.out : "not written");
    }
    prof_http_stop(x.http);
    json_decref(out.record);
    /* An interrupted built-in path leaves its engine thread on the bus (the session
     * abandons it): the bus then lives until the process exits. */
    if (!(o.builtin && code >= 128))
        adg_bus_free(x.bus);
    free(x.cache);
    pthread_mutex_destroy(&x.lock);
    fflush(stdout);
    return code;
}
