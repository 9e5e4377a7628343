// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "flow.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/sha.h>

#include "reason.h"

struct flow_name *flow_name_new(const char *s)
{
	size_t len = strlen(s);
	struct flow_name *n = malloc(sizeof(*n) + len + 1);

	if (!n)
		return NULL;
	n->refs = 1;
	memcpy(n->s, s, len + 1);
	return n;
}

struct flow_name *flow_name_get(struct flow_name *n)
{
	if (n)
		n->refs++;
	return n;
}

void flow_name_put(struct flow_name *n)
{
	if (n && --n->refs == 0)
		free(n);
}

static bool reason_is_quarantine(__u32 reason)
{
	return reason == FG_REASON_DENY_QUARANTINE_LOCAL ||
	       reason == FG_REASON_DENY_QUARANTINE_PEER || reason == FG_REASON_DENY_QUARANTINE_TD;
}

/* The kind and verdict of a datapath event; -EINVAL for an unknown type. */
static int classify(const struct fg_event *e, __u8 *kind, __u8 *verdict)
{
	switch (e->type) {
	case FG_EV_DROP:
		*kind = reason_is_quarantine(e->reason) ? FLOW_QUARANTINE_HIT : FLOW_DROP;
		*verdict = FLOW_V_DENY;
		return 0;
	case FG_EV_ALLOW:
		*kind = FLOW_ALLOW;
		*verdict = FLOW_V_ALLOW;
		return 0;
	case FG_EV_AUTH_NEEDED:
		*kind = FLOW_AUTH_NEEDED;
		*verdict = FLOW_V_PENDING;
		return 0;
	default:
		return -EINVAL;
	}
}

int flow_from_event(const struct fg_event *e, __s64 real_offset_ns, struct flow_record *out)
{
	struct flow_record r = {};
	int err;

	err = classify(e, &r.kind, &r.verdict);
	if (err)
		return err;
	r.time_ms = ((__s64)e->ts_ns + real_offset_ns) / 1000000;
	r.cookie = e->cookie;
	r.cgroup_id = e->cgroup_id;
	r.local_id = e->local_id;
	r.peer_id = e->peer_id;
	r.rule_id = e->rule_id;
	r.reason = e->reason < FG_REASON_MAX ? e->reason : FLOW_NO_REASON;
	r.sport = ntohs(e->sport);
	r.dport = ntohs(e->dport);
	r.hook = e->hook;
	r.dir = e->dir;
	r.proto = e->proto;
	r.family = e->family;
	memcpy(r.saddr, e->saddr, 16);
	memcpy(r.daddr, e->daddr, 16);
	memcpy(r.peer_node, e->peer_node, 16);
	*out = r;
	return 0;
}

void flow_record_release(struct flow_record *r)
{
	flow_name_put(r->local_name);
	flow_name_put(r->peer_name);
	flow_name_put(r->rule_name);
	flow_name_put(r->why);
	memset(r, 0, sizeof(*r));
}

void flow_record_copy(struct flow_record *dst, const struct flow_record *src)
{
	*dst = *src;
	flow_name_get(dst->local_name);
	flow_name_get(dst->peer_name);
	flow_name_get(dst->rule_name);
	flow_name_get(dst->why);
}

/* One endpoint as the flow ID hashes it: 16-byte address (IPv4 mapped), port. */
static void endpoint_bytes(__u8 family, const __u8 addr[16], __u16 port, __u8 out[18])
{
	memset(out, 0, 18);
	if (family == FG_AF_INET) {
		out[10] = 0xff;
		out[11] = 0xff;
		memcpy(out + 12, addr, 4);
	} else {
		memcpy(out, addr, 16);
	}
	out[16] = (__u8)(port >> 8);
	out[17] = (__u8)port;
}

static void put_be64(__u8 *p, __u64 v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (__u8)(v >> (56 - 8 * i));
}

