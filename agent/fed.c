// SPDX-License-Identifier: Apache-2.0
/*
 * The mesh store in the agent (fed.h): options, the mirror of the store,
 * and what the agent publishes. How the mirror becomes local state is in
 * fed_sync.c.
 */
#define _GNU_SOURCE
#include "fed.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "addr.h"
#include "agent.h"
#include "auth.h"
#include "cleanup.h"
#include "peerauth_int.h"
#include "svids.h"
#include "fed_int.h"
#include "link.h"
#include "log.h"
#include "metrics.h"
#include "mstore.h"
#include "observe.h"
#include "peerauth.h"
#include "spiffe.h"
#include "state.h"

enum {
	EVENTS_BATCH = 256,
	ALERTS_KEPT = 256,
};

/* Seconds between the totals an agent sends its peers and federated meshes. */
#define TELEMETRY_PERIOD_S 5

/* The SPIFFE ID an https store must present: spiffe://TD/etcd (docs/federation.md). */
#define STORE_ID_PATH "/etcd"

/* --- options ------------------------------------------------------------------------------ */

/*
 * TD=URL,ENDPOINT-ID[,BUNDLE-FILE]: the trust domain, its bundle endpoint
 * (https://ADDR[:PORT]/..., an IP literal), the endpoint's SPIFFE ID (an
 * agent's node SVID of TD) and a bootstrap bundle. 0 and *out, or -EINVAL
 * after logging what is wrong.
 */
static int parse_federate(const char *s, struct fed_remote *out)
{
	char buf[4096], *td, *url, *id, *file, *host, *end;
	struct fed_remote r = {};
	struct spiffe_id sid;
	__u8 bin[16];
	size_t n;

	snprintf(buf, sizeof(buf), "%s", s);
	td = buf;
	url = strchr(td, '=');
	if (url)
		*url++ = 0;
	id = url ? strchr(url, ',') : NULL;
	if (id)
		*id++ = 0;
	file = id ? strchr(id, ',') : NULL;
	if (file)
		*file++ = 0;
	if (!url || !id || !*url || !*id) {
		log_error("option --federate-with: '%s' is not TD=URL,ENDPOINT-SPIFFE-ID"
			  "[,BUNDLE-FILE]", s);
		return -EINVAL;
	}
	if (spiffe_td_valid(td, NULL, 0)) {
		log_error("option --federate-with: '%s' is not a trust domain name", td);
		return -EINVAL;
	}
	if (strncmp(url, "https://", 8) != 0) {
		log_error("option --federate-with %s: '%s' is not an https:// URL (the "
			  "https_spiffe profile)", td, url);
		return -EINVAL;
	}
	host = url + 8;
	if (*host == '[') {
		end = strchr(++host, ']');
		n = end ? (size_t)(end - host) : 0;
	} else {
		n = strcspn(host, ":/");
	}
	snprintf(r.host, sizeof(r.host), "%.*s", (int)n, host);
	if (!n || addr_parse_node(r.host, bin)) {
		log_error("option --federate-with %s: the host of '%s' is not an IP address "
			  "(fedguard resolves no names)", td, url);
		return -EINVAL;
	}
	if (spiffe_parse(id, &sid, NULL, 0) || !spiffe_in_trust_domain(&sid, td) ||
	    strncmp(id + 9 + strlen(td), "/fedguard/node/", 15) != 0) {
		log_error("option --federate-with %s: '%s' is not the node SVID of an agent of "
			  "'%s' (spiffe://%s/fedguard/node/NAME)", td, id, td, td);
		return -EINVAL;
	}
	if (strlen(td) >= sizeof(r.td) || strlen(url) >= sizeof(r.url) ||
	    strlen(id) >= sizeof(r.endpoint_id) || (file && strlen(file) >= sizeof(r.bundle_file))) {
		log_error("option --federate-with: '%s' is too long", s);
		return -EINVAL;
	}
	memcpy(r.td, td, strlen(td) + 1);
	memcpy(r.url, url, strlen(url) + 1);
	memcpy(r.endpoint_id, id, strlen(id) + 1);
	if (file)
		memcpy(r.bundle_file, file, strlen(file) + 1);
	*out = r;
	return 0;
}

