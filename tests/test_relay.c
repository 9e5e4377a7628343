// SPDX-License-Identifier: Apache-2.0
/*
 * The relay of the encrypted transport (agent/relay.c) on real sockets. A
 * flow is a workload client, relay A (the TLS client), relay B (the TLS
 * server) and a workload server, joined by loopback TCP, with TLS 1.3
 * between the relays on a self-signed P-256 certificate made in the test
 * (lib/pki.c). Each relay runs on its own thread and closes its sockets
 * once relay_run() returned, as the agent does. Where a test must do to
 * the TLS connection what a relay never does (request key updates, end the
 * TCP connection without close_notify), the test plays B's end of it
 * itself: "the peer". Every wait is bounded: timeouts on the workloads'
 * sockets, polls with deadlines, timed joins. SIGPIPE keeps its default
 * action: a relay that raised it would kill the test.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "io.h"
#include "lib/pki.h"
#include "log.h"
#include "relay.h"

enum {
	WAIT_MS = 10000,		/* any one wait: only catches hangs */
	BIG_MS = 100000,		/* a whole large transfer, under the sanitizers too */
	CANCEL_MS = 1000,		/* what "promptly" means for a cancel */
	STALL_MS = 500,			/* a sender that could not write for this long is stopped */
	CHUNK = 64 * 1024,		/* what the workloads write at once */
	DEFAULT_BUF = 64 * 1024,	/* relay_run()'s buf_size when given 0 */
	SMALL_SOCKBUF = 16 * 1024,	/* the kernel doubles it */
	RECORD = 16 * 1024,		/* TLS's largest record */
};

#define MiB ((size_t)1 << 20)

static SSL_CTX *server_ctx, *client_ctx;

/* --- sockets and TLS ------------------------------------------------------------------------ */

/* Fixed socket buffers turn the kernel's autotuning off: what back-pressure measures against. */
static void set_bufs(int fd, int size)
{
	if (size <= 0)
		return;
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)), 0);
}

static int get_buf(int fd, int opt)
{
	int size;
	socklen_t len = sizeof(size);

	cr_assert_eq(getsockopt(fd, SOL_SOCKET, opt, &size, &len), 0);
	return size;
}

/* The workloads use blocking calls, each bounded by WAIT_MS. */
static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = WAIT_MS / 1000 };

	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
}

static void set_blocking(int fd, bool on)
{
	int flags = fcntl(fd, F_GETFL);

	cr_assert_geq(flags, 0);
	flags = on ? flags & ~O_NONBLOCK : flags | O_NONBLOCK;
	cr_assert_eq(fcntl(fd, F_SETFL, flags), 0);
}

/* A connected loopback TCP pair; sockbuf > 0 fixes the buffers of both ends. */
static void tcp_pair(int *cli, int *srv, int sockbuf)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(l, 0);
	set_bufs(l, sockbuf);	/* before listen(): accepted sockets inherit them */
	cr_assert_eq(bind(l, (struct sockaddr *)&a, len), 0);
	cr_assert_eq(listen(l, 1), 0);
	cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
	*cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(*cli, 0);
	set_bufs(*cli, sockbuf);
	cr_assert_eq(connect(*cli, (struct sockaddr *)&a, len), 0);
	*srv = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	cr_assert_geq(*srv, 0);
	close(l);
}

/* One step of a handshake: true once it is complete. */
static bool handshake_step(SSL *ssl)
{
	int n = SSL_do_handshake(ssl);
	int err;

	if (n == 1)
		return true;
	err = SSL_get_error(ssl, n);
	cr_assert(err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE,
		  "TLS handshake failed (SSL error %d)", err);
	return false;
}

/* The TLS connection between the relays, over a new TCP pair, its handshake done. */
static void tls_pair(SSL **cli, SSL **srv, int sockbuf)
{
	int64_t deadline = io_now_ms() + WAIT_MS;
	bool cli_done = false, srv_done = false;
	int c, s;

	tcp_pair(&c, &s, sockbuf);
	set_blocking(c, false);
	set_blocking(s, false);
	*cli = SSL_new(client_ctx);
	*srv = SSL_new(server_ctx);
	cr_assert(*cli && *srv);
	cr_assert(SSL_set_fd(*cli, c) && SSL_set_fd(*srv, s));
	SSL_set_connect_state(*cli);
	SSL_set_accept_state(*srv);
	for (;;) {
		struct pollfd pfd[2] = { { .fd = c, .events = POLLIN },
					 { .fd = s, .events = POLLIN } };

		cli_done = cli_done || handshake_step(*cli);
		srv_done = srv_done || handshake_step(*srv);
		if (cli_done && srv_done)
			break;
		cr_assert_lt(io_now_ms(), deadline, "TLS handshake timed out");
		poll(pfd, 2, 10);
	}
}

/* --- threads -------------------------------------------------------------------------------- */

