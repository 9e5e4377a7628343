// SPDX-License-Identifier: Apache-2.0
/*
 * GET /metrics: the Prometheus exposition of the agent, collected on the
 * main thread at each scrape. Kernel counters are summed over CPUs; map
 * fill levels come from walking each hash-like map's keys (in batches of
 * BATCH where the map type allows), which for full maps of 256k entries
 * costs milliseconds of the main loop per scrape. docs/observability.md
 * lists every metric.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "agent.h"
#include "fed.h"
#include "cleanup.h"
#include "events.h"
#include "io.h"
#include "observe_int.h"
#include "peerauth.h"
#include "pin.h"
#include "reason.h"
#include "state.h"

enum {
	BATCH = 1024,
};

static int pinned(const struct observe *o, const char *name)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/%s", o->ag->dp.pin_dir, name);
	return bpf_obj_get(path);
}

/* Sums a per-CPU value of n u64 fields for one key. */
static int percpu_sum(int fd, __u32 key, size_t n, __u64 *sum)
{
	int ncpu = libbpf_num_possible_cpus();
	_cleanup_free_ __u64 *v = NULL;

	if (ncpu <= 0)
		return ncpu ? ncpu : -EINVAL;
	v = calloc((size_t)ncpu * n, sizeof(*v));
	if (!v)
		return -ENOMEM;
	if (bpf_map_lookup_elem(fd, &key, v))
		return -errno;
	memset(sum, 0, n * sizeof(*sum));
	for (int c = 0; c < ncpu; c++)
		for (size_t i = 0; i < n; i++)
			sum[i] += v[(size_t)c * n + i];
	return 0;
}

static void verdicts(struct metrics_buf *b, int fd)
{
	static const char pk[] = "fedguard_verdicts_total", by[] = "fedguard_verdict_bytes_total";
	struct fg_counter c[FG_REASON_MAX];

	for (__u32 r = 0; r < FG_REASON_MAX; r++) {
		if (percpu_sum(fd, r, 2, &c[r].packets))
			c[r] = (struct fg_counter){};
	}
	metrics_family(b, pk, "counter",
		       "Datapath decisions (packets and socket operations) by verdict and reason.");
	for (__u32 r = 0; r < FG_REASON_MAX; r++)
		metrics_u64(b, pk, c[r].packets, "verdict",
			    r < FG_REASON_DENY_POLICY ? "allow" : "deny", "reason", reason_name(r),
			    NULL);
	metrics_family(b, by, "counter", "Bytes of the packets judged, by verdict and reason.");
	for (__u32 r = 0; r < FG_REASON_MAX; r++)
		metrics_u64(b, by, c[r].bytes, "verdict",
			    r < FG_REASON_DENY_POLICY ? "allow" : "deny", "reason", reason_name(r),
			    NULL);
}

static void counter(struct metrics_buf *b, const char *name, const char *help, __u64 v)
{
	metrics_family(b, name, "counter", help);
	metrics_u64(b, name, v, NULL);
}

static void gauge(struct metrics_buf *b, const char *name, const char *help, __u64 v)
{
	metrics_family(b, name, "gauge", help);
	metrics_u64(b, name, v, NULL);
}

static void events(struct metrics_buf *b, const struct observe *o, int fd)
{
	struct fg_ev_stats s = {};

	if (fd < 0 || percpu_sum(fd, 0, sizeof(s) / sizeof(__u64), &s.emitted))
		s = (struct fg_ev_stats){};
	counter(b, "fedguard_events_emitted_total",
		"Events the datapath put into the fg_events ring buffer.", s.emitted);
	counter(b, "fedguard_events_suppressed_total",
		"Drop and allow events the datapath did not report: over --events-rate.",
		s.suppressed);
	counter(b, "fedguard_events_lost_total",
		"Events the datapath could not report: the fg_events ring buffer was full.",
		s.lost);
	counter(b, "fedguard_events_read_total", "Events the agent read from fg_events.",
		events_read(o->ag->events));
}

