/* profiler/http_server: --listen parsing and the loopback rule; the routes (/metrics,
 * /healthz, /, 404, 405, HEAD); malformed and oversized requests; the idle timeout
 * closing a stalled client; the connection limit making extra clients wait (not fail)
 * until a slot frees.  Raw sockets on 127.0.0.1, port 0. */
#include "adg_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/adg_util.h"
#include "profiler/http_server.h"

static int metrics_calls;

static int fake_metrics(void *ctx, adg_strbuf *body, const char **type)
{
    (void)ctx;
    __atomic_add_fetch(&metrics_calls, 1, __ATOMIC_SEQ_CST);
    *type = "text/plain; version=0.0.4; charset=utf-8";
    adg_sb_puts(body, "# TYPE amxdiag_x gauge\namxdiag_x 1\n");
    return 200;
}

static int fake_health(void *ctx, adg_strbuf *body, const char **type)
{
    (void)type;
    int *healthy = ctx;
    adg_sb_puts(body, *healthy ? "ok\n" : "ended\n");
    return *healthy ? 200 : 503;
}

static int healthy = 1;

static prof_http *start(unsigned max_conn, unsigned timeout_s)
{
    prof_http_opts o = {.listen = "127.0.0.1:0", .threads = 2, .max_connections = max_conn, .timeout_s = timeout_s};
    prof_http_routes r = {fake_metrics, fake_health, &healthy};
    prof_http *h = NULL;
    ADG_ASSERT_OK(prof_http_start(&o, &r, &h));
    assert_non_null(h);
    assert_true(prof_http_port(h) > 0);
    return h;
}

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Reads until the server closes or timeout_ms passes; returns the bytes read (-1 on timeout). */
static ssize_t read_all(int fd, char *buf, size_t len, int timeout_ms)
{
    size_t n = 0;
    uint64_t end = adg_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (n + 1 < len) {
        int left = (int)((int64_t)(end - adg_now_ns()) / 1000000);
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            return -1;
        ssize_t r = read(fd, buf + n, len - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = 0;
    return (ssize_t)n;
}

static void request(uint16_t port, const char *req, char *resp, size_t len)
{
    int fd = connect_to(port);
    assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    assert_true(read_all(fd, resp, len, 5000) >= 0);
    close(fd);
}

static void test_parse_listen(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len;
    bool loop;
    ADG_ASSERT_OK(prof_http_parse_listen("127.0.0.1:9740", &ss, &len, &loop));
    assert_true(loop);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 9740);
    ADG_ASSERT_OK(prof_http_parse_listen("9741", &ss, &len, &loop));
    assert_true(loop);
    ADG_ASSERT_OK(prof_http_parse_listen("127.3.4.5:1", &ss, &len, &loop));
    assert_true(loop);
    ADG_ASSERT_OK(prof_http_parse_listen("[::1]:9740", &ss, &len, &loop));
    assert_true(loop);
    assert_int_equal(ss.ss_family, AF_INET6);
    ADG_ASSERT_OK(prof_http_parse_listen("0.0.0.0:9740", &ss, &len, &loop));
    assert_false(loop);
    ADG_ASSERT_OK(prof_http_parse_listen(":9740", &ss, &len, &loop));
    assert_false(loop);
    ADG_ASSERT_OK(prof_http_parse_listen("[::]:9740", &ss, &len, &loop));
    assert_false(loop);
    ADG_ASSERT_OK(prof_http_parse_listen("10.1.2.3:80", &ss, &len, &loop));
    assert_false(loop);
    static const char *const bad[] = {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:http",
                                      "::1:9740", "[::1]9740", "[::1]:", "host name with spaces:80"};
    for (size_t i = 0; i < ADG_ARRAY_LEN(bad); i++) {
        adg_error *e = prof_http_parse_listen(bad[i], &ss, &len, &loop);
        if (!e)
            print_error("'%s' was accepted\n", bad[i]);
        assert_non_null(e);
        assert_int_equal(adg_error_kind(e), ADG_E_USAGE);
        adg_error_free(e);
    }
}

static void test_refuses_non_loopback(void **state)
{
    (void)state;
    prof_http_opts o = {.listen = "0.0.0.0:0"};
    prof_http_routes r = {fake_metrics, fake_health, &healthy};
    prof_http *h = NULL;
    adg_error *e = prof_http_start(&o, &r, &h);
    assert_non_null(e);
    assert_null(h);
    assert_int_equal(adg_error_kind(e), ADG_E_USAGE);
    assert_non_null(strstr(adg_error_remedy(e), "--listen-any"));
    adg_error_free(e);
}

static void test_port_in_use(void **state)
{
    (void)state;
    prof_http *a = start(8, 5);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", prof_http_port(a));
    prof_http_opts o = {.listen = listen};
    prof_http_routes r = {fake_metrics, fake_health, &healthy};
    prof_http *b = NULL;
    adg_error *e = prof_http_start(&o, &r, &b);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "Address already in use"));
    assert_non_null(adg_error_remedy(e));
    adg_error_free(e);
    prof_http_stop(a);
}

