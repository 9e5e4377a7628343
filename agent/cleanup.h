/* SPDX-License-Identifier: Apache-2.0 */
/*
 * __attribute__((cleanup)) helpers: a variable declared with one of these
 * releases its resource when it goes out of scope. To hand the resource to
 * the caller, take it with take_fd()/take_ptr(), which leave -1/NULL behind.
 */
#ifndef FEDGUARD_CLEANUP_H
#define FEDGUARD_CLEANUP_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void cleanup_close(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

static inline void cleanup_free(void *p)
{
	free(*(void **)p);
}

static inline void cleanup_fclose(FILE **f)
{
	if (*f)
		fclose(*f);
}

static inline void cleanup_closedir(DIR **d)
{
	if (*d)
		closedir(*d);
}

#define _cleanup_close_	   __attribute__((cleanup(cleanup_close)))
#define _cleanup_free_	   __attribute__((cleanup(cleanup_free)))
#define _cleanup_fclose_   __attribute__((cleanup(cleanup_fclose)))
#define _cleanup_closedir_ __attribute__((cleanup(cleanup_closedir)))

static inline int take_fd(int *fd)
{
	int ret = *fd;

	*fd = -1;
	return ret;
}

#define take_ptr(p)                                                                                \
	({                                                                                         \
		__typeof__(p) _tmp = (p);                                                          \
		(p) = NULL;                                                                        \
		_tmp;                                                                              \
	})

#endif /* FEDGUARD_CLEANUP_H */
