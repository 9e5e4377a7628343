// SPDX-License-Identifier: Apache-2.0
/*
 * The control socket server: listen, authorise, frame, parse, dispatch,
 * reply (docs/control-protocol.md). One connection is served at a time from
 * the agent's main loop, so a handler never runs concurrently with another.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "control.h"
#include "io.h"
#include "log.h"
#include "sys.h"

_Static_assert(sizeof(((struct control_server *)0)->path) ==
		       sizeof(((struct sockaddr_un *)0)->sun_path),
	       "control_server.path holds a sun_path");

static void json_putp(struct json_object **o)
{
	if (*o)
		json_object_put(*o);
}

static void tokener_freep(struct json_tokener **tok)
{
	if (*tok)
		json_tokener_free(*tok);
}

#define _cleanup_json_	  __attribute__((cleanup(json_putp)))
#define _cleanup_tokener_ __attribute__((cleanup(tokener_freep)))

static const struct {
	const char *code;
	int err;
} code_errno[] = {
	{CONTROL_E_INVALID_REQUEST, EINVAL},
	{CONTROL_E_UNKNOWN_COMMAND, EINVAL},
	{CONTROL_E_INVALID_ARGUMENT, EINVAL},
	{CONTROL_E_NOT_FOUND, ENOENT},
	{CONTROL_E_EXISTS, EEXIST},
	{CONTROL_E_PERMISSION_DENIED, EACCES},
	{CONTROL_E_INTERNAL, EIO},
};

int control_code_errno(const char *code)
{
	size_t i;

	for (i = 0; code && i < sizeof(code_errno) / sizeof(code_errno[0]); i++) {
		if (strcmp(code, code_errno[i].code) == 0)
			return -code_errno[i].err;
	}
	return -EIO;
}

int control_error_set(struct control_error *err, const char *code, const char *fmt, ...)
{
	va_list ap;

	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return control_code_errno(code);
}

int control_default_path(const char *instance, char *buf, size_t len)
{
	int n;

	n = snprintf(buf, len, "%s/%s.sock", SYS_RUN_DIR, instance);
	if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

/* getgrnam_r with a buffer grown until the entry fits. */
static int resolve_group(const char *name, gid_t *gid)
{
	_cleanup_free_ char *buf = NULL;
	struct group grp, *found = NULL;
	size_t size = 1024;
	int r;

	for (;;) {
		free(buf);
		buf = malloc(size);
		if (!buf)
			return -ENOMEM;
		r = getgrnam_r(name, &grp, buf, size, &found);
		if (r != ERANGE)
			break;
		size *= 2;
	}
	if (r)
		return log_error_errno(-r, "control group '%s': cannot look it up", name);
	if (!found)
		return log_error_errno(-ENOENT, "control group '%s': no such group", name);
	*gid = grp.gr_gid;
	return 0;
}

/* Creates the directory that holds path, 0755 whatever the umask, unless it exists. */
static int make_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, 0755) < 0) {
		if (errno == EEXIST)
			return 0;
		return log_error_errno(-errno, "control socket '%s': cannot create directory '%s'",
				       path, dir);
	}
	if (chmod(dir, 0755) < 0)
		return log_error_errno(-errno, "control socket '%s': cannot chmod directory '%s'",
				       path, dir);
	return 0;
}

static void sockaddr_fill(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, strlen(path));
}

/*
 * Removes a socket file left by an agent that is gone: only when connecting
 * to it is refused. A live listener or a file that is not a socket stays.
 */