static void test_routes(void **state)
{
    (void)state;
    prof_http *h = start(16, 5);
    uint16_t port = prof_http_port(h);
    char resp[8192];
    request(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "HTTP/1.1 200"));
    assert_non_null(strstr(resp, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
    assert_non_null(strstr(resp, "\r\n\r\n# TYPE amxdiag_x gauge\namxdiag_x 1\n"));
    /* a query string (Prometheus sends none, curl users may) still reaches /metrics */
    request(port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, " 200 "));
    request(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, " 200 "));
    assert_null(strstr(resp, "amxdiag_x 1"));
    request(port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, " 200 "));
    healthy = 0;
    request(port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, " 503 "));
    healthy = 1;
    request(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "/metrics"));
    request(port, "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, " 404 "));
    request(port, "GET /metrics/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, " 404 "));
    request(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", resp,
            sizeof resp);
    assert_non_null(strstr(resp, " 405 "));
    assert_non_null(strstr(resp, "Allow: GET, HEAD"));
    request(port, "DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, " 405 "));
    /* no keep-alive: a client asking for it gets one answer and the connection closes,
     * so idle clients never hold a connection slot */
    int fd = connect_to(port);
    const char *two = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(write(fd, two, strlen(two)), (ssize_t)strlen(two));
    assert_true(read_all(fd, resp, sizeof resp, 5000) > 0); /* returns: the server closed */
    const char *first = strstr(resp, "HTTP/1.1 200");
    assert_non_null(first);
    assert_non_null(strstr(resp, "Connection: close"));
    assert_null(strstr(first + 1, "HTTP/1.1 200"));
    close(fd);
    prof_http_stats st;
    prof_http_get_stats(h, &st);
    assert_true(st.scrapes >= 4);
    assert_true(st.scrapes <= 5);
    assert_int_equal(st.not_found, 2);
    assert_int_equal(st.not_allowed, 2);
    prof_http_stop(h);
}

static void test_malformed(void **state)
{
    (void)state;
    prof_http *h = start(16, 2);
    uint16_t port = prof_http_port(h);
    char resp[8192];
    /* garbage, a request line without a version, binary bytes, HTTP/1.1 without Host */
    static const char *const bad[] = {
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n",
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        "GET /metrics HTTP/9.9\r\n\r\n",
        "GET /metrics HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < ADG_ARRAY_LEN(bad); i++) {
        request(port, bad[i], resp, sizeof resp);
        assert_null(strstr(resp, "amxdiag_x 1")); /* never served */
    }
    /* headers beyond the connection's memory limit: refused, not buffered without end */
    adg_strbuf big;
    adg_sb_init(&big);
    adg_sb_puts(&big, "GET /metrics HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 2000; i++)
        adg_sb_printf(&big, "X-Pad-%d: %064d\r\n", i, i);
    adg_sb_puts(&big, "\r\n");
    int fd = connect_to(port);
    /* the server may close before all is sent: ignore EPIPE */
    signal(SIGPIPE, SIG_IGN);
    (void)!write(fd, big.buf, big.len);
    ssize_t n = read_all(fd, resp, sizeof resp, 5000);
    assert_true(n >= 0);
    assert_null(strstr(resp, "amxdiag_x 1"));
    if (n > 0)
        assert_non_null(strstr(resp, " 431 ")); /* Request Header Fields Too Large */
    close(fd);
    adg_sb_free(&big);
    /* the server still serves */
    request(port, "GET /metrics HTTP/1.0\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "amxdiag_x 1"));
    prof_http_stop(h);
}

/* A client that connects and stalls is closed after the idle timeout. */
static void test_idle_timeout(void **state)
{
    (void)state;
    prof_http *h = start(16, 1);
    int fd = connect_to(prof_http_port(h));
    (void)!write(fd, "GET /metr", 9); /* half a request line, then nothing */
    char buf[256];
    uint64_t t0 = adg_now_ns();
    ssize_t n = read_all(fd, buf, sizeof buf, 6000);
    double waited = (double)(adg_now_ns() - t0) * 1e-9;
    assert_true(n >= 0);            /* closed by the server, not by our 6 s limit */
    assert_true(waited >= 0.5);
    assert_true(waited < 5.0);
    close(fd);
    prof_http_stop(h);
}

/* With every slot held by stalled clients, a scrape waits in the backlog and is served
 * once the idle timeout frees a slot: it neither fails nor waits forever. */
static void test_connection_limit(void **state)
{
    (void)state;
    prof_http *h = start(2, 1);
    uint16_t port = prof_http_port(h);
    int hold[2];
    for (int i = 0; i < 2; i++)
        hold[i] = connect_to(port);
    struct timespec ts = {0, 200 * 1000000L};
    nanosleep(&ts, NULL);
    int before = __atomic_load_n(&metrics_calls, __ATOMIC_SEQ_CST);
    uint64_t t0 = adg_now_ns();
    char resp[4096];
    request(port, "GET /metrics HTTP/1.0\r\n\r\n", resp, sizeof resp);
    double waited = (double)(adg_now_ns() - t0) * 1e-9;
    assert_non_null(strstr(resp, "amxdiag_x 1"));
    assert_int_equal(__atomic_load_n(&metrics_calls, __ATOMIC_SEQ_CST), before + 1);
    assert_true(waited >= 0.3); /* it had to wait for a slot ... */
    assert_true(waited < 5.0);  /* ... about one timeout */
    for (int i = 0; i < 2; i++)
        close(hold[i]);
    prof_http_stop(h);
}

/* --max-per-ip: one address beyond its share is refused at once (not queued). */
static void test_per_ip_limit(void **state)
{
    (void)state;
    prof_http_opts o = {.listen = "127.0.0.1:0", .threads = 1, .max_connections = 16, .max_per_ip = 1, .timeout_s = 5};
    prof_http_routes r = {fake_metrics, fake_health, &healthy};
    prof_http *h = NULL;
    ADG_ASSERT_OK(prof_http_start(&o, &r, &h));
    int hold = connect_to(prof_http_port(h));
    (void)!write(hold, "GET /met", 8);
    struct timespec ts = {0, 200 * 1000000L};
    nanosleep(&ts, NULL);
    int fd = connect_to(prof_http_port(h));
    (void)!write(fd, "GET /metrics HTTP/1.0\r\n\r\n", 25);
    char resp[1024];
    uint64_t t0 = adg_now_ns();
    ssize_t n = read_all(fd, resp, sizeof resp, 3000);
    assert_true(n >= 0); /* closed by the server ... */
    assert_true((double)(adg_now_ns() - t0) * 1e-9 < 2.0); /* ... at once, not after the 5 s timeout */
    assert_null(strstr(resp, "amxdiag_x 1"));
    close(fd);
    close(hold);
    nanosleep(&ts, NULL);
    request(prof_http_port(h), "GET /metrics HTTP/1.0\r\n\r\n", resp, sizeof resp); /* the slot is free again */
    assert_non_null(strstr(resp, "amxdiag_x 1"));
    prof_http_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_listen),   cmocka_unit_test(test_refuses_non_loopback),
        cmocka_unit_test(test_port_in_use),    cmocka_unit_test(test_routes),
        cmocka_unit_test(test_malformed),      cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_connection_limit), cmocka_unit_test(test_per_ip_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
