// SPDX-License-Identifier: Apache-2.0
/*
 * agent/store.c and agent/store_watch.c against a real etcd (Debian's
 * etcd-server) started by each test on loopback in a temporary directory:
 * keys and binary values, prefixes, leases, watches across an etcd
 * restart and a compaction; and the failures: a closed port, a server that
 * never answers, a server that answers garbage.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "lib/etcd.h"
#include "store.h"

static struct fg_etcd etcd;
static struct store *st;

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
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

static void put_str(const char *key, const char *val)
{
	int r = store_put(st, key, val, strlen(val), 0);

	cr_assert_eq(r, 0, "put '%s': %s (%s)", key, strerror(-r), store_last_error(st));
}

TestSuite(store, .init = etcd_up, .fini = etcd_down, .timeout = 60);

Test(store, put_get_round_trip_of_binary_values)
{
	const unsigned char bin[] = {0, 1, 2, 0xff, 0xfe, '\n', '"', '\\', 0, 0x80};
	void *val = NULL;
	size_t len = 0;
	int64_t rev = 0, rev2 = 0;

	cr_assert_eq(store_put(st, "/t/bin", bin, sizeof(bin), 0), 0);
	cr_assert_eq(store_get(st, "/t/bin", &val, &len, &rev), 0);
	cr_expect_eq(len, sizeof(bin));
	cr_expect_arr_eq(val, bin, sizeof(bin));
	cr_expect_gt(rev, 0);
	free(val);

	cr_assert_eq(store_put(st, "/t/empty", "", 0, 0), 0, "an empty value");
	cr_assert_eq(store_get(st, "/t/empty", &val, &len, &rev2), 0);
	cr_expect_eq(len, 0);
	cr_expect_gt(rev2, rev);
	free(val);

	val = NULL;
	cr_expect_eq(store_get(st, "/t/none", &val, &len, &rev), -ENOENT);
	cr_expect_null(val, "output written on failure");
}

struct seen {
	char keys[700][32];
	int n;
};

static int collect(void *ctx, const char *key, const void *value, size_t len, int64_t rev)
{
	struct seen *s = ctx;

	(void)value, (void)len;
	cr_assert_gt(rev, 0);
	cr_assert_lt(s->n, 700);
	snprintf(s->keys[s->n++], sizeof(s->keys[0]), "%s", key);
	return 0;
}

Test(store, list_takes_the_prefix_and_not_its_siblings)
{
	struct seen *s = calloc(1, sizeof(*s));
	int64_t rev = 0;

	put_str("/a/b", "0");
	put_str("/a/b/x", "1");
	put_str("/a/b/y", "2");
	put_str("/a/bc", "sibling");
	put_str("/a/c", "other");
	cr_assert_eq(store_list(st, "/a/b/", collect, s, &rev), 0);
	cr_expect_eq(s->n, 2);
	cr_expect_str_eq(s->keys[0], "/a/b/x");
	cr_expect_str_eq(s->keys[1], "/a/b/y");
	cr_expect_gt(rev, 0);

	s->n = 0;
	cr_assert_eq(store_list(st, "/a/b", collect, s, &rev), 0);
	cr_expect_eq(s->n, 4, "'/a/b' as a byte prefix holds /a/bc too");

	/* a prefix ending in 0xff: its end is computed on the byte before */
	put_str("/z\xff/1", "a");
	put_str("/z\xff\xff", "b");
	put_str("/{", "after /z");
	s->n = 0;
	cr_assert_eq(store_list(st, "/z\xff", collect, s, &rev), 0);
	cr_expect_eq(s->n, 2);
	free(s);
}

Test(store, list_pages_through_many_keys_in_one_snapshot)
{
	struct seen *s = calloc(1, sizeof(*s));
	int64_t rev = 0;
	char key[32];

	for (int i = 0; i < STORE_PAGE + 100; i++) {
		snprintf(key, sizeof(key), "/p/%04d", i);
		put_str(key, "v");
	}
	cr_assert_eq(store_list(st, "/p/", collect, s, &rev), 0);
	cr_assert_eq(s->n, STORE_PAGE + 100);
	for (int i = 0; i < s->n; i++) {
		snprintf(key, sizeof(key), "/p/%04d", i);
		cr_assert_str_eq(s->keys[i], key);
	}
	free(s);
}

Test(store, delete_and_delete_prefix)
{
	void *val;
	size_t len;
	int64_t rev;

	put_str("/d/1", "x");
	put_str("/d/2", "x");
	put_str("/d/3", "x");
	put_str("/dd", "x");
	cr_expect_eq(store_delete(st, "/d/1"), 1);
	cr_expect_eq(store_delete(st, "/d/1"), 0, "already gone");
	cr_expect_eq(store_get(st, "/d/1", &val, &len, &rev), -ENOENT);
	cr_expect_eq(store_delete_prefix(st, "/d/"), 2);
	cr_assert_eq(store_get(st, "/dd", &val, &len, &rev), 0, "the sibling stays");
	free(val);
}

