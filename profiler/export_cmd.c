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
#include "kernels/kern_cpu.h"
#include "profiler/export.h"
#include "profiler/http_server.h"
#include "profiler/prof_collector.h"
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
            "profile options (as 'amxdiag profile'; see its --help):\n"
            "  -o, --out FILE          run record written when the session ends (default amxdiag-run.json)\n"
            "  -p, --pid PID           attach to a running process;  --duration SEC: stop after SEC\n"
            "  -i, --interval MS       sampling interval (default 100, 10..60000)\n"
            "  -F, --freq HZ           cpu-clock sampling frequency (default 999)\n"
            "  -e, --events SETS       amx, simd, core, mem, sampling, numa, gpu, pmu, all\n"
            "      --gpu-metrics       per-kernel GPU counters where permitted\n"
            "      --top N             hot functions kept in the record;  --no-tee: no tokens/s parsing\n"
            "  -m, --model FILE, --n-prompt N, -n/--n-gen N, -r/--repetitions N, -t/--threads N,\n"
            "  --cpu-kernels K, --numa POLICY, --pin, --seed S, --ngl N, --ctx N: the built-in path\n"
            "\n"
            "other options:\n"
            "      --json              print a JSON summary (schema %s) on stdout at the end;\n"
            "                          COMMAND's stdout then goes to stderr\n"
            "  -v, --verbose           say which collectors cannot run, and libmicrohttpd's messages\n"
            "  -h, --help              this help\n"
            "\n"
            "exit status: as 'amxdiag profile' (COMMAND's own status, 128+N for a signal); 2 on a usage\n"
            "error, when the address cannot be served (in use, not loopback without --listen-any), or\n"
            "when the record cannot be written.\n"
            "See docs/export.md (metrics, labels, limits) and docs/fleet.md (Prometheus, Grafana).\n",
            PROF_HTTP_DEFAULT_PORT, PROF_EXPORT_SCHEMA);
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

static bool parse_sets(const char *arg, unsigned *sets)
{
    static const struct {
        const char *name;
        unsigned bits;
    } names[] = {{"amx", PROF_SET_AMX},   {"simd", PROF_SET_SIMD},         {"core", PROF_SET_CORE},
                 {"mem", PROF_SET_MEM},   {"sampling", PROF_SET_SAMPLING}, {"numa", PROF_SET_NUMA},
                 {"all", PROF_SET_ALL},   {"pmu", PROF_SET_AMX | PROF_SET_SIMD | PROF_SET_CORE},
                 {"gpu", PROF_SET_GPU}};
    char buf[256];
    snprintf(buf, sizeof buf, "%s", arg);
    *sets = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        bool found = false;
        for (size_t i = 0; i < ADG_ARRAY_LEN(names); i++)
            if (!strcmp(tok, names[i].name)) {
                *sets |= names[i].bits;
                found = true;
            }
        if (!found) {
            fprintf(stderr, "amxdiag export: error: unknown event set '%s'\n"
                            "  hint: sets are amx, simd, core, mem, sampling, numa, gpu, pmu, all\n", tok);
            return false;
        }
    }
    return *sets != 0;
}

static bool parse_uint(const char *opt, const char *arg, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!adg_parse_u64(arg, out) || *out < lo || *out > hi) {
        fprintf(stderr, "amxdiag export: error: %s takes a whole number from %llu to %llu, not '%s'\n", opt,
                (unsigned long long)lo, (unsigned long long)hi, arg);
        return false;
    }
    return true;
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

