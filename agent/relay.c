// SPDX-License-Identifier: Apache-2.0
/*
 * One flow of the encrypted transport relayed between its plaintext socket
 * and its TLS connection (relay.h).
 *
 * Five pumps move the bytes: plaintext socket -> up -> SSL_write() -> out
 * -> TLS socket, and TLS socket -> SSL_read() -> down -> plaintext socket;
 * up and down are rings of buf_size bytes, out holds the TLS records
 * OpenSSL wrote. A pass runs each pump once; passes repeat while any pump
 * moves something, and only a pass in which every pump waited ends in a
 * blocking poll() for what they wait for. Deciding by trying rather than by
 * readiness is what keeps data from getting stuck inside OpenSSL:
 * SSL_read() may hold decrypted bytes (SSL_pending()) or whole records
 * (SSL_has_pending()) that the socket no longer signals.
 *
 * OpenSSL writes its records into out, a BIO of ours that always takes
 * everything, and never into the socket itself. With the socket's BIO, a
 * write that blocks stays pending inside OpenSSL, and OpenSSL 3.0 then
 * fails fatally ("bad length") when SSL_read() meets a second key update
 * request and writes the answer while the application write is pending:
 * any peer that requests key updates could break a flow whose sender
 * outpaces its network. With out, no OpenSSL write is ever pending; the
 * relay sends out itself, and writes into TLS only while out holds less than
 * a batch (RELAY_OUT_BATCH).
 */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>

#include "cleanup.h"
#include "log.h"
#include "tls.h"

enum {
	RELAY_BUF_DEFAULT = 64 * 1024,
	RELAY_OUT_BATCH = 64 * 1024,	/* TLS records gathered for one send() */
	RELAY_RECORD_MAX = 16 * 1024,	/* plaintext of one TLS record */
	RELAY_RECORD_OVERHEAD = 64,	/* a TLS 1.3 record's header, type and tag, rounded up */
	POLL_PLAIN = 0,		/* the slots of relay_loop()'s pollfd array */
	POLL_TLS,
	POLL_CANCEL,
	POLL_N,
};

/* Bytes on their way in one direction: a ring, head the oldest byte, len bytes held. */
struct relay_buf {
	char *data;
	size_t size;
	size_t head;
	size_t len;
};

/* TLS records written by OpenSSL, not yet sent: data[head, head + len), grown on demand. */
struct relay_out {
	char *data;
	size_t cap;
	size_t head;
	size_t len;
};

struct relay {
	int plain_fd;
	int tls_fd;
	SSL *ssl;
	BIO *sock_bio;		/* ssl's own write BIO, a reference held until it is put back */
	struct relay_buf up;	/* read from plain_fd, not yet written into TLS */
	struct relay_buf down;	/* read from TLS, not yet written to plain_fd */
	struct relay_out out;
	bool plain_eof;		/* plain_fd read 0 */
	bool notify_sent;	/* close_notify written after the last of up */
	bool tls_eof;		/* close_notify received */
	bool plain_shut;	/* SHUT_WR after the last of down: down is finished */
	bool plain_hup;		/* poll() said POLLHUP without an error */
	bool tls_hup;
	short plain_events;	/* what the pumps of the last pass wait for, per socket */
	short tls_events;
	__u64 plain_to_tls;
	__u64 tls_to_plain;
};

/* --- rings ------------------------------------------------------------------------------------ */

/* The held bytes that follow head without wrapping: what one write can take. */
static size_t buf_filled(const struct relay_buf *b, char **p)
{
	*p = b->data + b->head;
	return b->len < b->size - b->head ? b->len : b->size - b->head;
}

/* The free bytes after the held ones without wrapping: what one read can fill. */
static size_t buf_room(const struct relay_buf *b, char **p)
{
	size_t tail = (b->head + b->len) % b->size;

	*p = b->data + tail;
	if (b->len == b->size)
		return 0;
	return tail >= b->head ? b->size - tail : b->head - tail;
}

