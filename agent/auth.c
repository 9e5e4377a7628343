// SPDX-License-Identifier: Apache-2.0
/*
 * The authentication engine: the accepting thread, two pools of worker
 * threads (askers and answerers), the pairs it keeps track of, and the
 * outcomes it hands back. The exchanges themselves are in auth_tls.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "auth_int.h"
#include "cleanup.h"

enum {
	RETRY_FIRST_MS = 100,	/* wait after a first failure, doubled per failure */
	RETRY_MAX_MS = 30000,
	FORGET_AFTER_S = 60,	/* an expired or failed pair is forgotten this much later */
	NS_PER_MS = 1000000,
};

static void reap(struct auth_engine *e);

__u64 auth_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + (__u64)ts.tv_nsec;
}

/* --- pairs ------------------------------------------------------------------------------- */

static size_t key_hash(const struct fg_auth_key *k)
{
	const __u8 *p = (const __u8 *)k;
	__u64 h = 1469598103934665603ull;	/* FNV-1a */

	for (size_t i = 0; i < sizeof(*k); i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return (size_t)h;
}

static struct auth_pair *pairs_slot(struct auth_pair *slots, size_t cap,
				    const struct fg_auth_key *k)
{
	size_t i = key_hash(k) & (cap - 1);

	while (slots[i].used && memcmp(&slots[i].key, k, sizeof(*k)))
		i = (i + 1) & (cap - 1);
	return &slots[i];
}

static struct auth_pair *pairs_find(struct auth_pairs *p, const struct fg_auth_key *k)
{
	struct auth_pair *s;

	if (!p->cap)
		return NULL;
	s = pairs_slot(p->slots, p->cap, k);
	return s->used ? s : NULL;
}

/* Moves the pairs for which keep() is true into a table of cap slots. */
static int pairs_rehash(struct auth_pairs *p, size_t cap, bool (*keep)(struct auth_pair *, void *),
			void *arg)
{
	struct auth_pair *slots = calloc(cap, sizeof(*slots));
	size_t n = 0;

	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < p->cap; i++) {
		struct auth_pair *old = &p->slots[i];

		if (!old->used)
			continue;
		if (keep && !keep(old, arg)) {
			if (old->session)
				SSL_SESSION_free(old->session);
			continue;
		}
		*pairs_slot(slots, cap, &old->key) = *old;
		n++;
	}
	free(p->slots);
	p->slots = slots;
	p->cap = cap;
	p->n = n;
	return 0;
}

/* The pair of k, made when missing; NULL when the table is full or memory is out. */
static struct auth_pair *pairs_get(struct auth_pairs *p, const struct fg_auth_key *k)
{
	struct auth_pair *s = pairs_find(p, k);

	if (s)
		return s;
	if (p->n >= AUTH_PAIRS_MAX)
		return NULL;
	if (2 * (p->n + 1) > p->cap && pairs_rehash(p, p->cap ? 2 * p->cap : 64, NULL, NULL))
		return NULL;
	s = pairs_slot(p->slots, p->cap, k);
	*s = (struct auth_pair){ .key = *k, .used = true };
	p->n++;
	return s;
}

static void pairs_free(struct auth_pairs *p)
{
	for (size_t i = 0; i < p->cap; i++)
		if (p->slots[i].used && p->slots[i].session)
			SSL_SESSION_free(p->slots[i].session);
	free(p->slots);
	*p = (struct auth_pairs){};
}

/* --- outcomes ----------------------------------------------------------------------------- */

static void outcome_push(struct auth_engine *e, const struct auth_outcome *o)
{
	__u64 one = 1;

	if (e->out_n == AUTH_OUTCOMES_MAX) {	/* nobody collects: drop the oldest */
		e->out_head = (e->out_head + 1) % AUTH_OUTCOMES_MAX;
		e->out_n--;
	}
	e->outcomes[(e->out_head + e->out_n) % AUTH_OUTCOMES_MAX] = *o;
	e->out_n++;
	if (write(e->event_fd, &one, sizeof(one)) < 0) {
		/* the counter is full: the reader is woken anyway */
	}
}

