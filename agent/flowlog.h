/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The flow log file: JSON lines appended by the agent's main thread into a
 * bounded buffer and written by a thread of its own, so that a slow disk
 * never holds the main loop. The file is rotated by size: before a write
 * would take it past max_bytes it becomes PATH.1 (PATH.1 becomes PATH.2,
 * and so on; PATH.<keep> is dropped), so the log never takes more than
 * (keep + 1) * max_bytes on disk. A record that finds the buffer full is
 * dropped and counted, never waited for.
 *
 * Threads: flowlog_append() and flowlog_stats() may be called from any
 * thread; flowlog_sync() and flowlog_close() from any but the writer.
 *
 * Conventions: functions return >= 0 or a negative errno; output
 * parameters are written only on success. Write failures are logged once
 * per run of failures, at warning level.
 */
#ifndef FEDGUARD_FLOWLOG_H
#define FEDGUARD_FLOWLOG_H

#include <stddef.h>

#include <linux/types.h>

enum {
	FLOWLOG_MAX_BYTES_MIN = 4096,
	FLOWLOG_KEEP_DEFAULT = 4,
	FLOWLOG_KEEP_MAX = 100,
	FLOWLOG_BUFFER_DEFAULT = 1024 * 1024,
	FLOWLOG_FLUSH_MS_DEFAULT = 1000,
};

#define FLOWLOG_MAX_BYTES_DEFAULT (64ULL * 1024 * 1024)
#define FLOWLOG_FILE		  "flows.log"

struct flowlog_config {
	const char *path;
	__u64 max_bytes;       /* at least FLOWLOG_MAX_BYTES_MIN */
	unsigned int keep;     /* rotated files kept, 0 to FLOWLOG_KEEP_MAX */
	size_t buffer_bytes;   /* records waiting for the writer; 0: the default */
	unsigned int flush_ms; /* the writer writes at least this often; 0: the default */
};

struct flowlog_stats {
	__u64 records_written;
	__u64 records_dropped; /* buffer full, or the write failed */
	__u64 bytes_written;
	__u64 rotations;
	__u64 write_errors;
};

struct flowlog;

/*
 * Opens (appending to) the file and starts the writer. -EINVAL for a bad
 * config, or the -errno of opening the file; logs the cause.
 */
int flowlog_open(const struct flowlog_config *cfg, struct flowlog **out);

/* Writes what is buffered, stops the writer, closes the file. */
void flowlog_close(struct flowlog *fl);

/*
 * Queues one record (len bytes without a newline; a newline is added).
 * -ENOBUFS when the buffer has no room (the record is counted as dropped),
 * -EINVAL for a record with a newline or longer than the buffer.
 */
int flowlog_append(struct flowlog *fl, const char *line, size_t len);

/* Waits until every record queued before the call is written (or failed). */
void flowlog_sync(struct flowlog *fl);

void flowlog_stats(struct flowlog *fl, struct flowlog_stats *out);

#endif /* FEDGUARD_FLOWLOG_H */