Test(store, put_if_writes_only_over_the_revision_it_saw)
{
	void *val;
	size_t len;
	int64_t rev, rev2;

	cr_assert_eq(store_put_if(st, "/p", "v1", 2, 0), 0, "absent: written");
	cr_expect_eq(store_put_if(st, "/p", "vX", 2, 0), -ECANCELED, "present now");
	cr_assert_eq(store_get(st, "/p", &val, &len, &rev), 0);
	cr_expect_str_eq(val, "v1");
	free(val);
	cr_assert_eq(store_put_if(st, "/p", "v2", 2, rev), 0, "at its revision: written");
	cr_expect_eq(store_put_if(st, "/p", "v3", 2, rev), -ECANCELED, "a stale revision");
	cr_assert_eq(store_get(st, "/p", &val, &len, &rev2), 0);
	cr_expect_str_eq(val, "v2");
	cr_expect_gt(rev2, rev);
	free(val);
}

/* 0 once key is gone, -ETIMEDOUT after ms */
static int wait_gone(const char *key, long ms)
{
	long deadline = now_ms() + ms;

	while (now_ms() < deadline) {
		void *val;
		size_t len;
		int64_t rev;
		int r = store_get(st, key, &val, &len, &rev);

		if (r == -ENOENT)
			return 0;
		cr_assert_eq(r, 0);
		free(val);
		sleep_ms(100);
	}
	return -ETIMEDOUT;
}

Test(store, lease_expiry_removes_keys_and_keepalive_keeps_them)
{
	int64_t dying = 0, kept = 0;
	void *val;
	size_t len;
	int64_t rev;
	long until;

	cr_assert_eq(store_lease_grant(st, 2, &dying), 0);
	cr_assert_eq(store_lease_grant(st, 2, &kept), 0);
	cr_assert_neq(dying, kept);
	cr_assert_eq(store_put(st, "/l/dying", "x", 1, dying), 0);
	cr_assert_eq(store_put(st, "/l/kept", "x", 1, kept), 0);

	/* 5 s: more than twice the TTL, with a keepalive every 500 ms for one */
	until = now_ms() + 5000;
	while (now_ms() < until) {
		cr_assert_eq(store_lease_keepalive(st, kept), 0);
		sleep_ms(500);
	}
	cr_expect_eq(wait_gone("/l/dying", 5000), 0, "the key of the expired lease");
	cr_expect_eq(store_lease_keepalive(st, dying), -ENOENT);
	cr_assert_eq(store_get(st, "/l/kept", &val, &len, &rev), 0, "kept alive");
	free(val);

	cr_expect_eq(store_lease_revoke(st, kept), 0);
	cr_expect_eq(wait_gone("/l/kept", 2000), 0, "revoked: its key is gone at once");
	cr_expect_eq(store_lease_revoke(st, kept), -ENOENT);
}

Test(store, gateway_errors_are_eio_with_the_message)
{
	int r = store_put(st, "/e", "x", 1, 0x7fffffff);

	cr_expect_eq(r, -EIO);
	cr_expect(strstr(store_last_error(st), "lease not found"), "message: '%s'",
		  store_last_error(st));
}

/* What a watch callback saw, as text: "P key=value @rev", "D key @rev", ... */
struct log {
	char lines[64][96];
	int n;
	int64_t last_rev;
	int relists, connects, disconnects;
};

static void record(void *ctx, const struct store_event *ev)
{
	struct log *l = ctx;

	switch (ev->type) {
	case STORE_EVENT_PUT:
	case STORE_EVENT_DELETE:
		cr_assert_lt(l->n, 64);
		cr_assert_gt(ev->mod_revision, l->last_rev, "revisions go up");
		l->last_rev = ev->mod_revision;
		if (ev->type == STORE_EVENT_PUT)
			snprintf(l->lines[l->n++], sizeof(l->lines[0]), "P %s=%.*s", ev->key,
				 (int)ev->len, (const char *)ev->value);
		else
			snprintf(l->lines[l->n++], sizeof(l->lines[0]), "D %s", ev->key);
		break;
	case STORE_EVENT_RELIST:
		l->relists++;
		break;
	case STORE_EVENT_CONNECTED:
		l->connects++;
		break;
	case STORE_EVENT_DISCONNECTED:
		l->disconnects++;
		break;
	}
}

