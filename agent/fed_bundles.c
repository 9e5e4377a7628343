// SPDX-License-Identifier: Apache-2.0
/*
 * Bundles across meshes (docs/federation.md, "Bundles"): this agent serves
 * its trust domain's bundle as a SPIFFE bundle endpoint (bundle_endpoint.h)
 * with its node SVID, and fetches each federated trust domain's bundle from
 * the URL of its --federate-with entry (bundle_fetch.h) on a worker thread:
 * again after spiffe_refresh_hint, and at once (limited per trust domain)
 * when a peer of that trust domain presents a key not yet known. A fetched
 * bundle goes through bundle.set's checks (sequence, revocation, cutting).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "auth.h"
#include "bundle.h"
#include "bundle_endpoint.h"
#include "bundle_fetch.h"
#include "cleanup.h"
#include "fed_int.h"
#include "log.h"
#include "peerauth.h"
#include "peerauth_int.h"
#include "state.h"
#include "svids.h"

enum {
	FETCH_MAX_BYTES = 1 << 20,
	FETCH_TIMEOUT_MS = 5000,
	RETRY_MIN_S = 1,	/* after a failed fetch, doubled per failure */
	RETRY_MAX_S = 30,
};

struct fetch_job {
	struct fetch_job *next;
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	char url[1024];
	char expected_id[SPIFFE_ID_MAX + 1];
	char *current;		/* the bundle in force, as JSON */
	/* the result */
	int r;
	char *json;		/* the fetched bundle, as JSON */
	char why[BEP_FETCH_WHY_MAX];
};

struct fed_fetcher {
	pthread_t thread;
	bool started, stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct fetch_job *jobs, *done;
	int fd;			/* eventfd: results wait */
};

/* --- the worker ---------------------------------------------------------------------------------- */

static void fetch_one(struct fetch_job *j)
{
	struct bundle *cur = NULL, *got = NULL;

	j->r = bundle_parse(j->td, j->current, strlen(j->current), &cur, j->why, sizeof(j->why));
	if (!j->r)
		j->r = bep_fetch(j->url, j->expected_id, cur, j->td, FETCH_MAX_BYTES,
				 FETCH_TIMEOUT_MS, &got, j->why, sizeof(j->why));
	if (!j->r)
		j->r = bundle_write(got, &j->json);
	bundle_free(cur);
	bundle_free(got);
}

