// SPDX-License-Identifier: Apache-2.0
/*
 * The rolling upgrade of a node, as the DaemonSet and the systemd unit do
 * it: the running fedguardd gets SIGTERM and exits with everything pinned,
 * the node runs a while with no agent at all, then a new build starts and
 * adopts the pinned links and maps. All along, a workload keeps one allowed
 * connection busy, keeps opening new allowed ones, and keeps trying
 * connections that policy denies and connections to a quarantined peer.
 * Not one allowed connection may fail, not one denied one may get through,
 * and the quarantine must be the same before and after. Then the same back
 * (a rollback).
 *
 * The new build is build/agent/fedguardd-next: main.c built once more with
 * another version string, the same libfedguard and BPF object
 * (agent/meson.build says why that is the upgrade path).
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <json-c/json.h>

#include <fedguard/abi.h>

#include "lib/require.h"
#include "lib/sandbox.h"

#define CLIENT "spiffe://fedguard.test/client"
#define SERVER "spiffe://fedguard.test/server"
#define BAD    "spiffe://fedguard.test/quarantined"
#define BAD_V4 "10.231.0.3" /* another address of the server namespace */

enum {
	IO_MS = 2000,		/* one echo, one connect */
	PROGRESS = 50,		/* generator rounds each phase must see */
	PHASE_MS = 30000,	/* bound for those rounds */
	GENERATOR_S = 240,	/* the generator stops by itself after this */
	LINKS_MAX = 16,
};

/* What the generator saw, shared with it (one writer: the generator). */
struct traffic {
	volatile int stop;
	volatile int ready;	/* the busy connection is up; -errno if it could not be */
	volatile long rounds;
	volatile long busy_ok, busy_failed;
	volatile long new_ok, new_failed;
	volatile long denied_eperm, denied_passed, denied_other;
	volatile long quarantined_eperm, quarantined_passed, quarantined_other;
	volatile int busy_errno, new_errno, other_errno;
};

static struct sandbox sb;
static struct traffic *tr;
static pid_t generator;
static __u32 bad_id;

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- the workload's traffic --------------------------------------------------------------- */

