/* The HTTP endpoint of `amxdiag export` on libmicrohttpd (see http_server.h). */
#include "profiler/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/adg_log.h"

struct prof_http {
    struct MHD_Daemon *d;
    int fd;
    prof_http_routes routes;
    int nice;
    char address[80];
    uint16_t port;
    atomic_uint_fast64_t requests, scrapes, not_found, not_allowed, errors;
};

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

static adg_error *listen_usage(const char *s, const char *why)
{
    return adg_error_hint(adg_error_new(ADG_E_USAGE, "--listen '%s': %s", s, why),
                          "give ADDR:PORT, e.g. 127.0.0.1:%d, [::1]:%d, or a port alone (loopback)",
                          PROF_HTTP_DEFAULT_PORT, PROF_HTTP_DEFAULT_PORT);
}

adg_error *prof_http_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len, bool *loopback)
{
    char host[256], port[16];
    const char *colon;
    if (!s || !*s)
        return listen_usage("", "empty");
    if (strspn(s, "0123456789") == strlen(s)) {
        snprintf(host, sizeof host, "127.0.0.1");
        snprintf(port, sizeof port, "%s", s);
    } else if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || !end[2])
            return listen_usage(s, "an IPv6 address is written [ADDR]:PORT");
        if ((size_t)(end - s - 1) >= sizeof host)
            return listen_usage(s, "address too long");
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = 0;
        snprintf(port, sizeof port, "%s", end + 2);
    } else if ((colon = strrchr(s, ':')) && colon[1]) {
        if (strchr(s, ':') != colon)
            return listen_usage(s, "an IPv6 address is written [ADDR]:PORT");
        if ((size_t)(colon - s) >= sizeof host)
            return listen_usage(s, "address too long");
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
        if (!host[0]) /* ":9740": every address, as other exporters read it */
            snprintf(host, sizeof host, "0.0.0.0");
        snprintf(port, sizeof port, "%s", colon + 1);
    } else {
        return listen_usage(s, "no port");
    }
    uint64_t p;
    if (!adg_parse_u64(port, &p) || p > 65535)
        return listen_usage(s, "the port must be a number from 0 to 65535");
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res) {
        adg_error *e = adg_error_new(ADG_E_USAGE, "--listen '%s': cannot resolve '%s': %s", s, host, gai_strerror(rc));
        return adg_error_hint(e, "give a numeric address such as 127.0.0.1:%d", PROF_HTTP_DEFAULT_PORT);
    }
    memset(ss, 0, sizeof *ss);
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    *loopback = is_loopback((struct sockaddr *)ss);
    return NULL;
}

static void format_address(const struct sockaddr *sa, char *buf, size_t len, uint16_t *port)
{
    char a[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
        *port = ntohs(in->sin_port);
        snprintf(buf, len, "%s:%u", a, *port);
    } else {
        const struct sockaddr_in6 *in = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in->sin6_addr, a, sizeof a);
        *port = ntohs(in->sin6_port);
        snprintf(buf, len, "[%s]:%u", a, *port);
    }
}

