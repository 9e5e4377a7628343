// SPDX-License-Identifier: Apache-2.0
/*
 * The bundle endpoint, server and client, with real TLS over loopback and
 * real HTTP: trust domain a.test's root signs the endpoint's SVID; b.test's
 * root signs an impostor with the same SPIFFE ID. The fetches that must
 * fail are played by the real server (wrong ID, wrong CA, old sequence)
 * and by a fake HTTPS server in this file (garbage, a huge body, status
 * 500, a body that never ends). The server's refusals are played by a raw
 * TLS client. Every wait is bounded by a timeout.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "bundle.h"
#include "bundle_endpoint.h"
#include "bundle_fetch.h"
#include "io.h"
#include "lib/pki.h"

#define TD    "a.test"
#define EP_ID "spiffe://a.test/fedguard/node/n1"

enum {
	MAX_BYTES = 64 * 1024,
	TIMEOUT_MS = 3000,
	HUGE_BYTES = 64 << 20, /* what the fake server would send at most */
	IO_TIMEOUT_S = 5,      /* every blocking socket operation of the test's own */
};

static time_t now;
static struct pki_cert root_a, root_a2, root_b, ep, impostor;
static struct bundle *current; /* a.test's bundle in force: root_a, sequence 5 */
static char why[BEP_FETCH_WHY_MAX];

static void make(struct pki_opts o, const struct pki_cert *issuer, struct pki_cert *out)
{
	cr_assert_eq(pki_make(&o, issuer, now, out), 0);
}

/* A bundle of a.test: roots (NULL-terminated), sequence seq. */
static char *bundle_json(uint64_t seq, X509 *first, ...)
{
	struct bundle *b = NULL;
	char *json = NULL;
	va_list ap;

	cr_assert_eq(bundle_new(TD, &b), 0);
	va_start(ap, first);
	for (X509 *c = first; c; c = va_arg(ap, X509 *))
		cr_assert_eq(bundle_add_authority(b, c, why, sizeof(why)), 0, "%s", why);
	va_end(ap);
	b->revoked = first == NULL;
	b->has_sequence = true;
	b->sequence = seq;
	b->has_refresh_hint = true;
	b->refresh_hint = 120;
	cr_assert_eq(bundle_write(b, &json), 0);
	bundle_free(b);
	return json;
}

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN); /* the fake server writes to closed connections */
	now = time(NULL);
	make(pki_root_opts(TD), NULL, &root_a);
	make(pki_root_opts(TD), NULL, &root_a2);
	make(pki_root_opts("b.test"), NULL, &root_b);
	make(pki_leaf_opts(EP_ID), &root_a, &ep);
	make(pki_leaf_opts(EP_ID), &root_b, &impostor);
	cr_assert_eq(bundle_new(TD, &current), 0);
	cr_assert_eq(bundle_add_authority(current, root_a.cert, why, sizeof(why)), 0);
	current->has_sequence = true;
	current->sequence = 5;
}

static void teardown(void)
{
	bundle_free(current);
	pki_free(&root_a);
	pki_free(&root_a2);
	pki_free(&root_b);
	pki_free(&ep);
	pki_free(&impostor);
}

TestSuite(bundle_endpoint, .init = setup, .fini = teardown);

