// SPDX-License-Identifier: Apache-2.0
/*
 * The encrypted transport: listeners, flows and their two roles. The
 * protocol and the threads are described in tunnel.h; the relay of a flow
 * is relay.c's.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <json-c/json.h>
#include <openssl/ssl.h>

#include <fedguard/abi.h>

#include "addr.h"
#include "auth_int.h"
#include "cleanup.h"
#include "io.h"
#include "listener.h"
#include "log.h"
#include "relay.h"
#include "ssl_cleanup.h"
#include "tls.h"
#include "tunnel.h"

enum {
	ACCEPT_POLL_MS = 1000,	/* finished flows are joined at least this often */
	FLOW_STACK = 256 * 1024,
	LISTEN_BACKLOG = 1024,
};

enum flow_role {
	FLOW_OUT = 1,	/* a local workload's connection, to the destination's agent */
	FLOW_IN = 2,	/* a peer agent's tunnel, to a local workload */
};

struct flow {
	struct flow *next;
	struct tunnel *t;
	enum flow_role role;
	pthread_t thread;
	bool done;		/* the thread has finished: join it */
	bool was_cut;
	int plain_fd;		/* the workload's side */
	int tls_fd;		/* the peer agent's side */
	int cancel_fd;		/* eventfd: tunnel_cut() and tunnel_stop() */
	SSL *ssl;
	struct auth_view *view;
	struct auth_trust *trust;
	struct svids_cred *cred;	/* the SVID this side presents */
	const struct view_id *self;	/* the local workload */
	const struct view_id *other;	/* the remote workload */
	/* what tunnel_cut() judges, set before the relay starts (under t->lock) */
	__u32 local, peer, local_td, peer_td;
	char peer_td_name[SPIFFE_TRUST_DOMAIN_MAX + 1];
	bool relaying;
	struct fg_tun_key peer_key;	/* FLOW_IN: our fg_tun_peer entry, family 0: none */
	struct fg_tun_orig orig;	/* the original destination */
	__u64 flow_id;			/* made at the source, sent in the request */
	int64_t deadline;
	char from[INET6_ADDRSTRLEN];	/* the other end of the accepted connection */
	char why[TUNNEL_WHY_MAX];
};

struct tunnel {
	struct tunnel_config cfg;
	__u16 port;			/* the tunnel port: ours and every peer's */
	int src_fd, orig_fd, sockets_fd, peer_fd, slot_fd, quarantine_fd, ipcache_fd;
	int listen_fd, redirect_fd, stop_fd;
	int event_fd;			/* eventfd: events to take */
	SSL_CTX *client_ctx, *server_ctx;
	pthread_t acceptor;
	bool accepting;
	pthread_mutex_t lock;		/* guards what follows */
	struct flow *flows;
	unsigned int active;
	struct tunnel_stats stats;
	struct tunnel_event *events;	/* a ring of TUNNEL_EVENTS_MAX */
	size_t ev_head, ev_n;
};

__attribute__((format(printf, 2, 3))) static int fail(struct flow *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->why, sizeof(f->why), fmt, ap);
	va_end(ap);
	return -EPROTO;
}

/* --- addresses ------------------------------------------------------------------------- */

static const __u8 v4_mapped[12] = { [10] = 0xff, [11] = 0xff };

/* A socket address as a tunnel key; IPv4-mapped IPv6 is IPv4, as the datapath folds it. */
static void key_of(const struct sockaddr_storage *ss, struct fg_tun_key *k)
{
	memset(k, 0, sizeof(*k));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;

		k->family = FG_AF_INET;
		memcpy(k->addr, &sin->sin_addr, 4);
		k->port = sin->sin_port;
		return;
	}
	const struct sockaddr_in6 *sin6 = (const void *)ss;

	k->port = sin6->sin6_port;
	if (memcmp(&sin6->sin6_addr, v4_mapped, 12) == 0) {
		k->family = FG_AF_INET;
		memcpy(k->addr, (const __u8 *)&sin6->sin6_addr + 12, 4);
	} else {
		k->family = FG_AF_INET6;
		memcpy(k->addr, &sin6->sin6_addr, 16);
	}
}

/* A node address (IPv4-mapped for IPv4) of a tunnel key. */
static void node_of(const struct fg_tun_key *k, __u8 node[16])
{
	if (k->family == FG_AF_INET) {
		memcpy(node, v4_mapped, 12);
		memcpy(node + 12, k->addr, 4);
	} else {
		memcpy(node, k->addr, 16);
	}
}

