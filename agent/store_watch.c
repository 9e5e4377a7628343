// SPDX-License-Identifier: Apache-2.0
/*
 * Watches of the mesh state store. A worker thread keeps one streaming
 * POST /v3/watch open; the gateway answers with one JSON message per line,
 * {"result": {"header": ..., "created": true}} first, then
 * {"result": {"events": [{"type": "DELETE", "kv": {...}}, ...]}} (a PUT's
 * type is omitted: it is the zero value). The thread decodes them into a
 * queue and signals an eventfd; the owner's thread delivers them in
 * store_watch_drain(). After a lost connection the watch resumes at the
 * revision after the last one seen, so no event is lost or repeated; a
 * compacted start revision ends the watch with STORE_EVENT_RELIST.
 *
 * Locking: the queue and its counters are under w->lock; everything else
 * of the thread's state is the thread's own.
 */
#define _GNU_SOURCE
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "json_strict.h"
#include "log.h"
#include "store_int.h"

enum {
	STORE_WATCH_LINE_MAX = STORE_BODY_MAX,
	STORE_WATCH_JSON_DEPTH = 16,
	STORE_WATCH_STOP_POLL_MS = 100,
};

struct store_qev {
	struct store_qev *next;
	struct store_event ev;
	char *key;
	void *value;
};

struct store_watch {
	const struct store *s;
	char *prefix;
	store_watch_fn fn;
	void *ctx;
	int efd;
	pthread_t thread;
	atomic_bool stop;

	pthread_mutex_t lock;	/* the queue */
	struct store_qev *head, *tail;
	size_t queued;
	bool overflow;		/* events were dropped: drain() asks for a relist */

	/* the thread's own */
	unsigned int first_url;	/* the store's current URL at start */
	int64_t next_rev;	/* where to (re)start: the last revision seen + 1 */
	bool ended;		/* compacted or refused: do not reconnect */
	bool connected;
	char *line;
	size_t line_len;
};

static void store_watch_push(struct store_watch *w, struct store_qev *q)
{
	uint64_t one = 1;
	bool dropped = false;

	pthread_mutex_lock(&w->lock);
	if (w->queued >= STORE_WATCH_QUEUE_MAX) {
		/* A drain this late cannot catch up: ask for a relist instead. */
		dropped = true;
		w->overflow = true;
	} else {
		if (w->tail)
			w->tail->next = q;
		else
			w->head = q;
		w->tail = q;
		w->queued++;
	}
	pthread_mutex_unlock(&w->lock);
	if (dropped) {
		log_debug("store watch '%s': queue full, event dropped, relist", w->prefix);
		free(q->key);
		free(q->value);
		free(q);
		w->ended = true;
		return;
	}
	if (write(w->efd, &one, sizeof(one)) < 0)
		log_debug("store watch '%s': eventfd: %m", w->prefix);
}

static int store_watch_signal(struct store_watch *w, enum store_event_type type, int64_t rev)
{
	struct store_qev *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->ev.type = type;
	q->ev.mod_revision = rev;
	store_watch_push(w, q);
	return 0;
}

/* One element of result.events[] into the queue. */
static int store_watch_event(struct store_watch *w, struct json_object *e)
{
	struct store_qev *q;
	struct json_object *type, *kv;
	const char *t = "PUT";
	int r;

	if (!json_object_object_get_ex(e, "kv", &kv))
		return -EBADMSG;
	if (json_object_object_get_ex(e, "type", &type))
		t = json_object_get_string(type);
	if (!t || (strcmp(t, "PUT") != 0 && strcmp(t, "DELETE") != 0))
		return -EBADMSG;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	r = store_json_kv(kv, &q->key, &q->value, &q->ev.len, &q->ev.mod_revision);
	if (r < 0) {
		free(q);
		return r;
	}
	q->ev.type = strcmp(t, "PUT") == 0 ? STORE_EVENT_PUT : STORE_EVENT_DELETE;
	q->ev.key = q->key;
	q->ev.value = q->value;
	if (q->ev.mod_revision >= w->next_rev)
		w->next_rev = q->ev.mod_revision + 1;
	store_watch_push(w, q);
	return 0;
}