/*
 * An empty ring starts again at 0, for the longest reads. Safe for SSL_write()'s retry rule:
 * a write still to be retried holds its bytes in the ring, so it is never empty then.
 */
static void buf_consume(struct relay_buf *b, size_t n)
{
	b->head = (b->head + n) % b->size;
	b->len -= n;
	if (!b->len)
		b->head = 0;
}

/* --- out, OpenSSL's write BIO ----------------------------------------------------------------- */

/*
 * Takes every byte, growing out as needed: what bounds out is the relay, which writes into
 * TLS only while out is empty, and reads from TLS (whose key updates are answered into out)
 * only while out holds less than a ring.
 */
static int out_bio_write(BIO *bio, const char *in, int n)
{
	struct relay_out *o = BIO_get_data(bio);
	size_t cap = o->cap;
	char *data;

	if (n <= 0)
		return 0;
	if (o->head + o->len + n <= o->cap) {
		memcpy(o->data + o->head + o->len, in, n);
		o->len += n;
		return n;
	}
	if (o->head) {
		memmove(o->data, o->data + o->head, o->len);
		o->head = 0;
	}
	while (cap < o->len + n)
		cap = cap ? 2 * cap : 32 * 1024;
	data = cap > o->cap ? realloc(o->data, cap) : o->data;
	if (!data)
		return -1;	/* no retry flag: a fatal error of this TLS connection */
	o->data = data;
	o->cap = cap;
	memcpy(o->data + o->len, in, n);
	o->len += n;
	return n;
}

/* OpenSSL flushes after handshake messages: what it wrote is with the relay already. */
static long out_bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
	return cmd == BIO_CTRL_FLUSH;
}

static BIO_METHOD *out_method;

static void out_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "fedguard relay");

	if (m && (!BIO_meth_set_write(m, out_bio_write) || !BIO_meth_set_ctrl(m, out_bio_ctrl))) {
		BIO_meth_free(m);
		m = NULL;
	}
	out_method = m;
}

/* Makes OpenSSL write its records into r->out: 0 or -errno. */
static int out_attach(struct relay *r)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	BIO *bio;

	pthread_once(&once, out_method_init);
	bio = out_method ? BIO_new(out_method) : NULL;
	if (!bio)
		return -ENOMEM;
	BIO_set_data(bio, &r->out);
	BIO_set_init(bio, 1);
	/* SSL_set0_wbio() drops ssl's reference to the socket's BIO: ours keeps it alive */
	r->sock_bio = SSL_get_wbio(r->ssl);
	BIO_up_ref(r->sock_bio);
	SSL_set0_wbio(r->ssl, bio);
	return 0;
}

/* Gives ssl its own write BIO back, as relay_run() found it; frees out. */
static void out_detach(struct relay *r)
{
	SSL_set0_wbio(r->ssl, r->sock_bio);
	free(r->out.data);
	r->out = (struct relay_out){};
}

/* --- results of system and SSL calls ---------------------------------------------------------- */

/* errno after a failed send() or recv(): 0 to wait for event, 1 to retry at once, or -errno. */
static int sock_status(short event, short *events, const char *side)
{
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		*events |= event;
		return 0;
	}
	if (errno == EINTR)
		return 1;
	return log_debug_errno(-errno, "relay: %s socket", side);
}

/* Before each SSL call: SSL_get_error() reads the error queue, and errno for SYSCALL. */
static void tls_prepare(void)
{
	ERR_clear_error();
	errno = 0;
}

/*
 * What an SSL call that returned ret <= 0 means: 0 to wait for the event set in *events, 1
 * for a close_notify received (reading only), or the -errno of a failure.
 */
