/* Station daemon benchmark: `keyline --home H station` as a child with 8
 * slots, driven through its socket API with kl_client, one run:
 *
 *   1. Throughput with 1, 4 and 8 slots busy: job.provision on each slot,
 *      job.finished awaited through events.subscribe, the next device
 *      submitted on that slot at once; devices/min from the first submit to
 *      the last job.finished, and the speed-up against the 1-slot figure of
 *      the same run (the baseline). EK types rotate rsa2048, p256, p384.
 *   2. station.status latency from a second client, calls back to back:
 *      p50/p99/max on the idle station (the baseline), then while all 8
 *      slots are busy, as ratios.
 *   3. Where the time goes: mean per-step times of each phase (job.get's
 *      step_ms; a step that takes the backend lock counts its wait for it)
 *      and the CPU used by the station, the DUTs and this program.
 *   4. Heavy calls: CRL_ENTRIES revoked certificates and as many audit
 *      entries are written straight into the registry, then station.status
 *      p50/p99/max is measured from a second client while crl.publish signs
 *      that CRL and while a full audit.verify walks that log, against the
 *      idle baseline of step 2 (issue #12's target: p99 < 50 ms; printed,
 *      not judged).
 *
 *   bench_station [DEVICES_PER_SLOT [STATUS_CALLS [CRL_ENTRIES]]]
 *                                          defaults 6, 1000 and 1000000;
 *   DEVICES_PER_SLOT 0 skips the provisioning phases (and the DUTs).
 *
 * Fresh DUTs: a slot's link is fixed in keyline.conf, and a provisioned TPM
 * is not factory-new, so every device is its own manufactured DUT (13 per
 * device per slot: 1 + 4 + 8). Slot k's swtpm is started once; before each
 * device after its first, the bench loads the next fresh DUT's state into
 * that swtpm through its control channel (CMD_STOP, the state file replaced,
 * CMD_INIT, TPM2_Startup(CLEAR)), like a DUT swapped on a fixture. The swap
 * is inside the timing (a few ms, printed); the slot is idle meanwhile.
 *
 * Link probing is off (station.link_probe_s = 0) so that no probe meets a
 * DUT being swapped. Not a test: no figure decides anything; the exit status
 * is non-zero only when something failed. The station is stopped with
 * SIGTERM (and waited for) on every path; the floor's guardian stops the
 * swtpm processes and removes the floor even when this program is killed. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sqlite3.h>

#include "bench.h"
#include "client.h"
#include "floor.h"
#include "kl_error.h"
#include "store.h"

#ifndef KEYLINE_BIN
#error "KEYLINE_BIN must be defined by the build"
#endif

#define BENCH     "bench_station"
#define SLOTS     8
#define MAX_STEPS 16
/* A job that does not finish within 5 minutes is stuck, not slow. */
#define EVENT_WAIT_MS 300000

static const int phase_slots[] = { 1, 4, 8 };
#define PHASES ((int)(sizeof(phase_slots) / sizeof(phase_slots[0])))
static const char *const ek_names[] = { "rsa2048", "p256", "p384" };

static const char usage[] =
    "usage: bench_station [DEVICES_PER_SLOT [STATUS_CALLS [CRL_ENTRIES]]]\n"
    "\n"
    "Starts `keyline station` with 8 slots on swtpm DUTs and measures, in one run:\n"
    "  - devices/min provisioned through the socket API with 1, 4 and 8 slots busy,\n"
    "    and the speed-up against the 1-slot figure (the baseline);\n"
    "  - station.status latency (p50/p99/max) from a second client, idle (the\n"
    "    baseline) and with 8 slots busy, as ratios;\n"
    "  - mean per-step times and CPU use per phase;\n"
    "  - station.status latency while crl.publish signs a CRL of CRL_ENTRIES\n"
    "    revoked certificates and while audit.verify walks as many audit entries,\n"
    "    against the idle figure.\n"
    "\n"
    "  DEVICES_PER_SLOT  devices provisioned on each busy slot per phase (default 6,\n"
    "                    1..19; 13 fresh DUTs are manufactured per unit)\n"
    "                    (0: no provisioning phases, no DUTs)\n"
    "  STATUS_CALLS      station.status calls per measurement (default 1000)\n"
    "  CRL_ENTRIES       revoked certificates and audit entries written for the\n"
    "                    heavy calls (default 1000000; 0 skips them)\n"
    "\n"
    "Figures are printed, never judged: the exit status is non-zero only when a\n"
    "provisioning or the setup failed.\n";

static struct {
	kl_floor *fl;
	pid_t station;
	char home[PATH_MAX];
	char sock[PATH_MAX];
	char log[PATH_MAX];
} g;

/* ---- the station process ---- */

