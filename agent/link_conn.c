// SPDX-License-Identifier: Apache-2.0
/*
 * One link connection on the wire (the protocol is described in link.h):
 * connect or accept, TLS 1.3 with ALPN, the peer's chain, admission, the
 * hellos, then frames both ways until the end. Runs on the connection's
 * own thread, the only one that touches its socket and SSL. Reading and
 * writing are interleaved in one poll loop, never a blocking write: two
 * peers that send each other large messages at once both keep reading, and
 * a peer that reads nothing is cut after the dead time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "auth.h"
#include "cleanup.h"
#include "io.h"
#include "json_strict.h"
#include "link_int.h"
#include "ssl_cleanup.h"
#include "svid.h"
#include "svids.h"
#include "tls.h"

enum {
	IN_CHUNK = 64 * 1024,	/* the input buffer's usual size */
	WBUF_MAX = 16 * 1024,	/* small frames are written together, up to this */
	READ_BUDGET = 4 << 20,	/* bytes read in a row before the loop looks at the rest */
	WRITE_BUDGET = 4 << 20,
	GOODBYE_MS = 200,	/* what the last frames may take at the end */
	GOODBYE_MAX = 255,	/* bytes of a goodbye's reason, sent or shown */
	JSON_DEPTH = 32,
	COARSE_MS = 10,		/* more than a tick of the coarse clock behind time() */
};

/* What one connection's thread knows of it. */
struct session {
	struct link_conn *c;
	const struct link_config *cfg;
	int fd;
	SSL *ssl;
	bool broken;			/* TLS failed: no shutdown */
	struct svids_cred *cred;	/* the node SVID presented */
	struct auth_trust *trust;	/* what the peer is validated with */
	int64_t deadline;		/* of connect, TLS and the peer's hello */
	char peer_id[SPIFFE_ID_MAX + 1];
	char peer_td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	time_t not_after;		/* the earliest of both chains */
	bool up;			/* the peer's hello arrived */
	bool goodbye;			/* tell the peer why we end */
	bool redial;
	bool read_more;			/* stopped with data left: read on at once */
	bool r_blocked, w_blocked;	/* SSL_read or SSL_write waits for POLLOUT */
	unsigned char *in;		/* received bytes not yet handled */
	size_t in_len, in_cap;
	unsigned char wbuf[WBUF_MAX];	/* the chunk being written: small frames */
	struct link_frame *wbig;	/* or one large frame */
	size_t w_len, w_off;		/* of the chunk; w_len 0: none */
	size_t w_frames;		/* bytes of outbox frames in the chunk */
	unsigned int w_msgs;
	int64_t last_rx, last_tx;
	int64_t w_since;		/* the chunk's last progress */
	int64_t next_cred_check;
	char why[LINK_WHY_MAX];
};

/* Ends the session for a cause the peer is told of. */
__attribute__((format(printf, 2, 3))) static int fail(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->why, sizeof(s->why), fmt, ap);
	va_end(ap);
	s->goodbye = true;
	return -EPROTO;
}

/* Ends the session because the connection is gone or never was: nothing to tell. */
__attribute__((format(printf, 2, 3))) static int lost(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->why, sizeof(s->why), fmt, ap);
	va_end(ap);
	s->goodbye = false;
	return -ECONNRESET;
}

/* Milliseconds from now until wall-clock time t (negative when past). */
static int64_t ms_until(time_t t)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)t * 1000 - ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static const char *ms_str(unsigned int ms, char *buf, size_t len)
{
	if (ms % 1000 == 0)
		snprintf(buf, len, "%u s", ms / 1000);
	else
		snprintf(buf, len, "%u ms", ms);
	return buf;
}

/* --- TLS contexts ---------------------------------------------------------------------------- */

static bool is_link_alpn(const unsigned char *p, unsigned int len)
{
	return len == strlen(LINK_ALPN) && memcmp(p, LINK_ALPN, len) == 0;
}