size_t auth_engine_collect(struct auth_engine *e, struct auth_outcome *out, size_t max)
{
	__u64 count;
	size_t n = 0;

	if (read(e->event_fd, &count, sizeof(count)) < 0) {
		/* nothing signalled: collect what is there anyway */
	}
	reap(e);
	pthread_mutex_lock(&e->lock);
	while (n < max && e->out_n) {
		out[n++] = e->outcomes[e->out_head];
		e->out_head = (e->out_head + 1) % AUTH_OUTCOMES_MAX;
		e->out_n--;
	}
	pthread_mutex_unlock(&e->lock);
	return n;
}

int auth_engine_fd(const struct auth_engine *e)
{
	return e->event_fd;
}

/* --- recording results ------------------------------------------------------------------- */

static __u64 retry_delay_ns(__u32 failures)
{
	__u64 ms = RETRY_FIRST_MS;

	for (__u32 i = 1; i < failures && ms < RETRY_MAX_MS; i++)
		ms *= 2;
	return (ms < RETRY_MAX_MS ? ms : RETRY_MAX_MS) * NS_PER_MS;
}

/* Whether res may still be written: same trust, and the current view allows the pair. */
static bool still_valid(struct auth_engine *e, struct auth_result *res)
{
	__u8 dir = res->dir;

	if (res->trust_gen != e->trust_gen) {
		snprintf(res->why, sizeof(res->why), "the trust bundles changed during the exchange");
		return false;
	}
	/* the answerer's policy direction is the opposite of the request's */
	if (res->role == AUTH_ANSWERER)
		dir = dir == FG_DIR_EGRESS ? FG_DIR_INGRESS : FG_DIR_EGRESS;
	if (!auth_view_allows(e->view, dir, res->key.local_id, res->key.peer_id, NULL)) {
		snprintf(res->why, sizeof(res->why), "policy no longer allows the pair");
		return false;
	}
	return true;
}

/* Writes fg_auth for an accepted result; its expiry in CLOCK_MONOTONIC. */
static bool record_write(struct auth_engine *e, struct auth_result *res, __u64 now,
			 __u64 *expiry)
{
	time_t left = res->not_after - time(NULL);
	int r;

	if (left <= 0) {
		snprintf(res->why, sizeof(res->why), "the SVIDs expired during the exchange");
		return false;
	}
	*expiry = now + (__u64)left * 1000000000ull;
	r = e->cfg.ops->write(e->cfg.ops_ctx, &res->key, *expiry);
	if (r)
		snprintf(res->why, sizeof(res->why), "map 'fg_auth': %s", strerror(-r));
	return r == 0;
}

static void record_pair(struct auth_engine *e, struct auth_result *res, bool ok, __u64 now,
			__u64 expiry)
{
	struct auth_pair *p;

	if (!ok && res->role == AUTH_ANSWERER)
		return;	/* the asker keeps track of its failures, not us */
	p = pairs_get(&e->pairs, &res->key);
	if (!p)
		return;
	if (res->role == AUTH_ASKER)
		p->in_flight = false;
	if (ok) {
		p->role = res->role;
		p->dir = res->dir;
		p->failures = 0;
		p->expiry_ns = expiry;
		p->renew_ns = now + (expiry - now) / 3 * 2;
	} else if (res->role == AUTH_ASKER) {
		p->failures++;
		p->retry_ns = now + retry_delay_ns(p->failures);
	}
	if (res->session) {
		if (p->session)
			SSL_SESSION_free(p->session);
		p->session = take_ptr(res->session);
		p->session_cred = res->session_cred;
	}
}

bool auth_record(struct auth_engine *e, struct auth_result *res)
{
	struct auth_outcome o = { .key = res->key, .role = res->role, .dir = res->dir,
				  .resumed = res->resumed };
	__u64 now = auth_now_ns(), expiry = 0;
	bool ok = res->ok;

	pthread_mutex_lock(&e->lock);
	if (ok)
		ok = still_valid(e, res) && record_write(e, res, now, &expiry);
	record_pair(e, res, ok, now, expiry);
	o.ok = ok;
	o.expiry_ns = expiry;
	o.elapsed_us = (__u32)((now - res->start_ns) / 1000);
	if (!ok)
		snprintf(o.why, sizeof(o.why), "%s", res->why);
	outcome_push(e, &o);
	pthread_mutex_unlock(&e->lock);
	if (res->session)
		SSL_SESSION_free(res->session);
	res->session = NULL;
	return ok;
}