static int remove_stale(const char *path)
{
	_cleanup_close_ int fd = -1;
	struct sockaddr_un sa;
	struct stat st;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return log_error_errno(-errno, "control socket '%s': cannot stat it", path);
	}
	if (!S_ISSOCK(st.st_mode))
		return log_error_errno(-EEXIST, "control socket '%s': exists and is not a socket",
				       path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return log_error_errno(-errno, "control socket '%s': cannot create a socket", path);
	sockaddr_fill(&sa, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return log_error_errno(
			-EADDRINUSE,
			"control socket '%s': another process (a running fedguardd?) listens on it",
			path);
	if (errno != ECONNREFUSED)
		return log_error_errno(-errno, "control socket '%s': cannot probe it", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return log_error_errno(-errno, "control socket '%s': cannot remove the stale file",
				       path);
	log_debug("control socket '%s': removed a stale socket file", path);
	return 0;
}

/* 0600 root-only, or 0660 with the control group. */
static int set_access(const char *path, const struct control_server *srv)
{
	if (srv->has_group && chown(path, (uid_t)-1, srv->gid) < 0)
		return log_error_errno(-errno, "control socket '%s': cannot give it to group '%s'",
				       path, srv->group);
	if (chmod(path, srv->has_group ? 0660 : 0600) < 0)
		return log_error_errno(-errno, "control socket '%s': cannot set its mode", path);
	return 0;
}

static int bind_listen(const char *path, const struct control_server *srv, int *out)
{
	_cleanup_close_ int fd = -1;
	struct sockaddr_un sa;
	int err;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return log_error_errno(-errno, "control socket '%s': cannot create a socket", path);
	sockaddr_fill(&sa, path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return log_error_errno(-errno, "control socket '%s': cannot bind", path);
	err = set_access(path, srv);
	if (!err && listen(fd, 16) < 0)
		err = log_error_errno(-errno, "control socket '%s': cannot listen", path);
	if (err) {
		unlink(path);
		return err;
	}
	*out = take_fd(&fd);
	return 0;
}

int control_listen(const char *path, const char *group_name, struct control_server *out)
{
	struct control_server srv = {.fd = -1, .timeout_ms = CONTROL_TIMEOUT_MS};
	int err;

	if (!*path || strlen(path) >= sizeof(srv.path))
		return log_error_errno(
			-ENAMETOOLONG,
			"control socket '%s': the path is empty or longer than %zu bytes", path,
			sizeof(srv.path) - 1);
	snprintf(srv.path, sizeof(srv.path), "%s", path);

	if (group_name) {
		if (strlen(group_name) >= sizeof(srv.group))
			return log_error_errno(-ENAMETOOLONG, "control group '%s': name too long",
					       group_name);
		err = resolve_group(group_name, &srv.gid);
		if (err)
			return err;
		srv.has_group = true;
		snprintf(srv.group, sizeof(srv.group), "%s", group_name);
	}

	err = make_parent(path);
	if (err)
		return err;

	err = remove_stale(path);
	if (err)
		return err;

	err = bind_listen(path, &srv, &srv.fd);
	if (err)
		return err;

	*out = srv;
	return 0;
}

void control_close(struct control_server *srv)
{
	if (srv->fd < 0)
		return;
	close(srv->fd);
	srv->fd = -1;
	if (unlink(srv->path) < 0 && errno != ENOENT)
		log_debug_errno(-errno, "control socket '%s': cannot remove it", srv->path);
}

/*
 * Whether the peer's supplementary groups include gid. SO_PEERGROUPS gives
 * the groups the peer had at connect(), like SO_PEERCRED: reading
 * /proc/<pid>/status instead would race with the peer exiting and its pid
 * being reused.
 */
static int peer_has_group(int fd, gid_t gid)
{
	_cleanup_free_ gid_t *groups = NULL;
	socklen_t len = 64 * sizeof(gid_t);
	size_t i;

	for (;;) {
		free(groups);
		groups = malloc(len ? len : sizeof(gid_t));
		if (!groups)
			return -ENOMEM;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
			break;
		if (errno != ERANGE)
			return -errno;
	}
	for (i = 0; i < len / sizeof(gid_t); i++) {
		if (groups[i] == gid)
			return 1;
	}
	return 0;
}

/* Root, or a member of the control group; else err says who was refused. */
static int peer_authorise(const struct control_server *srv, int fd, struct ucred *cred,
			  struct control_error *err)
{
	socklen_t len = sizeof(*cred);
	int r;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) < 0)
		return control_error_set(err, CONTROL_E_PERMISSION_DENIED,
					 "cannot read the peer's credentials: %s", strerror(errno));
	if (cred->uid == 0)
		return 0;
	if (!srv->has_group)
		return control_error_set(err, CONTROL_E_PERMISSION_DENIED,
					 "uid %u is not root and no control group is configured",
					 cred->uid);
	r = cred->gid == srv->gid ? 1 : peer_has_group(fd, srv->gid);
	if (r > 0)
		return 0;
	if (r < 0)
		return control_error_set(err, CONTROL_E_PERMISSION_DENIED,
					 "uid %u: cannot read its groups: %s", cred->uid,
					 strerror(-r));
	return control_error_set(err, CONTROL_E_PERMISSION_DENIED,
				 "uid %u is not root and not in group '%s'", cred->uid, srv->group);
}

/*
 * Feeds one received chunk (or, at EOF, the terminating NUL) to the
 * tokener: 1 with *out when the request is complete, 0 for more, or -EINVAL.
 * offset: bytes received before this chunk.
 */
static int feed(struct json_tokener *tok, const char *buf, size_t n, size_t offset,
		struct json_object **out, struct control_error *err)
{
	struct json_object *obj;
	enum json_tokener_error jerr;

	obj = json_tokener_parse_ex(tok, buf, (int)n);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_continue)
		return 0;
	if (jerr != json_tokener_success)
		return control_error_set(
			err, CONTROL_E_INVALID_REQUEST, "request is not JSON: %s at byte %zu",
			json_tokener_error_desc(jerr), offset + json_tokener_get_parse_end(tok));
	if (offset + json_tokener_get_parse_end(tok) > CONTROL_REQUEST_MAX) {
		json_object_put(obj);
		return 0; /* the caller refuses it as too large */
	}
	*out = obj;
	return 1;
}