static void *fetcher(void *arg)
{
	struct fed_fetcher *w = arg;
	sigset_t all;
	uint64_t one = 1;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&w->lock);
	while (!w->stop) {
		struct fetch_job *j = w->jobs;

		if (!j) {
			pthread_cond_wait(&w->cond, &w->lock);
			continue;
		}
		w->jobs = j->next;
		pthread_mutex_unlock(&w->lock);
		fetch_one(j);
		pthread_mutex_lock(&w->lock);
		j->next = w->done;
		w->done = j;
		if (write(w->fd, &one, sizeof(one)) < 0)
			log_debug("fetcher: eventfd: %m");
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void job_free(struct fetch_job *j)
{
	free(j->current);
	free(j->json);
	free(j);
}

/* --- scheduling ---------------------------------------------------------------------------------- */

/* Queues a fetch of r's bundle, authenticated with the bundle in force. */
static void fetch_start(struct agent *a, struct fed_remote *r)
{
	struct fed_fetcher *w = a->fed->fetcher;
	const struct bundle *b = bundle_set_lookup(a->auth->bundles, r->td);
	struct fetch_job *j;

	if (r->fetching || !b)
		return;
	j = calloc(1, sizeof(*j));
	if (!j || bundle_write(b, &j->current)) {
		free(j);
		return;
	}
	snprintf(j->td, sizeof(j->td), "%s", r->td);
	snprintf(j->url, sizeof(j->url), "%s", r->url);
	snprintf(j->expected_id, sizeof(j->expected_id), "%s", r->endpoint_id);
	r->fetching = true;
	pthread_mutex_lock(&w->lock);
	j->next = w->jobs;
	w->jobs = j;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void fetch_done(struct agent *a, struct fetch_job *j)
{
	struct fed_remote *r = fed_remote_find(a->fed, j->td);
	struct json_object *result = json_object_new_object();
	struct control_error err = {};
	const struct bundle *b;
	time_t now = time(NULL);

	if (!r) {
		json_object_put(result);
		return;
	}
	r->fetching = false;
	r->fetch_backoff = r->fetch_backoff ? r->fetch_backoff * 2 : RETRY_MIN_S;
	if (r->fetch_backoff > RETRY_MAX_S)
		r->fetch_backoff = RETRY_MAX_S;
	r->next_fetch = now + r->fetch_backoff;
	if (j->r) {
		snprintf(r->fetch_error, sizeof(r->fetch_error), "%s", j->why);
		log_warn("mesh '%s': bundle not fetched from %s: %s; the bundle in force stays",
			 r->td, r->url, j->why);
	} else if (peerauth_bundle_set(a, r->td, j->json, strlen(j->json), result, &err)) {
		snprintf(r->fetch_error, sizeof(r->fetch_error), "%s", err.message);
		log_warn("mesh '%s': fetched bundle refused: %s", r->td, err.message);
	} else {
		b = bundle_set_lookup(a->auth->bundles, r->td);
		r->next_fetch = bep_next_refresh(b, now);
		r->fetch_backoff = 0;
		log_msg(r->fetched_at && !r->fetch_error[0] ? FG_LOG_DEBUG : FG_LOG_INFO,
			"mesh '%s': bundle fetched from %s (sequence %llu), next in %lld s", r->td,
			r->url, b ? (unsigned long long)b->sequence : 0ULL,
			(long long)(r->next_fetch - now));
		r->fetch_error[0] = 0;
		r->fetched_at = now;
	}
	json_object_put(result);
}

void fed_bundles_dispatch(struct agent *a)
{
	struct fed_fetcher *w = a->fed->fetcher;
	struct fetch_job *done;
	uint64_t n;

	if (!w)
		return;
	if (read(w->fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_debug("fetcher: eventfd: %m");
	pthread_mutex_lock(&w->lock);
	done = w->done;
	w->done = NULL;
	pthread_mutex_unlock(&w->lock);
	while (done) {
		struct fetch_job *next = done->next;

		fetch_done(a, done);
		job_free(done);
		done = next;
	}
}

int fed_bundles_fd(struct agent *a)
{
	return a->fed->fetcher ? a->fed->fetcher->fd : -1;
}

/* Timed work: fetches that are due, and the endpoint's SVID after a renewal. */
void fed_bundles_tick(struct agent *a)
{
	struct fed *f = a->fed;
	time_t now = time(NULL);

	for (size_t i = 0; f->fetcher && i < f->n_remotes; i++)
		if (f->remotes[i].url[0] && now >= f->remotes[i].next_fetch)
			fetch_start(a, &f->remotes[i]);
	if (f->bep) {
		_cleanup_svids_cred_ struct svids_cred *c =
			svids_get(a->auth->svids, svids_node_id(a->auth->svids));
		char why[BEP_WHY_MAX];

		if (c && c->serial != f->bep_serial &&
		    bep_server_set_cred(f->bep, c->cert, c->key, c->chain, why, sizeof(why)) == 0)
			f->bep_serial = c->serial;
	}
}

void fed_bundles_kick(struct agent *a, const char *td)
{
	struct fed_remote *r = a->fed ? fed_remote_find(a->fed, td) : NULL;

	if (!r || !a->fed->kick || !bep_kick_allow(a->fed->kick, td, time(NULL)))
		return;
	log_info("mesh '%s': a key not yet known; fetching its bundle now", td);
	fetch_start(a, r);
}

/* --- the endpoint we serve ----------------------------------------------------------------------- */

void fed_bundles_trust_changed(struct agent *a)
{
	const struct bundle *b;
	char *json = NULL;

	if (!a->fed || !a->fed->bep)
		return;
	b = bundle_set_lookup(a->auth->bundles, a->fed->td);
	if (b && bundle_write(b, &json) == 0 && bep_server_set_bundle(a->fed->bep, json))
		log_warn("bundle endpoint: the new bundle of '%s' is not served", a->fed->td);
	free(json);
}

static int serve_start(struct agent *a, const char *listen)
{
	struct fed *f = a->fed;
	_cleanup_svids_cred_ struct svids_cred *c =
		svids_get(a->auth->svids, svids_node_id(a->auth->svids));
	const struct bundle *b = bundle_set_lookup(a->auth->bundles, f->td);
	_cleanup_free_ char *json = NULL;
	struct bep_server_config cfg = { .listen = listen };
	char why[BEP_WHY_MAX] = "";
	int r;

	if (!c || !b || bundle_write(b, &json))
		return log_error_errno(-ENOENT, "bundle endpoint: no node SVID or own bundle");
	cfg.cert = c->cert;
	cfg.key = c->key;
	cfg.chain = c->chain;
	cfg.bundle_json = json;
	r = bep_server_start(&cfg, &f->bep, why, sizeof(why));
	if (r)
		return log_error_errno(r, "bundle endpoint on '%s': %s", listen, why);
	f->bep_serial = c->serial;
	log_info("bundle endpoint: serving the bundle of '%s' at https://%s/ as '%s'", f->td,
		 listen, c->spiffe_id);
	return 0;
}

/* --- start and stop ---------------------------------------------------------------------------- */

/* A --federate-with entry's bootstrap bundle, unless the agent has one for it already. */
static int bootstrap(struct agent *a, struct fed_remote *r)
{
	struct json_object *result;
	struct control_error err = {};
	_cleanup_free_ char *text = NULL;
	FILE *fp;
	long len;
	int ret;

	if (bundle_set_lookup(a->auth->bundles, r->td))
		return 0;
	if (peerauth_bundle_deleted(a, r->td)) {
		log_warn("mesh '%s': its bundle was deleted at run time (bundle del): not "
			 "federated until 'fedguardctl bundle set %s FILE'", r->td, r->td);
		return 0;
	}
	if (!r->bundle_file[0])
		return log_error_errno(-ENOENT, "mesh '%s': no bundle to authenticate its bundle "
				       "endpoint with: give one in --federate-with (the third field) "
				       "or --bundle %s=FILE", r->td, r->td);
	fp = fopen(r->bundle_file, "re");
	if (!fp)
		return log_error_errno(-errno, "mesh '%s': bundle '%s'", r->td, r->bundle_file);
	fseek(fp, 0, SEEK_END);
	len = ftell(fp);
	rewind(fp);
	text = len > 0 && len < FETCH_MAX_BYTES ? calloc(1, (size_t)len + 1) : NULL;
	ret = text && fread(text, 1, (size_t)len, fp) == (size_t)len ? 0 : -EIO;
	fclose(fp);
	if (ret)
		return log_error_errno(ret, "mesh '%s': bundle '%s' cannot be read", r->td,
				       r->bundle_file);
	result = json_object_new_object();
	ret = peerauth_bundle_set(a, r->td, text, (size_t)len, result, &err);
	json_object_put(result);
	if (ret)
		return log_error_errno(ret, "mesh '%s': bundle '%s': %s", r->td, r->bundle_file,
				       err.message);
	return 0;
}

int fed_bundles_start(struct agent *a, const char *listen)
{
	struct fed *f = a->fed;
	struct fed_fetcher *w;
	int r;

	for (size_t i = 0; i < f->n_remotes; i++) {
		r = bootstrap(a, &f->remotes[i]);
		if (r)
			return r;
	}
	if (listen && serve_start(a, listen))
		return -EINVAL;
	if (!f->n_remotes)
		return 0;
	r = bep_kick_new(0, &f->kick);
	w = calloc(1, sizeof(*w));
	if (r || !w) {
		free(w);
		return -ENOMEM;
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	f->fetcher = w;
	if (w->fd < 0 || pthread_create(&w->thread, NULL, fetcher, w))
		return log_error_errno(-EAGAIN, "bundle fetcher: cannot start");
	w->started = true;
	return 0;
}

void fed_bundles_stop(struct fed *f)
{
	struct fed_fetcher *w = f->fetcher;

	if (f->bep)
		bep_server_stop(f->bep);
	bep_kick_free(f->kick);
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	if (w->started)
		pthread_join(w->thread, NULL);
	for (struct fetch_job *lists[] = { w->jobs, w->done }, **l = lists; l < lists + 2; l++)
		while (*l) {
			struct fetch_job *next = (*l)->next;

			job_free(*l);
			*l = next;
		}
	if (w->fd >= 0)
		close(w->fd);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
	f->fetcher = NULL;
}
