/* Shared by the tests that start real keyline-agent processes
 * (test_agent_link, test_station_agent, test_station_usb). Include after
 * cmocka.h. */
#ifndef KL_AGENT_TEST_H
#define KL_AGENT_TEST_H

#include <fcntl.h>
#include <signal.h>
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

#endif