/* A TCP connect bounded in time: the fd, or -errno. */
static int connect_to(const char *addr, int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct pollfd p;
	socklen_t len = sizeof(int);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), err = 0;

	if (fd < 0)
		return -errno;
	inet_pton(AF_INET, addr, &sin.sin_addr);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 && errno != EINPROGRESS) {
		err = -errno;
		close(fd);
		return err;
	}
	p = (struct pollfd){ .fd = fd, .events = POLLOUT };
	if (poll(&p, 1, IO_MS) != 1)
		err = -ETIMEDOUT;
	else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err)
		err = -err;
	if (err) {
		close(fd);
		return err;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

/* Sends msg and reads it back within IO_MS; 0 or -errno. */
static int echo(int fd, const char *msg)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	size_t len = strlen(msg), got = 0;
	char buf[64];
	ssize_t n;

	if (send(fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len)
		return -errno;
	while (got < len) {
		if (poll(&p, 1, IO_MS) != 1)
			return -ETIMEDOUT;
		n = recv(fd, buf + got, sizeof(buf) - got, 0);
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		got += (size_t)n;
	}
	return memcmp(buf, msg, len) ? -EBADMSG : 0;
}

/* A connect that must be refused: counts EPERM, a connection, anything else. */
static void attempt_denied(const char *addr, int port, volatile long *eperm,
			   volatile long *passed, volatile long *other)
{
	int fd = connect_to(addr, port);

	if (fd == -EPERM) {
		(*eperm)++;
		return;
	}
	if (fd >= 0) {
		(*passed)++;
		close(fd);
		return;
	}
	tr->other_errno = -fd;
	(*other)++;
}

static void one_round(int busy, long i)
{
	char msg[32];
	int fd, r;

	snprintf(msg, sizeof(msg), "busy %ld", i);
	r = echo(busy, msg);
	if (r) {
		tr->busy_errno = -r;
		tr->busy_failed++;
	} else {
		tr->busy_ok++;
	}
	fd = connect_to(SB_SERVER_V4, SB_ECHO_PORT);
	r = fd < 0 ? fd : echo(fd, "new");
	if (fd >= 0)
		close(fd);
	if (r) {
		tr->new_errno = -r;
		tr->new_failed++;
	} else {
		tr->new_ok++;
	}
	attempt_denied(SB_SERVER_V4, SB_OTHER_PORT, &tr->denied_eperm, &tr->denied_passed,
		       &tr->denied_other);
	attempt_denied(BAD_V4, SB_ECHO_PORT, &tr->quarantined_eperm, &tr->quarantined_passed,
		       &tr->quarantined_other);
	tr->rounds++;
}

/* The generator: the client workload, until told to stop or GENERATOR_S has passed. */
static void generate(void)
{
	long end = now_ms() + GENERATOR_S * 1000L;
	int busy, r = sb_enter(sb.cg_client, sb.ns_client);

	busy = r ? r : connect_to(SB_SERVER_V4, SB_ECHO_PORT);
	tr->ready = busy < 0 ? busy : 1;
	if (busy < 0)
		_exit(1);
	for (long i = 0; !tr->stop && now_ms() < end; i++) {
		one_round(busy, i);
		usleep(2000);
	}
	_exit(0);
}

static void generator_start(void)
{
	long end = now_ms() + PHASE_MS;

	generator = fork();
	cr_assert_geq(generator, 0);
	if (generator == 0)
		generate();
	while (!tr->ready && now_ms() < end)
		usleep(10000);
	cr_assert_eq(tr->ready, 1, "the busy connection did not come up: %s", strerror(-tr->ready));
}

/* Waits until the generator has made PROGRESS more rounds; how long that took. */
static long progress(const char *phase)
{
	long from = tr->rounds, t0 = now_ms();

	while (tr->rounds < from + PROGRESS && now_ms() < t0 + PHASE_MS)
		usleep(10000);
	cr_assert_geq(tr->rounds, from + PROGRESS, "%s: the generator made %ld rounds in %d ms",
		      phase, tr->rounds - from, PHASE_MS);
	return now_ms() - t0;
}

/* --- the pinned state --------------------------------------------------------------------- */

struct pinned {
	int n_links;
	__u32 link_id[LINKS_MAX], prog_id[LINKS_MAX];
	__u32 sockets_map, quarantine_map;
	struct fg_quarantine_value quarantine; /* of the quarantined endpoint */
};

static __u32 map_id(const char *name)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	int fd = sb_map(&sb, name);

	cr_assert_geq(fd, 0, "pinned map %s: %s", name, strerror(-fd));
	cr_assert_eq(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
	close(fd);
	return info.id;
}

static void snapshot(struct pinned *s)
{
	struct fg_quarantine_key k = { .kind = FG_Q_IDENTITY, .id = bad_id };
	char dir[PATH_MAX], path[PATH_MAX * 2];
	struct dirent *e;
	DIR *d;
	int fd;

	memset(s, 0, sizeof(*s));
	snprintf(dir, sizeof(dir), "%.3000s/links", sb.pin_dir);
	d = opendir(dir);
	cr_assert_not_null(d, "no pinned links at %s", dir);
	while ((e = readdir(d)) && s->n_links < LINKS_MAX) {
		struct bpf_link_info info = {};
		__u32 len = sizeof(info);

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		fd = bpf_obj_get(path);
		cr_assert_geq(fd, 0, "link %s", path);
		cr_assert_eq(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
		s->link_id[s->n_links] = info.id;
		s->prog_id[s->n_links++] = info.prog_id;
		close(fd);
	}
	closedir(d);
	s->sockets_map = map_id("fg_sockets");
	s->quarantine_map = map_id("fg_quarantine");
	fd = sb_map(&sb, "fg_quarantine");
	cr_assert_geq(fd, 0);
	cr_assert_eq(bpf_map_lookup_elem(fd, &k, &s->quarantine), 0,
		     "the quarantined endpoint is not in fg_quarantine");
	close(fd);
}

/* The same links and maps, new programs, the same quarantine. */
static void expect_adopted(const struct pinned *before, const struct pinned *after)
{
	cr_expect_eq(after->n_links, before->n_links);
	cr_expect_geq(before->n_links, 8, "%d links pinned", before->n_links);
	for (int i = 0; i < after->n_links && i < before->n_links; i++) {
		cr_expect_eq(after->link_id[i], before->link_id[i], "link %d was replaced", i);
		cr_expect_neq(after->prog_id[i], before->prog_id[i],
			      "link %d still runs the old build's program", i);
	}
	cr_expect_eq(after->sockets_map, before->sockets_map, "fg_sockets is another map");
	cr_expect_eq(after->quarantine_map, before->quarantine_map, "fg_quarantine is another map");
	cr_expect_eq(memcmp(&after->quarantine, &before->quarantine, sizeof(after->quarantine)), 0,
		     "the quarantine entry changed");
}

/* --- the agent ---------------------------------------------------------------------------- */

/* "fedguardd X" of `BIN --version`. */
static void version_of(const char *bin, char *out, size_t len)
{
	char cmd[PATH_MAX + 32];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "%s --version", bin);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	cr_assert_not_null(fgets(out, (int)len, p));
	pclose(p);
	out[strcspn(out, "\n")] = '\0';
}

static const char *status_version(void)
{
	static char v[64];
	struct json_object *result = NULL, *o;

	cr_assert_eq(sb_request(&sb, "status", json_object_new_object(), &result), 0);
	cr_assert(json_object_object_get_ex(result, "version", &o));
	snprintf(v, sizeof(v), "fedguardd %s", json_object_get_string(o));
	json_object_put(result);
	return v;
}

static bool quarantine_listed(void)
{
	struct json_object *result = NULL, *list;
	bool found = false;

	cr_assert_eq(sb_request(&sb, "quarantine.list", json_object_new_object(), &result), 0);
	cr_assert(json_object_object_get_ex(result, "quarantine", &list));
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		struct json_object *target =
			json_object_object_get(json_object_array_get_idx(list, i), "target");

		found |= target && !strcmp(json_object_get_string(target), BAD);
	}
	json_object_put(result);
	return found;
}

