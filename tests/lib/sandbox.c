// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "sandbox.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <json-c/json.h>

#include "control.h"
#include "ctl_client.h"
#include "sys.h"

enum {
	SB_AGENT_READY_MS = 60000,	/* BPF verification takes seconds */
	SB_SERVER_READY_MS = 5000,
	SB_CONNECT_MS = 3000,
	SB_POLL_STEP_MS = 20,
};

int sb_sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return st == -1 ? -1 : WEXITSTATUS(st);
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, text, strlen(text));
	close(fd);
	return n < 0 ? -errno : 0;
}

static int enter_netns(const char *name)
{
	char path[PATH_MAX];
	int fd, r;

	snprintf(path, sizeof(path), "/var/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = setns(fd, CLONE_NEWNET);
	close(fd);
	return r ? -errno : 0;
}

/* In a child: become a process of @cgroup (if any) inside netns @ns. */
static int enter(const char *cgroup, const char *ns)
{
	char pid[32];
	char procs[PATH_MAX];
	int r;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (cgroup) {
		snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgroup);
		snprintf(pid, sizeof(pid), "%d", getpid());
		r = write_file(procs, pid);
		if (r)
			return r;
	}
	return enter_netns(ns);
}

static void fill_addr(int family, const char *addr, int port, struct sockaddr_storage *ss,
		      socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		inet_pton(AF_INET, addr, &sin->sin_addr);
		*len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		inet_pton(AF_INET6, addr, &sin6->sin6_addr);
		*len = sizeof(*sin6);
	}
}

/* connect() bounded in time; 0 or -errno. */
static int connect_bounded(int fd, const struct sockaddr_storage *ss, socklen_t len)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int flags = fcntl(fd, F_GETFL);
	socklen_t elen = sizeof(int);
	int err = 0;

	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	if (connect(fd, (const struct sockaddr *)ss, len) == 0)
		goto done;
	if (errno != EINPROGRESS)
		return -errno;
	if (poll(&p, 1, SB_CONNECT_MS) != 1)
		return -ETIMEDOUT;
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
	if (err)
		return -err;
done:
	fcntl(fd, F_SETFL, flags);
	return 0;
}

/* --- echo server ----------------------------------------------------------- */

static int listen_on(int type, int port)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	int fd = socket(AF_INET6, type | SOCK_CLOEXEC, 0);
	int zero = 0, one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || (type == SOCK_STREAM && listen(fd, 512)))
		return -1;
	return fd;
}

static void echo_stream(int fd)
{
	char buf[4096];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(fd, buf, n) != n)
			break;
	_exit(0);
}

static void echo_datagram(int fd)
{
	struct sockaddr_storage from;
	char buf[2048];

	for (;;) {
		socklen_t len = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len);

		if (n > 0)
			sendto(fd, buf, n, 0, (struct sockaddr *)&from, len);
	}
}

/* The server process: TCP echo on both ports, UDP echo on the first. */
static void serve(int ready_fd, int port, int other_port)
{
	struct pollfd p[2];
	int udp;

	signal(SIGCHLD, SIG_IGN);	/* connection handlers reap themselves */
	p[0].fd = listen_on(SOCK_STREAM, port);
	p[1].fd = listen_on(SOCK_STREAM, other_port);
	udp = listen_on(SOCK_DGRAM, port);
	if (p[0].fd < 0 || p[1].fd < 0 || udp < 0)
		_exit(1);
	if (fork() == 0)
		echo_datagram(udp);
	p[0].events = p[1].events = POLLIN;
	if (write(ready_fd, "r", 1) != 1)
		_exit(1);
	for (;;) {
		if (poll(p, 2, -1) < 0)
			continue;
		for (int i = 0; i < 2; i++) {
			int c = (p[i].revents & POLLIN) ? accept4(p[i].fd, NULL, NULL, SOCK_CLOEXEC) : -1;

			if (c < 0)
				continue;
			if (fork() == 0)
				echo_stream(c);
			close(c);
		}
	}
}

int sb_enter(const char *cgroup, const char *netns)
{
	return enter(cgroup, netns);
}

