/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's end of the control protocol (docs/control-protocol.md): a Unix
 * stream socket, one request per connection, served from the agent's main
 * loop. control_serve() authorises the peer, reads and checks the request,
 * calls the handler of its command from a table and writes the reply.
 *
 * Functions return 0 or a negative errno. control_listen() faces the
 * operator's configuration and logs the cause of a failure at error level;
 * everything else logs at debug level only.
 */
#ifndef FEDGUARD_CONTROL_H
#define FEDGUARD_CONTROL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct json_object;

#define CONTROL_PROTOCOL    1
#define CONTROL_REQUEST_MAX (1024 * 1024) /* bytes of one request */
#define CONTROL_TIMEOUT_MS  5000	  /* to receive a whole request */
#define CONTROL_JSON_DEPTH  16		  /* nesting of a request */
#define CONTROL_MESSAGE_MAX 512

/* The error codes of the protocol. */
#define CONTROL_E_INVALID_REQUEST   "invalid_request"
#define CONTROL_E_UNKNOWN_COMMAND   "unknown_command"
#define CONTROL_E_INVALID_ARGUMENT  "invalid_argument"
#define CONTROL_E_NOT_FOUND	    "not_found"
#define CONTROL_E_EXISTS	    "exists"
#define CONTROL_E_PERMISSION_DENIED "permission_denied"
#define CONTROL_E_INTERNAL	    "internal"

/* What a failed command answers: code is one of CONTROL_E_*, NULL if unset. */
struct control_error {
	const char *code;
	char message[CONTROL_MESSAGE_MAX];
};

/*
 * A command handler. args is the request's "args" object (an empty object
 * when the request has none, never NULL); result is an empty object that the
 * handler fills. Returns >= 0, or a negative errno with err filled; a handler
 * that fails without filling err is answered with "internal" and the errno.
 */
typedef int (*control_fn)(void *ctx, struct json_object *args, struct json_object *result,
			  struct control_error *err);

/*
 * For commands that stream (docs/control-protocol.md, "Streaming"): called
 * after fn succeeded and its reply was sent whole, with the same args.
 * Returns 1 when it took the connection (it then owns fd, which is
 * non-blocking), 0 to let control_serve() close it as usual.
 */
typedef int (*control_take_fn)(void *ctx, struct json_object *args, int fd);

/*
 * One entry of a command table; the table ends with an entry whose name is
 * NULL. args lists the names of the arguments the command accepts
 * (NULL-terminated); NULL means none. control_serve() refuses any other
 * argument with "invalid_argument" before calling fn, so a handler only
 * checks the types and values of the ones it takes. take is NULL for all
 * but streaming commands.
 */
struct control_command {
	const char *name;
	control_fn fn;
	const char *const *args;
	control_take_fn take;
};

struct control_server {
	int fd;		/* listening, non-blocking: poll it for POLLIN */
	char path[108]; /* sizeof(sun_path) */
	bool has_group; /* --control-group given */
	gid_t gid;
	char group[64]; /* its name, for messages */
	int timeout_ms; /* CONTROL_TIMEOUT_MS; tests set a shorter one */
};

/*
 * The socket of an instance: SYS_RUN_DIR/<instance>.sock. -ENAMETOOLONG if
 * it does not fit in buf or in a socket address.
 */
int control_default_path(const char *instance, char *buf, size_t len);

/*
 * Listens on path: creates its parent directory (0755) if missing, removes a
 * socket file nobody listens on, binds, and sets the mode to 0600, or to
 * 0660 with the group group_name when one is given (NULL: none). Peers in
 * that group are then authorised as well as root. -EADDRINUSE when a live
 * process listens on path; -EEXIST when path is something else than a
 * socket; -ENOENT for an unknown group. Logs the cause of a failure.
 */
int control_listen(const char *path, const char *group_name, struct control_server *out);

/*
 * Serves one connection: accepts it, answers one request and closes it
 * (or hands it to the command's take function).
 * Call it when the listening fd is readable. Blocks for up to timeout_ms to
 * receive the request, then for as long as the handler takes. Returns 0 once
 * a connection was answered (whether or not its request succeeded), -EAGAIN
 * when no connection was pending, or the -errno of accept().
 */
int control_serve(struct control_server *srv, const struct control_command *table, void *ctx);

/* Closes the socket and removes its file. */
void control_close(struct control_server *srv);

/*
 * Fills err and returns the errno that goes with code: -EINVAL for
 * invalid_argument, invalid_request and unknown_command, -ENOENT for
 * not_found, -EEXIST for exists, -EACCES for permission_denied, -EIO for
 * internal. A handler can end with "return control_error_set(err, ...);".
 */
__attribute__((format(printf, 3, 4))) int control_error_set(struct control_error *err,
							    const char *code, const char *fmt, ...);

/* The errno of an error code as for control_error_set(); -EIO if unknown. */
int control_code_errno(const char *code);

/*
 * Argument helpers for handlers. Each returns 0, with *out set when the
 * argument is present and left as it was (the caller's default) when it is
 * absent and optional; or -EINVAL with err filled ("invalid_argument",
 * naming the argument and the cause) when it is missing but required, of
 * the wrong type or out of range. Strings are borrowed from args; strings
 * containing a NUL are refused.
 */
int control_arg_string(struct json_object *args, const char *name, bool required, const char **out,
		       struct control_error *err);
int control_arg_bool(struct json_object *args, const char *name, bool required, bool *out,
		     struct control_error *err);
/* An integer (not a float, not a string) in [min, max]. */
int control_arg_int(struct json_object *args, const char *name, bool required, int64_t min,
		    int64_t max, int64_t *out, struct control_error *err);
/*
 * An array of strings: *out is a malloc'd array of *count pointers into args
 * (NULL for an empty array); the caller frees the array, not the strings.
 */
int control_arg_string_array(struct json_object *args, const char *name, bool required,
			     const char ***out, size_t *count, struct control_error *err);
/* An object whose values are all strings (labels): *out is borrowed. */
int control_arg_object(struct json_object *args, const char *name, bool required,
		       struct json_object **out, struct control_error *err);

/* 0, or -EINVAL with err filled when args has a member not in known (NULL-terminated). */
int control_args_check_known(struct json_object *args, const char *const known[],
			     struct control_error *err);

#endif /* FEDGUARD_CONTROL_H */