/* The server takes "fedguard-link/1" from the client's list, or ends the handshake. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	struct session *s = SSL_get_app_data(ssl);

	for (unsigned int i = 0; i < inlen; i += 1u + in[i]) {
		if (i + 1u + in[i] <= inlen && is_link_alpn(in + i + 1, in[i])) {
			*out = in + i + 1;
			*outlen = in[i];
			return SSL_TLSEXT_ERR_OK;
		}
	}
	lost(s, "the client does not offer '%s' (ALPN)", LINK_ALPN);
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static SSL_CTX *ctx_new(const SSL_METHOD *method)
{
	SSL_CTX *c = tls_ctx_svid(method);

	if (!c)
		return NULL;
	/* partial writes: the loop goes on reading while a large frame goes out */
	SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				    SSL_MODE_RELEASE_BUFFERS);
	/* connections are long-lived: nothing to resume */
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
	return c;
}

int link_tls_init(struct link_engine *e, char *why, size_t why_len)
{
	static const unsigned char alpn[] = "\x0f" LINK_ALPN;

	e->client_ctx = ctx_new(TLS_client_method());
	e->server_ctx = ctx_new(TLS_server_method());
	/* SSL_CTX_set_alpn_protos() returns 0 on success */
	if (!e->client_ctx || !e->server_ctx ||
	    SSL_CTX_set_alpn_protos(e->client_ctx, alpn, sizeof(alpn) - 1) != 0) {
		snprintf(why, why_len, "no TLS 1.3 context: %s", tls_error());
		return -ENOMEM;
	}
	SSL_CTX_set_alpn_select_cb(e->server_ctx, select_alpn, NULL);
	SSL_CTX_set_num_tickets(e->server_ctx, 0);
	return 0;
}

void link_tls_free(struct link_engine *e)
{
	SSL_CTX_free(e->client_ctx);
	SSL_CTX_free(e->server_ctx);
}

/* --- waiting --------------------------------------------------------------------------------- */

/*
 * Waits until the socket is ready for events: 0, -ETIMEDOUT at deadline,
 * or -ECANCELED when a close was asked for (its reason in why).
 */
static int conn_wait(struct session *s, short events, int64_t deadline)
{
	struct pollfd p[2] = { { .fd = s->fd, .events = events },
			       { .fd = s->c->wake_fd, .events = POLLIN } };

	for (;;) {
		int64_t left = deadline - io_now_ms();
		int n;

		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(p, 2, (int)left);
		if (n < 0 && errno != EINTR)
			return lost(s, "poll: %m");
		if (n > 0 && p[1].revents && link_conn_close_asked(s->c, s->why, sizeof(s->why))) {
			s->goodbye = true;
			return -ECANCELED;
		}
		if (n > 0 && p[0].revents)
			return 0;
	}
}

/* --- connecting ------------------------------------------------------------------------------ */

static int bind_source(struct session *s)
{
	const struct link_config *cfg = s->cfg;
	char addr[LINK_ADDR_MAX];
	int one = 1;

	if (!cfg->source_len || cfg->source.ss_family != s->c->addr.ss_family)
		return 0;
	setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (bind(s->fd, (const struct sockaddr *)&cfg->source, cfg->source_len))
		return lost(s, "cannot dial from %s: %m",
			    link_addr_str((const struct sockaddr *)&cfg->source, addr));
	return 0;
}

static int dial_connect(struct session *s)
{
	const struct sockaddr *to = (const struct sockaddr *)&s->c->addr;
	char addr[LINK_ADDR_MAX];
	socklen_t elen = sizeof(int);
	int err = 0, r;

	link_addr_str(to, addr);
	s->fd = socket(to->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return lost(s, "socket: %m");
	r = bind_source(s);
	if (r)
		return r;
	if (connect(s->fd, to, s->c->addr_len) && errno != EINPROGRESS)
		return lost(s, "connect to %s: %m", addr);
	r = conn_wait(s, POLLOUT, s->deadline);
	if (r == -ETIMEDOUT)
		return lost(s, "connect to %s: timed out", addr);
	if (r)
		return r;
	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err)
		return lost(s, "connect to %s: %s", addr, strerror(err));
	return 0;
}