/* The socket address of family/addr (network order) and port (network order). */
static socklen_t sockaddr_of(__u32 family, const __u32 addr[4], __u16 port,
			     struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == FG_AF_INET) {
		struct sockaddr_in *sin = (void *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = port;
		memcpy(&sin->sin_addr, addr, 4);
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (void *)ss;

	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = port;
	memcpy(&sin6->sin6_addr, addr, 16);
	return sizeof(*sin6);
}

static const char *addr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	const void *a = ss->ss_family == AF_INET ? (const void *)&((struct sockaddr_in *)ss)->sin_addr
						 : (const void *)&((struct sockaddr_in6 *)ss)->sin6_addr;

	if (!inet_ntop(ss->ss_family, a, buf, (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

/* Connects non-blocking fd to ss until the flow's deadline: 0 or -errno. */
static int connect_wait(struct flow *f, int fd, const struct sockaddr_storage *ss, socklen_t len)
{
	socklen_t elen = sizeof(int);
	int err = 0;

	if (connect(fd, (const struct sockaddr *)ss, len) && errno != EINPROGRESS)
		return -errno;
	err = io_wait(fd, POLLOUT, f->deadline);
	if (!err && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err)
		err = -err;
	return err;
}

/* A non-blocking TCP connection to ss, from src when given: the fd or -errno, why in f. */
static int dial(struct flow *f, const struct sockaddr_storage *ss, socklen_t len,
		const struct sockaddr_storage *src, socklen_t src_len)
{
	_cleanup_close_ int fd = -1;
	char addr[INET6_ADDRSTRLEN];
	int err;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail(f, "socket: %s", strerror(errno));
	if (src && bind(fd, (const struct sockaddr *)src, src_len))
		return fail(f, "bind to %s: %s", addr_str(src, addr, sizeof(addr)),
			    strerror(errno));
	err = connect_wait(f, fd, ss, len);
	if (err)
		return fail(f, "connect to %s port %u: %s", addr_str(ss, addr, sizeof(addr)),
			    ntohs(((const struct sockaddr_in *)ss)->sin_port), strerror(-err));
	return take_fd(&fd);
}

/* --- the kernel's word: quarantine and policy ---------------------------------------------- */

static bool q_holds(const struct tunnel *t, __u32 kind, __u32 id)
{
	struct fg_quarantine_key k = { .kind = kind, .id = id };
	struct fg_quarantine_value v;

	return id && bpf_map_lookup_elem(t->quarantine_fd, &k, &v) == 0;
}

static bool flow_quarantined(const struct tunnel *t, const struct flow *f)
{
	return q_holds(t, FG_Q_IDENTITY, f->local) || q_holds(t, FG_Q_IDENTITY, f->peer) ||
	       q_holds(t, FG_Q_TRUST_DOMAIN, f->local_td) ||
	       q_holds(t, FG_Q_TRUST_DOMAIN, f->peer_td);
}

/*
 * Whether the policy in force admits src calling dst (local) on port/tcp:
 * the datapath's own probes (exact and wildcard peer and port, any deny
 * wins), on the map the datapath uses.
 */
static int policy_admits(struct flow *f, __u32 src, __u32 dst, __u16 port)
{
	_cleanup_close_ int fd = -1;
	__u32 zero = 0, id = 0;
	bool allowed = false;

	if (bpf_map_lookup_elem(f->t->slot_fd, &zero, &id) < 0)
		return fail(f, "no policy installed");
	fd = bpf_map_get_fd_by_id(id);
	if (fd < 0)
		return fail(f, "policy map %u: %s", id, strerror(errno));
	for (int i = 0; i < 4; i++) {
		struct fg_policy_key k = {
			.src_id = (i & 1) ? (__u32)FG_ID_ANY : src,
			.dst_id = dst,
			.port = (i & 2) ? 0 : port,
			.proto = IPPROTO_TCP,
			.dir = FG_DIR_INGRESS,
		};
		struct fg_policy_value v;

		if (bpf_map_lookup_elem(fd, &k, &v) < 0)
			continue;
		if (v.action == FG_ACT_DENY)
			return fail(f, "denied by rule %u", v.rule_id);
		allowed |= v.action == FG_ACT_ALLOW;
	}
	return allowed ? 0 : fail(f, "no rule allows it: default deny");
}

/* --- flows: bookkeeping ---------------------------------------------------------------------- */

static void flow_free(struct flow *f)
{
	if (f->ssl)
		SSL_free(f->ssl);
	if (f->plain_fd >= 0)
		close(f->plain_fd);
	if (f->tls_fd >= 0)
		close(f->tls_fd);
	if (f->cancel_fd >= 0)
		close(f->cancel_fd);
	if (f->peer_key.family)
		bpf_map_delete_elem(f->t->peer_fd, &f->peer_key);
	svids_cred_put(f->cred);
	auth_view_put(f->view);
	auth_trust_put(f->trust);
	free(f);
}

/* Joins the threads of finished flows and frees them; all of them when all is set. */
static void flows_reap(struct tunnel *t, bool all)
{
	struct flow **pp, *f, *done = NULL;
	bool idle;

	pthread_mutex_lock(&t->lock);
	for (pp = &t->flows; (f = *pp);) {
		if (all || f->done) {
			*pp = f->next;
			f->next = done;
			done = f;
		} else {
			pp = &f->next;
		}
	}
	idle = done && !t->active;
	pthread_mutex_unlock(&t->lock);
	while ((f = done)) {
		done = f->next;
		pthread_join(f->thread, NULL);
		flow_free(f);
	}
	/*
	 * A burst of flows leaves glibc holding their freed buffers (200 MiB after 1,000
	 * flows, measured): give them back once no flow is left.
	 */
	if (idle)
		malloc_trim(0);
}

/* The relay starts: the flow counts, and from now on tunnel_cut() judges it. */
static void flow_relaying(struct flow *f)
{
	struct tunnel_stats *s = &f->t->stats;

	pthread_mutex_lock(&f->t->lock);
	f->relaying = true;
	(*(f->role == FLOW_OUT ? &s->flows_out : &s->flows_in))++;
	pthread_mutex_unlock(&f->t->lock);
}

/* The flow's leg on this node, from its sockets; family 0 when they are gone. */
static void event_leg(const struct flow *f, struct tunnel_event *ev)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct fg_tun_key k;

	if (f->role == FLOW_OUT) {	/* the workload -> where it asked to go */
		if (f->plain_fd < 0 || getpeername(f->plain_fd, (struct sockaddr *)&ss, &len))
			return;
		key_of(&ss, &k);
	} else {			/* this agent -> the workload */
		if (!f->peer_key.family)
			return;
		k = f->peer_key;
	}
	if (!f->orig.family || k.family != f->orig.family)
		return;
	ev->family = (__u8)k.family;
	memcpy(ev->saddr, k.addr, 16);
	memcpy(ev->daddr, f->orig.daddr, 16);
	ev->sport = ntohs(k.port);
	ev->dport = ntohs(f->orig.dport);
}

/* Queues the flow's start or refusal for the agent's records; the oldest goes when full. */
static void flow_report(struct flow *f, bool ok)
{
	struct tunnel *t = f->t;
	struct tunnel_event ev = {
		.flow_id = f->flow_id,
		.local = f->self ? f->self->num : f->local,
		.peer = f->other ? f->other->num : f->peer,
		.out = f->role == FLOW_OUT,
		.ok = ok,
	};

	event_leg(f, &ev);
	if (f->other && f->other->has_node)
		memcpy(ev.peer_node, f->other->node, 16);
	if (!ok)
		snprintf(ev.why, sizeof(ev.why), "%s", f->why);
	pthread_mutex_lock(&t->lock);
	if (t->ev_n == TUNNEL_EVENTS_MAX) {
		t->ev_head = (t->ev_head + 1) % TUNNEL_EVENTS_MAX;
		t->ev_n--;
		t->stats.events_lost++;
	}
	t->events[(t->ev_head + t->ev_n++) % TUNNEL_EVENTS_MAX] = ev;
	pthread_mutex_unlock(&t->lock);
	eventfd_write(t->event_fd, 1);
}

int tunnel_event_fd(const struct tunnel *t)
{
	return t->event_fd;
}

size_t tunnel_events_take(struct tunnel *t, struct tunnel_event *out, size_t max)
{
	eventfd_t drained;
	size_t n = 0;
	bool more;

	eventfd_read(t->event_fd, &drained);
	pthread_mutex_lock(&t->lock);
	for (; n < max && t->ev_n; n++, t->ev_n--) {
		out[n] = t->events[t->ev_head];
		t->ev_head = (t->ev_head + 1) % TUNNEL_EVENTS_MAX;
	}
	more = t->ev_n > 0;
	pthread_mutex_unlock(&t->lock);
	if (more)	/* more than max: the main loop polls again */
		eventfd_write(t->event_fd, 1);
	return n;
}

static void flow_account(struct flow *f, int r, const struct relay_stats *st)
{
	struct tunnel_stats *s = &f->t->stats;
	bool out = f->role == FLOW_OUT;

	pthread_mutex_lock(&f->t->lock);
	if (r && !f->relaying) {
		(*(out ? &s->refused_out : &s->refused_in))++;
	} else if (!r) {
		s->bytes_out += out ? st->plain_to_tls : st->tls_to_plain;
		s->bytes_in += out ? st->tls_to_plain : st->plain_to_tls;
		s->cut += f->was_cut;
	}
	f->t->active--;
	f->done = true;
	pthread_mutex_unlock(&f->t->lock);
}

/* --- TLS ----------------------------------------------------------------------------------- */

/* The listener presents the SVID of the local workload the server name asks for. */
static int choose_cert(SSL *ssl, int *alert, void *arg)
{
	struct flow *f = SSL_get_app_data(ssl);
	const unsigned char *ext;
	char sni[AUTH_SNI_MAX];
	size_t len;

	*alert = SSL_AD_UNRECOGNIZED_NAME;
	if (f->cred)	/* again after a HelloRetryRequest */
		return SSL_CLIENT_HELLO_SUCCESS;
	if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len) ||
	    tls_parse_sni(ext, len, sni, sizeof(sni))) {
		fail(f, "the caller sent no valid server name");
		return SSL_CLIENT_HELLO_ERROR;
	}
	f->self = f->view ? view_by_sni(f->view, sni) : NULL;
	if (!f->self) {
		fail(f, "the caller asks for '%s', no workload of this node", sni);
		return SSL_CLIENT_HELLO_ERROR;
	}
	f->cred = svids_get(f->t->cfg.auth->svids, f->self->spiffe_id);
	*alert = SSL_AD_INTERNAL_ERROR;
	if (!f->cred) {
		fail(f, "no SVID for '%s'", f->self->spiffe_id);
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (SSL_use_cert_and_key(ssl, f->cred->cert, f->cred->key, f->cred->chain, 1) != 1) {
		fail(f, "cannot present the SVID of '%s': %s", f->self->spiffe_id, tls_error());
		return SSL_CLIENT_HELLO_ERROR;
	}
	return SSL_CLIENT_HELLO_SUCCESS;
}

static SSL_CTX *ctx_new(const SSL_METHOD *method)
{
	SSL_CTX *c = tls_ctx_svid(method);

	if (!c)
		return NULL;
	/* one flow, one connection: nothing to resume */
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(c, 0);
	return c;
}

/* The other side's SVID, validated with its own trust domain's bundle only. */
static int verify_peer(struct flow *f, const char *expected, struct svid_result *res)
{
	_cleanup_x509_stack_ STACK_OF(X509) *chain = tls_peer_chain(f->ssl);
	char why[SVID_WHY_MAX];
	int r;

	if (!chain)
		return fail(f, "the other side presented no certificate");
	if (!f->trust)
		return fail(f, "no trust bundles");
	r = svid_verify(chain, &f->trust->trust, expected, time(NULL), res, why, sizeof(why));
	if (r != SVID_OK)
		return fail(f, "the other side's SVID is rejected (%s): %s",
			    r > 0 ? svid_reason_name(r) : strerror(-r), why);
	return 0;
}

static int tls_setup(struct flow *f, SSL_CTX *ctx)
{
	f->ssl = SSL_new(ctx);
	if (!f->ssl || SSL_set_fd(f->ssl, f->tls_fd) != 1)
		return fail(f, "no TLS connection: %s", tls_error());
	SSL_set_app_data(f->ssl, f);
	if (f->role == FLOW_OUT)
		SSL_set_connect_state(f->ssl);
	else
		SSL_set_accept_state(f->ssl);
	return 0;
}

/* --- the source role: a redirected connection of a local workload ----------------------------- */

/* Who calls whom, and where to: what the datapath noted when it redirected the socket. */
static int out_identify(struct flow *f)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct fg_sock_binding b;
	struct fg_tun_key k;
	char addr[INET6_ADDRSTRLEN];
	__u64 cookie;

	if (getpeername(f->plain_fd, (struct sockaddr *)&ss, &len))
		return fail(f, "getpeername: %s", strerror(errno));
	key_of(&ss, &k);
	if (bpf_map_lookup_elem(f->t->src_fd, &k, &cookie) ||
	    bpf_map_lookup_elem(f->t->sockets_fd, &cookie, &b) ||
	    bpf_map_lookup_elem(f->t->orig_fd, &cookie, &f->orig) || b.state != FG_SOCK_TUNNEL)
		return fail(f, "%s port %u is no redirected connection", addr_str(&ss, addr, sizeof(addr)),
			    ntohs(k.port));
	f->local = b.local_id;
	f->peer = b.peer_id;
	f->local_td = b.local_td;
	f->peer_td = b.peer_td;
	auth_snapshot(f->t->cfg.auth, &f->view, &f->trust, &(__u64){ 0 });
	f->self = f->view ? view_by_num(f->view, f->local) : NULL;
	f->other = f->view ? view_by_num(f->view, f->peer) : NULL;
	if (!f->self || !f->self->local)
		return fail(f, "identity %u is no workload of this node", f->local);
	if (!f->other || !f->other->has_node)
		return fail(f, "identity %u has no known node", f->peer);
	if (memcmp(f->other->node, b.peer_node, 16))
		return fail(f, "'%s' moved to another node", f->other->spiffe_id);
	if (flow_quarantined(f->t, f))
		return fail(f, "quarantined");
	f->cred = svids_get(f->t->cfg.auth->svids, f->self->spiffe_id);
	if (!f->cred)
		return fail(f, "no SVID for '%s'", f->self->spiffe_id);
	/* the ID both agents' records of the flow carry */
	if (getrandom(&f->flow_id, sizeof(f->flow_id), 0) != sizeof(f->flow_id))
		return fail(f, "getrandom: %s", strerror(errno));
	return 0;
}

static int out_request(struct flow *f)
{
	__u8 req[TUNNEL_REQUEST_LEN] = { 'F', 'T', TUNNEL_PROTO_VERSION, (__u8)f->orig.family };
	__u8 status[2], reason[256];
	int r;

	memcpy(req + 4, &f->orig.dport, 2);
	memcpy(req + 6, f->orig.daddr, 16);
	memcpy(req + 22, &f->flow_id, 8);
	r = tls_io_all(f->ssl, TLS_WRITE, req, sizeof(req), f->deadline);
	if (!r)
		r = tls_io_all(f->ssl, TLS_READ, status, sizeof(status), f->deadline);
	if (r)
		return fail(f, "the agent of '%s': %s", f->other->spiffe_id, tls_strerror(r));
	if (status[0] == TUNNEL_STATUS_OK && status[1] == 0)
		return 0;
	reason[0] = 0;
	if (status[1] && !tls_io_all(f->ssl, TLS_READ, reason, status[1], f->deadline))
		reason[status[1]] = 0;
	return fail(f, "the agent of '%s' refuses: %s", f->other->spiffe_id,
		    reason[0] ? (char *)reason : "no reason given");
}

static int out_connect(struct flow *f)
{
	struct sockaddr_storage to, from;
	socklen_t len = addr_node_sockaddr(f->other->node, f->t->port, &to);
	socklen_t from_len = addr_node_sockaddr(f->t->cfg.auth->cfg.node, 0, &from);
	struct svid_result peer;
	char sni[AUTH_SNI_MAX];
	int r;

	/* from this node's address: the other agent checks the caller's node */
	r = dial(f, &to, len, from.ss_family == to.ss_family ? &from : NULL, from_len);
	if (r < 0)
		return r;
	f->tls_fd = r;
	r = tls_setup(f, f->t->client_ctx);
	if (r)
		return r;
	auth_sni_name(f->other->spiffe_id, sni);
	if (SSL_set_tlsext_host_name(f->ssl, sni) != 1 ||
	    SSL_use_cert_and_key(f->ssl, f->cred->cert, f->cred->key, f->cred->chain, 1) != 1)
		return fail(f, "cannot present the SVID of '%s': %s", f->self->spiffe_id,
			    tls_error());
	r = tls_do(f->ssl, TLS_HANDSHAKE, NULL, 0, f->deadline);
	if (r < 0)
		return fail(f, "TLS with the agent of '%s': %s", f->other->spiffe_id,
			    tls_strerror(r));
	r = verify_peer(f, f->other->spiffe_id, &peer);
	if (r)
		return r;
	snprintf(f->peer_td_name, sizeof(f->peer_td_name), "%s", peer.td);
	return out_request(f);
}

/* --- the destination role: a peer agent's tunnel ---------------------------------------------- */

/* The caller: a known identity of another node, connecting from that node. */
static int in_caller(struct flow *f, const struct svid_result *caller)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct fg_tun_key k;
	__u8 node[16];

	f->other = view_by_name(f->view, caller->spiffe_id);
	if (!f->other)
		return fail(f, "'%s' is no identity this node knows", caller->spiffe_id);
	if (f->other->local)
		return fail(f, "'%s' is a workload of this node", caller->spiffe_id);
	if (getpeername(f->tls_fd, (struct sockaddr *)&ss, &len))
		return fail(f, "getpeername: %s", strerror(errno));
	key_of(&ss, &k);
	node_of(&k, node);
	if (!f->other->has_node || memcmp(f->other->node, node, 16))
		return fail(f, "'%s' is not registered at the node it calls from",
			    caller->spiffe_id);
	snprintf(f->peer_td_name, sizeof(f->peer_td_name), "%s", caller->td);
	f->peer = f->other->num;
	f->peer_td = f->other->td;
	f->local = f->self->num;
	return 0;
}

