// SPDX-License-Identifier: Apache-2.0
#include "events.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "log.h"

enum {
	EVENTS_SUBSCRIBERS_MAX = 8,
	EVENTS_TYPES = FG_EV_ALLOW + 1,
};

struct subscriber {
	events_fn fn;
	void *ctx;
};

struct events {
	int map_fd;
	struct ring_buffer *rb;
	struct subscriber subs[EVENTS_TYPES][EVENTS_SUBSCRIBERS_MAX];
	__u64 read;
	__u64 unknown;
};

static int dispatch(void *arg, void *data, size_t size)
{
	const struct fg_event *e = data;
	struct events *ev = arg;

	ev->read++;
	if (size < sizeof(*e) || e->type == 0 || e->type >= EVENTS_TYPES) {
		ev->unknown++;
		return 0;
	}
	for (int i = 0; i < EVENTS_SUBSCRIBERS_MAX && ev->subs[e->type][i].fn; i++)
		ev->subs[e->type][i].fn(ev->subs[e->type][i].ctx, e);
	return 0;
}

int events_new(int map_fd, struct events **out)
{
	struct events *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return -ENOMEM;
	ev->map_fd = map_fd;
	ev->rb = ring_buffer__new(map_fd, dispatch, ev, NULL);
	if (!ev->rb) {
		int r = -errno;

		free(ev);
		return r;
	}
	*out = ev;
	return 0;
}

int events_open(const char *pin_dir, struct events **out)
{
	char path[PATH_MAX + 16];
	int fd, r;

	snprintf(path, sizeof(path), "%s/fg_events", pin_dir);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return log_error_errno(-errno, "map '%s'", path);
	r = events_new(fd, out);
	if (r) {
		close(fd);
		return log_error_errno(r, "map '%s': ring buffer", path);
	}
	return 0;
}

void events_close(struct events *ev)
{
	if (!ev)
		return;
	ring_buffer__free(ev->rb);
	close(ev->map_fd);
	free(ev);
}

int events_subscribe(struct events *ev, __u8 type, events_fn fn, void *ctx)
{
	if (type == 0 || type >= EVENTS_TYPES || !fn)
		return -EINVAL;
	for (int i = 0; i < EVENTS_SUBSCRIBERS_MAX; i++) {
		if (!ev->subs[type][i].fn) {
			ev->subs[type][i] = (struct subscriber){ fn, ctx };
			return 0;
		}
	}
	return -ENOSPC;
}

int events_fd(const struct events *ev)
{
	return ring_buffer__epoll_fd(ev->rb);
}

int events_consume(struct events *ev)
{
	int n = ring_buffer__consume(ev->rb);

	return n < 0 ? log_warn_errno(n, "map 'fg_events': consume") : n;
}

__u64 events_read(const struct events *ev)
{
	return ev->read;
}

__u64 events_unknown(const struct events *ev)
{
	return ev->unknown;
}
