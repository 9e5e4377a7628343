/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fedguardctl's end of the control protocol (docs/control-protocol.md): one
 * request per connection to the socket of ctl->socket_path.
 */
#ifndef FEDGUARD_CTL_CLIENT_H
#define FEDGUARD_CTL_CLIENT_H

#include <stddef.h>

#include "ctl.h"

struct json_object;

/* Quarantine and policy apply may take a while. */
#define CTL_REPLY_TIMEOUT_MS 30000

/*
 * Sends one request and receives the whole reply without printing anything:
 * 0 with *reply (a JSON object with a boolean "ok"), or -errno with why
 * saying what failed (connect, send, receive, -ETIMEDOUT, -EBADMSG for a
 * reply that is not one). args is consumed; NULL sends none.
 */
int ctl_call(const struct ctl *ctl, const char *command, struct json_object *args, int timeout_ms,
	     struct json_object **reply, char *why, size_t why_len);

/*
 * ctl_call() for a command that must succeed: 0 with *result, the reply's
 * result (the caller's reference). Otherwise prints the cause on stderr as
 * "fedguardctl: <message>" and returns -errno: the transport's, or for an
 * error reply the errno of its code (control_code_errno()).
 */
int ctl_request(const struct ctl *ctl, const char *command, struct json_object *args,
		struct json_object **result);

#endif /* FEDGUARD_CTL_CLIENT_H */