/* The request: the destination must be an address of the workload asked for. */
static int in_request(struct flow *f)
{
	__u8 req[TUNNEL_REQUEST_LEN];
	struct fg_ipcache_key k = { .prefixlen = FG_IPCACHE_PREFIX_BASE };
	struct fg_ipcache_value v;
	int r;

	r = tls_io_all(f->ssl, TLS_READ, req, sizeof(req), f->deadline);
	if (r)
		return fail(f, "no request: %s", tls_strerror(r));
	if (req[0] != 'F' || req[1] != 'T' || req[2] != TUNNEL_PROTO_VERSION ||
	    (req[3] != FG_AF_INET && req[3] != FG_AF_INET6))
		return fail(f, "a malformed request");
	f->orig.family = req[3];
	memcpy(&f->orig.dport, req + 4, 2);
	memcpy(f->orig.daddr, req + 6, 16);
	memcpy(&f->flow_id, req + 22, 8);
	k.family = req[3];
	k.prefixlen += req[3] == FG_AF_INET ? 32 : 128;
	memcpy(k.addr, f->orig.daddr, req[3] == FG_AF_INET ? 4 : 16);
	if (bpf_map_lookup_elem(f->t->ipcache_fd, &k, &v) || v.identity != f->self->num ||
	    !(v.flags & FG_IPC_LOCAL))
		return fail(f, "the destination is no address of '%s'", f->self->spiffe_id);
	f->local_td = v.td;
	if (flow_quarantined(f->t, f))
		return fail(f, "quarantined");
	return policy_admits(f, f->peer, f->local, ntohs(f->orig.dport));
}

