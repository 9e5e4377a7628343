// SPDX-License-Identifier: Apache-2.0
/*
 * agent/control.c and tools/ctl_client.c over real Unix sockets: a
 * control_serve() loop runs in a thread with a small command table that
 * counts its calls; clients send raw bytes (framing, every refusal), go
 * through ctl_request(), or are the fedguardctl binary ($FEDGUARDCTL) run
 * with --socket, against handlers that record the args they get and answer
 * canned results. The peer credential cases fork a child that drops to uid
 * 65534; they need root, and skip outside CI when not root.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "control.h"
#include "ctl_client.h"
#include "lib/require.h"

#define NOBODY 65534

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static atomic_int calls;
static atomic_bool missing_got_empty_args;
static int ctx_token;

static int cmd_echo(void *ctx, struct json_object *args, struct json_object *result,
		    struct control_error *err)
{
	struct json_object *labels = NULL;
	const char *text = NULL, **words = NULL;
	size_t nwords = 0;
	bool loud = false;
	int64_t n = 0;
	int r;

	atomic_fetch_add(&calls, 1);
	r = control_arg_string(args, "text", true, &text, err);
	if (!r)
		r = control_arg_int(args, "n", false, 0, 100, &n, err);
	if (!r)
		r = control_arg_bool(args, "loud", false, &loud, err);
	if (!r)
		r = control_arg_string_array(args, "words", false, &words, &nwords, err);
	if (!r)
		r = control_arg_object(args, "labels", false, &labels, err);
	if (r)
		return r;
	/* Long texts (the size limit cases) are not sent back. */
	if (strlen(text) < 128)
		json_object_object_add(result, "text", json_object_new_string(text));
	json_object_object_add(result, "length", json_object_new_int64((int64_t)strlen(text)));
	json_object_object_add(result, "n", json_object_new_int64(n));
	json_object_object_add(result, "loud", json_object_new_boolean(loud));
	json_object_object_add(result, "words", json_object_new_int64((int64_t)nwords));
	if (nwords)
		json_object_object_add(result, "last", json_object_new_string(words[nwords - 1]));
	json_object_object_add(
		result, "labels",
		json_object_new_int(labels ? json_object_object_length(labels) : -1));
	json_object_object_add(result, "ctx", json_object_new_boolean(ctx == &ctx_token));
	free(words);
	return 0;
}

static int cmd_missing(void *ctx, struct json_object *args, struct json_object *result,
		       struct control_error *err)
{
	atomic_fetch_add(&calls, 1);
	atomic_store(&missing_got_empty_args, json_object_is_type(args, json_type_object) &&
						      json_object_object_length(args) == 0);
	return control_error_set(err, CONTROL_E_NOT_FOUND, "workload '%s' is not registered",
				 "spiffe://td/x");
}

static int cmd_broken(void *ctx, struct json_object *args, struct json_object *result,
		      struct control_error *err)
{
	atomic_fetch_add(&calls, 1);
	return -EIO;
}

/* The args of the last recorded command, as JSON text. */
static pthread_mutex_t recorded_lock = PTHREAD_MUTEX_INITIALIZER;
static char recorded[4096];

static void record(struct json_object *args)
{
	atomic_fetch_add(&calls, 1);
	pthread_mutex_lock(&recorded_lock);
	snprintf(recorded, sizeof(recorded), "%s", json_object_to_json_string(args));
	pthread_mutex_unlock(&recorded_lock);
}

/* Fills result with the members of a JSON text. */
static int answer(struct json_object *result, const char *json)
{
	struct json_object *canned = json_tokener_parse(json);

	json_object_object_foreach (canned, key, val)
		json_object_object_add(result, key, json_object_get(val));
	json_object_put(canned);
	return 0;
}

static const char workloads_json[] =
	"{\"workloads\": ["
	"{\"spiffe_id\": \"spiffe://td/web\", \"identity\": 256, \"cgroup\": \"/sys/fs/cgroup/w\","
	" \"cgroup_id\": 7, \"ips\": [\"10.0.0.1\", \"fd00::1\"], \"labels\": {\"app\": \"web\"}},"
	"{\"spiffe_id\": \"spiffe://td/a/much/longer/name\", \"identity\": 1025,"
	" \"cgroup\": \"/c\", \"cgroup_id\": 8, \"ips\": [], \"labels\": {}}]}";

static int cmd_workload_add(void *ctx, struct json_object *args, struct json_object *result,
			    struct control_error *err)
{
	record(args);
	return answer(result, "{\"spiffe_id\": \"spiffe://td/web\", \"identity\": 256}");
}

static int cmd_workload_list(void *ctx, struct json_object *args, struct json_object *result,
			     struct control_error *err)
{
	record(args);
	return answer(result, workloads_json);
}

static int cmd_policy_apply(void *ctx, struct json_object *args, struct json_object *result,
			    struct control_error *err)
{
	record(args);
	return answer(result,
		      "{\"version\": 7, \"entries\": 1, \"applied\": false, \"removed\": [],"
		      " \"added\": [{\"src\": \"spiffe://td/web\", \"dst\": \"*\","
		      " \"port\": 443, \"protocol\": \"tcp\", \"direction\": \"egress\","
		      " \"action\": \"allow\", \"auth\": \"none\", \"rule\": \"out\"}]}");
}

static int cmd_policy_check(void *ctx, struct json_object *args, struct json_object *result,
			    struct control_error *err)
{
	record(args);
	return answer(result, "{\"decision\": \"deny\", \"rule\": null, \"auth\": \"none\","
			      " \"reason\": \"no rule allows it\"}");
}

