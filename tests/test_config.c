// SPDX-License-Identifier: Apache-2.0
/*
 * The configuration file: the loader (agent/config.c) on an option table
 * of the test's own, where what it feeds can be seen one option at a time,
 * and fedguardd --check-config on real files: every kind of bad file with
 * its message and position, overriding from the command line, exit codes.
 * Also keeps docs/configuration.md and --help in step with fedguardd's
 * option table (agent/main.c): an option missing from either fails here.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <getopt.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"

static char dir[] = "/tmp/fgconfig.XXXXXX";

static void setup(void)
{
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_expect_eq(system(cmd), 0);
}

/* Writes @text to DIR/@name; returns the path (static, one at a time). */
static const char *write_file(const char *name, const char *text)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fputs(text, f) >= 0, true);
	cr_assert_eq(fclose(f), 0);
	return path;
}

/* Reads a whole (small) file into a static buffer. */
static const char *slurp(const char *path)
{
	static char buf[65536];
	FILE *f = fopen(path, "r");
	size_t n;

	buf[0] = '\0';
	if (!f)
		return buf;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* --- the loader, on a table of the test's own ------------------------------------------- */

static const struct option test_opts[] = {
	{"name", required_argument, NULL, 'n'},
	{"tag", required_argument, NULL, 't'},
	{"flag", no_argument, NULL, 'f'},
	{"level", optional_argument, NULL, 'l'},
	{"conf", required_argument, NULL, 'c'},
	{"check", required_argument, NULL, 'k'},
	{"help", no_argument, NULL, 'h'},
	{},
};
static const char *const test_repeatable[] = {"tag", NULL};
static const char *const test_cmdline_only[] = {"help", "conf", "check", NULL};
static const struct config_spec test_spec = {
	.program = "testprog",
	.shortopts = "fh",
	.opts = test_opts,
	.repeatable = test_repeatable,
	.cmdline_only = test_cmdline_only,
	.config_val = 'c',
	.check_val = 'k',
};

static char fed[1024];	/* what the parser got: "n=a t=x f l= " */

static int record(int val, void *ctx)
{
	size_t used = strlen(fed);

	if (ctx && optarg && !strcmp(optarg, ctx))
		return -EINVAL;	/* the test's parser refuses that value */
	snprintf(fed + used, sizeof(fed) - used, "%c%s%s ", val, optarg ? "=" : "",
		 optarg ? optarg : "");
	return 0;
}

/* The file as config_feed() gives it, then the command line, as fedguardd parses them. */
static int parse(const char *yaml, struct config **out, int argc, ...)
{
	char *argv[16] = {"testprog", "--conf", (char *)write_file("t.yaml", yaml)};
	int n = 3, c, r;
	va_list ap;

	va_start(ap, argc);
	for (int i = 0; i < argc && n < 15; i++)
		argv[n++] = va_arg(ap, char *);
	va_end(ap);
	fed[0] = '\0';
	r = config_open(&test_spec, n, argv, out);
	if (!r)
		r = config_feed(*out, record, NULL);
	while (!r && (c = getopt_long(n, argv, test_spec.shortopts, test_opts, NULL)) != -1)
		if (c != 'c' && c != 'k')
			record(c, NULL);
	return r;
}

TestSuite(config, .init = setup, .fini = teardown);

Test(config, file_options_are_fed_in_file_order)
{
	struct config *c = NULL;

	cr_assert_eq(parse("tag: [x, \"y z\"]\nname: a\nflag: true\nlevel: true\n", &c, 0), 0);
	cr_expect_str_eq(fed, "t=x t=y z n=a f l ");
	cr_expect_eq(config_count(c), 5);
	cr_expect(strstr(config_path(c), "/t.yaml") != NULL);
	cr_expect_eq(config_check_only(c), false);
	config_free(c);
}

Test(config, scalars_are_arguments_whatever_their_style)
{
	struct config *c = NULL;

	cr_assert_eq(parse("name: '80'\nlevel: 3\ntag: 'true'\n", &c, 0), 0);
	cr_expect_str_eq(fed, "n=80 l=3 t=true ");
	config_free(c);
}

Test(config, false_leaves_a_flag_out_and_an_empty_list_gives_nothing)
{
	struct config *c = NULL;

	cr_assert_eq(parse("flag: false\ntag: []\nlevel: false\n", &c, 0), 0);
	cr_expect_str_eq(fed, "");
	config_free(c);
}

Test(config, command_line_overrides_a_scalar)
{
	struct config *c = NULL;

	cr_assert_eq(parse("name: file\nflag: true\n", &c, 2, "--name", "cmdline"), 0);
	cr_expect_str_eq(fed, "f n=cmdline ");
	cr_expect(config_cmdline_gives(c, "name"));
	cr_expect_not(config_cmdline_gives(c, "flag"));
	config_free(c);
}

Test(config, command_line_replaces_the_list_of_a_repeatable_option)
{
	struct config *c = NULL;

	cr_assert_eq(parse("tag: [a, b, c]\nname: n\n", &c, 2, "--tag", "z"), 0);
	cr_expect_str_eq(fed, "n=n t=z ");
	config_free(c);
	cr_assert_eq(parse("tag: [a, b]\n", &c, 0), 0);
	cr_expect_str_eq(fed, "t=a t=b ");
	config_free(c);
}

Test(config, command_line_flag_replaces_the_file_setting)
{
	struct config *c = NULL;

	cr_assert_eq(parse("flag: false\n", &c, 1, "-f"), 0);
	cr_expect_str_eq(fed, "f ");
	config_free(c);
	cr_assert_eq(parse("flag: true\n", &c, 1, "--flag"), 0);
	cr_expect_str_eq(fed, "f ", "the flag came twice: %s", fed);
	config_free(c);
}

Test(config, overridden_value_is_never_fed)
{
	struct config *c = NULL;
	char *argv[] = {"testprog", "--conf", (char *)write_file("t.yaml", "name: bad\n"),
			"--name", "good", NULL};

	cr_assert_eq(config_open(&test_spec, 5, argv, &c), 0);
	cr_expect_eq(config_feed(c, record, "bad"), 0, "the file's refused value was fed");
	config_free(c);
	argv[3] = NULL;
	cr_assert_eq(config_open(&test_spec, 3, argv, &c), 0);
	cr_expect_eq(config_feed(c, record, "bad"), -EINVAL, "a refused value went unnoticed");
	config_free(c);
}

Test(config, every_error_of_a_file_is_counted_and_feeding_goes_on)
{
	struct config *c = NULL;

	cr_assert_eq(parse("bogus: 1\nname: [a]\nflag: 2\ntag: x\n", &c, 0), -EINVAL);
	cr_expect_str_eq(fed, "t=x ", "the good option is fed despite the others");
	config_free(c);
}

Test(config, without_a_file_nothing_is_fed)
{
	struct config *c = NULL;
	char *argv[] = {"testprog", "--name", "x", NULL};

	cr_assert_eq(config_open(&test_spec, 3, argv, &c), 0);
	cr_expect_null(config_path(c));
	cr_expect_eq(config_count(c), 0);
	cr_expect_eq(config_feed(c, record, NULL), 0);
	config_free(c);
}

Test(config, check_option_names_the_file_too)
{
	struct config *c = NULL;
	char *argv[] = {"testprog", "--check", (char *)write_file("t.yaml", "name: x\n"), NULL};

	cr_assert_eq(config_open(&test_spec, 3, argv, &c), 0);
	cr_expect(config_check_only(c));
	cr_expect_eq(config_count(c), 1);
	config_free(c);
}

Test(config, command_line_that_does_not_parse_is_a_usage_error)
{
	struct config *c = NULL;
	char *argv[] = {"testprog", "--nope", NULL};
	char *twice[] = {"testprog", "--conf", "a", "--check", "b", NULL};

	cr_expect_eq(config_open(&test_spec, 2, argv, &c), -EINVAL);
	cr_expect_eq(config_open(&test_spec, 5, twice, &c), -EINVAL);
}

Test(config, unreadable_file_fails_but_says_which)
{
	struct config *c = NULL;
	char *argv[] = {"testprog", "--conf", "/nonexistent/fg.yaml", NULL};

	cr_expect_eq(config_open(&test_spec, 3, argv, &c), -ENOENT);
	cr_assert_not_null(c, "the caller cannot tell --check from --conf");
	config_free(c);
}

static char changed[256];

static void note(const char *name, void *ctx)
{
	strcat(changed, name);
	strcat(changed, " ");
}

Test(config, changes_between_two_files)
{
	struct config *a = NULL, *b = NULL;

	cr_assert_eq(parse("name: a\ntag: [x, y]\nflag: true\n", &a, 0), 0);
	cr_assert_eq(parse("name: a\ntag: [x]\nlevel: 2\n", &b, 0), 0);
	changed[0] = '\0';
	cr_expect_eq(config_each_change(a, b, note, NULL), 3);
	cr_expect_str_eq(changed, "tag flag level ");
	changed[0] = '\0';
	cr_expect_eq(config_each_change(a, a, note, NULL), 0);
	cr_expect_eq(config_each_change(NULL, b, note, NULL), 3);
	config_free(a);
	config_free(b);
}

Test(config, changes_of_options_the_command_line_gives_do_not_count)
{
	struct config *a = NULL, *b = NULL;

	cr_assert_eq(parse("name: a\nflag: true\n", &a, 2, "--name", "c"), 0);
	cr_assert_eq(parse("name: b\n", &b, 2, "--name", "c"), 0);
	changed[0] = '\0';
	cr_expect_eq(config_each_change(a, b, note, NULL), 1);
	cr_expect_str_eq(changed, "flag ");
	config_free(a);
	config_free(b);
}

/* --- fedguardd --check-config ----------------------------------------------------------- */

/* Runs fedguardd with @args (shell words); its exit status, stdout and stderr in files. */
static int fedguardd(const char *fmt, ...)
{
	char args[2048], cmd[4096];
	const char *bin = getenv("FEDGUARDD");
	va_list ap;
	int st;

	cr_assert_not_null(bin, "FEDGUARDD is not set");
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "cd %s && %s %s >out 2>err </dev/null", dir, bin, args);
	st = system(cmd);
	cr_assert(WIFEXITED(st), "fedguardd did not exit: %s", cmd);
	return WEXITSTATUS(st);
}

