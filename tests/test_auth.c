// SPDX-License-Identifier: Apache-2.0
/*
 * Peer authentication end to end, in the two-node world of lib/twonode.h:
 * two nodes, each a network namespace with its own fedguardd, trust domain
 * and CA, and one workload each in a namespace of its own behind its node.
 *
 * Policy on both nodes: client -> server port 8080 with auth: required.
 * The client connects; the datapath holds its SYN while agent A asks agent
 * B for the server's SVID over mTLS and both write fg_auth.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <json-c/json.h>

#include <fedguard/abi.h>

#include "lib/authtest.h"
#include "lib/pki.h"
#include "lib/require.h"
#include "lib/rogue.h"
#include "lib/sandbox.h"
#include "lib/twonode.h"

#define CLIENT TN_CLIENT
#define SERVER TN_SERVER
#define AUTH_PORT TN_AUTH_PORT

enum {
	SVID_TTL = 6,		/* seconds: renewals happen during the tests */
	WAIT_MS = 10000,
	ECHO_MS = 2000,
	SILENCE_MS = 600,
	ROUNDS = 5,
};

/* --- helpers of the tests ------------------------------------------------------------------------ */

/* fedguardctl --instance of n and args; its exit status, its stdout and stderr in out. */
__attribute__((format(printf, 4, 5))) static int ctl(struct tn_node *n, char *out, size_t len,
						      const char *fmt, ...)
{
	char args[1024], cmd[2048];
	size_t got = 0;
	va_list ap;
	FILE *p;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s --instance %s %s 2>&1", getenv("FEDGUARDCTL"), n->instance,
		 args);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while (got + 1 < len && fgets(out + got, (int)(len - got), p))
		got += strlen(out + got);
	out[got] = 0;
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static __u64 counter(const struct tn_node *n, __u32 reason)
{
	int ncpu = libbpf_num_possible_cpus(), fd = tn_map(n, "fg_counters");
	struct fg_counter c[ncpu];
	__u64 sum = 0;

	cr_assert_geq(fd, 0, "fg_counters of %s: %s", n->instance, strerror(-fd));

	cr_assert_eq(bpf_map_lookup_elem(fd, &reason, c), 0);
	close(fd);
	for (int i = 0; i < ncpu; i++)
		sum += c[i].packets;
	return sum;
}

static void flush_both(void)
{
	int r = tn_flush_both();

	cr_assert_eq(r, 0, "auth.flush: %s", strerror(-r));
}

static void register_node(struct tn_node *n)
{
	int r = tn_register(n);

	cr_assert_eq(r, 0, "registrations on %s: %s", n->instance, strerror(-r));
}

static void setup(void)
{
	char why[PATH_MAX + 128] = "";
	int r;

	fg_test_require_root_bpf();
	r = tn_setup(SVID_TTL, why, sizeof(why));
	if (r) {
		tn_teardown();	/* Criterion runs no teardown after a failed set-up */
		cr_assert_fail("%s", why);
	}
}

TestSuite(auth, .init = setup, .fini = tn_teardown, .timeout = 180);


/* A file's content, NUL-terminated; 0 or -errno. */
static int read_file(const char *path, char **out)
{
	FILE *f = fopen(path, "re");
	long len;
	char *buf;

	if (!f)
		return -errno;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)len + 1);
	if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*out = buf;
	return buf ? 0 : -EIO;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

static int median(int *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_int);
	return v[n / 2];
}

/* Whether n's agent has a flow record of kind event (observe, its last 1,000 records). */
static bool recorded(struct tn_node *n, const char *event)
{
	char needle[64];
	struct json_object *res = NULL;
	bool found = false;

	snprintf(needle, sizeof(needle), "\"event\":\"%s\"", event);
	for (long end = tn_now_ms() + WAIT_MS; !found && tn_now_ms() < end;) {
		if (tn_request(n, "observe", "{\"last\": 1000}", &res) == 0)
			found = strstr(json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN),
				       needle) != NULL;
		json_object_put(res);
		res = NULL;
		if (!found)
			usleep(20000);
	}
	return found;
}

