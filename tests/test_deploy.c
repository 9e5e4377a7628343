// SPDX-License-Identifier: Apache-2.0
/*
 * What deploy/ ships, checked without a cluster, a container engine or a
 * running systemd: the Kubernetes manifests against the API schemas
 * (tests/k8s/validate.mjs, kubernetes-models), broken variants of them
 * rejected, their fedguardd configurations through --check-config and
 * their paths mounted; the systemd units through systemd-analyze verify as
 * scripts/install.sh installs them; install.sh itself into temporary
 * directories; the image's runtime packages against the NEEDED entries of
 * the binaries; sd_notify (sys_notify()) over real AF_UNIX sockets.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/require.h"
#include "sys.h"

static char dir[] = "/tmp/fgdeploy.XXXXXX";
static char out[1 << 20];	/* stdout and stderr of the last run() */

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

static const char *src(void)
{
	const char *s = getenv("FG_SOURCE_ROOT");

	cr_assert_not_null(s, "FG_SOURCE_ROOT is not set");
	return s;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

static void spit(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

/* Runs a shell command in the source tree; its exit status, its output in out. */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int run(const char *fmt, ...)
{
	char cmd[8192], path[256], full[8600];
	char *text;
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), "%s/run.out", dir);
	snprintf(full, sizeof(full), "cd '%s' && ( %s ) >%s 2>&1 </dev/null", src(), cmd, path);
	st = system(full);
	text = slurp(path);
	snprintf(out, sizeof(out), "%s", text);
	free(text);
	cr_assert(WIFEXITED(st), "did not exit: %s", cmd);
	return WEXITSTATUS(st);
}

/* --- Kubernetes ----------------------------------------------------------------------------- */

#define MANIFESTS                                                                                  \
	"deploy/kubernetes/base/*.yaml deploy/kubernetes/meshes/*/*.yaml "                         \
	"deploy/kubernetes/uninstall/*.yaml"

/* The validator and its packages (scripts/setup.sh installs them); else skip, or fail in CI. */
static void require_validator(void)
{
	char path[PATH_MAX];

	if (run("command -v node") != 0)
		fg_test_unavailable("node is not installed (scripts/setup.sh installs it)");
	snprintf(path, sizeof(path), "%s/tests/k8s/node_modules/kubernetes-models/package.json",
		 src());
	if (access(path, R_OK) != 0)
		fg_test_unavailable("tests/k8s has no node_modules: run scripts/setup.sh (npm ci)");
}

