/* SPDX-License-Identifier: Apache-2.0 */
/* Waiting on a descriptor against a deadline, for the control socket's two ends. */
#ifndef FEDGUARD_IO_H
#define FEDGUARD_IO_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds: what deadlines are measured in. */
int64_t io_now_ms(void);

/* Waits until @fd is ready for @events: 0, -ETIMEDOUT at @deadline, or -errno. */
int io_wait(int fd, short events, int64_t deadline);

#endif /* FEDGUARD_IO_H */