static const char *out_of(const char *which)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, which);
	return slurp(path);
}

struct bad_file {
	const char *yaml;
	const char *message; /* expected on stderr, after "error: " */
};

#define AUTH_ALONE                                                                         \
	"--node-cert, --node-key, --node-name, --bundle, --auth-listen, --tunnel-listen and "  \
	"--tunnel-redirect need --trust-domain"

/* lines 1 to 6: a node with identity and peer authentication */
#define TD_FILE                                                                                    \
	"cgroup: /a\ntrust-domain: example.org\nnode-cert: /c\nnode-key: /k\n"                  \
	"node-address: 10.0.0.1\nauth-listen: 10.0.0.1:7443\n"

static const struct bad_file bad_files[] = {
	{"cgroup: /a\nifaces: eth0\n",
	 "bad.yaml:2:1: unknown key 'ifaces': not an option of fedguardd (did you mean 'iface'?)"},
	{"--cgroup: /a\n",
	 "bad.yaml:1:1: unknown key '--cgroup': not an option of fedguardd (did you mean 'cgroup'?)"},
	{"cgroup: /a\nzzzzzzzzzz: 1\n",
	 "bad.yaml:2:1: unknown key 'zzzzzzzzzz': not an option of fedguardd (see fedguardd --help)"},
	{"cgroup:\n  path: /a\n",
	 "bad.yaml:2:3: key 'cgroup': expected its argument (a scalar), got a mapping"},
	{"cgroup:\n", "bad.yaml:1:8: key 'cgroup': expected its argument (a scalar), got nothing"},
	{"cgroup: [/a, /b]\n", "bad.yaml:1:9: key 'cgroup': a list, but the option is not repeatable"},
	{"cgroup: /a\niface: [eth0, {name: eth1}]\n",
	 "bad.yaml:2:15: key 'iface': expected its argument (a scalar), got a mapping"},
	{"cgroup: /a\nlog-allowed: 1\n",
	 "bad.yaml:2:14: key 'log-allowed': the option takes no value: expected true or false, got '1'"},
	{"cgroup: /a\nlog-allowed: \"true\"\n",
	 "bad.yaml:2:14: key 'log-allowed': the option takes no value: expected true or false, got 'true'"},
	{"cgroup: /a\nlog-allowed: [true]\n",
	 "bad.yaml:2:14: key 'log-allowed': the option takes no value: expected true or false, got a list"},
	{"cgroup: /a\nevents-rate: 5\ncgroup: /b\n",
	 "bad.yaml:3:1: duplicate key 'cgroup' (first at line 1)"},
	{"cgroup: /a\nuninstall: true\n",
	 "bad.yaml:2:1: key 'uninstall': a command, not a setting: give --uninstall on the command line"},
	{"config: /etc/fedguard/other.yaml\n",
	 "bad.yaml:1:1: key 'config': a command, not a setting: give --config on the command line"},
	{"cgroup: /a\nevents-rate: lots\n",
	 "bad.yaml:2:14: option --events-rate: 'lots' is not an integer from 0 to 1000000"},
	{"cgroup: /a\nnode-address: 10.0.0.300\n",
	 "bad.yaml:2:15: option --node-address: '10.0.0.300' is not an IPv4 or IPv6 address"},
	{"- cgroup: /a\n", "bad.yaml:1:1: expected a mapping of option names to values, got a list"},
	{"cgroup: [/a\n", "bad.yaml:2:1: not YAML: did not find expected ',' or ']' while parsing a flow sequence"},
	{"cgroup: /a\n---\ncgroup: /b\n", "bad.yaml:3:1: a second YAML document: one configuration per file"},
	{"[a]: b\n", "bad.yaml:1:1: keys must be option names, got a list"},
	{"cgroup: \"/a\\tb\"\n", "bad.yaml:1:9: key 'cgroup': the value contains control character 0x09"},
	{"cgroup: \"/a\\0b\"\n", "bad.yaml:1:9: key 'cgroup': the value contains a NUL byte"},
	/* combinations: at the key the message names first */
	{"cgroup: /a\nnode-key: /k\n", "bad.yaml:2:1: " AUTH_ALONE},
	{"events-rate: 5\n", "bad.yaml: --cgroup PATH is required"},
	{"cgroup: /a\nmetrics-listen: nowhere\n",
	 "bad.yaml:2:1: option --metrics-listen: 'nowhere' is not ADDR:PORT or [ADDR]:PORT"},
	{"cgroup: /a\ninstance: my.instance\n",
	 "bad.yaml: instance name 'my.instance' is invalid: use 1 to 64 of [A-Za-z0-9_-] (bpffs refuses '.')"},
	{"cgroup: /a\ntrust-domain: example.org\nnode-cert: /c\n",
	 "bad.yaml:2:1: --trust-domain needs --node-cert, --node-key, --auth-listen and --node-address"},
	{TD_FILE "tunnel-listen: 10.0.0.1:7443\n",
	 "bad.yaml:7:1: options --tunnel-listen and --auth-listen: the tunnel needs a port of its own, "
	 "not 7443"},
	{TD_FILE "tunnel-listen: 10.0.0.1:7445\ntunnel-redirect: 0.0.0.0:7446\n",
	 "bad.yaml:8:1: option --tunnel-redirect: '0.0.0.0:7446' is not ADDR:PORT or [ADDR]:PORT with "
	 "an address workloads can reach"},
	{TD_FILE "tunnel-redirect: 10.0.0.1:7446\n",
	 "bad.yaml:7:1: option --tunnel-redirect needs --tunnel-listen"},
	{TD_FILE "tunnel-listen: 10.0.0.1:65535\n",
	 "bad.yaml:7:1: option --tunnel-listen: port 65535 leaves no port for the redirect listener; "
	 "give --tunnel-redirect"},
};