/* SIGTERM, then wait (SIGKILL after 30 s). */
static void station_stop(void)
{
	int st;

	if (g.station <= 0)
		return;
	kill(g.station, SIGTERM);
	for (int i = 0; i < 3000; i++) {
		pid_t p = waitpid(g.station, &st, WNOHANG);

		if (p == g.station || (p < 0 && errno != EINTR))
			goto done;
		usleep(10000);
	}
	fprintf(stderr, "%s: the station did not stop within 30 s of SIGTERM: SIGKILL\n", BENCH);
	kill(g.station, SIGKILL);
	waitpid(g.station, &st, 0);
done:
	g.station = 0;
}

static void print_station_log(void)
{
	char line[1024];
	FILE *f = fopen(g.log, "r");

	if (!f)
		return;
	fprintf(stderr, "%s: the station's log (%s):\n", BENCH, g.log);
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "  | %s", line);
	fclose(f);
}

/* Stops what we started and exits 1. */
static void die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", BENCH, what, kl_error_detail());
	if (g.station > 0) {
		station_stop();
		print_station_log();
	}
	kl_floor_free(g.fl);
	exit(1);
}

static void station_start(void)
{
	pid_t parent = getpid();

	fflush(NULL);
	g.station = fork();
	if (g.station < 0) {
		kl_error_set(KL_E_IO, "fork: %s", strerror(errno));
		die("station");
	}
	if (g.station == 0) {
		int fd;

		/* Tied to us: it stops when we die, whatever kills us. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		fd = open(g.log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			_exit(126);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0)
			dup2(fd, STDIN_FILENO);
		execl(KEYLINE_BIN, "keyline", "--home", g.home, "station", (char *)NULL);
		dprintf(STDERR_FILENO, "exec %s: %s\n", KEYLINE_BIN, strerror(errno));
		_exit(127);
	}
}

/* Connects once the station serves its socket (60 s at most). */
static kl_client *station_connect(void)
{
	kl_client *c;
	int st;

	for (int i = 0; i < 1200; i++) {
		if (waitpid(g.station, &st, WNOHANG) == g.station) {
			g.station = 0;
			kl_error_set(KL_E_UNAVAILABLE, "the station exited (status %d)", st);
			print_station_log();
			die("station");
		}
		if (kl_client_connect(g.sock, &c) == 0)
			return c;
		usleep(50000);
	}
	die("the station did not serve its socket within 60 s");
	return NULL;
}

/* keyline --home H ARGS... (NULL-terminated), output to the floor's log. */
static int keyline(const char *a1, const char *a2)
{
	const char *argv[] = { KEYLINE_BIN, "--home", g.home, a1, a2, NULL };
	char out[PATH_MAX];

	snprintf(out, sizeof(out), "%s/keyline-%s.log", kl_floor_dir(g.fl), a1);
	return kl_floor_run(g.fl, out, NULL, argv);
}

/* ---- files ---- */

static int copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC), out;
	ssize_t n;

	if (in < 0)
		return kl_error_set(KL_E_IO, "%s: %s", from, strerror(errno));
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0) {
		close(in);
		return kl_error_set(KL_E_IO, "%s: %s", to, strerror(errno));
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			n = -1;
			break;
		}
	close(in);
	if (close(out) != 0 || n < 0)
		return kl_error_set(KL_E_IO, "copy %s to %s: %s", from, to, strerror(errno));
	return 0;
}

static int append_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "a");

	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		return kl_error_set(KL_E_IO, "%s: %s", path, strerror(errno));
	return 0;
}

/* ---- swapping a fresh DUT into a slot's running swtpm ---- */

/* One exchange on 127.0.0.1:port: send msg, read exactly rlen bytes. */
static int tcp_exchange(int port, const unsigned char *msg, size_t len, unsigned char *resp,
                        size_t rlen)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	size_t got = 0;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    send(fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len)
		goto fail;
	while (got < rlen) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 10000) <= 0)
			goto fail;
		n = recv(fd, resp + got, rlen - got, 0);
		if (n <= 0)
			goto fail;
		got += (size_t)n;
	}
	close(fd);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	return kl_error_set(KL_E_IO, "swtpm on port %d: %s", port,
	                    got < rlen && errno == 0 ? "short answer" : strerror(errno));
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Power-cycles the swtpm that serves slot's DUT with fresh's state: swtpm's
 * control channel CMD_STOP (0x0e), the state file replaced, CMD_INIT (0x02,
 * flag delete-volatile), then TPM2_Startup(TPM_SU_CLEAR) as the
 * startup-clear flag does when swtpm starts. */