/* --- tests ---------------------------------------------------------------------------------------- */

Test(auth, traffic_flows_only_after_the_handshake)
{
	__u64 held = counter(&tn_a, FG_REASON_DENY_AUTH_MISSING);
	int outcomes = tn_log_count(&tn_a, "auth: '");
	struct json_object *res;
	const char *text;
	int us;

	flush_both();
	/* agent B cannot answer: the client's SYN stays held, nothing gets through */
	kill(tn_b.agent, SIGSTOP);
	us = tn_first_byte();
	cr_expect_lt(us, 0, "data flowed without a handshake (%d us)", us);
	cr_expect_eq(tn_auth_expiry(&tn_a), 0, "A authenticated with a stopped peer");
	cr_expect_eq(tn_auth_expiry(&tn_b), 0);
	cr_expect_gt(counter(&tn_a, FG_REASON_DENY_AUTH_MISSING), held, "no SYN was held for auth");
	kill(tn_b.agent, SIGCONT);
	/* the handshake begun while B was stopped ends, one way or the other */
	for (long end = tn_now_ms() + WAIT_MS; tn_now_ms() < end && tn_log_count(&tn_a, "auth: '") == outcomes;)
		usleep(20000);

	/* with B answering, a cold connection works, and both sides hold the pair */
	flush_both();
	us = tn_first_byte();
	cr_expect_gt(us, 0, "no connection after the handshake: %s", strerror(-us));
	cr_expect(tn_auth_expiry(&tn_a) && tn_auth_expiry(&tn_b), "fg_auth is not written on both sides");
	cr_assert_eq(tn_request(&tn_a, "auth.list", NULL, &res), 0);
	text = json_object_to_json_string_ext(res, JSON_C_TO_STRING_NOSLASHESCAPE);
	cr_expect(strstr(text, SERVER) && strstr(text, tn_b.addr), "auth list on A: %s", text);
	json_object_put(res);
	cr_assert_eq(tn_request(&tn_b, "auth.list", NULL, &res), 0);
	text = json_object_to_json_string_ext(res, JSON_C_TO_STRING_NOSLASHESCAPE);
	cr_expect(strstr(text, CLIENT) && strstr(text, tn_a.addr), "auth list on B: %s", text);
	json_object_put(res);
	/* the outcomes reach the flow records, as observe shows them */
	cr_expect(recorded(&tn_a, "auth_failed"), "no auth_failed record of the stopped peer");
	cr_expect(recorded(&tn_a, "auth_ok"), "no auth_ok record of the handshake on A");
	cr_expect(recorded(&tn_b, "auth_ok"), "no auth_ok record of the handshake on B");

}

Test(auth, time_to_first_byte_cold_preauthenticated_cached)
{
	int cold[ROUNDS], pre[ROUNDS], cached[ROUNDS];

	for (int i = 0; i < ROUNDS; i++) {
		flush_both();
		cold[i] = tn_first_byte();
		cr_assert_gt(cold[i], 0, "cold connection: %s", strerror(-cold[i]));
		cached[i] = tn_first_byte();
		cr_assert_gt(cached[i], 0);

		flush_both();
		register_node(&tn_a);	/* a policy apply: pre-authentication of its pairs */
		cr_assert(tn_wait_auth(&tn_a, WAIT_MS), "no pre-authentication");
		pre[i] = tn_first_byte();
		cr_assert_gt(pre[i], 0);
	}
	printf("time to first byte, median of %d: cold pair %.2f ms, pre-authenticated %.2f ms, "
	       "cached %.2f ms\n", ROUNDS, median(cold, ROUNDS) / 1000.0,
	       median(pre, ROUNDS) / 1000.0, median(cached, ROUNDS) / 1000.0);
	/* the point: a cold pair never pays the 1 s SYN retransmit */
	cr_expect_lt(median(cold, ROUNDS), 500000);
}

