/* The station's configuration and life: keyline.conf's [station], [slots]
 * and [roles] read into a kl_station, the backend opened (registry, HSM,
 * CA, trust bundle, record signer), and everything freed again. The other
 * nouns are in station_jobs.c, station_hsm.c, station_events.c and
 * station_server.c; the methods in api_*.c. See station_internal.h. */
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "kl_error.h"
#include "station_internal.h"

/* The socket API: the area tables in the order rpc.methods lists them. */
static const kl_rpc_method *const api_tables[] = {
	st_api_station, st_api_jobs, st_api_events, st_api_devices,
	st_api_prereg,  st_api_life, st_api_ca,     NULL,
};

static int parse_roles(kl_station *s)
{
	static const struct {
		const char *name;
		unsigned role;
	} roles[] = {
		{ "operator", KL_RPC_ROLE_OPERATOR }, { "automation", KL_RPC_ROLE_AUTOMATION },
		{ "officer", KL_RPC_ROLE_OFFICER },   { "service", KL_RPC_ROLE_SERVICE },
		{ "reader", KL_RPC_ROLE_READER },
	};
	size_t iter = 0;
	const char *key, *value;
	bool any = false;

	while (kl_config_next(s->home->conf, &iter, &key, &value)) {
		unsigned role = 0;
		char buf[1024], *save = NULL;

		if (strncmp(key, "roles.", 6) != 0)
			continue;
		for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
			if (strcmp(key + 6, roles[i].name) == 0)
				role = roles[i].role;
		if (!role)
			return kl_error_set(KL_E_INVALID,
			                    "keyline.conf: [roles] %s is not a role (operator, "
			                    "automation, officer, service, reader)",
			                    key + 6);
		any = true;
		snprintf(buf, sizeof(buf), "%s", value);
		for (char *tok = strtok_r(buf, ", \t", &save); tok;
		     tok = strtok_r(NULL, ", \t", &save)) {
			st_rule *r = &s->rules[s->nrules];
			char *end;

			if (s->nrules >= sizeof(s->rules) / sizeof(s->rules[0]))
				return kl_error_set(KL_E_INVALID,
				                    "keyline.conf: too many [roles] entries");
			r->role = role;
			if (strcmp(tok, "*") == 0) {
				r->kind = RULE_ANY;
			} else if (strncmp(tok, "uid:", 4) == 0 || strncmp(tok, "gid:", 4) == 0) {
				unsigned long v = strtoul(tok + 4, &end, 10);

				if (!tok[4] || *end)
					return kl_error_set(
					    KL_E_INVALID,
					    "keyline.conf: [roles] %s: '%s' is not a number",
					    key + 6, tok);
				r->kind = tok[0] == 'u' ? RULE_UID : RULE_GID;
				r->id = (uint32_t)v;
			} else if (strncmp(tok, "user:", 5) == 0) {
				struct passwd *pw = getpwnam(tok + 5);

				if (!pw)
					return kl_error_set(
					    KL_E_INVALID, "keyline.conf: [roles] %s: no user '%s'",
					    key + 6, tok + 5);
				r->kind = RULE_UID;
				r->id = pw->pw_uid;
			} else if (strncmp(tok, "group:", 6) == 0) {
				struct group *gr = getgrnam(tok + 6);

				if (!gr)
					return kl_error_set(
					    KL_E_INVALID, "keyline.conf: [roles] %s: no group '%s'",
					    key + 6, tok + 6);
				r->kind = RULE_GID;
				r->id = gr->gr_gid;
			} else {
				return kl_error_set(
				    KL_E_INVALID,
				    "keyline.conf: [roles] %s: '%s' is not user:NAME, "
				    "group:NAME, uid:N, gid:N or *",
				    key + 6, tok);
			}
			s->nrules++;
		}
	}
	if (!any) {
		/* Default: root and the station's own user hold every role. */
		s->rules[s->nrules++] = (st_rule){ KL_RPC_ROLE_ALL, RULE_UID, 0 };
		s->rules[s->nrules++] = (st_rule){ KL_RPC_ROLE_ALL, RULE_UID, (uint32_t)getuid() };
	}
	return 0;
}

static bool name_ok(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > KL_STATION_SLOT_NAME_MAX)
		return false;
	for (const char *p = n; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && *p != '-' && *p != '_' && *p != '.')
			return false;
	return true;
}