/*
 * Receives one JSON value: up to its end (an object ends at its closing
 * brace, so a newline or EOF after it is not needed), at most
 * CONTROL_REQUEST_MAX bytes, before the deadline.
 */
static int read_request(int fd, int64_t deadline, int timeout_ms, struct json_object **out,
			struct control_error *err)
{
	_cleanup_tokener_ struct json_tokener *tok = NULL;
	char buf[16384];
	size_t total = 0, want;
	ssize_t n;
	int r;

	tok = json_tokener_new_ex(CONTROL_JSON_DEPTH);
	if (!tok)
		return control_error_set(err, CONTROL_E_INTERNAL, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	for (;;) {
		r = io_wait(fd, POLLIN, deadline);
		if (r == -ETIMEDOUT)
			return control_error_set(err, CONTROL_E_INVALID_REQUEST,
						 "no complete request within %d ms", timeout_ms);
		if (r < 0)
			return control_error_set(err, CONTROL_E_INTERNAL,
						 "cannot wait for the request: %s", strerror(-r));
		/* One byte more than allowed tells a request that is too large. */
		want = CONTROL_REQUEST_MAX + 1 - total;
		n = recv(fd, buf, want < sizeof(buf) ? want : sizeof(buf), 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			return control_error_set(err, CONTROL_E_INVALID_REQUEST,
						 "cannot receive the request: %s", strerror(errno));
		if (n == 0) {
			/* The NUL ends a value that has no end of its own (a number). */
			r = feed(tok, "", 1, total, out, err);
			if (r == 0)
				r = control_error_set(err, CONTROL_E_INVALID_REQUEST,
						      "request ends before its JSON value");
			return r < 0 ? r : 0;
		}
		r = feed(tok, buf, (size_t)n, total, out, err);
		if (r)
			return r < 0 ? r : 0;
		total += (size_t)n;
		if (total > CONTROL_REQUEST_MAX)
			return control_error_set(err, CONTROL_E_INVALID_REQUEST,
						 "request larger than %d bytes",
						 CONTROL_REQUEST_MAX);
	}
}

/* The command name and args of a request object; args is a new reference. */
static int request_parse(struct json_object *req, const char **command, struct json_object **args,
			 struct control_error *err)
{
	struct json_object *v = NULL;

	if (!json_object_is_type(req, json_type_object))
		return control_error_set(err, CONTROL_E_INVALID_REQUEST,
					 "request is not a JSON object");
	if (!json_object_object_get_ex(req, "protocol", &v))
		return control_error_set(err, CONTROL_E_INVALID_REQUEST,
					 "request has no 'protocol'");
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) != CONTROL_PROTOCOL)
		return control_error_set(
			err, CONTROL_E_INVALID_REQUEST,
			"protocol version %s is not supported (this agent speaks %d)",
			json_object_to_json_string(v), CONTROL_PROTOCOL);
	if (!json_object_object_get_ex(req, "command", &v) ||
	    !json_object_is_type(v, json_type_string))
		return control_error_set(err, CONTROL_E_INVALID_REQUEST,
					 "request has no 'command' string");
	*command = json_object_get_string(v);
	if (!json_object_object_get_ex(req, "args", &v)) {
		*args = json_object_new_object();
		return *args ? 0 : control_error_set(err, CONTROL_E_INTERNAL, "out of memory");
	}
	if (!json_object_is_type(v, json_type_object))
		return control_error_set(err, CONTROL_E_INVALID_REQUEST,
					 "'args' of command '%s' is not an object", *command);
	*args = json_object_get(v);
	return 0;
}

static const struct control_command *find_command(const struct control_command *table,
						  const char *name)
{
	for (; table->name; table++) {
		if (strcmp(table->name, name) == 0)
			return table;
	}
	return NULL;
}

/*
 * Checks the request and runs its handler, which fills result. On success
 * *cmd_out and *args_out (a reference) say what ran, for a take function.
 */