/* Drains w until l holds n events (or connects/relists when n < 0), within ms. */
static void drain_until(struct store_watch *w, struct log *l, int n, int *counter, long ms)
{
	long deadline = now_ms() + ms;

	while ((counter ? *counter < n : l->n < n) && now_ms() < deadline) {
		struct pollfd p = {.fd = store_watch_fd(w), .events = POLLIN};

		if (poll(&p, 1, 100) > 0)
			cr_assert_geq(store_watch_drain(w), 0);
	}
	cr_assert_geq(counter ? *counter : l->n, n, "waited %ld ms for %d", ms, n);
}

Test(store, watch_sees_puts_and_deletes_in_order)
{
	struct log *l = calloc(1, sizeof(*l));
	struct store_watch *w = NULL;

	put_str("/w/before", "old");
	cr_assert_eq(store_watch_start(st, "/w/", 0, record, l, &w), 0);
	drain_until(w, l, 1, &l->connects, 5000);
	put_str("/w/a", "1");
	put_str("/wx", "sibling");
	put_str("/w/b", "2");
	cr_assert_eq(store_delete(st, "/w/a"), 1);
	put_str("/w/b", "3");
	drain_until(w, l, 4, NULL, 5000);
	sleep_ms(200);
	store_watch_drain(w);
	cr_expect_eq(l->n, 4, "no more than the four");
	cr_expect_str_eq(l->lines[0], "P /w/a=1");
	cr_expect_str_eq(l->lines[1], "P /w/b=2");
	cr_expect_str_eq(l->lines[2], "D /w/a");
	cr_expect_str_eq(l->lines[3], "P /w/b=3");
	store_watch_stop(w);
	free(l);
}

Test(store, watch_resumes_after_a_restart_of_etcd, .timeout = 90)
{
	struct log *l = calloc(1, sizeof(*l));
	struct store_watch *w = NULL;
	int64_t rev = 0;
	struct seen *s = calloc(1, sizeof(*s));

	put_str("/r/0", "listed");
	cr_assert_eq(store_list(st, "/r/", collect, s, &rev), 0);
	put_str("/r/1", "a");
	cr_assert_eq(store_watch_start(st, "/r/", rev + 1, record, l, &w), 0);
	drain_until(w, l, 1, NULL, 5000);
	cr_expect_str_eq(l->lines[0], "P /r/1=a", "history from rev + 1, not the listed key");

	fg_etcd_stop(&etcd);
	drain_until(w, l, 1, &l->disconnects, 5000);
	cr_assert_eq(fg_etcd_restart(&etcd), 0);
	/* written before the watch can be back: it must fetch them from history */
	put_str("/r/2", "b");
	cr_assert_eq(store_delete(st, "/r/1"), 1);
	put_str("/r/3", "c");
	drain_until(w, l, 4, NULL, 15000);
	sleep_ms(300);
	store_watch_drain(w);
	cr_expect_eq(l->n, 4, "exactly the missing ones, no duplicates");
	cr_expect_str_eq(l->lines[1], "P /r/2=b");
	cr_expect_str_eq(l->lines[2], "D /r/1");
	cr_expect_str_eq(l->lines[3], "P /r/3=c");
	cr_expect_geq(l->connects, 2);
	store_watch_stop(w);
	free(l);
	free(s);
}

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
	(void)p, (void)ctx;
	return size * n;
}

/* Compacts etcd's history up to rev with the gateway, as an operator would. */
static void compact(int64_t rev)
{
	char url[128], body[64];
	CURL *c = curl_easy_init();
	long status = 0;

	snprintf(url, sizeof(url), "%s/v3/kv/compaction", etcd.url);
	snprintf(body, sizeof(body), "{\"revision\":\"%lld\",\"physical\":true}", (long long)rev);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	cr_assert_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	cr_assert_eq(status, 200);
	curl_easy_cleanup(c);
}

Test(store, watch_from_a_compacted_revision_asks_for_a_relist)
{
	struct log *l = calloc(1, sizeof(*l));
	struct store_watch *w = NULL;
	void *val;
	size_t len;
	int64_t rev;

	put_str("/c/1", "a");
	put_str("/c/1", "b");
	cr_assert_eq(store_get(st, "/c/1", &val, &len, &rev), 0);
	free(val);
	compact(rev);
	cr_assert_eq(store_watch_start(st, "/c/", 1, record, l, &w), 0);
	drain_until(w, l, 1, &l->relists, 5000);
	cr_expect_eq(l->n, 0);
	store_watch_stop(w);
	free(l);
}

/* Tests without etcd: a store that does not answer, or answers badly. */