static const char *side_ns(const struct sandbox *sb, enum sb_side side)
{
	return side == SB_CLIENT ? sb->ns_client : sb->ns_server;
}

static const char *side_cgroup(const struct sandbox *sb, enum sb_side side)
{
	if (side == SB_CLIENT)
		return sb->cg_client;
	return sb->managed ? sb->cg_server : NULL;
}

/* An echo server on @side's addresses, in @side's cgroup (if managed). */
static int server_start(struct sandbox *sb, enum sb_side side, pid_t *pid)
{
	return sb_serve_in(side_cgroup(sb, side), side_ns(sb, side), pid);
}

int sb_serve_in(const char *cgroup, const char *netns, pid_t *pid)
{
	return sb_serve_ports_in(cgroup, netns, SB_ECHO_PORT, SB_OTHER_PORT, pid);
}

int sb_serve_ports_in(const char *cgroup, const char *netns, int port, int other_port, pid_t *pid)
{
	struct pollfd p;
	int pipefd[2];
	char c;

	if (pipe2(pipefd, O_CLOEXEC))
		return -errno;
	*pid = fork();
	if (*pid < 0)
		return -errno;
	if (*pid == 0) {
		setpgid(0, 0);
		if (enter(cgroup, netns))
			_exit(1);
		serve(pipefd[1], port, other_port);
	}
	close(pipefd[1]);
	p = (struct pollfd){ .fd = pipefd[0], .events = POLLIN };
	if (poll(&p, 1, SB_SERVER_READY_MS) != 1 || read(pipefd[0], &c, 1) != 1) {
		close(pipefd[0]);
		return -ETIMEDOUT;
	}
	close(pipefd[0]);
	return 0;
}

/* --- set-up and tear-down --------------------------------------------------- */

const char *sb_state_dir(const struct sandbox *sb)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof(path), "/tmp/fedguard-%s.state", sb->instance);
	return path;
}

const char *sb_log_path(const struct sandbox *sb)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof(path), "/tmp/fedguard-%s.log", sb->instance);
	return path;
}

/*
 * Static neighbours on both ends: IPv6 neighbour discovery on a veth that
 * just came up costs its first packet a one-second retransmission, which
 * would hide the latency the tests look at.
 */
static int net_setup(struct sandbox *sb)
{
	const char *c = sb->ns_client, *s = sb->ns_server;

	/*
	 * Give the namespaces their own TCP hash table, as docs/ARCHITECTURE.md
	 * recommends for workloads: a quarantine sweep then walks only theirs.
	 * The sysctl applies to namespaces created while it is set; put back.
	 */
	if (sb_sh("old=$(sysctl -n net.ipv4.tcp_child_ehash_entries) &&"
		  " sysctl -qw net.ipv4.tcp_child_ehash_entries=1024 &&"
		  " ip netns add %s && ip netns add %s; r=$?;"
		  " sysctl -qw net.ipv4.tcp_child_ehash_entries=$old; exit $r", c, s))
		return -EIO;
	if (sb_sh("ip link add fgc0 address %s netns %s type veth peer name fgs0 address %s netns %s",
		  SB_CLIENT_MAC, c, SB_SERVER_MAC, s))
		return -EIO;
	if (sb_sh("ip -n %s addr add %s/24 dev fgc0 && ip -n %s addr add %s/64 dev fgc0 nodad &&"
		  " ip -n %s neigh add %s lladdr %s dev fgc0 && ip -n %s neigh add %s lladdr %s dev fgc0 &&"
		  " ip -n %s link set fgc0 up && ip -n %s link set lo up",
		  c, SB_CLIENT_V4, c, SB_CLIENT_V6, c, SB_SERVER_V4, SB_SERVER_MAC, c, SB_SERVER_V6,
		  SB_SERVER_MAC, c, c))
		return -EIO;
	if (sb_sh("ip -n %s addr add %s/24 dev fgs0 && ip -n %s addr add %s/64 dev fgs0 nodad &&"
		  " ip -n %s neigh add %s lladdr %s dev fgs0 && ip -n %s neigh add %s lladdr %s dev fgs0 &&"
		  " ip -n %s link set fgs0 up && ip -n %s link set lo up",
		  s, SB_SERVER_V4, s, SB_SERVER_V6, s, SB_CLIENT_V4, SB_CLIENT_MAC, s, SB_CLIENT_V6,
		  SB_CLIENT_MAC, s, s))
		return -EIO;
	return 0;
}