static int count_of(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

TestSuite(k8s, .init = setup, .fini = teardown, .timeout = 120);

Test(k8s, every_manifest_validates_against_the_api_schemas)
{
	require_validator();
	cr_expect_eq(run("node tests/k8s/validate.mjs " MANIFESTS), 0, "%s", out);
	cr_expect_geq(count_of(out, ": ok\n"), 6, "too few objects validated:\n%s", out);
	for (const char *kind = "Namespace\0ServiceAccount\0ConfigMap\0DaemonSet\0"; *kind;
	     kind += strlen(kind) + 1) {
		char want[64];

		snprintf(want, sizeof(want), ": %s/", kind);
		cr_expect(strstr(out, want), "no %s among the manifests:\n%s", kind, out);
	}
}

struct breakage {
	const char *from, *to; /* a change to the real DaemonSet */
	const char *expect;    /* in the validator's output */
};

static const struct breakage breakages[] = {
	{"hostNetwork: true", "hostNetwork: \"yes\"", "/spec/template/spec/hostNetwork: must be boolean"},
	{"mountPropagation: HostToContainer", "mountPropogation: HostToContainer",
	 "unknown field \"mountPropogation\""},
	{"add: [NET_ADMIN, SYS_ADMIN]", "add: NET_ADMIN", "/capabilities/add: must be array"},
	{"  selector:\n    matchLabels:\n      app.kubernetes.io/name: fedguard\n", "",
	 "/spec: must have required property selector"},
	{"kind: DaemonSet", "kind: DaemonSett", "no schema for apps/v1 DaemonSett"},
	{"maxUnavailable: 1", "maxUnavailable: [1]", "/maxUnavailable"},
	{"terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: thirty",
	 "/spec/template/spec/terminationGracePeriodSeconds: must be integer"},
};

/* The real DaemonSet with one change: what the validator says of it. */
Test(k8s, broken_variants_of_the_daemonset_are_rejected)
{
	char path[PATH_MAX], bad[PATH_MAX];

	require_validator();
	snprintf(path, sizeof(path), "%s/deploy/kubernetes/base/daemonset.yaml", src());
	snprintf(bad, sizeof(bad), "%s/broken.yaml", dir);
	for (size_t i = 0; i < sizeof(breakages) / sizeof(breakages[0]); i++) {
		const struct breakage *b = &breakages[i];
		char *text = slurp(path), *at = strstr(text, b->from), *mut;

		cr_assert_not_null(at, "'%s' is no longer in the DaemonSet: update the test", b->from);
		cr_assert_geq(asprintf(&mut, "%.*s%s%s", (int)(at - text), text, b->to,
				       at + strlen(b->from)), 0);
		spit(bad, mut);
		cr_expect_eq(run("node tests/k8s/validate.mjs %s", bad), 1,
			     "accepted with '%s' -> '%s':\n%s", b->from, b->to, out);
		cr_expect(strstr(out, b->expect), "with '%s' -> '%s': wanted '%s' in:\n%s", b->from,
			  b->to, b->expect, out);
		free(mut);
		free(text);
	}
	cr_expect_eq(run("node tests/k8s/validate.mjs"), 2, "no file is a usage error");
}

Test(k8s, configmaps_pass_check_config_with_the_daemonsets_arguments)
{
	char conf_dir[PATH_MAX], path[PATH_MAX * 2];
	int n = 0;

	require_validator();
	snprintf(conf_dir, sizeof(conf_dir), "%s/conf", dir);
	cr_assert_eq(mkdir(conf_dir, 0700), 0);
	cr_assert_eq(run("node tests/k8s/validate.mjs --config %s " MANIFESTS, conf_dir), 0, "%s",
		     out);
	cr_assert_eq(run("ls %s", conf_dir), 0);
	char list[4096];

	snprintf(list, sizeof(list), "%.4000s", out);
	for (char *name = strtok(list, "\n"); name; name = strtok(NULL, "\n"), n++) {
		snprintf(path, sizeof(path), "%s/%s", conf_dir, name);
		/* --node-address is what the DaemonSet adds: $(NODE_IP) */
		cr_expect_eq(run("%s --check-config %s --node-address 192.0.2.10", getenv("FEDGUARDD"),
				 path), 0, "%s:\n%s", name, out);
		cr_expect_str_eq(out, "ok\n", "%s", name);
	}
	cr_expect_geq(n, 3, "only %d configurations in the manifests", n);
}

Test(k8s, every_path_the_configurations_name_is_mounted)
{
	char conf_dir[PATH_MAX], daemonset[PATH_MAX];
	char *ds, *conf;
	regmatch_t m[2];
	regex_t re;

	require_validator();
	snprintf(conf_dir, sizeof(conf_dir), "%s/conf", dir);
	cr_assert_eq(mkdir(conf_dir, 0700), 0);
	cr_assert_eq(run("node tests/k8s/validate.mjs --config %s " MANIFESTS " >/dev/null && "
			 "cat %s/*.yaml", conf_dir, conf_dir), 0, "%s", out);
	conf = strdup(out);
	snprintf(daemonset, sizeof(daemonset), "%s/deploy/kubernetes/base/daemonset.yaml", src());
	ds = slurp(daemonset);
	/* absolute paths after ": ", "- " or "=" */
	cr_assert_eq(regcomp(&re, "[:=-] ?(/[A-Za-z0-9._/-]+)", REG_EXTENDED), 0);
	for (const char *p = conf; regexec(&re, p, 2, m, 0) == 0; p += m[0].rm_eo) {
		char path[512], mount[600];
		bool found = false;

		snprintf(path, sizeof(path), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), p + m[1].rm_so);
		if (path[1] == '/')
			continue; /* a URL's //host */
		for (size_t len = strlen(path); len > 1 && !found; len--) {
			if (path[len] != '/' && path[len] != '\0')
				continue;
			snprintf(mount, sizeof(mount), "mountPath: %.*s\n", (int)len, path);
			found = strstr(ds, mount) != NULL;
		}
		cr_expect(found, "'%s' of a configuration is in no volumeMount of the DaemonSet",
			  path);
	}
	regfree(&re);
	free(ds);
	free(conf);
}

