// SPDX-License-Identifier: Apache-2.0
/*
 * The mesh store worker (mstore.h). One thread owns the struct store and
 * the watch: it lists, watches, writes and keeps the lease alive, in that
 * order of priority, and sleeps in poll() on its wake-up eventfd and the
 * watch's eventfd. Everything it learns goes into one queue of events,
 * signalled on another eventfd, so the owner sees the snapshot and the
 * changes in the order the store made them.
 *
 * Locking: m->lock guards the ops, the leased keys, the event queue and the
 * status; the store, the watch and the backoff are the worker's own.
 */
#define _GNU_SOURCE
#include "mstore.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cleanup.h"
#include "io.h"
#include "log.h"

enum op_type {
	OP_PUT,
	OP_PUT_IF,
	OP_DELETE,
};

struct op {
	struct op *next;
	enum op_type type;
	char *key;	/* full key, prefix included */
	char *value;
	int64_t mod_revision;
};

struct leased {
	char *key;	/* full key */
	char *value;	/* NULL: to be deleted, then forgotten */
	bool dirty;
};

struct qev {
	struct qev *next;
	struct mstore_event ev;
};

struct mstore {
	char *prefix;
	size_t prefix_len;
	unsigned int lease_ttl;
	int wake_fd;		/* the owner wakes the worker */
	int ev_fd;		/* the worker tells the owner */
	pthread_t thread;
	bool started;
	atomic_bool stop;

	pthread_mutex_t lock;
	struct op *ops_head, *ops_tail;
	unsigned int n_ops;
	struct leased *leased;
	size_t n_leased;
	struct qev *q_head, *q_tail;
	size_t queued;
	bool overflow;		/* events were dropped: list again */
	struct mstore_status status;

	/* the worker's own */
	struct store *st;
	struct store_watch *watch;
	bool listed;
	long backoff_ms;
	int64_t keepalive_at;	/* io_now_ms() */
	char *snap_prefix;	/* during a listing */
	struct qev *snap_head, *snap_tail;
	size_t snap_n;
};

static void free_op(struct op *o)
{
	if (!o)
		return;
	free(o->key);
	free(o->value);
	free(o);
}

void mstore_event_free(struct mstore_event *ev)
{
	free(ev->key);
	free(ev->value);
	ev->key = ev->value = NULL;
}

static void wake(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_debug("mstore: eventfd: %m");
}

static struct qev *qev_new(enum mstore_event_type type, const char *key, const void *value,
			   size_t len, int64_t rev)
{
	struct qev *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->ev = (struct mstore_event){ .type = type, .len = len, .mod_revision = rev };
	if (key)
		q->ev.key = strdup(key);
	if (value) {
		q->ev.value = malloc(len + 1);
		if (q->ev.value) {
			memcpy(q->ev.value, value, len);
			q->ev.value[len] = 0;
		}
	}
	if ((key && !q->ev.key) || (value && !q->ev.value)) {
		mstore_event_free(&q->ev);
		free(q);
		return NULL;
	}
	return q;
}

/* Appends a chain of events to the owner's queue (under the lock). */
static void push_locked(struct mstore *m, struct qev *head, struct qev *tail, size_t n)
{
	if (m->queued + n > MSTORE_QUEUE_MAX) {
		/* the owner cannot keep up: drop, and let a new snapshot catch it up */
		while (head) {
			struct qev *next = head->next;

			mstore_event_free(&head->ev);
			free(head);
			head = next;
		}
		m->overflow = true;
		return;
	}
	if (m->q_tail)
		m->q_tail->next = head;
	else
		m->q_head = head;
	m->q_tail = tail;
	m->queued += n;
}

static void push(struct mstore *m, struct qev *q)
{
	if (!q)
		return;
	pthread_mutex_lock(&m->lock);
	push_locked(m, q, q, 1);
	pthread_mutex_unlock(&m->lock);
	wake(m->ev_fd);
}