__u64 flow_id(const struct flow_record *r)
{
	static const char tag[] = "fgflow1";
	static const __u8 zero[16];
	enum { TAG = sizeof(tag) - 1, EP = 18, FIXED = TAG + 1 + 2 * EP + 8 };
	__u8 in[FIXED + 8], a[EP], b[EP], digest[SHA256_DIGEST_LENGTH];
	bool no_source = !r->sport && memcmp(r->saddr, zero, sizeof(zero)) == 0;
	__u64 id = 0;
	bool swap;

	endpoint_bytes(r->family, r->saddr, r->sport, a);
	endpoint_bytes(r->family, r->daddr, r->dport, b);
	swap = memcmp(a, b, EP) > 0;
	memcpy(in, tag, TAG);
	in[TAG] = r->proto;
	memcpy(in + TAG + 1, swap ? b : a, EP);
	memcpy(in + TAG + 1 + EP, swap ? a : b, EP);
	put_be64(in + TAG + 1 + 2 * EP, (__u64)(r->time_ms / 1000 / FLOW_ID_BUCKET_S));
	put_be64(in + FIXED, r->cookie);
	SHA256(in, no_source ? FIXED + 8 : FIXED, digest);
	for (int i = 0; i < 8; i++)
		id = id << 8 | digest[i];
	return id;
}

const char *flow_kind_name(__u8 kind)
{
	static const char *const names[FLOW_KIND_MAX] = {
		[FLOW_DROP] = "drop",	    [FLOW_QUARANTINE_HIT] = "quarantine_hit",
		[FLOW_ALLOW] = "allow",	    [FLOW_AUTH_NEEDED] = "auth_needed",
		[FLOW_AUTH_OK] = "auth_ok", [FLOW_AUTH_FAILED] = "auth_failed",
		[FLOW_TUNNEL] = "tunnel",
	};

	return kind < FLOW_KIND_MAX && names[kind] ? names[kind] : "unknown";
}

static const char *const verdict_names[FLOW_V_MAX] = {
	[FLOW_V_ALLOW] = "allow",
	[FLOW_V_DENY] = "deny",
	[FLOW_V_PENDING] = "pending",
};

const char *flow_verdict_name(__u8 verdict)
{
	return verdict < FLOW_V_MAX && verdict_names[verdict] ? verdict_names[verdict] : "unknown";
}

int flow_verdict_from_name(const char *name)
{
	for (int v = 1; v < FLOW_V_MAX; v++) {
		if (strcmp(verdict_names[v], name) == 0)
			return v;
	}
	return -EINVAL;
}

const char *flow_hook_name(__u8 hook)
{
	static const char *const names[] = {
		[0] = "agent",
		[FG_HOOK_CONNECT] = "connect",
		[FG_HOOK_SENDMSG] = "sendmsg",
		[FG_HOOK_SOCKOPS] = "sockops",
		[FG_HOOK_SKB_EGRESS] = "skb_egress",
		[FG_HOOK_SKB_INGRESS] = "skb_ingress",
		[FG_HOOK_TC_EGRESS] = "tc_egress",
		[FG_HOOK_TC_INGRESS] = "tc_ingress",
	};

	return hook < sizeof(names) / sizeof(names[0]) ? names[hook] : "unknown";
}

const char *flow_dir_name(__u8 dir)
{
	if (dir == FG_DIR_EGRESS)
		return "egress";
	if (dir == FG_DIR_INGRESS)
		return "ingress";
	return "unknown";
}

const char *flow_proto_name(__u8 proto, char *buf, size_t len)
{
	switch (proto) {
	case IPPROTO_TCP:
		return "tcp";
	case IPPROTO_UDP:
		return "udp";
	case IPPROTO_ICMP:
		return "icmp";
	case IPPROTO_ICMPV6:
		return "icmpv6";
	default:
		snprintf(buf, len, "%u", proto);
		return buf;
	}
}

