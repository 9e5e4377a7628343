// SPDX-License-Identifier: Apache-2.0
/*
 * The client of the control socket: connect, write the request, shut down
 * the write side, read one JSON reply before a deadline.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "control.h"
#include "ctl_client.h"
#include "io.h"

/* A reply larger than this is not one of fedguardd's. */
#define CTL_REPLY_MAX (256 * 1024 * 1024)

static void tokener_freep(struct json_tokener **tok)
{
	if (*tok)
		json_tokener_free(*tok);
}

#define _cleanup_tokener_ __attribute__((cleanup(tokener_freep)))

/* Hints at the usual cause of a failed connect(). */
static const char *connect_hint(const struct ctl *ctl, int err, char *buf, size_t len)
{
	switch (err) {
	case ENOENT:
	case ECONNREFUSED:
		if (ctl->socket_given)
			return " (is fedguardd running with --control-socket on it?)";
		snprintf(buf, len, " (is the agent of instance '%s' running?)", ctl->instance);
		return buf;
	case EACCES:
		return " (only root and the agent's --control-group may use it)";
	default:
		return "";
	}
}

static int connect_to(const struct ctl *ctl, int *out, char *why, size_t why_len)
{
	_cleanup_close_ int fd = -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char hint[128];
	int err;

	if (strlen(ctl->socket_path) >= sizeof(sa.sun_path)) {
		snprintf(why, why_len, "socket path '%s' is longer than %zu bytes",
			 ctl->socket_path, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, ctl->socket_path, strlen(ctl->socket_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = errno;
		snprintf(why, why_len, "cannot reach fedguardd at %s: %s%s", ctl->socket_path,
			 strerror(err), connect_hint(ctl, err, hint, sizeof(hint)));
		return -err;
	}
	*out = take_fd(&fd);
	return 0;
}

/*
 * Writes the request. EPIPE is no failure here: the agent answers some
 * requests (too large, not authorised) without reading them to the end.
 */
static int send_request(int fd, const char *command, struct json_object *args, char *why,
			size_t why_len)
{
	struct json_object *req = json_object_new_object();
	const char *text;
	size_t len, done = 0;
	ssize_t n;
	int err = 0;

	json_object_object_add(req, "protocol", json_object_new_int(CONTROL_PROTOCOL));
	json_object_object_add(req, "command", json_object_new_string(command));
	if (args)
		json_object_object_add(req, "args", args);
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
							   JSON_C_TO_STRING_NOSLASHESCAPE);
	len = strlen(text);
	while (done < len) {
		n = send(fd, text + done, len - done, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = errno == EPIPE ? 0 : -errno;
			break;
		}
		done += (size_t)n;
	}
	json_object_put(req);
	if (err)
		snprintf(why, why_len, "cannot send the request: %s", strerror(-err));
	else
		shutdown(fd, SHUT_WR);
	return err;
}

/* The reply as a checked object: "ok", and "result" or "error" accordingly. */
static int reply_check(struct json_object *reply, char *why, size_t why_len)
{
	struct json_object *ok, *e;

	if (!json_object_is_type(reply, json_type_object) ||
	    !json_object_object_get_ex(reply, "ok", &ok) ||
	    !json_object_is_type(ok, json_type_boolean)) {
		snprintf(why, why_len, "the reply has no boolean 'ok'");
		return -EBADMSG;
	}
	if (json_object_get_boolean(ok))
		return 0;
	if (!json_object_object_get_ex(reply, "error", &e) ||
	    !json_object_is_type(e, json_type_object)) {
		snprintf(why, why_len, "the error reply has no 'error' object");
		return -EBADMSG;
	}
	return 0;
}

/* Feeds one chunk, or at EOF (n == 0) the NUL that ends the value: 1 when done. */
static int feed(struct json_tokener *tok, const char *buf, ssize_t n, struct json_object **out,
		char *why, size_t why_len)
{
	enum json_tokener_error jerr;
	struct json_object *obj;

	obj = n ? json_tokener_parse_ex(tok, buf, (int)n) : json_tokener_parse_ex(tok, "", 1);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_continue && n)
		return 0;
	if (jerr != json_tokener_success) {
		snprintf(why, why_len, "the reply is not JSON: %s", json_tokener_error_desc(jerr));
		return -EBADMSG;
	}
	*out = obj;
	return 1;
}