Test(store_offline, unreachable_url_fails_fast_with_a_clear_error)
{
	struct store *s;
	char url[64];
	int port = fg_free_port();
	long t0;

	cr_assert_gt(port, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	cr_assert_eq(store_open(url, NULL, &s), 0);
	t0 = now_ms();
	cr_expect_eq(store_put(s, "/k", "v", 1, 0), -ECONNREFUSED);
	cr_expect_lt(now_ms() - t0, 2000);
	store_close(s);

	cr_expect_eq(store_open("ftp://x", NULL, &s), -EINVAL);
	cr_expect_eq(store_open("", NULL, &s), -EINVAL);
	cr_expect_eq(store_open("https://127.0.0.1:1", NULL, &s), -EINVAL, "https without TLS");
}

/* A listening socket that never accepts: the kernel connects, nobody answers. */
Test(store_offline, silent_server_times_out)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct store *s;
	char url[64];
	void *val;
	size_t len;
	int64_t rev;
	long t0;

	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 8), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(sa.sin_port));
	cr_assert_eq(store_open(url, NULL, &s), 0);
	store_set_timeouts(s, 300, 600);
	t0 = now_ms();
	cr_expect_eq(store_get(s, "/k", &val, &len, &rev), -ETIMEDOUT);
	cr_expect_lt(now_ms() - t0, 3000);
	store_close(s);
	close(fd);
}

struct fake {
	int fd;
	const char *answer;
};

/* Answers every connection with f->answer, whatever it asked. */
static void *fake_server(void *arg)
{
	struct fake *f = arg;

	for (int i = 0; i < 8; i++) {
		char buf[4096];
		struct pollfd p = {.fd = f->fd, .events = POLLIN};
		int c;

		if (poll(&p, 1, 5000) <= 0)
			break;
		c = accept(f->fd, NULL, NULL);
		if (c < 0)
			break;
		p = (struct pollfd){.fd = c, .events = POLLIN};
		if (poll(&p, 1, 2000) > 0 && read(c, buf, sizeof(buf)) >= 0 &&
		    write(c, f->answer, strlen(f->answer)) < 0)
			perror("fake server");
		close(c);
	}
	return NULL;
}

static void with_fake(const char *answer, int expect)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	struct fake f = {.fd = socket(AF_INET, SOCK_STREAM, 0), .answer = answer};
	struct store *s;
	pthread_t t;
	char url[64];
	void *val = NULL;
	size_t len;
	int64_t rev;

	cr_assert_eq(bind(f.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(f.fd, 8), 0);
	cr_assert_eq(getsockname(f.fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(sa.sin_port));
	cr_assert_eq(pthread_create(&t, NULL, fake_server, &f), 0);
	cr_assert_eq(store_open(url, NULL, &s), 0);
	store_set_timeouts(s, 1000, 2000);
	cr_expect_eq(store_get(s, "/k", &val, &len, &rev), expect, "answer: %s", answer);
	cr_expect_null(val);
	shutdown(f.fd, SHUT_RDWR);
	pthread_join(t, NULL);
	close(f.fd);
	store_close(s);
}

/* A 200 answer with body, its Content-Length counted. */
static void with_json(const char *body, int expect)
{
	char answer[512];

	snprintf(answer, sizeof(answer),
		 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
		 strlen(body), body);
	with_fake(answer, expect);
}

Test(store_offline, garbage_answers_are_rejected_cleanly)
{
	with_json("{not json", -EBADMSG);
	with_json("[]", -EBADMSG);
	/* a key that is not base64 */
	with_json("{\"header\":{},\"kvs\":[{\"key\":\"!!!!\"}]}", -EBADMSG);
	/* a key with a NUL byte: "/k\0x" */
	with_json("{\"header\":{\"revision\":\"1\"},\"kvs\":[{\"key\":\"L2sAeA==\"}]}", -EBADMSG);
	/* a revision that is not a number */
	with_json("{\"header\":{\"revision\":\"x1\"},\"kvs\":[]}", -EBADMSG);
	with_fake("HTTP/1.1 500 Oops\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad",
		  -EAGAIN);
	with_fake("HTTP/1.1 503 Unavailable\r\nContent-Length: 43\r\nConnection: close\r\n\r\n"
		  "{\"error\":\"etcdserver: no leader\",\"code\":14}", -EAGAIN);
	with_fake("HTTP/1.1 400 Bad\r\nContent-Length: 30\r\nConnection: close\r\n\r\n"
		  "{\"error\":\"no good\",\"code\":3}  ", -EIO);
	with_fake("garbage\r\n\r\n", -EIO);
	/* a body shorter than its Content-Length: the connection ended early */
	with_fake("HTTP/1.1 200 OK\r\nContent-Length: 99\r\nConnection: close\r\n\r\n{}",
		  -ECONNRESET);
}