/*
 * Connects to the workload from an address and port recorded first in
 * fg_tun_peer, so that the workload's socket is bound to the caller. The
 * source address is the one the kernel routes from (learnt from a UDP
 * socket connected to the destination, which sends nothing).
 */
static int in_connect(struct flow *f)
{
	struct fg_tun_peer tp = { .identity = f->peer, .td = f->peer_td };
	struct sockaddr_storage to, src;
	socklen_t len = sockaddr_of(f->orig.family, f->orig.daddr, f->orig.dport, &to);
	socklen_t slen = sizeof(src);
	_cleanup_close_ int probe = -1, fd = -1;
	char addr[INET6_ADDRSTRLEN];
	int err;

	probe = socket(to.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (probe < 0 || connect(probe, (struct sockaddr *)&to, len) ||
	    getsockname(probe, (struct sockaddr *)&src, &slen))
		return fail(f, "no route to %s: %s", addr_str(&to, addr, sizeof(addr)),
			    strerror(errno));
	((struct sockaddr_in *)&src)->sin_port = 0;	/* the same place in both families */
	fd = socket(to.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&src, slen) ||
	    getsockname(fd, (struct sockaddr *)&src, &slen))
		return fail(f, "socket: %s", strerror(errno));
	key_of(&src, &f->peer_key);
	memcpy(tp.node, f->other->node, 16);
	if (bpf_map_update_elem(f->t->peer_fd, &f->peer_key, &tp, BPF_ANY)) {
		f->peer_key.family = 0;
		return fail(f, "map 'fg_tun_peer': %s", strerror(errno));
	}
	err = connect_wait(f, fd, &to, len);
	if (err)
		return fail(f, "'%s' at %s port %u: %s", f->self->spiffe_id,
			    addr_str(&to, addr, sizeof(addr)), ntohs(f->orig.dport), strerror(-err));
	f->plain_fd = take_fd(&fd);
	return 0;
}

