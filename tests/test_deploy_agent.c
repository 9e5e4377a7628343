// SPDX-License-Identifier: Apache-2.0
/*
 * fedguardd as the deployments run it (deploy/): inside a cgroup namespace
 * with the host's cgroup2 hierarchy mounted, as a Kubernetes pod sees it;
 * with exactly the capabilities the DaemonSet grants, and without
 * CAP_SYS_ADMIN to show what needs it; telling systemd READY=1, RELOADING=1
 * and STOPPING=1 over $NOTIFY_SOCKET; reloading its --config file on
 * SIGHUP. Each test starts a real agent on the sandbox (lib/sandbox.h),
 * through a small wrapper script where the way it runs differs.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include <fedguard/abi.h>

#include "lib/require.h"
#include "lib/sandbox.h"
#include "sys.h"

enum {
	ECHO_MS = 2000,
	WAIT_MS = 10000,
	STEP_MS = 20,
	NOTIFY_MS = 60000, /* READY=1 comes after BPF verification */
};

#define CLIENT "spiffe://fedguard.test/client"
#define SERVER "spiffe://fedguard.test/server"

static struct sandbox sb;
static char agent_bin[PATH_MAX];	/* the real fedguardd */
static char wrapper[PATH_MAX];		/* a script that runs it, when set */
static char cg_agent[PATH_MAX];		/* the agent's own cgroup, when set */
static char cg_child[PATH_MAX];		/* a cgroup below the client's, when set */
static char config_path[PATH_MAX];
static char notify_path[100];		/* fits sun_path */
static int notify_fd = -1;

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_geq(fputs(text, f), 0);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(chmod(path, mode), 0);
}

static char *read_text(const char *path)
{
	static char buf[1 << 20];
	FILE *f = fopen(path, "r");
	size_t n = 0;

	buf[0] = '\0';
	if (f) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	return buf;
}

static bool log_has(const char *needle)
{
	return strstr(read_text(sb_log_path(&sb)), needle) != NULL;
}

/* Waits (bounded) for the agent's log to say @needle. */
static bool log_wait(const char *needle)
{
	for (long end = now_ms() + WAIT_MS; now_ms() < end; usleep(STEP_MS * 1000))
		if (log_has(needle))
			return true;
	return false;
}

static void setup(void)
{
	int r;

	fg_test_require_root_bpf();
	cr_assert_not_null(getenv("FEDGUARDD"), "FEDGUARDD is not set");
	snprintf(agent_bin, sizeof(agent_bin), "%s", getenv("FEDGUARDD"));
	r = sb_setup(&sb, false);
	cr_assert_eq(r, 0, "sandbox: %s", strerror(-r));
}

static void teardown(void)
{
	setenv("FEDGUARDD", agent_bin, 1);	/* sb_teardown uninstalls with it */
	for (int i = 0; cg_child[0] && i < 50 && rmdir(cg_child) && errno == EBUSY; i++)
		usleep(20000);
	cg_child[0] = '\0';
	sb_teardown(&sb);
	if (wrapper[0])
		unlink(wrapper);
	for (int i = 0; cg_agent[0] && i < 50; i++) {
		if (sb_sh("rmdir %s/pod/container %s/pod %s 2>/dev/null", cg_agent, cg_agent,
			  cg_agent) == 0)
			break;
		usleep(20000);
	}
	if (config_path[0])
		unlink(config_path);
	if (notify_fd >= 0)
		close(notify_fd);
	if (notify_path[0])
		unlink(notify_path);
	unsetenv("NOTIFY_SOCKET");
	wrapper[0] = cg_agent[0] = config_path[0] = notify_path[0] = '\0';
	notify_fd = -1;
}

/*
 * Starts the agent through a shell script whose body runs "$AGENT" "$@",
 * with @extra arguments (NULL, or "--iface"); what sb_agent_start_args() did.
 */