static int check_listen(const char *opt, const char *val)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (val && link_parse_listen(val, &ss, &len)) {
		log_error("option %s: '%s' is not ADDR:PORT or [ADDR]:PORT", opt, val);
		return -EINVAL;
	}
	return 0;
}

int fed_opts_check(const struct fed_opts *o, const struct peerauth_opts *auth,
		   bool have_policy_key)
{
	struct fed_remote r;

	for (unsigned int i = 0; i < o->n_federate; i++)
		if (parse_federate(o->federate[i], &r))
			return -EINVAL;
	if (check_listen("--peer-listen", o->peer_listen) ||
	    check_listen("--bundle-endpoint-listen", o->bundle_listen))
		return -EINVAL;
	if (o->n_federate && !o->peer_listen) {
		log_error("--federate-with needs --peer-listen: the meshes' agents link there");
		return -EINVAL;
	}
	for (unsigned int i = 0; i < o->n_federate; i++) {
		parse_federate(o->federate[i], &r);
		if (auth->trust_domain && strcmp(r.td, auth->trust_domain) == 0) {
			log_error("option --federate-with: '%s' is this node's own trust domain", r.td);
			return -EINVAL;
		}
	}
	for (unsigned int i = 0; i < o->n_share_names; i++) {
		bool known = false;

		for (unsigned int j = 0; j < o->n_federate && !known; j++) {
			parse_federate(o->federate[j], &r);
			known = strcmp(r.td, o->share_names[i]) == 0;
		}
		if (!known) {
			log_error("option --share-names-with: '%s' is no trust domain of a "
				  "--federate-with", o->share_names[i]);
			return -EINVAL;
		}
	}
	if (!o->store) {
		if (o->lease_ttl || o->peer_listen || o->bundle_listen || o->n_federate) {
			log_error("--store-lease-ttl, --peer-listen, --bundle-endpoint-listen and "
				  "--federate-with need --store");
			return -EINVAL;
		}
		return 0;
	}
	if (strncmp(o->store, "etcd=", 5) != 0 || !o->store[5]) {
		log_error("option --store: '%s' is not etcd=URL[,URL...]", o->store);
		return -EINVAL;
	}
	if (!auth->trust_domain) {
		log_error("--store needs --trust-domain: the mesh is the agents of one trust "
			  "domain, and an agent is known by its node SVID");
		return -EINVAL;
	}
	if (!have_policy_key) {
		log_error("--store needs --policy-key: the agents of a mesh accept only policies "
			  "signed by the mesh's policy key (docs/policy.md, \"Signed policies\")");
		return -EINVAL;
	}
	return 0;
}

/* --- publishing --------------------------------------------------------------------------- */

static const char *self_name(const char *node_id)
{
	const char *slash = strrchr(node_id, '/');

	return slash ? slash + 1 : node_id;
}

int64_t fed_policy_version(struct agent *a)
{
	struct json_object *p, *v;

	if (!json_object_object_get_ex(a->state, "policy", &p) ||
	    !json_object_object_get_ex(p, "version", &v))
		return 0;
	return json_object_get_int64(v);
}

/* {"node": ADDR, "endpoints": [{spiffe_id, ips, labels}]}: the workloads of this node. */
static struct json_object *endpoints_record(struct agent *a)
{
	struct json_object *rec = json_object_new_object(), *list = json_object_new_array();
	struct fed *f = a->fed;

	json_object_object_foreach(state_section(a->state, "workloads"), id, w)
	{
		struct json_object *ips, *labels, *ep;
		struct spiffe_id sid;

		if (spiffe_parse(id, &sid, NULL, 0) || !spiffe_in_trust_domain(&sid, f->td) ||
		    !json_object_object_get_ex(w, "ips", &ips) ||
		    json_object_array_length(ips) == 0)
			continue;	/* not of this mesh, or unreachable from other nodes */
		ep = json_object_new_object();
		json_object_object_add(ep, "spiffe_id", json_object_new_string(id));
		json_object_object_add(ep, "ips", json_object_get(ips));
		if (json_object_object_get_ex(w, "labels", &labels))
			json_object_object_add(ep, "labels", json_object_get(labels));
		json_object_array_add(list, ep);
	}
	json_object_object_add(rec, "node", json_object_new_string(f->node_addr));
	json_object_object_add(rec, "endpoints", list);
	return rec;
}