static void start_agent(const char *bin)
{
	int r;

	setenv("FEDGUARDD", bin, 1);
	r = sb_agent_start(&sb);
	cr_assert_eq(r, 0, "%s did not become ready (%s); log: %s", bin, strerror(-r),
		     sb_log_path(&sb));
}

static __u32 add(const char *command, const char *args)
{
	__u32 id = sb_request_id(&sb, command, args);

	cr_assert_geq(id, FG_ID_DYNAMIC_MIN, "%s %s failed", command, args);
	return id;
}

static void register_world(void)
{
	char args[PATH_MAX + 512], doc[1024];
	struct json_object *q = json_object_new_object(), *result = NULL;

	snprintf(args, sizeof(args),
		 "{\"spiffe_id\": \"%s\", \"cgroup\": \"%s\", \"ips\": [\"%s\"],"
		 " \"netns\": \"/var/run/netns/%s\"}",
		 CLIENT, sb.cg_client, SB_CLIENT_V4, sb.ns_client);
	add("workload.add", args);
	snprintf(args, sizeof(args),
		 "{\"spiffe_id\": \"%s\", \"cgroup\": \"%s\", \"ips\": [\"%s\"],"
		 " \"netns\": \"/var/run/netns/%s\"}",
		 SERVER, sb.cg_server, SB_SERVER_V4, sb.ns_server);
	add("workload.add", args);
	snprintf(args, sizeof(args), "{\"spiffe_id\": \"%s\", \"ips\": [\"%s\"]}", BAD, BAD_V4);
	bad_id = add("endpoint.add", args);
	/* policy allows both; only the quarantine keeps the client from BAD */
	snprintf(doc, sizeof(doc),
		 "version: 1\nrules:\n"
		 "  - {name: to-server, action: allow, transport: authenticated,"
		 " from: {spiffe_id: %s}, to: {spiffe_id: %s},"
		 " ports: [%d]}\n"
		 "  - {name: to-bad, action: allow, transport: authenticated,"
		 " from: {spiffe_id: %s}, to: {spiffe_id: %s},"
		 " ports: [%d]}\n",
		 CLIENT, SERVER, SB_ECHO_PORT, CLIENT, BAD, SB_ECHO_PORT);
	cr_assert_eq(sb_policy_apply(&sb, doc), 0, "policy.apply failed");
	json_object_object_add(q, "target", json_object_new_string(BAD));
	json_object_object_add(q, "reason", json_object_new_string("upgrade test"));
	cr_assert_eq(sb_request(&sb, "quarantine.add", q, &result), 0);
	json_object_put(result);
}

/* Bytes of kernel memory the instance's pinned maps hold (fdinfo's memlock). */
static unsigned long long maps_memlock(void)
{
	static const char *const maps[] = {"fg_cgroups", "fg_ipcache", "fg_policy_slot",
					   "fg_policy", "fg_quarantine", "fg_auth", "fg_sockets",
					   "fg_counters", "fg_events", "fg_ev_stats", "fg_flows"};
	unsigned long long total = 0, v;
	char path[64], line[256];

	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		int fd = sb_map(&sb, maps[i]);
		FILE *f;

		if (fd < 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
		f = fopen(path, "r");
		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "memlock: %llu", &v) == 1)
				total += v;
		if (f)
			fclose(f);
		close(fd);
	}
	return total;
}

static long agent_rss_kb(void)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", sb.agent);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

/* --- the test ----------------------------------------------------------------------------- */

