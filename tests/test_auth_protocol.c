// SPDX-License-Identifier: Apache-2.0
/*
 * The peer authentication protocol with real TLS 1.3 handshakes over
 * loopback: two engines in one process, A (trust domain a.test, node
 * 127.0.0.1) owning workload "client" and B (b.test, 127.0.0.2) owning
 * "server", each with its own CA, listening on the same port as agents
 * do. What would be fg_auth is a table per side. Rejections are played by
 * the engines themselves, with wrong trust or policy, and by hostile
 * peers with forged certificates.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "bundle.h"
#include "lib/authtest.h"
#include "lib/rogue.h"
#include "svids.h"

#define CLIENT "spiffe://a.test/client"
#define SERVER "spiffe://b.test/server"
#define GHOST  "spiffe://b.test/ghost"

enum {
	/* node-local numbers: each side numbers identities its own way */
	A_CLIENT = 300,
	A_SERVER = 301,
	A_GHOST = 302,
	B_SERVER = 400,
	B_CLIENT = 401,
	WAIT_MS = 5000,
	TIMEOUT_MS = 1000,	/* the engines' exchange timeout here */
	ROUNDS = 20,
};

struct side {
	const char *td;
	const char *ip;
	__u8 node[16];
	struct at_ca ca;
	struct svids *svids;
	struct auth_engine *e;
	pthread_mutex_t lock;
	struct fg_auth_key keys[256];
	__u64 expiry[256];
	int n;
};

static struct side A = { .td = "a.test", .ip = "127.0.0.1" };
static struct side B = { .td = "b.test", .ip = "127.0.0.2" };