int flow_time_format(__s64 time_ms, char *buf, size_t len)
{
	time_t sec = (time_t)(time_ms >= 0 ? time_ms / 1000 : (time_ms - 999) / 1000);
	int ms = (int)(time_ms - (__s64)sec * 1000);
	struct tm tm;
	char base[32];

	if (!gmtime_r(&sec, &tm) || !strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm))
		return -EINVAL;
	if (snprintf(buf, len, "%s.%03dZ", base, ms) >= (int)len)
		return -ENOSPC;
	return 0;
}

/* Reads exactly n digits at *s into *out; advances *s. */
static bool digits(const char **s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*s)[i]))
			return false;
		v = v * 10 + ((*s)[i] - '0');
	}
	*s += n;
	*out = v;
	return true;
}

/* The fraction after a '.', as milliseconds (digits past the third ignored). */
static bool fraction_ms(const char **s, int *ms)
{
	int n = 0, scale = 100;

	*ms = 0;
	if (**s != '.')
		return true;
	(*s)++;
	while (isdigit((unsigned char)**s)) {
		*ms += (**s - '0') * scale;
		scale /= 10;
		(*s)++;
		n++;
	}
	return n > 0;
}

/* "Z", or "+hh:mm" / "-hh:mm" as seconds east of UTC. */
static bool zone_offset(const char **s, long *east)
{
	int hh, mm, sign;

	if (**s == 'Z' || **s == 'z') {
		(*s)++;
		*east = 0;
		return true;
	}
	if (**s != '+' && **s != '-')
		return false;
	sign = **s == '-' ? -1 : 1;
	(*s)++;
	if (!digits(s, 2, &hh) || *(*s)++ != ':' || !digits(s, 2, &mm) || hh > 23 || mm > 59)
		return false;
	*east = sign * (hh * 3600L + mm * 60L);
	return true;
}

int flow_time_parse(const char *s, __s64 *out_ms)
{
	struct tm tm = {};
	int y, mo, d, h, mi, sec, ms;
	long east;
	time_t t;

	if (!digits(&s, 4, &y) || *s++ != '-' || !digits(&s, 2, &mo) || *s++ != '-' ||
	    !digits(&s, 2, &d) || (*s != 'T' && *s != 't' && *s != ' '))
		return -EINVAL;
	s++;
	if (!digits(&s, 2, &h) || *s++ != ':' || !digits(&s, 2, &mi) || *s++ != ':' ||
	    !digits(&s, 2, &sec) || !fraction_ms(&s, &ms) || !zone_offset(&s, &east) || *s)
		return -EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	*out_ms = ((__s64)t - east) * 1000 + ms;
	return 0;
}

const char *flow_addr_text(__u8 family, const __u8 *addr, char *buf, size_t len)
{
	static const __u8 zero[16];

	if (family == FG_AF_INET && memcmp(addr, zero, 4) != 0)
		return inet_ntop(AF_INET, addr, buf, (socklen_t)len);
	if (family == FG_AF_INET6 && memcmp(addr, zero, 16) != 0)
		return inet_ntop(AF_INET6, addr, buf, (socklen_t)len);
	return NULL;
}

/* A node address (IPv4-mapped for v4) as text; NULL when all zero. */
static const char *node_text(const __u8 node[16], char *buf, size_t len)
{
	static const __u8 mapped[12] = {[10] = 0xff, [11] = 0xff};

	if (memcmp(node, mapped, sizeof(mapped)) == 0)
		return flow_addr_text(FG_AF_INET, node + 12, buf, len);
	return flow_addr_text(FG_AF_INET6, node, buf, len);
}

static void add_string(struct json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

static struct json_object *side_json(__u32 id, const struct flow_name *name)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "identity", json_object_new_int64(id));
	add_string(o, "spiffe_id", name ? name->s : NULL);
	return o;
}

