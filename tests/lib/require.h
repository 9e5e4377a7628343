/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Preconditions of tests that need the real kernel. Outside CI a missing
 * precondition skips the test with the reason; in CI (CI=true) it fails
 * the test, so that a broken runner can never turn the suite green by
 * skipping everything.
 */
#ifndef FG_TEST_REQUIRE_H
#define FG_TEST_REQUIRE_H

#include <stdbool.h>

/* True when the environment variable CI is "true" or "1". */
bool fg_test_in_ci(void);

/*
 * Ends the current test because something it needs is missing: a skip
 * with @fmt as the reason, or a failure in CI.
 */
__attribute__((noreturn, format(printf, 1, 2)))
void fg_test_unavailable(const char *fmt, ...);

/*
 * Root, a kernel that runs SCHED_CLS and CGROUP_SKB programs, and kernel
 * BTF (the programs use CO-RE); fg_test_unavailable() otherwise.
 */
void fg_test_require_root_bpf(void);

#endif /* FG_TEST_REQUIRE_H */
