// SPDX-License-Identifier: Apache-2.0
/*
 * The flow log writer. Producers append whole lines to `buf` under the
 * lock; the writer swaps `buf` with its own `spare` and writes the spare
 * without the lock, so appending never waits for the disk. `queued` and
 * `done` count records: flowlog_sync() waits until `done` reaches the
 * `queued` it saw.
 */
#define _GNU_SOURCE
#include "flowlog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

struct flowlog {
	pthread_mutex_t lock;
	pthread_cond_t wake;   /* the writer waits on it */
	pthread_cond_t synced; /* flowlog_sync() waits on it */
	pthread_t thread;
	char *buf; /* appended lines, len bytes, lines_buffered records */
	size_t len;
	size_t cap;
	char *spare; /* the writer's, while it writes */
	__u64 lines_buffered;
	__u64 queued; /* records accepted since open */
	__u64 done;   /* records written or failed since open */
	bool flush_now;
	bool stopping;
	struct flowlog_stats stats;
	/* the writer's own */
	int fd;
	__u64 size;
	bool failing; /* the last write failed: log the next success */
	char *path;
	__u64 max_bytes;
	unsigned int keep;
	unsigned int flush_ms;
};

/* Creates the directories above path that are missing (0750). */
static int make_parents(const char *path)
{
	char dir[PATH_MAX];
	char *slash;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	for (slash = strchr(dir + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(dir, 0750) < 0 && errno != EEXIST)
			return -errno;
		*slash = '/';
	}
	return 0;
}