static void setup(void)
{
	int r;

	fg_test_require_root_bpf();
	cr_assert_not_null(getenv("FEDGUARDD"));
	cr_assert_not_null(getenv("FEDGUARDD_NEXT"));
	tr = mmap(NULL, sizeof(*tr), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(tr, MAP_FAILED);
	memset((void *)tr, 0, sizeof(*tr));
	r = sb_setup(&sb, true);
	cr_assert_eq(r, 0, "sandbox: %s", strerror(-r));
	cr_assert_eq(sb_sh("ip -n %s addr add %s/24 dev fgs0 && ip -n %s neigh add %s lladdr %s "
			   "dev fgc0", sb.ns_server, BAD_V4, sb.ns_client, BAD_V4, SB_SERVER_MAC),
		     0);
}

static void teardown(void)
{
	if (generator > 0) {
		tr->stop = 1;
		kill(generator, SIGKILL);
		waitpid(generator, NULL, 0);
		generator = 0;
	}
	sb_teardown(&sb);
	if (tr && tr != MAP_FAILED)
		munmap((void *)tr, sizeof(*tr));
	tr = NULL;
}

TestSuite(upgrade, .init = setup, .fini = teardown, .timeout = 300);

/* Replaces the agent running @from with @to under the generator's traffic. */
static void replace(const char *from, const char *to)
{
	char v_to[128];
	struct pinned before, after;
	long gap, t0, denied, quarantined, made;

	version_of(to, v_to, sizeof(v_to));
	progress("before the upgrade");
	snapshot(&before);

	/* the old agent goes: SIGTERM, as kubelet and systemd send it */
	cr_assert_eq(sb_agent_stop(&sb, SIGTERM), 0);
	t0 = now_ms();
	denied = tr->denied_eperm;
	quarantined = tr->quarantined_eperm;
	made = tr->new_ok;

	progress("with no agent");
	cr_expect_gt(tr->denied_eperm, denied, "no denied connect was tried without an agent");
	cr_expect_gt(tr->quarantined_eperm, quarantined);
	cr_expect_gt(tr->new_ok, made);

	/* the new build adopts */
	start_agent(to);
	gap = now_ms() - t0;
	cr_expect_eq(sb_sh("grep -q 'adopted' %s", sb_log_path(&sb)), 0, "%s did not adopt", to);
	cr_expect_str_eq(status_version(), v_to, "the agent that answers is not %s", to);
	progress("after the upgrade");
	snapshot(&after);
	expect_adopted(&before, &after);
	cr_expect(quarantine_listed(), "%s does not list the quarantine", to);
	cr_log_info("%s -> %s: %ld ms without an agent; %ld rounds so far: %ld allowed "
		    "connections, %ld busy echoes, %ld + %ld refused connects",
		    from, v_to, gap, tr->rounds, tr->new_ok, tr->busy_ok, tr->denied_eperm,
		    tr->quarantined_eperm);
}

Test(upgrade, a_new_build_replaces_the_agent_under_traffic_and_back)
{
	const char *old = getenv("FEDGUARDD"), *next = getenv("FEDGUARDD_NEXT");
	char v_old[128], v_next[128];

	version_of(old, v_old, sizeof(v_old));
	version_of(next, v_next, sizeof(v_next));
	cr_assert_str_neq(v_old, v_next, "the new build has the old one's version");
	start_agent(old);
	register_world();
	generator_start();

	replace(old, next);
	cr_log_info("sizing: the agent's RSS %ld kB; the pinned maps hold %llu bytes", agent_rss_kb(),
		    maps_memlock());
	replace(next, old);

	tr->stop = 1;
	cr_assert_eq(waitpid(generator, NULL, 0), generator);
	generator = 0;
	cr_expect_eq(tr->busy_failed, 0, "the busy connection failed %ld times (%s)",
		     tr->busy_failed, strerror(tr->busy_errno));
	cr_expect_eq(tr->new_failed, 0, "%ld new allowed connections failed (%s)", tr->new_failed,
		     strerror(tr->new_errno));
	cr_expect_eq(tr->denied_passed, 0, "%ld denied connects got through", tr->denied_passed);
	cr_expect_eq(tr->quarantined_passed, 0, "%ld connects to the quarantined peer got through",
		     tr->quarantined_passed);
	cr_expect_eq(tr->denied_other + tr->quarantined_other, 0,
		     "%ld refused connects failed otherwise than EPERM (%s)",
		     tr->denied_other + tr->quarantined_other, strerror(tr->other_errno));
	cr_expect_eq(tr->busy_ok, tr->rounds);
}
