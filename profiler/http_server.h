/* A small HTTP endpoint for `amxdiag export` on libmicrohttpd: GET /metrics, /healthz
 * and / (an index); other paths 404, other methods 405.
 *
 * Bounded so that scrapers cannot disturb the profiled workload: a fixed pool of serving
 * threads, a connection limit (beyond it new connections wait in the kernel's backlog
 * instead of costing threads or memory), an optional per-address limit, an idle timeout
 * that closes slow or stalled clients, a per-connection memory limit that refuses
 * oversized requests, and no keep-alive (every response closes its connection, so idle
 * clients cannot sit on the slots), and serving threads at a lower priority (nice) so
 * that a busy endpoint takes CPU time from the workload only where it leaves some.  The serving threads block SIGINT/SIGTERM/SIGPIPE so that the
 * session's signal handling keeps them. */
#ifndef PROF_HTTP_SERVER_H
#define PROF_HTTP_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/adg_error.h"
#include "common/adg_util.h"

#define PROF_HTTP_DEFAULT_PORT 9740

typedef struct prof_http_opts {
    const char *listen;          /* "ADDR:PORT", "[V6]:PORT", "PORT" (loopback), ":PORT" (all) */
    bool listen_any;             /* allow an address that is not loopback */
    unsigned threads;            /* serving threads (default 2) */
    unsigned max_connections;    /* default 64 */
    unsigned max_per_ip;         /* 0: no per-address limit */
    unsigned timeout_s;          /* idle connection timeout (default 10) */
    int nice;                    /* niceness of the serving threads (0: the process's) */
} prof_http_opts;

/* Fills body (and *content_type, a static string) for one path; called on a serving
 * thread, so it must be thread-safe.  Returns the HTTP status (200, 503, ...). */
typedef int (*prof_http_handler)(void *ctx, adg_strbuf *body, const char **content_type);

typedef struct prof_http_routes {
    prof_http_handler metrics;   /* /metrics */
    prof_http_handler health;    /* /healthz */
    void *ctx;
} prof_http_routes;

typedef struct prof_http_stats {
    uint64_t requests;           /* every request answered */
    uint64_t scrapes;            /* GET /metrics answered 200 */
    uint64_t not_found, not_allowed, errors;
} prof_http_stats;

typedef struct prof_http prof_http;

/* Parses a --listen value.  *loopback says whether the address is 127.0.0.0/8 or ::1
 * (an IPv4-mapped 127.x too).  A name is resolved (first address). */
adg_error *prof_http_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len, bool *loopback);

/* Binds, listens and starts serving.  A non-loopback address without listen_any is a
 * usage error that says how to allow it. */
adg_error *prof_http_start(const prof_http_opts *o, const prof_http_routes *routes, prof_http **out);
/* The bound address as "ADDR:PORT" (port 0 asked for resolves to the real one). */
const char *prof_http_address(const prof_http *h);
uint16_t prof_http_port(const prof_http *h);
void prof_http_get_stats(prof_http *h, prof_http_stats *st);
/* Stops serving (closes connections) and frees. */
void prof_http_stop(prof_http *h);

#endif