/* The "result" of one message: created, canceled (compacted) or events. */
static int store_watch_result(struct store_watch *w, struct json_object *res)
{
	struct json_object *events, *hdr, *b;
	int64_t compact = 0, rev = 0;
	size_t n;
	int r;

	if (json_object_object_get_ex(res, "created", &b) && json_object_get_boolean(b)) {
		if (json_object_object_get_ex(res, "header", &hdr))
			store_json_i64(hdr, "revision", &rev);
		/* Watching "from now": resume after what was current then. */
		if (w->next_rev == 0)
			w->next_rev = rev + 1;
		w->connected = true;
		return store_watch_signal(w, STORE_EVENT_CONNECTED, rev);
	}
	if (json_object_object_get_ex(res, "canceled", &b) && json_object_get_boolean(b)) {
		w->ended = true;
		store_json_i64(res, "compact_revision", &compact);
		log_debug("store watch '%s': canceled at revision %lld, compacted at %lld",
			  w->prefix, (long long)w->next_rev, (long long)compact);
		return store_watch_signal(w, STORE_EVENT_RELIST, compact);
	}
	if (!json_object_object_get_ex(res, "events", &events))
		return 0; /* a progress notification */
	if (!json_object_is_type(events, json_type_array))
		return -EBADMSG;
	n = json_object_array_length(events);
	for (size_t i = 0; i < n; i++) {
		r = store_watch_event(w, json_object_array_get_idx(events, i));
		if (r < 0)
			return r;
	}
	return 0;
}

static int store_watch_message(struct store_watch *w, const char *text, size_t len)
{
	struct json_object *doc = NULL, *res;
	char why[128];
	int r;

	r = json_strict_parse(text, len, STORE_WATCH_JSON_DEPTH, &doc, why, sizeof(why));
	if (r < 0)
		return log_debug_errno(-EBADMSG, "store watch '%s': %s", w->prefix, why);
	if (json_object_object_get_ex(doc, "result", &res) &&
	    json_object_is_type(res, json_type_object)) {
		r = store_watch_result(w, res);
	} else {
		log_debug("store watch '%s': error answer: %.200s", w->prefix, text);
		r = -EIO;
	}
	json_object_put(doc);
	return r;
}

/* curl's write callback: complete lines are messages, the rest waits. */
static size_t store_watch_write(char *data, size_t size, size_t n, void *ctx)
{
	struct store_watch *w = ctx;
	size_t add = size * n, start = 0;
	char *p;

	if (add > STORE_WATCH_LINE_MAX - w->line_len)
		return 0;
	p = realloc(w->line, w->line_len + add + 1);
	if (!p)
		return 0;
	memcpy(p + w->line_len, data, add);
	w->line = p;
	w->line_len += add;
	for (size_t i = 0; i < w->line_len; i++) {
		if (p[i] != '\n')
			continue;
		if (i > start && store_watch_message(w, p + start, i - start) < 0)
			return 0;
		start = i + 1;
		if (w->ended)
			return 0;
	}
	memmove(p, p + start, w->line_len - start);
	w->line_len -= start;
	return add;
}

/* Called by curl about once a second and on progress: ends the transfer on stop. */
static int store_watch_progress(void *ctx, curl_off_t dt, curl_off_t dn, curl_off_t ut,
				curl_off_t un)
{
	struct store_watch *w = ctx;

	(void)dt, (void)dn, (void)ut, (void)un;
	return atomic_load(&w->stop) ? 1 : 0;
}

static char *store_watch_body(const struct store_watch *w)
{
	struct json_object *req = json_object_new_object();
	struct json_object *create = json_object_new_object();
	char *body = NULL;

	if (!req || !create || json_object_object_add(req, "create_request", create) < 0) {
		json_object_put(create);
		goto out;
	}
	if (store_json_prefix(create, w->prefix) < 0)
		goto out;
	if (w->next_rev &&
	    json_object_object_add(create, "start_revision", json_object_new_int64(w->next_rev)) < 0)
		goto out;
	body = strdup(json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN));
out:
	json_object_put(req);
	return body;
}

/* One connection to one URL, until it breaks, the watch ends or stop. */
static int store_watch_connect(struct store_watch *w, const char *url)
{
	_cleanup_free_ char *full = NULL;
	_cleanup_free_ char *body = store_watch_body(w);
	struct store_session sess;
	struct curl_slist *hdr;
	char err[256];
	CURL *c;
	CURLcode rc;
	int r;

	if (!body || asprintf(&full, "%s/v3/watch", url) < 0)
		return -ENOMEM;
	c = curl_easy_init();
	hdr = curl_slist_append(NULL, "Content-Type: application/json");
	if (!c || !hdr) {
		curl_slist_free_all(hdr);
		curl_easy_cleanup(c);
		return -ENOMEM;
	}
	r = store_curl_common(w->s, c, &sess);
	if (r) {
		store_session_end(w->s, &sess, r, err, sizeof(err));
		curl_slist_free_all(hdr);
		curl_easy_cleanup(c);
		return log_debug_errno(r, "store watch '%s': no TLS credential", w->prefix);
	}
	curl_easy_setopt(c, CURLOPT_URL, full);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, store_watch_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, w);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, store_watch_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, w);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	w->line_len = 0;
	w->connected = false;
	rc = curl_easy_perform(c);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	r = store_session_end(w->s, &sess, rc == CURLE_OK ? -ECONNRESET : store_curl_errno(rc), err,
			      sizeof(err));
	log_debug("store watch '%s' at '%s': ended: %s", w->prefix, full,
		  r == -EKEYREJECTED ? err : curl_easy_strerror(rc));
	return r;
}

