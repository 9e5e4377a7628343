// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "datapath.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <fedguard/abi.h>

#include "addr.h"
#include "cleanup.h"
#include "fedguard.skel.h"
#include "loader.h"
#include "log.h"
#include "pin.h"
#include "policy_map.h"
#include "spiffe.h"
#include "state.h"

/* --- opening ------------------------------------------------------------- */

static int open_map(struct datapath *dp, const char *name, int *fd)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", dp->pin_dir, name);
	*fd = bpf_obj_get(path);
	if (*fd < 0)
		return log_error_errno(-errno, "map '%s'", path);
	return 0;
}

int datapath_open(struct datapath *dp, const struct loader *l, const __u8 node[16],
		  __u32 policy_max_entries)
{
	int r;

	*dp = (struct datapath){ .cgroups_fd = -1, .ipcache_fd = -1, .quarantine_fd = -1,
				 .slot_fd = -1, .iter_prog_fd = -1, .iter_link_fd = -1,
				 .cut_prog_fd = -1, .cut_link_fd = -1 };
	snprintf(dp->pin_dir, sizeof(dp->pin_dir), "%s", l->pin_dir);
	memcpy(dp->node, node, 16);
	dp->policy_max_entries = policy_max_entries;
	dp->iter_prog_fd = bpf_program__fd(l->skel->progs.fg_iter_tcp);
	dp->cut_prog_fd = bpf_program__fd(l->skel->progs.fg_iter_auth);
	dp->cut_td = &l->skel->bss->fg_cut_td;
	r = open_map(dp, "fg_cgroups", &dp->cgroups_fd);
	if (!r)
		r = open_map(dp, "fg_ipcache", &dp->ipcache_fd);
	if (!r)
		r = open_map(dp, "fg_quarantine", &dp->quarantine_fd);
	if (!r)
		r = open_map(dp, "fg_policy_slot", &dp->slot_fd);
	if (r)
		datapath_close(dp);
	return r;
}

static void kv_drop(struct kv_set **s);

void datapath_close(struct datapath *dp)
{
	int *fds[] = { &dp->cgroups_fd, &dp->ipcache_fd, &dp->quarantine_fd, &dp->slot_fd };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
	if (dp->iter_link_fd >= 0)
		close(dp->iter_link_fd);
	dp->iter_link_fd = -1;
	if (dp->cut_link_fd >= 0)
		close(dp->cut_link_fd);
	dp->cut_link_fd = -1;
	kv_drop(&dp->synced_quarantine);
	kv_drop(&dp->synced_cgroups);
	kv_drop(&dp->synced_ipcache);
}

/* --- a map brought to a wanted content ---------------------------------- */

/* Keys and values; kv_canonical() sorts them by key, one entry per key. */
struct kv_set {
	__u8 *keys;
	__u8 *values;
	size_t n, cap, ksz, vsz;
};

static int kv_add(struct kv_set *s, const void *k, const void *v)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		__u8 *keys = realloc(s->keys, cap * s->ksz);

		if (!keys)
			return -ENOMEM;
		s->keys = keys;
		__u8 *values = realloc(s->values, cap * s->vsz);

		if (!values)
			return -ENOMEM;
		s->values = values;
		s->cap = cap;
	}
	memcpy(s->keys + s->n * s->ksz, k, s->ksz);
	memcpy(s->values + s->n * s->vsz, v, s->vsz);
	s->n++;
	return 0;
}

static void kv_free(struct kv_set *s)
{
	free(s->keys);
	free(s->values);
}

/* Frees a set made by map_sync() and forgets it. */
static void kv_drop(struct kv_set **s)
{
	if (*s)
		kv_free(*s);
	free(*s);
	*s = NULL;
}

static bool kv_has(const __u8 *sorted, size_t n, size_t ksz, const void *k)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(sorted + mid * ksz, k, ksz);

		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* Orders entries by key, then by when they were added. */
struct kv_order {
	const struct kv_set *s;
};

static int kv_index_cmp(const void *a, const void *b, void *arg)
{
	const struct kv_set *s = ((struct kv_order *)arg)->s;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int c = memcmp(s->keys + i * s->ksz, s->keys + j * s->ksz, s->ksz);

	return c ? c : (i > j) - (i < j);
}

