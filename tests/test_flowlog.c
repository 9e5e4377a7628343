// SPDX-License-Identifier: Apache-2.0
/*
 * agent/flowlog.c, the flow log writer, on real files: whole JSON lines,
 * rotation by size with a bounded number of files, and a writer stuck on
 * its file (a FIFO nobody reads) that makes appends drop, not wait.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "flowlog.h"

static char dir[PATH_MAX];
static char path[PATH_MAX + 32];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/fg-flowlog-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sub/flows.log", dir);
}

static void teardown(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_expect_eq(system(cmd), 0);
}

TestSuite(flowlog, .init = setup, .fini = teardown, .timeout = 60);

/* A record of about @size bytes numbered @i. */
static int line(char *buf, size_t len, int i, size_t size)
{
	int n = snprintf(buf, len, "{\"type\":\"flow\",\"seq\":%d,\"pad\":\"", i);

	while ((size_t)n + 2 < size && (size_t)n + 2 < len)
		buf[n++] = 'x';
	n += snprintf(buf + n, len - (size_t)n, "\"}");
	return n;
}

/* Checks every line of a file is a JSON object with a seq; returns them in order. */
static int read_seqs(const char *file, int *seqs, int max, off_t *size)
{
	char buf[4096];
	struct stat st;
	int n = 0;
	FILE *f = fopen(file, "re");

	if (!f)
		return -errno;
	while (fgets(buf, sizeof(buf), f)) {
		struct json_object *o;

		cr_assert(buf[strlen(buf) - 1] == '\n', "%s: a line without newline", file);
		o = json_tokener_parse(buf);
		cr_assert_not_null(o, "%s: not JSON: %s", file, buf);
		cr_assert(n < max);
		seqs[n++] = json_object_get_int(json_object_object_get(o, "seq"));
		json_object_put(o);
	}
	fstat(fileno(f), &st);
	*size = st.st_size;
	fclose(f);
	return n;
}

Test(flowlog, writes_whole_json_lines_and_creates_its_directory)
{
	struct flowlog_config cfg = {.path = path, .max_bytes = 1 << 20, .keep = 2};
	struct flowlog_stats st;
	struct flowlog *fl;
	char buf[256];
	int seqs[16];
	off_t size;

	cr_assert_eq(flowlog_open(&cfg, &fl), 0);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(flowlog_append(fl, buf, (size_t)line(buf, sizeof(buf), i, 80)), 0);
	flowlog_sync(fl);
	cr_assert_eq(read_seqs(path, seqs, 16, &size), 10);
	for (int i = 0; i < 10; i++)
		cr_expect_eq(seqs[i], i, "record %d out of order", i);
	flowlog_stats(fl, &st);
	cr_expect_eq(st.records_written, 10);
	cr_expect_eq(st.bytes_written, (__u64)size);
	cr_expect_eq(st.records_dropped, 0);
	cr_expect_eq(flowlog_append(fl, "a\nb", 3), -EINVAL, "a record with a newline");
	flowlog_close(fl);
}

Test(flowlog, close_writes_what_is_buffered)
{
	struct flowlog_config cfg = {.path = path, .max_bytes = 1 << 20, .flush_ms = 60000};
	struct flowlog *fl;
	char buf[256];
	int seqs[16];
	off_t size;

	cr_assert_eq(flowlog_open(&cfg, &fl), 0);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(flowlog_append(fl, buf, (size_t)line(buf, sizeof(buf), i, 60)), 0);
	flowlog_close(fl);
	cr_expect_eq(read_seqs(path, seqs, 16, &size), 5);
}

Test(flowlog, rotates_by_size_and_keeps_a_bounded_number_of_files)
{
	struct flowlog_config cfg = {.path = path, .max_bytes = 4096, .keep = 2};
	char buf[256], name[PATH_MAX + 40];
	struct flowlog_stats st;
	int seqs[128], n, total = 0, newest = -1;
	struct flowlog *fl;
	off_t size;

	cr_assert_eq(flowlog_open(&cfg, &fl), 0);
	for (int i = 0; i < 300; i++) {
		cr_assert_eq(flowlog_append(fl, buf, (size_t)line(buf, sizeof(buf), i, 100)), 0);
		if (i % 50 == 49)
			flowlog_sync(fl); /* several writes, so several rotations */
	}
	flowlog_sync(fl);
	flowlog_stats(fl, &st);
	cr_expect_eq(st.records_written, 300);
	cr_expect_geq(st.rotations, 2);
	for (int k = 0; k <= 3; k++) {
		if (k)
			snprintf(name, sizeof(name), "%s.%d", path, k);
		else
			snprintf(name, sizeof(name), "%s", path);
		n = read_seqs(name, seqs, 128, &size);
		if (k == 3) {
			cr_expect_eq(n, -ENOENT, "%s exists: more files than --flow-log-keep",
				     name);
			break;
		}
		cr_assert_gt(n, 0, "%s: %s", name, strerror(-n));
		cr_expect_leq(size, 4096, "%s has %lld bytes, over the maximum", name,
			      (long long)size);
		for (int i = 1; i < n; i++)
			cr_expect_eq(seqs[i], seqs[i - 1] + 1, "%s: records out of order", name);
		if (k == 0)
			newest = seqs[n - 1];
		total += n;
	}
	cr_expect_eq(newest, 299, "the current file does not end with the newest record");
	cr_expect_lt(total, 300, "nothing was rotated away");
	flowlog_close(fl);
}

Test(flowlog, a_stuck_writer_makes_appends_drop_not_wait)
{
	struct flowlog_config cfg = {.path = path, .max_bytes = 1ULL << 40, .buffer_bytes = 8192};
	struct flowlog_stats st;
	struct flowlog *fl;
	char buf[1100], sink[65536];
	int reader, r = 0, i;

	snprintf(path, sizeof(path), "%s/fifo", dir);
	cr_assert_eq(mkfifo(path, 0600), 0);
	/* a reader end that reads nothing for now: the pipe fills, the writer blocks */
	reader = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	cr_assert_geq(reader, 0);
	cr_assert_eq(flowlog_open(&cfg, &fl), 0);
	for (i = 0; i < 10000 && r != -ENOBUFS; i++)
		r = flowlog_append(fl, buf, (size_t)line(buf, sizeof(buf), i, 1000));
	cr_expect_eq(r, -ENOBUFS, "%d appends of 1000 bytes were all taken", i);
	flowlog_stats(fl, &st);
	cr_expect_geq(st.records_dropped, 1);

	/* drain the pipe (bounded) until every append is written or dropped, then close */
	for (int k = 0; k < 4000; k++) {
		flowlog_stats(fl, &st);
		if (st.records_written + st.records_dropped >= (__u64)i)
			break;
		if (read(reader, sink, sizeof(sink)) <= 0)
			usleep(5000);
	}
	cr_expect_eq(st.records_written + st.records_dropped, (__u64)i);
	flowlog_close(fl);
	close(reader);
}