/* --- systemd ------------------------------------------------------------------------------ */

static void require_systemd_analyze(void)
{
	if (run("command -v systemd-analyze") != 0)
		fg_test_unavailable("systemd-analyze is not installed (scripts/setup.sh installs "
				    "systemd)");
}

/* install.sh into DIR/opt (no DESTDIR: the units name paths that exist). */
static void install_opt(void)
{
	cr_assert_eq(run("scripts/install.sh --prefix %s/opt --builddir %s", dir,
			 getenv("FG_BUILD_ROOT")), 0, "%s", out);
}

TestSuite(systemd, .init = setup, .fini = teardown, .timeout = 120);

Test(systemd, installed_units_verify_without_a_word)
{
	require_systemd_analyze();
	install_opt();
	cr_expect_eq(run("systemd-analyze verify %s/opt/lib/systemd/system/fedguardd.service "
			 "%s/opt/lib/systemd/system/fedguard.slice", dir, dir), 0, "%s", out);
	cr_expect_str_eq(out, "", "systemd-analyze has something to say");
}

Test(systemd, a_broken_unit_is_reported)
{
	const char *breaks[][2] = {
		{"Type=notify", "Type=notifyy"},
		{"Restart=on-failure", "Restart=sometimes"},
		{"KillMode=mixed", "KillMode=mixd"},
	};
	char unit[PATH_MAX], broken[PATH_MAX];

	require_systemd_analyze();
	install_opt();
	snprintf(unit, sizeof(unit), "%s/opt/lib/systemd/system/fedguardd.service", dir);
	snprintf(broken, sizeof(broken), "%s/opt/lib/systemd/system/broken.service", dir);
	for (size_t i = 0; i < sizeof(breaks) / sizeof(breaks[0]); i++) {
		cr_assert_eq(run("grep -q '^%s' %s && sed 's/^%s/%s/' %s > %s", breaks[i][0], unit,
				 breaks[i][0], breaks[i][1], unit, broken), 0, "%s", out);
		run("systemd-analyze verify %s", broken);
		cr_expect(strstr(out, "broken.service") != NULL, "'%s' passed:\n%s", breaks[i][1],
			  out);
	}
	cr_assert_eq(run("sed 's#^ExecStart=[^ ]*#ExecStart=/nonexistent/fedguardd#' %s > %s",
			 unit, broken), 0);
	cr_expect_neq(run("systemd-analyze verify %s", broken), 0, "a missing binary passed");
}

/* The value of KEY= in the unit (the first line). */
static bool unit_has(const char *unit, const char *line)
{
	char needle[PATH_MAX * 3];

	snprintf(needle, sizeof(needle), "\n%.*s\n", PATH_MAX * 2, line);
	return strstr(unit, needle) != NULL;
}

