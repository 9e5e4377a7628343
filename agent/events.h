/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one reader of the fg_events ring buffer. Modules subscribe to event
 * types (auth-needed events for peer authentication, drops for the flow
 * log, ...); the agent's main loop polls events_fd() and calls
 * events_consume() when it is readable. Handlers run on the main thread
 * and must not block: hand slow work to a worker.
 */
#ifndef FEDGUARD_EVENTS_H
#define FEDGUARD_EVENTS_H

#include <fedguard/abi.h>

struct events;

typedef void (*events_fn)(void *ctx, const struct fg_event *e);

/* Reads the ring buffer @map_fd (taken: closed by events_close()). */
int events_new(int map_fd, struct events **out);

/* Opens <pin_dir>/fg_events. Logs the cause on failure. */
int events_open(const char *pin_dir, struct events **out);

void events_close(struct events *ev);

/* Calls @fn for every event of @type (enum fg_event_type); several may subscribe. */
int events_subscribe(struct events *ev, __u8 type, events_fn fn, void *ctx);

/* A descriptor that becomes readable when events wait. */
int events_fd(const struct events *ev);

/* Hands every waiting event to its subscribers; returns how many were read. */
int events_consume(struct events *ev);

/* Records read, and records of a size or type this agent does not know. */
__u64 events_read(const struct events *ev);
__u64 events_unknown(const struct events *ev);

#endif /* FEDGUARD_EVENTS_H */
