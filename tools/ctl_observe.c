// SPDX-License-Identifier: Apache-2.0
/*
 * fedguardctl observe and alerts: the flow records and alerts the agent
 * keeps, one readable line each (JSON lines with -j), and with --follow
 * those to come. A follow request stays on its connection: the agent sends
 * its reply line, then one JSON line per record (docs/control-protocol.md,
 * "Streaming"), until either side closes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "control.h"
#include "ctl.h"
#include "ctl_client.h"
#include "ctl_util.h"
#include "flow.h"
#include "log.h"

/* A streamed line longer than this is not one of fedguardd's. */
#define LINE_MAX_BYTES (1024 * 1024)

/* --- printing ------------------------------------------------------------------ */

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v = ctl_jget(o, key);

	return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* "spiffe://td/x 10.0.0.1:80", whatever of it is known; "?" when nothing is. */
static const char *endpoint(struct json_object *side, const char *addr, struct json_object *port,
			    char *buf, size_t len)
{
	const char *id = jstr(side, "spiffe_id");
	char p[16] = "";

	if (json_object_is_type(port, json_type_int))
		snprintf(p, sizeof(p), ":%d", json_object_get_int(port));
	if (id && addr)
		snprintf(buf, len, "%s (%s%s)", id, addr, p);
	else if (id || addr)
		snprintf(buf, len, "%s%s", id ? id : addr, id ? "" : p);
	else
		snprintf(buf, len, "?%s", p);
	return buf;
}

/* One flow record as one line: time, event, reason, source -> destination, protocol, hook. */
static void print_flow(struct json_object *f)
{
	struct json_object *local = ctl_jget(f, "local"), *peer = ctl_jget(f, "peer");
	const char *dir = jstr(f, "direction"), *rule = jstr(f, "rule");
	bool ingress = dir && strcmp(dir, "ingress") == 0;
	char src[2200], dst[2200];

	endpoint(ingress ? peer : local, jstr(f, "src"), ctl_jget(f, "src_port"), src, sizeof(src));
	endpoint(ingress ? local : peer, jstr(f, "dst"), ctl_jget(f, "dst_port"), dst, sizeof(dst));
	printf("%s  %-14s %-22s %s -> %s  %s  %s%s%s%s%s\n", jstr(f, "time") ?: "-",
	       jstr(f, "event") ?: "-", jstr(f, "reason") ?: "-", src, dst,
	       jstr(f, "protocol") ?: "-", jstr(f, "hook") ?: "-", rule ? "  rule " : "",
	       rule ? rule : "", jstr(f, "why") ? "  " : "", jstr(f, "why") ?: "");
}

static void print_alert(struct json_object *a)
{
	printf("%s  alert %s  %s  %s\n", jstr(a, "time") ?: "-",
	       json_object_get_string(ctl_jget(a, "alert_id")), jstr(a, "kind") ?: "-",
	       jstr(a, "message") ?: "");
}

/* An alert another agent sent (from the mesh, or a federated mesh). */
static void print_remote_alert(struct json_object *a)
{
	time_t t = (time_t)json_object_get_int64(ctl_jget(a, "received"));
	char when[32] = "-";
	struct tm tm;

	if (t && gmtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%s  alert from mesh %s (agent %s)  %s  %s%s%s\n", when,
	       jstr(a, "trust_domain") ?: "-", jstr(a, "node") ?: "-", jstr(a, "kind") ?: "-",
	       jstr(a, "target") ?: "", jstr(a, "reason") ? ": " : "", jstr(a, "reason") ?: "");
}

/* One record of a stream or of a reply's list. */
static void print_record(const struct ctl *ctl, struct json_object *rec)
{
	const char *type = jstr(rec, "type");

	if (ctl->json)
		puts(json_object_to_json_string_ext(rec, JSON_C_TO_STRING_PLAIN |
								 JSON_C_TO_STRING_NOSLASHESCAPE));
	else if (type && strcmp(type, "alert") == 0)
		print_alert(rec);
	else if (type && strcmp(type, "remote_alert") == 0)
		print_remote_alert(rec);
	else if (type && strcmp(type, "lost") == 0)
		printf("-- %s records not shown: this client read too slowly\n",
		       json_object_get_string(ctl_jget(rec, "records")));
	else
		print_flow(rec);
}