Test(systemd, the_unit_keeps_enforcement_and_bounds_its_capabilities)
{
	char path[PATH_MAX], *unit, *ds, caps[256] = "CapabilityBoundingSet=";
	regmatch_t m[2];
	regex_t re;

	snprintf(path, sizeof(path), "%s/deploy/systemd/fedguardd.service", src());
	unit = slurp(path);
	cr_expect(unit_has(unit, "Type=notify"));
	cr_expect(unit_has(unit, "NotifyAccess=main"));
	cr_expect(unit_has(unit, "Restart=on-failure"));
	cr_expect(unit_has(unit, "RestartPreventExitStatus=2"));
	cr_expect(unit_has(unit, "ExecStop=/bin/kill -TERM $MAINPID"));
	cr_expect(unit_has(unit, "ExecReload=/bin/kill -HUP $MAINPID"));
	cr_expect(unit_has(unit, "ExecStart=/usr/sbin/fedguardd --config /etc/fedguard/fedguardd.yaml"));
	for (const char *l = unit; l; l = strchr(l + 1, '\n'))
		cr_expect(strncmp(l, "\nExec", 5) || !strstr(strndup(l, strcspn(l + 1, "\n") + 1),
							    "--uninstall"),
			  "a command of the unit uninstalls: %.80s", l + 1);
	/* a private mount namespace would take a bpffs mounted by the agent with it */
	for (const char *k = "\nProtectSystem=\0\nPrivateTmp=\0\nPrivateMounts=\0\nProtectHome=\0"
			     "\nReadOnlyPaths=\0\nTemporaryFileSystem=\0";
	     *k; k += strlen(k) + 1)
		cr_expect(strstr(unit, k) == NULL, "the unit sets %s: a mount namespace", k + 1);

	/* the bounding set: the DaemonSet's capabilities, and CAP_CHOWN for --control-group */
	snprintf(path, sizeof(path), "%s/deploy/kubernetes/base/daemonset.yaml", src());
	ds = slurp(path);
	cr_assert_eq(regcomp(&re, "\n +add: \\[([A-Z_, ]+)\\]", REG_EXTENDED), 0);
	cr_assert_eq(regexec(&re, ds, 2, m, 0), 0);
	for (char *tok = strtok(strndup(ds + m[1].rm_so, (size_t)(m[1].rm_eo - m[1].rm_so)), ", ");
	     tok; tok = strtok(NULL, ", "))
		snprintf(caps + strlen(caps), sizeof(caps) - strlen(caps), "CAP_%s ", tok);
	strcat(caps, "CAP_CHOWN");
	cr_expect(unit_has(unit, caps), "the unit's bounding set is not '%s'", caps);
	regfree(&re);
	free(ds);
	free(unit);
}

/* --- scripts/install.sh ------------------------------------------------------------------- */

TestSuite(install, .init = setup, .fini = teardown, .timeout = 120);

Test(install, destdir_stages_a_usr_install)
{
	struct stat st;
	char path[PATH_MAX], *unit;

	cr_assert_eq(run("DESTDIR=%s/stage scripts/install.sh --prefix /usr --builddir %s", dir,
			 getenv("FG_BUILD_ROOT")), 0, "%s", out);
	for (const char *f = "usr/sbin/fedguardd\0usr/bin/fedguardctl\0usr/bin/fedguard-ca\0"
			     "usr/lib/systemd/system/fedguardd.service\0"
			     "usr/lib/systemd/system/fedguard.slice\0etc/fedguard/fedguardd.yaml\0"
			     "usr/share/doc/fedguard/deploy.md\0usr/share/doc/fedguard/configuration.md\0";
	     *f; f += strlen(f) + 1) {
		snprintf(path, sizeof(path), "%s/stage/%s", dir, f);
		cr_expect_eq(stat(path, &st), 0, "not installed: %s", f);
	}
	snprintf(path, sizeof(path), "%s/stage/usr/sbin/fedguardd", dir);
	cr_expect(stat(path, &st) == 0 && (st.st_mode & 0777) == 0755);
	snprintf(path, sizeof(path), "%s/stage/etc/fedguard/fedguardd.yaml", dir);
	cr_expect(stat(path, &st) == 0 && (st.st_mode & 0777) == 0640);
	snprintf(path, sizeof(path), "%s/stage/usr/lib/systemd/system/fedguardd.service", dir);
	unit = slurp(path);
	cr_expect(strstr(unit, dir) == NULL, "DESTDIR leaked into the unit");
	cr_expect(unit_has(unit, "ExecStart=/usr/sbin/fedguardd --config /etc/fedguard/fedguardd.yaml"));
	free(unit);
	cr_expect_eq(run("%s/stage/usr/sbin/fedguardd --version", dir), 0);
	cr_expect(strstr(out, "fedguardd 0.") != NULL, "%s", out);
	cr_expect_eq(run("%s/stage/usr/sbin/fedguardd --check-config %s/stage/etc/fedguard/"
			 "fedguardd.yaml", dir, dir), 0, "the sample configuration: %s", out);
}

