// SPDX-License-Identifier: Apache-2.0
/*
 * fedguardd: installs (or adopts) the fedguard datapath of one instance,
 * then waits for SIGTERM/SIGINT and exits without detaching anything: the
 * pinned links and maps keep enforcing the last state while no agent runs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "addr.h"
#include "agent.h"
#include "cleanup.h"
#include "config.h"
#include "control.h"
#include "datapath.h"
#include "events.h"
#include "fed.h"
#include "loader.h"
#include "log.h"
#include "metrics_http.h"
#include "mstore.h"
#include "observe.h"
#include "peerauth.h"
#include "policy_map.h"
#include "policy_sign.h"
#include "svids.h"
#include "sys.h"

#define STATE_DIR_ROOT "/var/lib/fedguard"

#define EXIT_USAGE 2
/* Drop and allow events each CPU reports a second, by default (--events-rate). */
#define EVENTS_RATE_DEFAULT 1000
/* parse_args(): the arguments asked for --help or --version, already printed. */
#define ARGS_DONE 1

struct args {
	struct loader_opts opts;
	const char **ifaces; /* argv strings, for opts.ifaces */
	enum log_level level;
	bool uninstall;
	const char *state_dir;	    /* default STATE_DIR_ROOT/<instance> */
	const char *control_socket; /* default /run/fedguard/<instance>.sock */
	const char *control_group;
	__u8 node[16];		    /* --node-address */
	bool have_node;
	struct peerauth_opts auth;  /* --trust-domain and what goes with it */
	struct observe_config obs;  /* flow log, metrics, alerts */
	char flow_log[PATH_MAX + 16]; /* default <state-dir>/flows.log */
	bool events_burst_given;
	const char *policy_key;	    /* --policy-key */
	const char *node_addr;	    /* --node-address as given */
	struct fed_opts fed;	    /* --store and what goes with it */
	struct config *config;	    /* --config FILE: its strings are the options' */
	struct config *applied;	    /* the file as the last SIGHUP applied it */
	int argc;		    /* the command line, for SIGHUP to parse again */
	char **argv;
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
		"  --state-dir DIR            registrations and policy (default\n"
		"                             /var/lib/fedguard/NAME)\n"
		"  --control-socket PATH      control socket (default /run/fedguard/NAME.sock)\n"
		"  --control-group GROUP      members of GROUP may use the control socket too\n"
		"  --policy-key FILE          the mesh's policy public key (policy.pub): accept\n"
		"                             only policies signed by it, of a higher version\n"
		"  --node-address ADDR        this node's address, as peers reach it\n"
		"\n"
		"Workload identity and peer authentication (all with --trust-domain):\n"
		"  --trust-domain TD          this node's trust domain: mint SVIDs, authenticate\n"
		"  --node-cert FILE           the node's signing CA (node-ca.pem of fedguard-ca)\n"
		"  --node-key FILE            its key (node-ca.key)\n"
		"  --node-name NAME           node SVID spiffe://TD/fedguard/node/NAME (default:\n"
		"                             the host name)\n"
		"  --bundle TD=FILE           trust bundle of TD, the own and federated ones\n"
		"                             (repeatable): SPIFFE bundle JSON or PEM roots\n"
		"  --svid-ttl SECONDS         lifetime of minted SVIDs (default %u)\n"
		"  --auth-listen ADDR:PORT    mTLS listener; peers are asked on the same port\n"
		"  --tunnel-listen ADDR:PORT  encrypted transport: TLS listener of the tunnels\n"
		"                             between workloads; peers use the same port\n"
		"  --tunnel-redirect ADDR:PORT where workloads' encrypted connections are sent\n"
		"                             (default: the node address, tunnel port + 1)\n"
		"\n"
		"The mesh (docs/federation.md; needs --trust-domain and --policy-key):\n"
		"  --store etcd=URL[,URL...]  keep the mesh's shared state in etcd\n"
		"  --store-lease-ttl SECONDS  lifetime of this node's records without it (default %u)\n"
		"  --peer-listen ADDR:PORT    links with the mesh's agents and federated meshes;\n"
		"                             every agent listens on the same port\n"
		"  --bundle-endpoint-listen ADDR:PORT\n"
		"                             serve this trust domain's bundle (https_spiffe)\n"
		"  --federate-with TD=URL,ENDPOINT-SPIFFE-ID[,BUNDLE-FILE]\n"
		"                             trust mesh TD: its bundle endpoint, the agent that\n"
		"                             serves it, a bootstrap bundle (repeatable)\n"
		"  --share-names-with TD      send alerts to TD's agents with full SPIFFE IDs\n"
		"                             (default: redacted) (repeatable)\n"
		"\n"
		"Observability (docs/observability.md):\n"
		"  --flow-log PATH            flow log, or \"none\" (default STATE-DIR/flows.log)\n"
		"  --flow-log-max-bytes N     rotate the flow log at N bytes (default %llu)\n"
		"  --flow-log-keep N          rotated flow logs kept (default %d)\n"
		"  --log-allowed              report allowed new connections and flows too\n"
		"  --events-rate N            drop/allow events each CPU reports a second,\n"
		"                             0 for no limit (default %d)\n"
		"  --events-burst N           events a CPU may report at once (default: the rate)\n"
		"  --metrics-listen ADDR:PORT serve Prometheus metrics (GET /metrics) there\n"
		"  --alert-deny-threshold N   alert when one identity is denied N times within\n"
		"                             the window, 0 for never (default %d)\n"
		"  --alert-auth-failures N    alert after N failed authentications with one peer\n"
		"                             within the window, 0 for never (default %d)\n"
		"  --alert-window SECONDS     the alerts' window (default %d)\n"
		"  --alert-quarantine KIND    quarantine the subject of every alert of KIND:\n"
		"                             deny_rate, spoofing or auth_failures (default:\n"
		"                             none) (repeatable)\n"
		"\n"
		"Configuration (docs/configuration.md):\n"
		"  --config FILE              options from FILE (YAML, keys are the long option\n"
		"                             names); the command line overrides it; SIGHUP\n"
		"                             reloads what can change at run time\n"
		"  --check-config FILE        check FILE with the command line, print \"ok\" or\n"
		"                             the errors, start nothing (exit 0, 1 or 2)\n"
		"\n"
		"  --uninstall                detach and unpin everything of the instance\n"
		"  -v, --verbose              more output (twice: libbpf debug output)\n"
		"  -q, --quiet                errors only\n"
		"  -h, --help                 this help\n"
		"      --version              print the version\n",
		LOADER_AUTH_SYN_RTO_MS_DEFAULT, POLICY_MAX_ENTRIES_DEFAULT, SVIDS_TTL_DEFAULT,
		MSTORE_LEASE_TTL_DEFAULT,
		(unsigned long long)FLOWLOG_MAX_BYTES_DEFAULT, FLOWLOG_KEEP_DEFAULT,
		EVENTS_RATE_DEFAULT, ALERTS_DENY_THRESHOLD_DEFAULT, ALERTS_AUTH_FAILURES_DEFAULT,
		ALERTS_WINDOW_S_DEFAULT);
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
	OPT_STATE_DIR,
	OPT_CONTROL_SOCKET,
	OPT_CONTROL_GROUP,
	OPT_NODE_ADDRESS,
	OPT_TRUST_DOMAIN,
	OPT_NODE_CERT,
	OPT_NODE_KEY,
	OPT_NODE_NAME,
	OPT_BUNDLE,
	OPT_SVID_TTL,
	OPT_AUTH_LISTEN,
	OPT_TUNNEL_LISTEN,
	OPT_TUNNEL_REDIRECT,
	OPT_FLOW_LOG,
	OPT_FLOW_LOG_MAX_BYTES,
	OPT_FLOW_LOG_KEEP,
	OPT_LOG_ALLOWED,
	OPT_EVENTS_RATE,
	OPT_EVENTS_BURST,
	OPT_METRICS_LISTEN,
	OPT_ALERT_DENY_THRESHOLD,
	OPT_ALERT_AUTH_FAILURES,
	OPT_ALERT_WINDOW,
	OPT_POLICY_KEY,
	OPT_STORE,
	OPT_STORE_LEASE_TTL,
	OPT_PEER_LISTEN,
	OPT_BUNDLE_LISTEN,
	OPT_FEDERATE_WITH,
	OPT_SHARE_NAMES,
	OPT_ALERT_QUARANTINE,
	OPT_CONFIG,
	OPT_CHECK_CONFIG,
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
	{"state-dir", required_argument, NULL, OPT_STATE_DIR},
	{"control-socket", required_argument, NULL, OPT_CONTROL_SOCKET},
	{"control-group", required_argument, NULL, OPT_CONTROL_GROUP},
	{"node-address", required_argument, NULL, OPT_NODE_ADDRESS},
	{"trust-domain", required_argument, NULL, OPT_TRUST_DOMAIN},
	{"node-cert", required_argument, NULL, OPT_NODE_CERT},
	{"node-key", required_argument, NULL, OPT_NODE_KEY},
	{"node-name", required_argument, NULL, OPT_NODE_NAME},
	{"bundle", required_argument, NULL, OPT_BUNDLE},
	{"svid-ttl", required_argument, NULL, OPT_SVID_TTL},
	{"auth-listen", required_argument, NULL, OPT_AUTH_LISTEN},
	{"tunnel-listen", required_argument, NULL, OPT_TUNNEL_LISTEN},
	{"tunnel-redirect", required_argument, NULL, OPT_TUNNEL_REDIRECT},
	{"flow-log", required_argument, NULL, OPT_FLOW_LOG},
	{"flow-log-max-bytes", required_argument, NULL, OPT_FLOW_LOG_MAX_BYTES},
	{"flow-log-keep", required_argument, NULL, OPT_FLOW_LOG_KEEP},
	{"log-allowed", no_argument, NULL, OPT_LOG_ALLOWED},
	{"events-rate", required_argument, NULL, OPT_EVENTS_RATE},
	{"events-burst", required_argument, NULL, OPT_EVENTS_BURST},
	{"metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN},
	{"alert-deny-threshold", required_argument, NULL, OPT_ALERT_DENY_THRESHOLD},
	{"alert-auth-failures", required_argument, NULL, OPT_ALERT_AUTH_FAILURES},
	{"alert-window", required_argument, NULL, OPT_ALERT_WINDOW},
	{"policy-key", required_argument, NULL, OPT_POLICY_KEY},
	{"store", required_argument, NULL, OPT_STORE},
	{"store-lease-ttl", required_argument, NULL, OPT_STORE_LEASE_TTL},
	{"peer-listen", required_argument, NULL, OPT_PEER_LISTEN},
	{"bundle-endpoint-listen", required_argument, NULL, OPT_BUNDLE_LISTEN},
	{"federate-with", required_argument, NULL, OPT_FEDERATE_WITH},
	{"share-names-with", required_argument, NULL, OPT_SHARE_NAMES},
	{"alert-quarantine", required_argument, NULL, OPT_ALERT_QUARANTINE},
	{"config", required_argument, NULL, OPT_CONFIG},
	{"check-config", required_argument, NULL, OPT_CHECK_CONFIG},
	{},
};

