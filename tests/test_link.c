// SPDX-License-Identifier: Apache-2.0
/*
 * Links between agents with real TLS 1.3 over loopback: engines in one
 * process, A (trust domain a.test, 127.0.0.1) and B and C (b.test, one CA,
 * 127.0.0.2 and 127.0.0.3), B listening, A and C dialing it, each with its
 * node SVID minted by svids.c. Refusals are played by the engines
 * themselves (wrong trust, a wrong expected ID, admission saying no) and
 * by hostile peers (tests/lib/rogue.c) with forged certificates, no ALPN,
 * garbage and malformed frames, silence, and a peer that never reads.
 * LINK_DEBUG=1 in the environment prints every DOWN a test looks at.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "bundle.h"
#include "io.h"
#include "lib/authtest.h"
#include "lib/rogue.h"
#include "link.h"
#include "svids.h"

#define A_ID	 "spiffe://a.test/fedguard/node/a1"
#define B_ID	 "spiffe://b.test/fedguard/node/b1"
#define C_ID	 "spiffe://b.test/fedguard/node/c1"
#define ROGUE_ID "spiffe://b.test/fedguard/node/rogue"
#define REFUSAL	 "only nodes of b.test are peers here"

enum {
	WAIT_MS = 5000,		/* for any one event: only catches hangs */
	HEARTBEAT_MS = 100,
	DEAD_MS = 400,		/* in the tests of silence */
	SMALL = 2000,		/* small messages each way */
	LARGE = 4,		/* messages of the frame limit each way */
};

struct side {
	const char *name, *td, *ip, *id;
	struct at_ca *ca;
	struct svids *svids;
	struct link_engine *e;
	struct link_config cfg;
	bool listen;
	pthread_mutex_t lock;	/* what the callbacks write, from link threads */
	bool refuse;
	bool no_hello;		/* the hello callback has none */
	int admitted;
	char admitted_id[SPIFFE_ID_MAX + 1];
	char admitted_td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	char hello_for[SPIFFE_ID_MAX + 1];
	struct link_event *pending;	/* collected, not yet looked at */
	size_t npending, cap;
};

static struct at_ca CA_A, CA_B;
static struct side A = { .name = "a1", .td = "a.test", .ip = "127.0.0.1", .id = A_ID, .ca = &CA_A };
static struct side B = { .name = "b1", .td = "b.test", .ip = "127.0.0.2", .id = B_ID, .ca = &CA_B,
			 .listen = true };
static struct side C = { .name = "c1", .td = "b.test", .ip = "127.0.0.3", .id = C_ID, .ca = &CA_B };
static struct side *const SIDES[] = { &A, &C, &B };	/* dialers stop first */

/* --- callbacks ------------------------------------------------------------------------------- */

static char *hello(void *ctx, const struct link_peer *p)
{
	struct side *s = ctx;
	char text[64];

	pthread_mutex_lock(&s->lock);
	snprintf(s->hello_for, sizeof(s->hello_for), "%s", p->spiffe_id);
	pthread_mutex_unlock(&s->lock);
	if (s->no_hello)
		return NULL;
	snprintf(text, sizeof(text), "{\"node\":\"%s\"}", s->name);
	return strdup(text);
}

static bool admit(void *ctx, const struct link_peer *p, char *why, size_t len)
{
	struct side *s = ctx;
	bool ok;

	pthread_mutex_lock(&s->lock);
	s->admitted++;
	snprintf(s->admitted_id, sizeof(s->admitted_id), "%s", p->spiffe_id);
	snprintf(s->admitted_td, sizeof(s->admitted_td), "%s", p->td);
	ok = !s->refuse;
	pthread_mutex_unlock(&s->lock);
	if (!ok)
		snprintf(why, len, REFUSAL);
	return ok;
}

/* --- set-up ---------------------------------------------------------------------------------- */

/* Node SVIDs of ttl seconds minted at minted. */
static void side_svids(struct side *s, time_t minted, unsigned int ttl)
{
	struct svids_config cfg = { .trust_domain = s->td, .node_name = s->name, .ca = s->ca->node,
				    .ca_key = s->ca->node_key, .ca_chain = s->ca->node_chain,
				    .ttl = ttl };
	char why[SVIDS_WHY_MAX];

	svids_free(s->svids);
	cr_assert_eq(svids_new(&cfg, minted, &s->svids, why, sizeof(why)), 0, "%s", why);
}

/* s trusts the roots of the given CAs (NULL-terminated); returns how many links that closed. */
static int trust(struct side *s, ...)
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
	return link_engine_set_trust(s->e, t);
}

/* Short times, dials from the side's own address; B listens (on port, 0: any). */
static void side_config(struct side *s, __u16 port)
{
	s->cfg = (struct link_config){ .heartbeat_ms = HEARTBEAT_MS, .dead_ms = 3000,
				       .retry_min_ms = 50, .retry_max_ms = 400, .hello = hello,
				       .admit = admit, .ctx = s };
	at_addr(s->ip, 0, &s->cfg.source, &s->cfg.source_len);
	if (s->listen)
		at_addr(s->ip, port, &s->cfg.listen, &s->cfg.listen_len);
}

/* Starts side s with its configuration as the test left it, trusting both CAs. */
static void start(struct side *s)
{
	char why[LINK_WHY_MAX];

	s->cfg.svids = s->svids;
	cr_assert_eq(link_engine_new(&s->cfg, &s->e, why, sizeof(why)), 0, "%s: %s", s->name, why);
	cr_assert_eq(link_engine_start(s->e, why, sizeof(why)), 0, "%s: %s", s->name, why);
	trust(s, &CA_A, &CA_B, NULL);
}

static void drop_pending(struct side *s)
{
	for (size_t i = 0; i < s->npending; i++)
		link_event_release(&s->pending[i]);
	s->npending = 0;
}

static void stop(struct side *s)
{
	link_engine_free(s->e);
	s->e = NULL;
	drop_pending(s);
}