static int file_open(struct flowlog *fl)
{
	struct stat st;
	int fd;

	fd = open(fl->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	fl->fd = fd;
	fl->size = (__u64)st.st_size;
	return 0;
}

/* PATH -> PATH.1 -> ... -> PATH.<keep>; the oldest is overwritten. */
static int rotate(struct flowlog *fl, struct flowlog_stats *d)
{
	char from[PATH_MAX + 16], to[PATH_MAX + 16];

	close(fl->fd);
	fl->fd = -1;
	for (unsigned int i = fl->keep; i > 1; i--) {
		snprintf(from, sizeof(from), "%s.%u", fl->path, i - 1);
		snprintf(to, sizeof(to), "%s.%u", fl->path, i);
		if (rename(from, to) < 0 && errno != ENOENT)
			return -errno;
	}
	if (fl->keep) {
		snprintf(to, sizeof(to), "%s.1", fl->path);
		if (rename(fl->path, to) < 0 && errno != ENOENT)
			return -errno;
	} else if (unlink(fl->path) < 0 && errno != ENOENT) {
		return -errno;
	}
	d->rotations++;
	return file_open(fl);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static __u64 count_lines(const char *p, size_t n)
{
	__u64 lines = 0;
	const char *nl;

	while (n && (nl = memchr(p, '\n', n))) {
		lines++;
		n -= (size_t)(nl + 1 - p);
		p = nl + 1;
	}
	return lines;
}

/* The longest prefix of p[0..n) that ends a line and fits in room; 0 if none. */
static size_t lines_within(const char *p, size_t n, size_t room)
{
	const char *nl;

	if (n <= room)
		return n;
	if (!room)
		return 0;
	nl = memrchr(p, '\n', room);
	return nl ? (size_t)(nl + 1 - p) : 0;
}

/*
 * Writes whole lines, rotating before the file would pass max_bytes; counts
 * into d, which the caller adds to the stats under the lock.
 */
static int write_lines(struct flowlog *fl, const char *p, size_t n, struct flowlog_stats *d)
{
	int r;

	while (n) {
		size_t room = fl->size < fl->max_bytes ? (size_t)(fl->max_bytes - fl->size) : 0;
		size_t take = lines_within(p, n, room);

		if (!take && fl->size) {
			r = rotate(fl, d);
			if (r)
				return r;
			continue;
		}
		if (!take) /* one line longer than max_bytes: it gets a file of its own */
			take = (size_t)((const char *)memchr(p, '\n', n) + 1 - p);
		r = write_all(fl->fd, p, take);
		if (r)
			return r;
		fl->size += take;
		d->records_written += count_lines(p, take);
		d->bytes_written += take;
		p += take;
		n -= take;
	}
	return 0;
}

/* Called with the lock held, which it drops while writing. */
static void write_chunk(struct flowlog *fl, const char *chunk, size_t n, __u64 lines)
{
	struct flowlog_stats d = {};
	int r = 0;

	pthread_mutex_unlock(&fl->lock);
	if (fl->fd < 0)
		r = file_open(fl);
	if (!r)
		r = write_lines(fl, chunk, n, &d);
	pthread_mutex_lock(&fl->lock);
	fl->stats.records_written += d.records_written;
	fl->stats.bytes_written += d.bytes_written;
	fl->stats.rotations += d.rotations;
	if (r) {
		fl->stats.write_errors++;
		fl->stats.records_dropped += lines - d.records_written;
		if (!fl->failing)
			log_warn_errno(r, "flow log '%s': records dropped", fl->path);
	} else if (fl->failing) {
		log_info("flow log '%s': writing again", fl->path);
	}
	fl->failing = r != 0;
	fl->done += lines;
	pthread_cond_broadcast(&fl->synced);
}

static void *writer(void *arg)
{
	struct flowlog *fl = arg;
	struct timespec until;
	char *chunk;
	size_t n;
	__u64 lines;

	pthread_mutex_lock(&fl->lock);
	while (!fl->stopping || fl->len) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += fl->flush_ms / 1000;
		until.tv_nsec += (long)(fl->flush_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (!fl->stopping && !fl->flush_now && fl->len < fl->cap / 2 &&
		       pthread_cond_timedwait(&fl->wake, &fl->lock, &until) == 0)
			;
		fl->flush_now = false;
		if (!fl->len)
			continue;
		chunk = fl->buf;
		n = fl->len;
		lines = fl->lines_buffered;
		fl->buf = fl->spare;
		fl->spare = chunk;
		fl->len = 0;
		fl->lines_buffered = 0;
		write_chunk(fl, chunk, n, lines);
	}
	pthread_mutex_unlock(&fl->lock);
	return NULL;
}

static void flowlog_free(struct flowlog *fl)
{
	if (fl->fd >= 0)
		close(fl->fd);
	pthread_cond_destroy(&fl->synced);
	pthread_cond_destroy(&fl->wake);
	pthread_mutex_destroy(&fl->lock);
	free(fl->buf);
	free(fl->spare);
	free(fl->path);
	free(fl);
}

static int config_check(const struct flowlog_config *cfg)
{
	if (!cfg->path || !*cfg->path)
		return log_error_errno(-EINVAL, "flow log: no path");
	if (cfg->max_bytes < FLOWLOG_MAX_BYTES_MIN)
		return log_error_errno(-EINVAL, "flow log '%s': max size %llu is below %d bytes",
				       cfg->path, (unsigned long long)cfg->max_bytes,
				       FLOWLOG_MAX_BYTES_MIN);
	if (cfg->keep > FLOWLOG_KEEP_MAX)
		return log_error_errno(-EINVAL, "flow log '%s': keeps at most %d rotated files",
				       cfg->path, FLOWLOG_KEEP_MAX);
	return 0;
}

/* Everything but the thread. */
static int flowlog_new(const struct flowlog_config *cfg, struct flowlog **out)
{
	struct flowlog *fl = calloc(1, sizeof(*fl));
	pthread_condattr_t ca;

	if (!fl)
		return -ENOMEM;
	fl->fd = -1;
	fl->cap = cfg->buffer_bytes ? cfg->buffer_bytes : FLOWLOG_BUFFER_DEFAULT;
	fl->flush_ms = cfg->flush_ms ? cfg->flush_ms : FLOWLOG_FLUSH_MS_DEFAULT;
	fl->max_bytes = cfg->max_bytes;
	fl->keep = cfg->keep;
	fl->buf = malloc(fl->cap);
	fl->spare = malloc(fl->cap);
	fl->path = strdup(cfg->path);
	pthread_mutex_init(&fl->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fl->wake, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&fl->synced, NULL);
	if (!fl->buf || !fl->spare || !fl->path) {
		flowlog_free(fl);
		return -ENOMEM;
	}
	*out = fl;
	return 0;
}

int flowlog_open(const struct flowlog_config *cfg, struct flowlog **out)
{
	struct flowlog *fl;
	int r;

	r = config_check(cfg);
	if (r)
		return r;
	r = flowlog_new(cfg, &fl);
	if (r)
		return log_error_errno(r, "flow log '%s'", cfg->path);
	r = make_parents(cfg->path);
	if (!r)
		r = file_open(fl);
	if (r) {
		flowlog_free(fl);
		return log_error_errno(r, "flow log '%s': cannot open it", cfg->path);
	}
	r = -pthread_create(&fl->thread, NULL, writer, fl);
	if (r) {
		flowlog_free(fl);
		return log_error_errno(r, "flow log '%s': cannot start its writer", cfg->path);
	}
	*out = fl;
	return 0;
}

void flowlog_close(struct flowlog *fl)
{
	if (!fl)
		return;
	pthread_mutex_lock(&fl->lock);
	fl->stopping = true;
	pthread_cond_signal(&fl->wake);
	pthread_mutex_unlock(&fl->lock);
	pthread_join(fl->thread, NULL);
	flowlog_free(fl);
}

int flowlog_append(struct flowlog *fl, const char *line, size_t len)
{
	int r = 0;

	if (len + 1 > fl->cap || memchr(line, '\n', len))
		return -EINVAL;
	pthread_mutex_lock(&fl->lock);
	if (fl->len + len + 1 > fl->cap) {
		fl->stats.records_dropped++;
		r = -ENOBUFS;
	} else {
		memcpy(fl->buf + fl->len, line, len);
		fl->buf[fl->len + len] = '\n';
		fl->len += len + 1;
		fl->lines_buffered++;
		fl->queued++;
		if (fl->len >= fl->cap / 2)
			pthread_cond_signal(&fl->wake);
	}
	pthread_mutex_unlock(&fl->lock);
	return r;
}

void flowlog_sync(struct flowlog *fl)
{
	__u64 target;

	pthread_mutex_lock(&fl->lock);
	target = fl->queued;
	fl->flush_now = true;
	pthread_cond_signal(&fl->wake);
	while (fl->done < target)
		pthread_cond_wait(&fl->synced, &fl->lock);
	pthread_mutex_unlock(&fl->lock);
}

void flowlog_stats(struct flowlog *fl, struct flowlog_stats *out)
{
	pthread_mutex_lock(&fl->lock);
	*out = fl->stats;
	pthread_mutex_unlock(&fl->lock);
}