static int in_answer(struct flow *f, int r)
{
	__u8 msg[2 + 255] = { TUNNEL_STATUS_OK, 0 };
	size_t n = r ? strnlen(f->why, 255) : 0;

	if (r) {
		msg[0] = TUNNEL_STATUS_REFUSED;
		msg[1] = (__u8)n;
		memcpy(msg + 2, f->why, n);
	}
	return tls_io_all(f->ssl, TLS_WRITE, msg, (int)(2 + n), f->deadline);
}

static int in_accept(struct flow *f)
{
	struct svid_result caller;
	int r;

	auth_snapshot(f->t->cfg.auth, &f->view, &f->trust, &(__u64){ 0 });
	r = tls_setup(f, f->t->server_ctx);
	if (r)
		return r;
	r = tls_do(f->ssl, TLS_HANDSHAKE, NULL, 0, f->deadline);
	if (r < 0)
		return f->why[0] ? -EPROTO : fail(f, "TLS: %s", tls_strerror(r));
	r = verify_peer(f, NULL, &caller);
	if (!r)
		r = in_caller(f, &caller);
	if (!r)
		r = in_request(f);
	if (!r)
		r = in_connect(f);
	/* a refusal is told, as peer authentication does: the caller's agent logs why */
	if (in_answer(f, r) && !r)
		r = fail(f, "cannot answer '%s'", f->other->spiffe_id);
	return r;
}