/* The SSL of the connection, presenting the node SVID. */
static int tls_new(struct session *s, SSL_CTX *ctx)
{
	s->ssl = SSL_new(ctx);
	if (!s->ssl || SSL_set_fd(s->ssl, s->fd) != 1)
		return lost(s, "no TLS connection: %s", tls_error());
	SSL_set_app_data(s->ssl, s);
	if (SSL_use_cert_and_key(s->ssl, s->cred->cert, s->cred->key, s->cred->chain, 1) != 1)
		return lost(s, "cannot present the SVID of '%s': %s", s->cred->spiffe_id,
			    tls_error());
	return 0;
}

static int tls_handshake(struct session *s)
{
	char t[32];

	for (;;) {
		int n, err, r;

		ERR_clear_error();
		n = SSL_do_handshake(s->ssl);
		if (n == 1)
			return 0;
		err = SSL_get_error(s->ssl, n);
		if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
			s->broken = true;
			if (s->why[0])	/* select_alpn() said why */
				return -ECONNABORTED;
			return lost(s, "TLS handshake: %s", tls_error());
		}
		r = conn_wait(s, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, s->deadline);
		if (r == -ETIMEDOUT)
			return lost(s, "TLS handshake: timed out after %s",
				    ms_str(s->cfg->handshake_ms, t, sizeof(t)));
		if (r)
			return r;
	}
}

static int check_alpn(struct session *s)
{
	const unsigned char *p;
	unsigned int len;

	SSL_get0_alpn_selected(s->ssl, &p, &len);
	if (is_link_alpn(p, len))
		return 0;
	if (s->c->dir == LINK_OUT)
		return lost(s, "the server does not speak '%s' (ALPN)", LINK_ALPN);
	return lost(s, "the client does not offer '%s' (ALPN)", LINK_ALPN);
}

static int dial(struct session *s)
{
	int r = dial_connect(s);

	if (!r)
		r = tls_new(s, s->c->e->client_ctx);
	if (r)
		return r;
	SSL_set_connect_state(s->ssl);
	r = tls_handshake(s);
	return r ? r : check_alpn(s);
}

static int accept_tls(struct session *s)
{
	int r = tls_new(s, s->c->e->server_ctx);

	if (r)
		return r;
	SSL_set_accept_state(s->ssl);
	r = tls_handshake(s);
	return r ? r : check_alpn(s);
}

/* --- who the peer is ------------------------------------------------------------------------- */

/* The peer's SVID, validated with its own trust domain's authorities only. */
static int verify_peer(struct session *s)
{
	_cleanup_x509_stack_ STACK_OF(X509) *chain = tls_peer_chain(s->ssl);
	char why[SVID_WHY_MAX], id[SPIFFE_ID_MAX + 1];
	struct svid_result res;
	int r;

	if (!chain)
		return fail(s, "the peer presented no certificate");
	if (!s->trust)
		return fail(s, "no trust bundles");
	r = svid_verify(chain, auth_trust_svid(s->trust), s->c->expected, time(NULL), &res, why,
			sizeof(why));
	if (r != SVID_OK) {
		if (svid_cert_spiffe_id(sk_X509_value(chain, 0), id, sizeof(id)))
			return fail(s, "the peer's SVID is rejected (%s): %s",
				    r > 0 ? svid_reason_name(r) : strerror(-r), why);
		return fail(s, "the SVID of '%s' is rejected (%s): %s", id,
			    r > 0 ? svid_reason_name(r) : strerror(-r), why);
	}
	snprintf(s->peer_id, sizeof(s->peer_id), "%s", res.spiffe_id);
	snprintf(s->peer_td, sizeof(s->peer_td), "%s", res.td);
	s->not_after = res.not_after < s->cred->not_after ? res.not_after : s->cred->not_after;
	r = link_conn_verified(s->c, s->peer_id, s->peer_td, s->why, sizeof(s->why));
	if (r)
		s->goodbye = true;
	return r;
}

static struct link_peer peer_of(const struct session *s)
{
	return (struct link_peer){ .id = s->c->id, .dir = s->c->dir, .spiffe_id = s->peer_id,
				   .td = s->peer_td, .addr = (const struct sockaddr *)&s->c->addr,
				   .addr_len = s->c->addr_len };
}