static void spawn(pthread_t *t, void *(*fn)(void *), void *arg)
{
	cr_assert_eq(pthread_create(t, NULL, fn, arg), 0);
}

static void join(pthread_t t, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	cr_assert_eq(pthread_timedjoin_np(t, NULL, &ts), 0, "a thread did not end within %d ms",
		     ms);
}

/* --- flows ---------------------------------------------------------------------------------- */

/* One relay_run() on its own thread and what it gave. */
struct relay_side {
	pthread_t thread;
	bool started;
	int plain_fd;
	SSL *ssl;
	int tls_fd;
	int cancel_fd;
	size_t buf_size;
	int ret;
	struct relay_stats st;
	atomic_bool done;
};

struct flow_opts {
	size_t a_buf;		/* relay_run()'s buf_size for A and for B */
	size_t b_buf;
	int sockbuf;		/* > 0: SO_SNDBUF and SO_RCVBUF of every socket */
	bool read_ahead;	/* SSL_set_read_ahead() on both relays: records wait in OpenSSL */
	bool peer;		/* the test plays B's end of TLS: no B, no workload server */
	bool ignore_eof;	/* SSL_OP_IGNORE_UNEXPECTED_EOF on A, which the relay undoes */
	bool one_cancel;	/* one eventfd for both relays, not one each */
};

struct flow {
	int client;		/* the workload client's socket */
	int server;		/* the workload server's socket; -1 with a peer */
	int cancel;		/* with one_cancel: the relays' eventfd */
	struct relay_side a;	/* plaintext from the client, TLS client */
	struct relay_side b;	/* TLS server, plaintext to the server */
	SSL *peer;		/* with a peer: B's end of TLS, on a non-blocking socket */
};

static void *relay_thread(void *arg)
{
	struct relay_side *s = arg;

	s->ret = relay_run(s->plain_fd, s->ssl, s->cancel_fd, s->buf_size, &s->st);
	/* what the agent does once relay_run() returned */
	close(s->plain_fd);
	SSL_free(s->ssl);
	close(s->tls_fd);
	atomic_store(&s->done, true);
	return NULL;
}

/* Starts s with cancel as its eventfd, or one of its own when cancel is -1. */
static void relay_start(struct relay_side *s, size_t buf_size, bool read_ahead, int cancel)
{
	s->buf_size = buf_size;
	s->cancel_fd = cancel >= 0 ? cancel : eventfd(0, EFD_CLOEXEC);
	cr_assert_geq(s->cancel_fd, 0);
	s->tls_fd = SSL_get_fd(s->ssl);
	SSL_set_read_ahead(s->ssl, read_ahead);
	spawn(&s->thread, relay_thread, s);
	s->started = true;
}

static void flow_start(struct flow *f, const struct flow_opts *o)
{
	*f = (struct flow){ .server = -1, .cancel = -1, .a.cancel_fd = -1, .b.cancel_fd = -1 };
	tcp_pair(&f->client, &f->a.plain_fd, o->sockbuf);
	set_timeouts(f->client);
	tls_pair(&f->a.ssl, &f->b.ssl, o->sockbuf);
	if (o->ignore_eof)
		SSL_set_options(f->a.ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	f->cancel = o->one_cancel ? eventfd(0, EFD_CLOEXEC) : -1;
	cr_assert(!o->one_cancel || f->cancel >= 0);
	relay_start(&f->a, o->a_buf, o->read_ahead, f->cancel);
	if (o->peer) {
		f->peer = f->b.ssl;
		f->b.ssl = NULL;
		return;
	}
	tcp_pair(&f->b.plain_fd, &f->server, o->sockbuf);
	set_timeouts(f->server);
	relay_start(&f->b, o->b_buf, o->read_ahead, f->cancel);
}

static void flow_join(struct flow *f, int ms)
{
	if (f->a.started)
		join(f->a.thread, ms);
	if (f->b.started)
		join(f->b.thread, ms);
	f->a.started = f->b.started = false;
}

/* The test's descriptors; the relays closed theirs. */
static void flow_close(struct flow *f)
{
	int fd = f->peer ? SSL_get_fd(f->peer) : -1;

	SSL_free(f->peer);
	if (fd >= 0)
		close(fd);
	if (f->server >= 0)
		close(f->server);
	if (f->client >= 0)
		close(f->client);
	if (f->cancel >= 0)
		close(f->cancel);
	if (f->a.cancel_fd >= 0 && f->a.cancel_fd != f->cancel)
		close(f->a.cancel_fd);
	if (f->b.cancel_fd >= 0 && f->b.cancel_fd != f->cancel)
		close(f->b.cancel_fd);
}

static void expect_end(const struct relay_side *s, const char *name, int end, int err)
{
	cr_assert_eq(s->ret, 0, "relay %s: relay_run() = %d", name, s->ret);
	cr_assert_eq(s->st.end, end, "relay %s ended %d (err %d), not %d", name, s->st.end,
		     s->st.err, end);
	cr_assert_eq(s->st.err, err, "relay %s: err %d (%s), not %d", name, s->st.err,
		     strerror(-s->st.err), err);
}

static void expect_bytes(const struct relay_side *s, const char *name, size_t to_tls,
			 size_t from_tls)
{
	cr_assert_eq(s->st.plain_to_tls, to_tls, "relay %s: %llu bytes into TLS, not %zu", name,
		     (unsigned long long)s->st.plain_to_tls, to_tls);
	cr_assert_eq(s->st.tls_to_plain, from_tls, "relay %s: %llu bytes out of TLS, not %zu",
		     name, (unsigned long long)s->st.tls_to_plain, from_tls);
}

/* --- workload streams ----------------------------------------------------------------------- */

/* One direction of a workload: pseudo-random bytes sent, or bytes received until EOF. */
struct stream {
	pthread_t thread;
	int fd;
	size_t len;		/* sending: how many */
	bool shut;		/* sending: SHUT_WR after them */
	__u64 seed;
	atomic_size_t moved;	/* sent or received so far */
	int err;		/* 0, or the -errno that ended it */
	unsigned char md[SHA256_DIGEST_LENGTH];	/* SHA-256 of the bytes */
};

static void fill(unsigned char *p, size_t n, __u64 *x)
{
	for (size_t i = 0; i < n; i += 8) {
		*x ^= *x << 13;
		*x ^= *x >> 7;
		*x ^= *x << 17;
		memcpy(p + i, x, n - i < 8 ? n - i : 8);
	}
}

static int send_all(int fd, const unsigned char *p, size_t n, atomic_size_t *moved)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= w;
		atomic_fetch_add(moved, w);
	}
	return 0;
}