static int parse_slots(kl_station *s)
{
	size_t iter = 0;
	const char *key, *value;

	while (kl_config_next(s->home->conf, &iter, &key, &value)) {
		st_slot *sl;

		if (strncmp(key, "slots.", 6) != 0)
			continue;
		if (!name_ok(key + 6))
			return kl_error_set(
			    KL_E_INVALID,
			    "keyline.conf: slot name '%s': 1 to %d letters, digits, "
			    "'-', '_' or '.'",
			    key + 6, KL_STATION_SLOT_NAME_MAX);
		if (!*value || strlen(value) >= sizeof(sl->link))
			return kl_error_set(KL_E_INVALID, "keyline.conf: slot %s: the link is %s",
			                    key + 6, *value ? "too long" : "empty");
		if (s->nslots >= KL_STATION_MAX_SLOTS)
			return kl_error_set(KL_E_INVALID, "keyline.conf: more than %d slots",
			                    KL_STATION_MAX_SLOTS);
		sl = &s->slots[s->nslots++];
		sl->st = s;
		snprintf(sl->name, sizeof(sl->name), "%s", key + 6);
		snprintf(sl->link, sizeof(sl->link), "%s", value);
		/* "agent": the DUT attaches over [link]; "usb:auto" or "usb:PORT":
		 * over USB (station_link.c); else a TCTI. */
		sl->agent = strcmp(value, "agent") == 0;
		if (strncmp(value, "usb:", 4) == 0) {
			const char *port = value + 4;

			if (strcmp(port, "auto") != 0 && !st_usb_port_ok(port))
				return kl_error_set(
				    KL_E_INVALID,
				    "keyline.conf: [slots] %s = %s: want usb:auto or usb:PORT, "
				    "PORT a port path such as 1-2 or 1-2.3",
				    key + 6, value);
			sl->agent = sl->usb = true;
			snprintf(sl->usb_port, sizeof(sl->usb_port), "%s",
			         strcmp(port, "auto") == 0 ? "" : port);
		}
		sl->link_up = sl->agent ? 0 : -1;
		pthread_cond_init(&sl->cond, NULL);
	}
	return 0;
}