static struct json_object *node_record(struct agent *a)
{
	struct json_object *rec = json_object_new_object();
	struct fed *f = a->fed;
	uint64_t seq = 0;

	json_object_object_add(rec, "name", json_object_new_string(f->name));
	json_object_object_add(rec, "spiffe_id", json_object_new_string(f->node_id));
	json_object_object_add(rec, "address", json_object_new_string(f->node_addr));
	json_object_object_add(rec, "policy_version", json_object_new_int64(fed_policy_version(a)));
	if (peerauth_bundle_sequence(a, f->td, &seq) == 0)
		json_object_object_add(rec, "bundle_sequence", json_object_new_int64((int64_t)seq));
	json_object_object_add(rec, "started", json_object_new_int64((int64_t)f->started));
	if (f->peer_port)
		json_object_object_add(rec, "peer_port", json_object_new_int(f->peer_port));
	json_object_object_add(rec, "agent_version", json_object_new_string(FEDGUARD_VERSION));
	return rec;
}

static void lease_put_json(struct fed *f, const char *key, struct json_object *val)
{
	int r = mstore_lease_put(f->ms, key,
				 json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN));

	if (r)
		log_warn_errno(r, "mesh store: key '%s'", key);
	json_object_put(val);
}

void fed_state_changed(struct agent *a)
{
	struct fed *f = a->fed;
	char key[sizeof(f->name) + 16];

	if (!f)
		return;
	snprintf(key, sizeof(key), "endpoints/%s", f->name);
	lease_put_json(f, key, endpoints_record(a));
	snprintf(key, sizeof(key), "nodes/%s", f->name);
	lease_put_json(f, key, node_record(a));
	fed_links_state_changed(a);
}

bool fed_active(const struct agent *a)
{
	return a->fed != NULL;
}

const char *fed_node_name(const struct agent *a)
{
	return a->fed ? a->fed->name : NULL;
}

void fed_quarantine_changed(struct agent *a, const char *target, struct json_object *record)
{
	struct fed *f = a->fed;
	char key[SPIFFE_ID_MAX + 32];
	int r;

	if (!f)
		return;
	snprintf(key, sizeof(key), "quarantine/%s", target);
	if (record)
		r = mstore_put(f->ms, key, json_object_to_json_string_ext(record,
									  JSON_C_TO_STRING_PLAIN));
	else
		r = mstore_delete(f->ms, key);
	if (r)
		log_error_errno(r, "mesh store: quarantine of '%s' not queued for the store", target);
	fed_links_quarantine(a, target, record);	/* and at once to the peers */
}

/* The policy in force as the store keeps it: {version, source, document, signature}. */
static struct json_object *policy_record(struct agent *a)
{
	struct json_object *p;

	if (!json_object_object_get_ex(a->state, "policy", &p) ||
	    !json_object_object_get_ex(p, "signature", NULL))
		return NULL;	/* only signed policies travel */
	return json_object_get(p);
}

void fed_policy_publish(struct agent *a)
{
	struct json_object *rec = policy_record(a);
	struct fed *f = a->fed;
	int r;

	if (!f || !rec)
		return;
	r = mstore_put_if(f->ms, "policy", json_object_to_json_string_ext(rec,
									JSON_C_TO_STRING_PLAIN),
			  f->policy_rev);
	if (r)
		log_error_errno(r, "mesh store: policy not queued for the store");
	else
		log_info("mesh store: policy version %lld goes to the store",
			 (long long)fed_policy_version(a));
	json_object_put(rec);
}

void fed_policy_applied(struct agent *a)
{
	fed_policy_publish(a);
}

