/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one log module of fedguard. Every message goes to stderr as
 * "<level>: <message>"; libbpf's own output is routed through it as well.
 * The *_errno variants append the strerror of -err and return err, so that
 * "return log_error_errno(err, ...)" both reports and propagates a -errno.
 */
#ifndef FEDGUARD_LOG_H
#define FEDGUARD_LOG_H

#include <stdbool.h>

enum log_level {
	FG_LOG_ERROR = 0,
	FG_LOG_WARN,
	FG_LOG_INFO,
	FG_LOG_DEBUG,
	FG_LOG_TRACE, /* libbpf's debug output as well */
};

/* Sets the highest level printed; FG_LOG_INFO until called. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Routes libbpf's messages through this module. */
void log_setup_libbpf(void);

/*
 * While on, libbpf's warnings are logged at debug level: for calls whose
 * failure is an expected answer (a TC query on an interface without clsact).
 */
void log_libbpf_demote(bool on);

/*
 * A prefix for the messages of the calling thread only: while set, fn is
 * asked for each message (already formatted) and may write a prefix into
 * buf (len bytes, empty at the call) that goes before it. The
 * configuration file uses it so that the errors of the options it feeds
 * name FILE:LINE:COLUMN. NULL removes it.
 */
typedef void (*log_prefix_fn)(void *ctx, const char *msg, char *buf, unsigned int len);
void log_set_prefix(log_prefix_fn fn, void *ctx);

__attribute__((format(printf, 2, 3))) void log_msg(enum log_level level, const char *fmt, ...);

/* Logs "<message>: <strerror(-err)>" and returns err (a negative errno). */
__attribute__((format(printf, 3, 4))) int log_msg_errno(enum log_level level, int err,
							const char *fmt, ...);

#define log_error(...) log_msg(FG_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(FG_LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(FG_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(FG_LOG_DEBUG, __VA_ARGS__)

#define log_error_errno(err, ...) log_msg_errno(FG_LOG_ERROR, (err), __VA_ARGS__)
#define log_warn_errno(err, ...)  log_msg_errno(FG_LOG_WARN, (err), __VA_ARGS__)
#define log_debug_errno(err, ...) log_msg_errno(FG_LOG_DEBUG, (err), __VA_ARGS__)

#endif /* FEDGUARD_LOG_H */
