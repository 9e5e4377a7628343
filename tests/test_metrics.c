// SPDX-License-Identifier: Apache-2.0
/*
 * agent/metrics.c, the Prometheus text formatter, and agent/metrics_http.c,
 * the /metrics responder, served on a real loopback TCP socket and asked
 * by a real TCP client: the answers to good and bad requests, a client
 * that sends nothing, and more clients than it serves at once.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics.h"
#include "metrics_http.h"

Test(metrics, families_samples_and_escaping)
{
	struct metrics_buf b = {};

	metrics_family(&b, "fedguard_x_total", "counter", "Counts x.\nSecond line \\ done.");
	metrics_u64(&b, "fedguard_x_total", 42, "reason", "deny_policy", "id", "a\"b\\c\nd", NULL);
	metrics_u64(&b, "fedguard_x_total", 18446744073709551615ULL, NULL);
	metrics_family(&b, "fedguard_y_seconds", "gauge", "Seconds of y.");
	metrics_f64(&b, "fedguard_y_seconds", 0.25, NULL);
	metrics_f64(&b, "fedguard_y_seconds", 1.0 / 0.0, "k", "inf", NULL);
	cr_assert_eq(b.err, 0);
	cr_expect_str_eq(b.p, "# HELP fedguard_x_total Counts x.\\nSecond line \\\\ done.\n"
			      "# TYPE fedguard_x_total counter\n"
			      "fedguard_x_total{reason=\"deny_policy\",id=\"a\\\"b\\\\c\\nd\"} 42\n"
			      "fedguard_x_total 18446744073709551615\n"
			      "# HELP fedguard_y_seconds Seconds of y.\n"
			      "# TYPE fedguard_y_seconds gauge\n"
			      "fedguard_y_seconds 0.25\n"
			      "fedguard_y_seconds{k=\"inf\"} +Inf\n");
	metrics_buf_free(&b);
}

Test(metrics, bad_names_and_limits_stick_as_errors)
{
	struct metrics_buf b = {};

	cr_expect(metrics_name_valid("fedguard_a:b", false));
	cr_expect_not(metrics_name_valid("fedguard_a:b", true), "':' in a label name");
	cr_expect_not(metrics_name_valid("9lives", false));
	cr_expect_not(metrics_name_valid("a-b", false));
	metrics_u64(&b, "bad name", 1, NULL);
	cr_expect_eq(b.err, -EINVAL);
	metrics_u64(&b, "fedguard_ok", 1, NULL);
	cr_expect_eq(b.len, 0, "output after an error");
	metrics_buf_free(&b);

	b = (struct metrics_buf){.max = 64};
	for (int i = 0; i < 10; i++)
		metrics_u64(&b, "fedguard_many", (unsigned)i, "i", "0123456789", NULL);
	cr_expect_eq(b.err, -E2BIG);
	cr_expect_leq(b.len, 64);
	metrics_buf_free(&b);
}

Test(metrics, listen_addresses)
{
	struct sockaddr_storage ss;
	socklen_t len;

	cr_expect_eq(metrics_http_parse_listen("127.0.0.1:9100", &ss, &len), 0);
	cr_expect_eq(ss.ss_family, AF_INET);
	cr_expect_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 9100);
	cr_expect_eq(metrics_http_parse_listen("[::1]:0", &ss, &len), 0);
	cr_expect_eq(ss.ss_family, AF_INET6);
	cr_expect_eq(metrics_http_parse_listen("::1:9100", &ss, &len), -EINVAL, "IPv6 without []");
	cr_expect_eq(metrics_http_parse_listen("127.0.0.1", &ss, &len), -EINVAL);
	cr_expect_eq(metrics_http_parse_listen("127.0.0.1:65536", &ss, &len), -EINVAL);
	cr_expect_eq(metrics_http_parse_listen("127.0.0.1:-1", &ss, &len), -EINVAL);
	cr_expect_eq(metrics_http_parse_listen("localhost:9100", &ss, &len), -EINVAL);
	cr_expect_eq(metrics_http_parse_listen("[127.0.0.1]:9100", &ss, &len), -EINVAL);
}

/* --- the responder, driven by a thread of its own ----------------------------------- */

static const char body_text[] =
	"# HELP fedguard_t A test.\n# TYPE fedguard_t gauge\nfedguard_t 1\n";

static struct {
	struct metrics_http *h;
	pthread_t thread;
	atomic_bool stop;
	atomic_int scrapes;
	bool fail;
} srv;

static int body(void *ctx, struct metrics_buf *out)
{
	(void)ctx;
	srv.scrapes++;
	if (srv.fail)
		return -EIO;
	metrics_family(out, "fedguard_t", "gauge", "A test.");
	metrics_u64(out, "fedguard_t", 1, NULL);
	return 0;
}

static void *serve(void *arg)
{
	struct pollfd p = {.fd = metrics_http_fd(srv.h), .events = POLLIN};

	(void)arg;
	while (!srv.stop) {
		if (poll(&p, 1, 50) > 0)
			metrics_http_dispatch(srv.h);
	}
	return NULL;
}