/* --- the mirror ----------------------------------------------------------------------------- */

static void mirror_put(struct json_object *m, const struct mstore_event *ev)
{
	struct json_object *e = json_object_new_object();

	json_object_object_add(e, "v", json_object_new_string_len(ev->value, (int)ev->len));
	json_object_object_add(e, "rev", json_object_new_int64(ev->mod_revision));
	json_object_object_add(m, ev->key, e);
}

static void on_event(struct agent *a, struct mstore_event *ev)
{
	struct fed *f = a->fed;

	switch (ev->type) {
	case MSTORE_SNAPSHOT:
		json_object_put(f->snap);
		f->snap = json_object_new_object();
		break;
	case MSTORE_PUT:
		mirror_put(f->snap ? f->snap : f->mirror, ev);
		if (!f->snap && f->synced)
			fed_sync_key(a, ev->key);
		break;
	case MSTORE_DELETE:
		json_object_object_del(f->snap ? f->snap : f->mirror, ev->key);
		if (!f->snap && f->synced)
			fed_sync_key(a, ev->key);
		break;
	case MSTORE_SYNCED:
		json_object_put(f->mirror);
		f->mirror = f->snap ? f->snap : json_object_new_object();
		f->snap = NULL;
		if (!f->synced)
			log_info("mesh store: in sync at revision %lld, %d keys",
				 (long long)ev->mod_revision, json_object_object_length(f->mirror));
		f->synced = true;
		fed_sync_all(a);
		break;
	case MSTORE_REACHABLE:
		log_info("mesh store: reachable");
		break;
	case MSTORE_UNREACHABLE:
		log_warn("mesh store unreachable (%s): enforcing the last known state", ev->why);
		break;
	case MSTORE_REFUSED:
		if (strcmp(ev->key, "policy") == 0)
			log_info("mesh store: another agent wrote the policy first; taking the "
				 "store's");
		else
			log_warn("mesh store: write of '%s' refused: %s", ev->key, ev->why);
		break;
	}
}

size_t fed_pollfds(struct agent *a, struct pollfd *p, size_t max)
{
	struct fed *f = a->fed;

	if (!f || max < 4)
		return 0;
	p[0] = (struct pollfd){ .fd = mstore_fd(f->ms), .events = POLLIN };
	p[1] = (struct pollfd){ .fd = f->links ? link_engine_fd(f->links) : -1, .events = POLLIN };
	p[2] = (struct pollfd){ .fd = fed_bundles_fd(a), .events = POLLIN };
	p[3] = (struct pollfd){ .fd = f->timer_fd, .events = POLLIN };
	return 4;
}

void fed_dispatch(struct agent *a, const struct pollfd *p, size_t n)
{
	struct mstore_event ev[EVENTS_BATCH];
	size_t got;

	uint64_t ticks;

	if (!a->fed || n < 4)
		return;
	if (p[0].revents & POLLIN) {
		got = mstore_collect(a->fed->ms, ev, EVENTS_BATCH);
		for (size_t i = 0; i < got; i++) {
			on_event(a, &ev[i]);
			mstore_event_free(&ev[i]);
		}
	}
	if (p[1].revents & POLLIN)
		fed_links_dispatch(a);
	if (p[2].revents & POLLIN)
		fed_bundles_dispatch(a);
	if (p[3].revents & POLLIN) {
		if (read(a->fed->timer_fd, &ticks, sizeof(ticks)) < 0)
			log_debug("mesh timer: %m");
		fed_bundles_tick(a);
		fed_sync_unconfirmed(a);
		if (++a->fed->ticks % TELEMETRY_PERIOD_S == 0)
			fed_links_telemetry(a);
	}
}


void fed_alert_received(struct agent *a, struct json_object *msg)
{
	struct fed *f = a->fed;
	struct json_object *al = state_copy(msg);

	json_object_object_add(al, "type", json_object_new_string("remote_alert"));
	json_object_object_add(al, "seq", json_object_new_int64((int64_t)++f->alert_seq));
	json_object_object_add(al, "received", json_object_new_int64((int64_t)time(NULL)));
	observe_remote_alert(a->observe, al);	/* alerts --follow, and the flow log */
	json_object_array_add(f->alerts, al);
	if (json_object_array_length(f->alerts) > ALERTS_KEPT)
		json_object_array_del_idx(f->alerts, 0, 1);
}