static int start_wrapped(const char *body, const char *extra1, const char *extra2)
{
	char script[PATH_MAX * 3];
	int r;

	snprintf(wrapper, sizeof(wrapper), "/tmp/fgwrap-%d.sh", getpid());
	snprintf(script, sizeof(script), "#!/bin/sh\nAGENT='%s'\n%s\n", agent_bin, body);
	write_text(wrapper, script, 0700);
	setenv("FEDGUARDD", wrapper, 1);
	r = sb_agent_start_args(&sb, extra1, extra2, NULL);
	setenv("FEDGUARDD", agent_bin, 1);
	return r;
}

static __u32 add(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static __u32 add(const char *command, const char *fmt, ...)
{
	char args[PATH_MAX + 512];
	va_list ap;
	__u32 id;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	id = sb_request_id(&sb, command, args);
	cr_assert_geq(id, FG_ID_DYNAMIC_MIN, "%s %s failed", command, args);
	return id;
}

/* The client workload (with its namespace) and the server endpoint; client -> server:8080. */
static void register_and_allow(void)
{
	char doc[512];

	add("workload.add",
	    "{\"spiffe_id\": \"%s\", \"cgroup\": \"%s\", \"ips\": [\"%s\"], "
	    "\"netns\": \"/var/run/netns/%s\"}",
	    CLIENT, sb.cg_client, SB_CLIENT_V4, sb.ns_client);
	add("endpoint.add", "{\"spiffe_id\": \"%s\", \"ips\": [\"%s\"]}", SERVER, SB_SERVER_V4);
	snprintf(doc, sizeof(doc),
		 "version: 1\nrules:\n  - name: client-to-server\n    action: allow\n"
		 "    transport: authenticated\n"
		 "    from: {spiffe_id: %s}\n    to: {spiffe_id: %s}\n    ports: [%d]\n",
		 CLIENT, SERVER, SB_ECHO_PORT);
	cr_assert_eq(sb_policy_apply(&sb, doc), 0, "policy.apply failed");
}

/* Allowed traffic flows, denied traffic fails with EPERM. */
static void expect_enforcing(void)
{
	int fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);

	cr_assert_geq(fd, 0, "allowed connect: %s; agent log:\n%s", strerror(-fd),
		      read_text(sb_log_path(&sb)));
	cr_expect_eq(sb_echo(fd, "allowed", ECHO_MS), 0);
	close(fd);
	fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_OTHER_PORT);
	cr_expect_eq(fd, -EPERM, "denied connect: %d", fd);
	if (fd >= 0)
		close(fd);
}

/*
 * The root field of the first cgroup2 line of mountinfo as process @pid
 * reads it: the kernel writes it relative to the reader's cgroup namespace.
 */
static void cgroup2_root_of(pid_t pid, char *root, size_t len)
{
	char out[64], r[PATH_MAX];
	const char *line;

	snprintf(out, sizeof(out), "/tmp/fgmountinfo-%d", getpid());
	cr_assert_eq(sb_sh("nsenter --cgroup=/proc/%d/ns/cgroup -- grep ' - cgroup2 ' "
			   "/proc/self/mountinfo > %s", pid, out), 0);
	line = read_text(out);
	unlink(out);
	root[0] = '\0';
	if (sscanf(line, "%*s %*s %*s %4095s", r) == 1)
		snprintf(root, len, "%s", r);
}

/* --- a cgroup namespace, as in a Kubernetes pod ---------------------------------------- */

TestSuite(deploy_agent, .init = setup, .fini = teardown, .timeout = 180);