/* A hostile asker on node A's namespace, from address from; the answer's status. */
static int rogue_from_node_a(const char *from, X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
			     char *reply, size_t len)
{
	struct at_peer p = {};
	int pipefd[2], status = -EIO;
	char ns[PATH_MAX];
	pid_t pid;

	at_addr(tn_b.addr, AUTH_PORT, &p.to, &p.to_len);
	at_addr(from, 0, &p.from, &p.from_len);
	snprintf(ns, sizeof(ns), "/var/run/netns/%s", tn_a.ns);
	cr_assert_eq(pipe(pipefd), 0);
	pid = fork();
	if (pid == 0) {
		int fd = open(ns, O_RDONLY | O_CLOEXEC);

		if (fd >= 0 && setns(fd, CLONE_NEWNET) == 0)
			status = at_rogue_ask(&p, SERVER, cert, key, chain, FG_DIR_EGRESS, reply,
					      len);
		if (write(pipefd[1], &status, sizeof(status)) < 0 ||
		    write(pipefd[1], reply, len) < 0)
			_exit(1);
		_exit(0);
	}
	close(pipefd[1]);
	if (read(pipefd[0], &status, sizeof(status)) != sizeof(status) ||
	    read(pipefd[0], reply, len) < 0)
		status = -EIO;
	close(pipefd[0]);
	waitpid(pid, NULL, 0);
	return status;
}

Test(auth, impostors_cannot_authenticate)
{
	struct at_ca rogue;
	X509 *cert;
	EVP_PKEY *key;
	char reply[256] = "";
	int r;

	/* node A's operator cannot even register a workload of b.test there */
	r = tn_request(&tn_a, "workload.add",
		    "{\"spiffe_id\": \"spiffe://b.test/server2\", \"cgroup\": \"/\"}", NULL);
	cr_expect_eq(r, -EINVAL, "a foreign workload was registered: %d", r);

	flush_both();
	/* the client's ID in a leaf of b.test's CA: b.test cannot vouch for a.test */
	cr_assert_eq(at_forge_leaf(CLIENT, tn_b.ca.node, tn_b.ca.node_key, time(NULL), 3600, &cert, &key), 0);
	r = rogue_from_node_a(tn_a.addr, cert, key, tn_b.ca.node_chain, reply, sizeof(reply));
	cr_expect_eq(r, 1, "forged client not refused (%d): %s", r, reply);
	cr_expect(strstr(reply, "untrusted"), "%s", reply);
	X509_free(cert);
	EVP_PKEY_free(key);

	/* a CA that calls itself a.test, but is not in a.test's bundle */
	cr_assert_eq(at_ca_make("a.test", time(NULL), 86400, &rogue), 0);
	cr_assert_eq(at_forge_leaf(CLIENT, rogue.node, rogue.node_key, time(NULL), 3600, &cert, &key), 0);
	r = rogue_from_node_a(tn_a.addr, cert, key, rogue.node_chain, reply, sizeof(reply));
	cr_expect_eq(r, 1, "rogue CA's client not refused (%d): %s", r, reply);
	X509_free(cert);
	EVP_PKEY_free(key);
	at_ca_free(&rogue);

	/* a genuine SVID of the client, stolen and used from another address than node A's */
	cr_assert_eq(sb_sh("ip -n %s addr add 10.233.0.9/24 dev n0", tn_a.ns), 0);
	cr_assert_eq(at_forge_leaf(CLIENT, tn_a.ca.node, tn_a.ca.node_key, time(NULL), 3600, &cert, &key), 0);
	r = rogue_from_node_a("10.233.0.9", cert, key, tn_a.ca.node_chain, reply, sizeof(reply));
	cr_expect_eq(r, 1, "the client's SVID from elsewhere was accepted (%d): %s", r, reply);
	cr_expect(strstr(reply, "another node"), "%s", reply);
	X509_free(cert);
	EVP_PKEY_free(key);
	cr_expect_eq(tn_auth_expiry(&tn_b), 0, "B authenticated an impostor");
}