static void push_why(struct mstore *m, enum mstore_event_type type, const char *key,
		     const char *why)
{
	struct qev *q = qev_new(type, key, NULL, 0, 0);

	if (q)
		snprintf(q->ev.why, sizeof(q->ev.why), "%s", why);
	push(m, q);
}

/* --- reachability -------------------------------------------------------------------------- */

static bool connection_error(int r)
{
	return r != -EIO && r != -EBADMSG && r != -ENOMEM && r != -ECANCELED && r != -ENOENT &&
	       r != -EFBIG;
}

/* The store answered: reachable, and the backoff starts over. */
static void reached(struct mstore *m)
{
	bool changed;

	m->backoff_ms = 0;
	pthread_mutex_lock(&m->lock);
	changed = !m->status.reachable;
	if (changed) {
		m->status.reachable = true;
		m->status.since = time(NULL);
	}
	pthread_mutex_unlock(&m->lock);
	if (changed)
		push_why(m, MSTORE_REACHABLE, NULL, "");
}

/* A request failed with r: unreachable unless the store answered with an error. */
static void failed(struct mstore *m, const char *what, int r)
{
	char why[MSTORE_WHY_MAX];
	bool changed;

	if (r == -EIO || r == -EAGAIN || r == -EKEYREJECTED)
		snprintf(why, sizeof(why), "%s: %s", what, store_last_error(m->st));
	else
		snprintf(why, sizeof(why), "%s: %s", what, strerror(-r));
	if (!connection_error(r)) {
		reached(m);
		return;
	}
	m->backoff_ms = m->backoff_ms ? m->backoff_ms * 2 : MSTORE_BACKOFF_MIN_MS;
	if (m->backoff_ms > MSTORE_BACKOFF_MAX_MS)
		m->backoff_ms = MSTORE_BACKOFF_MAX_MS;
	pthread_mutex_lock(&m->lock);
	changed = m->status.reachable || !m->status.since;
	snprintf(m->status.last_error, sizeof(m->status.last_error), "%s", why);
	if (changed) {
		m->status.reachable = false;
		m->status.since = time(NULL);
	}
	pthread_mutex_unlock(&m->lock);
	if (changed)
		push_why(m, MSTORE_UNREACHABLE, NULL, why);
}

/* --- listing and watching ------------------------------------------------------------------ */

static const char *relative(const struct mstore *m, const char *key)
{
	return strncmp(key, m->prefix, m->prefix_len) == 0 ? key + m->prefix_len : key;
}

static int snap_kv(void *ctx, const char *key, const void *value, size_t len, int64_t rev)
{
	struct mstore *m = ctx;
	struct qev *q = qev_new(MSTORE_PUT, relative(m, key), value, len, rev);

	if (!q)
		return -ENOMEM;
	if (m->snap_tail)
		m->snap_tail->next = q;
	else
		m->snap_head = q;
	m->snap_tail = q;
	m->snap_n++;
	return 0;
}

static void snap_drop(struct mstore *m)
{
	while (m->snap_head) {
		struct qev *next = m->snap_head->next;

		mstore_event_free(&m->snap_head->ev);
		free(m->snap_head);
		m->snap_head = next;
	}
	m->snap_tail = NULL;
	m->snap_n = 0;
}

static void watch_event(void *ctx, const struct store_event *ev)
{
	struct mstore *m = ctx;

	switch (ev->type) {
	case STORE_EVENT_PUT:
		push(m, qev_new(MSTORE_PUT, relative(m, ev->key), ev->value, ev->len,
				ev->mod_revision));
		break;
	case STORE_EVENT_DELETE:
		push(m, qev_new(MSTORE_DELETE, relative(m, ev->key), NULL, 0, ev->mod_revision));
		break;
	case STORE_EVENT_RELIST:
		m->listed = false;	/* compacted: the worker lists again */
		break;
	case STORE_EVENT_DISCONNECTED:
		failed(m, "watch", -ECONNRESET);
		break;
	case STORE_EVENT_CONNECTED:
		break;
	}
	if (ev->mod_revision) {
		pthread_mutex_lock(&m->lock);
		if (ev->mod_revision > m->status.revision)
			m->status.revision = ev->mod_revision;
		pthread_mutex_unlock(&m->lock);
	}
}

