/* Shared by the tests that start real keyline-agent processes
 * (test_agent_link, test_station_agent, test_station_usb). Include after
 * cmocka.h; agent_spawn_tcp wants KEYLINE_AGENT_BIN. */
#ifndef KL_AGENT_TEST_H
#define KL_AGENT_TEST_H

#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>

/* Forks and execs argv (argv[0] a path, NULL-terminated) with stdout to
 * out; the child dies with this process. Its pid. */
static inline pid_t agent_spawn(const char *const *argv, const char *out)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
			_exit(127);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

/* keyline-agent as a WS-2 on firmware 1.0.3 for the TPM at tcti, to the
 * station on 127.0.0.1:port, saying serial (NULL: none, the agent asks the
 * TPM), --timeout-s timeout_s, then the NULL-terminated extra (or NULL);
 * stdout to out. Its pid. */
static inline pid_t agent_spawn_tcp(int port, const char *tcti, const char *serial,
                                    const char *timeout_s, const char *const *extra,
                                    const char *out)
{
	char station[32];
	const char *argv[24];
	size_t n = 0;

	snprintf(station, sizeof(station), "127.0.0.1:%d", port);
	argv[n++] = KEYLINE_AGENT_BIN;
	argv[n++] = "--station";
	argv[n++] = station;
	argv[n++] = "--tcti";
	argv[n++] = tcti;
	if (serial) {
		argv[n++] = "--serial";
		argv[n++] = serial;
	}
	argv[n++] = "--model";
	argv[n++] = "WS-2";
	argv[n++] = "--firmware";
	argv[n++] = "1.0.3";
	argv[n++] = "--timeout-s";
	argv[n++] = timeout_s;
	for (size_t i = 0; extra && extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	return agent_spawn(argv, out);
}

#endif