static void print_list(const struct ctl *ctl, struct json_object *result, const char *key)
{
	struct json_object *list = ctl_jget(result, key), *remote = ctl_jget(result, "remote");

	for (size_t i = 0; i < ctl_jlen(list); i++)
		print_record(ctl, json_object_array_get_idx(list, i));
	for (size_t i = 0; i < ctl_jlen(remote); i++) {
		if (ctl->json)
			ctl_print_json(json_object_array_get_idx(remote, i));
		else
			print_remote_alert(json_object_array_get_idx(remote, i));
	}
}

/* --- following ------------------------------------------------------------------ */

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int stream_connect(const struct ctl *ctl, int *out)
{
	_cleanup_close_ int fd = -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	if (strlen(ctl->socket_path) >= sizeof(sa.sun_path))
		return log_error_errno(-ENAMETOOLONG, "socket path '%s' is too long",
				       ctl->socket_path);
	memcpy(sa.sun_path, ctl->socket_path, strlen(ctl->socket_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return log_error_errno(-errno,
				       "cannot reach fedguardd at %s (is the agent of "
				       "instance '%s' running?)",
				       ctl->socket_path, ctl->instance);
	*out = take_fd(&fd);
	return 0;
}

/*
 * Writes the request and leaves the write side open: the agent takes a
 * connection whose peer has gone (both sides shut) for a client that left.
 */
static int stream_send(int fd, const char *command, struct json_object *args)
{
	struct json_object *req = json_object_new_object();
	const char *text;
	size_t done = 0, len;
	int r = 0;

	json_object_object_add(req, "protocol", json_object_new_int(CONTROL_PROTOCOL));
	json_object_object_add(req, "command", json_object_new_string(command));
	json_object_object_add(req, "args", args);
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	len = strlen(text);
	while (done < len && !r) {
		ssize_t n = send(fd, text + done, len - done, MSG_NOSIGNAL);

		if (n < 0 && errno != EINTR)
			r = log_error_errno(-errno, "cannot send the request");
		done += n > 0 ? (size_t)n : 0;
	}
	json_object_put(req);
	return r;
}

/* The first line: the usual reply. Prints its error, or the records it holds. */
static int stream_reply(const struct ctl *ctl, const char *line, const char *key)
{
	_cleanup_json_ struct json_object *reply = json_tokener_parse(line);
	struct json_object *e = ctl_jget(reply, "error");

	if (!json_object_is_type(ctl_jget(reply, "ok"), json_type_boolean)) {
		fprintf(stderr, "fedguardctl: the agent's reply is not one: %.200s\n", line);
		return -EBADMSG;
	}
	if (!json_object_get_boolean(ctl_jget(reply, "ok"))) {
		fprintf(stderr, "fedguardctl: %s\n", jstr(e, "message") ?: "request refused");
		return control_code_errno(jstr(e, "code"));
	}
	print_list(ctl, ctl_jget(reply, "result"), key);
	return 0;
}

/* Handles every complete line of buf; returns the bytes consumed. */
static ssize_t stream_lines(const struct ctl *ctl, char *buf, size_t len, bool *first,
			    const char *key)
{
	size_t used = 0;
	char *nl;
	int r;

	while ((nl = memchr(buf + used, '\n', len - used))) {
		struct json_object *rec;

		*nl = '\0';
		if (*first) {
			r = stream_reply(ctl, buf + used, key);
			if (r)
				return r;
			*first = false;
		} else if ((rec = json_tokener_parse(buf + used))) {
			print_record(ctl, rec);
			json_object_put(rec);
		}
		used = (size_t)(nl + 1 - buf);
	}
	fflush(stdout);
	return (ssize_t)used;
}

/* Reads lines until the agent closes, a signal, or an error. */
static int stream_read(const struct ctl *ctl, int fd, const char *key)
{
	_cleanup_free_ char *buf = malloc(LINE_MAX_BYTES);
	bool first = true;
	size_t len = 0;
	ssize_t n, used;

	if (!buf)
		return -ENOMEM;
	while (!stop) {
		n = recv(fd, buf + len, LINE_MAX_BYTES - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return log_error_errno(-errno, "fedguardd at %s", ctl->socket_path);
		if (n == 0)
			return first ? log_error_errno(-EPIPE, "fedguardd closed without a reply")
				     : 0;
		len += (size_t)n;
		used = stream_lines(ctl, buf, len, &first, key);
		if (used < 0)
			return (int)used;
		memmove(buf, buf + used, len - (size_t)used);
		len -= (size_t)used;
		if (len == LINE_MAX_BYTES)
			return log_error_errno(-EBADMSG, "a line of more than %d bytes",
					       LINE_MAX_BYTES);
	}
	return 0;
}

static int follow(const struct ctl *ctl, const char *command, struct json_object *args,
		  const char *key)
{
	struct sigaction sa = {.sa_handler = on_signal};
	_cleanup_close_ int fd = -1;
	int r;

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	r = stream_connect(ctl, &fd);
	if (r) {
		json_object_put(args);
		return r;
	}
	r = stream_send(fd, command, args);
	return r ? r : stream_read(ctl, fd, key);
}

/* --- the commands ----------------------------------------------------------------- */

/* --since: RFC 3339, or a duration ago ("90s", "5m", "2h", "1d"). */
static int since_ms(const char *s, __s64 *out)
{
	static const struct {
		char unit;
		__s64 ms;
	} units[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}};
	struct timespec now;
	char *end;
	long long n;

	if (flow_time_parse(s, out) == 0)
		return 0;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || end == s || n < 0 || end[0] == '\0' || end[1] != '\0')
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (*end != units[i].unit)
			continue;
		clock_gettime(CLOCK_REALTIME, &now);
		*out = now.tv_sec * 1000LL + now.tv_nsec / 1000000 - n * units[i].ms;
		return *out > 0 ? 0 : -EINVAL;
	}
	return -EINVAL;
}