/*
 * @s sorted by key with one entry per key, the value added last: what
 * updating the map with @s in order leaves in it.
 */
static int kv_canonical(const struct kv_set *s, struct kv_set *out)
{
	struct kv_order o = { .s = s };
	_cleanup_free_ size_t *idx = malloc((s->n ? s->n : 1) * sizeof(*idx));
	int r = 0;

	*out = (struct kv_set){ .ksz = s->ksz, .vsz = s->vsz };
	if (!idx)
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++)
		idx[i] = i;
	qsort_r(idx, s->n, sizeof(*idx), kv_index_cmp, &o);
	for (size_t i = 0; r == 0 && i < s->n; i++) {
		bool last_of_key = i + 1 == s->n ||
				   memcmp(s->keys + idx[i] * s->ksz,
					  s->keys + idx[i + 1] * s->ksz, s->ksz) != 0;

		if (last_of_key)
			r = kv_add(out, s->keys + idx[i] * s->ksz, s->values + idx[i] * s->vsz);
	}
	if (r)
		kv_free(out);
	return r;
}

/* Updates every wanted entry, then deletes what the map holds beyond them. */
static int map_sync_full(int fd, const char *name, const struct kv_set *want)
{
	__u8 key[64], next[64], *prev = NULL;
	struct kv_set stale = { .ksz = want->ksz, .vsz = 1 };
	int r = 0;

	for (size_t i = 0; i < want->n; i++) {
		if (bpf_map_update_elem(fd, want->keys + i * want->ksz,
					want->values + i * want->vsz, BPF_ANY))
			return log_error_errno(-errno, "map '%s': update", name);
	}
	while (r == 0 && bpf_map_get_next_key(fd, prev, next) == 0) {
		if (!kv_has(want->keys, want->n, want->ksz, next))
			r = kv_add(&stale, next, "");
		memcpy(key, next, want->ksz);
		prev = key;
	}
	for (size_t i = 0; r == 0 && i < stale.n; i++)
		if (bpf_map_delete_elem(fd, stale.keys + i * stale.ksz) && errno != ENOENT)
			r = log_error_errno(-errno, "map '%s': delete", name);
	kv_free(&stale);
	return r;
}

/*
 * From @had, what the map was last brought to, to @want (both canonical):
 * the entries new or changed are updated, then the ones gone are deleted.
 */
static int map_sync_diff(int fd, const char *name, const struct kv_set *had,
			 const struct kv_set *want)
{
	size_t i = 0, ksz = want->ksz, vsz = want->vsz;

	for (size_t j = 0; j < want->n; j++) {
		const __u8 *k = want->keys + j * ksz, *v = want->values + j * vsz;

		while (i < had->n && memcmp(had->keys + i * ksz, k, ksz) < 0)
			i++;
		if (i < had->n && memcmp(had->keys + i * ksz, k, ksz) == 0 &&
		    memcmp(had->values + i * vsz, v, vsz) == 0)
			continue;
		if (bpf_map_update_elem(fd, k, v, BPF_ANY))
			return log_error_errno(-errno, "map '%s': update", name);
	}
	for (i = 0; i < had->n; i++) {
		const __u8 *k = had->keys + i * ksz;

		if (kv_has(want->keys, want->n, ksz, k))
			continue;
		if (bpf_map_delete_elem(fd, k) && errno != ENOENT)
			return log_error_errno(-errno, "map '%s': delete", name);
	}
	return 0;
}

/*
 * Brings a map to @want. The first time, and after any failure, every entry
 * is written and whatever else the map holds is deleted (the maps adopted
 * from a previous agent, or left half-synced); after that only what
 * changed since the last sync, which is what the agent alone wrote: a
 * registration among 10,000 endpoints writes one fg_ipcache entry, not
 * 10,000. @synced holds that last content, or NULL.
 */
static int map_sync(int fd, const char *name, const struct kv_set *want, struct kv_set **synced)
{
	struct kv_set *canon = malloc(sizeof(*canon));
	int r;

	if (!canon)
		return -ENOMEM;
	r = kv_canonical(want, canon);
	if (r) {
		free(canon);
		return r;
	}
	r = *synced ? map_sync_diff(fd, name, *synced, canon) : map_sync_full(fd, name, canon);
	kv_drop(synced);
	if (r) {
		kv_drop(&canon);
		return r;
	}
	*synced = canon;
	return 0;
}