static bool map_is_hashed(__u32 type)
{
	return type == BPF_MAP_TYPE_HASH || type == BPF_MAP_TYPE_LRU_HASH ||
	       type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_LRU_PERCPU_HASH ||
	       type == BPF_MAP_TYPE_LPM_TRIE;
}

/* Counts by walking keys one at a time: any map type, one syscall per key. */
static int count_walk(int fd, const struct bpf_map_info *info, __u64 *out)
{
	_cleanup_free_ char *keys = malloc(2 * (size_t)info->key_size);
	void *prev = NULL, *next = keys;
	__u64 n = 0;

	if (!keys)
		return -ENOMEM;
	while (n < info->max_entries && bpf_map_get_next_key(fd, prev, next) == 0) {
		n++;
		prev = next;
		next = next == keys ? keys + info->key_size : keys;
	}
	*out = n;
	return 0;
}

/* Counts by batched lookups (hash and LRU hash maps); -EOPNOTSUPP elsewhere. */
static int count_batch(int fd, const struct bpf_map_info *info, __u64 *out)
{
	_cleanup_free_ char *keys = malloc((size_t)BATCH * info->key_size);
	_cleanup_free_ char *vals = malloc((size_t)BATCH * info->value_size);
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	__u64 token = 0, n = 0;
	void *in = NULL;
	__u32 got;
	int r;

	if (info->type != BPF_MAP_TYPE_HASH && info->type != BPF_MAP_TYPE_LRU_HASH)
		return -EOPNOTSUPP;
	if (!keys || !vals)
		return -ENOMEM;
	do {
		got = BATCH;
		r = bpf_map_lookup_batch(fd, in, &token, keys, vals, &got, &opts);
		if (r < 0 && r != -ENOENT)
			return r;
		n += got;
		in = &token;
	} while (r == 0 && n < info->max_entries);
	*out = n;
	return 0;
}

static int map_cb(const char *dir, const char *name, void *arg)
{
	struct observe_map_fill *fill = arg;
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	_cleanup_close_ int fd = -1;
	char path[PATH_MAX + 256];
	__u64 n = 0;

	if (fill->n == sizeof(fill->v) / sizeof(fill->v[0]))
		return 0;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = bpf_obj_get(path);
	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len) || !map_is_hashed(info.type))
		return 0; /* a program or link pin, or a map without a fill level */
	if (count_batch(fd, &info, &n) && count_walk(fd, &info, &n))
		return 0;
	snprintf(fill->v[fill->n].name, sizeof(fill->v[0].name), "%s", name);
	fill->v[fill->n].entries = n;
	fill->v[fill->n].max = info.max_entries;
	fill->n++;
	return 0;
}

static void maps(struct metrics_buf *b, struct observe *o)
{
	static const char en[] = "fedguard_map_entries", mx[] = "fedguard_map_max_entries";
	struct observe_map_fill *fill = &o->fill;
	__s64 now = io_now_ms();

	if (!fill->at_ms || now - fill->at_ms >= OBSERVE_FILL_MAX_AGE_MS) {
		fill->n = 0;
		pin_for_each(o->ag->dp.pin_dir, map_cb, fill);
		fill->at_ms = now;
	}
	metrics_family(
		b, en, "gauge",
		"Entries in each hash-like map of the instance (fg_policy: the map in force, "
		"its generation entry included), counted at most 5 s ago.");
	for (size_t i = 0; i < fill->n; i++)
		metrics_u64(b, en, fill->v[i].entries, "map", fill->v[i].name, NULL);
	metrics_family(b, mx, "gauge", "Capacity of each hash-like map of the instance.");
	for (size_t i = 0; i < fill->n; i++)
		metrics_u64(b, mx, fill->v[i].max, "map", fill->v[i].name, NULL);
}