Test(deploy_agent, enforces_from_inside_a_cgroup_namespace)
{
	struct sys_mount m;
	char body[PATH_MAX * 2], root[PATH_MAX];
	int fd;

	/*
	 * The agent's own cgroup, outside the managed subtree and three levels
	 * deep like a pod's container (kubepods/QoS/pod/container), becomes the
	 * root of its cgroup namespace.
	 */
	cr_assert_eq(sys_cgroup2_mount(&m), 0);
	snprintf(cg_agent, sizeof(cg_agent), "%.3000s/fgtest%d-agent", m.target, getpid());
	cr_assert_eq(sb_sh("mkdir -p %s/pod/container", cg_agent), 0);
	snprintf(body, sizeof(body),
		 "echo $$ > '%s/pod/container/cgroup.procs' && "
		 "exec unshare --cgroup -- \"$AGENT\" \"$@\"", cg_agent);
	cr_assert_eq(start_wrapped(body, NULL, NULL), 0, "fedguardd did not become ready:\n%s",
		     read_text(sb_log_path(&sb)));

	/* what a pod shows: the host's hierarchy mounted, its root outside the namespace */
	cgroup2_root_of(sb.agent, root, sizeof(root));
	cr_assert(strncmp(root, "/../../..", 9) == 0,
		  "the agent's mountinfo shows cgroup2 root '%s': no cgroup namespace", root);
	register_and_allow();
	expect_enforcing();

	/*
	 * A process below the registered cgroup, as a container's is below its
	 * pod's, gets the identity of that ancestor: the ancestor search starts
	 * at the managed subtree's level, which the agent must count from the
	 * hierarchy's root and not from its namespace's.
	 */
	snprintf(cg_child, sizeof(cg_child), "%.4000s/container", sb.cg_client);
	cr_assert_eq(mkdir(cg_child, 0755), 0);
	fd = sb_connect_in(cg_child, sb.ns_client, AF_INET, SOCK_STREAM, SB_SERVER_V4,
			   SB_ECHO_PORT);
	cr_assert_geq(fd, 0, "a process below the registered cgroup: %s", strerror(-fd));
	cr_expect_eq(sb_echo(fd, "from below", ECHO_MS), 0);
	close(fd);
	fd = sb_connect_in(cg_child, sb.ns_client, AF_INET, SOCK_STREAM, SB_SERVER_V4,
			   SB_OTHER_PORT);
	cr_expect_eq(fd, -EPERM);
}

/* --- capabilities ------------------------------------------------------------------------ */

static const struct {
	const char *name;
	int bit;
} cap_bits[] = {
	{"CHOWN", 0}, {"DAC_OVERRIDE", 1}, {"NET_ADMIN", 12}, {"NET_RAW", 13},
	{"SYS_PTRACE", 19}, {"SYS_ADMIN", 21}, {"SYS_RESOURCE", 24}, {"PERFMON", 38}, {"BPF", 39},
};

/* The capabilities the DaemonSet adds (deploy/kubernetes/base/daemonset.yaml), in order. */
static int daemonset_caps(char names[][32], int max)
{
	char path[PATH_MAX], list[256], *tok, *save = NULL;
	const char *yaml;
	regmatch_t m[2];
	regex_t re;
	int n = 0;

	snprintf(path, sizeof(path), "%s/deploy/kubernetes/base/daemonset.yaml",
		 getenv("FG_SOURCE_ROOT"));
	yaml = read_text(path);
	cr_assert_eq(regcomp(&re, "\n +add: \\[([A-Z_, ]+)\\]", REG_EXTENDED), 0);
	cr_assert_eq(regexec(&re, yaml, 2, m, 0), 0, "no capabilities 'add: [...]' in %s", path);
	snprintf(list, sizeof(list), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), yaml + m[1].rm_so);
	regfree(&re);
	for (tok = strtok_r(list, ", ", &save); tok && n < max; tok = strtok_r(NULL, ", ", &save))
		snprintf(names[n++], 32, "%s", tok);
	cr_assert_gt(n, 0, "the DaemonSet adds no capability");
	return n;
}

static int cap_bit(const char *name)
{
	for (size_t i = 0; i < sizeof(cap_bits) / sizeof(cap_bits[0]); i++)
		if (!strcmp(cap_bits[i].name, name))
			return cap_bits[i].bit;
	cr_assert_fail("capability %s is not in the test's table", name);
	return -1;
}

static char ns_agent[32];	/* the agent's own network namespace, when set */

/*
 * Starts fedguardd with the DaemonSet's capabilities but @without, in a
 * network namespace of its own with the TC perimeter on its lo (the
 * DaemonSet's node has interfaces: --iface is part of what is granted
 * for). Returns what sb_agent_start_args() did; *mask the capability set.
 */