static int admit_peer(struct session *s)
{
	struct link_peer p = peer_of(s);
	char why[LINK_WHY_MAX] = "";

	if (s->cfg->admit(s->cfg->ctx, &p, why, sizeof(why)))
		return 0;
	return fail(s, "not admitted: %s", why[0] ? why : "no reason given");
}

/* --- writing --------------------------------------------------------------------------------- */

static bool chunk_pending(const struct session *s)
{
	return s->w_len > 0;
}

/* Makes frame (not of the outbox: the hello) the chunk to write. */
static void chunk_set(struct session *s, struct link_frame *frame)
{
	s->wbig = frame;
	s->w_len = frame->len;
	s->w_off = 0;
	s->w_frames = 0;
	s->w_msgs = 0;
	s->w_since = io_now_ms();
}

/* The next chunk from the outbox: whether there is one. */
static bool chunk_fill(struct session *s)
{
	struct link_frame *big;
	unsigned int msgs;
	size_t n = link_conn_take(s->c, s->wbuf, sizeof(s->wbuf), &big, &msgs);

	if (!n)
		return false;
	s->wbig = big;
	s->w_len = n;
	s->w_off = 0;
	s->w_frames = n;
	s->w_msgs = msgs;
	s->w_since = io_now_ms();
	return true;
}

static void chunk_done(struct session *s, int64_t now)
{
	link_conn_written(s->c, s->w_frames, s->w_msgs, s->w_len);
	free(s->wbig);
	s->wbig = NULL;
	s->w_len = s->w_off = 0;
	s->last_tx = now;
}

static void put_header(unsigned char *p, enum link_frame_type type, size_t len)
{
	__u32 n = (__u32)len + 1;

	p[0] = (unsigned char)(n >> 24);
	p[1] = (unsigned char)(n >> 16);
	p[2] = (unsigned char)(n >> 8);
	p[3] = (unsigned char)n;
	p[4] = (unsigned char)type;
}

static void queue_ping(struct session *s)
{
	put_header(s->wbuf, LINK_FRAME_PING, 0);
	s->w_len = LINK_HEADER;
	s->w_off = 0;
	s->w_frames = 0;
	s->w_msgs = 0;
	s->w_since = io_now_ms();
}

static int io_error(struct session *s, int n, bool *blocked)
{
	int err = SSL_get_error(s->ssl, n);

	if (err == SSL_ERROR_WANT_READ)
		return 0;
	if (err == SSL_ERROR_WANT_WRITE) {
		*blocked = true;
		return 0;
	}
	s->broken = err != SSL_ERROR_ZERO_RETURN;
	if (err == SSL_ERROR_ZERO_RETURN)
		return lost(s, "closed by the peer without a goodbye");
	if (err == SSL_ERROR_SYSCALL && errno)
		return lost(s, "connection lost: %m");
	return lost(s, "connection lost: %s", tls_error());
}

/* Writes what the socket takes, up to WRITE_BUDGET bytes. */
static int write_some(struct session *s)
{
	size_t budget = WRITE_BUDGET;

	s->w_blocked = false;
	while (budget) {
		const unsigned char *p;
		int n;

		if (!chunk_pending(s) && !chunk_fill(s))
			return 0;
		p = s->wbig ? s->wbig->data : s->wbuf;
		ERR_clear_error();
		errno = 0;	/* io_error() reads it for SSL_ERROR_SYSCALL */
		n = SSL_write(s->ssl, p + s->w_off, (int)(s->w_len - s->w_off));
		if (n <= 0)
			return io_error(s, n, &s->w_blocked);
		s->w_off += (size_t)n;
		s->w_since = io_now_ms();
		budget -= (size_t)n < budget ? (size_t)n : budget;
		if (s->w_off == s->w_len)
			chunk_done(s, s->w_since);
	}
	return 0;
}

/* --- reading --------------------------------------------------------------------------------- */

static __u32 get_be32(const unsigned char *p)
{
	return (__u32)p[0] << 24 | (__u32)p[1] << 16 | (__u32)p[2] << 8 | p[3];
}