void auth_snapshot(struct auth_engine *e, struct auth_view **view, struct auth_trust **trust,
		   __u64 *trust_gen)
{
	pthread_mutex_lock(&e->lock);
	*view = auth_view_get(e->view);
	*trust = auth_trust_get(e->trust);
	*trust_gen = e->trust_gen;
	pthread_mutex_unlock(&e->lock);
}

SSL_SESSION *auth_session(struct auth_engine *e, const struct fg_auth_key *key, __u64 cred)
{
	SSL_SESSION *s = NULL;
	struct auth_pair *p;

	pthread_mutex_lock(&e->lock);
	p = pairs_find(&e->pairs, key);
	if (p && p->session && p->session_cred == cred && SSL_SESSION_is_resumable(p->session)) {
		s = p->session;
		SSL_SESSION_up_ref(s);
	}
	pthread_mutex_unlock(&e->lock);
	return s;
}

/* --- worker pools ------------------------------------------------------------------------- */

/*
 * A worker thread. Workers are joined, not detached, so that a stopped
 * engine leaves no thread behind (nor OpenSSL's per-thread state): one
 * that runs out of jobs puts itself on e->exited, and whoever comes next
 * (an ask, an accepted connection, a collect, the stop) joins it.
 */
struct worker {
	struct worker *next;
	pthread_t thread;
	struct auth_engine *e;
	struct auth_pool *pool;
};

/* Joins the workers that have exited. Never with the lock held: they take it last. */
static void reap(struct auth_engine *e)
{
	struct worker *w, *next;

	pthread_mutex_lock(&e->lock);
	w = e->exited;
	e->exited = NULL;
	pthread_mutex_unlock(&e->lock);
	for (; w; w = next) {
		next = w->next;
		pthread_join(w->thread, NULL);
		free(w);
	}
}

static void active_remove(struct auth_engine *e, struct auth_job *job)
{
	for (struct auth_job **p = &e->active; *p; p = &(*p)->next) {
		if (*p == job) {
			*p = job->next;
			return;
		}
	}
}

void auth_job_set_fd(struct auth_engine *e, struct auth_job *job, int fd)
{
	pthread_mutex_lock(&e->lock);
	job->fd = fd;
	if (e->stopping && fd >= 0)
		shutdown(fd, SHUT_RDWR);
	pthread_mutex_unlock(&e->lock);
}

static void job_free(struct auth_job *job)
{
	if (job->fd >= 0)
		close(job->fd);
	free(job);
}

/* Exchanges running with node. Lock held. */
static unsigned int node_running(struct auth_engine *e, const __u8 node[16])
{
	unsigned int n = 0;

	for (struct auth_job *j = e->active; j; j = j->next)
		n += j->role == AUTH_ANSWERER && memcmp(j->from, node, 16) == 0;
	return n;
}

/*
 * The first queued job the pool may run now, out of its queue: an answerer
 * job waits while AUTH_ANSWERERS_PER_NODE exchanges run with its address,
 * so that one node, hostile or busy, holds a few workers at most. Lock held.
 */
static struct auth_job *next_job(struct auth_engine *e, struct auth_pool *pool)
{
	struct auth_job *prev = NULL;

	for (struct auth_job *j = pool->head; j; prev = j, j = j->next) {
		if (j->role == AUTH_ANSWERER && node_running(e, j->from) >= AUTH_ANSWERERS_PER_NODE)
			continue;
		if (prev)
			prev->next = j->next;
		else
			pool->head = j->next;
		if (pool->tail == j)
			pool->tail = prev;
		pool->queued--;
		return j;
	}
	return NULL;
}

