// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "peerauth.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>

#include <fedguard/abi.h>

#include "addr.h"
#include "agent.h"
#include "auth.h"
#include "bundle.h"
#include "cleanup.h"
#include "events.h"
#include "fed.h"
#include "log.h"
#include "metrics.h"
#include "observe.h"
#include "peerauth_int.h"
#include "policy_compile.h"
#include "spiffe.h"
#include "ssl_cleanup.h"
#include "state.h"
#include "svids.h"
#include "tunnel.h"

enum {
	GC_PERIOD_S = 60,	/* expired fg_auth entries are deleted this often */
	OUTCOMES_BATCH = 64,
	NS = 1000000000,
};

/* --- options ------------------------------------------------------------------------------ */

static int tunnel_opts_check(const struct peerauth_opts *o);

int peerauth_opts_check(const struct peerauth_opts *o, bool have_node_address)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (!o->trust_domain) {
		if (o->node_cert || o->node_key || o->node_name || o->n_bundles || o->listen ||
		    o->tunnel_listen || o->tunnel_redirect) {
			log_error("--node-cert, --node-key, --node-name, --bundle, --auth-listen, "
				  "--tunnel-listen and --tunnel-redirect need --trust-domain");
			return -EINVAL;
		}
		return 0;
	}
	if (spiffe_td_valid(o->trust_domain, NULL, 0)) {
		log_error("option --trust-domain: '%s' is not a trust domain name", o->trust_domain);
		return -EINVAL;
	}
	if (!o->node_cert || !o->node_key || !o->listen || !have_node_address) {
		log_error("--trust-domain needs --node-cert, --node-key, --auth-listen and "
			  "--node-address");
		return -EINVAL;
	}
	if (auth_parse_listen(o->listen, &ss, &len)) {
		log_error("option --auth-listen: '%s' is not ADDR:PORT or [ADDR]:PORT", o->listen);
		return -EINVAL;
	}
	return tunnel_opts_check(o);
}

static bool addr_unspecified(const struct sockaddr_storage *ss)
{
	static const __u8 zero[16];

	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == 0;
	return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, zero, 16) == 0;
}

static __u16 *port_of(struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? &((struct sockaddr_in *)ss)->sin_port
					: &((struct sockaddr_in6 *)ss)->sin6_port;
}

int peerauth_tunnel_redirect(const struct peerauth_opts *o, const __u8 node[16],
			     struct sockaddr_storage *out, socklen_t *len)
{
	struct sockaddr_storage ss;
	socklen_t n;
	__u16 port;

	if (o->tunnel_redirect) {
		if (auth_parse_listen(o->tunnel_redirect, &ss, &n) || addr_unspecified(&ss)) {
			log_error("option --tunnel-redirect: '%s' is not ADDR:PORT or [ADDR]:PORT "
				  "with an address workloads can reach", o->tunnel_redirect);
			return -EINVAL;
		}
	} else {
		if (auth_parse_listen(o->tunnel_listen, &ss, &n))
			return -EINVAL;
		port = ntohs(*port_of(&ss));
		if (port == 65535) {
			log_error("option --tunnel-listen: port 65535 leaves no port for the "
				  "redirect listener; give --tunnel-redirect");
			return -EINVAL;
		}
		if (addr_unspecified(&ss))	/* workloads reach the node at its address */
			n = addr_node_sockaddr(node, 0, &ss);
		*port_of(&ss) = htons(port + 1);
	}
	*out = ss;
	*len = n;
	return 0;
}