Test(config, bad_files_are_refused_with_key_and_position)
{
	char want[512];

	for (size_t i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++) {
		const struct bad_file *b = &bad_files[i];

		write_file("bad.yaml", b->yaml);
		cr_expect_eq(fedguardd("--check-config bad.yaml"), 1, "exit status for:\n%s",
			     b->yaml);
		snprintf(want, sizeof(want), "error: %s\n", b->message);
		cr_expect(strstr(out_of("err"), want) != NULL, "for:\n%s\nwanted: %sgot: %s",
			  b->yaml, want, out_of("err"));
		cr_expect_str_eq(out_of("out"), "", "stdout for a bad file: %s", out_of("out"));
	}
}

Test(config, every_error_of_a_file_is_reported)
{
	const char *err;

	write_file("bad.yaml", "cgroup: /a\nifaces: x\nevents-rate: lots\nlog-allowed: 2\n"
			       "cgroup: /b\n");
	cr_expect_eq(fedguardd("--check-config bad.yaml"), 1);
	err = out_of("err");
	cr_expect(strstr(err, "bad.yaml:2:1: unknown key 'ifaces'"), "%s", err);
	cr_expect(strstr(err, "bad.yaml:3:14: option --events-rate"), "%s", err);
	cr_expect(strstr(err, "bad.yaml:4:14: key 'log-allowed'"), "%s", err);
	cr_expect(strstr(err, "bad.yaml:5:1: duplicate key 'cgroup'"), "%s", err);
}