static void setup(void)
{
	time_t now = time(NULL);

	signal(SIGPIPE, SIG_IGN);	/* the hostile peers write to closed connections */
	cr_assert_eq(at_ca_make("a.test", now, 86400, &CA_A), 0);
	cr_assert_eq(at_ca_make("b.test", now, 86400, &CA_B), 0);
	for (size_t i = 0; i < 3; i++) {
		pthread_mutex_init(&SIDES[i]->lock, NULL);
		side_svids(SIDES[i], now, 3600);
		side_config(SIDES[i], 0);
	}
}

static void teardown(void)
{
	for (size_t i = 0; i < 3; i++) {
		stop(SIDES[i]);
		free(SIDES[i]->pending);
		svids_free(SIDES[i]->svids);
		SIDES[i]->svids = NULL;
	}
	at_ca_free(&CA_A);
	at_ca_free(&CA_B);
}

TestSuite(link, .init = setup, .fini = teardown, .timeout = 60);

/* --- events ---------------------------------------------------------------------------------- */

static const char *type_name(enum link_event_type t)
{
	return t == LINK_EV_UP ? "UP" : t == LINK_EV_MESSAGE ? "MESSAGE" : "DOWN";
}

static void collect(struct side *s)
{
	struct link_event ev[64];
	size_t n = link_engine_collect(s->e, ev, 64);

	if (!n)
		return;
	if (s->npending + n > s->cap) {
		s->cap = (s->npending + n) * 2;
		s->pending = realloc(s->pending, s->cap * sizeof(*s->pending));
		cr_assert(s->pending);
	}
	memcpy(s->pending + s->npending, ev, n * sizeof(*ev));
	s->npending += n;
}

/* The first event of s of type (of connection id, 0: any), within ms; the rest stay. */
static bool find_event(struct side *s, enum link_event_type type, uint64_t id, int ms,
		       struct link_event *out)
{
	struct pollfd p = { .fd = link_engine_fd(s->e), .events = POLLIN };
	int64_t until = io_now_ms() + ms;

	for (;;) {
		for (size_t i = 0; i < s->npending; i++) {
			if (s->pending[i].type != type || (id && s->pending[i].id != id))
				continue;
			*out = s->pending[i];
			memmove(&s->pending[i], &s->pending[i + 1],
				(s->npending - i - 1) * sizeof(*out));
			s->npending--;
			return true;
		}
		if (io_now_ms() >= until)
			return false;
		poll(&p, 1, 20);
		collect(s);
	}
}

static struct link_event next_event(struct side *s, enum link_event_type type, uint64_t id)
{
	struct link_event ev = {};

	if (!find_event(s, type, id, WAIT_MS, &ev))
		cr_assert_fail("%s: no %s event of link %llu within %d ms", s->name,
			       type_name(type), (unsigned long long)id, WAIT_MS);
	return ev;
}

/* The next DOWN of s (link id, 0: any): it says needle, and was_up as expected. */
static struct link_event expect_down(struct side *s, uint64_t id, bool was_up, const char *needle)
{
	struct link_event ev = next_event(s, LINK_EV_DOWN, id);

	if (getenv("LINK_DEBUG"))
		fprintf(stderr, "%lld %s: DOWN %llu up=%d %s\n", (long long)io_now_ms(), s->name,
			(unsigned long long)ev.id, ev.was_up, ev.text);

	cr_expect(ev.text && strstr(ev.text, needle), "%s: DOWN says '%s', not '%s'", s->name,
		  ev.text, needle);
	cr_expect_eq(ev.was_up, was_up, "%s: DOWN '%s' with was_up %d", s->name, ev.text,
		     ev.was_up);
	return ev;
}

static void expect_down_release(struct side *s, uint64_t id, bool was_up, const char *needle)
{
	struct link_event ev = expect_down(s, id, was_up, needle);

	link_event_release(&ev);
}

/* --- helpers --------------------------------------------------------------------------------- */

static const char *addr_of(struct side *s)
{
	static char buf[64];

	snprintf(buf, sizeof(buf), "%s:%u", s->ip, link_engine_port(s->e));
	return buf;
}

static uint64_t dial(struct side *from, struct side *to, const char *expected)
{
	uint64_t id = 0;

	cr_assert_eq(link_dial(from->e, addr_of(to), expected, &id), 0);
	return id;
}

/* from dials B and the link comes up: the dial's id, and B's id of it in *at_b. */
static uint64_t link_up(struct side *from, uint64_t *at_b)
{
	uint64_t id = dial(from, &B, B_ID);
	struct link_event a = next_event(from, LINK_EV_UP, id);
	struct link_event b = next_event(&B, LINK_EV_UP, 0);

	cr_assert_str_eq(b.peer_id, from->id);
	if (at_b)
		*at_b = b.id;
	link_event_release(&a);
	link_event_release(&b);
	return id;
}

static struct at_peer to_b_from(const char *ip)
{
	struct at_peer p = {};

	at_addr(B.ip, link_engine_port(B.e), &p.to, &p.to_len);
	at_addr(ip, 0, &p.from, &p.from_len);
	return p;
}

/* A hostile client at 127.0.0.5 with a genuine a.test node SVID, offering alpn. */
static int rogue_client(const char *alpn, bool with_cert, struct at_tls *t)
{
	struct at_peer p = to_b_from("127.0.0.5");
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	char why[256];
	int r;

	cr_assert_eq(at_forge_leaf("spiffe://a.test/fedguard/node/r1", CA_A.node, CA_A.node_key,
				   time(NULL), 3600, &cert, &key), 0);
	r = at_tls_connect(&p, with_cert ? cert : NULL, key, CA_A.node_chain, alpn, t, why,
			   sizeof(why));
	X509_free(cert);
	EVP_PKEY_free(key);
	return r;
}