static int record(void *ctx, const struct fg_auth_key *key, __u64 expiry_ns)
{
	struct side *s = ctx;

	pthread_mutex_lock(&s->lock);
	if (s->n < 256) {
		s->keys[s->n] = *key;
		s->expiry[s->n++] = expiry_ns;
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static const struct auth_ops ops = { .write = record };

static void node_of(const char *ip, __u8 node[16])
{
	memset(node, 0, 16);
	node[10] = node[11] = 0xff;
	inet_pton(AF_INET, ip, node + 12);
}

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + (__u64)ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b)
{
	__u32 x = *(const __u32 *)a, y = *(const __u32 *)b;

	return x < y ? -1 : x > y;
}

static int written(struct side *s)
{
	int n;

	pthread_mutex_lock(&s->lock);
	n = s->n;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* --- views and trust ---------------------------------------------------------------------- */

/*
 * A knows its client, the server at server_node and the ghost at
 * ghost_node; policy: client -> server and client -> ghost with mTLS.
 */
static void view_a_at(bool allow, const __u8 server_node[16], const __u8 ghost_node[16])
{
	struct auth_view *v;

	cr_assert_eq(auth_view_new(&v), 0);
	cr_assert_eq(auth_view_add_identity(v, CLIENT, A_CLIENT, true, A.node), 0);
	cr_assert_eq(auth_view_add_identity(v, SERVER, A_SERVER, false, server_node), 0);
	cr_assert_eq(auth_view_add_identity(v, GHOST, A_GHOST, false, ghost_node), 0);
	if (allow) {
		cr_assert_eq(auth_view_add_pair(v, FG_DIR_EGRESS, A_CLIENT, A_SERVER, FG_AUTH_MTLS), 0);
		cr_assert_eq(auth_view_add_pair(v, FG_DIR_EGRESS, A_CLIENT, A_GHOST, FG_AUTH_MTLS), 0);
	}
	cr_assert_eq(auth_view_seal(v), 0);
	auth_engine_set_view(A.e, v);
}

static void view_a(bool allow)
{
	view_a_at(allow, B.node, B.node);
}

/* B knows its server and the client at client_node; policy admits client -> server. */
static void view_b(bool allow, const __u8 client_node[16])
{
	struct auth_view *v;

	cr_assert_eq(auth_view_new(&v), 0);
	cr_assert_eq(auth_view_add_identity(v, SERVER, B_SERVER, true, B.node), 0);
	cr_assert_eq(auth_view_add_identity(v, CLIENT, B_CLIENT, false, client_node), 0);
	if (allow)
		cr_assert_eq(auth_view_add_pair(v, FG_DIR_INGRESS, B_SERVER, B_CLIENT, FG_AUTH_MTLS),
			     0);
	cr_assert_eq(auth_view_seal(v), 0);
	auth_engine_set_view(B.e, v);
}

/* side trusts the roots of the given CAs (NULL-terminated). */
static void trust(struct side *s, ...)
{
	struct bundle_set *set;
	struct auth_trust *t;
	const struct at_ca *ca;
	va_list ap;

	cr_assert_eq(bundle_set_new(&set), 0);
	va_start(ap, s);
	while ((ca = va_arg(ap, const struct at_ca *)))
		cr_assert_eq(at_bundle_add(set, ca), 0);
	va_end(ap);
	cr_assert_eq(auth_trust_new(set, &t), 0);
	bundle_set_free(set);
	auth_engine_set_trust(s->e, t);
}

/* --- set-up -------------------------------------------------------------------------------- */

static void side_svids(struct side *s, const char *id, time_t minted)
{
	struct svids_config cfg = { .trust_domain = s->td, .node_name = "n1", .ca = s->ca.node,
				    .ca_key = s->ca.node_key, .ca_chain = s->ca.node_chain,
				    .ttl = 3600 };
	char why[SVIDS_WHY_MAX];

	svids_free(s->svids);
	cr_assert_eq(svids_new(&cfg, minted, &s->svids, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(svids_sync(s->svids, &id, 1, minted, why, sizeof(why)), 0, "%s", why);
}

static int side_engine(struct side *s, __u16 port)
{
	struct auth_config cfg = { .timeout_ms = TIMEOUT_MS, .ops = &ops, .ops_ctx = s };
	char why[AUTH_WHY_MAX];
	int r;

	at_addr(s->ip, port, &cfg.listen, &cfg.listen_len);
	memcpy(cfg.node, s->node, 16);
	r = auth_engine_new(&cfg, s->svids, &s->e, why, sizeof(why));
	cr_assert_eq(r, 0, "engine: %s", why);
	r = auth_engine_start(s->e, why, sizeof(why));
	if (r) {
		auth_engine_free(s->e);
		s->e = NULL;
	}
	return r;
}

/* Both engines on the same port, B's first (any port), then A's on it. */
static void engines_start(void)
{
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(side_engine(&B, 0), 0);
		if (side_engine(&A, auth_engine_port(B.e)) == 0)
			return;
		auth_engine_free(B.e);	/* A's address has that port taken: another */
		B.e = NULL;
	}
	cr_assert_fail("no common port for both engines");
}

static void setup(void)
{
	time_t now = time(NULL);

	signal(SIGPIPE, SIG_IGN);	/* the hostile peers write to closed connections */
	for (struct side *s = &A; s; s = s == &A ? &B : NULL) {
		pthread_mutex_init(&s->lock, NULL);
		s->n = 0;
		node_of(s->ip, s->node);
		cr_assert_eq(at_ca_make(s->td, now, 86400, &s->ca), 0);
	}
	side_svids(&A, CLIENT, now);
	side_svids(&B, SERVER, now);
	engines_start();
	view_a(true);
	view_b(true, A.node);
	trust(&A, &A.ca, &B.ca, NULL);
	trust(&B, &A.ca, &B.ca, NULL);
}

static void teardown(void)
{
	for (struct side *s = &A; s; s = s == &A ? &B : NULL) {
		auth_engine_free(s->e);
		svids_free(s->svids);
		at_ca_free(&s->ca);
		s->e = NULL;
		s->svids = NULL;
	}
}

TestSuite(auth_protocol, .init = setup, .fini = teardown, .timeout = 60);

/* --- helpers ------------------------------------------------------------------------------- */

/* The next outcome of side s in role role, within WAIT_MS. */
static struct auth_outcome outcome(struct side *s, __u8 role)
{
	struct pollfd p = { .fd = auth_engine_fd(s->e), .events = POLLIN };
	struct auth_outcome o[8];
	static struct auth_outcome pending[2][64];
	static int npending[2];
	int idx = s == &A ? 0 : 1;

	for (int waited = 0; waited < WAIT_MS; waited += 10) {
		for (int i = 0; i < npending[idx]; i++) {
			if (pending[idx][i].role != role)
				continue;
			struct auth_outcome found = pending[idx][i];

			memmove(&pending[idx][i], &pending[idx][i + 1],
				(size_t)(npending[idx] - i - 1) * sizeof(found));
			npending[idx]--;
			return found;
		}
		poll(&p, 1, 10);
		size_t n = auth_engine_collect(s->e, o, 8);

		for (size_t i = 0; i < n && npending[idx] < 64; i++)
			pending[idx][npending[idx]++] = o[i];
	}
	cr_assert_fail("side %s: no outcome as %s within %d ms", s->td,
		       role == AUTH_ASKER ? "asker" : "answerer", WAIT_MS);
	return (struct auth_outcome){};
}

static struct auth_ask ask_of(__u32 peer)
{
	struct auth_ask a = { .local = A_CLIENT, .peer = peer, .dir = FG_DIR_EGRESS };

	memcpy(a.node, B.node, 16);
	return a;
}

static void ask(__u32 peer)
{
	struct auth_ask a = ask_of(peer);

	cr_assert_eq(auth_engine_ask(A.e, &a), 0);
}

static bool has_key(struct side *s, __u32 local, __u32 peer, const __u8 node[16])
{
	bool found = false;

	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->n; i++)
		found |= s->keys[i].local_id == local && s->keys[i].peer_id == peer &&
			 memcmp(s->keys[i].peer_node, node, 16) == 0;
	pthread_mutex_unlock(&s->lock);
	return found;
}

/* --- tests ------------------------------------------------------------------------------------- */

Test(auth_protocol, handshake_authenticates_both_sides)
{
	struct auth_outcome a, b;
	__u64 now = now_ns();
	__u64 hour = 3600ull * 1000000000ull;

	ask(A_SERVER);
	a = outcome(&A, AUTH_ASKER);
	b = outcome(&B, AUTH_ANSWERER);
	cr_assert(a.ok, "asker: %s", a.why);
	cr_assert(b.ok, "answerer: %s", b.why);
	cr_expect(!a.resumed && !b.resumed, "a first handshake cannot resume");
	cr_expect(has_key(&A, A_CLIENT, A_SERVER, B.node), "A did not write {client, server, B}");
	cr_expect(has_key(&B, B_SERVER, B_CLIENT, A.node), "B did not write {server, client, A}");
	/* SVIDs of one hour minted now: the pair expires in about an hour, on both sides */
	cr_expect(a.expiry_ns > now + hour - 120ull * 1000000000ull && a.expiry_ns <= now + hour + 1000000000ull,
		  "asker's expiry %llu s from now", (unsigned long long)((a.expiry_ns - now) / 1000000000ull));
	cr_expect(b.expiry_ns > now + hour - 120ull * 1000000000ull && b.expiry_ns <= now + hour + 1000000000ull);
}

Test(auth_protocol, sessions_resume_and_cost_is_printed)
{
	__u32 full[ROUNDS], resumed[ROUNDS];
	struct auth_outcome a, b;
	int nf = 0, nr = 0;

	for (int i = 0; i < 2 * ROUNDS; i++) {
		bool fresh = i % 2 == 0;

		if (fresh)
			auth_engine_forget(A.e, NULL, NULL);	/* no session: a full handshake */
		ask(A_SERVER);
		a = outcome(&A, AUTH_ASKER);
		b = outcome(&B, AUTH_ANSWERER);
		cr_assert(a.ok && b.ok, "round %d: %s / %s", i, a.why, b.why);
		cr_expect_eq(a.resumed, !fresh, "round %d: resumed %d", i, a.resumed);
		cr_expect_eq(b.resumed, !fresh, "round %d: the answerer resumed %d", i, b.resumed);
		if (fresh)
			full[nf++] = a.elapsed_us;
		else
			resumed[nr++] = a.elapsed_us;
	}
	qsort(full, (size_t)nf, sizeof(*full), cmp_u32);
	qsort(resumed, (size_t)nr, sizeof(*resumed), cmp_u32);
	printf("auth handshake over loopback, median of %d: full %u us, resumed %u us\n", ROUNDS,
	       full[nf / 2], resumed[nr / 2]);
}

/* --- rejections -------------------------------------------------------------------------------- */

/* Neither side wrote anything. */
static void expect_nothing_written(void)
{
	cr_expect_eq(written(&A), 0, "A wrote fg_auth entries");
	cr_expect_eq(written(&B), 0, "B wrote fg_auth entries");
}

Test(auth_protocol, client_of_another_ca_is_rejected)
{
	struct auth_outcome a, b;
	struct at_ca rogue;

	/* B's bundle for a.test holds another CA's root than the one behind A's SVIDs */
	cr_assert_eq(at_ca_make("a.test", time(NULL), 86400, &rogue), 0);
	trust(&B, &rogue, &B.ca, NULL);
	ask(A_SERVER);
	a = outcome(&A, AUTH_ASKER);
	b = outcome(&B, AUTH_ANSWERER);
	cr_expect(!b.ok && strstr(b.why, "(untrusted)"), "answerer: %s", b.why);
	cr_expect(!a.ok && strstr(a.why, "refuses") && strstr(a.why, "untrusted"), "asker: %s",
		  a.why);
	expect_nothing_written();
	at_ca_free(&rogue);
}

Test(auth_protocol, server_of_another_ca_is_rejected)
{
	struct auth_outcome a;
	struct at_ca rogue;

	cr_assert_eq(at_ca_make("b.test", time(NULL), 86400, &rogue), 0);
	trust(&A, &A.ca, &rogue, NULL);
	ask(A_SERVER);
	a = outcome(&A, AUTH_ASKER);
	cr_expect(!a.ok && strstr(a.why, "(untrusted)"), "asker: %s", a.why);
	/* the asker hangs up before its request: the answerer writes nothing either */
	cr_expect(!outcome(&B, AUTH_ANSWERER).ok);
	expect_nothing_written();
	at_ca_free(&rogue);
}

/* The answerer's address for a hostile asker from node ip. */
static struct at_peer to_b_from(const char *ip)
{
	struct at_peer p = {};

	at_addr(B.ip, auth_engine_port(B.e), &p.to, &p.to_len);
	at_addr(ip, 0, &p.from, &p.from_len);
	return p;
}

Test(auth_protocol, asker_claiming_an_id_its_ca_cannot_vouch_for_is_rejected)
{
	struct at_peer p = to_b_from(A.ip);
	X509 *cert;
	EVP_PKEY *key;
	char reply[256];
	int r;

	/* B's node CA signs an SVID claiming A's client: b.test cannot vouch for a.test */
	cr_assert_eq(at_forge_leaf(CLIENT, B.ca.node, B.ca.node_key, time(NULL), 3600, &cert, &key), 0);
	r = at_rogue_ask(&p, SERVER, cert, key, B.ca.node_chain, FG_DIR_EGRESS, reply, sizeof(reply));
	cr_expect_eq(r, 1, "the forged client was not refused (%d: %s)", r, reply);
	cr_expect(strstr(reply, "untrusted"), "reply: %s", reply);
	cr_expect(!outcome(&B, AUTH_ANSWERER).ok);
	X509_free(cert);
	EVP_PKEY_free(key);

	/* the same claim signed by a CA that calls itself a.test but is in no bundle */
	struct at_ca rogue;

	cr_assert_eq(at_ca_make("a.test", time(NULL), 86400, &rogue), 0);
	cr_assert_eq(at_forge_leaf(CLIENT, rogue.node, rogue.node_key, time(NULL), 3600, &cert, &key), 0);
	r = at_rogue_ask(&p, SERVER, cert, key, rogue.node_chain, FG_DIR_EGRESS, reply, sizeof(reply));
	cr_expect_eq(r, 1, "the rogue CA's client was not refused (%d: %s)", r, reply);
	cr_expect(strstr(reply, "untrusted"), "reply: %s", reply);
	expect_nothing_written();
	X509_free(cert);
	EVP_PKEY_free(key);
	at_ca_free(&rogue);
}

/* A rogue answers at 127.0.0.3 for whatever A asks, with cert signed by signer. */
static struct auth_outcome ask_rogue_answerer(const char *id, X509 *signer, EVP_PKEY *signer_key,
					      STACK_OF(X509) *chain)
{
	__u8 rogue_node[16];
	struct at_rogue *rogue;
	struct auth_outcome a;
	struct auth_ask q;
	X509 *cert;
	EVP_PKEY *key;
	int fd = at_listen("127.0.0.3", auth_engine_port(A.e));

	cr_assert_geq(fd, 0, "rogue listener: %s", strerror(-fd));
	node_of("127.0.0.3", rogue_node);
	view_a_at(true, rogue_node, B.node);
	cr_assert_eq(at_forge_leaf(id, signer, signer_key, time(NULL), 3600, &cert, &key), 0);
	cr_assert_eq(at_rogue_answer(fd, cert, key, chain, &rogue), 0);
	q = ask_of(A_SERVER);
	memcpy(q.node, rogue_node, 16);
	auth_engine_forget(A.e, NULL, NULL);	/* no backoff from an earlier round */
	cr_assert_eq(auth_engine_ask(A.e, &q), 0);
	a = outcome(&A, AUTH_ASKER);
	at_rogue_join(rogue);
	close(fd);
	X509_free(cert);
	EVP_PKEY_free(key);
	return a;
}

Test(auth_protocol, answerer_claiming_another_identity_is_rejected)
{
	struct auth_outcome a;

	/* a.test's node CA claims b.test's server */
	a = ask_rogue_answerer(SERVER, A.ca.node, A.ca.node_key, A.ca.node_chain);
	cr_expect(!a.ok && strstr(a.why, "(untrusted)"), "asker: %s", a.why);
	/* a genuine b.test SVID, but of another identity than the one asked for */
	a = ask_rogue_answerer(GHOST, B.ca.node, B.ca.node_key, B.ca.node_chain);
	cr_expect(!a.ok && strstr(a.why, "(id-mismatch)"), "asker: %s", a.why);
	cr_expect_eq(written(&A), 0);
}

Test(auth_protocol, expired_svid_is_rejected)
{
	const char *id = CLIENT;
	struct auth_outcome a, b;
	char why[SVIDS_WHY_MAX];

	/* A's client SVID: one hour of life, minted two hours ago */
	cr_assert_eq(svids_sync(A.svids, NULL, 0, time(NULL), why, sizeof(why)), 0);
	cr_assert_eq(svids_sync(A.svids, &id, 1, time(NULL) - 7200, why, sizeof(why)), 0, "%s", why);
	ask(A_SERVER);
	a = outcome(&A, AUTH_ASKER);
	b = outcome(&B, AUTH_ANSWERER);
	cr_expect(!b.ok && strstr(b.why, "(expired)"), "answerer: %s", b.why);
	cr_expect(!a.ok, "asker authenticated with an expired SVID");
	expect_nothing_written();
}

Test(auth_protocol, answerer_policy_refusing_the_pair_is_honoured)
{
	struct auth_outcome a, b;

	view_b(false, A.node);
	ask(A_SERVER);
	a = outcome(&A, AUTH_ASKER);
	b = outcome(&B, AUTH_ANSWERER);
	cr_expect(!b.ok && strstr(b.why, "policy does not allow"), "answerer: %s", b.why);
	cr_expect(!a.ok && strstr(a.why, "refuses: policy does not allow"), "asker: %s", a.why);
	expect_nothing_written();
}

Test(auth_protocol, asker_policy_refusing_the_pair_sends_nothing)
{
	struct pollfd p = { .fd = auth_engine_fd(B.e), .events = POLLIN };
	struct auth_outcome a;

	view_a(false);
	ask(A_SERVER);
	a = outcome(&A, AUTH_ASKER);
	cr_expect(!a.ok && strstr(a.why, "policy does not allow"), "asker: %s", a.why);
	cr_expect_eq(poll(&p, 1, 200), 0, "the answerer heard from an asker that had no business");
	expect_nothing_written();
}

Test(auth_protocol, asker_from_another_node_than_registered_is_rejected)
{
	__u8 elsewhere[16];
	struct auth_outcome b;

	node_of("127.0.0.9", elsewhere);
	view_b(true, elsewhere);
	ask(A_SERVER);
	b = outcome(&B, AUTH_ANSWERER);
	cr_expect(!b.ok && strstr(b.why, "another node"), "answerer: %s", b.why);
	cr_expect(!outcome(&A, AUTH_ASKER).ok);
	expect_nothing_written();
}

Test(auth_protocol, identity_not_on_the_answering_node_is_refused)
{
	struct auth_outcome a;

	ask(A_GHOST);
	a = outcome(&A, AUTH_ASKER);
	cr_expect(!a.ok && strstr(a.why, "unrecognized name"), "asker: %s", a.why);
	expect_nothing_written();
}

/* --- slow and hostile peers ----------------------------------------------------------------------- */

Test(auth_protocol, silent_connections_delay_no_handshake)
{
	struct at_peer p = to_b_from("127.0.0.5");
	struct auth_outcome a;
	int fds[6];

	/* connections that never say a word, each holding an answerer for TIMEOUT_MS */
	for (int i = 0; i < 6; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		cr_assert_eq(bind(fds[i], (struct sockaddr *)&p.from, p.from_len), 0);
		cr_assert_eq(connect(fds[i], (struct sockaddr *)&p.to, p.to_len), 0);
	}
	ask(A_SERVER);
	a = outcome(&A, AUTH_ASKER);
	cr_expect(a.ok, "%s", a.why);
	cr_expect_lt(a.elapsed_us, TIMEOUT_MS * 1000 / 2, "the handshake waited %u us", a.elapsed_us);
	for (int i = 0; i < 6; i++)
		close(fds[i]);
}

Test(auth_protocol, unresponsive_answerer_delays_no_other_ask)
{
	__u8 hole[16];
	struct auth_outcome first, second;
	int fd = at_listen("127.0.0.3", auth_engine_port(A.e));	/* accepts, never speaks */

	cr_assert_geq(fd, 0);
	node_of("127.0.0.3", hole);
	view_a_at(true, B.node, hole);
	struct auth_ask q = ask_of(A_GHOST);

	memcpy(q.node, hole, 16);
	cr_assert_eq(auth_engine_ask(A.e, &q), 0);
	ask(A_SERVER);
	first = outcome(&A, AUTH_ASKER);
	second = outcome(&A, AUTH_ASKER);
	cr_expect(first.ok && first.key.peer_id == A_SERVER, "the good pair came second: %s",
		  first.why);
	cr_expect(!second.ok && strstr(second.why, "timed out"), "the black hole: %s", second.why);
	cr_expect_geq(second.elapsed_us, TIMEOUT_MS * 1000 * 9 / 10);
	close(fd);
}

/* --- renewal and forgetting ----------------------------------------------------------------------- */

Test(auth_protocol, tick_renews_at_two_thirds_of_the_lifetime)
{
	struct auth_outcome a;
	__u64 next;

	ask(A_SERVER);
	a = outcome(&A, AUTH_ASKER);
	cr_assert(a.ok, "%s", a.why);
	outcome(&B, AUTH_ANSWERER);
	next = auth_engine_tick(A.e, now_ns());
	cr_expect(next > now_ns() && next < a.expiry_ns, "next tick %llu, expiry %llu",
		  (unsigned long long)next, (unsigned long long)a.expiry_ns);
	/* at the renewal time the engine asks again, by itself */
	auth_engine_tick(A.e, next);
	a = outcome(&A, AUTH_ASKER);
	cr_expect(a.ok, "renewal: %s", a.why);
	cr_expect(a.resumed, "a renewal with the same SVIDs resumes the session");
	cr_expect_eq(written(&A), 2);
}

Test(auth_protocol, ask_is_deduplicated_while_in_flight)
{
	struct auth_ask q = ask_of(A_SERVER);

	cr_assert_eq(auth_engine_ask(A.e, &q), 0);
	cr_expect_eq(auth_engine_ask(A.e, &q), -EALREADY);
	cr_assert(outcome(&A, AUTH_ASKER).ok);
	/* done: a new ask is a new exchange */
	cr_expect_eq(auth_engine_ask(A.e, &q), 0);
	cr_assert(outcome(&A, AUTH_ASKER).ok);
}

Test(auth_protocol, failures_back_off)
{
	struct auth_ask q = ask_of(A_SERVER);

	view_b(false, A.node);
	cr_assert_eq(auth_engine_ask(A.e, &q), 0);
	cr_assert(!outcome(&A, AUTH_ASKER).ok);
	cr_expect_eq(auth_engine_ask(A.e, &q), -EAGAIN, "asked again at once after a failure");
	usleep(150 * 1000);	/* the first wait is 100 ms */
	view_b(true, A.node);
	cr_expect_eq(auth_engine_ask(A.e, &q), 0);
	cr_expect(outcome(&A, AUTH_ASKER).ok);
}

Test(auth_protocol, preauth_asks_for_every_wanted_pair)
{
	struct auth_outcome a;

	/* client -> server and client -> ghost are wanted; ghost is nobody at B */
	cr_expect_eq(auth_engine_preauth(A.e), 2);
	cr_expect_eq(auth_engine_preauth(A.e), 0, "pairs in flight asked for twice");
	for (int i = 0; i < 2; i++) {
		a = outcome(&A, AUTH_ASKER);
		cr_expect_eq(a.ok, a.key.peer_id == A_SERVER, "%u: %s", a.key.peer_id, a.why);
	}
	cr_expect(has_key(&A, A_CLIENT, A_SERVER, B.node));
	/* the server's pair is valid now, the ghost's backs off: nothing to ask */
	cr_expect_eq(auth_engine_preauth(A.e), 0);
}