/* --- a flow's thread -------------------------------------------------------------------------- */

static void flow_log_refusal(const struct flow *f)
{
	const char *self = f->self ? f->self->spiffe_id : "?";
	const char *other = f->other ? f->other->spiffe_id : "?";

	if (f->role == FLOW_OUT)
		log_warn("tunnel: '%s' -> '%s' refused: %s", self, other, f->why);
	else
		log_warn("tunnel: from %s: '%s' -> '%s' refused: %s", f->from, other, self, f->why);
}

static void *flow_main(void *arg)
{
	struct flow *f = arg;
	struct relay_stats st = {};
	int r;

	f->deadline = io_now_ms() + TUNNEL_HANDSHAKE_MS;
	r = f->role == FLOW_OUT ? out_identify(f) : in_accept(f);
	if (!r && f->role == FLOW_OUT)
		r = out_connect(f);
	if (!r) {
		flow_relaying(f);
		flow_report(f, true);
		r = relay_run(f->plain_fd, f->ssl, f->cancel_fd, TUNNEL_BUF, &st);
		if (r)
			fail(f, "relay: %s", strerror(-r));
	}
	if (r && !f->relaying) {
		flow_log_refusal(f);
		flow_report(f, false);
	}
	if (r && f->plain_fd >= 0)	/* the workload sees a reset, never a hang */
		relay_abort(f->plain_fd);
	if (!r) {
		log_debug("tunnel: flow ended (%d): %llu bytes out, %llu in", st.end,
			  (unsigned long long)st.plain_to_tls, (unsigned long long)st.tls_to_plain);
	}
	flow_account(f, r, &st);
	return NULL;
}