/*
 * A snapshot of the prefix into the queue, then a watch from the revision after it. The
 * watch starts only once the snapshot is queued: its thread queues events as they come, and
 * an event queued before the snapshot it follows would be applied first and then undone by
 * the snapshot (a deletion made just after the list came back as the listed key).
 */
static int list_and_watch(struct mstore *m)
{
	struct qev *begin, *end;
	int64_t rev = 0;
	int r;

	if (m->watch) {
		store_watch_stop(m->watch);
		m->watch = NULL;
	}
	r = store_list(m->st, m->prefix, snap_kv, m, &rev);
	if (r < 0) {
		snap_drop(m);
		failed(m, "list", r);
		return r;
	}
	reached(m);
	begin = qev_new(MSTORE_SNAPSHOT, NULL, NULL, 0, rev);
	end = qev_new(MSTORE_SYNCED, NULL, NULL, 0, rev);
	if (!begin || !end) {
		free(begin);
		free(end);
		snap_drop(m);
		return -ENOMEM;
	}
	begin->next = m->snap_head ? m->snap_head : end;
	if (m->snap_tail)
		m->snap_tail->next = end;
	pthread_mutex_lock(&m->lock);
	m->overflow = false;
	push_locked(m, begin, end, m->snap_n + 2);
	if (rev > m->status.revision)
		m->status.revision = rev;
	pthread_mutex_unlock(&m->lock);
	m->snap_head = m->snap_tail = NULL;
	m->snap_n = 0;
	wake(m->ev_fd);
	r = store_watch_start(m->st, m->prefix, rev + 1, watch_event, m, &m->watch);
	if (r < 0)
		return r;	/* listed stays false: the next round lists again */
	m->listed = true;
	return 0;
}

/* --- writes -------------------------------------------------------------------------------- */

static int run_op(struct mstore *m, const struct op *o)
{
	int r;

	switch (o->type) {
	case OP_PUT:
		return store_put(m->st, o->key, o->value, strlen(o->value), 0);
	case OP_PUT_IF:
		return store_put_if(m->st, o->key, o->value, strlen(o->value), o->mod_revision);
	case OP_DELETE:
		r = store_delete(m->st, o->key);
		return r < 0 ? r : 0;
	}
	return -EINVAL;
}

/* The queued writes, in order, until one cannot reach the store. */
static int run_ops(struct mstore *m)
{
	for (;;) {
		struct op *o;
		int r;

		pthread_mutex_lock(&m->lock);
		o = m->ops_head;
		pthread_mutex_unlock(&m->lock);
		if (!o || atomic_load(&m->stop))
			return 0;
		r = run_op(m, o);
		if (r < 0 && connection_error(r)) {
			failed(m, o->key, r);
			return r;
		}
		reached(m);
		if (r == -ECANCELED)
			push_why(m, MSTORE_REFUSED, relative(m, o->key), "changed meanwhile");
		else if (r < 0)
			push_why(m, MSTORE_REFUSED, relative(m, o->key),
				 r == -EIO ? store_last_error(m->st) : strerror(-r));
		pthread_mutex_lock(&m->lock);
		m->ops_head = o->next;
		if (!m->ops_head)
			m->ops_tail = NULL;
		m->n_ops--;
		m->status.pending = m->n_ops;
		pthread_mutex_unlock(&m->lock);
		free_op(o);
	}
}

/* --- the lease ------------------------------------------------------------------------------ */

static void mark_leased_dirty(struct mstore *m)
{
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_leased; i++)
		m->leased[i].dirty = true;
	pthread_mutex_unlock(&m->lock);
}

