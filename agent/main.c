// SPDX-License-Identifier: Apache-2.0
/*
 * fedguardd: installs (or adopts) the fedguard datapath of one instance,
 * then waits for SIGTERM/SIGINT and exits without detaching anything: the
 * pinned links and maps keep enforcing the last state while no agent runs.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "loader.h"
#include "log.h"
#include "policy_map.h"
#include "sys.h"

#define EXIT_USAGE 2
/* parse_args(): the arguments asked for --help or --version, already printed. */
#define ARGS_DONE 1

struct args {
	struct loader_opts opts;
	const char **ifaces; /* argv strings, for opts.ifaces */
	enum log_level level;
	bool uninstall;
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: fedguardd [OPTIONS] --cgroup PATH\n"
		"       fedguardd [--instance NAME] --uninstall\n"
		"\n"
		"Loads the fedguard datapath, attaches it to a cgroup subtree and to network\n"
		"interfaces, pins it under /sys/fs/bpf/fedguard/NAME and keeps it in place\n"
		"after exit. A restart adopts the pinned state without interrupting it.\n"
		"\n"
		"  --instance NAME            instance name (default \"default\")\n"
		"  --cgroup PATH              cgroup v2 subtree to manage: absolute, or\n"
		"                             relative to the cgroup2 mount\n"
		"  --iface NAME               attach the TC perimeter to NAME (repeatable)\n"
		"  --auth-syn-rto-ms N        SYN RTO of sockets waiting for mTLS (default %u)\n"
		"  --policy-max-entries N     size of fg_policy maps created (default %u)\n"
		"  --uninstall                detach and unpin everything of the instance\n"
		"  -v, --verbose              more output (twice: libbpf debug output)\n"
		"  -q, --quiet                errors only\n"
		"  -h, --help                 this help\n"
		"      --version              print the version\n",
		LOADER_AUTH_SYN_RTO_MS_DEFAULT, POLICY_MAX_ENTRIES_DEFAULT);
}

static int parse_u32(const char *opt, const char *s, __u32 min, __u32 max, __u32 *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
		log_error("option %s: '%s' is not an integer from %u to %u", opt, s, min, max);
		return -EINVAL;
	}
	*out = (__u32)v;
	return 0;
}

enum {
	OPT_INSTANCE = 256,
	OPT_CGROUP,
	OPT_IFACE,
	OPT_AUTH_SYN_RTO_MS,
	OPT_POLICY_MAX_ENTRIES,
	OPT_UNINSTALL,
	OPT_VERSION,
};

static const struct option long_opts[] = {
	{"instance", required_argument, NULL, OPT_INSTANCE},
	{"cgroup", required_argument, NULL, OPT_CGROUP},
	{"iface", required_argument, NULL, OPT_IFACE},
	{"auth-syn-rto-ms", required_argument, NULL, OPT_AUTH_SYN_RTO_MS},
	{"policy-max-entries", required_argument, NULL, OPT_POLICY_MAX_ENTRIES},
	{"uninstall", no_argument, NULL, OPT_UNINSTALL},
	{"verbose", no_argument, NULL, 'v'},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, OPT_VERSION},
	{},
};

/* One option; 0, ARGS_DONE or -EINVAL. */
static int parse_opt(int c, struct args *a)
{
	switch (c) {
	case OPT_INSTANCE:
		a->opts.instance = optarg;
		return 0;
	case OPT_CGROUP:
		a->opts.cgroup = optarg;
		return 0;
	case OPT_IFACE:
		a->ifaces[a->opts.n_ifaces++] = optarg;
		return 0;
	case OPT_AUTH_SYN_RTO_MS:
		return parse_u32("--auth-syn-rto-ms", optarg, 1, 60000, &a->opts.auth_syn_rto_ms);
	case OPT_POLICY_MAX_ENTRIES:
		return parse_u32("--policy-max-entries", optarg, 16, 1u << 24,
				 &a->opts.policy_max_entries);
	case OPT_UNINSTALL:
		a->uninstall = true;
		return 0;
	case 'v':
		a->level = a->level < FG_LOG_TRACE ? a->level + 1 : FG_LOG_TRACE;
		return 0;
	case 'q':
		a->level = FG_LOG_ERROR;
		return 0;
	case 'h':
		usage(stdout);
		return ARGS_DONE;
	case OPT_VERSION:
		printf("fedguardd %s\n", FEDGUARD_VERSION);
		return ARGS_DONE;
	default:
		return -EINVAL;
	}
}