#define GOOD_FILE                                                                                  \
	"# every kind of value\n"                                                                  \
	"instance: prod\n"                                                                         \
	"cgroup: /sys/fs/cgroup/kubepods\n"                                                        \
	"iface: [eth0, \"eth1\"]\n"                                                                \
	"state-dir: /var/lib/fedguard/prod\n"                                                      \
	"events-rate: '500'\n"                                                                     \
	"events-burst: 50\n"                                                                       \
	"log-allowed: true\n"                                                                      \
	"quiet: false\n"                                                                           \
	"metrics-listen: 127.0.0.1:9090\n"                                                         \
	"alert-window: 30\n"                                                                       \
	"flow-log: none\n"

Test(config, good_file_prints_ok_and_exits_0)
{
	write_file("good.yaml", GOOD_FILE);
	cr_expect_eq(fedguardd("--check-config good.yaml"), 0, "stderr: %s", out_of("err"));
	cr_expect_str_eq(out_of("out"), "ok\n");
	cr_expect_str_eq(out_of("err"), "");
}

Test(config, check_config_exit_status)
{
	write_file("good.yaml", GOOD_FILE);
	cr_expect_eq(fedguardd("--check-config good.yaml --events-rate 7"), 0);
	cr_expect_eq(fedguardd("--check-config missing.yaml"), 1);
	cr_expect(strstr(out_of("err"), "configuration 'missing.yaml': No such file"), "%s",
		  out_of("err"));
	cr_expect_eq(fedguardd("--check-config good.yaml --events-rate lots"), 1);
	cr_expect_eq(fedguardd("--check-config good.yaml --no-such-option"), 2);
	cr_expect_eq(fedguardd("--check-config"), 2);
	cr_expect_eq(fedguardd("--config good.yaml --check-config good.yaml"), 2);
	write_file("empty.yaml", "");
	cr_expect_eq(fedguardd("--check-config empty.yaml --cgroup /x"), 0, "an empty file is fine");
	cr_expect_eq(fedguardd("--check-config /dev/null --cgroup /x"), 1, "not a regular file");
	cr_expect_eq(fedguardd("--check-config %s", dir), 1, "a directory is not a file");
}