static int lease_ensure(struct mstore *m)
{
	int64_t id;
	int r;

	if (m->status.lease_id)
		return 0;
	r = store_lease_grant(m->st, m->lease_ttl, &id);
	if (r < 0) {
		failed(m, "lease", r);
		return r;
	}
	reached(m);
	pthread_mutex_lock(&m->lock);
	m->status.lease_id = id;
	pthread_mutex_unlock(&m->lock);
	m->keepalive_at = io_now_ms() + m->lease_ttl * 1000 / 3;
	mark_leased_dirty(m);
	return 0;
}

static int lease_keepalive(struct mstore *m)
{
	int r;

	if (io_now_ms() < m->keepalive_at)
		return 0;
	r = store_lease_keepalive(m->st, m->status.lease_id);
	if (r == -ENOENT) {
		/* lost (the store was away longer than its lifetime): a new one, keys again */
		log_info("mesh store: lease %llx expired, taking a new one",
			 (unsigned long long)m->status.lease_id);
		pthread_mutex_lock(&m->lock);
		m->status.lease_id = 0;
		pthread_mutex_unlock(&m->lock);
		return lease_ensure(m);
	}
	if (r < 0) {
		failed(m, "lease keepalive", r);
		return r;
	}
	reached(m);
	m->keepalive_at = io_now_ms() + m->lease_ttl * 1000 / 3;
	return 0;
}

/* The first dirty leased key, copied out under the lock; false when none. */
static bool next_dirty(struct mstore *m, char **key, char **value, bool *del)
{
	bool found = false;

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_leased && !found; i++) {
		struct leased *l = &m->leased[i];

		if (!l->dirty)
			continue;
		*key = strdup(l->key);
		*value = l->value ? strdup(l->value) : NULL;
		*del = !l->value;
		l->dirty = false;
		found = true;
	}
	pthread_mutex_unlock(&m->lock);
	return found;
}

/* Marks key dirty again after a failed write, unless it changed meanwhile (then it is). */
static void redirty(struct mstore *m, const char *key)
{
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_leased; i++)
		if (strcmp(m->leased[i].key, key) == 0)
			m->leased[i].dirty = true;
	pthread_mutex_unlock(&m->lock);
}

/* Forgets deleted leased keys that are written (deleted) already. */
static void forget_deleted(struct mstore *m)
{
	size_t j = 0;

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_leased; i++) {
		if (!m->leased[i].value && !m->leased[i].dirty) {
			free(m->leased[i].key);
			continue;
		}
		m->leased[j++] = m->leased[i];
	}
	m->n_leased = j;
	pthread_mutex_unlock(&m->lock);
}

static int sync_leased(struct mstore *m)
{
	char *key, *value;
	bool del;
	int r = 0;

	while (r == 0 && !atomic_load(&m->stop) && next_dirty(m, &key, &value, &del)) {
		if (!key || (!del && !value))
			r = -ENOMEM;
		else if (del)
			r = store_delete(m->st, key);
		else
			r = store_put(m->st, key, value, strlen(value), m->status.lease_id);
		r = r > 0 ? 0 : r;
		if (r == -ENOENT) {	/* the lease is gone: a new one, and everything again */
			pthread_mutex_lock(&m->lock);
			m->status.lease_id = 0;
			pthread_mutex_unlock(&m->lock);
		}
		if (r < 0 && key)
			redirty(m, key);
		if (r < 0 && connection_error(r))
			failed(m, key ? key : "lease", r);
		else if (r < 0)
			push_why(m, MSTORE_REFUSED, key ? relative(m, key) : "", strerror(-r));
		else
			reached(m);
		free(key);
		free(value);
	}
	forget_deleted(m);
	return r;
}

/* --- the worker ---------------------------------------------------------------------------- */

