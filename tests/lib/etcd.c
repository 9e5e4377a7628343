// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "etcd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "require.h"

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

const char *fg_etcd_binary(char *why, size_t why_len)
{
	const char *bin = getenv("FG_ETCD");

	if (!bin || !*bin)
		bin = "/usr/bin/etcd";
	if (access(bin, X_OK) == 0)
		return bin;
	snprintf(why, why_len, "no etcd binary at '%s' (Debian: apt-get install etcd-server): %s",
		 bin, strerror(errno));
	return NULL;
}

void fg_etcd_require(void)
{
	char why[256];

	if (!fg_etcd_binary(why, sizeof(why)))
		fg_test_unavailable("%s", why);
}

int fg_free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int r;

	if (fd < 0)
		return -errno;
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (r == 0)
		r = getsockname(fd, (struct sockaddr *)&sa, &len);
	r = r < 0 ? -errno : ntohs(sa.sin_port);
	close(fd);
	return r;
}

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
	(void)p, (void)ctx;
	return size * n;
}

/* Enters network namespace name (the calling thread only): 0 or -errno. */
static int enter_netns(const char *name)
{
	char path[128];
	int fd, r;

	if (!name || !*name)
		return 0;
	snprintf(path, sizeof(path), "/var/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = setns(fd, CLONE_NEWNET) ? -errno : 0;
	close(fd);
	return r;
}

struct call {
	const struct fg_etcd *e;
	int (*fn)(void *ctx);
	void *ctx;
	int r;
};

static void *call_thread(void *arg)
{
	struct call *c = arg;

	c->r = enter_netns(c->e->netns);
	if (!c->r)
		c->r = c->fn(c->ctx);
	return NULL;
}

int fg_etcd_call(const struct fg_etcd *e, int (*fn)(void *ctx), void *ctx)
{
	struct call c = { .e = e, .fn = fn, .ctx = ctx };
	pthread_t t;

	if (!e->netns[0])
		return fn(ctx);
	if (pthread_create(&t, NULL, call_thread, &c))
		return -EAGAIN;
	pthread_join(t, NULL);
	return c.r;
}

static int wait_here(void *ctx);

/* 0 once GET /health answers 200, -ETIMEDOUT after FG_ETCD_READY_MS. */
static int fg_etcd_wait(const struct fg_etcd *e)
{
	return fg_etcd_call(e, wait_here, (void *)e);
}

static int wait_here(void *ctx)
{
	const struct fg_etcd *e = ctx;
	char url[128];
	long deadline = now_ms() + FG_ETCD_READY_MS;
	CURL *c = curl_easy_init();
	int r = -ETIMEDOUT;

	if (!c)
		return -ENOMEM;
	snprintf(url, sizeof(url), "%s/health", e->url);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (e->tls.cert[0]) {	/* an X.509-SVID names no host: the chain is what counts */
		curl_easy_setopt(c, CURLOPT_SSLCERT, e->tls.client_cert);
		curl_easy_setopt(c, CURLOPT_SSLKEY, e->tls.client_key);
		curl_easy_setopt(c, CURLOPT_CAINFO, e->tls.ca);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 1000L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	while (now_ms() < deadline) {
		long status = 0;

		if (curl_easy_perform(c) == CURLE_OK &&
		    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
		    status == 200) {
			r = 0;
			break;
		}
		if (waitpid(e->pid, NULL, WNOHANG) == e->pid) {
			r = -ECHILD;
			break;
		}
		sleep_ms(50);
	}
	curl_easy_cleanup(c);
	return r;
}

static void fg_etcd_exec(const struct fg_etcd *e, const char *bin)
{
	char data[300], log[300], client[96], peer[96], cluster[112];
	int fd;

	snprintf(data, sizeof(data), "%s/data", e->dir);
	snprintf(log, sizeof(log), "%s/etcd.log", e->dir);
	snprintf(client, sizeof(client), "%s://%s:%d", e->tls.cert[0] ? "https" : "http", e->host,
		 e->client_port);
	snprintf(peer, sizeof(peer), "http://%s:%d", e->host, e->peer_port);
	snprintf(cluster, sizeof(cluster), "t=%s", peer);
	/* a test that crashes must not leave its etcd behind */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (enter_netns(e->netns))
		_exit(126);
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	if (e->tls.cert[0])
		execl(bin, bin, "--name", "t", "--data-dir", data, "--listen-client-urls", client,
		      "--advertise-client-urls", client, "--listen-peer-urls", peer,
		      "--initial-advertise-peer-urls", peer, "--initial-cluster", cluster,
		      "--cert-file", e->tls.cert, "--key-file", e->tls.key, "--client-cert-auth",
		      "--trusted-ca-file", e->tls.ca, "--logger", "zap", "--log-level", "warn",
		      (char *)NULL);
	else
		execl(bin, bin, "--name", "t", "--data-dir", data, "--listen-client-urls", client,
		      "--advertise-client-urls", client, "--listen-peer-urls", peer,
		      "--initial-advertise-peer-urls", peer, "--initial-cluster", cluster,
		      "--logger", "zap", "--log-level", "warn", (char *)NULL);
	_exit(127);
}

int fg_etcd_restart(struct fg_etcd *e)
{
	char why[256];
	const char *bin = fg_etcd_binary(why, sizeof(why));
	pid_t pid;
	int r;

	if (!bin)
		return -ENOENT;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0)
		fg_etcd_exec(e, bin);
	e->pid = pid;
	r = fg_etcd_wait(e);
	if (r < 0) {
		fprintf(stderr, "etcd on %s not ready (log in %s/etcd.log)\n", e->url, e->dir);
		fg_etcd_stop(e);
	}
	return r;
}

int fg_etcd_start(struct fg_etcd *e)
{
	*e = (struct fg_etcd){};
	snprintf(e->dir, sizeof(e->dir), "/tmp/fg-etcd-XXXXXX");
	if (!mkdtemp(e->dir))
		return -errno;
	e->client_port = fg_free_port();
	e->peer_port = fg_free_port();
	while (e->peer_port == e->client_port && e->peer_port > 0)
		e->peer_port = fg_free_port();
	if (e->client_port < 0 || e->peer_port < 0)
		return -EADDRNOTAVAIL;
	snprintf(e->host, sizeof(e->host), "127.0.0.1");
	snprintf(e->url, sizeof(e->url), "http://127.0.0.1:%d", e->client_port);
	return fg_etcd_restart(e);
}

int fg_etcd_start_in(struct fg_etcd *e, const char *netns, const char *host)
{
	typeof(e->tls) tls = e->tls;

	*e = (struct fg_etcd){ .client_port = 2379, .peer_port = 2380, .tls = tls };
	snprintf(e->dir, sizeof(e->dir), "/tmp/fg-etcd-XXXXXX");
	if (!mkdtemp(e->dir))
		return -errno;
	snprintf(e->netns, sizeof(e->netns), "%s", netns);
	snprintf(e->host, sizeof(e->host), "%s", host);
	snprintf(e->url, sizeof(e->url), "%s://%s:%d", tls.cert[0] ? "https" : "http", host,
		 e->client_port);
	return fg_etcd_restart(e);
}

void fg_etcd_stop(struct fg_etcd *e)
{
	long deadline = now_ms() + FG_ETCD_STOP_MS;

	if (e->pid <= 0)
		return;
	kill(e->pid, SIGTERM);
	while (waitpid(e->pid, NULL, WNOHANG) == 0) {
		if (now_ms() >= deadline) {
			kill(e->pid, SIGKILL);
			waitpid(e->pid, NULL, 0);
			break;
		}
		sleep_ms(20);
	}
	e->pid = 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

void fg_etcd_destroy(struct fg_etcd *e)
{
	fg_etcd_stop(e);
	if (e->dir[0])
		nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	e->dir[0] = 0;
}