Test(config, bad_file_stops_a_start_with_usage_status_before_touching_anything)
{
	write_file("bad.yaml", "cgroup: /a\nevents-rate: lots\n");
	cr_expect_eq(fedguardd("--config bad.yaml --instance fgconfig%d", getpid()), 2);
	cr_expect(strstr(out_of("err"), "bad.yaml:2:14: option --events-rate"), "%s",
		  out_of("err"));
	cr_expect(strstr(out_of("err"), "ready") == NULL);
}

Test(config, command_line_overrides_the_file)
{
	write_file("f.yaml", "cgroup: /a\nevents-rate: lots\n");
	cr_expect_eq(fedguardd("--check-config f.yaml --events-rate 10"), 0, "%s", out_of("err"));
	write_file("f.yaml", "cgroup: /a\nevents-rate: 10\n");
	cr_expect_eq(fedguardd("--check-config f.yaml --events-rate lots"), 1);
	cr_expect(strstr(out_of("err"), "error: option --events-rate: 'lots'"),
		  "a command line error is placed in the file: %s", out_of("err"));
	write_file("f.yaml", "node-cert: /c\n");
	cr_expect_eq(fedguardd("--check-config f.yaml --cgroup /a --trust-domain example.org"), 1);
	cr_expect(strstr(out_of("err"), "error: --trust-domain needs"),
		  "an error about a command-line option is placed in the file: %s", out_of("err"));
}