static int flow_start(struct tunnel *t, enum flow_role role, int fd)
{
	struct flow *f = calloc(1, sizeof(*f));
	pthread_attr_t attr;
	int r;

	if (!f) {
		relay_abort(fd);
		close(fd);
		return -ENOMEM;
	}
	*f = (struct flow){ .t = t, .role = role, .plain_fd = -1, .tls_fd = -1 };
	*(role == FLOW_OUT ? &f->plain_fd : &f->tls_fd) = fd;
	if (role == FLOW_IN) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
			addr_str(&ss, f->from, sizeof(f->from));
	}
	f->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, FLOW_STACK);
	pthread_mutex_lock(&t->lock);
	r = f->cancel_fd < 0 ? -errno : -pthread_create(&f->thread, &attr, flow_main, f);
	if (!r) {
		f->next = t->flows;
		t->flows = f;
		t->active++;
	}
	pthread_mutex_unlock(&t->lock);
	pthread_attr_destroy(&attr);
	if (r) {
		relay_abort(fd);
		flow_free(f);
		return log_warn_errno(r, "tunnel: cannot start a flow");
	}
	return 0;
}

/* --- listeners -------------------------------------------------------------------------------- */

static void accept_one(struct tunnel *t, int lfd, enum flow_role role)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	bool full;

	if (fd < 0)
		return;
	pthread_mutex_lock(&t->lock);
	full = t->active >= t->cfg.max_flows;
	if (full)
		(*(role == FLOW_OUT ? &t->stats.refused_out : &t->stats.refused_in))++;
	pthread_mutex_unlock(&t->lock);
	if (full) {
		relay_abort(fd);
		close(fd);
		log_warn("tunnel: %u flows already: a new one is reset", t->cfg.max_flows);
		return;
	}
	flow_start(t, role, fd);
}

static void *acceptor_main(void *arg)
{
	struct tunnel *t = arg;
	struct pollfd p[3] = {
		{ .fd = t->redirect_fd, .events = POLLIN },
		{ .fd = t->listen_fd, .events = POLLIN },
		{ .fd = t->stop_fd, .events = POLLIN },
	};

	for (;;) {
		if (poll(p, 3, ACCEPT_POLL_MS) < 0 && errno != EINTR)
			break;
		if (p[2].revents)
			break;
		if (p[0].revents)
			accept_one(t, t->redirect_fd, FLOW_OUT);
		if (p[1].revents)
			accept_one(t, t->listen_fd, FLOW_IN);
		flows_reap(t, false);
	}
	return NULL;
}

static int listen_on(const struct sockaddr_storage *ss, socklen_t len, const char *what)
{
	_cleanup_close_ int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char addr[INET6_ADDRSTRLEN];
	int one = 1;

	if (fd < 0)
		return log_error_errno(-errno, "tunnel: %s: socket", what);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, len) || listen(fd, LISTEN_BACKLOG))
		return log_error_errno(-errno, "tunnel: %s on %s port %u", what,
				       addr_str(ss, addr, sizeof(addr)),
				       ntohs(((const struct sockaddr_in *)ss)->sin_port));
	return take_fd(&fd);
}

static int map_open(const struct tunnel_config *cfg, const char *name)
{
	char path[PATH_MAX + 32];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", cfg->pin_dir, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return log_error_errno(-errno, "tunnel: map '%s'", path);
	return fd;
}

static int tunnel_open(struct tunnel *t)
{
	static const char *const names[] = { "fg_tun_src", "fg_tun_orig", "fg_sockets",
					     "fg_tun_peer", "fg_policy_slot", "fg_quarantine",
					     "fg_ipcache" };
	int *fds[] = { &t->src_fd, &t->orig_fd, &t->sockets_fd, &t->peer_fd,
		       &t->slot_fd, &t->quarantine_fd, &t->ipcache_fd };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		*fds[i] = map_open(&t->cfg, names[i]);
		if (*fds[i] < 0)
			return *fds[i];
	}
	t->client_ctx = ctx_new(TLS_client_method());
	t->server_ctx = ctx_new(TLS_server_method());
	if (!t->client_ctx || !t->server_ctx)
		return log_error_errno(-ENOMEM, "tunnel: no TLS 1.3 context: %s", tls_error());
	SSL_CTX_set_client_hello_cb(t->server_ctx, choose_cert, NULL);
	t->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	t->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	t->events = calloc(TUNNEL_EVENTS_MAX, sizeof(*t->events));
	if (t->stop_fd < 0 || t->event_fd < 0)
		return log_error_errno(-errno, "tunnel: eventfd");
	if (!t->events)
		return log_error_errno(-ENOMEM, "tunnel: events");
	t->listen_fd = listen_on(&t->cfg.listen, t->cfg.listen_len, "tunnel listener");
	if (t->listen_fd < 0)
		return t->listen_fd;
	t->redirect_fd = listen_on(&t->cfg.redirect, t->cfg.redirect_len, "redirect listener");
	return t->redirect_fd < 0 ? t->redirect_fd : 0;
}