/*
 * The configuration file takes every option of long_opts (agent/config.h).
 * Options that may be given several times take a list there: keep this in
 * step with "(repeatable)" in usage() (tests/test_config.c checks both).
 * The commands are not settings and are refused in a file.
 */
static const char *const repeatable_opts[] = {"iface", "bundle", "federate-with",
					      "share-names-with", "alert-quarantine", NULL};
static const char *const cmdline_only_opts[] = {"help", "version", "uninstall", "config",
						"check-config", NULL};

/* What SIGHUP applies from the file; every other change needs a restart. */
static const char *const runtime_opts[] = {"verbose", "quiet", "alert-deny-threshold",
					   "alert-auth-failures", "alert-window", NULL};

static const struct config_spec config_spec = {
	.program = "fedguardd",
	.shortopts = "vqh",
	.opts = long_opts,
	.repeatable = repeatable_opts,
	.cmdline_only = cmdline_only_opts,
	.config_val = OPT_CONFIG,
	.check_val = OPT_CHECK_CONFIG,
};

/* One option of identity and peer authentication; 0 or -EINVAL. */
static int parse_auth_opt(int c, struct args *a)
{
	switch (c) {
	case OPT_TRUST_DOMAIN:
		a->auth.trust_domain = optarg;
		return 0;
	case OPT_NODE_CERT:
		a->auth.node_cert = optarg;
		return 0;
	case OPT_NODE_KEY:
		a->auth.node_key = optarg;
		return 0;
	case OPT_NODE_NAME:
		a->auth.node_name = optarg;
		return 0;
	case OPT_BUNDLE:
		a->auth.bundles[a->auth.n_bundles++] = optarg;
		return 0;
	case OPT_SVID_TTL:
		return parse_u32("--svid-ttl", optarg, SVIDS_TTL_MIN, SVIDS_TTL_MAX,
				 &a->auth.svid_ttl);
	case OPT_AUTH_LISTEN:
		a->auth.listen = optarg;
		return 0;
	case OPT_TUNNEL_LISTEN:
		a->auth.tunnel_listen = optarg;
		return 0;
	case OPT_TUNNEL_REDIRECT:
		a->auth.tunnel_redirect = optarg;
		return 0;
	case OPT_STORE:
		a->fed.store = optarg;
		return 0;
	case OPT_STORE_LEASE_TTL:
		return parse_u32("--store-lease-ttl", optarg, MSTORE_LEASE_TTL_MIN, 3600,
				 &a->fed.lease_ttl);
	case OPT_PEER_LISTEN:
		a->fed.peer_listen = optarg;
		return 0;
	case OPT_BUNDLE_LISTEN:
		a->fed.bundle_listen = optarg;
		return 0;
	case OPT_FEDERATE_WITH:
		a->fed.federate[a->fed.n_federate++] = optarg;
		return 0;
	case OPT_SHARE_NAMES:
		a->fed.share_names[a->fed.n_share_names++] = optarg;
		return 0;
	default:
		return -EINVAL;
	}
}