static int dut_swap(const kl_dut *slot, const kl_dut *fresh)
{
	static const unsigned char stop[] = { 0, 0, 0, 0x0e };
	static const unsigned char init[] = { 0, 0, 0, 0x02, 0, 0, 0, 0x01 };
	static const unsigned char startup[] = { 0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 1, 0x44, 0, 0 };
	unsigned char r[10];
	char from[PATH_MAX], tmp[PATH_MAX], to[PATH_MAX];
	int rc;

	snprintf(from, sizeof(from), "%s/tpm2-00.permall", fresh->state_dir);
	snprintf(tmp, sizeof(tmp), "%s/tpm2-00.permall.new", slot->state_dir);
	snprintf(to, sizeof(to), "%s/tpm2-00.permall", slot->state_dir);
	if ((rc = tcp_exchange(slot->port + 1, stop, sizeof(stop), r, 4)) < 0)
		return rc;
	if (be32(r) != 0)
		return kl_error_set(KL_E_TPM, "swtpm CMD_STOP: result 0x%x", be32(r));
	if ((rc = copy_file(from, tmp)) < 0)
		return rc;
	if (rename(tmp, to) < 0)
		return kl_error_set(KL_E_IO, "rename %s: %s", tmp, strerror(errno));
	if ((rc = tcp_exchange(slot->port + 1, init, sizeof(init), r, 4)) < 0)
		return rc;
	if (be32(r) != 0)
		return kl_error_set(KL_E_TPM, "swtpm CMD_INIT: result 0x%x", be32(r));
	if ((rc = tcp_exchange(slot->port, startup, sizeof(startup), r, 10)) < 0)
		return rc;
	if (be32(r + 6) != 0)
		return kl_error_set(KL_E_TPM, "TPM2_Startup: rc 0x%x", be32(r + 6));
	return 0;
}

/* ---- CPU accounting ---- */

/* utime + stime of a process (all its threads), in seconds. */
static double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
	fclose(f);
	/* After "(comm)": state is field 3, utime 14, stime 15. */
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* The machine's busy and total jiffies from /proc/stat. */
static void machine_jiffies(double *busy, double *total)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");

	*busy = *total = 0;
	if (!f)
		return;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
	           &v[4], &v[5], &v[6], &v[7]) == 8) {
		for (int i = 0; i < 8; i++)
			*total += (double)v[i];
		*busy = *total - (double)v[3] - (double)v[4]; /* idle, iowait */
	}
	fclose(f);
}

typedef struct cpu_snap {
	double t, station, duts, self, busy, total;
} cpu_snap;

static void cpu_take(cpu_snap *c, kl_dut **slot_dut)
{
	c->t = bench_now();
	c->station = proc_cpu_s(g.station);
	c->duts = 0;
	for (int i = 0; i < SLOTS; i++)
		c->duts += proc_cpu_s(slot_dut[i]->pid);
	c->self = self_cpu_s();
	machine_jiffies(&c->busy, &c->total);
}

/* ---- station.status latency ---- */

typedef struct status_run {
	long want;
	double *lat_ms; /* want entries */
	long n;
	double busy_sum; /* slots.busy as the answers said */
	atomic_bool stop;
	int rc;
	char error[256];
} status_run;