/* Addresses and ports: null when the hook could not know them. */
static void add_endpoints(struct json_object *o, const struct flow_record *r)
{
	char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN], p[8];
	const char *src = flow_addr_text(r->family, r->saddr, a, sizeof(a));
	const char *dst = flow_addr_text(r->family, r->daddr, b, sizeof(b));

	add_string(o, "protocol", r->proto ? flow_proto_name(r->proto, p, sizeof(p)) : NULL);
	add_string(o, "src", src);
	json_object_object_add(o, "src_port", r->sport ? json_object_new_int(r->sport) : NULL);
	add_string(o, "dst", dst);
	json_object_object_add(o, "dst_port", r->dport ? json_object_new_int(r->dport) : NULL);
}

struct json_object *flow_to_json(const struct flow_record *r, const char *instance)
{
	struct json_object *o = json_object_new_object();
	char t[32], id[24], node[INET6_ADDRSTRLEN];

	if (!o)
		return NULL;
	add_string(o, "type", "flow");
	add_string(o, "time", flow_time_format(r->time_ms, t, sizeof(t)) ? NULL : t);
	snprintf(id, sizeof(id), "%016llx", (unsigned long long)r->flow_id);
	add_string(o, "flow_id", r->flow_id ? id : NULL);
	add_string(o, "instance", instance);
	add_string(o, "event", flow_kind_name(r->kind));
	add_string(o, "verdict", flow_verdict_name(r->verdict));
	add_string(o, "reason", reason_name(r->reason));
	add_string(o, "hook", flow_hook_name(r->hook));
	add_string(o, "direction", r->dir ? flow_dir_name(r->dir) : NULL);
	add_endpoints(o, r);
	json_object_object_add(o, "local", side_json(r->local_id, r->local_name));
	json_object_object_add(o, "peer", side_json(r->peer_id, r->peer_name));
	add_string(o, "peer_node", node_text(r->peer_node, node, sizeof(node)));
	add_string(o, "rule", r->rule_name ? r->rule_name->s : NULL);
	json_object_object_add(o, "rule_id", r->rule_id ? json_object_new_int64(r->rule_id) : NULL);
	json_object_object_add(o, "cookie", json_object_new_uint64(r->cookie));
	json_object_object_add(o, "cgroup_id", json_object_new_uint64(r->cgroup_id));
	if (r->kind == FLOW_AUTH_OK || r->kind == FLOW_AUTH_FAILED)
		json_object_object_add(o, "elapsed_us", json_object_new_int64(r->elapsed_us));
	if (r->why)
		add_string(o, "why", r->why->s);
	json_object_object_add(o, "seq", json_object_new_uint64(r->seq));
	return o;
}

bool flow_in_trust_domain(const char *spiffe_id, const char *td)
{
	static const char scheme[] = "spiffe://";
	size_t n = strlen(td);

	if (strncmp(spiffe_id, scheme, sizeof(scheme) - 1) != 0)
		return false;
	spiffe_id += sizeof(scheme) - 1;
	return strncmp(spiffe_id, td, n) == 0 && (spiffe_id[n] == '/' || spiffe_id[n] == '\0');
}

static bool side_is(const struct flow_name *n, const char *id)
{
	return n && strcmp(n->s, id) == 0;
}

static bool side_in(const struct flow_name *n, const char *td)
{
	return n && flow_in_trust_domain(n->s, td);
}

bool flow_filter_match(const struct flow_filter *f, const struct flow_record *r)
{
	if (f->since_ms && r->time_ms < f->since_ms)
		return false;
	if (f->verdict && r->verdict != f->verdict)
		return false;
	if (f->reason && r->reason != f->reason - 1)
		return false;
	if (f->port && r->sport != f->port && r->dport != f->port)
		return false;
	if (f->identity && !side_is(r->local_name, f->identity) &&
	    !side_is(r->peer_name, f->identity))
		return false;
	if (f->trust_domain && !side_in(r->local_name, f->trust_domain) &&
	    !side_in(r->peer_name, f->trust_domain))
		return false;
	return true;
}