/* Waits up to AUTH_WORKER_LINGER_MS for work; false when none came. Lock held. */
static bool linger(struct auth_engine *e, struct auth_pool *pool)
{
	struct timespec until;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += AUTH_WORKER_LINGER_MS / 1000;
	until.tv_nsec += (AUTH_WORKER_LINGER_MS % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pool->idle++;
	r = pthread_cond_timedwait(&pool->work, &e->lock, &until);
	pool->idle--;
	return r == 0;
}

/*
 * A worker runs the pool's jobs, and stays a while when there is none:
 * a thread made per exchange would cost more than the exchange's own
 * OpenSSL state (per-thread random generators and error queues).
 */
static void *worker(void *arg)
{
	struct worker *w = arg;
	struct auth_engine *e = w->e;
	struct auth_job *job;

	pthread_mutex_lock(&e->lock);
	while (!e->stopping) {
		job = next_job(e, w->pool);
		if (!job) {
			if (!linger(e, w->pool))
				break;
			continue;
		}
		job->next = e->active;
		e->active = job;
		pthread_mutex_unlock(&e->lock);
		if (job->role == AUTH_ASKER)
			auth_run_asker(e, job);
		else
			auth_run_answerer(e, job);
		pthread_mutex_lock(&e->lock);
		active_remove(e, job);
		job_free(job);
	}
	w->pool->running--;
	w->next = e->exited;
	e->exited = w;
	pthread_cond_broadcast(&e->idle);
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

/* Queues job on pool and starts a worker if the pool has room. Lock held. */
static int pool_submit(struct auth_engine *e, struct auth_pool *pool, struct auth_job *job)
{
	struct worker *w;
	int r;

	job->next = NULL;
	if (pool->tail)
		pool->tail->next = job;
	else
		pool->head = job;
	pool->tail = job;
	pool->queued++;
	if (pool->idle) {
		pthread_cond_signal(&pool->work);
		return 0;
	}
	if (pool->running >= pool->max)
		return 0;
	w = malloc(sizeof(*w));
	if (!w)
		return pool->running ? 0 : -ENOMEM;
	/* the worker reads w->thread only once on e->exited, after we unlock */
	*w = (struct worker){ .e = e, .pool = pool };
	r = thread_spawn(&w->thread, worker, w);
	if (r) {
		free(w);
		return pool->running ? 0 : -r;	/* a running worker will take it */
	}
	pool->running++;
	return 0;
}

/* Takes job back out of the queue after a failed submit. Lock held. */
static void pool_unqueue(struct auth_pool *pool, struct auth_job *job)
{
	struct auth_job *prev = NULL;

	for (struct auth_job *j = pool->head; j; prev = j, j = j->next) {
		if (j != job)
			continue;
		if (prev)
			prev->next = j->next;
		else
			pool->head = j->next;
		if (pool->tail == j)
			pool->tail = prev;
		pool->queued--;
		return;
	}
}

/* --- asking ---------------------------------------------------------------------------------- */

static struct fg_auth_key ask_key(const struct auth_ask *ask)
{
	struct fg_auth_key k = { .local_id = ask->local, .peer_id = ask->peer };

	memcpy(k.peer_node, ask->node, 16);
	return k;
}

/* auth_engine_ask() with the lock held; force skips the backoff. */
static int ask_locked(struct auth_engine *e, const struct auth_ask *ask, bool force)
{
	struct fg_auth_key k = ask_key(ask);
	struct auth_pair *p;
	struct auth_job *job;
	int r;

	if (e->stopping)
		return -ESHUTDOWN;
	p = pairs_get(&e->pairs, &k);
	if (!p)
		return -ENOSPC;
	if (p->in_flight)
		return -EALREADY;
	if (!force && p->failures && auth_now_ns() < p->retry_ns)
		return -EAGAIN;
	job = calloc(1, sizeof(*job));
	if (!job)
		return -ENOMEM;
	*job = (struct auth_job){ .role = AUTH_ASKER, .ask = *ask, .fd = -1,
				  .start_ns = auth_now_ns() };
	r = pool_submit(e, &e->askers, job);
	if (r) {
		pool_unqueue(&e->askers, job);
		free(job);
		return r;
	}
	p->in_flight = true;
	return 0;
}

int auth_engine_ask(struct auth_engine *e, const struct auth_ask *ask)
{
	int r;

	if (ask->dir != FG_DIR_EGRESS && ask->dir != FG_DIR_INGRESS)
		return -EINVAL;
	reap(e);
	pthread_mutex_lock(&e->lock);
	r = ask_locked(e, ask, false);
	pthread_mutex_unlock(&e->lock);
	return r;
}

/* Asks for local -> peer unless the pair is valid, in flight or backing off. Lock held. */
static int preauth_one(struct auth_engine *e, __u32 local, const struct view_id *peer, __u64 now)
{
	struct auth_ask ask = { .local = local, .peer = peer->num, .dir = FG_DIR_EGRESS };
	struct fg_auth_key k;
	struct auth_pair *p;

	if (!peer->has_node || peer->num == local)
		return 0;
	memcpy(ask.node, peer->node, 16);
	k = ask_key(&ask);
	p = pairs_find(&e->pairs, &k);
	if (p && p->expiry_ns > now && now < p->renew_ns)
		return 0;
	return ask_locked(e, &ask, false) == 0;
}

int auth_engine_preauth(struct auth_engine *e)
{
	__u64 now = auth_now_ns();
	struct auth_view *v;
	int queued = 0;

	pthread_mutex_lock(&e->lock);
	v = e->view;
	for (size_t i = 0; v && i < v->n_pairs; i++) {
		const struct view_pair *vp = &v->pairs[i];
		const struct view_id *peer;

		if (vp->dir != FG_DIR_EGRESS || vp->auth != FG_AUTH_MTLS)
			continue;
		if (vp->peer != FG_ID_ANY) {
			peer = view_by_num(v, vp->peer);
			queued += peer ? preauth_one(e, vp->local, peer, now) : 0;
			continue;
		}
		for (size_t j = 0; j < v->n; j++)
			queued += preauth_one(e, vp->local, &v->ids[j], now);
	}
	pthread_mutex_unlock(&e->lock);
	return queued;
}

/* --- timed work ------------------------------------------------------------------------------ */

/* Renews what this side asked for once 2/3 of its lifetime passed, while policy wants it. */
static void tick_renew(struct auth_engine *e, __u64 now)
{
	for (size_t i = 0; i < e->pairs.cap; i++) {
		struct auth_pair *p = &e->pairs.slots[i];
		struct auth_ask ask = { .local = p->key.local_id, .peer = p->key.peer_id,
					.dir = p->dir };

		if (!p->used || p->in_flight || p->role != AUTH_ASKER || p->expiry_ns <= now ||
		    now < p->renew_ns)
			continue;
		memcpy(ask.node, p->key.peer_node, 16);
		/* the pair exists: ask_locked() inserts nothing, the table stays put */
		if (auth_view_allows(e->view, p->dir, ask.local, ask.peer, NULL))
			ask_locked(e, &ask, true);
	}
}

/* When a pair is of no more use: its authentication and its last failure long past. */
static __u64 stale_at(const struct auth_pair *p)
{
	__u64 last = p->expiry_ns > p->retry_ns ? p->expiry_ns : p->retry_ns;

	return last + FORGET_AFTER_S * 1000000000ull;
}

static bool keep_fresh(struct auth_pair *p, void *arg)
{
	return p->in_flight || stale_at(p) > *(__u64 *)arg;
}

/* The next time tick has work: a renewal or a pair to forget. */
static __u64 tick_next(struct auth_engine *e, __u64 now)
{
	__u64 next = 0, when;

	for (size_t i = 0; i < e->pairs.cap; i++) {
		const struct auth_pair *p = &e->pairs.slots[i];

		if (!p->used || p->in_flight)
			continue;
		when = stale_at(p);
		if (p->role == AUTH_ASKER && p->expiry_ns > now && p->renew_ns < when)
			when = p->renew_ns > now ? p->renew_ns : now + 1;
		if (!next || when < next)
			next = when;
	}
	return next;
}

__u64 auth_engine_tick(struct auth_engine *e, __u64 now_ns)
{
	__u64 next;

	pthread_mutex_lock(&e->lock);
	tick_renew(e, now_ns);
	pairs_rehash(&e->pairs, e->pairs.cap ? e->pairs.cap : 64, keep_fresh, &now_ns);
	next = tick_next(e, now_ns);
	pthread_mutex_unlock(&e->lock);
	return next;
}

struct forget_arg {
	bool (*match)(const struct fg_auth_key *k, void *arg);
	void *arg;
	int forgotten;
};

static bool keep_unmatched(struct auth_pair *p, void *arg)
{
	struct forget_arg *f = arg;

	if (f->match && !f->match(&p->key, f->arg))
		return true;
	f->forgotten++;
	if (!p->in_flight)
		return false;
	/* its exchange will record into it: keep the slot, drop what it knew */
	if (p->session)
		SSL_SESSION_free(p->session);
	p->session = NULL;
	p->role = 0;
	p->expiry_ns = p->renew_ns = 0;
	return true;
}

int auth_engine_forget(struct auth_engine *e, bool (*match)(const struct fg_auth_key *k, void *arg),
		       void *arg)
{
	struct forget_arg f = { match, arg, 0 };
	int r;

	pthread_mutex_lock(&e->lock);
	r = pairs_rehash(&e->pairs, e->pairs.cap ? e->pairs.cap : 64, keep_unmatched, &f);
	pthread_mutex_unlock(&e->lock);
	return r ? r : f.forgotten;
}

/* --- accepting ------------------------------------------------------------------------------- */

/* Answerer jobs from node @from, queued or running. Lock held. */
static unsigned int from_count(struct auth_engine *e, const __u8 from[16])
{
	unsigned int n = 0;

	for (struct auth_job *j = e->answerers.head; j; j = j->next)
		n += memcmp(j->from, from, 16) == 0;
	for (struct auth_job *j = e->active; j; j = j->next)
		n += j->role == AUTH_ANSWERER && memcmp(j->from, from, 16) == 0;
	return n;
}

static void node_of(const struct sockaddr_storage *ss, __u8 node[16])
{
	memset(node, 0, 16);
	if (ss->ss_family == AF_INET) {
		node[10] = node[11] = 0xff;
		memcpy(node + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else {
		memcpy(node, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	}
}

/* Hands an accepted connection to an answerer, or closes it when too many wait. */
static void admit(struct auth_engine *e, int fd, const struct sockaddr_storage *from)
{
	struct auth_job *job = calloc(1, sizeof(*job));
	bool taken = false;

	reap(e);
	if (job) {
		*job = (struct auth_job){ .role = AUTH_ANSWERER, .fd = fd,
					  .start_ns = auth_now_ns() };
		node_of(from, job->from);
		pthread_mutex_lock(&e->lock);
		if (!e->stopping && e->answerers.queued < 4 * e->answerers.max &&
		    from_count(e, job->from) < AUTH_QUEUED_PER_NODE)
			taken = pool_submit(e, &e->answerers, job) == 0;
		if (!taken)
			pool_unqueue(&e->answerers, job);
		pthread_mutex_unlock(&e->lock);
	}
	if (!taken) {
		close(fd);
		free(job);
	}
}

static void on_accept(void *ctx, int fd, const struct sockaddr_storage *from, socklen_t len)
{
	(void)len;
	admit(ctx, fd, from);
}

/* --- the engine ------------------------------------------------------------------------------- */

static void pool_cond_init(struct auth_pool *pool)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->work, &attr);
	pthread_condattr_destroy(&attr);
}

int auth_engine_new(const struct auth_config *cfg, struct svids *svids, struct auth_engine **out,
		    char *why, size_t why_len)
{
	struct auth_engine *e;
	int r;

	if (!cfg->ops || !cfg->ops->write || !svids ||
	    (cfg->listen.ss_family != AF_INET && cfg->listen.ss_family != AF_INET6)) {
		snprintf(why, why_len, "incomplete configuration");
		return -EINVAL;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->cfg = *cfg;
	e->cfg.timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : AUTH_TIMEOUT_MS_DEFAULT;
	e->askers = (struct auth_pool){ .role = AUTH_ASKER,
					.max = cfg->askers_max ? cfg->askers_max
							       : AUTH_ASKERS_MAX_DEFAULT };
	e->answerers = (struct auth_pool){ .role = AUTH_ANSWERER,
					   .max = cfg->answerers_max ? cfg->answerers_max
								     : AUTH_ANSWERERS_MAX_DEFAULT };
	e->svids = svids;
	listener_init(&e->listen);
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->idle, NULL);
	pool_cond_init(&e->askers);
	pool_cond_init(&e->answerers);
	e->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	e->outcomes = calloc(AUTH_OUTCOMES_MAX, sizeof(*e->outcomes));
	r = e->event_fd < 0 ? -errno : e->outcomes ? 0 : -ENOMEM;
	if (!r)
		r = auth_tls_init(e, why, why_len);
	else
		snprintf(why, why_len, "%s", strerror(-r));
	if (r) {
		auth_engine_free(e);
		return r;
	}
	*out = e;
	return 0;
}

int auth_engine_start(struct auth_engine *e, char *why, size_t why_len)
{
	int r;

	if (e->listen.running)
		return -EALREADY;
	if (e->listen.fd < 0) {
		r = listener_open(&e->listen, &e->cfg.listen, e->cfg.listen_len, 256);
		if (r) {
			snprintf(why, why_len, "%s", strerror(-r));
			return r;
		}
	}
	r = listener_start(&e->listen, on_accept, e);
	if (r)
		snprintf(why, why_len, "no accepting thread: %s", strerror(-r));
	return r;
}

__u16 auth_engine_port(const struct auth_engine *e)
{
	return e->listen.port;
}

/* Stops the threads: queued jobs are dropped, running ones cut short. */
static void engine_stop(struct auth_engine *e)
{
	listener_stop(&e->listen);
	pthread_mutex_lock(&e->lock);
	e->stopping = true;
	pthread_cond_broadcast(&e->askers.work);
	pthread_cond_broadcast(&e->answerers.work);
	for (struct auth_job *j = e->active; j; j = j->next)
		if (j->fd >= 0)
			shutdown(j->fd, SHUT_RDWR);
	while (e->askers.running || e->answerers.running)
		pthread_cond_wait(&e->idle, &e->lock);
	pthread_mutex_unlock(&e->lock);
	reap(e);
	for (struct auth_pool *pool = &e->askers; pool; pool = pool == &e->askers ? &e->answerers : NULL) {
		while (pool->head) {
			struct auth_job *j = pool->head;

			pool->head = j->next;
			job_free(j);
		}
	}
}

void auth_engine_free(struct auth_engine *e)
{
	if (!e)
		return;
	engine_stop(e);
	auth_tls_free(e);
	pairs_free(&e->pairs);
	auth_view_put(e->view);
	auth_trust_put(e->trust);
	free(e->outcomes);
	listener_close(&e->listen);
	if (e->event_fd >= 0)
		close(e->event_fd);
	pthread_cond_destroy(&e->idle);
	pthread_cond_destroy(&e->askers.work);
	pthread_cond_destroy(&e->answerers.work);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

void auth_engine_set_view(struct auth_engine *e, struct auth_view *v)
{
	struct auth_view *old;

	pthread_mutex_lock(&e->lock);
	old = e->view;
	e->view = v;
	pthread_mutex_unlock(&e->lock);
	auth_view_put(old);
}

void auth_engine_set_trust(struct auth_engine *e, struct auth_trust *t)
{
	struct auth_trust *old;

	pthread_mutex_lock(&e->lock);
	old = e->trust;
	e->trust = t;
	e->trust_gen++;
	pthread_mutex_unlock(&e->lock);
	auth_trust_put(old);
}

unsigned int auth_engine_busy(struct auth_engine *e)
{
	unsigned int n = 0;

	pthread_mutex_lock(&e->lock);
	for (struct auth_job *j = e->active; j; j = j->next)
		n++;
	n += e->askers.queued + e->answerers.queued;
	pthread_mutex_unlock(&e->lock);
	return n;
}