void fed_alerts(struct agent *a, struct json_object *result)
{
	if (a->fed)
		json_object_object_add(result, "remote", json_object_get(a->fed->alerts));
}

/* --- https to the store: the node SVID from memory ------------------------------------------- */

/* PEM of the leaf and what follows it, and of the key; 0 or -ENOMEM. */
static int cred_pem(const struct svids_cred *c, char **cert, char **key)
{
	BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
	char *p;
	long n;
	int r = -ENOMEM;

	if (cb && kb && PEM_write_bio_X509(cb, c->cert) == 1 &&
	    PEM_write_bio_PrivateKey(kb, c->key, NULL, NULL, 0, NULL, NULL) == 1) {
		r = 0;
		for (int i = 0; i < sk_X509_num(c->chain) && !r; i++)
			if (PEM_write_bio_X509(cb, sk_X509_value(c->chain, i)) != 1)
				r = -ENOMEM;
	}
	if (!r) {
		n = BIO_get_mem_data(cb, &p);
		*cert = strndup(p, (size_t)n);
		n = BIO_get_mem_data(kb, &p);
		*key = strndup(p, (size_t)n);
		r = *cert && *key ? 0 : -ENOMEM;
	}
	BIO_free(cb);
	BIO_free(kb);
	return r;
}

/* store_tls.take, on the store's threads: copies, so that a renewal frees nothing in use. */
static int tls_take(void *ctx, struct store_cred *out)
{
	struct agent *a = ctx;
	struct fed *f = a->fed;
	_cleanup_svids_cred_ struct svids_cred *c = svids_get(a->auth->svids, f->node_id);
	char *cert = NULL, *key = NULL;
	int r = c ? 0 : -ENOENT;

	pthread_mutex_lock(&f->tls_lock);
	if (!r && c->serial != f->pem_serial) {
		r = cred_pem(c, &cert, &key);
		if (!r) {
			free(f->cert_pem);
			free(f->key_pem);
			f->cert_pem = cert;
			f->key_pem = key;
			f->pem_serial = c->serial;
		} else {
			free(cert);
			free(key);
		}
	}
	if (!r && (!f->store_trust || !(out->cert_pem = strdup(f->cert_pem)) ||
		   !(out->key_pem = strdup(f->key_pem))))
		r = -ENOMEM;
	if (!r) {
		out->cert_len = strlen(out->cert_pem);
		out->key_len = strlen(out->key_pem);
		out->handle = auth_trust_get(f->store_trust);
		out->trust = auth_trust_svid(out->handle);
	} else {
		free((char *)out->cert_pem);
		out->cert_pem = NULL;
	}
	pthread_mutex_unlock(&f->tls_lock);
	return r;
}

static void tls_put(void *ctx, struct store_cred *cred)
{
	(void)ctx;
	free((char *)cred->cert_pem);
	free((char *)cred->key_pem);
	auth_trust_put(cred->handle);
}

/* The trust the store's SVID is judged by, after every bundle change. */
static void tls_trust_update(struct agent *a)
{
	struct fed *f = a->fed;
	struct auth_trust *t, *old;

	if (!f->tls || auth_trust_new(a->auth->bundles, &t))
		return;
	pthread_mutex_lock(&f->tls_lock);
	old = f->store_trust;
	f->store_trust = t;
	pthread_mutex_unlock(&f->tls_lock);
	auth_trust_put(old);
}

void fed_trust_changed(struct agent *a)
{
	if (!a->fed)
		return;
	tls_trust_update(a);
	fed_links_trust_changed(a);
	fed_bundles_trust_changed(a);
}

/* --- start and stop ----------------------------------------------------------------------- */

/*
 * What meshes announced that are no longer --federate-with entries (the
 * agent was restarted without them): their endpoints and quarantines go.
 * Their bundles stay when given by --bundle or bundle.set.
 */
