// SPDX-License-Identifier: Apache-2.0
/*
 * Registers many remote endpoints with a running fedguardd over its control
 * socket, one endpoint.add request each, as an operator's tooling would
 * (fedguardctl makes the same request, one process per call):
 *
 *   bench_ctl INSTANCE endpoints FIRST COUNT
 *
 * Endpoint i is spiffe://bench.test/remote/i at 10.250.(i/250).(i%250+1),
 * node 192.0.2.1. Prints `endpoints=N seconds=S last_ms=L`: the time of
 * all requests and the mean of the last 100, which shows whether a
 * registration gets slower as the node knows more identities.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "control.h"
#include "ctl_client.h"

enum {
	MAX_ENDPOINTS = 60000,	/* fg_ipcache holds 64k prefixes */
	TAIL = 100,
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int endpoint_add(const struct ctl *c, long i)
{
	struct json_object *args = json_object_new_object(), *ips = json_object_new_array();
	struct json_object *result = NULL;
	char id[64], ip[32];
	int r;

	snprintf(id, sizeof(id), "spiffe://bench.test/remote/%ld", i);
	snprintf(ip, sizeof(ip), "10.250.%ld.%ld", i / 250, i % 250 + 1);
	json_object_array_add(ips, json_object_new_string(ip));
	json_object_object_add(args, "spiffe_id", json_object_new_string(id));
	json_object_object_add(args, "ips", ips);
	json_object_object_add(args, "node", json_object_new_string("192.0.2.1"));
	r = ctl_request(c, "endpoint.add", args, &result);
	json_object_put(result);
	return r;
}

int main(int argc, char **argv)
{
	struct ctl c = { 0 };
	long first, count;
	double t0, tail0 = 0;

	if (argc != 5 || strcmp(argv[2], "endpoints")) {
		fprintf(stderr, "usage: bench_ctl INSTANCE endpoints FIRST COUNT\n");
		return 2;
	}
	first = atol(argv[3]);
	count = atol(argv[4]);
	if (first < 0 || count < 0 || first + count > MAX_ENDPOINTS) {
		fprintf(stderr, "bench_ctl: endpoints %ld to %ld: at most %d\n", first,
			first + count, MAX_ENDPOINTS);
		return 2;
	}
	c.instance = argv[1];
	control_default_path(c.instance, c.socket_buf, sizeof(c.socket_buf));
	c.socket_path = c.socket_buf;
	t0 = now_s();
	for (long i = first; i < first + count; i++) {
		if (count - (i - first) == TAIL)
			tail0 = now_s();
		if (endpoint_add(&c, i))
			return 1;
		if ((i - first + 1) % 1000 == 0)
			fprintf(stderr, "bench_ctl: %ld endpoints in %.1f s\n", i - first + 1,
				now_s() - t0);
	}
	printf("endpoints=%ld seconds=%.3f last_ms=%.3f\n", count, now_s() - t0,
	       count >= TAIL ? (now_s() - tail0) * 1e3 / TAIL : 0.0);
	return 0;
}