/* --alert-quarantine KIND: the kinds whose alerts quarantine their subject. */
static int parse_alert_kind(const char *s, unsigned int *mask)
{
	static const __u8 kinds[] = { ALERT_DENY_RATE, ALERT_SPOOFING, ALERT_AUTH_FAILURES };

	for (size_t i = 0; i < sizeof(kinds); i++)
		if (strcmp(s, alert_kind_name(kinds[i])) == 0) {
			*mask |= 1u << kinds[i];
			return 0;
		}
	log_error("option --alert-quarantine: '%s' is not deny_rate, spoofing or auth_failures",
		  s);
	return -EINVAL;
}

/* An option of observability; 0, -EINVAL, or 1 when c is not one of them. */
static int parse_obs_opt(int c, struct args *a)
{
	__u32 v = 0;
	int r;

	switch (c) {
	case OPT_FLOW_LOG:
		a->obs.flowlog.path = optarg;
		return 0;
	case OPT_FLOW_LOG_MAX_BYTES:
		r = parse_u32("--flow-log-max-bytes", optarg, FLOWLOG_MAX_BYTES_MIN, UINT32_MAX, &v);
		a->obs.flowlog.max_bytes = v;
		return r;
	case OPT_FLOW_LOG_KEEP:
		return parse_u32("--flow-log-keep", optarg, 0, FLOWLOG_KEEP_MAX, &a->obs.flowlog.keep);
	case OPT_LOG_ALLOWED:
		a->opts.events_allow = true;
		return 0;
	case OPT_EVENTS_RATE:
		return parse_u32("--events-rate", optarg, 0, 1000000, &a->opts.events_rate);
	case OPT_EVENTS_BURST:
		a->events_burst_given = true;
		return parse_u32("--events-burst", optarg, 1, 1000000, &a->opts.events_burst);
	case OPT_METRICS_LISTEN:
		a->obs.metrics_listen = optarg;
		return 0;
	case OPT_ALERT_DENY_THRESHOLD:
		return parse_u32("--alert-deny-threshold", optarg, 0, 1000000,
				 &a->obs.alerts.deny_threshold);
	case OPT_ALERT_AUTH_FAILURES:
		return parse_u32("--alert-auth-failures", optarg, 0, 1000000,
				 &a->obs.alerts.auth_failures);
	case OPT_ALERT_WINDOW:
		return parse_u32("--alert-window", optarg, 1, 86400, &a->obs.alerts.window_s);
	case OPT_ALERT_QUARANTINE:
		return parse_alert_kind(optarg, &a->obs.auto_quarantine);
	default:
		return 1;
	}
}