/* --- fedguardd's options, its --help and docs/configuration.md --------------------------- */

struct opt_name {
	char name[64];
	bool has_arg;
};

/* The long options of fedguardd, read from the table in agent/main.c. */
static size_t main_options(struct opt_name *out, size_t max)
{
	char path[512];
	const char *src, *p;
	regmatch_t m[3];
	regex_t re;
	size_t n = 0;

	snprintf(path, sizeof(path), "%s/agent/main.c", getenv("FG_SOURCE_ROOT"));
	src = strdup(slurp(path));
	cr_assert(strstr(src, "long_opts[]"), "no long_opts in %s", path);
	cr_assert_eq(regcomp(&re, "\\{\"([a-z0-9-]+)\", (no|required|optional)_argument",
			     REG_EXTENDED), 0);
	for (p = strstr(src, "long_opts[]"); n < max && regexec(&re, p, 3, m, 0) == 0;
	     p += m[0].rm_eo) {
		snprintf(out[n].name, sizeof(out[n].name), "%.*s", (int)(m[1].rm_eo - m[1].rm_so),
			 p + m[1].rm_so);
		out[n++].has_arg = p[m[2].rm_so] != 'n';
	}
	regfree(&re);
	free((void *)src);
	cr_assert_geq(n, 30, "only %zu options found in %s: is the table still parsed?", n, path);
	return n;
}

Test(config, option_table_is_read_as_fedguardd_has_it)
{
	struct opt_name opts[256];
	size_t n = main_options(opts, 256);
	char yaml[16384] = "";

	/* a file naming each option: none may be an unknown key to the binary */
	for (size_t i = 0; i < n; i++) {
		strcat(yaml, opts[i].name);
		strcat(yaml, ": true\n");
	}
	write_file("all.yaml", yaml);
	cr_expect_eq(fedguardd("--check-config all.yaml"), 1);
	cr_expect(strstr(out_of("err"), "unknown key") == NULL, "%s", out_of("err"));
	write_file("all.yaml", "cgroup: /a\nno-such-option-here: 1\n");
	cr_expect_eq(fedguardd("--check-config all.yaml"), 1);
	cr_expect(strstr(out_of("err"), "unknown key"), "the binary accepts any key");
}