/* Sleeps ms, in steps, unless stopped. */
static void store_watch_sleep(struct store_watch *w, long ms)
{
	for (long left = ms; left > 0 && !atomic_load(&w->stop); left -= STORE_WATCH_STOP_POLL_MS) {
		long step = left < STORE_WATCH_STOP_POLL_MS ? left : STORE_WATCH_STOP_POLL_MS;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = step * 1000000L};

		nanosleep(&ts, NULL);
	}
}

static void *store_watch_thread(void *arg)
{
	struct store_watch *w = arg;
	long backoff = STORE_WATCH_BACKOFF_MIN_MS;
	unsigned int url = w->first_url;
	bool was_up = true;

	while (!atomic_load(&w->stop) && !w->ended) {
		store_watch_connect(w, w->s->urls[url % w->s->n_urls]);
		if (atomic_load(&w->stop) || w->ended)
			break;
		if (w->connected) {
			backoff = STORE_WATCH_BACKOFF_MIN_MS;
			was_up = true;
		}
		if (was_up)
			store_watch_signal(w, STORE_EVENT_DISCONNECTED, w->next_rev - 1);
		was_up = false;
		url++;
		store_watch_sleep(w, backoff);
		backoff = backoff * 2 > STORE_WATCH_BACKOFF_MAX_MS ? STORE_WATCH_BACKOFF_MAX_MS
								   : backoff * 2;
	}
	return NULL;
}

int store_watch_start(struct store *s, const char *prefix, int64_t from_revision,
		      store_watch_fn fn, void *ctx, struct store_watch **out)
{
	struct store_watch *w;
	int r;

	if (from_revision < 0 || !fn)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->s = s;
	w->fn = fn;
	w->ctx = ctx;
	w->next_rev = from_revision;
	w->first_url = s->cur;
	pthread_mutex_init(&w->lock, NULL);
	w->prefix = strdup(prefix);
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!w->prefix || w->efd < 0) {
		r = w->prefix ? -errno : -ENOMEM;
		goto fail;
	}
	r = -pthread_create(&w->thread, NULL, store_watch_thread, w);
	if (r < 0)
		goto fail;
	*out = w;
	return 0;
fail:
	if (w->efd >= 0)
		close(w->efd);
	free(w->prefix);
	pthread_mutex_destroy(&w->lock);
	free(w);
	return log_debug_errno(r, "store watch '%s': cannot start", prefix);
}

int store_watch_fd(const struct store_watch *w)
{
	return w->efd;
}

int store_watch_drain(struct store_watch *w)
{
	struct store_event relist = {.type = STORE_EVENT_RELIST};
	struct store_qev *q;
	bool overflow;
	uint64_t n;
	int count = 0;

	if (read(w->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return -errno;
	pthread_mutex_lock(&w->lock);
	q = w->head;
	w->head = w->tail = NULL;
	w->queued = 0;
	overflow = w->overflow;
	w->overflow = false;
	pthread_mutex_unlock(&w->lock);
	while (q) {
		struct store_qev *next = q->next;

		w->fn(w->ctx, &q->ev);
		free(q->key);
		free(q->value);
		free(q);
		q = next;
		count++;
	}
	if (overflow) {
		w->fn(w->ctx, &relist);
		count++;
	}
	return count;
}

void store_watch_stop(struct store_watch *w)
{
	struct store_qev *q;

	if (!w)
		return;
	atomic_store(&w->stop, true);
	pthread_join(w->thread, NULL);
	for (q = w->head; q;) {
		struct store_qev *next = q->next;

		free(q->key);
		free(q->value);
		free(q);
		q = next;
	}
	pthread_mutex_destroy(&w->lock);
	close(w->efd);
	free(w->line);
	free(w->prefix);
	free(w);
}