static struct bep_server *serve(const struct pki_cert *svid, const char *json,
				unsigned int timeout_ms)
{
	struct bep_server_config cfg = { .listen = "127.0.0.1:0", .timeout_ms = timeout_ms,
					 .cert = svid->cert, .key = svid->key,
					 .bundle_json = json };
	struct bep_server *s = NULL;
	char msg[BEP_WHY_MAX];

	cr_assert_eq(bep_server_start(&cfg, &s, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_gt(bep_server_port(s), 0);
	return s;
}

static int fetch_port(__u16 port, const char *id, struct bundle **out, unsigned int timeout_ms)
{
	char url[64];

	snprintf(url, sizeof(url), "https://127.0.0.1:%u/", port);
	why[0] = 0;
	return bep_fetch(url, id, current, TD, MAX_BYTES, timeout_ms, out, why, sizeof(why));
}

/* --- the real server, the real client -------------------------------------------------- */

Test(bundle_endpoint, fetch_round_trips)
{
	char *json = bundle_json(6, root_a.cert, root_a2.cert, NULL);
	struct bep_server *s = serve(&ep, json, 0);
	struct bep_server_stats st;
	struct bundle *b = NULL;
	char *again = NULL;

	cr_assert_eq(fetch_port(bep_server_port(s), EP_ID, &b, TIMEOUT_MS), 0, "%s", why);
	cr_expect_eq(b->sequence, 6);
	cr_expect_eq(sk_X509_num(b->authorities), 2);
	cr_assert_eq(bundle_write(b, &again), 0);
	cr_expect_str_eq(again, json);
	bep_server_stats(s, &st);
	cr_expect_eq(st.responses[0], 1);
	bep_server_stop(s);
	bundle_free(b);
	free(again);
	free(json);
}

Test(bundle_endpoint, wrong_endpoint_id_refused)
{
	char *json = bundle_json(6, root_a.cert, NULL);
	struct bep_server *s = serve(&ep, json, 0);
	struct bundle *b = NULL;

	cr_expect_eq(fetch_port(bep_server_port(s), "spiffe://a.test/other", &b, TIMEOUT_MS),
		     -EKEYREJECTED);
	cr_expect(strstr(why, "(id-mismatch)"), "%s", why);
	cr_expect_null(b);
	bep_server_stop(s);
	free(json);
}

Test(bundle_endpoint, svid_of_another_trust_domains_ca_refused)
{
	char *json = bundle_json(6, root_a.cert, NULL);
	struct bep_server *s = serve(&impostor, json, 0);
	struct bundle *b = NULL;

	cr_expect_eq(fetch_port(bep_server_port(s), EP_ID, &b, TIMEOUT_MS), -EKEYREJECTED);
	cr_expect(strstr(why, "(untrusted)"), "%s", why);
	cr_expect_null(b);
	bep_server_stop(s);
	free(json);
}

Test(bundle_endpoint, lower_sequence_refused)
{
	char *json = bundle_json(4, root_a.cert, NULL);
	struct bep_server *s = serve(&ep, json, 0);
	struct bundle *b = NULL;

	cr_expect_eq(fetch_port(bep_server_port(s), EP_ID, &b, TIMEOUT_MS), -ESTALE);
	cr_expect(strstr(why, "sequence 4 is lower than 5 in force: refused"), "%s", why);
	bep_server_stop(s);
	free(json);
}

Test(bundle_endpoint, same_sequence_other_keys_refused_same_keys_accepted)
{
	char *other = bundle_json(5, root_a2.cert, NULL);
	char *same = bundle_json(5, root_a.cert, NULL);
	struct bep_server *s = serve(&ep, other, 0);
	struct bundle *b = NULL;

	cr_expect_eq(fetch_port(bep_server_port(s), EP_ID, &b, TIMEOUT_MS), -ESTALE);
	cr_expect(strstr(why, "sequence 5 is the one in force, with other keys"), "%s", why);
	cr_assert_eq(bep_server_set_bundle(s, same), 0);
	cr_expect_eq(fetch_port(bep_server_port(s), EP_ID, &b, TIMEOUT_MS), 0, "%s", why);
	bundle_free(b);
	bep_server_stop(s);
	free(other);
	free(same);
}

Test(bundle_endpoint, empty_key_set_is_a_revocation)
{
	char *json = bundle_json(9, NULL);
	struct bep_server *s = serve(&ep, json, 0);
	struct bundle *b = NULL;

	cr_assert_eq(fetch_port(bep_server_port(s), EP_ID, &b, TIMEOUT_MS), 0, "%s", why);
	cr_expect(b->revoked);
	cr_expect_eq(sk_X509_num(b->authorities), 0);
	bundle_free(b);
	bep_server_stop(s);
	free(json);
}

Test(bundle_endpoint, new_svid_presented_after_set_cred)
{
	char *json = bundle_json(6, root_a.cert, NULL);
	struct bep_server *s = serve(&impostor, json, 0);
	struct bundle *b = NULL;
	char msg[BEP_WHY_MAX];

	cr_expect_eq(fetch_port(bep_server_port(s), EP_ID, &b, TIMEOUT_MS), -EKEYREJECTED);
	cr_expect_eq(bep_server_set_cred(s, ep.cert, impostor.key, NULL, msg, sizeof(msg)),
		     -EINVAL);
	cr_assert_eq(bep_server_set_cred(s, ep.cert, ep.key, NULL, msg, sizeof(msg)), 0, "%s",
		     msg);
	cr_expect_eq(fetch_port(bep_server_port(s), EP_ID, &b, TIMEOUT_MS), 0, "%s", why);
	bundle_free(b);
	bep_server_stop(s);
	free(json);
}

Test(bundle_endpoint, refused_before_any_transfer)
{
	struct bundle *b = NULL, *revoked = NULL;

	cr_expect_eq(bep_fetch("http://127.0.0.1:1/", EP_ID, current, TD, MAX_BYTES, TIMEOUT_MS,
			       &b, why, sizeof(why)), -EINVAL);
	cr_expect_eq(bep_fetch("https://127.0.0.1:1/", "spiffe://b.test/x", current, TD, MAX_BYTES,
			       TIMEOUT_MS, &b, why, sizeof(why)), -EINVAL);
	cr_expect_eq(bep_fetch("https://127.0.0.1:1/", EP_ID, current, "b.test", MAX_BYTES,
			       TIMEOUT_MS, &b, why, sizeof(why)), -EINVAL);
	cr_assert_eq(bundle_new(TD, &revoked), 0);
	revoked->revoked = true;
	cr_expect_eq(bep_fetch("https://127.0.0.1:1/", EP_ID, revoked, TD, MAX_BYTES, TIMEOUT_MS,
			       &b, why, sizeof(why)), -EKEYREJECTED);
	cr_expect(strstr(why, "no authorities in force"), "%s", why);
	cr_expect_null(b);
	bundle_free(revoked);
}

/* --- a fake HTTPS server with the endpoint's SVID ------------------------------------- */

enum fake_mode {
	FAKE_GARBAGE,
	FAKE_HUGE,
	FAKE_500,
	FAKE_ENDLESS,	  /* 1000 bytes announced, 9 sent */
	FAKE_LONG_LENGTH, /* past the cap announced, 9 sent */
};

struct fake {
	enum fake_mode mode;
	int listen_fd;
	__u16 port;
	pthread_t thread;
	size_t sent; /* body bytes written */
};

static int listen_loopback(__u16 *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, len), 0);
	cr_assert_eq(listen(fd, 4), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static void set_io_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Reads a request head, at most a few KiB: whether it was complete. */
static bool read_head(SSL *ssl)
{
	char buf[4096];
	size_t n = 0;
	int r;

	while (n < sizeof(buf) - 1) {
		r = SSL_read(ssl, buf + n, (int)(sizeof(buf) - 1 - n));
		if (r <= 0)
			return false;
		n += (size_t)r;
		buf[n] = 0;
		if (strstr(buf, "\r\n\r\n"))
			return true;
	}
	return false;
}

static bool write_str(SSL *ssl, const char *s)
{
	return SSL_write(ssl, s, (int)strlen(s)) == (int)strlen(s);
}

static void fake_answer(struct fake *f, SSL *ssl, int fd)
{
	static char chunk[65536];
	struct pollfd p = { .fd = fd, .events = POLLIN };

	switch (f->mode) {
	case FAKE_GARBAGE:
		write_str(ssl, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			       "Content-Length: 11\r\n\r\n{\"keys\": [1");
		break;
	case FAKE_HUGE:
		/* no Content-Length: the client can only count */
		write_str(ssl, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			       "Connection: close\r\n\r\n");
		memset(chunk, ' ', sizeof(chunk));
		while (f->sent < HUGE_BYTES && SSL_write(ssl, chunk, sizeof(chunk)) > 0)
			f->sent += sizeof(chunk);
		break;
	case FAKE_500:
		write_str(ssl, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops\n");
		break;
	case FAKE_ENDLESS:
	case FAKE_LONG_LENGTH:
		write_str(ssl, f->mode == FAKE_ENDLESS ? "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
						       : "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
		write_str(ssl, "{\"keys\": ");
		poll(&p, 1, IO_TIMEOUT_S * 1000); /* until the client gives up */
		break;
	}
}

static void *fake_run(void *arg)
{
	struct fake *f = arg;
	struct pollfd p = { .fd = f->listen_fd, .events = POLLIN };
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	SSL *ssl = NULL;
	int fd = -1;

	if (!ctx || SSL_CTX_use_certificate(ctx, ep.cert) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, ep.key) != 1 || poll(&p, 1, IO_TIMEOUT_S * 1000) != 1)
		goto out;
	fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		goto out;
	set_io_timeouts(fd);
	ssl = SSL_new(ctx);
	if (ssl && SSL_set_fd(ssl, fd) == 1 && SSL_accept(ssl) == 1 && read_head(ssl))
		fake_answer(f, ssl, fd);
out:
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	SSL_CTX_free(ctx);
	return NULL;
}

static void fake_start(struct fake *f, enum fake_mode mode)
{
	*f = (struct fake){ .mode = mode };
	f->listen_fd = listen_loopback(&f->port);
	cr_assert_eq(pthread_create(&f->thread, NULL, fake_run, f), 0);
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
}

/* Fetches from a fake server in mode: the result, and the time it took in ms. */
static int fetch_fake(struct fake *f, enum fake_mode mode, unsigned int timeout_ms,
		      int64_t *elapsed)
{
	struct bundle *b = NULL;
	int64_t start = io_now_ms();
	int r;

	fake_start(f, mode);
	r = fetch_port(f->port, EP_ID, &b, timeout_ms);
	*elapsed = io_now_ms() - start;
	fake_stop(f);
	cr_expect_null(b);
	bundle_free(b);
	return r;
}

Test(bundle_endpoint, garbage_refused)
{
	struct fake f;
	int64_t ms;

	cr_expect_eq(fetch_fake(&f, FAKE_GARBAGE, TIMEOUT_MS, &ms), -EBADMSG);
	cr_expect(strstr(why, "bundle for 'a.test'"), "%s", why);
}

Test(bundle_endpoint, huge_body_aborted)
{
	struct fake f;
	int64_t ms;

	cr_expect_eq(fetch_fake(&f, FAKE_HUGE, TIMEOUT_MS, &ms), -EFBIG);
	cr_expect(strstr(why, "body longer than 65536 bytes: aborted"), "%s", why);
	/* the client stopped reading: the server could not write everything */
	cr_expect_lt(f.sent, (size_t)HUGE_BYTES, "the whole body was sent: %zu", f.sent);
	cr_expect_lt(ms, TIMEOUT_MS);
}

Test(bundle_endpoint, status_500_refused)
{
	struct fake f;
	int64_t ms;

	cr_expect_eq(fetch_fake(&f, FAKE_500, TIMEOUT_MS, &ms), -EBADMSG);
	cr_expect(strstr(why, "status 500, not 200"), "%s", why);
}

Test(bundle_endpoint, endless_body_times_out)
{
	struct fake f;
	int64_t ms;

	cr_expect_eq(fetch_fake(&f, FAKE_ENDLESS, 500, &ms), -ETIMEDOUT);
	cr_expect(strstr(why, "no whole answer within 500 ms"), "%s", why);
	cr_expect_geq(ms, 450);
	cr_expect_lt(ms, 2500);
}

Test(bundle_endpoint, announced_length_past_cap_refused_at_once)
{
	struct fake f;
	int64_t ms;

	cr_expect_eq(fetch_fake(&f, FAKE_LONG_LENGTH, TIMEOUT_MS, &ms), -EFBIG);
	cr_expect(strstr(why, "body longer than 65536 bytes: aborted"), "%s", why);
	cr_expect_lt(ms, TIMEOUT_MS / 2);
}

/* --- the server's refusals, to a raw TLS client ------------------------------------------ */

/* Connects to the server over TLS (any version from min), or NULL. */
static SSL *raw_connect(__u16 port, int min_version, int max_version, int *fd_out)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	SSL *ssl;

	cr_assert(ctx && fd >= 0);
	SSL_CTX_set_min_proto_version(ctx, min_version);
	SSL_CTX_set_max_proto_version(ctx, max_version);
	set_io_timeouts(fd);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ssl = SSL_new(ctx);
	SSL_CTX_free(ctx); /* the connection keeps its own reference */
	cr_assert(ssl && SSL_set_fd(ssl, fd) == 1);
	cr_assert_eq(SSL_connect(ssl), 1);
	*fd_out = fd;
	return ssl;
}

/* Sends req and reads the whole answer (until the server closes) into buf. */
static void raw_exchange(__u16 port, const char *req, char *buf, size_t len)
{
	int fd, r;
	size_t n = 0;
	SSL *ssl = raw_connect(port, TLS1_2_VERSION, 0, &fd);

	cr_assert(write_str(ssl, req));
	while (n < len - 1 && (r = SSL_read(ssl, buf + n, (int)(len - 1 - n))) > 0)
		n += (size_t)r;
	buf[n] = 0;
	SSL_free(ssl);
	close(fd);
}

Test(bundle_endpoint, server_answers_only_get_slash)
{
	char *json = bundle_json(6, root_a.cert, NULL);
	struct bep_server *s = serve(&ep, json, 0);
	char *big = malloc(BEP_REQUEST_MAX + 64);
	struct bep_server_stats st;
	char buf[8192];

	raw_exchange(bep_server_port(s), "GET / HTTP/1.1\r\nHost: x\r\n\r\n", buf, sizeof(buf));
	cr_expect(!strncmp(buf, "HTTP/1.1 200 OK\r\n", 17), "%s", buf);
	cr_expect(strstr(buf, "Content-Type: application/json\r\n"), "%s", buf);
	cr_expect(strstr(buf, json), "%s", buf);
	raw_exchange(bep_server_port(s), "POST / HTTP/1.1\r\nHost: x\r\n\r\n", buf, sizeof(buf));
	cr_expect(!strncmp(buf, "HTTP/1.1 405 ", 13), "%s", buf);
	cr_expect(strstr(buf, "Allow: GET\r\n"), "%s", buf);
	raw_exchange(bep_server_port(s), "GET /keys HTTP/1.1\r\n\r\n", buf, sizeof(buf));
	cr_expect(!strncmp(buf, "HTTP/1.1 404 ", 13), "%s", buf);
	raw_exchange(bep_server_port(s), "hello\r\n\r\n", buf, sizeof(buf));
	cr_expect(!strncmp(buf, "HTTP/1.1 400 ", 13), "%s", buf);
	memset(big, 'a', BEP_REQUEST_MAX + 63);
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	big[BEP_REQUEST_MAX + 63] = 0;
	raw_exchange(bep_server_port(s), big, buf, sizeof(buf));
	cr_expect(!strncmp(buf, "HTTP/1.1 431 ", 13), "%s", buf);
	bep_server_stats(s, &st);
	cr_expect_eq(st.responses[0] + st.responses[1] + st.responses[2] + st.responses[3] +
			     st.responses[4], 5);
	bep_server_stop(s);
	free(big);
	free(json);
}

Test(bundle_endpoint, no_bundle_yet_is_503)
{
	struct bep_server *s = serve(&ep, NULL, 0);
	char buf[4096];

	raw_exchange(bep_server_port(s), "GET / HTTP/1.1\r\n\r\n", buf, sizeof(buf));
	cr_expect(!strncmp(buf, "HTTP/1.1 503 ", 13), "%s", buf);
	bep_server_stop(s);
}

Test(bundle_endpoint, tls_1_3_preferred_1_2_allowed)
{
	char *json = bundle_json(6, root_a.cert, NULL);
	struct bep_server *s = serve(&ep, json, 0);
	int fd;
	SSL *ssl;

	ssl = raw_connect(bep_server_port(s), TLS1_2_VERSION, 0, &fd);
	cr_expect_eq(SSL_version(ssl), TLS1_3_VERSION);
	SSL_free(ssl);
	close(fd);
	ssl = raw_connect(bep_server_port(s), TLS1_2_VERSION, TLS1_2_VERSION, &fd);
	cr_expect_eq(SSL_version(ssl), TLS1_2_VERSION);
	SSL_free(ssl);
	close(fd);
	bep_server_stop(s);
	free(json);
}

Test(bundle_endpoint, request_that_never_ends_is_cut)
{
	char *json = bundle_json(6, root_a.cert, NULL);
	struct bep_server *s = serve(&ep, json, 300);
	struct bep_server_stats st;
	int64_t start;
	char buf[256];
	int fd, r;
	SSL *ssl;

	ssl = raw_connect(bep_server_port(s), TLS1_2_VERSION, 0, &fd);
	cr_assert(write_str(ssl, "GET / HTTP/1.1\r\nHost: x\r\n"));
	start = io_now_ms();
	r = SSL_read(ssl, buf, sizeof(buf)); /* the server closes: no answer */
	cr_expect_leq(r, 0);
	cr_expect_lt(io_now_ms() - start, 2000);
	SSL_free(ssl);
	close(fd);
	/* served one after the other: the next connection is answered */
	raw_exchange(bep_server_port(s), "GET / HTTP/1.1\r\n\r\n", buf, sizeof(buf));
	cr_expect(!strncmp(buf, "HTTP/1.1 200 ", 13), "%s", buf);
	bep_server_stats(s, &st);
	cr_expect_eq(st.failed, 1);
	cr_expect_eq(st.responses[0], 1);
	bep_server_stop(s);
	free(json);
}

Test(bundle_endpoint, stop_cuts_a_connection_short)
{
	struct bep_server *s = serve(&ep, NULL, 60000);
	int64_t start;
	int fd;
	SSL *ssl;

	ssl = raw_connect(bep_server_port(s), TLS1_2_VERSION, 0, &fd);
	start = io_now_ms();
	bep_server_stop(s);
	cr_expect_lt(io_now_ms() - start, 2000);
	SSL_free(ssl);
	close(fd);
}

/* --- when to fetch ----------------------------------------------------------------------- */

Test(bundle_endpoint, next_refresh)
{
	struct bundle b = { .has_refresh_hint = false };

	cr_expect_eq(bep_next_refresh(&b, 1000), 1000 + 300);
	b.has_refresh_hint = true;
	b.refresh_hint = 60;
	cr_expect_eq(bep_next_refresh(&b, 1000), 1060);
	b.refresh_hint = 1;
	cr_expect_eq(bep_next_refresh(&b, 1000), 1000 + BEP_REFRESH_MIN);
	b.refresh_hint = UINT64_MAX;
	cr_expect_eq(bep_next_refresh(&b, 1000), 1000 + BEP_REFRESH_MAX);
}

Test(bundle_endpoint, unknown_key_fetches_rate_limited)
{
	struct bep_kick *k = NULL;

	cr_assert_eq(bep_kick_new(10, &k), 0);
	cr_expect(bep_kick_allow(k, "a.test", 100));
	cr_expect_not(bep_kick_allow(k, "a.test", 109));
	cr_expect(bep_kick_allow(k, "b.test", 109));
	cr_expect(bep_kick_allow(k, "a.test", 110));
	cr_expect_not(bep_kick_allow(k, "a.test", 105)); /* the clock went back */
	bep_kick_forget(k, "a.test");
	cr_expect(bep_kick_allow(k, "a.test", 111));
	for (int i = 0; i < BEP_KICK_TDS_MAX; i++) {
		char td[32];

		snprintf(td, sizeof(td), "td%d.test", i);
		bep_kick_allow(k, td, 200);
	}
	cr_expect_not(bep_kick_allow(k, "full.test", 200));
	cr_expect(bep_kick_allow(k, "a.test", 200)); /* known ones still go */
	bep_kick_free(k);
}
