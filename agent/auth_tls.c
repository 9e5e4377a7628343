// SPDX-License-Identifier: Apache-2.0
/*
 * One exchange of peer authentication on the wire, as asker or answerer
 * (the protocol is described in auth.h). Runs on a worker thread; every
 * step waits at most until the exchange's deadline.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
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

#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "addr.h"
#include "auth_int.h"
#include "cleanup.h"
#include "io.h"
#include "ssl_cleanup.h"
#include "tls.h"

enum {
	PROTO_VERSION = 1,
	PROTO_HEADER = 6,	/* "FG", version, direction, length (2) */
	STATUS_OK = 0,
	STATUS_REFUSED = 1,
	SESSION_LIFETIME_S = 3600,
	SERVER_SESSIONS = 4096,
};

struct exchange {
	struct auth_engine *e;
	struct auth_job *job;
	struct auth_view *view;
	struct auth_trust *trust;
	int64_t deadline;		/* io_now_ms() */
	SSL *ssl;
	struct svids_cred *cred;	/* the SVID this side presents */
	const struct view_id *self;	/* whose it is */
	const struct view_id *other;	/* the identity of the other side */
	struct svid_result peer;	/* what the other side's chain proved */
	struct auth_result res;
};

__attribute__((format(printf, 2, 3))) static int fail(struct exchange *x, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(x->res.why, sizeof(x->res.why), fmt, ap);
	va_end(ap);
	return -EPROTO;
}

/* --- TLS contexts ------------------------------------------------------------------------- */

/* Sessions resume only with the same SVID: the context names the identity and its serial. */
static int set_session_context(SSL *ssl, const struct svids_cred *cred)
{
	unsigned char ctx[SSL_MAX_SID_CTX_LENGTH];
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)cred->spiffe_id, strlen(cred->spiffe_id), md);
	memcpy(ctx, md, sizeof(ctx) - sizeof(cred->serial));
	memcpy(ctx + sizeof(ctx) - sizeof(cred->serial), &cred->serial, sizeof(cred->serial));
	return SSL_set_session_id_context(ssl, ctx, sizeof(ctx)) == 1 ? 0 : -ENOMEM;
}

/* The answerer presents the SVID of the identity the server name asks for. */
static int choose_cert(SSL *ssl, int *alert, void *arg)
{
	struct exchange *x = SSL_get_app_data(ssl);
	const unsigned char *ext;
	char sni[AUTH_SNI_MAX];
	size_t len;

	*alert = SSL_AD_UNRECOGNIZED_NAME;
	if (x->cred)	/* again after a HelloRetryRequest: chosen already */
		return SSL_CLIENT_HELLO_SUCCESS;
	if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len) ||
	    tls_parse_sni(ext, len, sni, sizeof(sni))) {
		fail(x, "the asker sent no valid server name");
		return SSL_CLIENT_HELLO_ERROR;
	}
	x->self = view_by_sni(x->view, sni);
	if (!x->self) {
		fail(x, "the asker asks for '%s', no identity of this node", sni);
		return SSL_CLIENT_HELLO_ERROR;
	}
	x->cred = svids_get(x->e->svids, x->self->spiffe_id);
	if (!x->cred) {
		fail(x, "no SVID for '%s'", x->self->spiffe_id);
		return SSL_CLIENT_HELLO_ERROR;
	}
	*alert = SSL_AD_INTERNAL_ERROR;
	if (SSL_use_cert_and_key(ssl, x->cred->cert, x->cred->key, x->cred->chain, 1) != 1 ||
	    set_session_context(ssl, x->cred)) {
		fail(x, "cannot present the SVID of '%s': %s", x->self->spiffe_id, tls_error());
		return SSL_CLIENT_HELLO_ERROR;
	}
	return SSL_CLIENT_HELLO_SUCCESS;
}

static SSL_CTX *ctx_new(const SSL_METHOD *method)
{
	SSL_CTX *c = tls_ctx_svid(method);

	if (c)
		SSL_CTX_set_timeout(c, SESSION_LIFETIME_S);
	return c;
}