static int tls_status(SSL *ssl, int ret, bool reading, short *events)
{
	int saved = errno;

	switch (SSL_get_error(ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		*events |= POLLIN;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		*events |= POLLOUT;
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		if (reading)
			return 1;
		/* once close_notify came in, OpenSSL reports any failed write this way */
		return log_debug_errno(saved ? -saved : -EPIPE,
				       "relay: TLS write after close_notify");
	case SSL_ERROR_SYSCALL:
		if (saved)
			return log_debug_errno(-saved, "relay: TLS socket");
		break;
	default:
		break;
	}
	log_debug("relay: TLS failed: %s", tls_error());
	return -ECONNABORTED;
}

/* --- pumps: each returns 1 when it moved something, 0 when it waits, or -errno --------------- */

/* plain_fd -> up; what waits in out counts against up's size, so that it stays the bound */
static int pump_plain_read(struct relay *r)
{
	char *p;
	size_t room = buf_room(&r->up, &p);
	size_t held = r->up.len + r->out.len;
	ssize_t n;

	if (held >= r->up.size)
		return 0;
	if (room > r->up.size - held)
		room = r->up.size - held;
	if (r->plain_eof || !room)
		return 0;
	n = recv(r->plain_fd, p, room, 0);
	if (n < 0)
		return sock_status(POLLIN, &r->plain_events, "plaintext");
	if (n == 0)
		r->plain_eof = true;
	r->up.len += n;
	return 1;
}

/*
 * Ends the plaintext-to-TLS direction with close_notify. TLS 1.3 lets this side go on reading
 * after it, which is what a half-closed TCP connection needs. SSL_shutdown() refuses to run
 * part-way through a post-handshake message, which SSL_do_handshake() finishes first.
 */
static int tls_send_notify(struct relay *r)
{
	int n;

	if (SSL_in_init(r->ssl)) {
		tls_prepare();
		n = SSL_do_handshake(r->ssl);
		if (n != 1)
			return tls_status(r->ssl, n, false, &r->tls_events);
	}
	tls_prepare();
	n = SSL_shutdown(r->ssl);
	if (n < 0)
		return tls_status(r->ssl, n, false, &r->tls_events);
	r->notify_sent = true;
	return 1;
}

/*
 * Whether one more record of len bytes goes into out before it is sent: several records per
 * send(), as one send() of each 16 KiB record was most of the relay's time
 * (docs/BENCHMARKS.md), but never past a ring's worth, where pump_tls_read() would stop
 * reading TLS (and two relays doing so at once would wait for each other).
 */
static bool out_takes_another(const struct relay *r, size_t len)
{
	size_t record = (len < RELAY_RECORD_MAX ? len : RELAY_RECORD_MAX) + RELAY_RECORD_OVERHEAD;

	return r->out.len < RELAY_OUT_BATCH && r->out.len + record <= r->up.size;
}

/*
 * up -> out through SSL_write(), one record per call (SSL_MODE_ENABLE_PARTIAL_WRITE), starting
 * once out is empty and going on while out_takes_another(), then close_notify. A write
 * OpenSSL asks to retry (WANT_READ, mid-way through a post-handshake message) is retried with
 * the same bytes at the same address, and as many or more of them, as SSL_write() requires:
 * they stay at the head of the ring until it takes them.
 */
static int pump_tls_write(struct relay *r)
{
	char *p;
	size_t len = buf_filled(&r->up, &p);
	int n, moved = 0;

	if (r->out.len || (!len && (!r->plain_eof || r->notify_sent)))
		return 0;
	if (!len)
		return tls_send_notify(r);
	do {
		tls_prepare();
		n = SSL_write(r->ssl, p, (int)len);
		if (n <= 0)
			return moved ? 1 : tls_status(r->ssl, n, false, &r->tls_events);
		buf_consume(&r->up, n);
		r->plain_to_tls += n;
		moved = 1;
		len = buf_filled(&r->up, &p);
	} while (len && out_takes_another(r, len));
	return moved;
}

/* out -> TLS socket */
static int pump_tls_send(struct relay *r)
{
	ssize_t n;

	if (!r->out.len)
		return 0;
	n = send(r->tls_fd, r->out.data + r->out.head, r->out.len, MSG_NOSIGNAL);
	if (n < 0)
		return sock_status(POLLOUT, &r->tls_events, "TLS");
	r->out.head += n;
	r->out.len -= n;
	if (!r->out.len)
		r->out.head = 0;
	return 1;
}

/*
 * TLS -> down; called whenever down has room, so bytes OpenSSL holds are never left there.
 * Not while out holds more than a ring's worth: only a peer flooding post-handshake messages
 * (each answered into out) gets there, and reading on would let out grow without bound.
 */
static int pump_tls_read(struct relay *r)
{
	char *p;
	size_t room = buf_room(&r->down, &p);
	int n;

	if (r->tls_eof || !room || r->out.len > r->up.size)
		return 0;
	tls_prepare();
	n = SSL_read(r->ssl, p, (int)room);
	if (n > 0) {
		r->down.len += n;
		return 1;
	}
	n = tls_status(r->ssl, n, true, &r->tls_events);
	if (n > 0)
		r->tls_eof = true;
	return n;
}

/* down -> plain_fd, then SHUT_WR once close_notify came and down is empty */
static int pump_plain_write(struct relay *r)
{
	char *p;
	size_t len = buf_filled(&r->down, &p);
	ssize_t n;

	if (!len) {
		if (!r->tls_eof || r->plain_shut)
			return 0;
		if (shutdown(r->plain_fd, SHUT_WR) < 0)
			return log_debug_errno(-errno, "relay: plaintext shutdown");
		r->plain_shut = true;
		return 1;
	}
	n = send(r->plain_fd, p, len, MSG_NOSIGNAL);
	if (n < 0)
		return sock_status(POLLOUT, &r->plain_events, "plaintext");
	buf_consume(&r->down, n);
	r->tls_to_plain += n;
	return 1;
}

/*
 * Runs each pump once: 1 when any moved something, 0 when all wait, or a pump's -errno.
 * Sending out comes last, so that what SSL_read() wrote (the answer to a key update) leaves
 * in the same pass, or the pass waits for POLLOUT to send it.
 */
static int relay_pass(struct relay *r)
{
	static int (*const pumps[])(struct relay *) = {
		pump_plain_read, pump_tls_write, pump_tls_read, pump_plain_write, pump_tls_send,
	};
	int progress = 0;

	r->plain_events = 0;
	r->tls_events = 0;
	for (size_t i = 0; i < sizeof(pumps) / sizeof(pumps[0]); i++) {
		int ret = pumps[i](r);

		if (ret < 0)
			return ret;
		progress |= ret;
	}
	return progress;
}

/* --- the loop --------------------------------------------------------------------------------- */

/*
 * A socket no pump waits on is still polled, for its errors: a reset while nothing flows is
 * passed on at once. But POLLHUP without an error stays set and would make poll() spin, so
 * a hung-up socket is polled only while a pump waits on it.
 */
static void poll_set(struct pollfd *pfd, int fd, short events, bool hup)
{
	pfd->fd = events || !hup ? fd : -1;
	pfd->events = events;
	pfd->revents = 0;
}

/* What poll() said of one of the two sockets: 0, or the -errno it failed with. */
static int poll_check(const struct pollfd *pfd, bool *hup, const char *side)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (pfd->revents & POLLNVAL)
		return -EBADF;
	if (pfd->revents & POLLERR) {
		if (getsockopt(pfd->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err)
			return log_debug_errno(-err, "relay: %s socket", side);
	}
	if (pfd->revents & POLLHUP)
		*hup = true;
	return 0;
}

/* Relays until the end: RELAY_END_CLOSED, RELAY_END_CANCELLED, or the -errno of a reset. */
static int relay_loop(struct relay *r, int cancel_fd)
{
	struct pollfd pfd[POLL_N] = { [POLL_CANCEL] = { .fd = cancel_fd, .events = POLLIN } };
	int progress, n;

	for (;;) {
		progress = relay_pass(r);
		if (progress < 0)
			return progress;
		if (r->notify_sent && !r->out.len && r->plain_shut)
			return RELAY_END_CLOSED;

		/* after a pass that moved bytes, a poll() that does not wait: a cancel is seen
		 * even while data never stops */
		poll_set(&pfd[POLL_PLAIN], r->plain_fd, r->plain_events, r->plain_hup);
		poll_set(&pfd[POLL_TLS], r->tls_fd, r->tls_events, r->tls_hup);
		n = poll(pfd, POLL_N, progress ? 0 : -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (pfd[POLL_CANCEL].revents & POLLNVAL)
			return -EBADF;
		if (pfd[POLL_CANCEL].revents)
			return RELAY_END_CANCELLED;
		n = poll_check(&pfd[POLL_PLAIN], &r->plain_hup, "plaintext");
		if (!n)
			n = poll_check(&pfd[POLL_TLS], &r->tls_hup, "TLS");
		if (n < 0)
			return n;
	}
}

/* --- set-up ----------------------------------------------------------------------------------- */

static int set_nonblock(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/*
 * Checks ssl, puts both sockets into non-blocking mode, sets ssl up for the relay: 0 or
 * -errno. kTLS is refused: its records are the kernel's to write, not out's.
 */
static int relay_setup(struct relay *r, int plain_fd, SSL *ssl)
{
	int tls_fd = SSL_get_fd(ssl);
	int ret;

	if (tls_fd < 0 || SSL_get_wfd(ssl) != tls_fd || !SSL_is_init_finished(ssl) ||
	    BIO_get_ktls_send(SSL_get_wbio(ssl)))
		return -EINVAL;
	ret = set_nonblock(plain_fd);
	if (!ret)
		ret = set_nonblock(tls_fd);
	if (ret)
		return ret;
	r->plain_fd = plain_fd;
	r->tls_fd = tls_fd;
	r->ssl = ssl;
	ret = out_attach(r);
	if (ret)
		return ret;
	SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_clear_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	return 0;
}

/* How the flow ended, into *st; after a reset or a cancel, both sockets reset on close. */
static void relay_finish(struct relay *r, int ret, struct relay_stats *st)
{
	*st = (struct relay_stats){ .plain_to_tls = r->plain_to_tls,
				    .tls_to_plain = r->tls_to_plain };
	if (ret == RELAY_END_CLOSED) {
		st->end = RELAY_END_CLOSED;
	} else {
		/* the failed side is broken too: a FIN on it would look like an orderly end */
		relay_abort(r->plain_fd);
		relay_abort(r->tls_fd);
		st->end = ret > 0 ? ret : RELAY_END_RESET;
		st->err = ret > 0 ? 0 : ret;
	}
	log_debug("relay: ended %d (%d), %llu bytes into TLS, %llu out of it", st->end, st->err,
		  (unsigned long long)st->plain_to_tls, (unsigned long long)st->tls_to_plain);
}

int relay_run(int plain_fd, SSL *ssl, int cancel_fd, size_t buf_size, struct relay_stats *st)
{
	_cleanup_free_ char *up = NULL;
	_cleanup_free_ char *down = NULL;
	struct relay r = {};
	int ret;

	if (plain_fd < 0 || !ssl || !st || buf_size > INT_MAX)
		return -EINVAL;
	buf_size = buf_size ? buf_size : RELAY_BUF_DEFAULT;
	up = malloc(buf_size);
	down = malloc(buf_size);
	if (!up || !down)
		return -ENOMEM;
	r.up = (struct relay_buf){ .data = up, .size = buf_size };
	r.down = (struct relay_buf){ .data = down, .size = buf_size };
	ret = relay_setup(&r, plain_fd, ssl);
	if (ret)
		return ret;

	ret = relay_loop(&r, cancel_fd);

	out_detach(&r);
	relay_finish(&r, ret, st);
	return 0;
}

int relay_abort(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
		return -errno;
	return 0;
}