/* --- what the state wants ----------------------------------------------- */

__u32 datapath_td_number(struct json_object *state, const char *spiffe_id)
{
	struct spiffe_id sid;
	char td[256];
	__u32 id = 0;

	if (spiffe_parse(spiffe_id, &sid, NULL, 0) || sid.td_len >= sizeof(td))
		return 0;
	memcpy(td, sid.td, sid.td_len);
	td[sid.td_len] = 0;
	/* every registered ID's trust domain was numbered when it was added */
	state_trust_domain(state, td, &id);
	return id;
}

static const char *member_string(struct json_object *o, const char *name)
{
	struct json_object *v;

	return json_object_object_get_ex(o, name, &v) ? json_object_get_string(v) : NULL;
}

static struct json_object *member_array(struct json_object *o, const char *name)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_array))
		return NULL;
	return v;
}

static int want_cgroups(struct json_object *state, struct kv_set *want)
{
	json_object_object_foreach(state_section(state, "workloads"), id, w)
	{
		struct fg_cgroup_info info = {
			.identity = state_identity_find(state, id),
			.td = datapath_td_number(state, id),
		};
		struct json_object *v;
		__u64 cgid;
		int r;

		if (!json_object_object_get_ex(w, "cgroup_id", &v))
			continue;
		cgid = (__u64)json_object_get_int64(v);
		r = kv_add(want, &cgid, &info);
		if (r)
			return r;
	}
	return 0;
}

/* The ipcache entries of one registration's addresses. */
static int want_addresses(struct json_object *state, const char *id, struct json_object *reg,
			  const __u8 node[16], __u32 flags, struct kv_set *want)
{
	struct json_object *ips = member_array(reg, "ips");
	struct fg_ipcache_value v = {
		.identity = state_identity_find(state, id),
		.td = datapath_td_number(state, id),
		.flags = flags,
	};

	memcpy(v.node, node, 16);
	for (size_t i = 0; ips && i < json_object_array_length(ips); i++) {
		struct fg_ipcache_key k;
		const char *text = json_object_get_string(json_object_array_get_idx(ips, i));
		int r = addr_parse_prefix(text, &k);

		if (!r)
			r = kv_add(want, &k, &v);
		if (r)
			return r;
	}
	return 0;
}

static int want_ipcache(struct json_object *state, const __u8 self[16], struct kv_set *want)
{
	int r;

	json_object_object_foreach(state_section(state, "workloads"), wid, w)
	{
		r = want_addresses(state, wid, w, self, FG_IPC_LOCAL, want);
		if (r)
			return r;
	}
	json_object_object_foreach(state_section(state, "endpoints"), eid, e)
	{
		__u8 node[16] = {};
		const char *n = member_string(e, "node");

		if (n && addr_parse_node(n, node))
			return -EINVAL;
		r = want_addresses(state, eid, e, node, 0, want);
		if (r)
			return r;
	}
	return 0;
}

static int want_quarantine(struct json_object *state, struct kv_set *want)
{
	json_object_object_foreach(state_section(state, "quarantine"), target, q)
	{
		const char *kind = member_string(q, "kind");
		struct json_object *since;
		struct fg_quarantine_key k = {};
		struct fg_quarantine_value v = {};
		int r;

		if (kind && strcmp(kind, "trust_domain") == 0) {
			k.kind = FG_Q_TRUST_DOMAIN;
			k.id = datapath_td_number(state, target);
		} else {
			k.kind = FG_Q_IDENTITY;
			k.id = state_identity_find(state, target);
		}
		if (json_object_object_get_ex(q, "since", &since))
			v.since_ns = (__u64)json_object_get_int64(since) * 1000000000ull;
		r = kv_add(want, &k, &v);
		if (r)
			return r;
	}
	return 0;
}

/* --- policy -------------------------------------------------------------- */

static int view_add(struct datapath_view *v, const char *id, struct json_object *reg,
		    struct json_object *state, bool local, size_t *nlabels)
{
	struct json_object *labels;
	struct policy_identity *pi = &v->ids[v->n];