static int check_args(const struct args *a, int argc, char **argv)
{
	if (optind < argc) {
		log_error("unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (sys_instance_check(a->opts.instance))
		return -EINVAL;
	if (!a->uninstall && (!a->opts.cgroup || !*a->opts.cgroup)) {
		log_error("--cgroup PATH is required");
		return -EINVAL;
	}
	return 0;
}

/* 0 to go on, ARGS_DONE after --help or --version, -EINVAL on a usage error. */
static int parse_args(int argc, char **argv, struct args *a)
{
	int c, r;

	*a = (struct args){
		.opts.instance = "default",
		.opts.auth_syn_rto_ms = LOADER_AUTH_SYN_RTO_MS_DEFAULT,
		.opts.policy_max_entries = POLICY_MAX_ENTRIES_DEFAULT,
		.level = FG_LOG_INFO,
	};
	a->ifaces = calloc((size_t)argc, sizeof(*a->ifaces));
	if (!a->ifaces)
		return -ENOMEM;
	a->opts.ifaces = a->ifaces;
	while ((c = getopt_long(argc, argv, "vqh", long_opts, NULL)) != -1) {
		r = parse_opt(c, a);
		if (r)
			return r;
	}
	return check_args(a, argc, argv);
}

static void block_stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigprocmask(SIG_BLOCK, set, NULL);
}

static int wait_for_stop(const sigset_t *set)
{
	int sig;

	do
		sig = sigwaitinfo(set, NULL);
	while (sig < 0 && errno == EINTR);
	return sig;
}

static void args_free(struct args *a)
{
	free(a->ifaces);
}

int main(int argc, char **argv)
{
	__attribute__((cleanup(args_free))) struct args a = {};
	_cleanup_loader_ struct loader *l = NULL;
	sigset_t stop;
	int r, sig;

	/* 1. Arguments: usage errors exit 2, --help and --version exit 0. */
	r = parse_args(argc, argv, &a);
	if (r == ARGS_DONE)
		return EXIT_SUCCESS;
	if (r == -EINVAL) {
		fprintf(stderr, "Try 'fedguardd --help'.\n");
		return EXIT_USAGE;
	}
	if (r)
		return EXIT_FAILURE;

	/* 2. Logging, with libbpf's messages routed through it. */
	log_set_level(a.level);
	log_setup_libbpf();

	/* 3. Root and kernel BTF. */
	if (loader_check_host())
		return EXIT_FAILURE;

	/* 4. --uninstall removes everything of the instance and stops there. */
	if (a.uninstall)
		return loader_uninstall(a.opts.instance) ? EXIT_FAILURE : EXIT_SUCCESS;

	/* 5. Block the stop signals now: one arriving during start-up waits for step 7. */
	block_stop_signals(&stop);

	/* 6. Install or adopt the datapath. */
	if (loader_start(&a.opts, &l))
		return EXIT_FAILURE;
	log_info("fedguardd: instance '%s' ready", a.opts.instance);

	/* 7. Wait for SIGTERM or SIGINT; enforcement stays in place. */
	sig = wait_for_stop(&stop);
	log_info("%s: exiting, instance '%s' stays attached", sig > 0 ? strsignal(sig) : "signal",
		 a.opts.instance);
	return EXIT_SUCCESS;
}