/* A hello's or message's payload, checked: a JSON object, as a NUL-terminated copy. */
static int take_json(struct session *s, const char *what, const unsigned char *p, size_t len,
		     char **out)
{
	struct json_object *obj = NULL;
	char why[256];
	bool object;
	char *text;

	if (memchr(p, 0, len))
		return fail(s, "malformed %s: a NUL byte", what);
	if (json_strict_parse((const char *)p, len, JSON_DEPTH, &obj, why, sizeof(why)))
		return fail(s, "malformed %s: %s", what, why);
	object = json_object_is_type(obj, json_type_object);
	json_object_put(obj);
	if (!object)
		return fail(s, "malformed %s: not a JSON object", what);
	text = malloc(len + 1);
	if (!text)
		return fail(s, "out of memory for a %s of %zu bytes", what, len);
	memcpy(text, p, len);
	text[len] = 0;
	*out = text;
	return 0;
}

/* The peer's reason, as printable text. */
static int peer_goodbye(struct session *s, const unsigned char *p, size_t len)
{
	char reason[GOODBYE_MAX + 1];
	size_t n = len < GOODBYE_MAX ? len : GOODBYE_MAX;

	for (size_t i = 0; i < n; i++)
		reason[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
	reason[n] = 0;
	if (!n)
		return lost(s, "closed by the peer");
	return lost(s, "closed by the peer: %s", reason);
}

static int handle_frame(struct session *s, unsigned char type, const unsigned char *p, size_t len)
{
	char *text;
	int r;

	if (type == LINK_FRAME_GOODBYE)
		return peer_goodbye(s, p, len);
	if (type == LINK_FRAME_HELLO) {
		if (s->up)
			return fail(s, "a second hello");
		r = take_json(s, "hello", p, len, &text);
		if (r)
			return r;
		link_conn_up(s->c, text, s->not_after);
		s->up = true;
		return 0;
	}
	if (!s->up)
		return fail(s, "a %s before the hello",
			    type == LINK_FRAME_PING ? "ping" : "message");
	if (type == LINK_FRAME_PING)
		return len ? fail(s, "malformed ping: a payload of %zu bytes", len) : 0;
	r = take_json(s, "message", p, len, &text);
	if (!r)
		link_conn_message(s->c, text, len);
	return r;
}

/* Handles the whole frames received; checks the header of the next one. */
static int parse_frames(struct session *s)
{
	size_t off = 0;
	int r = 0;

	while (!r && s->in_len - off >= LINK_HEADER) {
		const unsigned char *h = s->in + off;
		__u32 len = get_be32(h);

		if (len == 0)
			return fail(s, "malformed frame: length 0");
		if (len - 1 > s->cfg->frame_max)
			return fail(s, "a frame of %u bytes, over the limit of %zu", len - 1,
				    s->cfg->frame_max);
		if (h[4] > LINK_FRAME_GOODBYE)
			return fail(s, "a frame of unknown type %u", h[4]);
		if (s->in_len - off < 4 + (size_t)len)
			break;
		r = handle_frame(s, h[4], h + LINK_HEADER, len - 1);
		off += 4 + (size_t)len;
	}
	memmove(s->in, s->in + off, s->in_len - off);
	s->in_len -= off;
	return r;
}

/*
 * Room in the input buffer for the frame at hand (its header was checked by
 * parse_frames()), or IN_CHUNK; a large frame's buffer shrinks back to
 * IN_CHUNK once it is handled. Complete frames never stay in the buffer, so
 * what is needed is always more than what it holds.
 */
static int in_reserve(struct session *s)
{
	size_t need = IN_CHUNK;
	unsigned char *grown;

	if (s->in_len >= LINK_HEADER && 4 + (size_t)get_be32(s->in) > need)
		need = 4 + (size_t)get_be32(s->in);
	if (s->in_cap >= need && (s->in_cap == IN_CHUNK || need > IN_CHUNK))
		return 0;
	grown = realloc(s->in, need);
	if (!grown)
		return fail(s, "out of memory for a frame of %zu bytes", need);
	s->in = grown;
	s->in_cap = need;
	return 0;
}

/* Reads what has arrived, up to READ_BUDGET bytes, and handles its frames. */
static int read_some(struct session *s)
{
	size_t got = 0;

	s->read_more = false;
	s->r_blocked = false;
	while (got < READ_BUDGET) {
		int n, r = in_reserve(s);

		if (r)
			return r;
		ERR_clear_error();
		errno = 0;
		n = SSL_read(s->ssl, s->in + s->in_len, (int)(s->in_cap - s->in_len));
		if (n <= 0)
			return io_error(s, n, &s->r_blocked);
		s->in_len += (size_t)n;
		got += (size_t)n;
		s->last_rx = io_now_ms();
		link_conn_received(s->c, (size_t)n, s->last_rx);
		r = parse_frames(s);
		if (r)
			return r;
	}
	s->read_more = true;
	return 0;
}

/* --- running --------------------------------------------------------------------------------- */

static int queue_hello(struct session *s)
{
	struct link_peer p = peer_of(s);
	_cleanup_free_ char *text = s->cfg->hello ? s->cfg->hello(s->cfg->ctx, &p) : strdup("{}");
	struct link_frame *frame;
	size_t len;

	if (!text)
		return fail(s, "the application has no hello for this peer");
	len = strlen(text);
	if (len > s->cfg->frame_max)
		return fail(s, "the application's hello of %zu bytes is over the frame limit (%zu)",
			    len, s->cfg->frame_max);
	frame = link_frame_new(LINK_FRAME_HELLO, text, len);
	if (!frame)
		return fail(s, "out of memory for the hello");
	chunk_set(s, frame);
	return 0;
}

/* Whether the node SVID presented was renewed since. */
static bool cred_renewed(struct session *s)
{
	struct svids *svids = s->cfg->svids;
	_cleanup_svids_cred_ struct svids_cred *now = svids_get(svids, svids_node_id(svids));

	return now && now->serial != s->cred->serial;
}

/* The deadlines: a hello, the dead time, a stalled write, the SVIDs' end, renewal, pings. */
static int check_timers(struct session *s, int64_t now)
{
	unsigned int dead = s->cfg->dead_ms;
	char t[32];

	if (!s->up && now >= s->deadline)
		return fail(s, "no hello from the peer within %s",
			    ms_str(s->cfg->handshake_ms, t, sizeof(t)));
	if (now - s->last_rx >= dead)
		return fail(s, "silent for %s", ms_str(dead, t, sizeof(t)));
	if (chunk_pending(s) && now - s->w_since >= dead)
		return fail(s, "the peer has read nothing for %s", ms_str(dead, t, sizeof(t)));
	/*
	 * By time(), the clock svid_verify() is given, so that a redial after
	 * this is refused: glibc's time() is the coarse clock, a tick behind.
	 */
	if (time(NULL) >= s->not_after) {
		s->redial = true;
		return fail(s, "the SVIDs expire (the earliest notAfter of both chains)");
	}
	if (now >= s->next_cred_check) {
		s->next_cred_check = now + s->cfg->heartbeat_ms;
		if (cred_renewed(s)) {
			s->redial = true;
			return fail(s, "the node SVID of '%s' was renewed", s->cred->spiffe_id);
		}
	}
	if (!chunk_pending(s) && now - s->last_tx >= s->cfg->heartbeat_ms && !chunk_fill(s))
		queue_ping(s);
	return 0;
}

static int64_t earliest(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* How long the loop may wait for the socket: until the next deadline. */
static int poll_timeout(const struct session *s, int64_t now)
{
	int64_t until_end = ms_until(s->not_after);
	int64_t next = earliest(s->last_rx + s->cfg->dead_ms,
				now + (until_end > 0 ? until_end : 0) + COARSE_MS);

	if (s->read_more || (chunk_pending(s) && !s->w_blocked))
		return 0;
	next = earliest(next, s->next_cred_check);
	if (!s->up)
		next = earliest(next, s->deadline);
	if (chunk_pending(s))
		next = earliest(next, s->w_since + s->cfg->dead_ms);
	else
		next = earliest(next, s->last_tx + s->cfg->heartbeat_ms);
	return next <= now ? 0 : (int)earliest(next - now, 60000);
}

static int poll_once(struct session *s)
{
	bool out = s->w_blocked || s->r_blocked;
	struct pollfd p[2] = { { .fd = s->fd, .events = POLLIN | (out ? POLLOUT : 0) },
			       { .fd = s->c->wake_fd, .events = POLLIN } };
	int n = poll(p, 2, poll_timeout(s, io_now_ms()));

	if (n < 0)
		return errno == EINTR ? 0 : lost(s, "poll: %m");
	if (p[1].revents && link_conn_close_asked(s->c, s->why, sizeof(s->why))) {
		s->goodbye = true;
		return -ECANCELED;
	}
	if (p[0].revents || s->read_more)
		return read_some(s);
	return 0;
}

/* The peer's hello, then frames both ways, until something ends the connection. */
static int run(struct session *s)
{
	int64_t now = io_now_ms();
	int r;

	s->last_rx = s->last_tx = now;
	s->next_cred_check = now + s->cfg->heartbeat_ms;
	for (;;) {
		r = check_timers(s, io_now_ms());
		if (!r)
			r = write_some(s);
		if (!r)
			r = poll_once(s);
		if (r)
			return r;
	}
}

/* --- beginning and end ----------------------------------------------------------------------- */

static int session_begin(struct session *s)
{
	struct svids *svids = s->cfg->svids;

	if (!link_conn_begin(s->c, &s->trust))
		return -ESHUTDOWN;
	s->deadline = io_now_ms() + s->cfg->handshake_ms;
	if (s->c->dir == LINK_IN)
		s->fd = take_fd(&s->c->fd);
	s->cred = svids_get(svids, svids_node_id(svids));
	if (!s->cred)
		return lost(s, "no SVID of this node ('%s')", svids_node_id(svids));
	/* a peer would refuse it: say so here, where the cause is (renewal failing) */
	if (time(NULL) >= s->cred->not_after)
		return lost(s, "the node SVID of '%s' has expired", s->cred->spiffe_id);
	return 0;
}

/* Tells the peer why, within GOODBYE_MS, after the frame being written if any. */
static void say_goodbye(struct session *s)
{
	int64_t deadline = io_now_ms() + GOODBYE_MS;
	unsigned char frame[LINK_HEADER + GOODBYE_MAX];
	size_t len = strnlen(s->why, GOODBYE_MAX);

	if (chunk_pending(s)) {
		unsigned char *p = s->wbig ? s->wbig->data : s->wbuf;

		if (tls_io_all(s->ssl, TLS_WRITE, p + s->w_off, (int)(s->w_len - s->w_off),
			       deadline))
			return;
	}
	put_header(frame, LINK_FRAME_GOODBYE, len);
	memcpy(frame + LINK_HEADER, s->why, len);
	tls_io_all(s->ssl, TLS_WRITE, frame, (int)(LINK_HEADER + len), deadline);
}

static void session_end(struct session *s)
{
	if (s->ssl && !s->broken && SSL_is_init_finished(s->ssl)) {
		if (s->goodbye)
			say_goodbye(s);
		SSL_shutdown(s->ssl);	/* close_notify, best effort: never waits */
	}
	SSL_free(s->ssl);
	if (s->fd >= 0)
		close(s->fd);
	free(s->in);
	free(s->wbig);
	svids_cred_put(s->cred);
	auth_trust_put(s->trust);
	ERR_clear_error();
}

void link_conn_run(struct link_conn *c, struct link_end *end)
{
	struct session s = { .c = c, .cfg = &c->e->cfg, .fd = -1 };
	int r;

	r = session_begin(&s);
	if (!r)
		r = c->dir == LINK_OUT ? dial(&s) : accept_tls(&s);
	if (!r)
		r = verify_peer(&s);
	if (!r && c->dir == LINK_IN)
		r = admit_peer(&s);
	if (!r)
		r = queue_hello(&s);
	if (!r)
		r = run(&s);
	*end = (struct link_end){ .was_up = s.up, .redial = s.redial };
	snprintf(end->why, sizeof(end->why), "%s", s.why);
	session_end(&s);
}
