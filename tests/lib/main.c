// SPDX-License-Identifier: Apache-2.0
/*
 * Criterion's runner with one difference: when every test that ran was
 * skipped (no root, no BPF: see require.h), the process exits 77, which
 * `meson test` reports as SKIP. Criterion itself exits 0 then, and meson
 * would say OK for a binary that tested nothing. Compiled into each test
 * executable, not into the helper library, so that this main() and not
 * libcriterion's is the one linked.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

enum {
	EXIT_SKIPPED = 77,	/* automake's and meson's "skipped" */
};

static size_t tests_run;
static size_t tests_skipped;

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	tests_run = stats->nb_tests;
	tests_skipped = stats->tests_skipped;
}

int main(int argc, char *argv[])
{
	struct criterion_test_set *tests = criterion_initialize();
	int status = 0;

	if (criterion_handle_args(argc, argv, true))
		status = !criterion_run_all_tests(tests);
	criterion_finalize(tests);
	if (status == 0 && tests_run > 0 && tests_skipped == tests_run)
		return EXIT_SKIPPED;
	return status;
}