Test(config, every_option_is_documented)
{
	struct opt_name opts[256];
	size_t n = main_options(opts, 256);
	char path[512], heading[128], *doc;

	snprintf(path, sizeof(path), "%s/docs/configuration.md", getenv("FG_SOURCE_ROOT"));
	doc = strdup(slurp(path));
	cr_assert(strlen(doc) > 1000, "%s is missing or empty", path);
	for (size_t i = 0; i < n; i++) {
		snprintf(heading, sizeof(heading), "\n### `%.63s`\n", opts[i].name);
		cr_expect(strstr(doc, heading), "option --%s is not documented in %s (no heading "
			  "### `%s`)", opts[i].name, path, opts[i].name);
	}
	/* and every heading there is an option */
	for (char *p = strstr(doc, "\n### `"); p; p = strstr(p + 1, "\n### `")) {
		char name[64];
		bool found = false;

		cr_assert_eq(sscanf(p, "\n### `%63[a-z0-9-]`", name), 1);
		for (size_t i = 0; i < n && !found; i++)
			found = !strcmp(opts[i].name, name);
		cr_expect(found, "%s documents '%s', which is not an option of fedguardd", path, name);
	}
	free(doc);
}

Test(config, every_option_is_in_help)
{
	struct opt_name opts[256];
	size_t n = main_options(opts, 256);
	char needle[80];
	const char *help;

	cr_assert_eq(fedguardd("--help"), 0);
	help = out_of("out");
	for (size_t i = 0; i < n; i++) {
		char eol[80];

		snprintf(needle, sizeof(needle), "--%.63s ", opts[i].name);
		snprintf(eol, sizeof(eol), "--%.63s\n", opts[i].name);
		cr_expect(strstr(help, needle) || strstr(help, eol), "--help does not list --%s",
			  opts[i].name);
	}
}

/* The text of option --name's entry in --help: its line and the indented ones after it. */
static void help_entry(const char *help, const char *name, char *buf, size_t len)
{
	char needle[80];
	const char *p, *end;

	snprintf(needle, sizeof(needle), "--%.63s ", name);
	p = strstr(help, needle);
	buf[0] = '\0';
	if (!p)
		return;
	for (end = strchr(p, '\n'); end && !strncmp(end, "\n                             ", 30);
	     end = strchr(end + 1, '\n'))
		;
	snprintf(buf, len, "%.*s", end ? (int)(end - p) : (int)strlen(p), p);
}

Test(config, lists_are_taken_exactly_for_options_help_calls_repeatable)
{
	struct opt_name opts[256];
	size_t n = main_options(opts, 256);
	char yaml[16384] = "", entry[1024], refused[160], help[65536];
	const char *err;

	cr_assert_eq(fedguardd("--help"), 0);
	snprintf(help, sizeof(help), "%s", out_of("out"));
	for (size_t i = 0; i < n; i++) {
		if (!opts[i].has_arg || !strcmp(opts[i].name, "config") ||
		    !strcmp(opts[i].name, "check-config"))
			continue;
		strcat(yaml, opts[i].name);
		strcat(yaml, ": [x]\n");
	}
	write_file("lists.yaml", yaml);
	fedguardd("--check-config lists.yaml");
	err = out_of("err");
	for (size_t i = 0; i < n; i++) {
		if (!opts[i].has_arg || !strcmp(opts[i].name, "config") ||
		    !strcmp(opts[i].name, "check-config"))
			continue;
		help_entry(help, opts[i].name, entry, sizeof(entry));
		snprintf(refused, sizeof(refused),
			 "key '%.63s': a list, but the option is not repeatable", opts[i].name);
		if (strstr(entry, "(repeatable)"))
			cr_expect(strstr(err, refused) == NULL,
				  "--help calls --%s repeatable, the file refuses a list", opts[i].name);
		else
			cr_expect(strstr(err, refused) != NULL,
				  "the file takes a list for --%s, which --help does not call "
				  "repeatable", opts[i].name);
	}
}