/* A non-negative integer option into args; CTL_USAGE when it is not one. */
static int int_arg(struct json_object *args, const char *cmd, const char *flag, const char *name,
		   const char *s, long long max)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > max) {
		log_error("%s: %s '%s': expected an integer from 0 to %lld", cmd, flag, s, max);
		return CTL_USAGE;
	}
	json_object_object_add(args, name, json_object_new_int64(v));
	return 0;
}

/* One option of observe into args. */
static int observe_opt(struct json_object *args, const struct ctl_optval *o)
{
	static const char cmd[] = "observe";
	__s64 ms;

	switch (o->opt) {
	case CTL_OPT_FOLLOW:
		json_object_object_add(args, "follow", json_object_new_boolean(true));
		return 0;
	case CTL_OPT_LAST:
		return int_arg(args, cmd, "--last", "last", o->arg, INT32_MAX);
	case CTL_OPT_PORT:
		return int_arg(args, cmd, "--port", "port", o->arg, 65535);
	case CTL_OPT_SINCE:
		if (since_ms(o->arg, &ms)) {
			log_error("%s: --since '%s': expected an RFC 3339 time or a duration "
				  "such as 90s, 5m, 2h, 1d",
				  cmd, o->arg);
			return CTL_USAGE;
		}
		json_object_object_add(args, "since_ms", json_object_new_int64(ms));
		return 0;
	case CTL_OPT_VERDICT:
		json_object_object_add(args, "verdict", json_object_new_string(o->arg));
		return 0;
	case CTL_OPT_REASON:
		json_object_object_add(args, "reason", json_object_new_string(o->arg));
		return 0;
	case CTL_OPT_IDENTITY:
		json_object_object_add(args, "identity", json_object_new_string(o->arg));
		return 0;
	case CTL_OPT_TRUST_DOMAIN:
		json_object_object_add(args, "trust_domain", json_object_new_string(o->arg));
		return 0;
	default:
		return 0;
	}
}