/* One option; 0, ARGS_DONE or -EINVAL. */
static int parse_opt(int c, struct args *a)
{
	int r = parse_obs_opt(c, a);

	if (r <= 0)
		return r;
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
	case OPT_STATE_DIR:
		a->state_dir = optarg;
		return 0;
	case OPT_POLICY_KEY:
		a->policy_key = optarg;
		return 0;
	case OPT_CONTROL_SOCKET:
		a->control_socket = optarg;
		return 0;
	case OPT_CONTROL_GROUP:
		a->control_group = optarg;
		return 0;
	case OPT_NODE_ADDRESS:
		if (addr_parse_node(optarg, a->node)) {
			log_error("option --node-address: '%s' is not an IPv4 or IPv6 address",
				  optarg);
			return -EINVAL;
		}
		a->have_node = true;
		a->node_addr = optarg;
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
	case OPT_CONFIG:
	case OPT_CHECK_CONFIG:
		return 0;	/* config_open() took the file */
	default:
		return parse_auth_opt(c, a);
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
	if (a->obs.metrics_listen &&
	    metrics_http_parse_listen(a->obs.metrics_listen, &(struct sockaddr_storage){},
				      &(socklen_t){ 0 })) {
		log_error("option --metrics-listen: '%s' is not ADDR:PORT or [ADDR]:PORT",
			  a->obs.metrics_listen);
		return -EINVAL;
	}
	if (peerauth_opts_check(&a->auth, a->have_node))
		return -EINVAL;
	return fed_opts_check(&a->fed, &a->auth, a->policy_key != NULL);
}