static void *stream_send(void *arg)
{
	struct stream *s = arg;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char *buf = malloc(CHUNK);
	__u64 x = s->seed | 1;

	if (!md || !buf || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
		s->err = -ENOMEM;
	for (size_t left = s->len, n; !s->err && left; left -= n) {
		n = left < CHUNK ? left : CHUNK;
		fill(buf, n, &x);
		EVP_DigestUpdate(md, buf, n);
		s->err = send_all(s->fd, buf, n, &s->moved);
	}
	if (!s->err && s->shut && shutdown(s->fd, SHUT_WR) < 0)
		s->err = -errno;
	if (md)
		EVP_DigestFinal_ex(md, s->md, NULL);
	EVP_MD_CTX_free(md);
	free(buf);
	return NULL;
}

static void *stream_recv(void *arg)
{
	struct stream *s = arg;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char *buf = malloc(CHUNK);
	ssize_t n;

	if (!md || !buf || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
		s->err = -ENOMEM;
	while (!s->err) {
		n = recv(s->fd, buf, CHUNK, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			s->err = -errno;
		if (n <= 0)
			break;
		EVP_DigestUpdate(md, buf, n);
		atomic_fetch_add(&s->moved, n);
	}
	if (md)
		EVP_DigestFinal_ex(md, s->md, NULL);
	EVP_MD_CTX_free(md);
	free(buf);
	return NULL;
}

/* What was sent on out arrived on in, exactly. */
static void expect_stream(const struct stream *out, const struct stream *in, const char *what)
{
	cr_assert_eq(out->err, 0, "%s: sending failed: %s", what, strerror(-out->err));
	cr_assert_eq(in->err, 0, "%s: receiving failed: %s", what, strerror(-in->err));
	cr_assert_eq(atomic_load(&out->moved), out->len, "%s: %zu bytes sent of %zu", what,
		     atomic_load(&out->moved), out->len);
	cr_assert_eq(atomic_load(&in->moved), out->len, "%s: %zu bytes received of %zu", what,
		     atomic_load(&in->moved), out->len);
	cr_assert_eq(memcmp(out->md, in->md, sizeof(out->md)), 0, "%s: the bytes differ", what);
}

/* Exactly len bytes from fd (blocking, bounded by its timeout) into buf. */
static void recv_exact(int fd, void *buf, size_t len)
{
	for (size_t got = 0; got < len;) {
		ssize_t n = recv(fd, (char *)buf + got, len - got, 0);

		cr_assert_gt(n, 0, "received %zu bytes of %zu, then %zd (%s)", got, len, n,
			     n < 0 ? strerror(errno) : "EOF");
		got += n;
	}
}

/* The next read on fd ends in ECONNRESET: not a clean EOF, not a timeout. */
static void expect_reset(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, 0);

	cr_assert_eq(n, -1, "read gave %zd, not a reset (0 is a clean EOF)", n);
	cr_assert_eq(errno, ECONNRESET, "read failed with %s, not a reset", strerror(errno));
}

/*
 * Writes to fd without blocking until it took nothing for STALL_MS: the bytes written. Stops
 * early, for the caller to fail, once more than limit went in.
 */
static size_t push_until_stalled(int fd, size_t limit)
{
	static const unsigned char buf[CHUNK];
	int64_t deadline = io_now_ms() + WAIT_MS, last = io_now_ms();
	size_t total = 0;

	while (total <= limit && io_now_ms() - last < STALL_MS) {
		ssize_t n = send(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0) {
			total += n;
			last = io_now_ms();
			continue;
		}
		cr_assert(n < 0 && errno == EAGAIN, "send: %s", strerror(errno));
		cr_assert_lt(io_now_ms(), deadline, "the sender never stalled");
		usleep(20 * 1000);
	}
	return total;
}

/* len bytes each way at once, checksummed, both workloads half-closing when done. */
static void transfer_both_ways(const struct flow_opts *o, size_t len, int ms)
{
	struct flow f;
	struct stream c_out = { .len = len, .shut = true, .seed = 0x1234 };
	struct stream s_out = { .len = len, .shut = true, .seed = 0x5678 };
	struct stream c_in = { 0 }, s_in = { 0 };

	flow_start(&f, o);
	c_out.fd = c_in.fd = f.client;
	s_out.fd = s_in.fd = f.server;
	spawn(&c_out.thread, stream_send, &c_out);
	spawn(&s_out.thread, stream_send, &s_out);
	spawn(&c_in.thread, stream_recv, &c_in);
	spawn(&s_in.thread, stream_recv, &s_in);
	join(c_out.thread, ms);
	join(s_out.thread, ms);
	join(c_in.thread, ms);
	join(s_in.thread, ms);
	flow_join(&f, WAIT_MS);

	expect_stream(&c_out, &s_in, "client to server");
	expect_stream(&s_out, &c_in, "server to client");
	expect_end(&f.a, "A", RELAY_END_CLOSED, 0);
	expect_end(&f.b, "B", RELAY_END_CLOSED, 0);
	expect_bytes(&f.a, "A", len, len);
	expect_bytes(&f.b, "B", len, len);
	flow_close(&f);
}

/* --- the suite ------------------------------------------------------------------------------ */

static SSL_CTX *ctx_new(const SSL_METHOD *method)
{
	SSL_CTX *ctx = SSL_CTX_new(method);

	cr_assert(ctx);
	cr_assert(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION));
	cr_assert(SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION));
	return ctx;
}