static int dispatch(const struct control_command *table, void *ctx, struct json_object *req,
		    struct json_object *result, struct control_error *err,
		    const struct control_command **cmd_out, struct json_object **args_out)
{
	static const char *const none[] = {NULL};
	_cleanup_json_ struct json_object *args = NULL;
	const struct control_command *cmd;
	const char *name = NULL;
	int r;

	r = request_parse(req, &name, &args, err);
	if (r)
		return r;
	cmd = find_command(table, name);
	if (!cmd)
		return control_error_set(err, CONTROL_E_UNKNOWN_COMMAND, "unknown command '%s'",
					 name);
	r = control_args_check_known(args, cmd->args ? cmd->args : none, err);
	if (r)
		return r;
	r = cmd->fn(ctx, args, result, err);
	if (r < 0 && !err->code)
		control_error_set(err, CONTROL_E_INTERNAL, "command '%s' failed: %s", name,
				  strerror(-r));
	if (r < 0)
		return r;
	*cmd_out = cmd;
	*args_out = json_object_get(args);
	return 0;
}

/* The reply object; takes result, which only a success carries. */
static struct json_object *reply_new(struct json_object *result, const struct control_error *err)
{
	struct json_object *reply = json_object_new_object();
	struct json_object *e;

	json_object_object_add(reply, "protocol", json_object_new_int(CONTROL_PROTOCOL));
	json_object_object_add(reply, "ok", json_object_new_boolean(!err));
	if (!err) {
		json_object_object_add(reply, "result", result);
		return reply;
	}
	json_object_put(result);
	e = json_object_new_object();
	json_object_object_add(e, "code", json_object_new_string(err->code));
	json_object_object_add(e, "message", json_object_new_string(err->message));
	json_object_object_add(reply, "error", e);
	return reply;
}

/* Writes the reply and a newline, giving up after timeout_ms. */
static int send_reply(int fd, struct json_object *reply, int timeout_ms)
{
	int64_t deadline = io_now_ms() + timeout_ms;
	_cleanup_free_ char *text = NULL;
	size_t len, done = 0;
	ssize_t n;
	int r;

	if (asprintf(&text, "%s\n",
		     json_object_to_json_string_ext(
			     reply, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)) < 0) {
		text = NULL;
		return -ENOMEM;
	}
	len = strlen(text);
	while (done < len) {
		n = send(fd, text + done, len - done, MSG_NOSIGNAL);
		if (n >= 0) {
			done += (size_t)n;
			continue;
		}
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		r = io_wait(fd, POLLOUT, deadline);
		if (r)
			return r;
	}
	return 0;
}

/* Authorises, reads and runs one request; 0 or -errno with err filled. */
static int handle(const struct control_server *srv, int fd, const struct control_command *table,
		  void *ctx, struct json_object *result, struct control_error *err,
		  const struct control_command **cmd, struct json_object **args)
{
	_cleanup_json_ struct json_object *req = NULL;
	struct ucred cred = {};
	int r;

	r = peer_authorise(srv, fd, &cred, err);
	if (r) {
		log_debug("control: pid %d: refused: %s", cred.pid, err->message);
		return r;
	}
	r = read_request(fd, io_now_ms() + srv->timeout_ms, srv->timeout_ms, &req, err);
	if (!r)
		r = dispatch(table, ctx, req, result, err, cmd, args);
	if (r)
		log_debug("control: uid %u pid %d: %s: %s", cred.uid, cred.pid, err->code,
			  err->message);
	return r;
}