/* The redirect listener goes into the programs' rodata: the connect hooks point there. */
static int tunnel_rodata(struct args *a)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int r;

	if (!a->auth.tunnel_listen)
		return 0;
	r = peerauth_tunnel_redirect(&a->auth, a->node, &ss, &len);
	if (r)
		return r;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		a->opts.tun_port = ntohs(sin->sin_port);
		a->opts.tun_addr4 = sin->sin_addr.s_addr;
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		a->opts.tun_port = ntohs(sin6->sin6_port);
		memcpy(a->opts.tun_addr6, &sin6->sin6_addr, 16);
	}
	return 0;
}

static int feed_opt(int c, void *a)
{
	return parse_opt(c, a);
}

/*
 * 0 to go on, ARGS_DONE after --help or --version, -EINVAL on a usage error.
 * The defaults, then the --config file, then the command line.
 */
static int parse_args(int argc, char **argv, struct args *a)
{
	size_t max;
	int c, r;

	*a = (struct args){
		.opts.instance = "default",
		.opts.auth_syn_rto_ms = LOADER_AUTH_SYN_RTO_MS_DEFAULT,
		.opts.policy_max_entries = POLICY_MAX_ENTRIES_DEFAULT,
		.opts.events_rate = EVENTS_RATE_DEFAULT,
		.level = FG_LOG_INFO,
		.obs.flowlog.max_bytes = FLOWLOG_MAX_BYTES_DEFAULT,
		.obs.flowlog.keep = FLOWLOG_KEEP_DEFAULT,
		.obs.alerts.deny_threshold = ALERTS_DENY_THRESHOLD_DEFAULT,
		.obs.alerts.auth_failures = ALERTS_AUTH_FAILURES_DEFAULT,
		.obs.alerts.window_s = ALERTS_WINDOW_S_DEFAULT,
		.auth.svid_ttl = SVIDS_TTL_DEFAULT,
		.argc = argc,
		.argv = argv,
	};
	r = config_open(&config_spec, argc, argv, &a->config);
	if (r)
		return r;
	max = (size_t)argc + config_count(a->config);
	a->ifaces = calloc(max, sizeof(*a->ifaces));
	a->auth.bundles = calloc(max, sizeof(*a->auth.bundles));
	a->fed.federate = calloc(max, sizeof(*a->fed.federate));
	a->fed.share_names = calloc(max, sizeof(*a->fed.share_names));
	if (!a->ifaces || !a->auth.bundles || !a->fed.federate || !a->fed.share_names)
		return -ENOMEM;
	a->opts.ifaces = a->ifaces;
	r = config_feed(a->config, feed_opt, a);
	if (r)
		return r;
	while ((c = getopt_long(argc, argv, config_spec.shortopts, long_opts, NULL)) != -1) {
		r = parse_opt(c, a);
		if (r)
			return r;
	}
	if (!a->events_burst_given)
		a->opts.events_burst = a->opts.events_rate ? a->opts.events_rate : 1;
	config_annotate(a->config);
	r = check_args(a, argc, argv);
	config_annotate(NULL);
	return r ? r : tunnel_rodata(a);
}

static int block_stop_signals(void)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	fd = signalfd(-1, &set, SFD_CLOEXEC);
	return fd < 0 ? log_error_errno(-errno, "signalfd") : fd;
}