static void forget_unfederated(struct agent *a)
{
	struct json_object *done = json_object_new_object(), *result;
	static const char *const sections[] = { "endpoints", "quarantine" };

	for (size_t s = 0; s < 2; s++) {
		json_object_object_foreach(state_section(a->state, sections[s]), k, rec)
		{
			struct json_object *o;
			const char *td;

			(void)k;
			if (!json_object_object_get_ex(rec, "origin", &o) ||
			    strncmp(json_object_get_string(o), "td:", 3) != 0)
				continue;
			td = json_object_get_string(o) + 3;
			if (!fed_remote_find(a->fed, td))
				json_object_object_add(done, td, NULL);
		}
	}
	json_object_object_foreach(done, td, v)
	{
		(void)v;
		log_info("mesh '%s' is no longer federated (no --federate-with): what it announced "
			 "goes", td);
		result = json_object_new_object();
		fed_trust_domain_removed(a, td, result);
		json_object_put(result);
	}
	json_object_put(done);
}

/* Links, bundles and the timer, once the store client runs. */
static int fed_parts_start(struct agent *a, const struct fed_opts *o)
{
	struct itimerspec second = { .it_interval.tv_sec = 1, .it_value.tv_sec = 1 };
	struct fed *f = a->fed;
	int r;

	f->alerts = json_object_new_array();
	f->alert_ids = json_object_new_object();
	f->telemetry = json_object_new_object();
	f->share_names = o->share_names;
	f->n_share_names = o->n_share_names;
	f->remotes = calloc(o->n_federate ? o->n_federate : 1, sizeof(*f->remotes));
	if (!f->remotes || !f->alerts || !f->alert_ids)
		return -ENOMEM;
	for (unsigned int i = 0; i < o->n_federate; i++)
		if (parse_federate(o->federate[i], &f->remotes[f->n_remotes++]))
			return -EINVAL;
	forget_unfederated(a);
	f->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (f->timer_fd < 0 || timerfd_settime(f->timer_fd, 0, &second, NULL))
		return log_error_errno(-errno, "mesh timer");
	r = fed_bundles_start(a, o->bundle_listen);
	if (!r && o->peer_listen)
		r = fed_links_start(a, o->peer_listen);
	return r;
}

int fed_start(struct agent *a, const struct fed_opts *o)
{
	struct mstore_config cfg = { .urls = o ? o->store + 5 : NULL, .lease_ttl = o ? o->lease_ttl : 0 };
	const char *node_id = peerauth_node_id(a);
	char prefix[SPIFFE_TRUST_DOMAIN_MAX + 16], why[MSTORE_WHY_MAX] = "";
	struct store_tls tls;
	struct fed *f;
	int r;

	if (!o || !o->store)
		return 0;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	snprintf(f->td, sizeof(f->td), "%s", peerauth_trust_domain(a));
	snprintf(f->node_id, sizeof(f->node_id), "%s", node_id);
	snprintf(f->name, sizeof(f->name), "%s", self_name(node_id));
	snprintf(f->node_addr, sizeof(f->node_addr), "%s", a->node_addr);
	snprintf(f->urls, sizeof(f->urls), "%s", cfg.urls);
	f->started = time(NULL);
	f->mirror = json_object_new_object();
	pthread_mutex_init(&f->tls_lock, NULL);
	snprintf(prefix, sizeof(prefix), "/fedguard/%s/", f->td);
	snprintf(f->store_id, sizeof(f->store_id), "spiffe://%s" STORE_ID_PATH, f->td);
	cfg.prefix = prefix;
	a->fed = f;	/* the TLS provider reads it */
	if (strstr(cfg.urls, "https://")) {
		f->tls = true;
		tls = (struct store_tls){ .take = tls_take, .put = tls_put, .ctx = a,
					  .server_id = f->store_id };
		cfg.tls = &tls;
		tls_trust_update(a);
	}
	r = mstore_start(&cfg, &f->ms, why, sizeof(why));
	if (r) {
		a->fed = NULL;
		auth_trust_put(f->store_trust);
		json_object_put(f->mirror);
		free(f);
		return log_error_errno(r, "mesh store: %s", why[0] ? why : "cannot start");
	}
	log_info("mesh store: agent '%s' of trust domain '%s' at %s, keys under %s", f->name,
		 f->td, f->urls, prefix);
	r = fed_parts_start(a, o);
	if (r)
		return r;
	fed_state_changed(a);
	return 0;
}

