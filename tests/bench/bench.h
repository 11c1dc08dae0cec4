/* Shared by the benchmarks: a monotonic clock and a way to give up. */
#ifndef KL_BENCH_H
#define KL_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kl_error.h"

static inline double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Prints what failed with the last Keyline error and exits 1. */
static inline void bench_die(const char *bench, const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", bench, what, kl_error_detail());
	exit(1);
}

#endif