/* A JSON object of exactly len bytes whose content depends on seed. */
static char *json_of(size_t len, unsigned int seed)
{
	char *s = malloc(len + 1);

	cr_assert(s && len >= 8);
	memcpy(s, "{\"d\":\"", 6);
	for (size_t i = 6; i < len - 2; i++)
		s[i] = (char)('a' + (i * 7 + seed) % 26);
	memcpy(s + len - 2, "\"}", 3);
	return s;
}

static struct link_info info(struct side *s, uint64_t id)
{
	struct link_info *list, found = {};
	size_t n;

	cr_assert_eq(link_list(s->e, &list, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (list[i].id == id)
			found = list[i];
	free(list);
	cr_assert_eq(found.id, id, "%s: link %llu not listed", s->name, (unsigned long long)id);
	return found;
}

/* --- coming up ------------------------------------------------------------------------------- */

Test(link, dial_comes_up_and_hellos_are_exchanged)
{
	struct link_event a, b;
	struct link_info ia, ib;
	char addr[LINK_ADDR_MAX];
	time_t now = time(NULL);
	uint64_t id;

	start(&B);
	start(&A);
	id = dial(&A, &B, B_ID);
	a = next_event(&A, LINK_EV_UP, id);
	b = next_event(&B, LINK_EV_UP, 0);
	cr_expect_eq(a.dir, LINK_OUT);
	cr_expect_str_eq(a.peer_id, B_ID);
	cr_expect_str_eq(a.peer_td, "b.test");
	cr_expect_str_eq(a.text, "{\"node\":\"b1\"}", "A got B's hello '%s'", a.text);
	cr_expect_eq(b.dir, LINK_IN);
	cr_expect_str_eq(b.peer_id, A_ID);
	cr_expect_str_eq(b.peer_td, "a.test");
	cr_expect_str_eq(b.text, "{\"node\":\"a1\"}", "B got A's hello '%s'", b.text);
	/* A dials from its configured source address */
	link_addr_str((struct sockaddr *)&b.addr, addr);
	cr_expect(strncmp(addr, "127.0.0.1 port ", 15) == 0, "B sees A at %s", addr);
	cr_expect_eq(B.admitted, 1);
	cr_expect_str_eq(B.admitted_id, A_ID);
	cr_expect_str_eq(B.admitted_td, "a.test");
	cr_expect_str_eq(A.hello_for, B_ID);
	cr_expect_str_eq(B.hello_for, A_ID);
	/* node SVIDs of an hour minted now: the link ends in about an hour */
	cr_expect(a.not_after > now + 3500 && a.not_after <= now + 3601, "not_after %+ld s",
		  (long)(a.not_after - now));
	ia = info(&A, id);
	ib = info(&B, b.id);
	cr_expect(ia.state == LINK_UP && ia.dir == LINK_OUT && !strcmp(ia.peer_id, B_ID));
	cr_expect(ib.state == LINK_UP && ib.dir == LINK_IN && !strcmp(ib.peer_id, A_ID));
	cr_expect_gt(ia.bytes_out, 0);
	link_event_release(&a);
	link_event_release(&b);
}

Test(link, links_over_ipv6)
{
	struct link_event a, b;
	char addr[64];
	uint64_t id;

	/* B on ::1; A's IPv4 source address does not apply to an IPv6 dial */
	at_addr("::1", 0, &B.cfg.listen, &B.cfg.listen_len);
	start(&B);
	start(&A);
	snprintf(addr, sizeof(addr), "[::1]:%u", link_engine_port(B.e));
	cr_assert_eq(link_dial(A.e, addr, B_ID, &id), 0);
	a = next_event(&A, LINK_EV_UP, id);
	b = next_event(&B, LINK_EV_UP, 0);
	link_addr_str((struct sockaddr *)&b.addr, addr);
	cr_expect(strncmp(addr, "::1 port ", 9) == 0, "B sees A at %s", addr);
	link_event_release(&a);
	link_event_release(&b);
}

Test(link, small_messages_arrive_in_order_both_ways)
{
	uint64_t id, at_b;
	char msg[64];

	start(&B);
	start(&A);
	id = link_up(&A, &at_b);
	for (int i = 0; i < SMALL; i++) {
		int n = snprintf(msg, sizeof(msg), "{\"seq\":%d,\"from\":\"a\"}", i);

		cr_assert_eq(link_send(A.e, id, msg, (size_t)n), 0, "A's message %d", i);
		n = snprintf(msg, sizeof(msg), "{\"seq\":%d,\"from\":\"b\"}", i);
		cr_assert_eq(link_send(B.e, at_b, msg, (size_t)n), 0, "B's message %d", i);
	}
	for (int i = 0; i < SMALL; i++) {
		struct link_event at_a = next_event(&A, LINK_EV_MESSAGE, id);
		struct link_event at_bb = next_event(&B, LINK_EV_MESSAGE, at_b);
		int sa = -1, sb = -1;

		sscanf(at_a.text, "{\"seq\":%d,\"from\":\"b\"}", &sa);
		sscanf(at_bb.text, "{\"seq\":%d,\"from\":\"a\"}", &sb);
		cr_assert_eq(sa, i, "A's message %d is '%s'", i, at_a.text);
		cr_assert_eq(sb, i, "B's message %d is '%s'", i, at_bb.text);
		cr_assert_eq(at_a.len, strlen(at_a.text));
		link_event_release(&at_a);
		link_event_release(&at_bb);
	}
	/* A counts a message once its write returned, which may be after B read it */
	for (int i = 0; i < 200 && info(&A, id).msgs_out != SMALL; i++)
		usleep(10000);
	cr_expect_eq(info(&A, id).msgs_out, SMALL);
	cr_expect_eq(info(&A, id).msgs_in, SMALL);
	cr_expect_eq(info(&B, at_b).msgs_in, SMALL);
}

Test(link, messages_of_the_frame_limit_arrive_intact_both_ways)
{
	size_t len = LINK_FRAME_MAX_DEFAULT;
	char *sent[2][LARGE];
	uint64_t id, at_b;

	/* both sides send at once: each must keep reading while it writes */
	A.cfg.outbox_max = B.cfg.outbox_max = (LARGE + 1) * len;
	start(&B);
	start(&A);
	id = link_up(&A, &at_b);
	for (int i = 0; i < LARGE; i++) {
		sent[0][i] = json_of(len, (unsigned int)i);
		sent[1][i] = json_of(len, (unsigned int)(100 + i));
		cr_assert_eq(link_send(A.e, id, sent[0][i], len), 0);
		cr_assert_eq(link_send(B.e, at_b, sent[1][i], len), 0);
	}
	for (int i = 0; i < LARGE; i++) {
		struct link_event at_b_ev = next_event(&B, LINK_EV_MESSAGE, at_b);
		struct link_event at_a_ev = next_event(&A, LINK_EV_MESSAGE, id);

		cr_assert_eq(at_b_ev.len, len);
		cr_assert_eq(at_a_ev.len, len);
		cr_expect(memcmp(at_b_ev.text, sent[0][i], len) == 0, "B's message %d differs", i);
		cr_expect(memcmp(at_a_ev.text, sent[1][i], len) == 0, "A's message %d differs", i);
		link_event_release(&at_a_ev);
		link_event_release(&at_b_ev);
		free(sent[0][i]);
		free(sent[1][i]);
	}
	char *over = json_of(len + 1, 0);

	cr_expect_eq(link_send(A.e, id, over, len + 1), -EMSGSIZE);
	free(over);
}

Test(link, lost_peer_is_reported_and_the_dial_comes_back)
{
	struct link_event up;
	uint64_t id;
	__u16 port;

	start(&B);
	start(&A);
	id = link_up(&A, NULL);
	port = link_engine_port(B.e);
	stop(&B);
	expect_down_release(&A, id, true, "closed by the peer: the engine stops");
	/* the dial keeps trying, and says why it fails */
	struct link_event fail = expect_down(&A, id, false, "Connection refused");

	cr_expect(strstr(fail.text, "connect to 127.0.0.2 port"), "%s", fail.text);
	cr_expect_eq(fail.attempts, 1);
	cr_expect_str_eq(fail.peer_id, B_ID);
	link_event_release(&fail);
	/* the peer is back on its port: the same dial comes up again */
	side_config(&B, port);
	start(&B);
	up = next_event(&A, LINK_EV_UP, id);
	cr_expect_str_eq(up.peer_id, B_ID);
	link_event_release(&up);
	up = next_event(&B, LINK_EV_UP, 0);
	cr_expect_str_eq(up.peer_id, A_ID);
	link_event_release(&up);
}

Test(link, broadcast_reaches_every_link_up)
{
	uint64_t a, c;
	struct link_event m;

	start(&B);
	start(&A);
	start(&C);
	a = link_up(&A, NULL);
	c = link_up(&C, NULL);
	cr_expect_eq(link_broadcast(B.e, LINK_IN, "{\"all\":1}", 9), 2);
	cr_expect_eq(link_broadcast(B.e, LINK_OUT, "{\"all\":2}", 9), 0, "B dialed nobody");
	m = next_event(&A, LINK_EV_MESSAGE, a);
	cr_expect_str_eq(m.text, "{\"all\":1}");
	link_event_release(&m);
	m = next_event(&C, LINK_EV_MESSAGE, c);
	cr_expect_str_eq(m.text, "{\"all\":1}");
	link_event_release(&m);
}

Test(link, close_from_the_listener_makes_the_dialer_come_back)
{
	struct link_event up;
	uint64_t id, at_b;

	start(&B);
	start(&A);
	id = link_up(&A, &at_b);
	cr_assert_eq(link_close(B.e, at_b, "policy changed"), 0);
	expect_down_release(&B, at_b, true, "policy changed");
	expect_down_release(&A, id, true, "closed by the peer: policy changed");
	up = next_event(&A, LINK_EV_UP, id);
	link_event_release(&up);
	cr_expect_eq(link_close(B.e, at_b, NULL), -ENOENT, "an ended incoming link closed again");
}

Test(link, application_without_a_hello_ends_the_connection)
{
	B.no_hello = true;
	start(&B);
	start(&A);
	dial(&A, &B, B_ID);
	expect_down_release(&B, 0, false, "the application has no hello for this peer");
	expect_down_release(&A, 0, false, "closed by the peer: the application has no hello");
}

Test(link, undial_ends_the_link_with_a_goodbye)
{
	struct link_info *list;
	uint64_t id;
	size_t n;

	start(&B);
	start(&A);
	id = link_up(&A, NULL);
	cr_assert_eq(link_undial(A.e, id), 0);
	expect_down_release(&A, id, true, "undialed");
	expect_down_release(&B, 0, true, "closed by the peer: undialed");
	cr_expect_eq(link_undial(A.e, id), -ENOENT);
	cr_expect_eq(link_send(A.e, id, "{}", 2), -ENOENT);
	cr_assert_eq(link_list(A.e, &list, &n), 0);
	cr_expect_eq(n, 0, "an undialed link is still listed");
	free(list);
}

/* --- refusals -------------------------------------------------------------------------------- */

Test(link, server_of_another_ca_is_refused)
{
	struct at_ca rogue;

	/* A's bundle for b.test holds another CA's root than the one behind B's SVID */
	cr_assert_eq(at_ca_make("b.test", time(NULL), 86400, &rogue), 0);
	start(&B);
	start(&A);
	trust(&A, &CA_A, &rogue, NULL);
	dial(&A, &B, B_ID);
	expect_down_release(&A, 0, false, "the SVID of '" B_ID "' is rejected (untrusted)");
	expect_down_release(&B, 0, false, "closed by the peer: the SVID of '" B_ID "' is rejected");
	at_ca_free(&rogue);
}

Test(link, server_with_another_id_than_expected_is_refused)
{
	start(&B);
	start(&A);
	dial(&A, &B, "spiffe://b.test/fedguard/node/other");
	expect_down_release(&A, 0, false, "(id-mismatch)");
	expect_down_release(&B, 0, false, "closed by the peer");
	cr_expect_eq(B.admitted, 1, "B admits A, A refuses B");
}

Test(link, client_of_a_trust_domain_the_trust_does_not_know_is_refused)
{
	start(&B);
	start(&A);
	trust(&B, &CA_B, NULL);
	dial(&A, &B, B_ID);
	expect_down_release(&B, 0, false, "the SVID of '" A_ID "' is rejected (no-bundle)");
	expect_down_release(&A, 0, false, "closed by the peer: the SVID of '" A_ID "' is rejected");
	cr_expect_eq(B.admitted, 0, "an unvalidated peer was put to admit");
}

Test(link, client_that_admit_refuses_is_told_why)
{
	B.refuse = true;
	start(&B);
	start(&A);
	dial(&A, &B, B_ID);
	expect_down_release(&B, 0, false, "not admitted: " REFUSAL);
	expect_down_release(&A, 0, false, "closed by the peer: not admitted: " REFUSAL);
	cr_expect_str_eq(B.admitted_id, A_ID);
}

Test(link, client_without_a_certificate_is_refused)
{
	struct at_tls t;

	start(&B);
	/* TLS 1.3: the client may finish its handshake before the server refuses */
	if (rogue_client(LINK_ALPN, false, &t) == 0)
		at_tls_close(&t);
	expect_down_release(&B, 0, false, "TLS handshake: peer did not return a certificate");
}

Test(link, client_without_the_link_alpn_is_refused)
{
	struct at_tls t;

	start(&B);
	if (rogue_client(NULL, true, &t) == 0)
		at_tls_close(&t);
	expect_down_release(&B, 0, false, "the client does not offer 'fedguard-link/1' (ALPN)");
	/* another protocol, the one an HTTPS client of the bundle endpoint would offer */
	cr_expect_neq(rogue_client("http/1.1", true, &t), 0, "B spoke HTTP");
	expect_down_release(&B, 0, false, "the client does not offer 'fedguard-link/1' (ALPN)");
}

/* A hostile server at 127.0.0.4 with a genuine b.test node SVID, answering alpn. */
static void rogue_server(const char *alpn, struct at_tls *t, uint64_t *id)
{
	int fd = at_listen("127.0.0.4", 0);
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	X509 *cert;
	EVP_PKEY *key;
	char why[256], addr[64];

	cr_assert_geq(fd, 0);
	getsockname(fd, (struct sockaddr *)&ss, &len);
	snprintf(addr, sizeof(addr), "127.0.0.4:%u", ntohs(((struct sockaddr_in *)&ss)->sin_port));
	cr_assert_eq(at_forge_leaf(ROGUE_ID, CA_B.node, CA_B.node_key, time(NULL), 3600, &cert,
				   &key), 0);
	cr_assert_eq(link_dial(A.e, addr, ROGUE_ID, id), 0);
	cr_assert_eq(at_tls_accept(fd, cert, key, CA_B.node_chain, alpn, t, why, sizeof(why)), 0,
		     "%s", why);
	close(fd);	/* the dial's next attempts are refused */
	X509_free(cert);
	EVP_PKEY_free(key);
}

Test(link, server_without_the_link_alpn_is_refused)
{
	struct at_tls t;
	uint64_t id;

	start(&A);
	rogue_server(NULL, &t, &id);
	expect_down_release(&A, id, false, "the server does not speak 'fedguard-link/1' (ALPN)");
	at_tls_close(&t);
}

/* --- hostile frames -------------------------------------------------------------------------- */

struct hostile {
	const char *name;
	bool hello_first;		/* a valid hello before the rest */
	const unsigned char *raw;	/* bytes sent as they are, or */
	size_t raw_len;
	__u8 type;			/* one frame of type and payload */
	const char *payload;
	size_t len;			/* 0: strlen(payload) */
	const char *expect;		/* in B's DOWN and in its goodbye */
};

static const unsigned char zero_length[] = { 0, 0, 0, 0, 2 };
static const unsigned char over_limit[] = { 0, 0x10, 0, 2, 2, '{' };	/* 1 MiB + 1 */

static const struct hostile hostiles[] = {
	{ "unknown type", true, .type = 9, .payload = "{}", .expect = "a frame of unknown type 9" },
	{ "length 0", true, zero_length, sizeof(zero_length),
	  .expect = "malformed frame: length 0" },
	{ "over the limit", true, over_limit, sizeof(over_limit),
	  .expect = "a frame of 1048577 bytes, over the limit of 1048576" },
	{ "not JSON", true, .type = 2, .payload = "not json",
	  .expect = "malformed message: not JSON" },
	{ "not an object", true, .type = 2, .payload = "[1,2]",
	  .expect = "malformed message: not a JSON object" },
	{ "trailing bytes", true, .type = 2, .payload = "{} x", .expect = "malformed message" },
	{ "message first", false, .type = 2, .payload = "{}",
	  .expect = "a message before the hello" },
	{ "ping first", false, .type = 0, .payload = "", .expect = "a ping before the hello" },
	{ "NUL in the hello", false, .type = 1, .payload = "{\"a\":\"\0\"}", .len = 9,
	  .expect = "malformed hello: a NUL byte" },
	{ "hello not JSON", false, .type = 1, .payload = "hello", .expect = "malformed hello" },
	{ "second hello", true, .type = 1, .payload = "{}", .expect = "a second hello" },
	{ "ping with a payload", true, .type = 0, .payload = "x",
	  .expect = "malformed ping: a payload of 1 bytes" },
};

Test(link, malformed_frames_close_the_connection_with_the_cause)
{
	start(&B);
	for (size_t i = 0; i < sizeof(hostiles) / sizeof(*hostiles); i++) {
		const struct hostile *h = &hostiles[i];
		size_t len = h->len ? h->len : strlen(h->payload ? h->payload : "");
		char reason[512];
		struct at_tls t;

		cr_assert_eq(rogue_client(LINK_ALPN, true, &t), 0, "%s", h->name);
		if (h->hello_first)
			cr_assert_eq(at_link_send(&t, LINK_FRAME_HELLO, "{}", 2), 0);
		if (h->raw)
			cr_assert_eq(at_tls_write(&t, h->raw, h->raw_len), 0);
		else
			cr_assert_eq(at_link_send(&t, h->type, h->payload, len), 0);
		cr_expect_eq(at_link_goodbye(&t, reason, sizeof(reason)), 0, "%s: no goodbye",
			     h->name);
		cr_expect(strstr(reason, h->expect), "%s: goodbye '%s'", h->name, reason);
		expect_down_release(&B, 0, h->hello_first, h->expect);
		at_tls_close(&t);
	}
}

Test(link, garbage_instead_of_tls_is_refused)
{
	static const char http[] = "GET / HTTP/1.0\r\n\r\n";
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct at_peer p;

	start(&B);
	p = to_b_from("127.0.0.5");
	cr_assert_eq(connect(fd, (struct sockaddr *)&p.to, p.to_len), 0);
	cr_assert_eq(write(fd, http, sizeof(http) - 1), (ssize_t)sizeof(http) - 1);
	expect_down_release(&B, 0, false, "TLS handshake: ");
	close(fd);
}

/* --- silence and peers that do not read ------------------------------------------------------ */

Test(link, silent_client_is_cut_after_the_dead_time)
{
	struct link_event up, down;
	char reason[256];
	struct at_tls t;

	B.cfg.dead_ms = DEAD_MS;
	start(&B);
	cr_assert_eq(rogue_client(LINK_ALPN, true, &t), 0);
	cr_assert_eq(at_link_send(&t, LINK_FRAME_HELLO, "{}", 2), 0);
	up = next_event(&B, LINK_EV_UP, 0);
	/* then nothing: B's pings go out, nothing comes back */
	cr_expect_eq(at_link_goodbye(&t, reason, sizeof(reason)), 0);
	cr_expect_str_eq(reason, "silent for 400 ms");
	down = expect_down(&B, up.id, true, "silent for 400 ms");
	link_event_release(&up);
	link_event_release(&down);
	at_tls_close(&t);
}

Test(link, silent_server_is_cut_after_the_dead_time)
{
	struct link_event up;
	int64_t since;
	struct at_tls t;
	uint64_t id;

	A.cfg.dead_ms = DEAD_MS;
	start(&A);
	rogue_server(LINK_ALPN, &t, &id);
	cr_assert_eq(at_link_send(&t, LINK_FRAME_HELLO, "{\"rogue\":1}", 11), 0);
	up = next_event(&A, LINK_EV_UP, id);
	since = io_now_ms();
	cr_expect_str_eq(up.peer_id, ROGUE_ID);
	expect_down_release(&A, id, true, "silent for 400 ms");
	/* a lower bound: a live link must not be cut early */
	cr_expect_geq(io_now_ms() - since, DEAD_MS - 50);
	link_event_release(&up);
	at_tls_close(&t);
}

Test(link, peer_that_never_reads_is_cut_by_the_outbox_bound)
{
	size_t len = 64 * 1024;
	char *msg = json_of(len, 1);
	int64_t worst = 0;
	struct link_event up;
	struct at_tls t;
	int r = 0, sent = 0;

	B.cfg.frame_max = len;
	B.cfg.outbox_max = 4 * len;
	start(&B);
	cr_assert_eq(rogue_client(LINK_ALPN, true, &t), 0);
	cr_assert_eq(at_link_send(&t, LINK_FRAME_HELLO, "{}", 2), 0);
	up = next_event(&B, LINK_EV_UP, 0);
	/* the caller sends on and on: it is never held up, and the bound closes the link */
	for (int i = 0; i < 20000 && r == 0; i++) {
		int64_t t0 = io_now_ms();

		r = link_send(B.e, up.id, msg, len);
		worst = io_now_ms() - t0 > worst ? io_now_ms() - t0 : worst;
		sent += r == 0;
	}
	cr_expect_eq(r, -ENOBUFS, "%d messages sent, then %d", sent, r);
	cr_expect_lt(worst, 1000, "link_send() took %lld ms", (long long)worst);
	expect_down_release(&B, up.id, true, "outbox full: ");
	cr_expect_neq(link_send(B.e, up.id, msg, len), 0);
	link_event_release(&up);
	at_tls_close(&t);
	free(msg);
}

Test(link, peer_that_pings_but_never_reads_is_cut_after_the_dead_time)
{
	size_t len = LINK_FRAME_MAX_DEFAULT;
	char *msg = json_of(len, 2);
	struct link_event up, down;
	int small = 4096;
	struct at_tls t;
	bool cut = false;

	B.cfg.dead_ms = 600;
	B.cfg.outbox_max = 16 * len;
	start(&B);
	start(&A);
	uint64_t a = link_up(&A, NULL);

	cr_assert_eq(rogue_client(LINK_ALPN, true, &t), 0);
	setsockopt(t.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	cr_assert_eq(at_link_send(&t, LINK_FRAME_HELLO, "{}", 2), 0);
	up = next_event(&B, LINK_EV_UP, 0);
	for (int i = 0; i < 12; i++)
		cr_assert_eq(link_send(B.e, up.id, msg, len), 0, "message %d", i);
	/* the rogue keeps B from calling it silent, and reads nothing */
	for (int i = 0; i < 50 && !cut; i++) {
		cr_assert_eq(at_link_send(&t, LINK_FRAME_PING, "", 0), 0);
		/* meanwhile another link of B's works as ever */
		if (i == 2) {
			struct link_event m;

			cr_assert_eq(link_send(A.e, a, "{\"alive\":1}", 11), 0);
			m = next_event(&B, LINK_EV_MESSAGE, 0);
			cr_expect_str_eq(m.text, "{\"alive\":1}");
			link_event_release(&m);
		}
		cut = find_event(&B, LINK_EV_DOWN, up.id, 100, &down);
	}
	cr_assert(cut, "B still writes to a peer that reads nothing");
	cr_expect(strstr(down.text, "the peer has read nothing for 600 ms"), "%s", down.text);
	link_event_release(&down);
	link_event_release(&up);
	at_tls_close(&t);
	free(msg);
}

/* --- trust, revocation and SVIDs ------------------------------------------------------------- */

Test(link, close_td_closes_that_trust_domains_links_only)
{
	uint64_t a, c, a_at_b, c_at_b;
	struct link_event m;

	start(&B);
	start(&A);
	start(&C);
	a = link_up(&A, &a_at_b);
	c = link_up(&C, &c_at_b);
	cr_expect_eq(link_close_td(B.e, "a.test", NULL), 1);
	expect_down_release(&B, a_at_b, true, "the trust domain 'a.test' is revoked");
	expect_down_release(&A, a, true,
			    "closed by the peer: the trust domain 'a.test' is revoked");
	/* the mesh peer's link is untouched */
	cr_assert_eq(link_send(C.e, c, "{\"still\":true}", 14), 0);
	m = next_event(&B, LINK_EV_MESSAGE, c_at_b);
	cr_expect_str_eq(m.text, "{\"still\":true}");
	link_event_release(&m);
	cr_expect_eq(info(&B, c_at_b).state, LINK_UP);
}

Test(link, trust_without_a_trust_domain_closes_its_links_and_refuses_it)
{
	uint64_t a, c, a_at_b, c_at_b;

	start(&B);
	start(&A);
	start(&C);
	a = link_up(&A, &a_at_b);
	c = link_up(&C, &c_at_b);
	cr_expect_eq(trust(&B, &CA_B, NULL), 1, "set_trust closed another number of links");
	expect_down_release(&B, a_at_b, true, "the trust domain 'a.test' is no longer trusted");
	expect_down_release(&A, a, true,
			    "closed by the peer: the trust domain 'a.test' is no longer trusted");
	/* the dial tries again, and is refused with the new trust */
	expect_down_release(&B, 0, false, "(no-bundle)");
	expect_down_release(&A, a, false, "(no-bundle)");
	cr_expect_eq(info(&B, c_at_b).state, LINK_UP);
	cr_expect_eq(info(&C, c).state, LINK_UP);
}

Test(link, renewal_of_the_node_svid_makes_the_dialer_reconnect)
{
	struct link_event up1, up2;
	char why[SVIDS_WHY_MAX];
	uint64_t id;

	/* minted 40 minutes ago, an hour of life: due for renewal */
	side_svids(&A, time(NULL) - 2400, 3600);
	start(&B);
	start(&A);
	id = dial(&A, &B, B_ID);
	up1 = next_event(&A, LINK_EV_UP, id);
	cr_assert_gt(svids_renew(A.svids, time(NULL), why, sizeof(why)), 0, "%s", why);
	expect_down_release(&A, id, true, "the node SVID of '" A_ID "' was renewed");
	up2 = next_event(&A, LINK_EV_UP, id);
	cr_expect_gt(up2.not_after, up1.not_after + 1800, "the new link still ends at %+ld s",
		     (long)(up2.not_after - up1.not_after));
	expect_down_release(&B, 0, true, "closed by the peer: the node SVID of '" A_ID "'");
	link_event_release(&up1);
	link_event_release(&up2);
}

Test(link, renewal_on_the_server_side_ends_the_link_too)
{
	char why[SVIDS_WHY_MAX];
	uint64_t id;

	side_svids(&B, time(NULL) - 2400, 3600);
	start(&B);
	start(&A);
	id = link_up(&A, NULL);
	cr_assert_gt(svids_renew(B.svids, time(NULL), why, sizeof(why)), 0, "%s", why);
	expect_down_release(&A, id, true, "closed by the peer: the node SVID of '" B_ID "' was");
	struct link_event up = next_event(&A, LINK_EV_UP, id);

	cr_expect_gt(up.not_after, time(NULL) + 3000);
	link_event_release(&up);
}

Test(link, link_ends_at_the_earliest_not_after)
{
	struct link_event up;
	time_t now = time(NULL);
	uint64_t id;

	/* A's node SVID expires in 3 s */
	side_svids(&A, now - 3600 + 3, 3600);
	start(&B);
	start(&A);
	id = dial(&A, &B, B_ID);
	up = next_event(&A, LINK_EV_UP, id);
	cr_expect_leq(up.not_after, now + 3);
	expect_down_release(&A, id, true, "the SVIDs expire");
	expect_down_release(&B, 0, true, "the SVIDs expire");
	/* the dial goes on, and says what is wrong */
	expect_down_release(&A, id, false, "the node SVID of '" A_ID "' has expired");
	link_event_release(&up);
}

Test(link, client_with_an_expired_svid_is_refused)
{
	struct at_peer p;
	struct at_tls t;
	X509 *cert;
	EVP_PKEY *key;
	char why[256];

	start(&B);
	p = to_b_from("127.0.0.5");
	/* an hour of life, two hours ago */
	cr_assert_eq(at_forge_leaf(A_ID, CA_A.node, CA_A.node_key, time(NULL) - 7200, 3600, &cert,
				   &key), 0);
	if (at_tls_connect(&p, cert, key, CA_A.node_chain, LINK_ALPN, &t, why, sizeof(why)) == 0)
		at_tls_close(&t);
	expect_down_release(&B, 0, false, "the SVID of '" A_ID "' is rejected (expired)");
	X509_free(cert);
	EVP_PKEY_free(key);
}

/* --- bounds ---------------------------------------------------------------------------------- */

Test(link, uncollected_events_are_bounded_oldest_dropped_first)
{
	struct link_event ev[32];
	struct link_stats st;
	uint64_t id;
	size_t n;

	B.cfg.events_max = 16;
	start(&B);
	start(&A);
	id = dial(&A, &B, B_ID);
	link_event_release((struct link_event[]){ next_event(&A, LINK_EV_UP, id) });
	for (int i = 0; i < 100; i++) {
		char msg[32];
		int len = snprintf(msg, sizeof(msg), "{\"seq\":%d}", i);

		cr_assert_eq(link_send(A.e, id, msg, (size_t)len), 0);
	}
	/* B collects nothing until all 100 are in */
	for (int i = 0; i < WAIT_MS / 10 && info(&A, id).msgs_out < 100; i++)
		usleep(10 * 1000);
	for (int i = 0; i < WAIT_MS / 10; i++) {
		struct link_info *list;
		size_t k;
		bool all;

		cr_assert_eq(link_list(B.e, &list, &k), 0);
		all = k == 1 && list[0].msgs_in == 100;
		free(list);
		if (all)
			break;
		usleep(10 * 1000);
	}
	n = link_engine_collect(B.e, ev, 32);
	cr_expect_eq(n, 16);
	for (size_t i = 0; i < n; i++) {
		int seq = -1;

		sscanf(ev[i].text, "{\"seq\":%d}", &seq);
		cr_expect_eq(seq, (int)(100 - n + i), "event %zu is '%s'", i, ev[i].text);
		link_event_release(&ev[i]);
	}
	link_engine_stats(B.e, &st);
	cr_expect_eq(st.events_dropped, 101 - 16, "%llu dropped",
		     (unsigned long long)st.events_dropped);
}

Test(link, one_address_holds_a_few_incoming_slots_at_most)
{
	struct at_peer p;
	struct link_stats st;
	struct pollfd pfd;
	char byte;
	int fds[3];

	B.cfg.in_per_addr = 2;
	start(&B);
	start(&A);
	p = to_b_from("127.0.0.5");
	/* connections that never say a word, each holding a slot until the handshake times out */
	for (int i = 0; i < 3; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		cr_assert_eq(bind(fds[i], (struct sockaddr *)&p.from, p.from_len), 0);
		cr_assert_eq(connect(fds[i], (struct sockaddr *)&p.to, p.to_len), 0);
	}
	pfd = (struct pollfd){ .fd = fds[2], .events = POLLIN };
	cr_expect_eq(poll(&pfd, 1, WAIT_MS), 1, "the third connection was not closed");
	cr_expect_eq(read(fds[2], &byte, 1), 0);
	link_engine_stats(B.e, &st);
	cr_expect_eq(st.refused, 1);
	/* another address still links at once */
	link_up(&A, NULL);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
}

Test(link, failing_dial_is_listed_and_reported_once_per_cause)
{
	struct link_event ev;
	struct link_info i;
	struct link_stats st;
	uint64_t id;

	start(&A);
	cr_assert_eq(link_dial(A.e, "127.0.0.2:1", B_ID, &id), 0);	/* nobody listens there */
	ev = expect_down(&A, id, false, "connect to 127.0.0.2 port 1: Connection refused");
	link_event_release(&ev);
	usleep(1000 * 1000);	/* retries every 50 to 400 ms */
	i = info(&A, id);
	cr_expect_eq(i.state, LINK_CONNECTING);
	cr_expect_geq(i.attempts, 3, "%u attempts", i.attempts);
	cr_expect(strstr(i.last_error, "Connection refused"), "%s", i.last_error);
	cr_expect_str_eq(i.peer_id, B_ID);
	cr_expect(!find_event(&A, LINK_EV_DOWN, id, 0, &ev), "the same failure reported again");
	link_engine_stats(A.e, &st);
	cr_expect_geq(st.fail_suppressed, 2);
}

/* --- the API's refusals ---------------------------------------------------------------------- */

static void expect_bad_config(const struct link_config *cfg, const char *needle)
{
	struct link_engine *e = NULL;
	char why[LINK_WHY_MAX] = "";

	cr_expect_eq(link_engine_new(cfg, &e, why, sizeof(why)), -EINVAL, "'%s' accepted", needle);
	cr_expect(strstr(why, needle), "why '%s', not '%s'", why, needle);
	link_engine_free(e);
}

Test(link, bad_configurations_and_arguments_are_refused)
{
	struct link_config cfg = B.cfg;
	uint64_t id;

	cfg.svids = NULL;
	expect_bad_config(&cfg, "no SVID store");
	cfg = B.cfg;
	cfg.svids = B.svids;
	cfg.dead_ms = cfg.heartbeat_ms;
	expect_bad_config(&cfg, "dead time");
	cfg = B.cfg;
	cfg.svids = B.svids;
	cfg.admit = NULL;
	expect_bad_config(&cfg, "admit callback");
	cfg = B.cfg;
	cfg.svids = B.svids;
	cfg.outbox_max = 1000;
	expect_bad_config(&cfg, "outbox limit");
	cfg = B.cfg;
	cfg.svids = B.svids;
	at_addr("127.0.0.2", 9, &cfg.source, &cfg.source_len);
	expect_bad_config(&cfg, "source address has a port");

	start(&A);
	cr_expect_eq(link_dial(A.e, "nowhere:80", B_ID, &id), -EINVAL);
	cr_expect_eq(link_dial(A.e, "127.0.0.2", B_ID, &id), -EINVAL);
	cr_expect_eq(link_dial(A.e, "127.0.0.2:0", B_ID, &id), -EINVAL);
	cr_expect_eq(link_dial(A.e, "127.0.0.2:80", "spiffe://B.test/x", &id), -EINVAL);
	cr_expect_eq(link_dial(A.e, "127.0.0.2:80", "spiffe://b.test", &id), -EINVAL);
	cr_expect_eq(link_send(A.e, 12345, "{}", 2), -ENOENT);
	cr_assert_eq(link_dial(A.e, "127.0.0.2:1", B_ID, &id), 0);
	cr_expect_eq(link_send(A.e, id, "{}", 2), -ENOTCONN, "a message to a link not up");
	cr_expect_eq(link_send(A.e, id, "", 0), -EINVAL);
	cr_expect_eq(link_close_td(A.e, "b.test", NULL), 0, "nothing up to close");
}