static void start(void)
{
	struct metrics_http_config cfg = {
		.listen = "127.0.0.1:0", .timeout_ms = 300, .max_conns = 2, .body = body};

	cr_assert_eq(metrics_http_start(&cfg, &srv.h), 0);
	cr_assert_gt(metrics_http_port(srv.h), 0);
	cr_assert_eq(pthread_create(&srv.thread, NULL, serve, NULL), 0);
}

static void stop(void)
{
	srv.stop = true;
	pthread_join(srv.thread, NULL);
	metrics_http_free(srv.h);
}

TestSuite(metrics_http, .init = start, .fini = stop, .timeout = 30);

static int client(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(metrics_http_port(srv.h)),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = 5};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Sends @req and reads the whole response (the server closes) into @out. */
static size_t exchange(const char *req, size_t req_len, char *out, size_t len)
{
	int fd = client();
	size_t got = 0;
	ssize_t n;

	cr_assert_eq(send(fd, req, req_len, MSG_NOSIGNAL), (ssize_t)req_len);
	while (got + 1 < len && (n = recv(fd, out + got, len - 1 - got, 0)) > 0)
		got += (size_t)n;
	cr_assert_geq(n, 0, "recv: %s", strerror(errno));
	out[got] = '\0';
	close(fd);
	return got;
}

static size_t ask(const char *req, char *out, size_t len)
{
	return exchange(req, strlen(req), out, len);
}

Test(metrics_http, get_metrics)
{
	char resp[4096], expect[256];

	ask("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", resp, sizeof(resp));
	cr_expect(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", resp);
	cr_expect(strstr(resp, "\r\nContent-Type: " METRICS_CONTENT_TYPE "\r\n") != NULL, "%s",
		  resp);
	snprintf(expect, sizeof(expect), "\r\nContent-Length: %zu\r\n", strlen(body_text));
	cr_expect(strstr(resp, expect) != NULL, "%s", resp);
	cr_expect(strstr(resp, "\r\nConnection: close\r\n") != NULL);
	cr_expect_str_eq(strstr(resp, "\r\n\r\n") + 4, body_text);

	/* HTTP/1.0, a query string, bare newlines */
	ask("GET /metrics?x=1 HTTP/1.0\n\n", resp, sizeof(resp));
	cr_expect(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", resp);
	cr_expect_geq(srv.scrapes, 2);
}

Test(metrics_http, refusals)
{
	char resp[4096], *big;
	size_t n = METRICS_HTTP_REQUEST_MAX + 100;

	ask("GET /other HTTP/1.1\r\n\r\n", resp, sizeof(resp));
	cr_expect(strncmp(resp, "HTTP/1.1 404 ", 13) == 0, "%s", resp);
	ask("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", resp, sizeof(resp));
	cr_expect(strncmp(resp, "HTTP/1.1 405 ", 13) == 0, "%s", resp);
	cr_expect(strstr(resp, "\r\nAllow: GET\r\n") != NULL, "%s", resp);
	ask("hello\r\n\r\n", resp, sizeof(resp));
	cr_expect(strncmp(resp, "HTTP/1.1 400 ", 13) == 0, "%s", resp);
	ask("GET /metrics HTTP/2.0\r\n\r\n", resp, sizeof(resp));
	cr_expect(strncmp(resp, "HTTP/1.1 400 ", 13) == 0, "%s", resp);
	ask("GET  /metrics HTTP/1.1\r\n\r\n", resp, sizeof(resp));
	cr_expect(strncmp(resp, "HTTP/1.1 400 ", 13) == 0, "two spaces: %s", resp);

	big = malloc(n);
	cr_assert_not_null(big);
	memset(big, 'a', n);
	memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
	exchange(big, METRICS_HTTP_REQUEST_MAX, resp, sizeof(resp));
	cr_expect(strncmp(resp, "HTTP/1.1 431 ", 13) == 0, "%s", resp);
	free(big);

	srv.fail = true;
	ask("GET /metrics HTTP/1.1\r\n\r\n", resp, sizeof(resp));
	cr_expect(strncmp(resp, "HTTP/1.1 500 ", 13) == 0, "%s", resp);
}

Test(metrics_http, a_silent_client_is_closed_and_others_are_served)
{
	char resp[4096], c;
	int silent[2];

	/* two connections that say nothing take both slots until their time is up */
	silent[0] = client();
	silent[1] = client();
	cr_expect_eq(recv(silent[0], &c, 1, 0), 0, "a silent client was not closed");
	cr_expect_eq(recv(silent[1], &c, 1, 0), 0, "a silent client was not closed");
	close(silent[0]);
	close(silent[1]);

	ask("GET /metrics HTTP/1.1\r\n\r\n", resp, sizeof(resp));
	cr_expect(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", resp);
}

Test(metrics_http, connections_over_the_limit_are_closed_at_once)
{
	struct metrics_http_stats st;
	int held[2], extra;
	char c;

	held[0] = client();
	held[1] = client();
	extra = client();
	/* the third is closed without an answer (or, if a slot freed, timed out) */
	cr_expect_eq(recv(extra, &c, 1, 0), 0);
	metrics_http_stats(srv.h, &st);
	cr_expect_geq(st.refused + st.timeouts, 1);
	close(extra);
	close(held[0]);
	close(held[1]);
}