/* Reads one JSON value: up to its end, or to EOF. */
static int read_reply(int fd, int timeout_ms, struct json_object **out, char *why, size_t why_len)
{
	int64_t deadline = io_now_ms() + timeout_ms;
	_cleanup_tokener_ struct json_tokener *tok = NULL;
	size_t total = 0;
	char buf[65536];
	ssize_t n;
	int r;

	tok = json_tokener_new_ex(CONTROL_JSON_DEPTH * 2);
	if (!tok)
		return -ENOMEM;
	for (;;) {
		r = io_wait(fd, POLLIN, deadline);
		if (r == -ETIMEDOUT)
			snprintf(why, why_len, "no reply within %d ms", timeout_ms);
		else if (r)
			snprintf(why, why_len, "cannot wait for the reply: %s", strerror(-r));
		if (r)
			return r;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0) {
			r = -errno;
			snprintf(why, why_len, "cannot receive the reply: %s", strerror(-r));
			return r;
		}
		r = feed(tok, buf, n, out, why, why_len);
		if (r)
			return r < 0 ? r : 0;
		total += (size_t)n;
		if (total > CTL_REPLY_MAX) {
			snprintf(why, why_len, "the reply is larger than %d bytes", CTL_REPLY_MAX);
			return -EMSGSIZE;
		}
	}
}

/* Sends the request and reads the reply; args is consumed. */
static int exchange(int fd, const char *command, struct json_object *args, int timeout_ms,
		    struct json_object **reply, char *why, size_t why_len)
{
	struct json_object *obj = NULL;
	int r;

	r = send_request(fd, command, args, why, why_len);
	if (r)
		return r;
	r = read_reply(fd, timeout_ms, &obj, why, why_len);
	if (r)
		return r;
	r = reply_check(obj, why, why_len);
	if (r) {
		json_object_put(obj);
		return r;
	}
	*reply = obj;
	return 0;
}

int ctl_call(const struct ctl *ctl, const char *command, struct json_object *args, int timeout_ms,
	     struct json_object **reply, char *why, size_t why_len)
{
	_cleanup_close_ int fd = -1;
	char cause[256];
	int r;

	r = connect_to(ctl, &fd, why, why_len);
	if (r) {
		json_object_put(args);
		return r;
	}
	r = exchange(fd, command, args, timeout_ms, reply, cause, sizeof(cause));
	if (r)
		snprintf(why, why_len, "fedguardd at %s: %s", ctl->socket_path, cause);
	return r;
}

int ctl_request(const struct ctl *ctl, const char *command, struct json_object *args,
		struct json_object **result)
{
	struct json_object *reply = NULL, *v, *e;
	char why[512];
	int r;

	r = ctl_call(ctl, command, args, CTL_REPLY_TIMEOUT_MS, &reply, why, sizeof(why));
	if (r) {
		fprintf(stderr, "fedguardctl: %s\n", why);
		return r;
	}
	json_object_object_get_ex(reply, "ok", &v);
	if (!json_object_get_boolean(v)) {
		json_object_object_get_ex(reply, "error", &e);
		r = control_code_errno(json_object_get_string(json_object_object_get(e, "code")));
		fprintf(stderr, "fedguardctl: %s\n",
			json_object_get_string(json_object_object_get(e, "message")));
		json_object_put(reply);
		return r;
	}
	if (json_object_object_get_ex(reply, "result", &v) &&
	    json_object_is_type(v, json_type_object))
		*result = json_object_get(v);
	else
		*result = json_object_new_object();
	json_object_put(reply);
	return 0;
}