/* One round of work; the poll timeout until the next (ms), -1 for none. */
static long work(struct mstore *m)
{
	if (!m->listed && list_and_watch(m) < 0)
		return m->backoff_ms;
	if (lease_ensure(m) < 0 || run_ops(m) < 0 || sync_leased(m) < 0 || lease_keepalive(m) < 0)
		return m->backoff_ms ? m->backoff_ms : MSTORE_BACKOFF_MIN_MS;
	pthread_mutex_lock(&m->lock);
	if (m->overflow)
		m->listed = false;
	pthread_mutex_unlock(&m->lock);
	if (!m->listed)
		return 0;
	return (long)(m->keepalive_at - io_now_ms() > 0 ? m->keepalive_at - io_now_ms() : 0);
}

static void *worker(void *arg)
{
	struct mstore *m = arg;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	while (!atomic_load(&m->stop)) {
		long timeout = work(m);
		struct pollfd p[2] = { { .fd = m->wake_fd, .events = POLLIN },
				       { .fd = m->watch ? store_watch_fd(m->watch) : -1,
					 .events = POLLIN } };
		uint64_t n;

		if (atomic_load(&m->stop))
			break;
		if (poll(p, 2, timeout > 1000 ? 1000 : (int)timeout) < 0 && errno != EINTR)
			break;
		if (p[0].revents & POLLIN && read(m->wake_fd, &n, sizeof(n)) < 0)
			log_debug("mstore: eventfd: %m");
		if (m->watch && p[1].revents & POLLIN)
			store_watch_drain(m->watch);
	}
	return NULL;
}

/* --- the owner's side ------------------------------------------------------------------------ */

static int enqueue(struct mstore *m, enum op_type type, const char *key, const char *value,
		   int64_t rev)
{
	struct op *o = calloc(1, sizeof(*o));

	if (!o)
		return -ENOMEM;
	if (asprintf(&o->key, "%s%s", m->prefix, key) < 0)
		o->key = NULL;
	if (value)
		o->value = strdup(value);
	if (!o->key || (value && !o->value)) {
		free_op(o);
		return -ENOMEM;
	}
	o->type = type;
	o->mod_revision = rev;
	pthread_mutex_lock(&m->lock);
	if (m->n_ops >= MSTORE_OPS_MAX) {
		pthread_mutex_unlock(&m->lock);
		free_op(o);
		return -ENOSPC;
	}
	if (m->ops_tail)
		m->ops_tail->next = o;
	else
		m->ops_head = o;
	m->ops_tail = o;
	m->status.pending = ++m->n_ops;
	pthread_mutex_unlock(&m->lock);
	wake(m->wake_fd);
	return 0;
}

int mstore_put(struct mstore *m, const char *key, const char *value)
{
	return enqueue(m, OP_PUT, key, value, 0);
}

int mstore_delete(struct mstore *m, const char *key)
{
	return enqueue(m, OP_DELETE, key, NULL, 0);
}

int mstore_put_if(struct mstore *m, const char *key, const char *value, int64_t mod_revision)
{
	return enqueue(m, OP_PUT_IF, key, value, mod_revision);
}

int mstore_lease_put(struct mstore *m, const char *key, const char *value)
{
	_cleanup_free_ char *full = NULL, *val = NULL;
	struct leased *l = NULL;

	if (asprintf(&full, "%s%s", m->prefix, key) < 0) {
		full = NULL;
		return -ENOMEM;
	}
	if (value && !(val = strdup(value)))
		return -ENOMEM;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_leased && !l; i++)
		if (strcmp(m->leased[i].key, full) == 0)
			l = &m->leased[i];
	if (!l) {
		struct leased *grown = realloc(m->leased, (m->n_leased + 1) * sizeof(*grown));

		if (!grown) {
			pthread_mutex_unlock(&m->lock);
			return -ENOMEM;
		}
		m->leased = grown;
		l = &m->leased[m->n_leased++];
		*l = (struct leased){ .key = take_ptr(full) };
	}
	if (!(l->value && val && strcmp(l->value, val) == 0)) {
		free(l->value);
		l->value = take_ptr(val);
		l->dirty = true;
	}
	pthread_mutex_unlock(&m->lock);
	wake(m->wake_fd);
	return 0;
}