static void *status_main(void *arg)
{
	status_run *s = arg;
	kl_client *c = NULL;

	s->n = 0;
	s->busy_sum = 0;
	s->rc = kl_client_connect(g.sock, &c);
	for (long i = 0; s->rc == 0 && i < s->want && !atomic_load(&s->stop); i++) {
		json_object *res = NULL, *slots, *busy;
		double t0 = bench_now();

		s->rc = kl_client_call(c, "station.status", NULL, &res);
		if (s->rc < 0)
			break;
		s->lat_ms[s->n++] = 1000.0 * (bench_now() - t0);
		if (json_object_object_get_ex(res, "slots", &slots) &&
		    json_object_object_get_ex(slots, "busy", &busy))
			s->busy_sum += json_object_get_int(busy);
		json_object_put(res);
	}
	if (s->rc < 0)
		snprintf(s->error, sizeof(s->error), "%s", kl_error_detail());
	kl_client_free(c);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

typedef struct lat_sum {
	long n;
	double p50, p99, max, mean, busy;
} lat_sum;

/* Nearest-rank percentiles. */
static void lat_summarize(status_run *s, lat_sum *r)
{
	memset(r, 0, sizeof(*r));
	r->n = s->n;
	if (s->n == 0)
		return;
	qsort(s->lat_ms, (size_t)s->n, sizeof(double), cmp_double);
	for (long i = 0; i < s->n; i++)
		r->mean += s->lat_ms[i] / (double)s->n;
	r->p50 = s->lat_ms[(s->n + 1) / 2 - 1];
	r->p99 = s->lat_ms[(long)((double)s->n * 0.99 + 0.999999) - 1];
	r->max = s->lat_ms[s->n - 1];
	r->busy = s->busy_sum / (double)s->n;
}

/* ---- one phase: k slots busy ---- */

typedef struct phase {
	int slots;
	long devices;
	double wall_s, rate;
	double job_ms, tpm_ms; /* means, the engine's own clock */
	double swap_ms;        /* mean, bench side */
	long swaps;
	int nsteps;
	char step_name[MAX_STEPS][24];
	double step_ms[MAX_STEPS]; /* sums */
	cpu_snap c0, c1;
} phase;

typedef struct run {
	kl_client *c;
	kl_dut **duts; /* 13N fresh DUTs; duts[0..7] are the slots' own */
	long nduts, next_dut;
	bool slot_fresh[SLOTS];
	long next_serial;
	long submitted; /* in this phase, for the EK type */
} run;

static int submit(run *r, phase *ph, int slot)
{
	json_object *params = json_object_new_object(), *res = NULL;
	char serial[24], name[2] = { (char)('A' + slot), 0 };
	int rc;

	if (!r->slot_fresh[slot]) {
		double t0 = bench_now();

		if (r->next_dut >= r->nduts)
			return kl_error_set(KL_E_STATE, "out of fresh DUTs");
		if ((rc = dut_swap(r->duts[slot], r->duts[r->next_dut++])) < 0)
			return kl_error_wrap("loading a fresh DUT into slot %s", name);
		ph->swap_ms += 1000.0 * (bench_now() - t0);
		ph->swaps++;
	}
	r->slot_fresh[slot] = false;
	snprintf(serial, sizeof(serial), "BS-%04ld", r->next_serial++);
	json_object_object_add(params, "serial", json_object_new_string(serial));
	json_object_object_add(params, "slot", json_object_new_string(name));
	json_object_object_add(params, "ek_type",
	                       json_object_new_string(ek_names[r->submitted++ % 3]));
	rc = kl_client_call(r->c, "job.provision", params, &res);
	json_object_put(res);
	return rc < 0 ? kl_error_wrap("job.provision %s on slot %s", serial, name) : 0;
}

static json_object *jget(json_object *o, const char *k)
{
	json_object *v = NULL;

	return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

/* Adds a finished job's timings (job.get) to the phase. */
static int account(run *r, phase *ph, int64_t id)
{
	json_object *params = json_object_new_object(), *res = NULL, *result, *steps;
	int rc;

	json_object_object_add(params, "job", json_object_new_int64(id));
	if ((rc = kl_client_call(r->c, "job.get", params, &res)) < 0)
		return kl_error_wrap("job.get %lld", (long long)id);
	result = jget(res, "result");
	ph->job_ms += json_object_get_double(jget(result, "total_ms"));
	ph->tpm_ms += json_object_get_double(jget(result, "tpm_ms"));
	steps = jget(result, "step_ms");
	if (steps) {
		json_object_object_foreach(steps, k, v)
		{
			int i;

			for (i = 0; i < ph->nsteps && strcmp(ph->step_name[i], k) != 0; i++)
				;
			if (i == ph->nsteps && ph->nsteps < MAX_STEPS)
				snprintf(ph->step_name[ph->nsteps++], sizeof(ph->step_name[0]),
				         "%s", k);
			if (i < MAX_STEPS)
				ph->step_ms[i] += json_object_get_double(v);
		}
	}
	json_object_put(res);
	return 0;
}

/* Runs per_slot devices on each of the first k slots. With st, the status
 * client runs while every slot still has work; it is told to stop as soon
 * as the first slot runs dry. */
static int run_phase(run *r, int k, long per_slot, status_run *st, phase *ph)
{
	long left[SLOTS] = { 0 }, running = 0;
	int64_t done_ids[SLOTS * 20];
	long ndone = 0;
	pthread_t th;
	bool th_started = false;
	int rc = 0;

	memset(ph, 0, sizeof(*ph));
	ph->slots = k;
	r->submitted = 0;
	cpu_take(&ph->c0, r->duts);
	for (int i = 0; i < k; i++) {
		left[i] = per_slot - 1;
		if ((rc = submit(r, ph, i)) < 0)
			goto out;
		running++;
	}
	if (st) {
		atomic_store(&st->stop, false);
		if (pthread_create(&th, NULL, status_main, st) != 0) {
			rc = kl_error_set(KL_E_NOMEM, "cannot start the status client");
			goto out;
		}
		th_started = true;
	}
	while (running > 0) {
		json_object *ev = NULL;
		const char *type, *slot, *result;
		int i;

		if ((rc = kl_client_next_event(r->c, EVENT_WAIT_MS, &ev)) < 0) {
			rc = kl_error_wrap("waiting for job.finished");
			goto out;
		}
		type = json_object_get_string(jget(ev, "type"));
		if (!type || strcmp(type, "job.finished") != 0) {
			json_object_put(ev);
			continue;
		}
		slot = json_object_get_string(jget(ev, "slot"));
		result = json_object_get_string(jget(ev, "result"));
		i = slot && slot[0] >= 'A' && slot[0] < 'A' + SLOTS && !slot[1] ? slot[0] - 'A'
		                                                                : -1;
		if (i < 0 || i >= k) {
			json_object_put(ev);
			continue;
		}
		if (!result || strcmp(result, "passed") != 0) {
			rc = kl_error_set(KL_E_STATE, "job %s on slot %s: %s at %s [%s] %s",
			                  json_object_get_string(jget(ev, "serial")), slot,
			                  result ? result : "?",
			                  json_object_get_string(jget(ev, "failed_step")),
			                  json_object_get_string(jget(ev, "reason")),
			                  json_object_get_string(jget(ev, "message")));
			json_object_put(ev);
			goto out;
		}
		ph->devices++;
		ph->wall_s = bench_now() - ph->c0.t;
		done_ids[ndone++] = json_object_get_int64(jget(ev, "job"));
		json_object_put(ev);
		if (left[i] > 0) {
			left[i]--;
			if ((rc = submit(r, ph, i)) < 0)
				goto out;
		} else {
			running--;
			if (st)
				atomic_store(&st->stop, true); /* not all slots busy any more */
		}
	}
	cpu_take(&ph->c1, r->duts);
	ph->rate = 60.0 * (double)ph->devices / ph->wall_s;
	/* Timings after the clock stopped: job.get is not free either. */
	for (long i = 0; i < ndone && rc == 0; i++)
		rc = account(r, ph, done_ids[i]);
	if (ph->swaps)
		ph->swap_ms /= (double)ph->swaps;
	ph->job_ms /= (double)ph->devices;
	ph->tpm_ms /= (double)ph->devices;
out:
	if (th_started) {
		atomic_store(&st->stop, true);
		pthread_join(th, NULL);
		if (rc == 0 && st->rc < 0)
			rc = kl_error_set(KL_E_IO, "the status client: %s", st->error);
	}
	return rc;
}

/* ---- output ---- */

static void print_phases(const phase *ph, int n)
{
	printf("\nThroughput through the socket API (same run; baseline: 1 slot)\n");
	printf("  %-6s %8s %8s %12s %9s %10s %10s %9s\n", "slots", "devices", "wall s",
	       "devices/min", "speed-up", "job ms", "in TPM ms", "swap ms");
	for (int i = 0; i < n; i++)
		printf("  %-6d %8ld %8.2f %12.1f %8.2fx %10.1f %10.1f %9.1f\n", ph[i].slots,
		       ph[i].devices, ph[i].wall_s, ph[i].rate, ph[i].rate / ph[0].rate,
		       ph[i].job_ms, ph[i].tpm_ms, ph[i].swap_ms);
	printf("  (job ms: the engine's total per device, mean; swap ms: loading the next\n"
	       "   fresh DUT into the slot's swtpm, bench side, inside the wall time)\n");

	printf("\nMean step times per device, ms (steps 'gates', 'issue', 'commit' and part\n"
	       "of 'entropy' run under the station's backend lock: their growth is the wait)\n");
	printf("  %-22s", "step");
	for (int i = 0; i < n; i++)
		printf(" %8d slot%s", ph[i].slots, ph[i].slots > 1 ? "s" : " ");
	printf("\n");
	for (int s = 0; s < ph[0].nsteps; s++) {
		printf("  %-22s", ph[0].step_name[s]);
		for (int i = 0; i < n; i++) {
			double v = 0;

			for (int t = 0; t < ph[i].nsteps; t++)
				if (strcmp(ph[i].step_name[t], ph[0].step_name[s]) == 0)
					v = ph[i].step_ms[t] / (double)ph[i].devices;
			printf(" %14.1f", v);
		}
		printf("\n");
	}

	printf("\nCPU during each phase: cores busy (CPU s / wall s) and CPU ms per device; "
	       "'other' is\nwhat the rest of the machine used meanwhile (%ld cores)\n",
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("  %-6s %9s %9s %9s %9s %9s   %14s %14s\n", "slots", "station", "8 swtpm", "bench",
	       "other", "machine", "station ms/dev", "swtpm ms/dev");
	for (int i = 0; i < n; i++) {
		const cpu_snap *a = &ph[i].c0, *b = &ph[i].c1;
		double w = b->t - a->t, tot = b->total - a->total;
		double cst = b->station - a->station, cdut = b->duts - a->duts,
		       cme = b->self - a->self;
		double mach =
		    tot > 0 ? (double)sysconf(_SC_NPROCESSORS_ONLN) * (b->busy - a->busy) / tot * w
		            : 0;
		double other = mach - cst - cdut - cme;

		printf("  %-6d %9.2f %9.2f %9.2f %9.2f %9.2f   %14.1f %14.1f\n", ph[i].slots,
		       cst / w, cdut / w, cme / w, other > 0 ? other / w : 0, mach / w,
		       1000.0 * cst / (double)ph[i].devices, 1000.0 * cdut / (double)ph[i].devices);
	}
}

static void print_latency(const lat_sum *idle, const lat_sum *busy, long want)
{
	printf("\nstation.status latency from a second client, calls back to back (baseline: "
	       "idle)\n");
	printf("  %-22s %7s %9s %9s %9s %9s %11s\n", "", "calls", "p50 ms", "p99 ms", "max ms",
	       "mean ms", "slots busy");
	printf("  %-22s %7ld %9.3f %9.3f %9.3f %9.3f %11.2f\n", "idle station", idle->n, idle->p50,
	       idle->p99, idle->max, idle->mean, idle->busy);
	printf("  %-22s %7ld %9.3f %9.3f %9.3f %9.3f %11.2f\n", "8 slots busy", busy->n, busy->p50,
	       busy->p99, busy->max, busy->mean, busy->busy);
	if (idle->n && busy->n)
		printf("  %-22s %7s %8.1fx %8.1fx %8.1fx %8.1fx\n", "busy / idle", "",
		       busy->p50 / idle->p50, busy->p99 / idle->p99, busy->max / idle->max,
		       busy->mean / idle->mean);
	if (busy->n < want)
		printf("  (only %ld of %ld calls fitted while all 8 slots had work: give more "
		       "devices per slot)\n",
		       busy->n, want);
	printf("  (slots busy: the mean of slots.busy in the answers)\n");
}

/* ---- heavy calls ---- */

/* n revoked, unexpired certificates of the issuing CA, written into the
 * registry's ca_cert (another connection; WAL lets the station go on) so
 * that the next CRL lists them all. */
static int fill_revoked(long n)
{
	char path[PATH_MAX];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t issuer = 0, now = (int64_t)time(NULL);
	int rc = 0;

	snprintf(path, sizeof(path), "%s/registry.db", g.home);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		goto fail;
	sqlite3_busy_timeout(db, 60000);
	if (sqlite3_prepare_v2(db, "SELECT id FROM ca_issuer WHERE name = 'issuing'", -1, &st,
	                       NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW)
		goto fail;
	issuer = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db,
	                       "INSERT INTO ca_cert(issuer_id, serial, state, profile, subject, "
	                       "tbs, not_after, created, issued, revoked, reason) VALUES(?1, ?2, "
	                       "'issued', 'idevid', 'CN=bench', x'00', ?3, ?4, ?4, ?4, 1)",
	                       -1, &st, NULL) != SQLITE_OK)
		goto fail;
	for (long i = 0; i < n; i++) {
		char serial[32];

		snprintf(serial, sizeof(serial), "7b%014lx", (unsigned long)i);
		sqlite3_bind_int64(st, 1, issuer);
		sqlite3_bind_text(st, 2, serial, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 3, now + 10 * 365 * 86400LL);
		sqlite3_bind_int64(st, 4, now);
		if (sqlite3_step(st) != SQLITE_DONE)
			goto fail;
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_close(db);
	return 0;
fail:
	rc = kl_error_set(KL_E_DB, "%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

/* n more entries of the hash-chained audit log, through the store, in
 * one transaction. */
static int fill_audit(long n)
{
	char path[PATH_MAX];
	kl_store *s;
	int rc;

	snprintf(path, sizeof(path), "%s/registry.db", g.home);
	if ((rc = kl_store_open(path, &s)) < 0)
		return rc;
	rc = kl_store_begin(s);
	for (long i = 0; rc == 0 && i < n; i++)
		rc = kl_store_audit(s, "bench", "bench.bulk", "{\"n\":1}");
	if (rc == 0)
		rc = kl_store_commit(s);
	else
		kl_store_rollback(s);
	kl_store_free(s);
	return rc;
}

typedef struct heavy {
	const char *label;
	double alone_s; /* the heavy call with nobody else calling */
	double call_s;  /* the same with the status client calling back to back */
	lat_sum lat;
} heavy;

/* method once, with nobody else calling: how long it takes on its own. */
static int alone(const char *method, const char *params, heavy *h)
{
	kl_client *c = NULL;
	json_object *p = params ? json_tokener_parse(params) : NULL, *res = NULL;
	double t0;
	int rc;

	if ((rc = kl_client_connect(g.sock, &c)) < 0) {
		json_object_put(p);
		return rc;
	}
	t0 = bench_now();
	rc = kl_client_call_timeout(c, method, p, &res, -1);
	h->alone_s = bench_now() - t0;
	json_object_put(res);
	kl_client_free(c);
	return rc < 0 ? kl_error_wrap("%s", method) : 0;
}

/* station.status back to back from a second client while method runs on
 * a third; the status client stops when the answer comes. */
static int during(const char *method, const char *params, status_run *st, heavy *h)
{
	kl_client *c = NULL;
	json_object *p = params ? json_tokener_parse(params) : NULL, *res = NULL;
	pthread_t th;
	double t0;
	int rc;

	if ((rc = kl_client_connect(g.sock, &c)) < 0) {
		json_object_put(p);
		return rc;
	}
	atomic_store(&st->stop, false);
	if (pthread_create(&th, NULL, status_main, st) != 0) {
		json_object_put(p);
		kl_client_free(c);
		return kl_error_set(KL_E_NOMEM, "cannot start the status client");
	}
	t0 = bench_now();
	rc = kl_client_call_timeout(c, method, p, &res, -1);
	h->call_s = bench_now() - t0;
	atomic_store(&st->stop, true);
	pthread_join(th, NULL);
	if (rc < 0)
		rc = kl_error_wrap("%s", method);
	else if (st->rc < 0)
		rc = kl_error_set(KL_E_IO, "the status client: %s", st->error);
	json_object_put(res);
	kl_client_free(c);
	lat_summarize(st, &h->lat);
	return rc;
}

static void print_heavy(const lat_sum *idle, const heavy *h, int n, long entries, double fill_s)
{
	printf("\nstation.status latency during heavy calls, calls back to back from a second "
	       "client\n(%ld revoked certificates and %ld more audit entries written in %.1f s "
	       "before timing;\nbaseline: the idle station above)\n",
	       entries, entries, fill_s);
	printf("  %-26s %7s %7s %8s %9s %9s %9s %9s\n", "", "alone s", "call s", "calls", "p50 ms",
	       "p99 ms", "max ms", "mean ms");
	printf("  %-26s %7s %7s %8ld %9.3f %9.3f %9.3f %9.3f\n", "idle station", "", "", idle->n,
	       idle->p50, idle->p99, idle->max, idle->mean);
	for (int i = 0; i < n; i++) {
		printf("  %-26s %7.2f %7.2f %8ld %9.3f %9.3f %9.3f %9.3f\n", h[i].label,
		       h[i].alone_s, h[i].call_s, h[i].lat.n, h[i].lat.p50, h[i].lat.p99,
		       h[i].lat.max, h[i].lat.mean);
		if (idle->n && h[i].lat.n)
			printf("  %-26s %7s %7s %8s %8.1fx %8.1fx %8.1fx %8.1fx\n", "  / idle", "",
			       "", "", h[i].lat.p50 / idle->p50, h[i].lat.p99 / idle->p99,
			       h[i].lat.max / idle->max, h[i].lat.mean / idle->mean);
	}
	printf("  (alone s: the call with no other client; call s: the same while the status\n"
	       "  client calls back to back, sharing the CPUs with it. Issue #12's target:\n"
	       "  p99 < 50 ms during both; printed, not judged)\n");
}

/* ---- main ---- */

int main(int argc, char **argv)
{
	long per_slot = 6, calls = 1000, entries = 1000000;
	kl_vendor *acme;
	kl_dut **duts;
	kl_client *c = NULL;
	json_object *params, *items, *res = NULL;
	char p[PATH_MAX], conf[4096];
	size_t off;
	status_run st = { 0 };
	lat_sum idle, busy;
	phase ph[PHASES];
	run r = { 0 };
	int rc = 0;

	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage, stdout);
			return 0;
		}
	if (argc > 4 || (argc > 1 && (per_slot = atol(argv[1])) < 0) ||
	    (argc > 2 && (calls = atol(argv[2])) < 1) ||
	    (argc > 3 && (entries = atol(argv[3])) < 0)) {
		fputs(usage, stderr);
		return 2;
	}
	if (per_slot > 19) {
		fprintf(stderr, "%s: at most 19 devices per slot (the floor holds 256 DUTs)\n",
		        BENCH);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	r.nduts = 13 * per_slot;

	/* The floor: every DUT made before any timing. */
	double t0 = bench_now();
	if (kl_floor_new(&g.fl) < 0 || kl_floor_vendor(g.fl, "Acme TPM", &acme) < 0 ||
	    (per_slot > 0 && kl_floor_manufacture(g.fl, acme, "bs", (size_t)r.nduts, &duts) < 0))
		die("floor");
	r.duts = per_slot > 0 ? duts : NULL;
	for (int i = 0; i < SLOTS && per_slot > 0; i++) {
		if (kl_dut_start(g.fl, duts[i]) < 0)
			die("start DUT");
		r.slot_fresh[i] = true;
	}
	r.next_dut = SLOTS;
	double t_floor = bench_now() - t0;

	/* The home: keyline ca init, the vendor in the trust bundle, 8 slots. */
	t0 = bench_now();
	snprintf(g.home, sizeof(g.home), "%s/home", kl_floor_dir(g.fl));
	snprintf(g.log, sizeof(g.log), "%s/station.log", kl_floor_dir(g.fl));
	if (keyline("ca", "init") != 0) {
		kl_error_set(KL_E_IO, "keyline ca init failed (see %s/keyline-ca.log)",
		             kl_floor_dir(g.fl));
		die("home");
	}
	snprintf(p, sizeof(p), "%s/trust", g.home);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/trust/acme.pem", g.home);
	if (copy_file(acme->root_pem, p) < 0)
		die("trust bundle");
	snprintf(p, sizeof(p), "%s/trust/acme-issuing.pem", g.home);
	if (copy_file(acme->intermediate_pem, p) < 0)
		die("trust bundle");
	off = (size_t)snprintf(conf, sizeof(conf),
	                       "\n[station]\n"
	                       "# bench_station: no probe meets a DUT being swapped\n"
	                       "link_probe_s = 0\n\n[slots]\n");
	for (int i = 0; i < SLOTS && off < sizeof(conf); i++)
		off +=
		    (size_t)snprintf(conf + off, sizeof(conf) - off, "%c = %s\n", 'A' + i,
		                     per_slot > 0 ? duts[i]->tcti : "swtpm:host=127.0.0.1,port=9");
	snprintf(p, sizeof(p), "%s/keyline.conf", g.home);
	if (append_file(p, conf) < 0 || kl_client_socket_path(g.home, g.sock, sizeof(g.sock)) < 0)
		die("keyline.conf");

	station_start();
	c = station_connect();
	r.c = c;
	double t_home = bench_now() - t0;

	/* Every serial pre-registered, one work order; events for every slot. */
	params = json_object_new_object();
	items = json_object_new_array();
	for (long i = 0; i < r.nduts; i++) {
		char serial[24];

		snprintf(serial, sizeof(serial), "BS-%04ld", i);
		json_object_array_add(items, json_object_new_string(serial));
	}
	json_object_object_add(params, "tenant", json_object_new_string("acme"));
	json_object_object_add(params, "work_order", json_object_new_string("WO-BENCH"));
	json_object_object_add(params, "items", items);
	if (per_slot == 0) {
		json_object_put(params);
	} else if (kl_client_call(c, "devices.preregister", params, &res) < 0) {
		rc = kl_error_wrap("devices.preregister");
		goto out;
	} else {
		json_object_put(res);
	}
	params = json_object_new_object();
	if (kl_client_call(c, "events.subscribe", params, &res) < 0) {
		rc = kl_error_wrap("events.subscribe");
		goto out;
	}
	json_object_put(res);

	printf("Station daemon: keyline station with %d slots on swtpm DUTs, SoftHSM2 CA, SQLite\n"
	       "registry; %ld devices per busy slot per phase, EK types rotating rsa2048, p256,\n"
	       "p384; %ld station.status calls per latency figure; %ld cores\n"
	       "(%ld DUTs manufactured in %.1f s, home and station up in %.1f s, before "
	       "timing)\n",
	       SLOTS, per_slot, calls, sysconf(_SC_NPROCESSORS_ONLN), r.nduts, t_floor, t_home);

	/* The latency baseline: the idle station. */
	st.want = calls;
	/* Room for the calls that fit in a heavy call, too. */
	st.lat_ms = calloc((size_t)(calls > 2000000 ? calls : 2000000), sizeof(double));
	if (!st.lat_ms) {
		rc = kl_error_set(KL_E_NOMEM, "out of memory");
		goto out;
	}
	status_main(&st);
	if (st.rc < 0) {
		rc = kl_error_set(KL_E_IO, "the status client: %s", st.error);
		goto out;
	}
	lat_summarize(&st, &idle);

	/* The phases; the status client runs during the last (8 slots). */
	for (int i = 0; i < PHASES && per_slot > 0; i++) {
		printf("  %d slot%s busy ...\n", phase_slots[i], phase_slots[i] > 1 ? "s" : "");
		rc = run_phase(&r, phase_slots[i], per_slot, phase_slots[i] == SLOTS ? &st : NULL,
		               &ph[i]);
		if (rc < 0)
			goto out;
	}
	if (per_slot > 0) {
		lat_summarize(&st, &busy);
		print_phases(ph, PHASES);
		print_latency(&idle, &busy, calls);
	} else {
		printf("\nstation.status idle: p50 %.3f ms, p99 %.3f ms, max %.3f ms over %ld "
		       "calls\n",
		       idle.p50, idle.p99, idle.max, idle.n);
	}

	/* Heavy calls, after everything else: the CRL is big from now on. */
	if (entries > 0) {
		heavy h[2] = { { .label = "during crl.publish" },
			       { .label = "during audit.verify full" } };
		double f0 = bench_now();

		printf("  writing %ld revoked certificates and %ld audit entries ...\n", entries,
		       entries);
		if ((rc = fill_revoked(entries)) < 0 || (rc = fill_audit(entries)) < 0)
			goto out;
		double fill_s = bench_now() - f0;
		/* While they run the status client may make many more calls. */
		st.want = 2000000;
		if ((rc = alone("crl.publish", NULL, &h[0])) < 0 ||
		    (rc = alone("audit.verify", "{\"full\":true}", &h[1])) < 0 ||
		    (rc = during("crl.publish", NULL, &st, &h[0])) < 0 ||
		    (rc = during("audit.verify", "{\"full\":true}", &st, &h[1])) < 0)
			goto out;
		print_heavy(&idle, h, 2, entries, fill_s);
	}
	printf("\n(figures are printed, not judged)\n");

out:
	if (rc < 0)
		fprintf(stderr, "%s: %s\n", BENCH, kl_error_detail());
	kl_client_free(c);
	station_stop();
	if (rc < 0)
		print_station_log();
	free(st.lat_ms);
	kl_floor_free(g.fl);
	return rc < 0 ? 1 : 0;
}