void fed_stop(struct agent *a)
{
	struct fed *f = a->fed;

	if (!f)
		return;
	fed_links_stop(f);
	fed_bundles_stop(f);
	mstore_stop(f->ms);
	if (f->timer_fd > 0)
		close(f->timer_fd);
	json_object_put(f->mirror);
	json_object_put(f->snap);
	json_object_put(f->alerts);
	json_object_put(f->alert_ids);
	json_object_put(f->unconfirmed);
	json_object_put(f->telemetry);
	free(f->remotes);
	auth_trust_put(f->store_trust);
	free(f->cert_pem);
	free(f->key_pem);
	pthread_mutex_destroy(&f->tls_lock);
	free(f);
	a->fed = NULL;
}

/* --- status and views ------------------------------------------------------------------------ */

void fed_status(struct agent *a, struct json_object *result)
{
	struct json_object *s = json_object_new_object();
	struct mstore_status st;
	struct fed *f = a->fed;

	if (!f)
		return;
	mstore_status(f->ms, &st);
	json_object_object_add(s, "urls", json_object_new_string(f->urls));
	json_object_object_add(s, "node", json_object_new_string(f->name));
	json_object_object_add(s, "reachable", json_object_new_boolean(st.reachable));
	json_object_object_add(s, "since", json_object_new_int64((int64_t)st.since));
	json_object_object_add(s, "synced", json_object_new_boolean(f->synced));
	json_object_object_add(s, "revision", json_object_new_int64(st.revision));
	json_object_object_add(s, "pending_writes", json_object_new_int(st.pending));
	if (st.last_error[0])
		json_object_object_add(s, "last_error", json_object_new_string(st.last_error));
	if (!st.reachable)
		json_object_object_add(s, "note", json_object_new_string(
					       "enforcing the last known state"));
	json_object_object_add(result, "store", s);
}

void fed_metrics(struct agent *a, struct metrics_buf *b)
{
	struct json_object *res = json_object_new_object(), *list;
	static const char *const states[] = { "registered", "up", "connecting", "linked to us" };
	struct control_error err = {};
	struct mstore_status st;
	struct fed *f = a->fed;
	time_t now = time(NULL);

	if (!f) {
		json_object_put(res);
		return;
	}
	mstore_status(f->ms, &st);
	metrics_family(b, "fedguard_store_reachable", "gauge",
		       "1 while the mesh store answers, 0 while the agent enforces the last state.");
	metrics_u64(b, "fedguard_store_reachable", st.reachable, NULL);
	metrics_family(b, "fedguard_store_pending_writes", "gauge",
		       "Writes waiting for the mesh store.");
	metrics_u64(b, "fedguard_store_pending_writes", st.pending, NULL);
	cmd_peer_list(a, NULL, res, &err);
	list = json_object_object_get(res, "peers");
	metrics_family(b, "fedguard_peers", "gauge",
		       "Agents of the mesh and of federated meshes, by the state of the link.");
	for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++) {
		__u64 n = 0;

		for (size_t i = 0; i < json_object_array_length(list); i++)
			n += strcmp(json_object_get_string(json_object_object_get(
					    json_object_array_get_idx(list, i), "state")),
				    states[s]) == 0;
		metrics_u64(b, "fedguard_peers", n, "state", states[s], NULL);
	}
	json_object_put(res);
	metrics_family(b, "fedguard_bundle_age_seconds", "gauge",
		       "Seconds since a federated trust domain's bundle was last fetched from its "
		       "endpoint (-1: never).");
	for (size_t i = 0; i < f->n_remotes; i++)
		metrics_f64(b, "fedguard_bundle_age_seconds",
			    f->remotes[i].fetched_at ? (double)(now - f->remotes[i].fetched_at) : -1,
			    "trust_domain", f->remotes[i].td, NULL);
	metrics_family(b, "fedguard_remote_alerts_total", "counter",
		       "Alerts received from other agents of the mesh and of federated meshes.");
	metrics_u64(b, "fedguard_remote_alerts_total", f->alert_seq, NULL);
}