Test(auth, deleting_a_trust_domain_cuts_its_sockets)
{
	struct json_object *res, *v;
	char *doc = NULL, path[PATH_MAX + 32];
	struct json_object *args;
	const char *text;
	int fd, us;

	fd = tn_connect_client();
	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	cr_assert_eq(sb_echo(fd, "before", ECHO_MS), 0);
	/* the client's socket, bound to both identities and authenticated */
	cr_assert_eq(tn_request(&tn_a, "sockets.list", NULL, &res), 0);
	text = json_object_to_json_string_ext(res, JSON_C_TO_STRING_NOSLASHESCAPE);
	cr_expect(strstr(text, "\"local\":\"" CLIENT "\"") && strstr(text, "\"peer\":\"" SERVER "\"") &&
			  strstr(text, "\"state\":\"allowed\"") && strstr(text, "\"auth\":\"mtls\""),
		  "sockets list: %s", text);
	json_object_put(res);

	cr_assert_eq(tn_request(&tn_a, "bundle.del", "{\"trust_domain\": \"b.test\"}", &res), 0);
	cr_expect(json_object_object_get_ex(res, "sockets_destroyed", &v) &&
			  json_object_get_int(v) >= 1,
		  "bundle.del: %s", json_object_to_json_string(res));
	json_object_put(res);
	cr_expect_eq(sb_echo(fd, "after", ECHO_MS), -ECONNABORTED,
		     "the connection to b.test survived the deletion of its bundle");
	close(fd);
	cr_expect_eq(tn_auth_expiry(&tn_a), 0, "fg_auth of b.test survived");
	us = tn_first_byte();
	cr_expect_lt(us, 0, "a new connection to b.test without its bundle");
	cr_assert_eq(tn_request(&tn_a, "bundle.list", NULL, &res), 0);
	cr_expect_null(strstr(json_object_to_json_string(res), "b.test"));
	json_object_put(res);

	/* the bundle back, by bundle.set: traffic again */
	snprintf(path, sizeof(path), "%s/bundle.json", tn_b.dir);
	cr_assert_eq(read_file(path, &doc), 0);
	args = json_object_new_object();
	json_object_object_add(args, "trust_domain", json_object_new_string("b.test"));
	json_object_object_add(args, "document", json_object_new_string(doc));
	cr_assert_eq(tn_request(&tn_a, "bundle.set", json_object_to_json_string(args), NULL), 0);
	json_object_put(args);
	free(doc);
	cr_assert_eq(tn_request(&tn_a, "auth.flush", NULL, NULL), 0);	/* no backoff */
	us = tn_first_byte();
	cr_expect_gt(us, 0, "no connection with the bundle back: %s", strerror(-us));
}

Test(auth, svid_rotation_keeps_connections_alive)
{
	int fd = tn_connect_client(), renewed = tn_log_count(&tn_a, "renewed");
	__u64 first = tn_auth_expiry(&tn_a);
	char msg[32];

	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	/* two and a half SVID lifetimes, a message every half second */
	for (int i = 0; i < 5 * SVID_TTL; i++) {
		snprintf(msg, sizeof(msg), "message %d", i);
		cr_assert_eq(sb_echo(fd, msg, ECHO_MS), 0, "%s lost after %d ms", msg, i * 500);
		usleep(500 * 1000);
	}
	close(fd);
	cr_expect_gt(tn_log_count(&tn_a, "renewed"), renewed, "no SVID was renewed");
	cr_expect_gt(tn_auth_expiry(&tn_a), first + 1000000000ull * SVID_TTL,
		     "the pair was not authenticated again with the new SVIDs");
}