int control_serve(struct control_server *srv, const struct control_command *table, void *ctx)
{
	_cleanup_json_ struct json_object *reply = NULL, *args = NULL;
	const struct control_command *cmd = NULL;
	struct control_error err = {};
	_cleanup_close_ int fd = -1;
	struct json_object *result;
	int r;

	fd = accept4(srv->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	result = json_object_new_object();
	r = handle(srv, fd, table, ctx, result, &err, &cmd, &args);
	reply = reply_new(result, r ? &err : NULL);
	r = send_reply(fd, reply, srv->timeout_ms);
	if (r)
		log_debug_errno(r, "control: cannot send the reply");
	else if (cmd && cmd->take && cmd->take(ctx, args, fd) == 1)
		take_fd(&fd); /* the command streams on it now */
	return 0;
}

/*
 * The member name of args, checked against type: 1 with *out, 0 when absent
 * and optional, -EINVAL when missing or of another type. what names the
 * expected type in the message.
 */
static int arg_get(struct json_object *args, const char *name, bool required, enum json_type type,
		   const char *what, struct json_object **out, struct control_error *err)
{
	struct json_object *v = NULL;

	if (!json_object_object_get_ex(args, name, &v)) {
		if (!required)
			return 0;
		return control_error_set(err, CONTROL_E_INVALID_ARGUMENT,
					 "argument '%s' is missing", name);
	}
	if (!json_object_is_type(v, type))
		return control_error_set(err, CONTROL_E_INVALID_ARGUMENT, "argument '%s' is not %s",
					 name, what);
	*out = v;
	return 1;
}

/* A JSON string with an embedded NUL would be cut short as a C string. */
static bool string_has_nul(struct json_object *s)
{
	return strlen(json_object_get_string(s)) != (size_t)json_object_get_string_len(s);
}

int control_arg_string(struct json_object *args, const char *name, bool required, const char **out,
		       struct control_error *err)
{
	struct json_object *v = NULL;
	int r;

	r = arg_get(args, name, required, json_type_string, "a string", &v, err);
	if (r <= 0)
		return r;
	if (string_has_nul(v))
		return control_error_set(err, CONTROL_E_INVALID_ARGUMENT,
					 "argument '%s' contains a NUL character", name);
	*out = json_object_get_string(v);
	return 0;
}

int control_arg_bool(struct json_object *args, const char *name, bool required, bool *out,
		     struct control_error *err)
{
	struct json_object *v = NULL;
	int r;

	r = arg_get(args, name, required, json_type_boolean, "a boolean", &v, err);
	if (r <= 0)
		return r;
	*out = json_object_get_boolean(v);
	return 0;
}

int control_arg_int(struct json_object *args, const char *name, bool required, int64_t min,
		    int64_t max, int64_t *out, struct control_error *err)
{
	struct json_object *v = NULL;
	int64_t n;
	int r;

	r = arg_get(args, name, required, json_type_int, "an integer", &v, err);
	if (r <= 0)
		return r;
	/* json-c clamps to INT64_MIN..INT64_MAX; beyond that is out of range anyway. */
	n = json_object_get_int64(v);
	if (n < min || n > max || (n == INT64_MAX && json_object_get_uint64(v) > INT64_MAX))
		return control_error_set(err, CONTROL_E_INVALID_ARGUMENT,
					 "argument '%s': %s is out of range %lld..%lld", name,
					 json_object_to_json_string(v), (long long)min,
					 (long long)max);
	*out = n;
	return 0;
}

int control_arg_string_array(struct json_object *args, const char *name, bool required,
			     const char ***out, size_t *count, struct control_error *err)
{
	_cleanup_free_ const char **strs = NULL;
	struct json_object *v = NULL, *s;
	size_t i, n;
	int r;

	r = arg_get(args, name, required, json_type_array, "an array of strings", &v, err);
	if (r <= 0)
		return r;
	n = json_object_array_length(v);
	if (n) {
		strs = calloc(n, sizeof(*strs));
		if (!strs)
			return control_error_set(err, CONTROL_E_INTERNAL, "out of memory");
	}
	for (i = 0; i < n; i++) {
		s = json_object_array_get_idx(v, i);
		if (!json_object_is_type(s, json_type_string) || string_has_nul(s))
			return control_error_set(err, CONTROL_E_INVALID_ARGUMENT,
						 "argument '%s': element %zu is not a string", name,
						 i);
		strs[i] = json_object_get_string(s);
	}
	*out = take_ptr(strs);
	*count = n;
	return 0;
}

int control_arg_object(struct json_object *args, const char *name, bool required,
		       struct json_object **out, struct control_error *err)
{
	struct json_object *v = NULL;
	int r;

	r = arg_get(args, name, required, json_type_object, "an object", &v, err);
	if (r <= 0)
		return r;
	json_object_object_foreach (v, key, val) {
		if (!json_object_is_type(val, json_type_string) || string_has_nul(val))
			return control_error_set(err, CONTROL_E_INVALID_ARGUMENT,
						 "argument '%s': the value of '%s' is not a string",
						 name, key);
	}
	*out = v;
	return 0;
}

int control_args_check_known(struct json_object *args, const char *const known[],
			     struct control_error *err)
{
	size_t i;

	json_object_object_foreach (args, key, val) {
		(void)val;
		for (i = 0; known[i]; i++) {
			if (strcmp(key, known[i]) == 0)
				break;
		}
		if (!known[i])
			return control_error_set(err, CONTROL_E_INVALID_ARGUMENT,
						 "unknown argument '%s'", key);
	}
	return 0;
}