static int start_with_caps(const char *without, unsigned long long *mask)
{
	char names[16][32], body[2048], caps[512] = "";
	int n = daemonset_caps(names, 16);

	*mask = 0;
	for (int i = 0; i < n; i++) {
		if (without && !strcmp(names[i], without))
			continue;
		*mask |= 1ULL << cap_bit(names[i]);
		snprintf(caps + strlen(caps), sizeof(caps) - strlen(caps), ",+%.31s", names[i]);
	}
	for (char *c = caps; *c; c++)
		*c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
	if (!ns_agent[0]) {
		snprintf(ns_agent, sizeof(ns_agent), "fga%d", getpid());
		cr_assert_eq(sb_sh("ip netns add %s", ns_agent), 0);
	}
	snprintf(body, sizeof(body),
		 "exec nsenter --net=/var/run/netns/%s -- setpriv --bounding-set -all%s "
		 "--inh-caps -all -- \"$AGENT\" \"$@\"", ns_agent, caps);
	return start_wrapped(body, "--iface", "lo");
}

/* Stops the agent and uninstalls it where it ran, then drops its namespace. */
static void caps_teardown(void)
{
	if (ns_agent[0]) {
		sb_agent_stop(&sb, SIGTERM);
		sb_sh("nsenter --net=/var/run/netns/%s -- %s --instance %s --uninstall -q", ns_agent,
		      agent_bin, sb.instance);
		sb_sh("ip netns del %s", ns_agent);
		ns_agent[0] = '\0';
	}
	teardown();
}

/* quarantine.add of the client while it holds a connection: the result and the socket. */
static void quarantine_client(int *destroyed, int *sock_err)
{
	struct json_object *args = json_object_new_object(), *result = NULL, *v;
	int fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);
	struct pollfd p;
	char c;

	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	cr_assert_eq(sb_echo(fd, "before", ECHO_MS), 0);
	json_object_object_add(args, "target", json_object_new_string(CLIENT));
	json_object_object_add(args, "reason", json_object_new_string("capabilities test"));
	cr_assert_eq(sb_request(&sb, "quarantine.add", args, &result), 0);
	cr_assert(json_object_object_get_ex(result, "sockets_destroyed", &v));
	*destroyed = json_object_get_int(v);
	json_object_put(result);
	/* a destroyed socket reads an error at once; a live one has nothing to read */
	p = (struct pollfd){ .fd = fd, .events = POLLIN };
	*sock_err = 0;
	if (poll(&p, 1, 500) == 1 && read(fd, &c, 1) < 0)
		*sock_err = errno;
	close(fd);
}

TestSuite(deploy_caps, .init = setup, .fini = caps_teardown, .timeout = 180);

Test(deploy_caps, capabilities_of_the_daemonset_suffice)
{
	unsigned long long mask, eff = 0;
	char status[64];
	const char *line;
	int destroyed, sock_err, r;

	r = start_with_caps(NULL, &mask);
	cr_assert_eq(r, 0, "fedguardd did not start with the DaemonSet's capabilities (%s):\n%s",
		     strerror(-r), read_text(sb_log_path(&sb)));
	snprintf(status, sizeof(status), "/proc/%d/status", sb.agent);
	line = strstr(read_text(status), "CapEff:");
	cr_assert(line && sscanf(line, "CapEff: %llx", &eff) == 1);
	cr_expect_eq(eff, mask, "the agent runs with %llx, the DaemonSet grants %llx", eff, mask);
	register_and_allow();
	expect_enforcing();
	quarantine_client(&destroyed, &sock_err);
	cr_expect_eq(destroyed, 1, "quarantine destroyed %d sockets", destroyed);
	cr_expect(sock_err == ECONNABORTED || sock_err == ECONNRESET,
		  "the quarantined connection saw %s", strerror(sock_err));
}

Test(deploy_caps, each_capability_of_the_daemonset_is_needed)
{
	char names[16][32];
	unsigned long long mask;
	int n = daemonset_caps(names, 16), r;

	for (int i = 0; i < n; i++) {
		r = start_with_caps(names[i], &mask);
		cr_expect_neq(r, 0, "fedguardd started without CAP_%s: the DaemonSet grants more "
			      "than it needs", names[i]);
		cr_expect(log_has("Operation not permitted"), "without CAP_%s:\n%s", names[i],
			  read_text(sb_log_path(&sb)));
		if (r == 0)
			sb_agent_stop(&sb, SIGTERM);
	}
}