static void args_free(struct args *a)
{
	free(a->ifaces);
	free(a->auth.bundles);
	free(a->fed.federate);
	free(a->fed.share_names);
	config_free(a->config);
	config_free(a->applied);
}

static bool is_runtime_opt(const char *name)
{
	for (const char *const *o = runtime_opts; *o; o++)
		if (!strcmp(*o, name))
			return true;
	return false;
}

static void restart_needed(const char *name, void *ctx)
{
	if (!is_runtime_opt(name))
		log_warn("SIGHUP: '%s' changed: it needs a restart of fedguardd, the running "
			 "value stays", name);
}

static void runtime_changed(const char *name, void *ctx)
{
	if (!is_runtime_opt(name))
		return;
	log_info("SIGHUP: '%s' changed: applied", name);
	*(bool *)ctx = true;
}

/*
 * SIGHUP: the --config file again, through parse_args() as at start. What
 * can change at run time (runtime_opts) is applied; other changes are named
 * and left as they run. A file with errors changes nothing.
 */
static void reload(struct args *a, struct agent *ag)
{
	__attribute__((cleanup(args_free))) struct args next = {};
	const char *path = config_path(a->config);
	bool apply = false;

	if (!path) {
		log_warn("SIGHUP: fedguardd runs without --config: nothing to reload");
		return;
	}
	sys_notify("RELOADING=1");
	if (parse_args(a->argc, a->argv, &next)) {
		log_error("SIGHUP: configuration '%s' has errors (above): nothing changed", path);
		sys_notify("READY=1");
		return;
	}
	config_each_change(a->config, next.config, restart_needed, NULL);
	config_each_change(a->applied ? a->applied : a->config, next.config, runtime_changed,
			   &apply);
	if (apply) {
		log_set_level(next.level);
		observe_set_alerts(ag->observe, &next.obs.alerts);
	}
	config_free(a->applied);
	a->applied = take_ptr(next.config);
	log_info("SIGHUP: configuration '%s' reloaded", path);
	sys_notify("READY=1");
}

