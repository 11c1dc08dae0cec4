/* Fault injection for crash-safety tests.
 *
 * kl_failpoint("ca.after_pending") kills the process with SIGKILL when the
 * environment variable KEYLINE_FAILPOINT names that point. Tests use it to
 * stop a real process at an exact step and then check what a restart finds.
 * Without the variable it costs one getenv. */
#ifndef KL_FAILPOINT_H
#define KL_FAILPOINT_H

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static inline void kl_failpoint(const char *name)
{
	const char *v = getenv("KEYLINE_FAILPOINT");

	if (v && strcmp(v, name) == 0)
		raise(SIGKILL);
}

#endif