/* The record of node name in the mirror, parsed (to put), or NULL. */
struct json_object *fed_mirror_json(struct fed *f, const char *key)
{
	struct json_object *e, *v;

	if (!json_object_object_get_ex(f->mirror, key, &e) ||
	    !json_object_object_get_ex(e, "v", &v))
		return NULL;
	return json_tokener_parse(json_object_get_string(v));
}

static struct json_object *peer_item(struct agent *a, const char *name, struct json_object *rec)
{
	struct json_object *item = json_object_new_object(), *v;
	static const char *const copy[] = { "spiffe_id", "address", "policy_version",
					    "bundle_sequence", "started", "agent_version" };

	json_object_object_add(item, "node", json_object_new_string(name));
	json_object_object_add(item, "trust_domain", json_object_new_string(a->fed->td));
	for (size_t i = 0; i < sizeof(copy) / sizeof(copy[0]); i++)
		if (rec && json_object_object_get_ex(rec, copy[i], &v))
			json_object_object_add(item, copy[i], json_object_get(v));
	json_object_object_add(item, "self", json_object_new_boolean(
					     strcmp(name, a->fed->name) == 0));
	json_object_object_add(item, "kind", json_object_new_string("mesh"));
	/* registered: its leased record is in the store, so its agent was alive lately */
	json_object_object_add(item, "state", json_object_new_string("registered"));
	if (strcmp(name, a->fed->name) != 0)
		fed_links_peer_item(a, name, item);	/* the link's state, when links run */
	return item;
}

COMMAND(cmd_peer_list)
{
	struct agent *a = ctx;
	struct json_object *list = json_object_new_array();

	json_object_object_add(result, "peers", list);
	if (!a->fed)
		return 0;
	json_object_object_foreach(a->fed->mirror, key, e)
	{
		struct json_object *rec;

		(void)e;
		if (strncmp(key, "nodes/", 6) != 0)
			continue;
		rec = fed_mirror_json(a->fed, key);
		json_object_array_add(list, peer_item(a, key + 6, rec));
		json_object_put(rec);
	}
	fed_links_remote_items(a, list);
	return 0;
}

COMMAND(cmd_policy_status)
{
	struct agent *a = ctx;
	struct json_object *list = json_object_new_array(), *store;
	int64_t mine = fed_policy_version(a), top = mine;
	bool converged = true;

	json_object_object_add(result, "version", json_object_new_int64(mine));
	json_object_object_add(result, "agents", list);
	if (!a->fed) {
		json_object_object_add(result, "converged", json_object_new_boolean(true));
		return 0;
	}
	store = fed_mirror_json(a->fed, "policy");
	if (store) {
		top = json_object_get_int64(json_object_object_get(store, "version"));
		json_object_object_add(result, "store_version", json_object_new_int64(top));
		json_object_put(store);
	}
	json_object_object_foreach(a->fed->mirror, key, e)
	{
		struct json_object *rec, *item;
		int64_t v;

		(void)e;
		if (strncmp(key, "nodes/", 6) != 0)
			continue;
		rec = fed_mirror_json(a->fed, key);
		v = rec ? json_object_get_int64(json_object_object_get(rec, "policy_version")) : 0;
		item = json_object_new_object();
		json_object_object_add(item, "node", json_object_new_string(key + 6));
		json_object_object_add(item, "version", json_object_new_int64(v));
		json_object_array_add(list, item);
		converged = converged && v == top;
		json_object_put(rec);
	}
	json_object_object_add(result, "converged", json_object_new_boolean(converged &&
									    mine == top));
	return 0;
}