static int fds_at_start;

/* Descriptors this process has open: each test must leave as many as it found. */
static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	cr_assert(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void setup(void)
{
	struct pki_opts o = pki_leaf_opts("spiffe://relay.test/fedguard/node/a");
	struct pki_cert cert;

	if (getenv("RELAY_DEBUG"))
		log_set_level(FG_LOG_DEBUG);
	cr_assert_eq(pki_make(&o, NULL, time(NULL), &cert), 0);
	server_ctx = ctx_new(TLS_server_method());
	cr_assert(SSL_CTX_use_certificate(server_ctx, cert.cert));
	cr_assert(SSL_CTX_use_PrivateKey(server_ctx, cert.key));
	pki_free(&cert);
	/* who the peer is, is the handshake's business; the relay starts after it */
	client_ctx = ctx_new(TLS_client_method());
	SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
	fds_at_start = fd_count();
}

static void teardown(void)
{
	SSL_CTX_free(server_ctx);
	SSL_CTX_free(client_ctx);
}

/* At the end of every test: Criterion does not fail a test on an assertion in its .fini. */
static void expect_all_closed(void)
{
	int n = fd_count();

	cr_assert_eq(n, fds_at_start, "the test left %d descriptors open", n - fds_at_start);
}

TestSuite(relay, .init = setup, .fini = teardown, .timeout = 60);

/* --- data ----------------------------------------------------------------------------------- */

Test(relay, large_transfers_both_ways_at_once_arrive_exactly, .timeout = 150)
{
	transfer_both_ways(&(struct flow_opts){ 0 }, 64 * MiB, BIG_MS);
	expect_all_closed();
}

/*
 * Rings of 1 byte and of odd sizes wrap at every place; a 1 MiB ring gives SSL_write() far
 * more than a record, and small socket buffers keep the TLS socket full most of the time.
 */
Test(relay, any_buffer_size_carries_the_bytes_exactly, .timeout = 150)
{
	static const struct {
		struct flow_opts o;
		size_t len;
	} cases[] = {
		{ { .a_buf = 1, .b_buf = 1 }, 64 * 1024 },
		{ { .a_buf = 4099, .b_buf = 65537, .sockbuf = SMALL_SOCKBUF }, 4 * MiB },
		{ { .a_buf = MiB, .b_buf = 333, .read_ahead = true }, 4 * MiB },
		{ { .a_buf = MiB, .b_buf = MiB, .sockbuf = SMALL_SOCKBUF }, 16 * MiB },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		transfer_both_ways(&cases[i].o, cases[i].len, BIG_MS);
	expect_all_closed();
}

/*
 * Bytes OpenSSL holds and the socket no longer signals: a record larger than what the ring
 * takes at once (SSL_pending()), records read ahead (SSL_has_pending()). Ping-pong, so that
 * no later data comes to wake up a relay that waits on the socket for them.
 */
Test(relay, bytes_held_inside_openssl_are_not_left_behind)
{
	static const struct flow_opts cases[] = {
		{ .a_buf = 1000, .b_buf = 0 },
		{ .a_buf = 1000, .b_buf = 0, .read_ahead = true },
		{ .a_buf = 0, .b_buf = 1, .read_ahead = true },
		{ .a_buf = 7, .b_buf = 1000, .read_ahead = true },
	};
	static unsigned char out[20000], in[sizeof(out)];
	__u64 x = 42;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct flow f;

		flow_start(&f, &cases[i]);
		for (int round = 0; round < 3; round++) {
			fill(out, sizeof(out), &x);
			cr_assert_eq(send(f.server, out, sizeof(out), 0), (ssize_t)sizeof(out));
			recv_exact(f.client, in, sizeof(in));
			cr_assert_eq(memcmp(in, out, sizeof(in)), 0, "case %zu: bytes differ", i);
			fill(out, sizeof(out), &x);
			cr_assert_eq(send(f.client, out, sizeof(out), 0), (ssize_t)sizeof(out));
			recv_exact(f.server, in, sizeof(in));
			cr_assert_eq(memcmp(in, out, sizeof(in)), 0, "case %zu: bytes differ", i);
		}
		cr_assert_eq(shutdown(f.client, SHUT_WR), 0);
		cr_assert_eq(recv(f.server, in, 1, 0), 0, "no EOF at the server");
		cr_assert_eq(shutdown(f.server, SHUT_WR), 0);
		cr_assert_eq(recv(f.client, in, 1, 0), 0, "no EOF at the client");
		flow_join(&f, WAIT_MS);
		expect_end(&f.a, "A", RELAY_END_CLOSED, 0);
		expect_end(&f.b, "B", RELAY_END_CLOSED, 0);
		flow_close(&f);
	}
	expect_all_closed();
}

/* --- back-pressure and independence --------------------------------------------------------- */

/*
 * The most the path from the client to a server that does not read can hold: both rings,
 * every socket buffer on the way, and for each socket one segment of 64 KiB beyond its
 * limit (TCP checks the limit before it queues) and OpenSSL's records.
 */
static size_t path_capacity(const struct flow *f)
{
	size_t sockets = (size_t)get_buf(f->client, SO_SNDBUF) + get_buf(f->a.plain_fd, SO_RCVBUF) +
			 get_buf(f->a.tls_fd, SO_SNDBUF) + get_buf(f->b.tls_fd, SO_RCVBUF) +
			 get_buf(f->b.plain_fd, SO_SNDBUF) + get_buf(f->server, SO_RCVBUF);

	return 2 * DEFAULT_BUF + sockets + 6 * 64 * 1024 + 4 * RECORD;
}

Test(relay, a_receiver_that_does_not_read_stops_the_sender)
{
	const size_t total = 4 * MiB;
	struct flow f;
	struct stream s_in = { 0 };
	atomic_size_t sent;
	size_t cap, stalled;

	flow_start(&f, &(struct flow_opts){ .sockbuf = SMALL_SOCKBUF });
	cap = path_capacity(&f);
	stalled = push_until_stalled(f.client, cap);
	cr_log_info("the sender stalled after %zu bytes; the path holds at most %zu", stalled, cap);
	cr_assert_leq(stalled, cap, "the relays took %zu bytes, more than the %zu they may hold",
		      stalled, cap);
	cr_assert_gt(stalled, DEFAULT_BUF, "the relays took only %zu bytes", stalled);
	usleep(300 * 1000);
	stalled += push_until_stalled(f.client, cap - stalled);
	cr_assert_leq(stalled, cap, "the relays took %zu bytes later, more than they may hold",
		      stalled);

	/* the server reads at last: the flow must resume and end as usual */
	s_in.fd = f.server;
	spawn(&s_in.thread, stream_recv, &s_in);
	atomic_init(&sent, stalled);
	while (atomic_load(&sent) < total) {
		static const unsigned char zeros[CHUNK];
		size_t n = total - atomic_load(&sent);

		cr_assert_eq(send_all(f.client, zeros, n < CHUNK ? n : CHUNK, &sent), 0);
	}
	cr_assert_eq(shutdown(f.client, SHUT_WR), 0);
	join(s_in.thread, WAIT_MS);
	cr_assert_eq(s_in.err, 0);
	cr_assert_eq(atomic_load(&s_in.moved), total);
	cr_assert_eq(shutdown(f.server, SHUT_WR), 0);
	cr_assert_eq(recv(f.client, (char[1]){ 0 }, 1, 0), 0, "no EOF at the client");
	flow_join(&f, WAIT_MS);
	expect_end(&f.a, "A", RELAY_END_CLOSED, 0);
	expect_end(&f.b, "B", RELAY_END_CLOSED, 0);
	expect_bytes(&f.a, "A", total, 0);
	flow_close(&f);
	expect_all_closed();
}

/*
 * Also: one eventfd ends both relays of the stalled flow. Both wait in poll() then, so both
 * see the cancel before either sees the other's reset.
 */
Test(relay, a_stalled_flow_delays_no_other, .timeout = 120)
{
	struct flow slow;

	flow_start(&slow, &(struct flow_opts){ .one_cancel = true });
	push_until_stalled(slow.client, SIZE_MAX);

	transfer_both_ways(&(struct flow_opts){ 0 }, 16 * MiB, BIG_MS);

	cr_assert(!atomic_load(&slow.a.done) && !atomic_load(&slow.b.done),
		  "the stalled flow ended");
	cr_assert_eq(eventfd_write(slow.cancel, 1), 0);
	flow_join(&slow, WAIT_MS);
	expect_end(&slow.a, "A", RELAY_END_CANCELLED, 0);
	expect_end(&slow.b, "B", RELAY_END_CANCELLED, 0);
	flow_close(&slow);
	expect_all_closed();
}

/* --- ends ----------------------------------------------------------------------------------- */

Test(relay, half_close_passes_through_and_the_reply_still_arrives)
{
	struct flow f;
	struct stream c_out = { .len = 100 * 1024, .shut = true, .seed = 7 };
	struct stream s_out = { .len = 3 * MiB, .seed = 8 };
	struct stream c_in = { 0 }, s_in = { 0 };

	flow_start(&f, &(struct flow_opts){ 0 });
	c_out.fd = c_in.fd = f.client;
	s_out.fd = s_in.fd = f.server;
	spawn(&c_in.thread, stream_recv, &c_in);
	spawn(&c_out.thread, stream_send, &c_out);

	/* the server sees the request end, and only then replies, then closes */
	stream_recv(&s_in);
	join(c_out.thread, WAIT_MS);
	expect_stream(&c_out, &s_in, "request");
	cr_assert(!atomic_load(&f.a.done) && !atomic_load(&f.b.done), "a relay ended at EOF");
	stream_send(&s_out);
	cr_assert_eq(close(f.server), 0);
	f.server = -1;

	join(c_in.thread, WAIT_MS);
	expect_stream(&s_out, &c_in, "reply");
	flow_join(&f, WAIT_MS);
	expect_end(&f.a, "A", RELAY_END_CLOSED, 0);
	expect_end(&f.b, "B", RELAY_END_CLOSED, 0);
	expect_bytes(&f.a, "A", c_out.len, s_out.len);
	expect_bytes(&f.b, "B", s_out.len, c_out.len);
	flow_close(&f);
	expect_all_closed();
}

/* One workload resets a flow that carried data; the other sees ECONNRESET. */
static void reset_passes(bool from_client)
{
	static unsigned char buf[10000];
	struct flow f;
	int *resetter, victim;

	flow_start(&f, &(struct flow_opts){ 0 });
	resetter = from_client ? &f.client : &f.server;
	victim = from_client ? f.server : f.client;
	cr_assert_eq(send(*resetter, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	recv_exact(victim, buf, sizeof(buf));

	cr_assert_eq(relay_abort(*resetter), 0);
	cr_assert_eq(close(*resetter), 0);
	*resetter = -1;
	expect_reset(victim);

	flow_join(&f, WAIT_MS);
	expect_end(&f.a, "A", RELAY_END_RESET, -ECONNRESET);
	expect_end(&f.b, "B", RELAY_END_RESET, -ECONNRESET);
	flow_close(&f);
}

Test(relay, reset_by_the_client_reaches_the_server)
{
	reset_passes(true);
	expect_all_closed();
}

Test(relay, reset_by_the_server_reaches_the_client)
{
	reset_passes(false);
	expect_all_closed();
}

/*
 * The TLS connection's TCP ends under a live flow: with a FIN but no close_notify (a
 * truncation, which must not pass for a clean end, even with SSL_OP_IGNORE_UNEXPECTED_EOF
 * set), or with a RST. The client sees a reset.
 */
static void tls_dies(bool rst)
{
	static unsigned char buf[10000];
	struct flow f;
	int fd;

	flow_start(&f, &(struct flow_opts){ .peer = true, .ignore_eof = true });
	fd = SSL_get_fd(f.peer);
	set_blocking(fd, true);
	set_timeouts(fd);
	cr_assert_eq(SSL_write(f.peer, buf, sizeof(buf)), (int)sizeof(buf));
	recv_exact(f.client, buf, sizeof(buf));

	if (rst) {
		SSL_free(f.peer);
		f.peer = NULL;
		cr_assert_eq(relay_abort(fd), 0);
		cr_assert_eq(close(fd), 0);
	} else {
		cr_assert_eq(shutdown(fd, SHUT_WR), 0);
	}
	expect_reset(f.client);

	flow_join(&f, WAIT_MS);
	expect_end(&f.a, "A", RELAY_END_RESET, rst ? -ECONNRESET : -ECONNABORTED);
	flow_close(&f);
}

Test(relay, tls_eof_without_close_notify_is_a_reset)
{
	tls_dies(false);
	expect_all_closed();
}

Test(relay, tls_reset_reaches_the_client)
{
	tls_dies(true);
	expect_all_closed();
}

Test(relay, cancel_ends_a_busy_flow_promptly_and_both_workloads_see_resets)
{
	struct flow f;
	struct stream c_out = { .len = 1024 * MiB, .seed = 9 };
	struct stream s_in = { 0 };
	int64_t deadline = io_now_ms() + WAIT_MS, t0;

	flow_start(&f, &(struct flow_opts){ 0 });
	c_out.fd = f.client;
	s_in.fd = f.server;
	spawn(&c_out.thread, stream_send, &c_out);
	spawn(&s_in.thread, stream_recv, &s_in);
	while (atomic_load(&s_in.moved) < 4 * MiB) {
		cr_assert_lt(io_now_ms(), deadline, "the flow does not carry data");
		usleep(10 * 1000);
	}

	/* A's node cancels: B sees its TLS connection reset */
	t0 = io_now_ms();
	cr_assert_eq(eventfd_write(f.a.cancel_fd, 1), 0);
	flow_join(&f, CANCEL_MS);
	cr_log_info("both relays ended %lld ms after the cancel", (long long)(io_now_ms() - t0));
	expect_end(&f.a, "A", RELAY_END_CANCELLED, 0);
	cr_assert_eq(f.b.st.end, RELAY_END_RESET, "relay B ended %d", f.b.st.end);
	cr_assert(f.b.st.err == -ECONNRESET || f.b.st.err == -EPIPE, "relay B: %s",
		  strerror(-f.b.st.err));

	join(c_out.thread, WAIT_MS);
	join(s_in.thread, WAIT_MS);
	cr_assert(c_out.err == -ECONNRESET || c_out.err == -EPIPE, "the client's send: %s",
		  strerror(-c_out.err));
	cr_assert_eq(s_in.err, -ECONNRESET, "the server's read: %s", s_in.err ?
		     strerror(-s_in.err) : "a clean EOF");
	flow_close(&f);
	expect_all_closed();
}

/* --- TLS 1.3 post-handshake messages -------------------------------------------------------- */

/*
 * The peer's side of the key update test, full duplex on its non-blocking socket: it sends
 * out[] with a key update it requests before every record, then close_notify, and reads
 * until close_notify, except for a first while in which it reads nothing, so that the
 * relay's writes into TLS stall while the requests come in.
 */
struct peer_run {
	SSL *ssl;
	const unsigned char *out;
	size_t out_len;
	size_t sent;
	bool write_pending;	/* SSL_write() asked to be called again with the same bytes */
	bool notify_sent;
	int key_updates;	/* requested */
	int answers;		/* key updates received */
	int64_t read_from;
	EVP_MD_CTX *in;
	size_t got;
	bool eof;
};

/* OpenSSL's message callback: counts the key updates the relay sends. */
static void peer_saw(int write_p, int version, int type, const void *buf, size_t len, SSL *ssl,
		     void *arg)
{
	struct peer_run *p = arg;
	const __u8 *msg = buf;

	if (!write_p && type == SSL3_RT_HANDSHAKE && len && msg[0] == SSL3_MT_KEY_UPDATE)
		p->answers++;
}

/* The event an SSL call that returned n <= 0 waits for. */
static short peer_wants(SSL *ssl, int n)
{
	int err = SSL_get_error(ssl, n);

	cr_assert(err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE,
		  "the peer's TLS failed (SSL error %d, %s, errno %s)", err,
		  ERR_reason_error_string(ERR_peek_last_error()), strerror(errno));
	return err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
}

static short peer_write(struct peer_run *p, bool *progress)
{
	size_t len = p->out_len - p->sent < RECORD ? p->out_len - p->sent : RECORD;
	int n;

	if (!len) {
		n = p->notify_sent ? 1 : SSL_shutdown(p->ssl);
		if (n < 0)
			return peer_wants(p->ssl, n);
		*progress |= !p->notify_sent;
		p->notify_sent = true;
		return 0;
	}
	if (!p->write_pending) {
		cr_assert_eq(SSL_key_update(p->ssl, SSL_KEY_UPDATE_REQUESTED), 1);
		p->key_updates++;
	}
	n = SSL_write(p->ssl, p->out + p->sent, (int)len);
	p->write_pending = n <= 0;
	if (n <= 0)
		return peer_wants(p->ssl, n);
	p->sent += n;
	*progress = true;
	return 0;
}

static short peer_read(struct peer_run *p, bool *progress)
{
	unsigned char buf[RECORD];
	int n;

	if (p->eof || io_now_ms() < p->read_from)
		return 0;
	n = SSL_read(p->ssl, buf, sizeof(buf));
	if (n > 0) {
		EVP_DigestUpdate(p->in, buf, n);
		p->got += n;
		*progress = true;
		return 0;
	}
	if (SSL_get_error(p->ssl, n) == SSL_ERROR_ZERO_RETURN) {
		p->eof = *progress = true;
		return 0;
	}
	return peer_wants(p->ssl, n);
}

static void peer_run(struct peer_run *p)
{
	int64_t deadline = io_now_ms() + 3 * WAIT_MS;

	while (!p->eof || !p->notify_sent) {
		struct pollfd pfd = { .fd = SSL_get_fd(p->ssl) };
		bool progress = false;

		pfd.events = peer_read(p, &progress);
		pfd.events |= peer_write(p, &progress);
		cr_assert_lt(io_now_ms(), deadline, "the peer's exchange timed out");
		poll(&pfd, 1, progress ? 0 : 20);
	}
}

Test(relay, key_updates_requested_while_the_relay_cannot_write_are_answered, .timeout = 120)
{
	const size_t len = 8 * MiB;
	struct flow f;
	struct stream c_out = { .len = len, .shut = true, .seed = 11 };
	struct stream c_in = { 0 };
	unsigned char *out = malloc(len);
	unsigned char md[SHA256_DIGEST_LENGTH], in_md[SHA256_DIGEST_LENGTH];
	struct peer_run p = { .out = out, .out_len = len, .in = EVP_MD_CTX_new() };
	__u64 x = 13;

	cr_assert(out && p.in && EVP_DigestInit_ex(p.in, EVP_sha256(), NULL));
	fill(out, len, &x);
	SHA256(out, len, md);
	flow_start(&f, &(struct flow_opts){ .peer = true });
	p.ssl = f.peer;
	SSL_set_mode(p.ssl, SSL_MODE_ENABLE_PARTIAL_WRITE);
	SSL_set_msg_callback(p.ssl, peer_saw);
	SSL_set_msg_callback_arg(p.ssl, &p);
	c_out.fd = c_in.fd = f.client;
	spawn(&c_out.thread, stream_send, &c_out);
	spawn(&c_in.thread, stream_recv, &c_in);

	p.read_from = io_now_ms() + 300;
	peer_run(&p);
	join(c_out.thread, WAIT_MS);
	join(c_in.thread, WAIT_MS);
	flow_join(&f, WAIT_MS);

	EVP_DigestFinal_ex(p.in, in_md, NULL);
	cr_assert_eq(c_out.err, 0, "the client's send: %s", strerror(-c_out.err));
	cr_assert_eq(p.got, len, "the peer received %zu bytes of %zu", p.got, len);
	cr_assert_eq(memcmp(in_md, c_out.md, sizeof(md)), 0, "client to peer: the bytes differ");
	cr_assert_eq(c_in.err, 0, "the client's read: %s", strerror(-c_in.err));
	cr_assert_eq(atomic_load(&c_in.moved), len);
	cr_assert_eq(memcmp(c_in.md, md, sizeof(md)), 0, "peer to client: the bytes differ");
	cr_log_info("the peer requested %d key updates and got %d", p.key_updates, p.answers);
	cr_assert_gt(p.answers, 0, "the relay answered none of %d key update requests",
		     p.key_updates);
	expect_end(&f.a, "A", RELAY_END_CLOSED, 0);
	expect_bytes(&f.a, "A", len, len);
	EVP_MD_CTX_free(p.in);
	free(out);
	flow_close(&f);
	expect_all_closed();
}

/* --- arguments ------------------------------------------------------------------------------ */

Test(relay, bad_arguments_are_refused_and_change_nothing)
{
	struct relay_stats st, before;
	SSL *bare = SSL_new(client_ctx);
	int c, s;

	cr_assert(bare);
	memset(&st, 0xa5, sizeof(st));
	before = st;
	tcp_pair(&c, &s, 0);
	cr_assert_eq(relay_run(-1, bare, -1, 0, &st), -EINVAL);
	cr_assert_eq(relay_run(c, NULL, -1, 0, &st), -EINVAL);
	cr_assert_eq(relay_run(c, bare, -1, 0, NULL), -EINVAL);
	cr_assert_eq(relay_run(c, bare, -1, (size_t)INT_MAX + 1, &st), -EINVAL);
	cr_assert_eq(relay_run(c, bare, -1, 0, &st), -EINVAL, "an SSL without a socket");
	cr_assert(SSL_set_fd(bare, s));
	cr_assert_eq(relay_run(c, bare, -1, 0, &st), -EINVAL, "an SSL before its handshake");
	cr_assert_eq(memcmp(&st, &before, sizeof(st)), 0, "the stats were written");
	cr_assert_eq(relay_abort(-1), -EBADF);
	SSL_free(bare);
	close(c);
	close(s);
	expect_all_closed();
}
