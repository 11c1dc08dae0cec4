/* INI-style configuration files. See kl_config.h. */
#include "kl_config.h"
#include "kl_error.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONFIG_MAX_ITEMS 256
#define CONFIG_MAX_SIZE  (256 * 1024)

struct item {
	char *key;
	char *value;
};

struct kl_config {
	char origin[PATH_MAX];
	struct item items[CONFIG_MAX_ITEMS];
	size_t n;
};

static char *trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

/* Replaces every "${home}" in value with home. */
static char *expand_home(const char *value, const char *home)
{
	size_t n = 1, hl = strlen(home);
	const char *p;
	char *out, *q;

	for (p = value; *p;) {
		if (strncmp(p, "${home}", 7) == 0) {
			n += hl;
			p += 7;
		} else {
			n++;
			p++;
		}
	}
	out = malloc(n);
	if (!out)
		return NULL;
	for (p = value, q = out; *p;) {
		if (strncmp(p, "${home}", 7) == 0) {
			memcpy(q, home, hl);
			q += hl;
			p += 7;
		} else {
			*q++ = *p++;
		}
	}
	*q = '\0';
	return out;
}

void kl_config_free(kl_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->items[i].key);
		free(c->items[i].value);
	}
	free(c);
}

int kl_config_parse(const char *text, const char *origin, const char *home, kl_config **ret)
{
	char section[64] = "";
	char *copy, *line, *save = NULL;
	kl_config *c;
	int lineno = 0, r = 0;

	c = calloc(1, sizeof(*c));
	copy = strdup(text);
	if (!c || !copy) {
		free(c);
		free(copy);
		return kl_error_set(KL_E_NOMEM, "config: out of memory");
	}
	snprintf(c->origin, sizeof(c->origin), "%s", origin);
	/* strtok_r would merge empty lines and lose line numbers: split by hand. */
	for (line = copy; line && r == 0; line = save) {
		char *nl = strchr(line, '\n'), *s, *eq;

		save = nl ? nl + 1 : NULL;
		if (nl)
			*nl = '\0';
		lineno++;
		s = trim(line);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *end = strchr(s, ']');

			if (!end || end[1] != '\0' || end - s - 1 <= 0 ||
			    (size_t)(end - s - 1) >= sizeof(section)) {
				r = kl_error_set(KL_E_INVALID, "%s:%d: bad section header '%s'",
				                 origin, lineno, s);
				break;
			}
			memcpy(section, s + 1, (size_t)(end - s - 1));
			section[end - s - 1] = '\0';
			continue;
		}
		eq = strchr(s, '=');
		if (!eq) {
			r = kl_error_set(KL_E_INVALID, "%s:%d: expected 'key = value', got '%s'",
			                 origin, lineno, s);
			break;
		}
		*eq = '\0';
		char *key = trim(s), *value = trim(eq + 1);
		if (!*key || !section[0]) {
			r = kl_error_set(KL_E_INVALID, "%s:%d: %s", origin, lineno,
			                 !*key ? "empty key" : "key outside any [section]");
			break;
		}
		if (c->n == CONFIG_MAX_ITEMS) {
			r = kl_error_set(KL_E_INVALID, "%s: more than %d settings", origin,
			                 CONFIG_MAX_ITEMS);
			break;
		}
		char full[192];
		snprintf(full, sizeof(full), "%s.%s", section, key);
		for (size_t i = 0; i < c->n; i++) {
			if (strcmp(c->items[i].key, full) == 0) {
				r = kl_error_set(KL_E_INVALID, "%s:%d: '%s' is set twice", origin,
				                 lineno, full);
				break;
			}
		}
		if (r < 0)
			break;
		char *v = home ? expand_home(value, home) : strdup(value);
		c->items[c->n].key = strdup(full);
		c->items[c->n].value = v;
		if (!c->items[c->n].key || !v) {
			c->n++;
			r = kl_error_set(KL_E_NOMEM, "config: out of memory");
			break;
		}
		c->n++;
	}
	free(copy);
	if (r < 0) {
		kl_config_free(c);
		return r;
	}
	*ret = c;
	return 0;
}

int kl_config_load(const char *path, kl_config **ret)
{
	char home[PATH_MAX], *text, *slash;
	FILE *f = fopen(path, "re");
	long size;
	int r;

	if (!f)
		return kl_error_set(errno == ENOENT ? KL_E_NOTFOUND : KL_E_IO, "config %s: %s",
		                    path, strerror(errno));
	if (fseek(f, 0, SEEK_END) < 0 || (size = ftell(f)) < 0 || size > CONFIG_MAX_SIZE ||
	    fseek(f, 0, SEEK_SET) < 0) {
		fclose(f);
		return kl_error_set(KL_E_INVALID, "config %s: unreadable or larger than %d bytes",
		                    path, CONFIG_MAX_SIZE);
	}
	text = calloc(1, (size_t)size + 1);
	if (!text || fread(text, 1, (size_t)size, f) != (size_t)size) {
		fclose(f);
		free(text);
		return kl_error_set(KL_E_IO, "config %s: read failed", path);
	}
	fclose(f);
	snprintf(home, sizeof(home), "%s", path);
	slash = strrchr(home, '/');
	if (slash)
		*slash = '\0';
	else
		snprintf(home, sizeof(home), ".");
	r = kl_config_parse(text, path, home, ret);
	free(text);
	return r;
}

const char *kl_config_get(const kl_config *c, const char *key, const char *def)
{
	for (size_t i = 0; c && i < c->n; i++)
		if (strcmp(c->items[i].key, key) == 0)
			return c->items[i].value;
	return def;
}

int kl_config_require(const kl_config *c, const char *key, const char **ret)
{
	const char *v = kl_config_get(c, key, NULL);

	if (!v || !*v)
		return kl_error_set(KL_E_INVALID, "%s: '%s' must be set", c ? c->origin : "config",
		                    key);
	*ret = v;
	return 0;
}

int kl_config_int(const kl_config *c, const char *key, long def, long min, long max, long *ret)
{
	const char *v = kl_config_get(c, key, NULL);
	char *end;
	long n;

	if (!v) {
		*ret = def;
		return 0;
	}
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < min || n > max)
		return kl_error_set(KL_E_INVALID, "%s: '%s' must be a whole number from %ld to %ld",
		                    c->origin, key, min, max);
	*ret = n;
	return 0;
}

int kl_config_bool(const kl_config *c, const char *key, bool def, bool *ret)
{
	const char *v = kl_config_get(c, key, NULL);

	if (!v) {
		*ret = def;
	} else if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcmp(v, "1")) {
		*ret = true;
	} else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcmp(v, "0")) {
		*ret = false;
	} else {
		return kl_error_set(KL_E_INVALID, "%s: '%s' must be true or false", c->origin, key);
	}
	return 0;
}

bool kl_config_next(const kl_config *c, size_t *iter, const char **key, const char **value)
{
	if (!c || *iter >= c->n)
		return false;
	*key = c->items[*iter].key;
	*value = c->items[*iter].value;
	(*iter)++;
	return true;
}
