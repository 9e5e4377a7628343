// SPDX-License-Identifier: Apache-2.0
/*
 * agent/mstore.c, the agent's mesh store worker, against a real etcd on
 * loopback: the snapshot and then the changes in one ordered queue; writes
 * queued while etcd is down landing once it is back, in order; leased keys
 * expiring with a dead owner and put again under a new lease after the
 * lease was lost; a guarded put that lost its race reported; reachability
 * reported as it changes. No caller ever waits for etcd.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/etcd.h"
#include "mstore.h"
#include "store.h"

#define PREFIX "/fedguard/t.example/"

enum {
	WAIT_MS = 15000,
	LOG_MAX = 512,
};

static struct fg_etcd etcd;
static struct store *st;	/* the test's own client, to look and to meddle */

struct log {
	char lines[LOG_MAX][160];
	int n;
};

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void etcd_up(void)
{
	int r;

	fg_etcd_require();
	r = fg_etcd_start(&etcd);
	cr_assert_eq(r, 0, "etcd did not start: %s (log in %s)", strerror(-r), etcd.dir);
	cr_assert_eq(store_open(etcd.url, NULL, &st), 0);
}

static void etcd_down(void)
{
	store_close(st);
	st = NULL;
	fg_etcd_destroy(&etcd);
}

TestSuite(mstore, .init = etcd_up, .fini = etcd_down, .timeout = 90);

static struct mstore *start(unsigned int ttl)
{
	struct mstore_config cfg = { .urls = etcd.url, .prefix = PREFIX, .lease_ttl = ttl,
				     .connect_ms = 300, .total_ms = 1000 };
	struct mstore *m = NULL;
	char why[256] = "";

	cr_assert_eq(mstore_start(&cfg, &m, why, sizeof(why)), 0, "%s", why);
	return m;
}

static void record(struct log *l, const struct mstore_event *ev)
{
	static const char *const names[] = { "?", "S", "P", "D", "Y", "R", "U", "X" };

	if (l->n >= LOG_MAX)
		return;
	snprintf(l->lines[l->n++], sizeof(l->lines[0]), "%s%s%s%s%s", names[ev->type],
		 ev->key ? " " : "", ev->key ? ev->key : "", ev->value ? "=" : "",
		 ev->value ? ev->value : "");
}

static int find(const struct log *l, const char *line, int from)
{
	for (int i = from; i < l->n; i++)
		if (strcmp(l->lines[i], line) == 0)
			return i;
	return -1;
}

/* Collects events until line shows up (from index from on); its index, or -1 at ms. */
static int wait_for(struct mstore *m, struct log *l, const char *line, int from, long ms)
{
	long deadline = now_ms() + ms;

	while (now_ms() < deadline) {
		struct pollfd p = { .fd = mstore_fd(m), .events = POLLIN };
		struct mstore_event ev[64];
		size_t n;
		int i = find(l, line, from);

		if (i >= 0)
			return i;
		poll(&p, 1, 100);
		n = mstore_collect(m, ev, 64);
		for (size_t k = 0; k < n; k++) {
			record(l, &ev[k]);
			mstore_event_free(&ev[k]);
		}
	}
	return find(l, line, from);
}

static void put_str(const char *key, const char *val)
{
	cr_assert_eq(store_put(st, key, val, strlen(val), 0), 0, "put '%s'", key);
}

static char *get_str(const char *key)
{
	void *val = NULL;
	size_t len;
	int64_t rev;

	return store_get(st, key, &val, &len, &rev) == 0 ? val : NULL;
}

Test(mstore, snapshot_then_changes_in_order)
{
	struct log *l = calloc(1, sizeof(*l));
	struct mstore *m;
	int s, y;

	put_str(PREFIX "policy", "v1");
	put_str(PREFIX "nodes/a", "A");
	put_str("/fedguard/other.example/nodes/x", "not ours");
	m = start(0);
	s = wait_for(m, l, "S", 0, WAIT_MS);
	y = wait_for(m, l, "Y", 0, WAIT_MS);
	cr_assert_geq(s, 0, "a snapshot begins");
	cr_assert_gt(y, s, "and ends");
	cr_expect_eq(y - s, 3, "two keys in it, nothing of the other prefix");
	cr_expect_geq(find(l, "P nodes/a=A", s), 0);
	cr_expect_geq(find(l, "P policy=v1", s), 0);
	cr_expect_geq(find(l, "R", 0), 0, "reachable");

	put_str(PREFIX "quarantine/spiffe://t.example/x", "q");
	cr_assert_eq(store_delete(st, PREFIX "nodes/a"), 1);
	cr_expect_gt(wait_for(m, l, "P quarantine/spiffe://t.example/x=q", y, WAIT_MS), y);
	cr_expect_gt(wait_for(m, l, "D nodes/a", y, WAIT_MS),
		     find(l, "P quarantine/spiffe://t.example/x=q", y), "in the store's order");
	mstore_stop(m);
	free(l);
}