static adg_error *bind_socket(const char *where, const struct sockaddr_storage *ss, socklen_t len, int *fd_out)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return adg_error_errno(ADG_E_IO, errno, "cannot create a socket for %s", where);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)ss, len) != 0) {
        int err = errno;
        close(fd);
        adg_error *e = adg_error_errno(err == EACCES ? ADG_E_PERMISSION : ADG_E_IO, err, "cannot listen on %s",
                                       where);
        if (err == EADDRINUSE)
            return adg_error_hint(e, "another process listens there (ss -ltnp shows which); choose another port");
        if (err == EACCES)
            return adg_error_hint(e, "ports below 1024 need root or CAP_NET_BIND_SERVICE; use a port such as %d",
                                  PROF_HTTP_DEFAULT_PORT);
        if (err == EADDRNOTAVAIL)
            return adg_error_hint(e, "the address is not one of this machine's (ip -br addr lists them)");
        return e;
    }
    /* The backlog is where connections beyond the limit wait: generous, they cost no thread. */
    if (listen(fd, 256) != 0) {
        int err = errno;
        close(fd);
        return adg_error_errno(ADG_E_IO, err, "cannot listen on %s", where);
    }
    *fd_out = fd;
    return NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    adg_debug("export: http: %s", adg_rstrip(buf));
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, char *body, size_t len, const char *type,
                             bool allow_header)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    /* No keep-alive: an idle kept-alive connection would hold one of the limited slots
     * until the idle timeout (a burst of such clients locks scrapers out for that long);
     * one TCP connection per scrape costs nothing at scrape rates. */
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    if (allow_header)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text, bool allow)
{
    char *b = strdup(text);
    if (!b)
        return MHD_NO;
    return reply(c, status, b, strlen(b), "text/plain; charset=utf-8", allow);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version, (void)upload;
    static int seen; /* marks a request whose headers were seen */
    prof_http *h = cls;
    bool get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
    if (get && !*con_cls) {
        /* The request is answered once it has been read whole (the next call). */
        *con_cls = &seen;
        return MHD_YES;
    }
    if (get && *upload_size) { /* a GET with a body: read and ignore it */
        *upload_size = 0;
        return MHD_YES;
    }
    /* The serving threads yield to the workload: at nice 10 a busy one gets about a
     * tenth of a CPU the workload wants (CFS weights 110 vs 1024).  Set here, on the
     * thread itself, since libmicrohttpd creates its pool without a hook. */
    static __thread bool reniced;
    if (!reniced) {
        reniced = true;
        if (h->nice && setpriority(PRIO_PROCESS, (id_t)gettid(), h->nice) != 0)
            adg_debug("export: http: cannot renice a serving thread: %s", strerror(errno));
    }
    atomic_fetch_add(&h->requests, 1);
    if (!get) {
        /* Answered before any body is read; MHD then closes the connection. */
        atomic_fetch_add(&h->not_allowed, 1);
        return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "405 method not allowed: only GET and HEAD\n", true);
    }
    prof_http_handler fn = NULL;
    if (!strcmp(url, "/metrics"))
        fn = h->routes.metrics;
    else if (!strcmp(url, "/healthz"))
        fn = h->routes.health;
    else if (!strcmp(url, "/"))
        return reply_text(c, MHD_HTTP_OK,
                          "amxdiag export\n\n/metrics  Prometheus text format 0.0.4 (docs/export.md)\n"
                          "/healthz  200 while the session runs, 503 once it has ended\n",
                          false);
    if (!fn) {
        atomic_fetch_add(&h->not_found, 1);
        return reply_text(c, MHD_HTTP_NOT_FOUND, "404 not found: try /metrics or /healthz\n", false);
    }
    adg_strbuf sb;
    adg_sb_init(&sb);
    const char *type = "text/plain; charset=utf-8";
    int status = fn(h->routes.ctx, &sb, &type);
    if (sb.failed) {
        adg_sb_free(&sb);
        atomic_fetch_add(&h->errors, 1);
        return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "500 out of memory\n", false);
    }
    if (fn == h->routes.metrics && status == 200)
        atomic_fetch_add(&h->scrapes, 1);
    size_t len = sb.len;
    char *body = adg_sb_take(&sb);
    if (!body) {
        body = strdup("");
        len = 0;
    }
    return reply(c, (unsigned)status, body, len, type, false);
}

adg_error *prof_http_start(const prof_http_opts *o, const prof_http_routes *routes, prof_http **out)
{
    *out = NULL;
    char dflt[32];
    snprintf(dflt, sizeof dflt, "127.0.0.1:%d", PROF_HTTP_DEFAULT_PORT);
    const char *listen_s = o->listen ? o->listen : dflt;
    struct sockaddr_storage ss;
    socklen_t len;
    bool loop;
    adg_error *e = prof_http_parse_listen(listen_s, &ss, &len, &loop);
    if (e)
        return e;
    if (!loop && !o->listen_any)
        return adg_error_hint(
            adg_error_new(ADG_E_USAGE, "--listen %s is not a loopback address: the metrics would be open to the network",
                          listen_s),
            "add --listen-any to serve on it (behind a firewall, or with Prometheus on another host), or use 127.0.0.1");
    prof_http *h = calloc(1, sizeof *h);
    if (!h)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    h->routes = *routes;
    h->nice = o->nice;
    if ((e = bind_socket(listen_s, &ss, len, &h->fd))) {
        free(h);
        return e;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    if (getsockname(h->fd, (struct sockaddr *)&bound, &blen) == 0)
        format_address((struct sockaddr *)&bound, h->address, sizeof h->address, &h->port);
    /* The serving threads inherit this mask: signals stay with the session's threads. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGPIPE);
    sigaddset(&block, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    h->d = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)h->fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(o->threads ? o->threads : 2),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(o->max_connections ? o->max_connections : 64),
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)o->max_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(o->timeout_s ? o->timeout_s : 10),
        /* Request line and headers must fit: a scrape needs well under 1 KiB. */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
        MHD_OPTION_SIGPIPE_HANDLED_BY_APP, (int)1,
        /* HTTP/1.1 requests without Host and other sloppy input get 400, not an answer. */
        MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
        MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!h->d) {
        close(h->fd);
        free(h);
        return adg_error_hint(adg_error_new(ADG_E_INTERNAL, "libmicrohttpd could not start serving on %s", listen_s),
                              "run with -v for libmicrohttpd's reason");
    }
    *out = h;
    return NULL;
}

const char *prof_http_address(const prof_http *h)
{
    return h->address;
}

uint16_t prof_http_port(const prof_http *h)
{
    return h->port;
}

void prof_http_get_stats(prof_http *h, prof_http_stats *st)
{
    st->requests = atomic_load(&h->requests);
    st->scrapes = atomic_load(&h->scrapes);
    st->not_found = atomic_load(&h->not_found);
    st->not_allowed = atomic_load(&h->not_allowed);
    st->errors = atomic_load(&h->errors);
}

void prof_http_stop(prof_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d); /* closes the listening socket too, the one it was given included */
    free(h);
}