size_t mstore_collect(struct mstore *m, struct mstore_event *out, size_t max)
{
	size_t n = 0;
	uint64_t v;

	if (read(m->ev_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_debug("mstore: eventfd: %m");
	pthread_mutex_lock(&m->lock);
	while (n < max && m->q_head) {
		struct qev *q = m->q_head;

		m->q_head = q->next;
		out[n++] = q->ev;
		free(q);
		m->queued--;
	}
	if (!m->q_head)
		m->q_tail = NULL;
	else
		wake(m->ev_fd);	/* more than max: readable again */
	pthread_mutex_unlock(&m->lock);
	return n;
}

int mstore_fd(const struct mstore *m)
{
	return m->ev_fd;
}

void mstore_status(struct mstore *m, struct mstore_status *out)
{
	pthread_mutex_lock(&m->lock);
	*out = m->status;
	pthread_mutex_unlock(&m->lock);
}

static int check_prefix(const char *p, char *why, size_t why_len)
{
	size_t n = p ? strlen(p) : 0;

	if (n < 2 || p[0] != '/' || p[n - 1] != '/') {
		snprintf(why, why_len, "store prefix '%s': must start and end with '/'", p ? p : "");
		return -EINVAL;
	}
	return 0;
}

int mstore_start(const struct mstore_config *cfg, struct mstore **out, char *why, size_t why_len)
{
	struct mstore *m;
	int r = check_prefix(cfg->prefix, why, why_len);

	if (r)
		return r;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->lock, NULL);
	m->wake_fd = m->ev_fd = -1;
	m->lease_ttl = cfg->lease_ttl ? cfg->lease_ttl : MSTORE_LEASE_TTL_DEFAULT;
	m->prefix = strdup(cfg->prefix);
	m->prefix_len = strlen(cfg->prefix);
	m->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	m->ev_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r = !m->prefix ? -ENOMEM : m->wake_fd < 0 || m->ev_fd < 0 ? -errno : 0;
	if (!r) {
		r = store_open(cfg->urls, cfg->tls, &m->st);
		if (r == -EINVAL)
			snprintf(why, why_len, "store URLs '%s': not a list of http:// or https:// "
				 "URLs (https needs the node's TLS files)", cfg->urls);
	}
	if (!r && (cfg->connect_ms || cfg->total_ms))
		store_set_timeouts(m->st, cfg->connect_ms ? cfg->connect_ms : STORE_CONNECT_TIMEOUT_MS,
				   cfg->total_ms ? cfg->total_ms : STORE_TIMEOUT_MS);
	if (!r) {
		r = -pthread_create(&m->thread, NULL, worker, m);
		m->started = r == 0;
	}
	if (r) {
		mstore_stop(m);
		return r;
	}
	*out = m;
	return 0;
}

void mstore_stop(struct mstore *m)
{
	if (!m)
		return;
	atomic_store(&m->stop, true);
	if (m->started) {
		wake(m->wake_fd);
		pthread_join(m->thread, NULL);
	}
	if (m->watch)
		store_watch_stop(m->watch);
	store_close(m->st);
	snap_drop(m);
	while (m->ops_head) {
		struct op *next = m->ops_head->next;

		free_op(m->ops_head);
		m->ops_head = next;
	}
	for (size_t i = 0; i < m->n_leased; i++) {
		free(m->leased[i].key);
		free(m->leased[i].value);
	}
	free(m->leased);
	while (m->q_head) {
		struct qev *next = m->q_head->next;

		mstore_event_free(&m->q_head->ev);
		free(m->q_head);
		m->q_head = next;
	}
	if (m->wake_fd >= 0)
		close(m->wake_fd);
	if (m->ev_fd >= 0)
		close(m->ev_fd);
	pthread_mutex_destroy(&m->lock);
	free(m->prefix);
	free(m);
}