	*pi = (struct policy_identity){
		.spiffe_id = id,
		.id = state_identity_find(state, id),
		.local = local,
		.labels = v->labels + *nlabels,
	};
	if (json_object_object_get_ex(reg, "labels", &labels)) {
		json_object_object_foreach(labels, key, val)
		{
			v->labels[(*nlabels)++] =
				(struct policy_label){ key, json_object_get_string(val) };
			pi->n_labels++;
		}
	}
	v->n++;
	return 0;
}

static size_t count_labels(struct json_object *section)
{
	struct json_object *labels;
	size_t n = 0;

	json_object_object_foreach(section, id, reg)
	{
		(void)id;
		if (json_object_object_get_ex(reg, "labels", &labels))
			n += (size_t)json_object_object_length(labels);
	}
	return n;
}

int datapath_view(struct json_object *state, struct datapath_view *v)
{
	struct json_object *wl = state_section(state, "workloads");
	struct json_object *ep = state_section(state, "endpoints");
	size_t n = (size_t)json_object_object_length(wl) + (size_t)json_object_object_length(ep);
	size_t nlabels = 0;

	*v = (struct datapath_view){};
	v->ids = calloc(n + 1, sizeof(*v->ids));
	v->labels = calloc(count_labels(wl) + count_labels(ep) + 1, sizeof(*v->labels));
	if (!v->ids || !v->labels) {
		datapath_view_free(v);
		return -ENOMEM;
	}
	json_object_object_foreach(wl, wid, w) view_add(v, wid, w, state, true, &nlabels);
	json_object_object_foreach(ep, eid, e) view_add(v, eid, e, state, false, &nlabels);
	return 0;
}

void datapath_view_free(struct datapath_view *v)
{
	free(v->ids);
	free(v->labels);
	*v = (struct datapath_view){};
}