static void quarantine(struct metrics_buf *b, const struct observe *o)
{
	__u64 ids = 0, tds = 0;

	json_object_object_foreach (state_section(o->ag->state, "quarantine"), target, rec) {
		const char *kind = json_object_get_string(json_object_object_get(rec, "kind"));

		(void)target;
		if (kind && strcmp(kind, "trust_domain") == 0)
			tds++;
		else
			ids++;
	}
	metrics_family(b, "fedguard_quarantined", "gauge",
		       "Quarantine records in force, by kind (identity or whole trust domain).");
	metrics_u64(b, "fedguard_quarantined", ids, "kind", "identity", NULL);
	metrics_u64(b, "fedguard_quarantined", tds, "kind", "trust_domain", NULL);
}

static void registry(struct metrics_buf *b, struct observe *o)
{
	struct json_object *p = NULL, *v = NULL;
	__u32 gen = 0;

	if (json_object_object_get_ex(o->ag->state, "policy", &p))
		json_object_object_get_ex(p, "version", &v);
	gauge(b, "fedguard_policy_version", "Version of the policy document in force (0: none).",
	      v ? (__u64)json_object_get_int64(v) : 0);
	datapath_policy_generation(&o->ag->dp, &gen);
	gauge(b, "fedguard_policy_generation",
	      "Generation of the fg_policy map in force; each swap adds one.", gen);
	gauge(b, "fedguard_workloads", "Registered local workloads.",
	      (__u64)json_object_object_length(state_section(o->ag->state, "workloads")));
	gauge(b, "fedguard_endpoints", "Registered remote endpoints.",
	      (__u64)json_object_object_length(state_section(o->ag->state, "endpoints")));
	quarantine(b, o);
}

static void flowlog(struct metrics_buf *b, const struct observe *o)
{
	struct flowlog_stats s = {};

	if (o->flowlog)
		flowlog_stats(o->flowlog, &s);
	counter(b, "fedguard_flowlog_records_written_total", "Records written to the flow log.",
		s.records_written);
	counter(b, "fedguard_flowlog_records_dropped_total",
		"Records the flow log dropped: its buffer was full or the write failed.",
		s.records_dropped);
	counter(b, "fedguard_flowlog_written_bytes_total", "Bytes written to the flow log.",
		s.bytes_written);
	counter(b, "fedguard_flowlog_rotations_total", "Rotations of the flow log file.",
		s.rotations);
}

static void records(struct metrics_buf *b, const struct observe *o)
{
	static const char rn[] = "fedguard_flow_records_total", an[] = "fedguard_alerts_total";
	struct alerts_stats as;

	metrics_family(b, rn, "counter", "Flow records the agent made, by event.");
	for (__u8 k = 1; k < FLOW_KIND_MAX; k++)
		metrics_u64(b, rn, o->records[k], "event", flow_kind_name(k), NULL);
	gauge(b, "fedguard_observe_followers", "Clients following flows or alerts.",
	      observe_followers(o));
	counter(b, "fedguard_observe_follower_lost_total",
		"Records not sent to a follower that was too slow to read them.", o->follower_lost);
	alerts_stats(o->alerts, &as);
	metrics_family(b, an, "counter", "Alerts raised, by kind.");
	for (__u8 k = 1; k < ALERT_KIND_MAX; k++)
		metrics_u64(b, an, as.raised[k], "kind", alert_kind_name(k), NULL);
	counter(b, "fedguard_alerts_untracked_total",
		"Drops the alert detector could not count: every tracking slot was in use.",
		as.untracked);
}

static const char *const role_names[OBSERVE_ROLES] = {"unknown", "asker", "answerer"};

static void handshakes(struct metrics_buf *b, const struct observe *o)
{
	static const char hn[] = "fedguard_auth_handshakes_total";

	metrics_family(b, hn, "counter",
		       "mTLS peer authentications by this node's role and result.");
	for (int r = 1; r < OBSERVE_ROLES; r++) {
		metrics_u64(b, hn, o->auth.outcomes[r][1], "role", role_names[r], "result", "ok",
			    NULL);
		metrics_u64(b, hn, o->auth.outcomes[r][0], "role", role_names[r], "result",
			    "failed", NULL);
	}
}