/* Runs command with args (taken): one request, or a stream with "follow". */
static int run(struct ctl *ctl, const char *command, struct json_object *args, const char *key)
{
	_cleanup_json_ struct json_object *result = NULL;
	int r;

	if (json_object_object_get_ex(args, "follow", NULL))
		return follow(ctl, command, args, key);
	r = ctl_request(ctl, command, args, &result);
	if (r)
		return r;
	print_list(ctl, result, key);
	return 0;
}

int ctl_observe(struct ctl *ctl, int argc, char **argv)
{
	static const char *const none[] = {NULL};
	struct json_object *args;
	int r;

	r = ctl_positional("observe", argc, argv, none);
	if (r)
		return r;
	args = json_object_new_object();
	for (size_t i = 0; i < ctl->nopts; i++) {
		r = observe_opt(args, &ctl->opts[i]);
		if (r) {
			json_object_put(args);
			return r;
		}
	}
	return run(ctl, "observe", args, "flows");
}

int ctl_alerts(struct ctl *ctl, int argc, char **argv)
{
	static const char *const none[] = {NULL};
	struct json_object *args;
	int r = 0;

	r = ctl_positional("alerts", argc, argv, none);
	if (r)
		return r;
	args = json_object_new_object();
	for (size_t i = 0; i < ctl->nopts && !r; i++) {
		if (ctl->opts[i].opt == CTL_OPT_FOLLOW)
			json_object_object_add(args, "follow", json_object_new_boolean(true));
		else if (ctl->opts[i].opt == CTL_OPT_LAST)
			r = int_arg(args, "alerts", "--last", "last", ctl->opts[i].arg, INT32_MAX);
	}
	if (r) {
		json_object_put(args);
		return r;
	}
	return run(ctl, "alerts", args, "alerts");
}

const struct option ctl_observe_opts[] = {
	{"follow", no_argument, NULL, CTL_OPT_FOLLOW},
	{"since", required_argument, NULL, CTL_OPT_SINCE},
	{"last", required_argument, NULL, CTL_OPT_LAST},
	{"verdict", required_argument, NULL, CTL_OPT_VERDICT},
	{"reason", required_argument, NULL, CTL_OPT_REASON},
	{"identity", required_argument, NULL, CTL_OPT_IDENTITY},
	{"trust-domain", required_argument, NULL, CTL_OPT_TRUST_DOMAIN},
	{"port", required_argument, NULL, CTL_OPT_PORT},
	{},
};

const char ctl_observe_help[] =
	"  --follow            keep printing records as they come (Ctrl-C ends)\n"
	"  --since TIME        records at or after TIME: RFC 3339, or 90s, 5m, 2h, 1d ago\n"
	"  --last N            the last N matching records (default 20; 0 with --follow)\n"
	"Filters (all must match):\n"
	"  --verdict V         allow, deny or pending\n"
	"  --reason R          a reason, e.g. deny_policy (see fedguardctl status)\n"
	"  --identity ID       records with ID on either side\n"
	"  --trust-domain TD   records with an identity of TD on either side\n"
	"  --port P            records with P as source or destination port\n";

const struct option ctl_alerts_opts[] = {
	{"follow", no_argument, NULL, CTL_OPT_FOLLOW},
	{"last", required_argument, NULL, CTL_OPT_LAST},
	{},
};

const char ctl_alerts_help[] =
	"  --follow            keep printing alerts as they are raised (Ctrl-C ends)\n"
	"  --last N            the last N alerts (default: every alert kept)\n";