/* The tunnel's options: its listener, and a redirect address workloads can reach. */
static int tunnel_opts_check(const struct peerauth_opts *o)
{
	struct sockaddr_storage ss, auth;
	socklen_t len;

	if (!o->tunnel_listen) {
		if (!o->tunnel_redirect)
			return 0;
		log_error("option --tunnel-redirect needs --tunnel-listen");
		return -EINVAL;
	}
	if (auth_parse_listen(o->tunnel_listen, &ss, &len)) {
		log_error("option --tunnel-listen: '%s' is not ADDR:PORT or [ADDR]:PORT",
			  o->tunnel_listen);
		return -EINVAL;
	}
	auth_parse_listen(o->listen, &auth, &len);
	if (*port_of(&ss) == *port_of(&auth)) {
		log_error("options --tunnel-listen and --auth-listen: the tunnel needs a port of "
			  "its own, not %u", ntohs(*port_of(&ss)));
		return -EINVAL;
	}
	/* the redirect address, checked here so that a file's error has its line */
	return peerauth_tunnel_redirect(o, (const __u8[16]){ [10] = 0xff, [11] = 0xff, [12] = 1 },
					&ss, &len);
}

/* --- fg_auth ------------------------------------------------------------------------------ */

/* The engine's writer, called on its threads with its lock held. */
static int auth_write(void *ctx, const struct fg_auth_key *key, __u64 expiry_ns)
{
	struct peerauth *p = ctx;
	struct fg_auth_value v = { .expiry_ns = expiry_ns };

	return bpf_map_update_elem(p->auth_fd, key, &v, BPF_ANY) ? -errno : 0;
}

static const struct auth_ops auth_ops = { .write = auth_write };

/* Whether fg_auth holds a valid entry for key. */
static bool auth_valid(struct peerauth *p, const struct fg_auth_key *key)
{
	struct fg_auth_value v;

	return bpf_map_lookup_elem(p->auth_fd, key, &v) == 0 && v.expiry_ns > auth_now_ns();
}

typedef bool (*auth_pred)(const struct fg_auth_key *k, const struct fg_auth_value *v, void *arg);

/* Deletes the fg_auth entries for which drop() says yes; returns how many. */
static unsigned int auth_delete_if(int fd, auth_pred drop, void *arg)
{
	struct fg_auth_key key, cur, *prev = NULL;
	_cleanup_free_ struct fg_auth_key *doomed = NULL;
	struct fg_auth_value v;
	size_t n = 0, cap = 0, steps = 0;
	unsigned int deleted = 0;

	/* collect first: deleting under the cursor would restart the walk */
	while (bpf_map_get_next_key(fd, prev, &key) == 0 && steps++ < 2 * AUTH_PAIRS_MAX) {
		if (bpf_map_lookup_elem(fd, &key, &v) == 0 && drop(&key, &v, arg)) {
			if (n == cap) {
				size_t c = cap ? 2 * cap : 64;
				struct fg_auth_key *grown = realloc(doomed, c * sizeof(*grown));

				if (!grown)
					break;
				doomed = grown;
				cap = c;
			}
			doomed[n++] = key;
		}
		cur = key;
		prev = &cur;
	}
	for (size_t i = 0; i < n; i++)
		deleted += bpf_map_delete_elem(fd, &doomed[i]) == 0;
	return deleted;
}

static bool any_entry(const struct fg_auth_key *k, const struct fg_auth_value *v, void *arg)
{
	return true;
}

static bool expired_entry(const struct fg_auth_key *k, const struct fg_auth_value *v, void *arg)
{
	return v->expiry_ns <= *(__u64 *)arg;
}

/* --- identities ------------------------------------------------------------------------------ */

/* The SPIFFE ID of number num in the state, or NULL. */
static const char *id_name(struct json_object *state, __u32 num)
{
	json_object_object_foreach(state_section(state, "identities"), id, v)
	{
		if ((__u32)json_object_get_int64(v) == num)
			return id;
	}
	return NULL;
}

/* Whether SPIFFE ID id is in trust domain td. */
static bool in_td(const char *id, const char *td)
{
	struct spiffe_id sid;

	return spiffe_parse(id, &sid, NULL, 0) == 0 && spiffe_in_trust_domain(&sid, td);
}