/* --- sd_notify and SIGHUP ---------------------------------------------------------------- */

static void notify_listen(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int one = 1;

	snprintf(notify_path, sizeof(notify_path), "/tmp/fgnotify-%d.sock", getpid());
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", notify_path);
	unlink(notify_path);
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(notify_fd, 0);
	cr_assert_eq(setsockopt(notify_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
	cr_assert_eq(bind(notify_fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	setenv("NOTIFY_SOCKET", notify_path, 1);
}

/* The next datagram on the notify socket (bounded), and the pid that sent it. */
static void notify_expect(const char *want, int timeout_ms)
{
	char buf[256] = "", cbuf[CMSG_SPACE(sizeof(struct ucred))];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct pollfd p = { .fd = notify_fd, .events = POLLIN };
	struct cmsghdr *cm;
	struct ucred cred = {};
	ssize_t n;

	cr_assert_eq(poll(&p, 1, timeout_ms), 1, "no '%s' on NOTIFY_SOCKET", want);
	n = recvmsg(notify_fd, &msg, 0);
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
		if (cm->cmsg_type == SCM_CREDENTIALS)
			memcpy(&cred, CMSG_DATA(cm), sizeof(cred));
	cr_expect_str_eq(buf, want);
	cr_expect_eq(cred.pid, sb.agent, "sent by pid %d, the agent is %d", cred.pid, sb.agent);
}

static void write_config(const char *text)
{
	write_text(config_path, text, 0600);
}

/* The kinds of the agent's alerts, joined. */
static void alert_kinds(char *out, size_t len)
{
	struct json_object *result = NULL, *list;

	out[0] = '\0';
	cr_assert_eq(sb_request(&sb, "alerts", json_object_new_object(), &result), 0);
	cr_assert(json_object_object_get_ex(result, "alerts", &list));
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		struct json_object *kind = json_object_object_get(json_object_array_get_idx(list, i),
								   "kind");

		snprintf(out + strlen(out), len - strlen(out), "%s ", json_object_get_string(kind));
	}
	json_object_put(result);
}

static void denied_connects(int n)
{
	for (int i = 0; i < n; i++)
		cr_expect_eq(sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_OTHER_PORT),
			     -EPERM);
}

Test(deploy_agent, notifies_and_reloads_its_configuration_on_sighup)
{
	char kinds[512];
	bool raised = false;

	snprintf(config_path, sizeof(config_path), "/tmp/fgcfg-%d.yaml", getpid());
	write_config("alert-deny-threshold: 1000\nalert-window: 300\nevents-rate: 1000\n");
	notify_listen();
	cr_assert_eq(sb_agent_start_args(&sb, "--config", config_path, NULL), 0,
		     "fedguardd did not start; log:\n%s", read_text(sb_log_path(&sb)));
	notify_expect("READY=1", NOTIFY_MS);
	register_and_allow();

	/* five denies: nothing at a threshold of 1000 */
	denied_connects(5);
	usleep(300 * 1000);
	alert_kinds(kinds, sizeof(kinds));
	cr_expect_str_eq(kinds, "");

	/* a run-time key and a restart key change */
	write_config("alert-deny-threshold: 3\nalert-window: 300\nevents-rate: 500\n");
	cr_assert_eq(kill(sb.agent, SIGHUP), 0);
	notify_expect("RELOADING=1", WAIT_MS);
	notify_expect("READY=1", WAIT_MS);
	cr_expect(log_has("SIGHUP: 'alert-deny-threshold' changed: applied"), "%s",
		  read_text(sb_log_path(&sb)));
	cr_expect(log_has("SIGHUP: 'events-rate' changed: it needs a restart of fedguardd, "
			  "the running value stays"));
	cr_expect(!log_has("SIGHUP: 'alert-window' changed"), "an unchanged key was reported");

	/* the open window has 5 denies; the next one meets the new threshold */
	denied_connects(1);
	for (long end = now_ms() + WAIT_MS; !raised && now_ms() < end; usleep(STEP_MS * 1000)) {
		alert_kinds(kinds, sizeof(kinds));
		raised = strstr(kinds, "deny_rate") != NULL;
	}
	cr_expect(raised, "no deny_rate alert after lowering the threshold: '%s'", kinds);

	/* a broken file changes nothing and is said so */
	write_config("alert-deny-threshold: [1]\nbogus: 2\n");
	cr_assert_eq(kill(sb.agent, SIGHUP), 0);
	notify_expect("RELOADING=1", WAIT_MS);
	notify_expect("READY=1", WAIT_MS);
	cr_expect(log_has(":1:23: key 'alert-deny-threshold': a list, but the option is not "
			  "repeatable"), "%s", read_text(sb_log_path(&sb)));
	cr_expect(log_has(":2:1: unknown key 'bogus'"));
	cr_expect(log_has("has errors (above): nothing changed"));
	expect_enforcing();

	/* the same file as before the broken one: the applied key is not reported again */
	write_config("alert-deny-threshold: 3\nalert-window: 300\nevents-rate: 500\n");
	cr_assert_eq(kill(sb.agent, SIGHUP), 0);
	notify_expect("RELOADING=1", WAIT_MS);
	notify_expect("READY=1", WAIT_MS);
	cr_assert(log_wait("reloaded"));
	cr_expect_eq(sb_sh("test $(grep -c \"'alert-deny-threshold' changed\" %s) -eq 1",
			   sb_log_path(&sb)), 0, "reported twice:\n%s", read_text(sb_log_path(&sb)));

	cr_assert_eq(kill(sb.agent, SIGTERM), 0);
	notify_expect("STOPPING=1", WAIT_MS);
}

Test(deploy_agent, sighup_without_a_file_is_no_error)
{
	cr_assert_eq(sb_agent_start(&sb), 0);
	cr_assert_eq(kill(sb.agent, SIGHUP), 0);
	cr_expect(log_wait("SIGHUP: fedguardd runs without --config: nothing to reload"));
	register_and_allow();
	expect_enforcing();
}

/* --- the DaemonSet's probes ---------------------------------------------------------------- */

/* The shell command of the DaemonSet's readinessProbe, for instance @instance. */
static void readiness_probe(char *out, size_t len, const char *instance)
{
	char path[PATH_MAX], cmd[512], *at;
	const char *yaml, *p;
	regmatch_t m[2];
	regex_t re;

	snprintf(path, sizeof(path), "%s/deploy/kubernetes/base/daemonset.yaml",
		 getenv("FG_SOURCE_ROOT"));
	yaml = read_text(path);
	p = strstr(yaml, "readinessProbe:");
	cr_assert_not_null(p, "the DaemonSet has no readinessProbe");
	cr_assert_eq(regcomp(&re, "command: \\[/bin/sh, -c, '([^']+)'\\]", REG_EXTENDED), 0);
	cr_assert_eq(regexec(&re, p, 2, m, 0), 0, "the readinessProbe is not a shell command");
	snprintf(cmd, sizeof(cmd), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), p + m[1].rm_so);
	regfree(&re);
	at = strstr(cmd, "fedguardctl ");
	cr_assert_not_null(at, "the readinessProbe does not ask fedguardctl: %s", cmd);
	snprintf(out, len, "%.*s%s --instance %s %s", (int)(at - cmd), cmd, getenv("FEDGUARDCTL"),
		 instance, at + strlen("fedguardctl "));
}

Test(deploy_agent, the_readiness_probe_follows_the_agent)
{
	char probe[1024];

	readiness_probe(probe, sizeof(probe), sb.instance);
	cr_assert_eq(sb_agent_start(&sb), 0);
	cr_expect_eq(sb_sh("%s", probe), 0, "not ready while the agent serves: %s", probe);
	cr_assert_eq(sb_agent_stop(&sb, SIGTERM), 0);
	cr_expect_neq(sb_sh("%s", probe), 0, "ready without an agent: %s", probe);
}