int prof_export_cmd_main(int argc, char **argv)
{
    enum { OPT_TOP = 256, OPT_NOTEE, OPT_JSON, OPT_DURATION, OPT_GPU_METRICS, OPT_NPROMPT, OPT_IMPL, OPT_NUMA,
           OPT_PIN, OPT_SEED, OPT_NGL, OPT_CTX, OPT_ANY, OPT_PORTFILE, OPT_LINGER, OPT_THREADS, OPT_MAXCONN,
           OPT_PERIP, OPT_TIMEOUT, OPT_NICE };
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},     {"listen-any", no_argument, NULL, OPT_ANY},
        {"port-file", required_argument, NULL, OPT_PORTFILE}, {"linger", required_argument, NULL, OPT_LINGER},
        {"http-threads", required_argument, NULL, OPT_THREADS},
        {"max-connections", required_argument, NULL, OPT_MAXCONN},
        {"max-per-ip", required_argument, NULL, OPT_PERIP}, {"http-timeout", required_argument, NULL, OPT_TIMEOUT},
        {"http-nice", required_argument, NULL, OPT_NICE},
        {"out", required_argument, NULL, 'o'},        {"pid", required_argument, NULL, 'p'},
        {"interval", required_argument, NULL, 'i'},   {"freq", required_argument, NULL, 'F'},
        {"events", required_argument, NULL, 'e'},     {"top", required_argument, NULL, OPT_TOP},
        {"no-tee", no_argument, NULL, OPT_NOTEE},     {"json", no_argument, NULL, OPT_JSON},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"gpu-metrics", no_argument, NULL, OPT_GPU_METRICS},
        {"verbose", no_argument, NULL, 'v'},          {"help", no_argument, NULL, 'h'},
        {"model", required_argument, NULL, 'm'},      {"n-prompt", required_argument, NULL, OPT_NPROMPT},
        {"n-gen", required_argument, NULL, 'n'},      {"repetitions", required_argument, NULL, 'r'},
        {"threads", required_argument, NULL, 't'},    {"cpu-kernels", required_argument, NULL, OPT_IMPL},
        {"numa", required_argument, NULL, OPT_NUMA},  {"pin", no_argument, NULL, OPT_PIN},
        {"seed", required_argument, NULL, OPT_SEED},  {"ngl", required_argument, NULL, OPT_NGL},
        {"ctx", required_argument, NULL, OPT_CTX},
        {NULL, 0, NULL, 0},
    };
    prof_options o = {.interval_ms = 100, .freq_hz = 999, .sets = PROF_SET_ALL, .top_n = 30, .tee = true,
                      .out = "amxdiag-run.json"};
    prof_http_opts h = {.threads = 2, .max_connections = 64, .timeout_s = 10, .nice = 10};
    const char *port_file = NULL;
    double linger_s = 0;
    bool json = false, engine_opt = false;
    uint64_t n_ctx = 0, v;
    double d;
    o.engine.engine.impl = KERN_IMPL_AUTO;
    o.engine.bench = (kern_bench_opts){.n_prompt = 512, .n_gen = 128, .reps = 3, .seed = 1};
    optind = 1;
    int c;
    /* '+': options end at the command's name, so its own options are left alone. */
    while ((c = getopt_long(argc, argv, "+l:o:p:i:F:e:vhm:n:r:t:", longopts, NULL)) != -1) {
        switch (c) {
        case 'l': h.listen = optarg; break;
        case OPT_ANY: h.listen_any = true; break;
        case OPT_PORTFILE: port_file = optarg; break;
        case OPT_LINGER:
            if (!adg_parse_double(optarg, &d) || d < 0 || d > 86400) {
                fprintf(stderr, "amxdiag export: error: --linger takes seconds from 0 to 86400, not '%s'\n", optarg);
                return adg_cmd_usage_error("export");
            }
            linger_s = d;
            break;
        case OPT_THREADS:
            if (!parse_uint("--http-threads", optarg, 1, 16, &v))
                return adg_cmd_usage_error("export");
            h.threads = (unsigned)v;
            break;
        case OPT_MAXCONN:
            if (!parse_uint("--max-connections", optarg, 1, 10000, &v))
                return adg_cmd_usage_error("export");
            h.max_connections = (unsigned)v;
            break;
        case OPT_PERIP:
            if (!parse_uint("--max-per-ip", optarg, 0, 10000, &v))
                return adg_cmd_usage_error("export");
            h.max_per_ip = (unsigned)v;
            break;
        case OPT_TIMEOUT:
            if (!parse_uint("--http-timeout", optarg, 1, 3600, &v))
                return adg_cmd_usage_error("export");
            h.timeout_s = (unsigned)v;
            break;
        case OPT_NICE:
            if (!parse_uint("--http-nice", optarg, 0, 19, &v))
                return adg_cmd_usage_error("export");
            h.nice = (int)v;
            break;
        case 'o': o.out = optarg; break;
        case 'p':
            if (!parse_uint("--pid", optarg, 1, 0x7fffffff, &v))
                return adg_cmd_usage_error("export");
            o.pid = (pid_t)v;
            break;
        case 'i':
            if (!parse_uint("--interval", optarg, 10, 60000, &v))
                return adg_cmd_usage_error("export");
            o.interval_ms = (unsigned)v;
            break;
        case 'F':
            if (!parse_uint("--freq", optarg, 10, 20000, &v))
                return adg_cmd_usage_error("export");
            o.freq_hz = (unsigned)v;
            break;
        case 'e':
            if (!parse_sets(optarg, &o.sets))
                return ADG_EXIT_USAGE;
            o.sets_explicit = true;
            break;
        case OPT_TOP:
            if (!parse_uint("--top", optarg, 1, 100000, &v))
                return adg_cmd_usage_error("export");
            o.top_n = (unsigned)v;
            break;
        case OPT_DURATION:
            if (!adg_parse_double(optarg, &d) || d <= 0) {
                fprintf(stderr, "amxdiag export: error: --duration takes a positive number of seconds, not '%s'\n",
                        optarg);
                return adg_cmd_usage_error("export");
            }
            o.duration_s = d;
            break;
        case OPT_GPU_METRICS: o.gpu_metrics = true; break;
        case OPT_NOTEE: o.tee = false; break;
        case OPT_JSON: json = true; break;
        case 'v': adg_log_set_level(ADG_LOG_DEBUG); break;
        case 'h': usage(stdout); return ADG_EXIT_OK;
        case 'm':
            o.engine.engine.model_path = optarg;
            engine_opt = true;
            break;
        case OPT_NPROMPT:
        case 'n':
        case 'r':
        case 't':
        case OPT_NGL:
        case OPT_CTX:
            if (!parse_uint(c == OPT_NPROMPT ? "--n-prompt" : c == 'n' ? "--n-gen" : c == 'r' ? "--repetitions"
                            : c == 't' ? "--threads" : c == OPT_NGL ? "--ngl" : "--ctx",
                            optarg, (c == 'r' || c == 't') ? 1 : 0, c == 't' ? 1024 : c == 'r' ? 1000 : 1u << 20, &v))
                return adg_cmd_usage_error("export");
            if (c == OPT_NPROMPT)
                o.engine.bench.n_prompt = (uint32_t)v;
            else if (c == 'n')
                o.engine.bench.n_gen = (uint32_t)v;
            else if (c == 'r')
                o.engine.bench.reps = (uint32_t)v;
            else if (c == 't')
                o.engine.engine.threads = (int)v;
            else if (c == OPT_NGL)
                o.engine.engine.ngl = (uint32_t)v;
            else
                n_ctx = v;
            engine_opt = true;
            break;
        case OPT_IMPL:
            if (!kern_impl_parse(optarg, &o.engine.engine.impl)) {
                fprintf(stderr, "amxdiag export: error: --cpu-kernels '%s' is not one of auto, amx, avx512, ref, "
                                "amx-emu\n", optarg);
                return adg_cmd_usage_error("export");
            }
            engine_opt = true;
            break;
        case OPT_NUMA:
            o.engine.numa = optarg;
            engine_opt = true;
            break;
        case OPT_PIN:
            o.engine.engine.pin = true;
            engine_opt = true;
            break;
        case OPT_SEED:
            if (!adg_parse_u64(optarg, &o.engine.bench.seed)) {
                fprintf(stderr, "amxdiag export: error: --seed '%s' is not a non-negative integer\n", optarg);
                return adg_cmd_usage_error("export");
            }
            engine_opt = true;
            break;
        default:
            return adg_cmd_usage_error("export");
        }
    }
    if (optind < argc)
        o.argv = argv + optind;
    if (engine_opt && (o.argv || o.pid)) {
        fprintf(stderr, "amxdiag export: error: built-in path options (--model, --cpu-kernels, ...) apply only "
                        "without a command or --pid\n");
        return adg_cmd_usage_error("export");
    }
    if (o.argv && o.pid) {
        fprintf(stderr, "amxdiag export: error: give either a command or --pid, not both\n");
        return adg_cmd_usage_error("export");
    }
    if (o.duration_s > 0 && !o.pid) {
        fprintf(stderr, "amxdiag export: error: --duration applies to --pid only (a command runs until it exits)\n");
        return adg_cmd_usage_error("export");
    }
    if (!*o.out) {
        fprintf(stderr, "amxdiag export: error: --out needs a file name\n");
        return adg_cmd_usage_error("export");
    }
    if (!o.argv && !o.pid) {
        o.builtin = true;
        uint32_t need = o.engine.bench.n_prompt > o.engine.bench.n_gen ? o.engine.bench.n_prompt : o.engine.bench.n_gen;
        o.engine.engine.n_ctx = n_ctx ? (uint32_t)n_ctx : (need < 512 ? 512 : need);
    }
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