int sb_setup(struct sandbox *sb, bool managed)
{
	struct sys_mount m;
	int r;

	memset(sb, 0, sizeof(*sb));
	sb->managed = managed;
	snprintf(sb->instance, sizeof(sb->instance), "sbt%d", getpid());
	snprintf(sb->pin_dir, sizeof(sb->pin_dir), "/sys/fs/bpf/fedguard/%s", sb->instance);
	snprintf(sb->ns_client, sizeof(sb->ns_client), "fgc%d", getpid());
	snprintf(sb->ns_server, sizeof(sb->ns_server), "fgs%d", getpid());
	r = sys_cgroup2_mount(&m);
	if (r)
		return r;
	snprintf(sb->cg_root, sizeof(sb->cg_root), "%.3000s/fgtest%d", m.target, getpid());
	snprintf(sb->cg_client, sizeof(sb->cg_client), "%.4000s/client", sb->cg_root);
	snprintf(sb->cg_server, sizeof(sb->cg_server), "%.4000s/server", sb->cg_root);
	if (mkdir(sb->cg_root, 0755) || mkdir(sb->cg_client, 0755) || mkdir(sb->cg_server, 0755))
		return -errno;
	r = sys_cgroup_id(sb->cg_client, &sb->client_cgid);
	if (r)
		return r;
	r = net_setup(sb);
	if (!r)
		r = server_start(sb, SB_SERVER, &sb->server);
	if (!r && managed)
		r = server_start(sb, SB_CLIENT, &sb->client_server);
	return r;
}

static void reap(pid_t *pid, int sig, bool group)
{
	if (*pid <= 0)
		return;
	kill(group ? -*pid : *pid, sig);
	waitpid(*pid, NULL, 0);
	*pid = 0;
}

void sb_teardown(struct sandbox *sb)
{
	const char *agent = getenv("FEDGUARDD");

	reap(&sb->server, SIGKILL, true);
	reap(&sb->client_server, SIGKILL, true);
	reap(&sb->agent, SIGTERM, false);
	if (agent && sb->instance[0])
		sb_sh("%s --instance %s --uninstall -q", agent, sb->instance);
	if (sb->ns_client[0])
		sb_sh("ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null", sb->ns_client,
		      sb->ns_server);
	/* children that lived in the cgroup are gone: the directories are empty */
	for (int i = 0; i < 50 && sb->cg_client[0] && rmdir(sb->cg_client) && errno == EBUSY; i++)
		usleep(20000);
	for (int i = 0; i < 50 && sb->cg_server[0] && rmdir(sb->cg_server) && errno == EBUSY; i++)
		usleep(20000);
	if (sb->cg_root[0])
		rmdir(sb->cg_root);
	if (sb->instance[0]) {
		if (!getenv("FG_TEST_KEEP_LOGS"))	/* for debugging a run */
			unlink(sb_log_path(sb));
		sb_sh("rm -rf %s", sb_state_dir(sb));
	}
}

/* --- the agent ------------------------------------------------------------ */