static const struct control_command table[] = {
	{"echo", cmd_echo, ARGS("text", "n", "loud", "words", "labels")},
	{"missing", cmd_missing, NULL},
	{"broken", cmd_broken, NULL},
	{"workload.add", cmd_workload_add, ARGS("spiffe_id", "cgroup", "ips", "netns", "labels")},
	{"workload.del", cmd_missing, ARGS("spiffe_id")},
	{"workload.list", cmd_workload_list, NULL},
	{"policy.apply", cmd_policy_apply, ARGS("document", "source", "dry_run")},
	{"policy.check", cmd_policy_check, ARGS("from", "to", "port", "protocol")},
	{},
};

/* The server under test: its temp dir, socket and serving thread. */
static struct {
	char dir[64];
	char path[100];
	struct control_server srv;
	pthread_t thread;
	int stop[2];
	bool running;
} S;

static void *serve_loop(void *arg)
{
	struct pollfd p[2] = {{.fd = S.srv.fd, .events = POLLIN},
			      {.fd = S.stop[0], .events = POLLIN}};

	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (p[0].revents & POLLIN)
			control_serve(&S.srv, table, &ctx_token);
	}
	return NULL;
}

static void make_dir(void)
{
	snprintf(S.dir, sizeof(S.dir), "/tmp/fg-control-XXXXXX");
	cr_assert_not_null(mkdtemp(S.dir), "mkdtemp: %s", strerror(errno));
	/* uid 65534 must reach the socket in the peer credential cases. */
	cr_assert_eq(chmod(S.dir, 0755), 0);
	/* run/ does not exist: control_listen() creates it. */
	snprintf(S.path, sizeof(S.path), "%s/run/ctl.sock", S.dir);
}

/*
 * Listens on S.path and serves in a thread. Without a group, a test run by
 * a user other than root configures its own group: root only would refuse
 * its own requests.
 */
static void server_start(const char *group)
{
	struct group *g;
	char own[64];
	int r;

	if (!S.dir[0])
		make_dir();
	if (!group && geteuid() != 0) {
		g = getgrgid(getegid());
		cr_assert_not_null(g, "a name for our own group %u", getegid());
		snprintf(own, sizeof(own), "%s", g->gr_name);
		group = own;
	}
	r = control_listen(S.path, group, &S.srv);
	cr_assert_eq(r, 0, "control_listen: %s", strerror(-r));
	cr_assert_eq(pipe2(S.stop, O_CLOEXEC), 0);
	cr_assert_eq(pthread_create(&S.thread, NULL, serve_loop, NULL), 0);
	S.running = true;
}

static void server_stop(void)
{
	char run[160];

	if (S.running) {
		cr_assert_eq(write(S.stop[1], "x", 1), 1);
		pthread_join(S.thread, NULL);
		close(S.stop[0]);
		close(S.stop[1]);
		control_close(&S.srv);
		S.running = false;
	}
	if (!S.dir[0])
		return;
	unlink(S.path);
	snprintf(run, sizeof(run), "%s/run", S.dir);
	rmdir(run);
	rmdir(S.dir);
}

TestSuite(control, .fini = server_stop);
TestSuite(ctl_client, .fini = server_stop);
TestSuite(fedguardctl, .fini = server_stop);

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * One exchange with the server, by syscalls only (it also runs in forked
 * children): sends len bytes of data, shuts down the write side when shut,
 * and reads until EOF, for at most 10 s. Returns the bytes read into buf
 * (NUL-terminated) or -errno of connect().
 */