static void handshake_latency(struct metrics_buf *b, const struct observe *o)
{
	static const double bounds[OBSERVE_AUTH_BUCKETS] = OBSERVE_AUTH_BUCKETS_S;
	static const char h[] = "fedguard_auth_handshake_duration_seconds";
	char le[32];

	metrics_family(b, h, "histogram",
		       "Time of successful mTLS peer authentications, from queueing (asker) or "
		       "accept (answerer) to the end.");
	for (int r = 1; r < OBSERVE_ROLES; r++) {
		__u64 sum = 0;

		for (int i = 0; i < OBSERVE_AUTH_BUCKETS; i++) {
			sum += o->auth.buckets[r][i];
			snprintf(le, sizeof(le), "%g", bounds[i]);
			metrics_u64(b, "fedguard_auth_handshake_duration_seconds_bucket", sum,
				    "role", role_names[r], "le", le, NULL);
		}
		metrics_u64(b, "fedguard_auth_handshake_duration_seconds_bucket",
			    o->auth.outcomes[r][1], "role", role_names[r], "le", "+Inf", NULL);
		metrics_f64(b, "fedguard_auth_handshake_duration_seconds_sum", o->auth.sum_s[r],
			    "role", role_names[r], NULL);
		metrics_u64(b, "fedguard_auth_handshake_duration_seconds_count",
			    o->auth.outcomes[r][1], "role", role_names[r], NULL);
	}
}

/* The SVIDs and bundles of peer authentication: only with --trust-domain. */
static void identity(struct metrics_buf *b, const struct observe *o)
{
	static const char *const fams[][3] = {
		{"fedguard_bundle_sequence", "spiffe_sequence of each trust bundle held.",
		 "sequence"},
		{"fedguard_bundle_authorities", "X.509 authorities of each trust bundle held.",
		 "authorities"},
		{"fedguard_bundle_revoked", "1 when a trust bundle is revoked (no keys).",
		 "revoked"},
	};
	struct json_object *res = json_object_new_object(), *list;
	time_t earliest = 0;
	size_t n = 0;

	if (peerauth_svids_expiry(o->ag, &n, &earliest) == 0) {
		gauge(b, "fedguard_svids",
		      "X.509-SVIDs the node holds (its own and its workloads').", n);
		metrics_family(b, "fedguard_svid_expiry_seconds", "gauge",
			       "Seconds until the earliest notAfter of the SVIDs held (negative: "
			       "expired).");
		metrics_f64(b, "fedguard_svid_expiry_seconds",
			    n ? (double)(earliest - time(NULL)) : 0, NULL);
	}
	peerauth_bundle_list(o->ag, res);
	list = json_object_object_get(res, "bundles");
	for (size_t f = 0; f < 3 && json_object_array_length(list); f++) {
		metrics_family(b, fams[f][0], "gauge", fams[f][1]);
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			struct json_object *e = json_object_array_get_idx(list, i);
			struct json_object *v = json_object_object_get(e, fams[f][2]);

			metrics_u64(
				b, fams[f][0], (__u64)json_object_get_int64(v), "trust_domain",
				json_object_get_string(json_object_object_get(e, "trust_domain")),
				NULL);
		}
	}
	json_object_put(res);
}

int observe_metrics(void *ctx, struct metrics_buf *b)
{
	struct observe *o = ctx;
	_cleanup_close_ int counters = pinned(o, "fg_counters");
	_cleanup_close_ int ev_stats = pinned(o, "fg_ev_stats");

	if (counters < 0)
		return -errno;
	metrics_family(b, "fedguard_agent_info", "gauge", "The agent's instance; always 1.");
	metrics_u64(b, "fedguard_agent_info", 1, "instance", o->instance, NULL);
	verdicts(b, counters);
	events(b, o, ev_stats);
	maps(b, o);
	registry(b, o);
	flowlog(b, o);
	records(b, o);
	handshakes(b, o);
	handshake_latency(b, o);
	identity(b, o);
	fed_metrics(o->ag, b);
	peerauth_tunnel_metrics(o->ag, b);
	return b->err;
}