int auth_tls_init(struct auth_engine *e, char *why, size_t why_len)
{
	e->client_ctx = ctx_new(TLS_client_method());
	e->server_ctx = ctx_new(TLS_server_method());
	if (!e->client_ctx || !e->server_ctx) {
		snprintf(why, why_len, "no TLS 1.3 context: %s", tls_error());
		return -ENOMEM;
	}
	/* the asker keeps its sessions itself, one per pair */
	SSL_CTX_set_session_cache_mode(e->client_ctx,
				       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	/*
	 * Stateful tickets: the sessions stay in the answerer's memory with
	 * the asker's whole chain, which a resumption validates again.
	 */
	SSL_CTX_set_options(e->server_ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(e->server_ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_sess_set_cache_size(e->server_ctx, SERVER_SESSIONS);
	SSL_CTX_set_num_tickets(e->server_ctx, 1);
	SSL_CTX_set_client_hello_cb(e->server_ctx, choose_cert, NULL);
	return 0;
}

void auth_tls_free(struct auth_engine *e)
{
	SSL_CTX_free(e->client_ctx);
	SSL_CTX_free(e->server_ctx);
}

/* --- common steps ----------------------------------------------------------------------- */

/* The other side's SVID, validated with its own trust domain's bundle only. */
static int verify_peer(struct exchange *x, const char *expected)
{
	_cleanup_x509_stack_ STACK_OF(X509) *chain = tls_peer_chain(x->ssl);
	char why[SVID_WHY_MAX];
	int r;

	if (!chain)
		return fail(x, "the other side presented no certificate");
	if (!x->trust)
		return fail(x, "no trust bundles");
	r = svid_verify(chain, &x->trust->trust, expected, time(NULL), &x->peer, why, sizeof(why));
	if (r != SVID_OK)
		return fail(x, "the other side's SVID is rejected (%s): %s",
			    r > 0 ? svid_reason_name(r) : strerror(-r), why);
	return 0;
}

/* The pair's expiry: the earliest notAfter of both chains. */
static void set_not_after(struct exchange *x)
{
	x->res.not_after = x->peer.not_after < x->cred->not_after ? x->peer.not_after
								  : x->cred->not_after;
}

static void exchange_end(struct exchange *x)
{
	if (x->ssl) {
		SSL_shutdown(x->ssl);	/* best effort, never waits: non-blocking */
		SSL_free(x->ssl);
	}
	svids_cred_put(x->cred);
	auth_view_put(x->view);
	auth_trust_put(x->trust);
	if (x->res.session)
		SSL_SESSION_free(x->res.session);
}

/* --- the asker -------------------------------------------------------------------------- */

/* Who is who, whether policy wants it, and our SVID: all before any packet. */
static int asker_prepare(struct exchange *x)
{
	const struct auth_ask *ask = &x->job->ask;

	x->self = view_by_num(x->view, ask->local);
	x->other = view_by_num(x->view, ask->peer);
	if (!x->self || !x->self->local)
		return fail(x, "identity %u is no workload of this node", ask->local);
	if (!x->other)
		return fail(x, "identity %u is unknown", ask->peer);
	if (!x->other->has_node || memcmp(x->other->node, ask->node, 16))
		return fail(x, "'%s' is not at that node", x->other->spiffe_id);
	if (!auth_view_allows(x->view, ask->dir, ask->local, ask->peer, NULL))
		return fail(x, "policy does not allow '%s' %s '%s'", x->self->spiffe_id,
			    ask->dir == FG_DIR_EGRESS ? "->" : "<-", x->other->spiffe_id);
	x->cred = svids_get(x->e->svids, x->self->spiffe_id);
	if (!x->cred)
		return fail(x, "no SVID for '%s'", x->self->spiffe_id);
	return 0;
}

/* From this node's address, so that the answerer sees the node it knows us by. */
static int bind_source(struct exchange *x, int fd, int family)
{
	static const __u8 none[16];
	struct sockaddr_storage src;
	socklen_t len;
	int one = 1;

	if (memcmp(x->e->cfg.node, none, 16) == 0)
		return 0;
	len = addr_node_sockaddr(x->e->cfg.node, 0, &src);
	if (src.ss_family != family)
		return 0;
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&src, len))
		return fail(x, "cannot send from this node's address: %m");
	return 0;
}

static int asker_connect(struct exchange *x)
{
	struct sockaddr_storage to;
	socklen_t len = addr_node_sockaddr(x->other->node, x->e->listen.port, &to);
	socklen_t elen = sizeof(int);
	char addr[INET6_ADDRSTRLEN] = "?";
	int fd, err = 0;

	fd = socket(to.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail(x, "socket: %m");
	auth_job_set_fd(x->e, x->job, fd);	/* closed with the job */
	if (bind_source(x, fd, to.ss_family))
		return -EPROTO;
	inet_ntop(to.ss_family,
		  to.ss_family == AF_INET ? (void *)&((struct sockaddr_in *)&to)->sin_addr
					  : (void *)&((struct sockaddr_in6 *)&to)->sin6_addr,
		  addr, sizeof(addr));
	if (connect(fd, (struct sockaddr *)&to, len) && errno != EINPROGRESS)
		return fail(x, "connect to %s port %u: %m", addr, x->e->listen.port);
	err = io_wait(fd, POLLOUT, x->deadline);
	if (!err && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err)
		err = -err;
	if (err)
		return fail(x, "connect to %s port %u: %s", addr, x->e->listen.port, strerror(-err));
	return 0;
}

static int asker_handshake(struct exchange *x)
{
	SSL_SESSION *session;
	char sni[AUTH_SNI_MAX];
	int r;

	x->ssl = SSL_new(x->e->client_ctx);
	if (!x->ssl || SSL_set_fd(x->ssl, x->job->fd) != 1)
		return fail(x, "no TLS connection: %s", tls_error());
	auth_sni_name(x->other->spiffe_id, sni);
	if (SSL_set_tlsext_host_name(x->ssl, sni) != 1 ||
	    SSL_use_cert_and_key(x->ssl, x->cred->cert, x->cred->key, x->cred->chain, 1) != 1)
		return fail(x, "cannot present the SVID of '%s': %s", x->self->spiffe_id,
			    tls_error());
	session = auth_session(x->e, &x->res.key, x->cred->serial);
	if (session) {
		SSL_set_session(x->ssl, session);
		SSL_SESSION_free(session);
	}
	SSL_set_connect_state(x->ssl);
	r = tls_do(x->ssl, TLS_HANDSHAKE, NULL, 0, x->deadline);
	if (r < 0)
		return fail(x, "TLS handshake with the agent of '%s': %s", x->other->spiffe_id,
			    tls_strerror(r));
	x->res.resumed = SSL_session_reused(x->ssl);
	return 0;
}

/* Sends the request and reads the answer. */
static int asker_request(struct exchange *x)
{
	size_t len = strlen(x->other->spiffe_id);
	unsigned char req[PROTO_HEADER + SPIFFE_ID_MAX], reply[2];
	char reason[256];
	int r;

	memcpy(req, "FG", 2);
	req[2] = PROTO_VERSION;
	req[3] = x->job->ask.dir;
	req[4] = (unsigned char)(len >> 8);
	req[5] = (unsigned char)len;
	memcpy(req + PROTO_HEADER, x->other->spiffe_id, len);
	r = tls_io_all(x->ssl, TLS_WRITE, req, (int)(PROTO_HEADER + len), x->deadline);
	if (!r)
		r = tls_io_all(x->ssl, TLS_READ, reply, sizeof(reply), x->deadline);
	if (!r)
		r = tls_io_all(x->ssl, TLS_READ, reason, reply[1], x->deadline);
	if (r)
		return fail(x, "no answer from the agent of '%s': %s", x->other->spiffe_id,
			    tls_strerror(r));
	reason[reply[1]] = 0;
	if (reply[0] != STATUS_OK)
		return fail(x, "the agent of '%s' refuses: %s", x->other->spiffe_id, reason);
	return 0;
}

void auth_run_asker(struct auth_engine *e, struct auth_job *job)
{
	struct exchange x = { .e = e, .job = job };
	int r;

	x.res = (struct auth_result){ .role = AUTH_ASKER, .dir = job->ask.dir,
				      .start_ns = job->start_ns };
	x.res.key = (struct fg_auth_key){ .local_id = job->ask.local, .peer_id = job->ask.peer };
	memcpy(x.res.key.peer_node, job->ask.node, 16);
	auth_snapshot(e, &x.view, &x.trust, &x.res.trust_gen);
	x.deadline = io_now_ms() + e->cfg.timeout_ms;
	r = asker_prepare(&x);
	if (!r)
		r = asker_connect(&x);
	if (!r)
		r = asker_handshake(&x);
	if (!r)
		r = verify_peer(&x, x.other->spiffe_id);
	if (!r)
		r = asker_request(&x);
	x.res.ok = r == 0;
	if (x.res.ok) {
		set_not_after(&x);
		x.res.session = SSL_get1_session(x.ssl);
		x.res.session_cred = x.cred->serial;
	}
	auth_record(e, &x.res);
	exchange_end(&x);
}

/* --- the answerer ----------------------------------------------------------------------- */

static int answerer_handshake(struct exchange *x)
{
	int r;

	x->ssl = SSL_new(x->e->server_ctx);
	if (!x->ssl || SSL_set_fd(x->ssl, x->job->fd) != 1)
		return fail(x, "no TLS connection: %s", tls_error());
	SSL_set_app_data(x->ssl, x);
	SSL_set_accept_state(x->ssl);
	r = tls_do(x->ssl, TLS_HANDSHAKE, NULL, 0, x->deadline);
	if (r < 0 && x->res.why[0])	/* choose_cert() said why */
		return -EPROTO;
	if (r < 0)
		return fail(x, "TLS handshake: %s", tls_strerror(r));
	x->res.resumed = SSL_session_reused(x->ssl);
	return 0;
}

/* The request: the identity the answerer presented, and a direction. */
static int answerer_read(struct exchange *x)
{
	unsigned char head[PROTO_HEADER];
	char id[SPIFFE_ID_MAX + 1];
	size_t len;
	int r;

	r = tls_io_all(x->ssl, TLS_READ, head, sizeof(head), x->deadline);
	if (r)
		return fail(x, "no request: %s", tls_strerror(r));
	len = (size_t)head[4] << 8 | head[5];
	if (memcmp(head, "FG", 2) || head[2] != PROTO_VERSION ||
	    (head[3] != FG_DIR_EGRESS && head[3] != FG_DIR_INGRESS) || len == 0 ||
	    len > SPIFFE_ID_MAX)
		return fail(x, "not a request of protocol version %d", PROTO_VERSION);
	r = tls_io_all(x->ssl, TLS_READ, id, (int)len, x->deadline);
	if (r)
		return fail(x, "incomplete request: %s", tls_strerror(r));
	id[len] = 0;
	if (strcmp(id, x->self->spiffe_id))
		return fail(x, "the request names '%s', the server name '%s'", id,
			    x->self->spiffe_id);
	x->res.dir = head[3];
	return 0;
}

/* The asker's identity is one we know, at the node it connects from, and policy allows it. */
static int answerer_judge(struct exchange *x)
{
	/* the request's direction is the asker's; ours is the opposite */
	__u8 dir = x->res.dir == FG_DIR_EGRESS ? FG_DIR_INGRESS : FG_DIR_EGRESS;

	x->other = view_by_name(x->view, x->peer.spiffe_id);
	if (!x->other)
		return fail(x, "'%s' is not an identity this node knows", x->peer.spiffe_id);
	if (!x->other->has_node || memcmp(x->other->node, x->job->from, 16))
		return fail(x, "'%s' is registered at another node than the one it connects from",
			    x->other->spiffe_id);
	if (!auth_view_allows(x->view, dir, x->self->num, x->other->num, NULL))
		return fail(x, "policy does not allow '%s' %s '%s'", x->other->spiffe_id,
			    x->res.dir == FG_DIR_EGRESS ? "->" : "<-", x->self->spiffe_id);
	x->res.key.local_id = x->self->num;
	x->res.key.peer_id = x->other->num;
	return 0;
}

static void answerer_reply(struct exchange *x, bool ok)
{
	unsigned char reply[2 + 255];
	size_t len = ok ? 0 : strnlen(x->res.why, 255);

	reply[0] = ok ? STATUS_OK : STATUS_REFUSED;
	reply[1] = (unsigned char)len;
	memcpy(reply + 2, x->res.why, len);
	tls_io_all(x->ssl, TLS_WRITE, reply, (int)(2 + len), x->deadline);
}

void auth_run_answerer(struct auth_engine *e, struct auth_job *job)
{
	struct exchange x = { .e = e, .job = job };
	bool ok;
	int r;

	x.res = (struct auth_result){ .role = AUTH_ANSWERER, .start_ns = job->start_ns };
	memcpy(x.res.key.peer_node, job->from, 16);
	auth_snapshot(e, &x.view, &x.trust, &x.res.trust_gen);
	x.deadline = io_now_ms() + e->cfg.timeout_ms;
	r = answerer_handshake(&x);
	if (!r)
		r = verify_peer(&x, NULL);
	if (!r)
		r = answerer_read(&x);
	if (!r)
		r = answerer_judge(&x);
	x.res.ok = r == 0;
	if (x.res.ok)
		set_not_after(&x);
	/* fg_auth first: the asker's traffic may follow the reply at once */
	ok = auth_record(e, &x.res);
	if (x.ssl && SSL_is_init_finished(x.ssl))
		answerer_reply(&x, ok);
	exchange_end(&x);
}