Test(mstore, writes_wait_for_an_unreachable_store_and_land_in_order)
{
	struct log *l = calloc(1, sizeof(*l));
	struct mstore_status stat;
	struct mstore *m = start(0);
	char *v;
	long t0;

	cr_assert_geq(wait_for(m, l, "Y", 0, WAIT_MS), 0);
	fg_etcd_stop(&etcd);
	t0 = now_ms();
	cr_assert_eq(mstore_put(m, "quarantine/a", "1"), 0);
	cr_assert_eq(mstore_put(m, "quarantine/a", "2"), 0);
	cr_assert_eq(mstore_put(m, "quarantine/b", "x"), 0);
	cr_assert_eq(mstore_delete(m, "quarantine/b"), 0);
	cr_expect_lt(now_ms() - t0, 500, "queueing never waits for the store");
	cr_assert_geq(wait_for(m, l, "U", 0, WAIT_MS), 0, "unreachable is reported");
	mstore_status(m, &stat);
	cr_expect_not(stat.reachable);
	cr_expect_geq(stat.pending, 1, "the writes wait");
	cr_expect_neq(stat.last_error[0], 0, "with the cause");

	cr_assert_eq(fg_etcd_restart(&etcd), 0);
	cr_assert_geq(wait_for(m, l, "P quarantine/a=2", 0, WAIT_MS), 0, "landed, the last one last");
	cr_assert_geq(wait_for(m, l, "D quarantine/b", 0, WAIT_MS), 0);
	v = get_str(PREFIX "quarantine/a");
	cr_expect_str_eq(v ? v : "(none)", "2");
	free(v);
	v = get_str(PREFIX "quarantine/b");
	cr_expect_null(v, "put, then deleted");
	free(v);
	mstore_status(m, &stat);
	cr_expect(stat.reachable);
	cr_expect_eq(stat.pending, 0);
	mstore_stop(m);
	free(l);
}

Test(mstore, leased_keys_live_with_their_owner)
{
	struct log *l = calloc(1, sizeof(*l));
	struct mstore_status stat;
	struct mstore *m = start(MSTORE_LEASE_TTL_MIN);
	long deadline;
	char *v;

	cr_assert_eq(mstore_lease_put(m, "nodes/n1", "{\"up\":1}"), 0);
	cr_assert_geq(wait_for(m, l, "P nodes/n1={\"up\":1}", 0, WAIT_MS), 0);
	cr_assert_eq(mstore_lease_put(m, "nodes/n1", "{\"up\":2}"), 0);
	cr_assert_geq(wait_for(m, l, "P nodes/n1={\"up\":2}", 0, WAIT_MS), 0);

	/* someone revokes the lease: the key goes, and the owner puts it back on a new one */
	mstore_status(m, &stat);
	cr_assert_neq(stat.lease_id, 0);
	cr_assert_eq(store_lease_revoke(st, stat.lease_id), 0);
	cr_assert_geq(wait_for(m, l, "D nodes/n1", 0, WAIT_MS), 0);
	cr_assert_geq(wait_for(m, l, "P nodes/n1={\"up\":2}", find(l, "D nodes/n1", 0), WAIT_MS),
		      0, "put again under a new lease");

	/* a leased key removed by its owner */
	cr_assert_eq(mstore_lease_put(m, "endpoints/n1", "[]"), 0);
	cr_assert_geq(wait_for(m, l, "P endpoints/n1=[]", 0, WAIT_MS), 0);
	cr_assert_eq(mstore_lease_put(m, "endpoints/n1", NULL), 0);
	cr_assert_geq(wait_for(m, l, "D endpoints/n1", 0, WAIT_MS), 0);

	/* the owner dies (stops without revoking): its keys expire with the lease */
	mstore_stop(m);
	v = get_str(PREFIX "nodes/n1");
	cr_expect_not_null(v, "a stop withdraws nothing at once");
	free(v);
	deadline = now_ms() + 5 * MSTORE_LEASE_TTL_MIN * 1000;
	while ((v = get_str(PREFIX "nodes/n1")) && now_ms() < deadline) {
		free(v);
		usleep(200000);
	}
	cr_expect_null(v, "expired with the dead owner's lease");
	free(v);
	free(l);
}

Test(mstore, a_guarded_put_that_lost_its_race_is_reported)
{
	struct log *l = calloc(1, sizeof(*l));
	struct mstore *m = start(0);

	cr_assert_geq(wait_for(m, l, "Y", 0, WAIT_MS), 0);
	put_str(PREFIX "policy", "theirs");
	cr_assert_eq(mstore_put_if(m, "policy", "ours", 0), 0);
	cr_assert_geq(wait_for(m, l, "X policy", 0, WAIT_MS), 0, "refused: the key exists");
	cr_assert_eq(mstore_put_if(m, "fresh", "ours", 0), 0);
	cr_assert_geq(wait_for(m, l, "P fresh=ours", 0, WAIT_MS), 0);
	mstore_stop(m);
	free(l);
}

Test(mstore, a_bad_prefix_or_url_is_refused_with_the_cause)
{
	struct mstore_config cfg = { .urls = etcd.url, .prefix = "no-slash" };
	struct mstore *m = NULL;
	char why[256] = "";

	cr_expect_eq(mstore_start(&cfg, &m, why, sizeof(why)), -EINVAL);
	cr_expect_not_null(strstr(why, "no-slash"), "%s", why);
	cfg.prefix = PREFIX;
	cfg.urls = "ftp://127.0.0.1:1";
	why[0] = 0;
	cr_expect_eq(mstore_start(&cfg, &m, why, sizeof(why)), -EINVAL);
	cr_expect_not_null(strstr(why, "ftp://"), "%s", why);
	cr_expect_null(m);
}