int tunnel_start(const struct tunnel_config *cfg, struct tunnel **out)
{
	struct tunnel *t = calloc(1, sizeof(*t));
	int r;

	if (!t)
		return -ENOMEM;
	t->cfg = *cfg;
	if (!t->cfg.max_flows)
		t->cfg.max_flows = TUNNEL_MAX_FLOWS_DEFAULT;
	t->port = ntohs(((const struct sockaddr_in *)&cfg->listen)->sin_port);
	t->src_fd = t->orig_fd = t->sockets_fd = t->peer_fd = t->slot_fd = -1;
	t->quarantine_fd = t->ipcache_fd = t->listen_fd = t->redirect_fd = t->stop_fd = -1;
	t->event_fd = -1;
	pthread_mutex_init(&t->lock, NULL);
	r = tunnel_open(t);
	if (!r) {
		/* the threads take no signal: the main loop's signalfd has them */
		r = -thread_spawn(&t->acceptor, acceptor_main, t);
		t->accepting = r == 0;
	}
	if (r) {
		tunnel_stop(t);
		return r;
	}
	*out = t;
	return 0;
}

/* Whether trust holds authorities for td: a removed or revoked trust domain has none. */
static bool td_trusted(const struct auth_trust *trust, const char *td)
{
	for (size_t i = 0; trust && i < trust->trust.n; i++) {
		const struct svid_td_roots *d = &trust->trust.domains[i];

		if (strcmp(d->td, td) == 0)
			return d->roots && sk_X509_num(d->roots) > 0;
	}
	return false;
}

static bool flow_to_cut(struct tunnel *t, const struct flow *f, const struct auth_trust *trust)
{
	if (f->done || f->was_cut || !f->relaying)
		return false;
	return flow_quarantined(t, f) || !td_trusted(trust, f->peer_td_name);
}

/* Wakes the flows to cut, every one when all is set; under t->lock. */
static unsigned int flows_cancel(struct tunnel *t, bool all, const struct auth_trust *trust)
{
	unsigned int n = 0;

	for (struct flow *f = t->flows; f; f = f->next) {
		if (all ? f->done : !flow_to_cut(t, f, trust))
			continue;
		f->was_cut = true;
		eventfd_write(f->cancel_fd, 1);
		n++;
	}
	return n;
}

unsigned int tunnel_cut(struct tunnel *t)
{
	struct auth_view *view = NULL;
	struct auth_trust *trust = NULL;
	unsigned int n;

	if (!t)
		return 0;
	auth_snapshot(t->cfg.auth, &view, &trust, &(__u64){ 0 });
	pthread_mutex_lock(&t->lock);
	n = flows_cancel(t, false, trust);
	pthread_mutex_unlock(&t->lock);
	auth_view_put(view);
	auth_trust_put(trust);
	if (n)
		log_info("tunnel: cut %u flow%s: quarantined or no longer trusted", n,
			 n == 1 ? "" : "s");
	return n;
}

void tunnel_stop(struct tunnel *t)
{
	if (!t)
		return;
	if (t->accepting) {
		eventfd_write(t->stop_fd, 1);
		pthread_join(t->acceptor, NULL);
	}
	pthread_mutex_lock(&t->lock);
	flows_cancel(t, true, NULL);
	pthread_mutex_unlock(&t->lock);
	flows_reap(t, true);
	int fds[] = { t->src_fd, t->orig_fd, t->sockets_fd, t->peer_fd, t->slot_fd,
		      t->quarantine_fd, t->ipcache_fd, t->listen_fd, t->redirect_fd, t->stop_fd,
		      t->event_fd };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	SSL_CTX_free(t->client_ctx);
	SSL_CTX_free(t->server_ctx);
	free(t->events);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static bool ktls_available(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "re");
	char line[256];

	return f && fgets(line, sizeof(line), f) && strstr(line, "tls");
}

void tunnel_stats(struct tunnel *t, struct tunnel_stats *out)
{
	pthread_mutex_lock(&t->lock);
	*out = t->stats;
	out->active = t->active;
	pthread_mutex_unlock(&t->lock);
	out->ktls_available = ktls_available();
}

static void add_u64(struct json_object *o, const char *k, __u64 v)
{
	json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

struct json_object *tunnel_status_json(struct tunnel *t)
{
	struct json_object *o = json_object_new_object();
	struct tunnel_stats s;

	tunnel_stats(t, &s);
	add_u64(o, "port", t->port);
	/* the relay encrypts in userspace: kTLS would be the kernel's, this one has none */
	json_object_object_add(o, "encryption", json_object_new_string("userspace"));
	json_object_object_add(o, "ktls", json_object_new_boolean(s.ktls_available));
	add_u64(o, "active", s.active);
	add_u64(o, "flows_out", s.flows_out);
	add_u64(o, "flows_in", s.flows_in);
	add_u64(o, "refused_out", s.refused_out);
	add_u64(o, "refused_in", s.refused_in);
	add_u64(o, "cut", s.cut);
	add_u64(o, "events_lost", s.events_lost);
	add_u64(o, "bytes_out", s.bytes_out);
	add_u64(o, "bytes_in", s.bytes_in);
	return o;
}