Test(install, a_prefix_rewrites_the_units_paths)
{
	char path[PATH_MAX], want[PATH_MAX * 2], *unit;

	install_opt();
	snprintf(path, sizeof(path), "%s/opt/lib/systemd/system/fedguardd.service", dir);
	unit = slurp(path);
	snprintf(want, sizeof(want), "ExecStart=%s/opt/sbin/fedguardd --config %s/opt/etc/fedguard/"
		 "fedguardd.yaml", dir, dir);
	cr_expect(unit_has(unit, want), "no '%s' in:\n%s", want, unit);
	cr_expect(strstr(unit, "/usr/sbin/") == NULL);
	free(unit);
}

Test(install, keeps_an_edited_configuration_and_uninstalls)
{
	char conf[PATH_MAX], path[PATH_MAX + 16], *text;

	install_opt();
	snprintf(conf, sizeof(conf), "%s/opt/etc/fedguard/fedguardd.yaml", dir);
	spit(conf, "cgroup: mine\n");
	install_opt();
	cr_expect(strstr(out, "kept") != NULL, "%s", out);
	text = slurp(conf);
	cr_expect_str_eq(text, "cgroup: mine\n", "the operator's configuration was overwritten");
	free(text);
	snprintf(path, sizeof(path), "%s.example", conf);
	cr_expect_eq(access(path, R_OK), 0, "no sample next to the kept configuration");

	cr_assert_eq(run("scripts/install.sh --prefix %s/opt --uninstall", dir), 0, "%s", out);
	snprintf(path, sizeof(path), "%s/opt/sbin/fedguardd", dir);
	cr_expect_neq(access(path, F_OK), 0, "fedguardd stays after --uninstall");
	snprintf(path, sizeof(path), "%s/opt/lib/systemd/system/fedguardd.service", dir);
	cr_expect_neq(access(path, F_OK), 0, "the unit stays after --uninstall");
	cr_expect_eq(access(conf, R_OK), 0, "--uninstall removed the configuration");
}

Test(install, refuses_what_it_cannot_do)
{
	cr_expect_eq(run("scripts/install.sh --prefix relative/path"), 2, "%s", out);
	cr_expect_eq(run("scripts/install.sh --frobnicate"), 2, "%s", out);
	cr_expect_eq(run("scripts/install.sh --prefix %s/x --builddir %s/nothing-built", dir, dir),
		     1, "%s", out);
	cr_expect(strstr(out, "is not built") != NULL, "%s", out);
	cr_expect_eq(run("scripts/install.sh --help"), 0);
	cr_expect(strstr(out, "--prefix") != NULL);
}

/* --- the image ---------------------------------------------------------------------------- */

TestSuite(image, .init = setup, .fini = teardown, .timeout = 120);

/* The packages the runtime stage of deploy/Containerfile installs, sorted, one a line. */
static char *containerfile_runtime_packages(void)
{
	char path[PATH_MAX], *cf, *stage, *p, *end, *list = calloc(1, 4096);

	snprintf(path, sizeof(path), "%s/deploy/Containerfile", src());
	cf = slurp(path);
	stage = strstr(cf, "\nFROM debian:12-slim");
	cr_assert_not_null(stage, "no debian:12-slim runtime stage in %s", path);
	p = strstr(stage, "--no-install-recommends");
	cr_assert_not_null(p, "the runtime stage installs nothing");
	p += strlen("--no-install-recommends");
	end = strstr(p, "&&");
	cr_assert_not_null(end);
	*end = '\0';
	for (char *tok = strtok(p, " \t\n\\"); tok; tok = strtok(NULL, " \t\n\\")) {
		strcat(list, tok);
		strcat(list, "\n");
	}
	free(cf);
	return list;
}

Test(image, runtime_packages_are_exactly_what_the_binaries_link)
{
	char sorted[PATH_MAX], *pkgs;

	if (run("command -v readelf && command -v dpkg") != 0)
		fg_test_unavailable("readelf or dpkg is missing");
	pkgs = containerfile_runtime_packages();
	snprintf(sorted, sizeof(sorted), "%s/image.txt", dir);
	spit(sorted, pkgs);
	cr_assert_eq(run("sort -o %s %s", sorted, sorted), 0);
	free(pkgs);
	/* libc6 is the base image's; a sanitizer build (scripts/test.sh) links its runtimes */
	cr_assert_eq(run("scripts/runtime-packages.sh %s %s %s | grep -vx libc6 | "
			 "grep -vE '^lib(a|ub|l|t)san[0-9]+$' | diff - %s", getenv("FEDGUARDD"),
			 getenv("FEDGUARDCTL"), getenv("FEDGUARD_CA"), sorted), 0,
		     "deploy/Containerfile's runtime packages (+) are not the binaries' (-):\n%s",
		     out);
}

