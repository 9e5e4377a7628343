// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "log.h"

static enum log_level max_level = FG_LOG_INFO;
static bool libbpf_demoted;
static _Thread_local log_prefix_fn prefix_fn;
static _Thread_local void *prefix_ctx;

static const char *const level_prefix[] = {
	[FG_LOG_ERROR] = "error", [FG_LOG_WARN] = "warning", [FG_LOG_INFO] = "info",
	[FG_LOG_DEBUG] = "debug", [FG_LOG_TRACE] = "trace",
};

void log_set_level(enum log_level level)
{
	max_level = level;
}

enum log_level log_get_level(void)
{
	return max_level;
}

/*
 * Formats the whole line first and writes it with one call, so that lines of
 * several threads or processes sharing stderr do not interleave. %m rather
 * than strerror() because it is thread-safe.
 */
static void log_write(enum log_level level, const char *msg, int err)
{
	int len = (int)strlen(msg);
	char line[4096], pre[512] = "";

	while (len > 0 && msg[len - 1] == '\n')
		len--;
	if (prefix_fn)
		prefix_fn(prefix_ctx, msg, pre, sizeof(pre));
	if (err) {
		errno = err < 0 ? -err : err;
		snprintf(line, sizeof(line), "%s: %s%.*s: %m\n", level_prefix[level], pre, len,
			 msg);
	} else {
		snprintf(line, sizeof(line), "%s: %s%.*s\n", level_prefix[level], pre, len, msg);
	}
	fputs(line, stderr);
}

void log_set_prefix(log_prefix_fn fn, void *ctx)
{
	prefix_fn = fn;
	prefix_ctx = ctx;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char msg[3072];
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_write(level, msg, 0);
}

int log_msg_errno(enum log_level level, int err, const char *fmt, ...)
{
	char msg[3072];
	va_list ap;

	if (level > max_level)
		return err;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_write(level, msg, err);
	return err;
}

__attribute__((format(printf, 2, 0))) static int libbpf_print(enum libbpf_print_level lvl,
							      const char *fmt, va_list ap)
{
	enum log_level level;
	char msg[3072];

	if (lvl == LIBBPF_WARN)
		level = libbpf_demoted ? FG_LOG_DEBUG : FG_LOG_WARN;
	else if (lvl == LIBBPF_INFO)
		level = FG_LOG_DEBUG;
	else
		level = FG_LOG_TRACE;
	if (level > max_level)
		return 0;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_write(level, msg, 0);
	return 0;
}

void log_libbpf_demote(bool on)
{
	libbpf_demoted = on;
}

void log_setup_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}