static int parse_socket(kl_station *s)
{
	char def[PATH_MAX];
	const char *p, *grp;
	long v;
	int r;

	kl_home_path(s->home, "station.sock", def, sizeof(def));
	p = kl_config_get(s->home->conf, "station.socket", def);
	if (strlen(p) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return kl_error_set(KL_E_INVALID,
		                    "keyline.conf: station.socket '%s' is longer than a Unix "
		                    "socket path may be (%zu bytes)",
		                    p, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
	snprintf(s->sock_path, sizeof(s->sock_path), "%s", p);
	s->sock_mode = 0660;
	s->sock_gid = (gid_t)-1;
	grp = kl_config_get(s->home->conf, "station.socket_group", NULL);
	if (grp) {
		struct group *g = getgrnam(grp);

		if (!g)
			return kl_error_set(KL_E_INVALID,
			                    "keyline.conf: station.socket_group: no "
			                    "group '%s'",
			                    grp);
		s->sock_gid = g->gr_gid;
	}
	if ((r = kl_config_int(s->home->conf, "station.max_clients", 256, 1, 4096, &v)) < 0)
		return r;
	s->max_clients = (int)v;
	/* 32 covers a user's UI, its CLI commands and scripts in parallel, and
	 * lets no user take more than an eighth of the default max_clients. */
	if ((r = kl_config_int(s->home->conf, "station.max_clients_per_uid", 32, 1, 4096, &v)) < 0)
		return r;
	s->max_clients_per_uid = (int)v;
	if ((r = kl_config_int(s->home->conf, "station.idle_timeout_s", 30, 1, 3600, &v)) < 0)
		return r;
	s->idle_timeout_s = (int)v;
	if ((r = kl_config_int(s->home->conf, "station.idle_close_s", 600, 0, 86400, &v)) < 0)
		return r;
	s->idle_close_s = (int)v;
	/* Read here, where a bad value stops the start, not in each slot. */
	if ((r = kl_config_int(s->home->conf, "station.link_probe_s", 2, 0, 3600, &v)) < 0)
		return r;
	s->link_probe_s = v;
	s->max_out = 4u << 20;
	return 0;
}

static kl_station *station_new(void)
{
	kl_station *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	pthread_mutex_init(&s->backend, NULL);
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->bq_mu, NULL);
	pthread_cond_init(&s->bq_cond, NULL);
	pthread_cond_init(&s->link_cond, NULL);
	s->wake[0] = s->wake[1] = -1;
	s->lfd = -1;
	s->sock_lock = -1;
	s->started_ms = st_wall_ms();
	s->self_uid = getuid();
	s->rpc.tables = api_tables;
	s->rpc.on_denied = st_on_denied;
	return s;
}

int kl_station_open_offline(const char *home_dir, kl_station **ret)
{
	kl_station *s = station_new();
	int r;

	if (!s)
		return kl_error_set(KL_E_NOMEM, "out of memory");
	s->offline = true;
	if ((r = kl_home_open(home_dir, &s->home)) < 0 ||
	    (r = kl_home_store(s->home, &s->store)) < 0 ||
	    (r = kl_registry_open(s->store, &s->reg)) < 0) {
		kl_station_free(s);
		return r;
	}
	snprintf(s->station_id, sizeof(s->station_id), "%s",
	         kl_config_get(s->home->conf, "station.id", "station"));
	s->rstore = s->store;
	s->rreg = s->reg;
	s->bstore = s->store;
	*ret = s;
	return 0;
}

int kl_station_open(const char *home_dir, kl_station **ret)
{
	kl_station *s = station_new();
	int r;

	if (!s)
		return kl_error_set(KL_E_NOMEM, "out of memory");
	if ((r = kl_home_open(home_dir, &s->home)) < 0)
		goto fail;
	snprintf(s->station_id, sizeof(s->station_id), "%s",
	         kl_config_get(s->home->conf, "station.id", "station"));
	if ((r = parse_slots(s)) < 0 || (r = parse_roles(s)) < 0 || (r = parse_socket(s)) < 0 ||
	    (r = st_link_config(s)) < 0)
		goto fail;
	if (s->nslots == 0) {
		r = kl_error_set(
		    KL_E_INVALID,
		    "keyline.conf has no [slots]: name at least one slot and its link, "
		    "e.g. 'A = swtpm:host=127.0.0.1,port=2321' (docs/station.md)");
		goto fail;
	}
	if ((r = kl_config_int(s->home->conf, "ca.crl_days", 7, 1, 366, &s->crl_days)) < 0)
		goto fail;
	/* Before the HSM and the registry: a second station on the same socket
	 * path stops here, touching neither. */
	if ((r = st_socket_claim(s)) < 0)
		goto fail;
	/* The registry, the HSM (one login) and the CA, the trust bundle. */
	r = kl_home_engine_config(s->home, &s->ecfg, &s->reg, &s->trust);
	if (r < 0) {
		r = kl_error_wrap("cannot start: %s", !s->home->store ? "the registry is unusable"
		                                      : !s->home->ca
		                                          ? "the HSM or the CA is unusable"
		                                          : "the trust bundle is unusable");
		goto fail;
	}
	s->store = s->home->store;
	{
		char def[PATH_MAX];

		kl_home_path(s->home, "registry.db", def, sizeof(def));
		if ((r = kl_store_open(kl_config_get(s->home->conf, "registry.path", def),
		                       &s->rstore)) < 0 ||
		    (r = kl_registry_open(s->rstore, &s->rreg)) < 0 ||
		    (r = kl_store_open(kl_config_get(s->home->conf, "registry.path", def),
		                       &s->bstore)) < 0) {
			r = kl_error_wrap("cannot start: the registry is unusable");
			goto fail;
		}
	}
	if ((r = st_record_signer(s)) < 0) {
		r = kl_error_wrap("cannot start");
		goto fail;
	}
	s->hsm_ok = true;
	s->ecfg.station_id = s->station_id;
	s->ecfg.lock = st_lock_hook;
	s->ecfg.unlock = st_unlock_hook;
	s->ecfg.lock_ctx = s;
	s->lcfg = (kl_life_config){
		.tpm_timeout_ms = s->ecfg.tpm_timeout_ms,
		.store = s->store,
		.reg = s->reg,
		.ca = s->home->ca,
		.station_id = s->station_id,
		.idevid_profile = s->ecfg.idevid_profile,
		.profile_for = s->ecfg.profile_for,
		.profile_ctx = s->ecfg.profile_ctx,
		.record_key = s->record_key,
		.record_cert = s->record_cert,
		.lock = st_lock_hook,
		.unlock = st_unlock_hook,
		.lock_ctx = s,
	};
	kl_home_path(s->home, "crl/issuing.crl", s->crl_path, sizeof(s->crl_path));
	*ret = s;
	return 0;
fail:
	kl_station_free(s);
	return r;
}

void kl_station_free(kl_station *s)
{
	if (!s)
		return;
	if (!s->offline)
		st_workers_stop(s);
	st_backend_stop(s);
	st_bjobs_free(st_backend_take_done(s));
	st_server_free(s);
	st_jobs_free(s);
	st_events_free(s->ev_head);
	s->ev_head = s->ev_tail = NULL;
	kl_link_listener_free(s->link_l);
	s->link_l = NULL;
	for (size_t i = 0; i < s->nslots; i++) {
		kl_link_conn_free(s->slots[i].conn);
		pthread_cond_destroy(&s->slots[i].cond);
	}
	kl_usb_free(s->usb); /* after its links */
	EVP_PKEY_free(s->record_key);
	X509_free(s->record_cert);
	if (s->rreg != s->reg) {
		kl_registry_free(s->rreg);
		kl_store_free(s->rstore);
	}
	if (s->bstore != s->store)
		kl_store_free(s->bstore);
	kl_registry_free(s->reg);
	kl_trust_free(s->trust);
	kl_home_free(s->home);
	pthread_mutex_destroy(&s->backend);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->bq_mu);
	pthread_cond_destroy(&s->bq_cond);
	pthread_cond_destroy(&s->link_cond);
	free(s);
}

const char *kl_station_id(const kl_station *s)
{
	return s->station_id;
}

size_t kl_station_slot_count(const kl_station *s)
{
	return s->nslots;
}

const char *kl_station_socket_path(const kl_station *s)
{
	return s->sock_path;
}