Test(image, what_the_stages_copy_is_what_install_sh_stages)
{
	char path[PATH_MAX], *cf;
	regmatch_t m[2];
	regex_t re;
	int n = 0;

	snprintf(path, sizeof(path), "%s/deploy/Containerfile", src());
	cf = slurp(path);
	cr_expect(strstr(cf, "\nFROM debian:12 AS build\n"), "no Debian 12 build stage");
	cr_expect(strstr(cf, "meson setup /build") && strstr(cf, "meson compile -C /build"));
	cr_expect(strstr(cf, "scripts/install.sh --prefix /usr --builddir /build --destdir /out"));
	cr_expect(strstr(cf, "\nENTRYPOINT [\"/usr/sbin/fedguardd\"]\n"));
	cr_expect(strstr(cf, "\nCMD [\"--config\", \"/etc/fedguard/fedguardd.yaml\"]\n"));

	/* every /out path copied must be where install.sh puts it */
	cr_assert_eq(run("scripts/install.sh --prefix /usr --builddir %s --destdir %s/out",
			 getenv("FG_BUILD_ROOT"), dir), 0, "%s", out);
	cr_assert_eq(regcomp(&re, " /out(/[^ \n]+)", REG_EXTENDED), 0);
	for (const char *p = cf; regexec(&re, p, 2, m, 0) == 0; p += m[0].rm_eo, n++) {
		snprintf(path, sizeof(path), "%s/out%.*s", dir, (int)(m[1].rm_eo - m[1].rm_so),
			 p + m[1].rm_so);
		cr_expect_eq(access(path, F_OK), 0, "the image copies %s, which install.sh does "
			     "not stage", path + strlen(dir));
	}
	cr_expect_geq(n, 4);
	regfree(&re);
	free(cf);
}

/* --- sd_notify ---------------------------------------------------------------------------- */

TestSuite(notify, .init = setup, .fini = teardown);

static int listen_dgram(struct sockaddr_un *sa, socklen_t len)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)sa, len), 0, "bind: %s", strerror(errno));
	return fd;
}

static void expect_datagram(int fd, const char *want)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char buf[256] = "";
	ssize_t n;

	cr_assert_eq(poll(&p, 1, 2000), 1, "nothing received");
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	cr_expect_str_eq(buf, want);
}

Test(notify, a_path_socket_gets_the_state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", dir);
	fd = listen_dgram(&sa, sizeof(sa));
	setenv("NOTIFY_SOCKET", sa.sun_path, 1);
	cr_expect_eq(sys_notify("READY=1"), 0);
	expect_datagram(fd, "READY=1");
	cr_expect_eq(sys_notify("RELOADING=1"), 0);
	expect_datagram(fd, "RELOADING=1");
	unsetenv("NOTIFY_SOCKET");
	close(fd);
}

Test(notify, an_abstract_socket_gets_the_state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char name[64];
	int fd, n;

	n = snprintf(name, sizeof(name), "@fgnotify-%d", getpid());
	memcpy(sa.sun_path, name, (size_t)n);
	sa.sun_path[0] = '\0';
	fd = listen_dgram(&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n));
	setenv("NOTIFY_SOCKET", name, 1);
	cr_expect_eq(sys_notify("STOPPING=1"), 0);
	expect_datagram(fd, "STOPPING=1");
	unsetenv("NOTIFY_SOCKET");
	close(fd);
}

Test(notify, without_a_socket_it_is_quiet_and_a_bad_one_is_refused)
{
	unsetenv("NOTIFY_SOCKET");
	cr_expect_eq(sys_notify("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	cr_expect_eq(sys_notify("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	cr_expect_eq(sys_notify("READY=1"), -EINVAL);
	setenv("NOTIFY_SOCKET", "/nonexistent/fgnotify", 1);
	cr_expect_eq(sys_notify("READY=1"), -ENOENT);
	unsetenv("NOTIFY_SOCKET");
}