static ssize_t raw_exchange(const char *data, size_t len, bool shut, char *buf, size_t cap)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	long long deadline = now_ms() + 10000;
	size_t done = 0, got = 0;
	ssize_t n;
	int fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", S.path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		n = -errno;
		if (fd >= 0)
			close(fd);
		return n;
	}
	/* The server stops reading what is too large: EPIPE ends the sending. */
	while (done < len && (n = send(fd, data + done, len - done, MSG_NOSIGNAL)) > 0)
		done += (size_t)n;
	if (shut)
		shutdown(fd, SHUT_WR);
	while (got + 1 < cap) {
		struct pollfd p = {.fd = fd, .events = POLLIN};

		if (poll(&p, 1, (int)(deadline - now_ms())) <= 0)
			break;
		n = recv(fd, buf + got, cap - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	close(fd);
	return (ssize_t)got;
}

/* Sends data and parses the reply, which must be one JSON line. */
static struct json_object *exchange(const char *data, size_t len, bool shut)
{
	static char buf[65536];
	struct json_object *reply;
	ssize_t n;

	n = raw_exchange(data, len, shut, buf, sizeof(buf));
	cr_assert_geq(n, 0, "connect to '%s': %s", S.path, strerror((int)-n));
	cr_assert_gt(n, 0, "no reply to %.80s", data);
	cr_assert_eq(buf[n - 1], '\n', "the reply ends with a newline: %s", buf);
	reply = json_tokener_parse(buf);
	cr_assert_not_null(reply, "the reply is JSON: %s", buf);
	return reply;
}

static struct json_object *request(const char *text)
{
	return exchange(text, strlen(text), true);
}

static struct json_object *member(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	cr_assert(json_object_object_get_ex(o, key, &v), "'%s' in %s", key,
		  json_object_to_json_string(o));
	return v;
}

/* The reply is ok; returns its result, owned by reply. */
static struct json_object *assert_ok(struct json_object *reply)
{
	cr_assert_eq(json_object_get_int(member(reply, "protocol")), 1);
	cr_assert(json_object_get_boolean(member(reply, "ok")), "ok: %s",
		  json_object_to_json_string(reply));
	cr_assert_null(json_object_object_get(reply, "error"));
	return member(reply, "result");
}

/* The reply is the error code, and its message contains mentions. */
static void assert_error(struct json_object *reply, const char *code, const char *mentions)
{
	struct json_object *e;
	const char *msg;

	cr_assert_eq(json_object_get_int(member(reply, "protocol")), 1);
	cr_assert_not(json_object_get_boolean(member(reply, "ok")), "not ok: %s",
		      json_object_to_json_string(reply));
	cr_assert_null(json_object_object_get(reply, "result"));
	e = member(reply, "error");
	cr_assert_str_eq(json_object_get_string(member(e, "code")), code, "%s",
			 json_object_to_json_string(reply));
	msg = json_object_get_string(member(e, "message"));
	cr_assert(strstr(msg, mentions), "message '%s' mentions '%s'", msg, mentions);
}

static void expect_refused(const char *req, const char *code, const char *mentions)
{
	struct json_object *reply = request(req);

	assert_error(reply, code, mentions);
	json_object_put(reply);
}

Test(control, valid_request_gets_its_result)
{
	struct json_object *reply, *res;

	server_start(NULL);
	reply = request("{\"protocol\": 1, \"command\": \"echo\", \"args\": {\"text\": \"hi\", "
			"\"n\": 7, \"loud\": true, \"words\": [\"a\", \"b\"], "
			"\"labels\": {\"app\": \"web\"}}, \"extra\": \"ignored\"}");
	res = assert_ok(reply);
	cr_expect_str_eq(json_object_get_string(member(res, "text")), "hi");
	cr_expect_eq(json_object_get_int(member(res, "n")), 7);
	cr_expect(json_object_get_boolean(member(res, "loud")));
	cr_expect_eq(json_object_get_int(member(res, "words")), 2);
	cr_expect_str_eq(json_object_get_string(member(res, "last")), "b");
	cr_expect_eq(json_object_get_int(member(res, "labels")), 1);
	cr_expect(json_object_get_boolean(member(res, "ctx")), "the handler got ctx");
	cr_expect_eq(atomic_load(&calls), 1);
	json_object_put(reply);
}

Test(control, optional_args_keep_their_defaults)
{
	struct json_object *reply, *res;

	server_start(NULL);
	reply = request("{\"protocol\":1,\"command\":\"echo\",\"args\":{\"text\":\"\"}}");
	res = assert_ok(reply);
	cr_expect_eq(json_object_get_int(member(res, "n")), 0);
	cr_expect_not(json_object_get_boolean(member(res, "loud")));
	cr_expect_eq(json_object_get_int(member(res, "words")), 0);
	cr_expect_eq(json_object_get_int(member(res, "labels")), -1);
	json_object_put(reply);
}

Test(control, handler_errors_keep_their_code)
{
	server_start(NULL);
	expect_refused("{\"protocol\":1,\"command\":\"missing\"}", "not_found",
		       "workload 'spiffe://td/x' is not registered");
	cr_expect(atomic_load(&missing_got_empty_args), "absent args are an empty object");
	/* A handler that fails without saying why is an internal error. */
	expect_refused("{\"protocol\":1,\"command\":\"broken\",\"args\":{}}", "internal",
		       "command 'broken' failed: Input/output error");
	cr_expect_eq(atomic_load(&calls), 2);
}

Test(control, malformed_json_is_refused)
{
	static const char *const bad[] = {
		"{\"protocol\": 1, \"command\": ", /* cut short by EOF */
		"{protocol: 1}",
		"{\"protocol\": 1, \"command\": \"echo\"} trailing",
		"",
		"   \n",
		"{\"protocol\": 1, \"command\": \"echo\", \"args\": {\"text\": \"\xff\xfe\"}}",
	};
	size_t i;

	server_start(NULL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_refused(bad[i], "invalid_request", "request is not JSON");
	cr_expect_eq(atomic_load(&calls), 0, "no handler ran");
}

Test(control, nesting_deeper_than_the_limit_is_refused)
{
	char deep[256] = "{\"protocol\":1,\"command\":\"echo\",\"args\":{\"x\":";
	size_t len = strlen(deep);
	int i;

	server_start(NULL);
	for (i = 0; i < CONTROL_JSON_DEPTH + 4; i++)
		deep[len++] = '[';
	deep[len] = '\0';
	expect_refused(deep, "invalid_request", "nesting too deep");
	cr_expect_eq(atomic_load(&calls), 0);
}

Test(control, a_value_that_is_not_an_object_is_refused)
{
	server_start(NULL);
	expect_refused("[1, 2]", "invalid_request", "not a JSON object");
	expect_refused("\"status\"\n", "invalid_request", "not a JSON object");
	expect_refused("42", "invalid_request", "not a JSON object");
	expect_refused("null", "invalid_request", "not a JSON object");
	cr_expect_eq(atomic_load(&calls), 0);
}

Test(control, a_request_without_command_is_refused)
{
	server_start(NULL);
	expect_refused("{\"protocol\":1}", "invalid_request", "no 'command'");
	expect_refused("{\"protocol\":1,\"command\":7}", "invalid_request", "no 'command'");
	expect_refused("{\"protocol\":1,\"command\":null}", "invalid_request", "no 'command'");
	cr_expect_eq(atomic_load(&calls), 0);
}

Test(control, an_unknown_command_is_refused)
{
	server_start(NULL);
	expect_refused("{\"protocol\":1,\"command\":\"echo.twice\"}", "unknown_command",
		       "unknown command 'echo.twice'");
	cr_expect_eq(atomic_load(&calls), 0);
}

Test(control, only_protocol_1_is_spoken)
{
	server_start(NULL);
	expect_refused("{\"protocol\":2,\"command\":\"echo\",\"args\":{\"text\":\"x\"}}",
		       "invalid_request", "protocol version 2 is not supported");
	expect_refused("{\"command\":\"echo\",\"args\":{\"text\":\"x\"}}", "invalid_request",
		       "no 'protocol'");
	expect_refused("{\"protocol\":\"1\",\"command\":\"echo\",\"args\":{\"text\":\"x\"}}",
		       "invalid_request", "not supported");
	expect_refused("{\"protocol\":1.0,\"command\":\"echo\",\"args\":{\"text\":\"x\"}}",
		       "invalid_request", "not supported");
	cr_expect_eq(atomic_load(&calls), 0);
}

/* A request of exactly size bytes whose "text" is padding. */
static char *request_of_size(size_t size)
{
	static const char head[] = "{\"protocol\":1,\"command\":\"echo\",\"args\":{\"text\":\"";
	static const char tail[] = "\"}}";
	char *req = malloc(size + 1);

	cr_assert_not_null(req);
	memcpy(req, head, strlen(head));
	memset(req + strlen(head), 'a', size - strlen(head) - strlen(tail));
	memcpy(req + size - strlen(tail), tail, strlen(tail) + 1);
	return req;
}

Test(control, a_request_over_1_MiB_is_refused_unread)
{
	char *req = request_of_size(CONTROL_REQUEST_MAX + 1);
	struct json_object *reply;

	server_start(NULL);
	reply = exchange(req, strlen(req), true);
	assert_error(reply, "invalid_request", "larger than 1048576 bytes");
	cr_expect_eq(atomic_load(&calls), 0);
	json_object_put(reply);
	free(req);
}

Test(control, a_request_of_1_MiB_is_served)
{
	char *req = request_of_size(CONTROL_REQUEST_MAX);
	struct json_object *reply, *res;

	server_start(NULL);
	reply = exchange(req, strlen(req), true);
	res = assert_ok(reply);
	cr_expect_eq(json_object_get_int64(member(res, "length")),
		     CONTROL_REQUEST_MAX - strlen("{\"protocol\":1,\"command\":\"echo\",\"args\":"
						  "{\"text\":\"\"}}"));
	json_object_put(reply);
	free(req);
}

Test(control, unknown_args_are_refused_before_the_handler)
{
	server_start(NULL);
	expect_refused(
		"{\"protocol\":1,\"command\":\"echo\",\"args\":{\"text\":\"x\",\"colour\":1}}",
		"invalid_argument", "unknown argument 'colour'");
	/* A command that takes no arguments refuses any. */
	expect_refused("{\"protocol\":1,\"command\":\"missing\",\"args\":{\"spiffe_id\":\"x\"}}",
		       "invalid_argument", "unknown argument 'spiffe_id'");
	expect_refused("{\"protocol\":1,\"command\":\"echo\",\"args\":[\"text\"]}",
		       "invalid_request", "'args' of command 'echo' is not an object");
	cr_expect_eq(atomic_load(&calls), 0);
}

Test(control, argument_helpers_check_types_and_ranges)
{
	static const struct {
		const char *args;
		const char *mentions;
	} cases[] = {
		{"{}", "argument 'text' is missing"},
		{"{\"text\": 5}", "argument 'text' is not a string"},
		{"{\"text\": \"a\\u0000b\"}", "argument 'text' contains a NUL"},
		{"{\"text\": \"x\", \"n\": 101}", "argument 'n': 101 is out of range 0..100"},
		{"{\"text\": \"x\", \"n\": -1}", "argument 'n': -1 is out of range 0..100"},
		{"{\"text\": \"x\", \"n\": 18446744073709551615}", "out of range"},
		{"{\"text\": \"x\", \"n\": 1.5}", "argument 'n' is not an integer"},
		{"{\"text\": \"x\", \"n\": \"1\"}", "argument 'n' is not an integer"},
		{"{\"text\": \"x\", \"loud\": 1}", "argument 'loud' is not a boolean"},
		{"{\"text\": \"x\", \"words\": \"a\"}", "argument 'words' is not an array"},
		{"{\"text\": \"x\", \"words\": [\"a\", 3]}", "argument 'words': element 1"},
		{"{\"text\": \"x\", \"labels\": []}", "argument 'labels' is not an object"},
		{"{\"text\": \"x\", \"labels\": {\"a\": 1}}", "the value of 'a' is not a string"},
	};
	char req[256];
	size_t i;

	server_start(NULL);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(req, sizeof(req), "{\"protocol\":1,\"command\":\"echo\",\"args\":%s}",
			 cases[i].args);
		expect_refused(req, "invalid_argument", cases[i].mentions);
	}
	cr_expect_eq(atomic_load(&calls), (int)i);
}

Test(control, a_newline_ends_a_request_without_shutdown)
{
	static const char req[] =
		"{\"protocol\":1,\"command\":\"echo\",\n\"args\":{\"text\":\"nl\"}}\n";
	struct json_object *reply;

	server_start(NULL);
	/* Pretty-printed (a newline inside) and the write side left open. */
	reply = exchange(req, strlen(req), false);
	cr_expect_str_eq(json_object_get_string(member(assert_ok(reply), "text")), "nl");
	json_object_put(reply);
}

static void expect_cut_after_timeout(const char *partial)
{
	struct json_object *reply;
	long long start, took;

	S.srv.timeout_ms = 300;
	start = now_ms();
	reply = exchange(partial, strlen(partial), false);
	took = now_ms() - start;
	assert_error(reply, "invalid_request", "no complete request within 300 ms");
	cr_expect_geq(took, 250, "cut after %lld ms, before the timeout", took);
	cr_expect_lt(took, 3000, "cut after %lld ms", took);
	json_object_put(reply);
}

Test(control, a_silent_client_is_cut_after_the_timeout)
{
	struct json_object *reply;

	server_start(NULL);
	expect_cut_after_timeout("");
	/* The server goes on with the next client. */
	reply = request("{\"protocol\":1,\"command\":\"echo\",\"args\":{\"text\":\"next\"}}");
	assert_ok(reply);
	json_object_put(reply);
	cr_expect_eq(atomic_load(&calls), 1);
}

Test(control, a_client_stalling_mid_request_is_cut_after_the_timeout)
{
	server_start(NULL);
	expect_cut_after_timeout("{\"protocol\": 1, \"command\": \"ec");
	cr_expect_eq(atomic_load(&calls), 0);
}

/* A group that is neither root's nor nobody's: its name into name, its gid. */
static gid_t other_group(char *name, size_t len)
{
	struct group *g;
	gid_t gid = 0;

	setgrent();
	while ((g = getgrent()) && (g->gr_gid == 0 || g->gr_gid == NOBODY))
		;
	if (g) {
		snprintf(name, len, "%s", g->gr_name);
		gid = g->gr_gid;
	}
	endgrent();
	cr_assert_neq(gid, 0, "a group other than root and nobody in /etc/group");
	return gid;
}

static void expect_mode(const char *path, mode_t mode, gid_t gid)
{
	struct stat st;

	cr_assert_eq(stat(path, &st), 0, "stat '%s': %s", path, strerror(errno));
	cr_expect(S_ISSOCK(st.st_mode), "'%s' is a socket", path);
	cr_expect_eq(st.st_mode & 07777, mode, "'%s': mode %o, expected %o", path,
		     st.st_mode & 07777, mode);
	cr_expect_eq(st.st_gid, gid, "'%s': group %u, expected %u", path, st.st_gid, gid);
}

Test(control, the_socket_is_0600_in_a_new_0755_directory)
{
	struct control_server srv;
	char run[160];
	struct stat st;

	make_dir();
	cr_assert_eq(control_listen(S.path, NULL, &srv), 0);
	expect_mode(S.path, 0600, getegid());
	snprintf(run, sizeof(run), "%s/run", S.dir);
	cr_assert_eq(stat(run, &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0755, "directory mode %o", st.st_mode & 07777);
	control_close(&srv);
}

Test(control, with_a_group_the_socket_is_0660_and_the_groups)
{
	struct group *g;
	char name[64];
	gid_t gid;

	/* Root can give the socket to any group, others to their own. */
	if (geteuid() == 0) {
		gid = other_group(name, sizeof(name));
	} else {
		gid = getegid();
		g = getgrgid(gid);
		cr_assert_not_null(g, "a name for our own group %u", gid);
		snprintf(name, sizeof(name), "%s", g->gr_name);
	}
	server_start(name);
	expect_mode(S.path, 0660, gid);
}

Test(control, a_stale_socket_file_is_replaced)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct json_object *reply;
	char run[160];
	int fd;

	make_dir();
	snprintf(run, sizeof(run), "%s/run", S.dir);
	cr_assert_eq(mkdir(run, 0755), 0);
	/* Bound, then closed: a socket file nobody listens on. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", S.path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	server_start(NULL);
	reply = request("{\"protocol\":1,\"command\":\"echo\",\"args\":{\"text\":\"x\"}}");
	assert_ok(reply);
	json_object_put(reply);
}

Test(control, a_live_socket_is_left_to_its_listener)
{
	struct control_server second = {.fd = -7};
	struct json_object *reply;

	server_start(NULL);
	cr_expect_eq(control_listen(S.path, NULL, &second), -EADDRINUSE);
	cr_expect_eq(second.fd, -7, "the output is written only on success");
	reply = request("{\"protocol\":1,\"command\":\"echo\",\"args\":{\"text\":\"x\"}}");
	assert_ok(reply);
	json_object_put(reply);
}

Test(control, a_file_that_is_no_socket_is_left_alone)
{
	struct control_server srv;
	char run[160], buf[8] = {};
	int fd;

	make_dir();
	snprintf(run, sizeof(run), "%s/run", S.dir);
	cr_assert_eq(mkdir(run, 0755), 0);
	fd = open(S.path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "keep", 4), 4);
	close(fd);
	cr_expect_eq(control_listen(S.path, NULL, &srv), -EEXIST);
	fd = open(S.path, O_RDONLY);
	cr_assert_geq(fd, 0, "the file is still there");
	cr_expect_eq(read(fd, buf, sizeof(buf) - 1), 4);
	cr_expect_str_eq(buf, "keep");
	close(fd);
}

Test(control, an_unknown_group_is_an_error)
{
	struct control_server srv;
	struct stat st;

	make_dir();
	cr_expect_eq(control_listen(S.path, "fg-no-such-group", &srv), -ENOENT);
	cr_expect_neq(stat(S.path, &st), 0, "no socket was made");
}

Test(control, close_removes_the_socket_file)
{
	struct stat st;

	server_start(NULL);
	cr_assert_eq(write(S.stop[1], "x", 1), 1);
	pthread_join(S.thread, NULL);
	S.running = false;
	close(S.stop[0]);
	close(S.stop[1]);
	control_close(&S.srv);
	cr_expect_neq(stat(S.path, &st), 0);
	cr_expect_eq(errno, ENOENT);
}

Test(control, default_path_is_under_run_fedguard)
{
	char buf[108], small[8];
	char name[120];

	cr_assert_eq(control_default_path("edge-1", buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "/run/fedguard/edge-1.sock");
	cr_expect_eq(control_default_path("edge-1", small, sizeof(small)), -ENAMETOOLONG);
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	cr_expect_eq(control_default_path(name, buf, sizeof(buf)), -ENAMETOOLONG);
}

/*
 * Sends req from a child that runs as uid and gid 65534, with supp as its
 * only supplementary group ((gid_t)-1: none). The reply comes back through
 * a pipe; the child exits 3 if it could not connect, 2 if it could not
 * drop its privileges.
 */
static struct json_object *request_as_nobody(gid_t supp, const char *req)
{
	char buf[4096] = {};
	int p[2], status;
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	cr_assert_eq(pipe(p), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[0]);
		if (setgroups(supp == (gid_t)-1 ? 0 : 1, &supp) || setgid(NOBODY) ||
		    setuid(NOBODY) || getuid() != NOBODY)
			_exit(2);
		n = raw_exchange(req, strlen(req), true, buf, sizeof(buf));
		if (n < 0) {
			dprintf(p[1], "connect: %s", strerror((int)-n));
			_exit(3);
		}
		_exit(write(p[1], buf, (size_t)n) == n ? 0 : 4);
	}
	close(p[1]);
	while (got < sizeof(buf) - 1 && (n = read(p[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	close(p[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x: %s", status,
		  buf);
	return json_tokener_parse(buf);
}

/* Only root can run a peer as another user (and give the socket to any group). */
static void require_root(void)
{
	if (geteuid() != 0)
		fg_test_unavailable("needs root to run a peer as uid %d (euid %u)", NOBODY,
				    geteuid());
}

static const char echo_req[] = "{\"protocol\":1,\"command\":\"echo\",\"args\":{\"text\":\"x\"}}";

Test(control, a_peer_that_is_not_root_is_refused)
{
	struct json_object *reply;

	require_root();
	server_start(NULL);
	/* The mode keeps uid 65534 out; open it to reach the check behind it. */
	cr_assert_eq(chmod(S.path, 0666), 0);
	reply = request_as_nobody((gid_t)-1, echo_req);
	cr_assert_not_null(reply);
	assert_error(reply, "permission_denied",
		     "uid 65534 is not root and no control group is configured");
	cr_expect_eq(atomic_load(&calls), 0);
	json_object_put(reply);
}

Test(control, a_peer_outside_the_group_is_refused)
{
	char group[64], mentions[128];
	struct json_object *reply;

	require_root();
	other_group(group, sizeof(group));
	server_start(group);
	cr_assert_eq(chmod(S.path, 0666), 0);
	reply = request_as_nobody((gid_t)-1, echo_req);
	cr_assert_not_null(reply);
	snprintf(mentions, sizeof(mentions), "uid 65534 is not root and not in group '%s'", group);
	assert_error(reply, "permission_denied", mentions);
	cr_expect_eq(atomic_load(&calls), 0);
	json_object_put(reply);
}

Test(control, a_peer_whose_primary_group_is_the_group_is_served)
{
	struct group *g = getgrgid(NOBODY);
	struct json_object *reply;

	require_root();
	cr_assert_not_null(g, "a group with gid %d", NOBODY);
	server_start(g->gr_name);
	/* 0660 root:<group>: the file mode lets the peer in by its group. */
	reply = request_as_nobody((gid_t)-1, echo_req);
	cr_assert_not_null(reply);
	assert_ok(reply);
	cr_expect_eq(atomic_load(&calls), 1);
	json_object_put(reply);
}

Test(control, a_peer_with_the_group_as_supplementary_group_is_served)
{
	struct json_object *reply;
	char group[64];
	gid_t gid;

	require_root();
	gid = other_group(group, sizeof(group));
	server_start(group);
	reply = request_as_nobody(gid, echo_req);
	cr_assert_not_null(reply);
	assert_ok(reply);
	cr_expect_eq(atomic_load(&calls), 1);
	json_object_put(reply);
}

static struct ctl client_of(const char *path)
{
	struct ctl ctl = {.instance = "test", .socket_path = path};

	return ctl;
}

Test(ctl_client, a_request_gets_its_result)
{
	struct json_object *args = json_object_new_object(), *result = NULL;
	struct ctl ctl;

	server_start(NULL);
	ctl = client_of(S.path);
	json_object_object_add(args, "text", json_object_new_string("from ctl"));
	json_object_object_add(args, "n", json_object_new_int(3));
	cr_assert_eq(ctl_request(&ctl, "echo", args, &result), 0);
	cr_expect_str_eq(json_object_get_string(member(result, "text")), "from ctl");
	cr_expect_eq(json_object_get_int(member(result, "n")), 3);
	json_object_put(result);
}

static void expect_stderr(const char *mentions)
{
	char buf[1024] = {};
	FILE *f;

	fflush(stderr);
	f = cr_get_redirected_stderr();
	cr_assert_not_null(f);
	cr_assert_gt(fread(buf, 1, sizeof(buf) - 1, f), 0, "something on stderr");
	cr_expect(strstr(buf, mentions), "stderr '%s' mentions '%s'", buf, mentions);
}

Test(ctl_client, an_error_reply_is_printed_and_its_errno_returned, .init = cr_redirect_stderr)
{
	struct json_object *result = NULL;
	struct ctl ctl;

	server_start(NULL);
	ctl = client_of(S.path);
	cr_expect_eq(ctl_request(&ctl, "missing", NULL, &result), -ENOENT);
	cr_expect_null(result, "no result after an error");
	expect_stderr("fedguardctl: workload 'spiffe://td/x' is not registered\n");
}

Test(ctl_client, an_unreachable_agent_is_named, .init = cr_redirect_stderr)
{
	struct json_object *result = NULL;
	char expected[256];
	struct ctl ctl;

	make_dir();
	ctl = client_of(S.path);
	cr_expect_eq(ctl_request(&ctl, "status", NULL, &result), -ENOENT);
	snprintf(expected, sizeof(expected),
		 "fedguardctl: cannot reach fedguardd at %s: No such file or directory (is the "
		 "agent of instance 'test' running?)\n",
		 S.path);
	expect_stderr(expected);
}

Test(ctl_client, an_oversized_request_still_gets_the_reply, .init = cr_redirect_stderr)
{
	struct json_object *args = json_object_new_object(), *result = NULL;
	char *big = malloc(CONTROL_REQUEST_MAX + 1);
	struct ctl ctl;

	cr_assert_not_null(big);
	memset(big, 'a', CONTROL_REQUEST_MAX);
	big[CONTROL_REQUEST_MAX] = '\0';
	server_start(NULL);
	ctl = client_of(S.path);
	json_object_object_add(args, "text", json_object_new_string(big));
	free(big);
	/* The agent stops reading; the client's EPIPE must not hide the reply. */
	cr_expect_eq(ctl_request(&ctl, "echo", args, &result), -EINVAL);
	expect_stderr("larger than 1048576 bytes");
	cr_expect_eq(atomic_load(&calls), 0);
}

/* What a run of fedguardctl left: its exit status, stdout and stderr. */
struct ctl_run {
	int status;
	char out[8192];
	char err[4096];
};

static void slurp(int fd, char *buf, size_t len)
{
	ssize_t n;
	size_t got = 0;

	lseek(fd, 0, SEEK_SET);
	while (got + 1 < len && (n = read(fd, buf + got, len - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	close(fd);
}

/* Runs $FEDGUARDCTL --socket S.path ARGS... (NULL-terminated) to its end. */
static void run_ctl(struct ctl_run *run, const char *const args[])
{
	const char *bin = getenv("FEDGUARDCTL");
	char out_path[128], err_path[128];
	const char *argv[32];
	int out, err, status;
	size_t n = 0;
	pid_t pid;

	cr_assert_not_null(bin, "FEDGUARDCTL names the fedguardctl binary (meson test sets it)");
	argv[n++] = bin;
	argv[n++] = "--socket";
	argv[n++] = S.path;
	while (*args && n + 1 < sizeof(argv) / sizeof(argv[0]))
		argv[n++] = *args++;
	argv[n] = NULL;
	snprintf(out_path, sizeof(out_path), "%s/out-XXXXXX", S.dir);
	snprintf(err_path, sizeof(err_path), "%s/err-XXXXXX", S.dir);
	out = mkstemp(out_path);
	err = mkstemp(err_path);
	cr_assert(out >= 0 && err >= 0);
	unlink(out_path);
	unlink(err_path);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(out, STDOUT_FILENO);
		dup2(err, STDERR_FILENO);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "fedguardctl ended by signal %d", WTERMSIG(status));
	run->status = WEXITSTATUS(status);
	slurp(out, run->out, sizeof(run->out));
	slurp(err, run->err, sizeof(run->err));
}

static struct json_object *recorded_args(void)
{
	struct json_object *args;

	pthread_mutex_lock(&recorded_lock);
	args = json_tokener_parse(recorded);
	pthread_mutex_unlock(&recorded_lock);
	cr_assert_not_null(args, "recorded args: %s", recorded);
	return args;
}

/* The args the agent got equal the JSON text expected. */
static void expect_args(const char *expected)
{
	struct json_object *got = recorded_args(), *want = json_tokener_parse(expected);

	cr_assert_not_null(want, "%s", expected);
	cr_expect(json_object_equal(got, want), "args %s, expected %s",
		  json_object_to_json_string(got), expected);
	json_object_put(got);
	json_object_put(want);
}

Test(fedguardctl, usage_errors_exit_2_without_asking_the_agent)
{
	static const struct {
		const char *mentions;
		const char *argv[10];
	} cases[] = {
		{"--spiffe-id is required", {"workload", "add", "--cgroup", "x", NULL}},
		{"--spiffe-id is given twice",
		 {"workload", "add", "--spiffe-id", "a", "--spiffe-id", "b", "--cgroup", "c",
		  NULL}},
		{"'app': expected KEY=VALUE",
		 {"workload", "add", "--spiffe-id", "a", "--cgroup", "c", "--label", "app", NULL}},
		{"unknown option '--colour'", {"workload", "add", "--colour", "blue", NULL}},
		{"missing ID", {"workload", "del", NULL}},
		{"unexpected argument 'b'", {"workload", "del", "a", "b", NULL}},
		{"unknown command 'workload frob'", {"workload", "frob", NULL}},
		{"'8080' is not PORT/PROTO", {"policy", "check", "a", "b", "8080", NULL}},
		{"'0/tcp' is not PORT/PROTO", {"policy", "check", "a", "b", "0/tcp", NULL}},
		{"'80/sctp' is not PORT/PROTO", {"policy", "check", "a", "b", "80/sctp", NULL}},
		{"missing FILE", {"policy", "apply", NULL}},
		{"unexpected argument 'extra'", {"quarantine", "list", "extra", NULL}},
		{"unknown option '--bogus'", {"--bogus", "status", NULL}},
	};
	struct ctl_run run;
	size_t i;

	server_start(NULL);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		run_ctl(&run, cases[i].argv);
		cr_expect_eq(run.status, 2, "case %zu: status %d, stderr: %s", i, run.status,
			     run.err);
		cr_expect(strstr(run.err, cases[i].mentions), "case %zu: stderr '%s' mentions '%s'",
			  i, run.err, cases[i].mentions);
		cr_expect_str_empty(run.out, "case %zu: stdout '%s'", i, run.out);
	}
	cr_expect_eq(atomic_load(&calls), 0, "no request reached the agent");
}

Test(fedguardctl, workload_add_sends_its_options_as_args)
{
	static const char *const args[] = {
		"workload", "add",	"--spiffe-id", "spiffe://td/web", "--cgroup", "web",
		"--ip",	    "10.0.0.1", "--label",     "app=web",	  "--ip",     "fd00::1",
		"--label",  "tier=",	"--netns",     "/run/netns/w",	  NULL};
	struct ctl_run run;

	server_start(NULL);
	run_ctl(&run, args);
	cr_assert_eq(run.status, 0, "stderr: %s", run.err);
	cr_expect_str_eq(run.out, "workload spiffe://td/web registered as identity 256\n");
	expect_args("{\"spiffe_id\": \"spiffe://td/web\", \"cgroup\": \"web\","
		    " \"ips\": [\"10.0.0.1\", \"fd00::1\"], \"netns\": \"/run/netns/w\","
		    " \"labels\": {\"app\": \"web\", \"tier\": \"\"}}");
}

Test(fedguardctl, lists_are_aligned_tables)
{
	static const char *const args[] = {"workload", "list", NULL};
	static const char expected[] =
		"SPIFFE ID                       IDENTITY  CGROUP            IPS               NETNS  LABELS\n"
		"spiffe://td/web                 256       /sys/fs/cgroup/w  10.0.0.1,fd00::1  -      app=web\n"
		"spiffe://td/a/much/longer/name  1025      /c                -                 -      -\n";
	struct ctl_run run;

	server_start(NULL);
	run_ctl(&run, args);
	cr_assert_eq(run.status, 0, "stderr: %s", run.err);
	cr_expect_str_eq(run.out, expected);
}

Test(fedguardctl, json_output_is_the_agents_result)
{
	static const char *const args[] = {"workload", "list", "-j", NULL};
	struct json_object *got, *want = json_tokener_parse(workloads_json);
	struct ctl_run run;

	server_start(NULL);
	run_ctl(&run, args);
	cr_assert_eq(run.status, 0, "stderr: %s", run.err);
	got = json_tokener_parse(run.out);
	cr_assert_not_null(got, "stdout is JSON: %s", run.out);
	cr_expect(json_object_equal(got, want), "stdout %s", run.out);
	json_object_put(got);
	json_object_put(want);
}

Test(fedguardctl, an_agent_error_exits_1_with_its_message)
{
	static const char *const args[] = {"workload", "del", "spiffe://td/x", NULL};
	struct ctl_run run;

	server_start(NULL);
	run_ctl(&run, args);
	cr_expect_eq(run.status, 1);
	cr_expect_str_eq(run.err, "fedguardctl: workload 'spiffe://td/x' is not registered\n");
	cr_expect_str_empty(run.out);
}

Test(fedguardctl, an_absent_agent_exits_1_naming_the_socket)
{
	static const char *const args[] = {"workload", "list", NULL};
	char expected[256];
	struct ctl_run run;

	make_dir();
	run_ctl(&run, args);
	cr_expect_eq(run.status, 1);
	snprintf(expected, sizeof(expected), "cannot reach fedguardd at %s: No such file", S.path);
	cr_expect(strstr(run.err, expected), "stderr '%s' mentions '%s'", run.err, expected);
}

Test(fedguardctl, policy_apply_sends_the_file)
{
	static const char doc[] = "version: 7\nrules: []\n";
	const char *args[] = {"policy", "apply", NULL, "--dry-run", NULL};
	char path[160], want[512];
	struct ctl_run run;
	FILE *f;

	server_start(NULL);
	snprintf(path, sizeof(path), "%s/policy.yaml", S.dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(doc, f);
	fclose(f);
	args[2] = path;
	run_ctl(&run, args);
	unlink(path);
	cr_assert_eq(run.status, 0, "stderr: %s", run.err);
	snprintf(
		want, sizeof(want),
		"{\"document\": \"version: 7\\nrules: []\\n\", \"source\": \"%s\", \"dry_run\": true}",
		path);
	expect_args(want);
	cr_expect(strstr(run.out, "dry run: nothing applied"), "stdout: %s", run.out);
	cr_expect(strstr(run.out, "+  spiffe://td/web  *    443/tcp"), "stdout: %s", run.out);
}

Test(fedguardctl, policy_check_sends_port_and_protocol)
{
	static const char *const args[] = {"policy",	    "check",	"spiffe://td/a",
					   "spiffe://td/b", "8080/udp", NULL};
	struct ctl_run run;

	server_start(NULL);
	run_ctl(&run, args);
	cr_assert_eq(run.status, 0, "stderr: %s", run.err);
	expect_args("{\"from\": \"spiffe://td/a\", \"to\": \"spiffe://td/b\", \"port\": 8080,"
		    " \"protocol\": \"udp\"}");
	cr_expect_str_eq(run.out, "decision: deny\nrule:     -\nauth:     none\n"
				  "reason:   no rule allows it\n");
}