static const char *node_text(const __u8 node[16], char *buf, size_t len)
{
	static const __u8 mapped[12] = { [10] = 0xff, [11] = 0xff };
	bool v4 = memcmp(node, mapped, sizeof(mapped)) == 0;

	if (!inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? node + 12 : node, buf, (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

/* --- the view of the engine -------------------------------------------------------------- */

static int view_identities(struct agent *a, struct auth_view *v)
{
	struct peerauth *p = a->auth;
	int r;

	json_object_object_foreach(state_section(a->state, "workloads"), wid, w)
	{
		(void)w;
		if (!in_td(wid, p->td))
			continue;	/* registered before --trust-domain: no SVID, no auth */
		r = auth_view_add_identity_td(v, wid, state_identity_find(a->state, wid),
					      datapath_td_number(a->state, wid), true, p->node);
		if (r)
			return r;
	}
	json_object_object_foreach(state_section(a->state, "endpoints"), eid, e)
	{
		struct json_object *n;
		__u8 node[16];
		bool has = json_object_object_get_ex(e, "node", &n) &&
			   addr_parse_node(json_object_get_string(n), node) == 0;

		r = auth_view_add_identity_td(v, eid, state_identity_find(a->state, eid),
					      datapath_td_number(a->state, eid), false,
					      has ? node : NULL);
		if (r)
			return r;
	}
	return 0;
}

/*
 * The pairs of the policy in force: every allow entry admits its pair in
 * its direction. Deny entries are left to the datapath: authenticating a
 * pair that a deny entry stops on some port is harmless.
 */
static int view_pairs(struct agent *a, struct auth_view *v)
{
	_cleanup_policy_entries_ struct policy_entries *set = NULL;
	__u32 gen;
	int r;

	r = datapath_policy_read(&a->dp, &set, &gen);
	if (r)
		return r;
	for (size_t i = 0; i < set->n; i++) {
		const struct policy_entry *e = &set->entries[i];
		bool egress = e->key.dir == FG_DIR_EGRESS;

		if (e->value.action != FG_ACT_ALLOW)
			continue;
		r = auth_view_add_pair(v, e->key.dir, egress ? e->key.src_id : e->key.dst_id,
				       egress ? e->key.dst_id : e->key.src_id, e->value.auth);
		if (r)
			return r;
	}
	return 0;
}

static int view_update(struct agent *a)
{
	struct auth_view *v;
	int r;

	r = auth_view_new(&v);
	if (r)
		return r;
	r = view_identities(a, v);
	if (!r)
		r = view_pairs(a, v);
	if (!r)
		r = auth_view_seal(v);
	if (r) {
		auth_view_put(v);
		return log_error_errno(r, "peer authentication: cannot take in the new state");
	}
	auth_engine_set_view(a->auth->engine, v);
	return 0;
}

/* SVIDs for the workloads of our trust domain. */
static void svids_update(struct agent *a)
{
	struct json_object *wl = state_section(a->state, "workloads");
	_cleanup_free_ const char **ids = calloc((size_t)json_object_object_length(wl) + 1,
						 sizeof(*ids));
	char why[SVIDS_WHY_MAX];
	size_t n = 0;

	if (!ids)
		return;
	json_object_object_foreach(wl, id, w)
	{
		(void)w;
		if (in_td(id, a->auth->td))
			ids[n++] = id;
		else
			log_warn("workload '%s' is not in trust domain '%s': it gets no SVID", id,
				 a->auth->td);
	}
	if (svids_sync(a->auth->svids, ids, n, time(NULL), why, sizeof(why)))
		log_error("SVIDs: %s", why);
}

/* --- the timer ---------------------------------------------------------------------------- */

/* Wakes the main loop at the next SVID renewal, pair renewal or clean-up. */
static void timer_arm(struct peerauth *p, __u64 engine_next)
{
	__u64 now = auth_now_ns(), at;
	time_t wait = svids_next_renewal(p->svids) - time(NULL);
	struct itimerspec its = {};

	at = now + (wait > 0 ? (__u64)wait * NS : 1);
	if (engine_next && engine_next < at)
		at = engine_next;
	if (p->next_gc_ns < at)
		at = p->next_gc_ns;
	its.it_value.tv_sec = (time_t)(at / NS);
	its.it_value.tv_nsec = (long)(at % NS);
	if (timerfd_settime(p->timer_fd, TFD_TIMER_ABSTIME, &its, NULL))
		log_error_errno(-errno, "peer authentication: timer");
}

static void renew_svids(struct peerauth *p)
{
	char why[SVIDS_WHY_MAX];
	int r = svids_renew(p->svids, time(NULL), why, sizeof(why));

	if (r < 0)
		log_error("SVID renewal: %s", why);
	else if (r > 0)
		log_info("SVIDs: %d renewed", r);
}

static void on_timer(struct agent *a)
{
	struct peerauth *p = a->auth;
	__u64 now = auth_now_ns(), buf;
	unsigned int n;

	if (read(p->timer_fd, &buf, sizeof(buf)) < 0 && errno != EAGAIN)
		log_debug("timer: %m");
	renew_svids(p);
	if (now >= p->next_gc_ns) {
		n = auth_delete_if(p->auth_fd, expired_entry, &now);
		if (n)
			log_debug("map 'fg_auth': %u expired entries deleted", n);
		p->next_gc_ns = now + GC_PERIOD_S * (__u64)NS;
	}
	timer_arm(p, auth_engine_tick(p->engine, now));
}

/* --- outcomes ----------------------------------------------------------------------------- */

static void log_outcome(struct agent *a, const struct auth_outcome *o)
{
	const char *self = id_name(a->state, o->key.local_id);
	const char *other = id_name(a->state, o->key.peer_id);
	char node[INET6_ADDRSTRLEN];

	node_text(o->key.peer_node, node, sizeof(node));
	if (o->ok) {
		log_info("auth: '%s' and '%s' at %s authenticated (%s%s, %.1f ms), valid %llu s",
			 self ? self : "?", other ? other : "?", node,
			 o->role == AUTH_ASKER ? "asked" : "answered", o->resumed ? ", resumed" : "",
			 o->elapsed_us / 1000.0, (unsigned long long)((o->expiry_ns - auth_now_ns()) / NS));
	} else if (o->role == AUTH_ASKER) {
		log_warn("auth: '%s' and '%s' at %s not authenticated: %s", self ? self : "?",
			 other ? other : "?", node, o->why);
	} else {
		log_warn("auth: answering %s: %s", node, o->why);
	}
}

/*
 * A peer whose SVID no authority of its trust domain vouches for may have
 * a key this node does not know yet: its bundle is fetched again at once.
 */
static void kick_unknown_key(struct agent *a, const struct auth_outcome *o)
{
	const char *other = id_name(a->state, o->key.peer_id);
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	struct spiffe_id sid;

	if (o->ok || !strstr(o->why, "(untrusted)") || !other ||
	    spiffe_parse(other, &sid, NULL, 0))
		return;
	snprintf(td, sizeof(td), "%.*s", (int)sid.td_len, sid.td);
	fed_bundles_kick(a, td);
}

static void on_outcomes(struct agent *a)
{
	struct auth_outcome o[OUTCOMES_BATCH];
	size_t n;

	do {
		n = auth_engine_collect(a->auth->engine, o, OUTCOMES_BATCH);
		for (size_t i = 0; i < n; i++) {
			log_outcome(a, &o[i]);
			observe_auth_outcome(a->observe, &o[i]); /* flow log, metrics, alerts */
			kick_unknown_key(a, &o[i]);
		}
	} while (n == OUTCOMES_BATCH);
	/* new pairs have renewal times of their own */
	timer_arm(a->auth, auth_engine_tick(a->auth->engine, auth_now_ns()));
}

size_t peerauth_pollfds(struct agent *a, struct pollfd *p, size_t max)
{
	if (!a->auth || max < 3)
		return 0;
	p[0] = (struct pollfd){ .fd = auth_engine_fd(a->auth->engine), .events = POLLIN };
	p[1] = (struct pollfd){ .fd = a->auth->timer_fd, .events = POLLIN };
	if (!a->auth->tunnel)
		return 2;
	p[2] = (struct pollfd){ .fd = tunnel_event_fd(a->auth->tunnel), .events = POLLIN };
	return 3;
}

/* The tunnel's flows, started or refused, become flow records. */
static void on_tunnel_events(struct agent *a)
{
	struct tunnel_event ev[64];
	size_t n = tunnel_events_take(a->auth->tunnel, ev, sizeof(ev) / sizeof(ev[0]));

	for (size_t i = 0; i < n; i++) {
		struct observe_tunnel t = {
			.flow_id = ev[i].flow_id,
			.local_id = ev[i].local,
			.peer_id = ev[i].peer,
			.dir = ev[i].out ? FG_DIR_EGRESS : FG_DIR_INGRESS,
			.ok = ev[i].ok,
			.family = ev[i].family,
			.sport = ev[i].sport,
			.dport = ev[i].dport,
			.why = ev[i].why,
		};

		memcpy(t.saddr, ev[i].saddr, 16);
		memcpy(t.daddr, ev[i].daddr, 16);
		memcpy(t.peer_node, ev[i].peer_node, 16);
		observe_tunnel_result(a->observe, &t);
	}
}

void peerauth_dispatch(struct agent *a, const struct pollfd *p, size_t n)
{
	if (!a->auth || n < 2)
		return;
	if (p[0].revents & POLLIN)
		on_outcomes(a);
	if (p[1].revents & POLLIN)
		on_timer(a);
	if (n > 2 && (p[2].revents & POLLIN))
		on_tunnel_events(a);
}

/* --- events ------------------------------------------------------------------------------- */

/*
 * An auth-needed event (a connect waiting for mTLS) or a drop for missing
 * or expired authentication: ask for the pair, in the direction of its
 * connection, unless it is authenticated or on its way.
 */
static void on_event(void *ctx, const struct fg_event *ev)
{
	static const __u8 none[16];
	struct agent *a = ctx;
	struct auth_ask ask = { .local = ev->local_id, .peer = ev->peer_id, .dir = ev->dir };
	struct fg_auth_key key = { .local_id = ev->local_id, .peer_id = ev->peer_id };
	int r;

	if (!a->auth || (ev->type == FG_EV_DROP && ev->reason != FG_REASON_DENY_AUTH_MISSING &&
			 ev->reason != FG_REASON_DENY_AUTH_EXPIRED))
		return;
	if (!ev->local_id || !ev->peer_id || !memcmp(ev->peer_node, none, 16) ||
	    (ev->dir != FG_DIR_EGRESS && ev->dir != FG_DIR_INGRESS))
		return;
	memcpy(ask.node, ev->peer_node, 16);
	memcpy(key.peer_node, ev->peer_node, 16);
	if (auth_valid(a->auth, &key))
		return;
	r = auth_engine_ask(a->auth->engine, &ask);
	if (r == 0)
		log_debug("auth: identities %u and %u: handshake asked for (%s)", ask.local,
			  ask.peer, ev->type == FG_EV_AUTH_NEEDED ? "auth needed" : "drop");
}

/* --- start and stop ----------------------------------------------------------------------- */

/* --node-name, or the host name up to its first dot. */
static void node_name(const struct peerauth_opts *o, char *buf, size_t len)
{
	if (o->node_name) {
		snprintf(buf, len, "%s", o->node_name);
		return;
	}
	if (gethostname(buf, len))
		snprintf(buf, len, "node");
	buf[len - 1] = 0;
	buf[strcspn(buf, ".")] = 0;
}

static int svids_start(struct peerauth *p, const struct peerauth_opts *o)
{
	_cleanup_x509_stack_ STACK_OF(X509) *chain = NULL;
	_cleanup_evp_pkey_ EVP_PKEY *key = NULL;
	char why[SVIDS_WHY_MAX], name[256];
	struct svids_config cfg = { .trust_domain = p->td, .node_name = name, .ttl = o->svid_ttl };
	int r;

	node_name(o, name, sizeof(name));
	r = svids_load_ca(o->node_cert, o->node_key, &chain, &key, why, sizeof(why));
	if (r)
		return log_error_errno(r, "node CA: %s", why);
	cfg.ca = sk_X509_value(chain, 0);
	cfg.ca_key = key;
	cfg.ca_chain = chain;
	r = svids_new(&cfg, time(NULL), &p->svids, why, sizeof(why));
	if (r)
		return log_error_errno(r, "node CA '%s': %s", o->node_cert, why);
	log_info("SVIDs: node '%s', trust domain '%s', %u s each", svids_node_id(p->svids), p->td,
		 o->svid_ttl);
	return 0;
}

static int engine_start(struct agent *a, const struct peerauth_opts *o)
{
	struct peerauth *p = a->auth;
	struct auth_config cfg = { .ops = &auth_ops, .ops_ctx = p };
	char why[AUTH_WHY_MAX];
	int r;

	auth_parse_listen(o->listen, &cfg.listen, &cfg.listen_len);
	memcpy(cfg.node, p->node, 16);
	r = auth_engine_new(&cfg, p->svids, &p->engine, why, sizeof(why));
	if (!r)
		r = peerauth_trust_update(a);
	if (!r)
		r = auth_engine_start(p->engine, why, sizeof(why));
	if (r)
		return log_error_errno(r, "peer authentication on '%s': %s", o->listen, why);
	log_info("peer authentication: listening on %s", o->listen);
	return 0;
}

/*
 * A tunnelled flow holds three descriptors (the workload's socket, the TLS
 * connection, its eventfd): the usual soft limit of 1024 would cap a node
 * at a few hundred flows. The hard limit is the administrator's word.
 */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		log_warn_errno(-errno, "cannot raise the open files limit, ignoring");
}

static int tunnel_begin(struct agent *a, const struct peerauth_opts *o)
{
	struct peerauth *p = a->auth;
	struct tunnel_config cfg = { .auth = p->engine, .pin_dir = a->dp.pin_dir };
	int r;

	if (!o->tunnel_listen)
		return 0;
	raise_nofile();
	auth_parse_listen(o->tunnel_listen, &cfg.listen, &cfg.listen_len);
	r = peerauth_tunnel_redirect(o, p->node, &cfg.redirect, &cfg.redirect_len);
	if (!r)
		r = tunnel_start(&cfg, &p->tunnel);
	if (r)
		return r;
	log_info("encrypted transport: listening on %s, workloads redirected to port %u of this "
		 "node; TLS 1.3 in userspace (no kTLS)", o->tunnel_listen,
		 ntohs(*port_of(&cfg.redirect)));
	return 0;
}

bool peerauth_tunnel_running(const struct agent *a)
{
	return a->auth && a->auth->tunnel;
}

void peerauth_tunnel_cut(struct agent *a)
{
	if (a->auth)
		tunnel_cut(a->auth->tunnel);
}

void peerauth_tunnel_metrics(struct agent *a, struct metrics_buf *b)
{
	static const char fl[] = "fedguard_tunnel_flows_total", rf[] = "fedguard_tunnel_refused_total",
			  by[] = "fedguard_tunnel_bytes_total";
	struct tunnel_stats s;

	if (!a->auth || !a->auth->tunnel)
		return;
	tunnel_stats(a->auth->tunnel, &s);
	metrics_family(b, "fedguard_tunnel_flows", "gauge",
		       "Flows the encrypted transport relays now, both directions.");
	metrics_u64(b, "fedguard_tunnel_flows", s.active, NULL);
	metrics_family(b, fl, "counter",
		       "Flows relayed, out of this node's workloads or into them.");
	metrics_u64(b, fl, s.flows_out, "direction", "out", NULL);
	metrics_u64(b, fl, s.flows_in, "direction", "in", NULL);
	metrics_family(b, rf, "counter", "Flows refused or failed before relaying.");
	metrics_u64(b, rf, s.refused_out, "direction", "out", NULL);
	metrics_u64(b, rf, s.refused_in, "direction", "in", NULL);
	metrics_family(b, "fedguard_tunnel_cut_total", "counter",
		       "Flows cut by a quarantine or a trust domain no longer trusted.");
	metrics_u64(b, "fedguard_tunnel_cut_total", s.cut, NULL);
	metrics_family(b, by, "counter",
		       "Plaintext bytes carried by flows that ended, out of this node's workloads or "
		       "into them.");
	metrics_u64(b, by, s.bytes_out, "direction", "out", NULL);
	metrics_u64(b, by, s.bytes_in, "direction", "in", NULL);
}

void peerauth_tunnel_status(struct agent *a, struct json_object *result)
{
	if (a->auth && a->auth->tunnel)
		json_object_object_add(result, "tunnel", tunnel_status_json(a->auth->tunnel));
}

static int maps_and_timer(struct agent *a)
{
	struct peerauth *p = a->auth;
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/fg_auth", a->dp.pin_dir);
	p->auth_fd = bpf_obj_get(path);
	if (p->auth_fd < 0)
		return log_error_errno(-errno, "map '%s'", path);
	p->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (p->timer_fd < 0)
		return log_error_errno(-errno, "timerfd");
	p->next_gc_ns = auth_now_ns() + GC_PERIOD_S * (__u64)NS;
	return 0;
}

int peerauth_start(struct agent *a, const struct peerauth_opts *o)
{
	int r;

	if (!o->trust_domain)
		return 0;
	a->auth = calloc(1, sizeof(*a->auth));
	if (!a->auth)
		return -ENOMEM;
	*a->auth = (struct peerauth){ .auth_fd = -1, .timer_fd = -1 };
	snprintf(a->auth->td, sizeof(a->auth->td), "%s", o->trust_domain);
	memcpy(a->auth->node, a->dp.node, 16);
	r = maps_and_timer(a);
	if (!r)
		r = svids_start(a->auth, o);
	if (!r)
		r = peerauth_bundles_load(a, o);
	if (!r)
		r = engine_start(a, o);
	if (!r)
		r = tunnel_begin(a, o);
	if (!r)
		r = events_subscribe(a->events, FG_EV_AUTH_NEEDED, on_event, a);
	if (!r)
		r = events_subscribe(a->events, FG_EV_DROP, on_event, a);
	if (r) {
		peerauth_stop(a);
		return r;
	}
	peerauth_state_changed(a);
	return 0;
}

void peerauth_stop(struct agent *a)
{
	struct peerauth *p = a->auth;

	if (!p)
		return;
	a->auth = NULL;	/* event handlers still subscribed see no peer authentication */
	tunnel_stop(p->tunnel);	/* its flows use the engine's views and SVIDs */
	auth_engine_free(p->engine);
	svids_free(p->svids);
	bundle_set_free(p->bundles);
	if (p->auth_fd >= 0)
		close(p->auth_fd);
	if (p->timer_fd >= 0)
		close(p->timer_fd);
	free(p);
}

const char *peerauth_trust_domain(const struct agent *a)
{
	return a->auth ? a->auth->td : NULL;
}

const char *peerauth_node_id(const struct agent *a)
{
	return a->auth ? svids_node_id(a->auth->svids) : NULL;
}

int peerauth_bundle_sequence(const struct agent *a, const char *td, uint64_t *seq)
{
	const struct bundle *b = a->auth ? bundle_set_lookup(a->auth->bundles, td) : NULL;

	if (!b || !b->has_sequence)
		return -ENOENT;
	*seq = b->sequence;
	return 0;
}

void peerauth_state_changed(struct agent *a)
{
	int n;

	if (!a->auth)
		return;
	svids_update(a);
	if (view_update(a))
		return;
	n = auth_engine_preauth(a->auth->engine);
	if (n > 0)
		log_debug("auth: %d pairs asked for ahead of time", n);
	timer_arm(a->auth, auth_engine_tick(a->auth->engine, auth_now_ns()));
}

int peerauth_svids_expiry(struct agent *a, size_t *count, time_t *earliest)
{
	time_t first = 0;
	size_t n;

	if (!a->auth)
		return -ENOENT;
	n = svids_count(a->auth->svids);
	for (size_t i = 0; i < n; i++) {
		struct svids_cred *c = svids_at(a->auth->svids, i);

		if (c && (!first || c->not_after < first))
			first = c->not_after;
		svids_cred_put(c);
	}
	*count = n;
	*earliest = first;
	return 0;
}

/* --- removing authentications ----------------------------------------------------------- */

int peerauth_flush(struct agent *a, unsigned int *removed)
{
	char path[PATH_MAX + 16];
	_cleanup_close_ int fd = -1;

	if (a->auth) {
		auth_engine_forget(a->auth->engine, NULL, NULL);
		*removed = auth_delete_if(a->auth->auth_fd, any_entry, NULL);
		return 0;
	}
	snprintf(path, sizeof(path), "%s/fg_auth", a->dp.pin_dir);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return log_error_errno(-errno, "map '%s'", path);
	*removed = auth_delete_if(fd, any_entry, NULL);
	return 0;
}

/* The numbers of the identities of one trust domain, sorted. */
struct td_nums {
	__u32 *nums;
	size_t n;
};

static int cmp_u32(const void *x, const void *y)
{
	__u32 a = *(const __u32 *)x, b = *(const __u32 *)y;

	return a < b ? -1 : a > b;
}

static int td_nums_of(struct json_object *state, const char *td, struct td_nums *out)
{
	struct json_object *ids = state_section(state, "identities");

	out->n = 0;
	out->nums = calloc((size_t)json_object_object_length(ids) + 1, sizeof(*out->nums));
	if (!out->nums)
		return -ENOMEM;
	json_object_object_foreach(ids, id, v)
	{
		if (in_td(id, td))
			out->nums[out->n++] = (__u32)json_object_get_int64(v);
	}
	qsort(out->nums, out->n, sizeof(*out->nums), cmp_u32);
	return 0;
}

static bool td_has(const struct td_nums *t, __u32 num)
{
	return bsearch(&num, t->nums, t->n, sizeof(num), cmp_u32) != NULL;
}

static bool key_in_td(const struct fg_auth_key *k, void *arg)
{
	return td_has(arg, k->local_id) || td_has(arg, k->peer_id);
}

static bool entry_in_td(const struct fg_auth_key *k, const struct fg_auth_value *v, void *arg)
{
	return key_in_td(k, arg);
}

int peerauth_drop_trust_domain(struct agent *a, const char *td, bool cut, unsigned int *removed,
			       unsigned int *destroyed)
{
	struct td_nums t;
	__u32 tdnum = 0;
	int r;

	*removed = *destroyed = 0;
	r = td_nums_of(a->state, td, &t);
	if (r)
		return r;
	auth_engine_forget(a->auth->engine, key_in_td, &t);
	*removed = auth_delete_if(a->auth->auth_fd, entry_in_td, &t);
	free(t.nums);
	if (!cut)
		return 0;
	/* only a trust domain that is numbered can have sockets bound to it */
	if (json_object_object_get_ex(state_section(a->state, "trust_domains"), td, NULL) &&
	    state_trust_domain(a->state, td, &tdnum) == 0)
		r = datapath_cut_trust_domain(&a->dp, a->state, tdnum, destroyed);
	tunnel_cut(a->auth->tunnel);
	if (r)
		return log_error_errno(r, "trust domain '%s': destroying its sockets", td);
	return 0;
}