/* Serves the control socket and events until SIGTERM or SIGINT; returns the signal. */
static int serve(struct args *a, struct agent *ag, struct control_server *srv, int sig_fd)
{
	struct pollfd p[11] = { { .fd = sig_fd, .events = POLLIN },
			       { .fd = srv->fd, .events = POLLIN },
			       { .fd = events_fd(ag->events), .events = POLLIN } };
	size_t n = 3 + peerauth_pollfds(ag, p + 3, 3);
	size_t obs = n++;	/* observe_fd(), after peerauth's */
	size_t fed = n;		/* the mesh's, after that */
	struct signalfd_siginfo si;

	p[obs] = (struct pollfd){ .fd = observe_fd(ag->observe), .events = POLLIN };
	n += fed_pollfds(ag, p + fed, 4);
	for (;;) {
		if (poll(p, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			return log_error_errno(-errno, "poll");
		}
		if (p[0].revents & POLLIN && read(sig_fd, &si, sizeof(si)) == sizeof(si)) {
			if (si.ssi_signo != SIGHUP)
				return (int)si.ssi_signo;
			reload(a, ag);
		}
		if (p[1].revents & POLLIN)
			control_serve(srv, agent_commands, ag);
		if (p[2].revents & POLLIN)
			events_consume(ag->events);
		peerauth_dispatch(ag, p + 3, obs - 3);
		if (p[obs].revents & POLLIN)
			observe_dispatch(ag->observe);
		fed_dispatch(ag, p + fed, n - fed);
	}
}

/* Flow records, flow log, metrics and alerts, once the events reader and state are there. */
static int observe_begin(struct args *a, struct agent *ag)
{
	a->obs.instance = a->opts.instance;
	if (!a->obs.flowlog.path)
		snprintf(a->flow_log, sizeof(a->flow_log), "%s/%s", ag->state_dir, FLOWLOG_FILE);
	else if (strcmp(a->obs.flowlog.path, "none") != 0)
		snprintf(a->flow_log, sizeof(a->flow_log), "%s", a->obs.flowlog.path);
	a->obs.flowlog.path = a->flow_log[0] ? a->flow_log : NULL;
	return observe_start(&a->obs, ag, &ag->observe);
}

/* The mesh's policy key, or a warning that policies are not verified. */
static int policy_key_load(const char *path, struct agent *ag)
{
	char why[POLICY_SIG_WHY_MAX], fp[POLICY_KEY_FP_MAX];
	int r;

	if (!path) {
		log_warn("no --policy-key: policy documents are applied without a signature check");
		return 0;
	}
	r = policy_key_load_public(path, &ag->policy_key, why, sizeof(why));
	if (r)
		return log_error_errno(r, "%s", why);
	if (policy_key_fingerprint(ag->policy_key, fp) == 0)
		log_info("policies must be signed by the policy key %s ('%s')", fp, path);
	return 0;
}

/* Registrations and the maps derived from them. */
static int agent_start(struct args *a, struct loader *l, struct agent *ag)
{
	int r;

	*ag = (struct agent){
		.instance = a->opts.instance, .version = FEDGUARD_VERSION, .loader = l
	};
	if (a->node_addr)
		snprintf(ag->node_addr, sizeof(ag->node_addr), "%s", a->node_addr);
	if (a->state_dir)
		snprintf(ag->state_dir, sizeof(ag->state_dir), "%s", a->state_dir);
	else
		snprintf(ag->state_dir, sizeof(ag->state_dir), "%s/%s", STATE_DIR_ROOT,
			 a->opts.instance);
	r = datapath_open(&ag->dp, l, a->node, a->opts.policy_max_entries);
	if (!r)
		r = events_open(l->pin_dir, &ag->events);
	if (!r)
		r = policy_key_load(a->policy_key, ag);
	if (r)
		return r;
	r = agent_restore(ag);
	if (!r)
		r = observe_begin(a, ag);
	if (r)
		return r;
	r = peerauth_start(ag, &a->auth);
	return r ? r : fed_start(ag, &a->fed);
}

static int control_start(const struct args *a, struct control_server *srv)
{
	char path[PATH_MAX];

	if (a->control_socket)
		snprintf(path, sizeof(path), "%s", a->control_socket);
	else
		control_default_path(a->opts.instance, path, sizeof(path));
	return control_listen(path, a->control_group, srv);
}

/* --check-config: "ok" and 0, or 1 after the errors (a command line that does not parse: 2). */
static int check_config_verdict(int r)
{
	if (r)
		return EXIT_FAILURE;
	printf("ok\n");
	return EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
	__attribute__((cleanup(args_free))) struct args a = {};
	_cleanup_loader_ struct loader *l = NULL;
	struct control_server srv = { .fd = -1 };
	_cleanup_close_ int sig_fd = -1;
	struct agent ag = {};
	int r, sig;

	/* 1. Arguments: usage errors exit 2, --help and --version exit 0. */
	r = parse_args(argc, argv, &a);
	if (r == ARGS_DONE)
		return EXIT_SUCCESS;
	if (config_check_only(a.config))	/* the verdict on the file; nothing starts */
		return check_config_verdict(r);
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

	/* 5. Stop signals arrive on a descriptor, also during start-up. */
	sig_fd = block_stop_signals();
	if (sig_fd < 0)
		return EXIT_FAILURE;

	/* 6. The control socket first: a second agent on it must not touch the kernel. */
	if (control_start(&a, &srv))
		return EXIT_FAILURE;

	/* 7. Install or adopt the datapath. */
	r = loader_start(&a.opts, &l);

	/* 8. Restore the registrations into the maps. */
	if (r == 0)
		r = agent_start(&a, l, &ag);
	if (r == 0) {
		log_info("fedguardd %s: instance '%s' ready", FEDGUARD_VERSION, a.opts.instance);
		sys_notify("READY=1");

		/* 9. Serve until SIGTERM or SIGINT (SIGHUP reloads); enforcement stays in place. */
		sig = serve(&a, &ag, &srv, sig_fd);
		sys_notify("STOPPING=1");
		log_info("%s: exiting, instance '%s' stays attached",
			 sig > 0 ? strsignal(sig) : "error", a.opts.instance);
	}
	control_close(&srv);
	fed_stop(&ag);
	peerauth_stop(&ag);
	if (ag.loader)	/* agent_start() ran: the datapath handles are initialised */
		datapath_close(&ag.dp);
	observe_free(ag.observe);
	events_close(ag.events);
	json_object_put(ag.state);
	EVP_PKEY_free(ag.policy_key);
	return r ? EXIT_FAILURE : EXIT_SUCCESS;
}