static bool log_has(const char *path, const char *needle)
{
	char line[4096];
	bool found = false;
	FILE *f = fopen(path, "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

enum {
	SB_AGENT_EXTRA_ARGS = 8,
};

static void agent_exec(struct sandbox *sb, const char *agent, int log_fd, const char **extra)
{
	const char *argv[8 + SB_AGENT_EXTRA_ARGS + 1] = {
		agent, "--instance", sb->instance, "--cgroup", sb->cg_root,
		"--state-dir", sb_state_dir(sb),
	};
	int n = 7;

	for (int i = 0; extra[i] && i < SB_AGENT_EXTRA_ARGS; i++)
		argv[n++] = extra[i];
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	dup2(log_fd, STDERR_FILENO);
	execv(agent, (char *const *)argv);
	_exit(127);
}

static int agent_wait_ready(struct sandbox *sb, const char *log)
{
	long deadline = now_ms() + SB_AGENT_READY_MS;

	while (now_ms() < deadline) {
		if (log_has(log, "ready"))
			return 0;
		if (waitpid(sb->agent, NULL, WNOHANG) == sb->agent) {
			sb->agent = 0;
			return -ECHILD;
		}
		usleep(SB_POLL_STEP_MS * 1000);
	}
	return -ETIMEDOUT;
}

int sb_agent_start_args(struct sandbox *sb, ...)
{
	const char *agent = getenv("FEDGUARDD");
	const char *log = sb_log_path(sb);
	const char *extra[SB_AGENT_EXTRA_ARGS + 1] = { NULL };
	va_list ap;
	int fd;

	if (!agent)
		return -ENOENT;
	va_start(ap, sb);
	for (int i = 0; i < SB_AGENT_EXTRA_ARGS && (extra[i] = va_arg(ap, const char *)); i++)
		;
	va_end(ap);
	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	sb->agent = fork();
	if (sb->agent == 0)
		agent_exec(sb, agent, fd, extra);
	close(fd);
	if (sb->agent < 0)
		return -errno;
	return agent_wait_ready(sb, log);
}

int sb_agent_start(struct sandbox *sb)
{
	return sb_agent_start_args(sb, NULL);
}

int sb_agent_stop(struct sandbox *sb, int sig)
{
	if (sb->agent <= 0)
		return -ESRCH;
	reap(&sb->agent, sig, false);
	return 0;
}

/* --- clients --------------------------------------------------------------- */

static int send_fd(int sock, int fd, int err)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = &err, .iov_len = sizeof(err) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;

	if (fd >= 0) {
		msg.msg_control = cbuf;
		msg.msg_controllen = sizeof(cbuf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	return sendmsg(sock, &msg, 0) < 0 ? -errno : 0;
}

/* Returns the fd received, or the negative errno the child sent. */
static int recv_fd(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	int err = -EIO, fd = -1;
	struct iovec iov = { .iov_base = &err, .iov_len = sizeof(err) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) <= 0)
		return -EIO;
	cm = CMSG_FIRSTHDR(&msg);
	if (cm && cm->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd >= 0 ? fd : err;
}

/* Runs @fn in a child inside @cgroup (if any) and @netns; @fn reports on @sock. */
static int in_place(const char *cgroup, const char *netns, void (*fn)(int sock, void *arg),
		    void *arg)
{
	int sp[2], r;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp))
		return -errno;
	pid = fork();
	if (pid == 0) {
		close(sp[0]);
		r = enter(cgroup, netns);
		if (r)
			send_fd(sp[1], -1, r);
		else
			fn(sp[1], arg);
		_exit(0);
	}
	close(sp[1]);
	r = pid < 0 ? -errno : recv_fd(sp[0]);
	close(sp[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return r;
}

static int in_side(struct sandbox *sb, enum sb_side side, void (*fn)(int sock, void *arg),
		   void *arg)
{
	return in_place(side_cgroup(sb, side), side_ns(sb, side), fn, arg);
}

struct connect_req {
	int family, type, port, count;
	const char *addr;
};

static void do_connect(int sock, void *arg)
{
	struct connect_req *req = arg;
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = socket(req->family, req->type | SOCK_CLOEXEC, 0);
	int r;

	if (fd < 0) {
		send_fd(sock, -1, -errno);
		return;
	}
	fill_addr(req->family, req->addr, req->port, &ss, &len);
	r = connect_bounded(fd, &ss, len);
	send_fd(sock, r ? -1 : fd, r);
}

int sb_connect_from(struct sandbox *sb, enum sb_side side, int family, int type, const char *addr,
		    int port)
{
	struct connect_req req = { .family = family, .type = type, .addr = addr, .port = port };

	return in_side(sb, side, do_connect, &req);
}

int sb_connect_in(const char *cgroup, const char *netns, int family, int type, const char *addr,
		  int port)
{
	struct connect_req req = { .family = family, .type = type, .addr = addr, .port = port };

	return in_place(cgroup, netns, do_connect, &req);
}

/* Connects, sends one byte, waits for its echo: the microseconds it took. */
static void do_first_byte(int sock, void *arg)
{
	struct connect_req *req = arg;
	struct sockaddr_storage ss;
	socklen_t len;
	long t0 = now_us();
	int fd = socket(req->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int r = fd < 0 ? -errno : 0;

	fill_addr(req->family, req->addr, req->port, &ss, &len);
	if (!r)
		r = connect_bounded(fd, &ss, len);
	if (!r)
		r = sb_echo(fd, "!", SB_CONNECT_MS);
	send_fd(sock, -1, r ? r : (int)(now_us() - t0));
}

int sb_first_byte_in(const char *cgroup, const char *netns, int family, const char *addr, int port)
{
	struct connect_req req = { .family = family, .addr = addr, .port = port };
	int r = in_place(cgroup, netns, do_first_byte, &req);

	return r == 0 ? 1 : r;	/* under a microsecond: still a time, not an error */
}

int sb_connect(struct sandbox *sb, int family, int type, const char *addr, int port)
{
	return sb_connect_from(sb, SB_CLIENT, family, type, addr, port);
}

static void do_connect_many(int sock, void *arg)
{
	struct connect_req *req = arg;
	struct sockaddr_storage ss;
	socklen_t len;
	int ok = 0;

	fill_addr(AF_INET, req->addr, req->port, &ss, &len);
	for (int i = 0; i < req->count; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd >= 0 && connect_bounded(fd, &ss, len) == 0)
			ok++;
		if (fd >= 0)
			close(fd);
	}
	send_fd(sock, -1, ok);
}

int sb_connect_many(struct sandbox *sb, const char *addr, int port, int count)
{
	struct connect_req req = { .addr = addr, .port = port, .count = count };

	return in_side(sb, SB_CLIENT, do_connect_many, &req);
}

int sb_echo(int fd, const char *msg, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	size_t len = strlen(msg);
	char buf[256];
	ssize_t n;

	if (send(fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len)
		return -errno;
	if (poll(&p, 1, timeout_ms) != 1)
		return -ETIMEDOUT;
	n = recv(fd, buf, sizeof(buf), 0);
	if (n < 0)
		return -errno;
	return (size_t)n == len && memcmp(buf, msg, len) == 0 ? 0 : -EBADMSG;
}

int sb_map(struct sandbox *sb, const char *name)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%.3000s/%.64s", sb->pin_dir, name);
	fd = bpf_obj_get(path);
	return fd < 0 ? -errno : fd;
}

/* --- the control socket ---------------------------------------------------- */

int sb_request(struct sandbox *sb, const char *command, struct json_object *args,
	       struct json_object **result)
{
	struct ctl c = { .instance = sb->instance };

	control_default_path(sb->instance, c.socket_buf, sizeof(c.socket_buf));
	c.socket_path = c.socket_buf;
	return ctl_request(&c, command, args, result);
}

__u32 sb_request_id(struct sandbox *sb, const char *command, const char *args_json)
{
	struct json_object *args = json_tokener_parse(args_json), *result = NULL, *id;
	__u32 n = 0;

	if (args && sb_request(sb, command, args, &result) == 0 &&
	    json_object_object_get_ex(result, "identity", &id))
		n = (__u32)json_object_get_int64(id);
	json_object_put(result);
	return n;
}

int sb_policy_apply(struct sandbox *sb, const char *yaml)
{
	struct json_object *args = json_object_new_object(), *result = NULL;
	int r;

	json_object_object_add(args, "document", json_object_new_string(yaml));
	json_object_object_add(args, "source", json_object_new_string("test.yaml"));
	r = sb_request(sb, "policy.apply", args, &result);
	json_object_put(result);
	return r;
}