Test(auth, expiry_without_renewal_stops_new_traffic)
{
	int fd = tn_connect_client(), us;
	__u64 expiry;

	cr_assert_geq(fd, 0);
	cr_assert_eq(sb_echo(fd, "before", ECHO_MS), 0);
	/* neither agent renews anything */
	kill(tn_a.agent, SIGSTOP);
	kill(tn_b.agent, SIGSTOP);
	expiry = tn_auth_expiry(&tn_a);
	cr_assert_gt(expiry, 0);
	while (tn_mono_ns() < expiry + 100000000ull)
		usleep(50 * 1000);
	cr_expect_eq(sb_echo(fd, "expired", SILENCE_MS), -ETIMEDOUT,
		     "traffic flowed after the authentication expired");
	us = tn_first_byte();
	cr_expect_lt(us, 0, "a new connection without authentication");
	close(fd);
	kill(tn_a.agent, SIGCONT);
	kill(tn_b.agent, SIGCONT);
	/* the agents back: a new connection is authenticated again */
	cr_assert_eq(tn_request(&tn_a, "auth.flush", NULL, NULL), 0);
	us = tn_first_byte();
	cr_expect_gt(us, 0, "no recovery: %s", strerror(-us));
}

Test(auth, fedguardctl_shows_sockets_authentications_and_bundles)
{
	static char out[16384];
	int fd = tn_connect_client();

	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	cr_assert_eq(sb_echo(fd, "hello", ECHO_MS), 0);

	cr_expect_eq(ctl(&tn_a, out, sizeof(out), "sockets list"), 0, "%s", out);
	cr_expect(strstr(out, CLIENT) && strstr(out, SERVER) && strstr(out, "allowed") &&
			  strstr(out, "egress") && strstr(out, "mtls"),
		  "sockets list on A:\n%s", out);
	cr_expect_eq(ctl(&tn_b, out, sizeof(out), "sockets list"), 0, "%s", out);
	cr_expect(strstr(out, "ingress") && strstr(out, CLIENT), "sockets list on B:\n%s", out);

	cr_expect_eq(ctl(&tn_a, out, sizeof(out), "auth list"), 0, "%s", out);
	cr_expect(strstr(out, SERVER) && strstr(out, tn_b.addr) && strstr(out, " s"),
		  "auth list:\n%s", out);
	cr_expect_eq(ctl(&tn_a, out, sizeof(out), "-j auth list"), 0, "%s", out);
	cr_expect(strstr(out, "\"expires_in\"") && strstr(out, "\"trust_domain\""), "%s", out);

	cr_expect_eq(ctl(&tn_a, out, sizeof(out), "bundle list"), 0, "%s", out);
	cr_expect(strstr(out, "a.test") && strstr(out, "b.test") && strstr(out, "yes"),
		  "bundle list:\n%s", out);
	cr_expect_eq(ctl(&tn_a, out, sizeof(out), "bundle del a.test"), 1, "%s", out);
	cr_expect(strstr(out, "own trust domain"), "%s", out);
	/* the same roots as PEM: nothing changes for the connection */
	cr_expect_eq(ctl(&tn_a, out, sizeof(out), "bundle set b.test %s/root.pem", tn_b.dir), 0, "%s",
		     out);
	cr_expect(strstr(out, "sockets destroyed: 0"), "%s", out);
	cr_expect_eq(sb_echo(fd, "still there", ECHO_MS), 0);

	cr_expect_eq(ctl(&tn_a, out, sizeof(out), "auth flush"), 0, "%s", out);
	cr_expect(strstr(out, "1 authentications removed"), "%s", out);
	/* the connection's next packets ask again: it keeps working */
	cr_expect_eq(sb_echo(fd, "after the flush", ECHO_MS), 0, "flush broke the connection");
	close(fd);
}