static int empty_entries(struct policy_entries **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

int datapath_compile(struct json_object *state, struct policy_entries **out, char *why,
		     size_t why_len)
{
	_cleanup_policy_doc_ struct policy_doc *doc = NULL;
	struct json_object *policy;
	struct datapath_view v;
	struct policy_error err;
	const char *text, *source;
	int r;

	if (!json_object_object_get_ex(state, "policy", &policy))
		return empty_entries(out);
	text = member_string(policy, "document");
	source = member_string(policy, "source");
	if (!text)
		return empty_entries(out);
	r = policy_parse_buffer(source ? source : "policy", text, strlen(text), &doc, &err);
	if (r) {
		snprintf(why, why_len, "%s", err.msg);
		return r;
	}
	r = datapath_view(state, &v);
	if (r)
		return r;
	r = policy_compile(doc, v.ids, v.n, NULL, out, &err);
	if (r == -EINVAL)
		snprintf(why, why_len, "%s", err.msg);
	datapath_view_free(&v);
	if (!r)
		policy_entries_sort(*out);
	return r;
}

int datapath_policy_read(struct datapath *dp, struct policy_entries **out, __u32 *generation)
{
	_cleanup_close_ int fd = policy_map_active(dp->slot_fd);
	struct policy_entries *set;
	int r;

	if (fd < 0)
		return fd;
	r = policy_map_generation(fd, generation);
	if (r)
		return r;
	r = empty_entries(&set);
	if (r)
		return r;
	r = policy_map_dump(fd, &set->entries, &set->n);
	if (r) {
		policy_entries_free(set);
		return r;
	}
	policy_entries_sort(set);
	*out = set;
	return 0;
}

int datapath_policy_generation(struct datapath *dp, __u32 *generation)
{
	_cleanup_close_ int fd = policy_map_active(dp->slot_fd);

	if (fd < 0)
		return fd;
	return policy_map_generation(fd, generation);
}

static bool entries_equal(const struct policy_entries *a, const struct policy_entries *b)
{
	return a->n == b->n &&
	       (a->n == 0 || memcmp(a->entries, b->entries, a->n * sizeof(*a->entries)) == 0);
}

/* Swaps in a map holding @set unless the map in force holds exactly that. */
static int policy_sync(struct datapath *dp, const struct policy_entries *set)
{
	_cleanup_policy_entries_ struct policy_entries *active = NULL;
	struct policy_map_spec spec;
	_cleanup_close_ int cur = -1, fd = -1;
	__u32 gen;
	int r;

	if (datapath_policy_read(dp, &active, &gen) == 0 && entries_equal(active, set))
		return 0;
	cur = policy_map_active(dp->slot_fd);
	if (cur < 0)
		return log_error_errno(cur, "map 'fg_policy_slot': no policy map installed");
	r = policy_spec_from_map(cur, &spec);
	if (r)
		return log_error_errno(r, "map 'fg_policy': reading its BTF");
	spec.max_entries = dp->policy_max_entries;
	fd = policy_map_create(&spec);
	policy_spec_release(&spec);
	if (fd < 0)
		return log_error_errno(fd, "map 'fg_policy': create");
	r = policy_map_fill(fd, set->entries, set->n);
	if (r)
		return r;
	r = policy_map_swap(dp->slot_fd, fd, policy_map_shape(set->entries, set->n), dp->pin_dir,
			    &gen);
	if (r)
		return log_error_errno(r, "map 'fg_policy_slot': swap");
	log_info("policy: %zu entries in force, generation %u", set->n, gen);
	return 0;
}

/* --- applying ------------------------------------------------------------- */

static int sync_one(int fd, struct kv_set **synced, const char *name, size_t ksz, size_t vsz,
		    int (*fill)(struct json_object *, const __u8 *, struct kv_set *),
		    struct json_object *state, const __u8 *node, char *why, size_t why_len)
{
	struct kv_set want = { .ksz = ksz, .vsz = vsz };
	int r = fill(state, node, &want);

	if (!r)
		r = map_sync(fd, name, &want, synced);
	kv_free(&want);
	if (r)
		snprintf(why, why_len, "map '%s': %s", name, strerror(-r));
	return r;
}

static int fill_cgroups(struct json_object *state, const __u8 *node, struct kv_set *want)
{
	(void)node;
	return want_cgroups(state, want);
}

static int fill_ipcache(struct json_object *state, const __u8 *node, struct kv_set *want)
{
	return want_ipcache(state, node, want);
}

static int fill_quarantine(struct json_object *state, const __u8 *node, struct kv_set *want)
{
	(void)node;
	return want_quarantine(state, want);
}

int datapath_apply(struct datapath *dp, struct json_object *state, char *why, size_t why_len)
{
	_cleanup_policy_entries_ struct policy_entries *set = NULL;
	int r;

	/* compile first: an invalid policy must not leave half-updated maps */
	r = datapath_compile(state, &set, why, why_len);
	if (r)
		return r;
	r = sync_one(dp->quarantine_fd, &dp->synced_quarantine, "fg_quarantine",
		     sizeof(struct fg_quarantine_key), sizeof(struct fg_quarantine_value),
		     fill_quarantine, state, dp->node, why, why_len);
	if (!r)
		r = sync_one(dp->cgroups_fd, &dp->synced_cgroups, "fg_cgroups", sizeof(__u64),
			     sizeof(struct fg_cgroup_info), fill_cgroups, state, dp->node, why,
			     why_len);
	if (!r)
		r = sync_one(dp->ipcache_fd, &dp->synced_ipcache, "fg_ipcache",
			     sizeof(struct fg_ipcache_key), sizeof(struct fg_ipcache_value),
			     fill_ipcache, state, dp->node, why, why_len);
	if (!r) {
		r = policy_sync(dp, set);
		if (r)
			snprintf(why, why_len, "policy swap: %s", strerror(-r));
	}
	return r;
}

/* --- tear-down of quarantined sockets ------------------------------------- */

enum {
	DESTROY_MAX_NETNS = 256,	/* namespaces swept in one quarantine */
};

/* One namespace to sweep, on a thread of its own (a thread's netns is its own). */
struct sweep {
	pthread_t thread;
	bool started;
	int ns_fd;			/* -1: the agent's own namespace */
	int link_fd;
	unsigned int destroyed;
	int err;
};

/* Runs fg_iter_tcp in the calling thread's namespace; counts destroyed sockets. */
static int iter_run(int link_fd, unsigned int *destroyed)
{
	_cleanup_close_ int fd = bpf_iter_create(link_fd);
	__u64 cookies[64];
	ssize_t n;

	if (fd < 0)
		return -errno;
	while ((n = read(fd, cookies, sizeof(cookies))) > 0)
		*destroyed += (unsigned int)(n / sizeof(__u64));
	return n < 0 ? -errno : 0;
}

static void *sweep_run(void *arg)
{
	struct sweep *sw = arg;

	if (sw->ns_fd >= 0 && setns(sw->ns_fd, CLONE_NEWNET))
		sw->err = -errno;
	else
		sw->err = iter_run(sw->link_fd, &sw->destroyed);
	return NULL;
}

/* True when the namespace behind @fd is one of the @n in @seen; else records it. */
static bool netns_seen(int fd, ino_t *seen, size_t *n, size_t max)
{
	struct stat st;

	if (fstat(fd, &st))
		return true;
	for (size_t i = 0; i < *n; i++)
		if (seen[i] == st.st_ino)
			return true;
	if (*n < max)
		seen[(*n)++] = st.st_ino;
	return false;
}

/*
 * The namespaces to sweep: the agent's own when a workload has no --netns
 * (it lives there), and each distinct workload namespace.
 */
static size_t sweeps_plan(struct json_object *state, int link_fd, struct sweep *sw, size_t max)
{
	ino_t seen[DESTROY_MAX_NETNS];
	size_t n = 0, n_seen = 0;
	bool own = false;

	json_object_object_foreach(state_section(state, "workloads"), id, w)
	{
		const char *path = member_string(w, "netns");
		int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;

		if (fd < 0) {
			if (path)
				log_warn("workload '%s': netns '%s': %m", id, path);
			own = true;
			continue;
		}
		if (n == max || netns_seen(fd, seen, &n_seen, DESTROY_MAX_NETNS)) {
			close(fd);
			continue;
		}
		sw[n++] = (struct sweep){ .ns_fd = fd, .link_fd = link_fd };
	}
	if (own && n < max)
		sw[n++] = (struct sweep){ .ns_fd = -1, .link_fd = link_fd };
	return n;
}

/* Runs the iterator program @prog_fd (its link made once, in *link_fd) in every namespace. */
static int sweep_all(struct json_object *state, int prog_fd, int *link_fd, const char *name,
		     unsigned int *destroyed)
{
	struct sweep sw[DESTROY_MAX_NETNS];
	size_t n;
	int r = 0;

	*destroyed = 0;
	if (*link_fd < 0) {
		*link_fd = bpf_link_create(prog_fd, 0, BPF_TRACE_ITER, NULL);
		if (*link_fd < 0)
			return log_error_errno(-errno, "program '%s': attach", name);
	}
	/* each sweep walks the kernel's TCP hash tables (milliseconds): in parallel */
	n = sweeps_plan(state, *link_fd, sw, DESTROY_MAX_NETNS);
	for (size_t i = 0; i < n; i++) {
		int e = pthread_create(&sw[i].thread, NULL, sweep_run, &sw[i]);

		/* never on the main thread: it must stay in the agent's namespace */
		sw[i].started = e == 0;
		sw[i].err = -e;
	}
	for (size_t i = 0; i < n; i++) {
		if (sw[i].started)
			pthread_join(sw[i].thread, NULL);
		if (sw[i].ns_fd >= 0)
			close(sw[i].ns_fd);
		*destroyed += sw[i].destroyed;
		if (sw[i].err && !r)
			r = sw[i].err;
	}
	return r;
}

int datapath_destroy_sockets(struct datapath *dp, struct json_object *state,
			     unsigned int *destroyed)
{
	return sweep_all(state, dp->iter_prog_fd, &dp->iter_link_fd, "fg_iter_tcp", destroyed);
}

int datapath_cut_trust_domain(struct datapath *dp, struct json_object *state, __u32 td,
			      unsigned int *destroyed)
{
	int r;

	*dp->cut_td = td;
	r = sweep_all(state, dp->cut_prog_fd, &dp->cut_link_fd, "fg_iter_auth", destroyed);
	*dp->cut_td = 0;
	return r;
}
