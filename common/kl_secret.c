#include "kl_secret.h"
#include "kl_error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

int kl_secret_new(size_t len, kl_secret **ret)
{
	kl_secret *s;

	if (len > KL_SECRET_MAX)
		return kl_error_set(KL_E_INVALID, "secret of %zu bytes exceeds the %d byte limit",
		                    len, KL_SECRET_MAX);
	s = OPENSSL_zalloc(sizeof(*s));
	if (!s)
		return kl_error_set(KL_E_NOMEM, "secret: out of memory");
	s->cap = len + 1;
	s->data = OPENSSL_zalloc(s->cap);
	if (!s->data) {
		OPENSSL_free(s);
		return kl_error_set(KL_E_NOMEM, "secret: out of memory");
	}
	/* Best effort: keep it out of swap and core dumps. Failure (RLIMIT_MEMLOCK)
	 * is not fatal; the buffer is still wiped on free. */
	(void)mlock(s->data, s->cap);
	s->len = len;
	*ret = s;
	return 0;
}

void kl_secret_free(kl_secret *s)
{
	if (!s)
		return;
	if (s->data) {
		OPENSSL_cleanse(s->data, s->cap);
		(void)munlock(s->data, s->cap);
		OPENSSL_free(s->data);
	}
	OPENSSL_free(s);
}

int kl_secret_from_bytes(const void *p, size_t len, kl_secret **ret)
{
	kl_secret *s;
	int r;

	r = kl_secret_new(len, &s);
	if (r < 0)
		return r;
	if (len)
		memcpy(s->data, p, len);
	*ret = s;
	return 0;
}

static void strip_newline(kl_secret *s)
{
	if (s->len && s->data[s->len - 1] == '\n') {
		s->data[--s->len] = '\0';
		if (s->len && s->data[s->len - 1] == '\r')
			s->data[--s->len] = '\0';
	}
}

int kl_secret_from_file(const char *path, kl_secret **ret)
{
	kl_secret *s = NULL;
	struct stat st;
	ssize_t n;
	size_t got = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return kl_error_set(errno == ENOENT ? KL_E_NOTFOUND : KL_E_IO, "secret file %s: %s",
		                    path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return kl_error_set(KL_E_INVALID, "secret file %s: not a regular file", path);
	}
	if (st.st_mode & S_IROTH) {
		close(fd);
		return kl_error_set(
		    KL_E_PERM, "secret file %s is readable by everyone (mode %04o); chmod 600 it",
		    path, (unsigned)(st.st_mode & 07777));
	}
	if (st.st_size <= 0 || st.st_size > KL_SECRET_MAX) {
		close(fd);
		return kl_error_set(KL_E_INVALID, "secret file %s: size %lld, want 1..%d bytes",
		                    path, (long long)st.st_size, KL_SECRET_MAX);
	}
	r = kl_secret_new((size_t)st.st_size, &s);
	if (r < 0) {
		close(fd);
		return r;
	}
	while (got < s->len) {
		n = read(fd, s->data + got, s->len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	s->len = got;
	strip_newline(s);
	if (s->len == 0) {
		kl_secret_free(s);
		return kl_error_set(KL_E_INVALID, "secret file %s is empty", path);
	}
	*ret = s;
	return 0;
}

int kl_secret_from_env(const char *name, kl_secret **ret)
{
	char *v = getenv(name);
	size_t len;
	int r;

	if (!v || !*v)
		return kl_error_set(KL_E_NOTFOUND, "environment variable %s is not set", name);
	len = strlen(v);
	r = kl_secret_from_bytes(v, len, ret);
	OPENSSL_cleanse(v, len);
	unsetenv(name);
	return r;
}

int kl_secret_from_prompt(const char *prompt, kl_secret **ret)
{
	struct termios old, quiet;
	kl_secret *s = NULL;
	size_t len = 0;
	char c;
	int fd, r;

	fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return kl_error_set(
		    KL_E_IO, "no terminal to ask for the %s; give it with a file: or env: source",
		    prompt);
	r = kl_secret_new(KL_SECRET_MAX, &s);
	if (r < 0) {
		close(fd);
		return r;
	}
	if (tcgetattr(fd, &old) < 0) {
		close(fd);
		kl_secret_free(s);
		return kl_error_set(KL_E_IO, "terminal: %s", strerror(errno));
	}
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	quiet.c_lflag |= ICANON;
	(void)!write(fd, prompt, strlen(prompt));
	(void)!write(fd, ": ", 2);
	tcsetattr(fd, TCSAFLUSH, &quiet);
	while (read(fd, &c, 1) == 1 && c != '\n' && c != '\r') {
		if (len < KL_SECRET_MAX)
			s->data[len++] = (unsigned char)c;
	}
	c = 0;
	tcsetattr(fd, TCSAFLUSH, &old);
	(void)!write(fd, "\n", 1);
	close(fd);
	s->len = len;
	if (len == 0) {
		kl_secret_free(s);
		return kl_error_set(KL_E_PIN, "no %s entered", prompt);
	}
	*ret = s;
	return 0;
}

int kl_secret_from_spec(const char *spec, const char *prompt, kl_secret **ret)
{
	if (!spec)
		return kl_error_set(KL_E_INVALID, "no source given for the %s", prompt);
	if (strncmp(spec, "file:", 5) == 0)
		return kl_secret_from_file(spec + 5, ret);
	if (strncmp(spec, "env:", 4) == 0)
		return kl_secret_from_env(spec + 4, ret);
	if (strcmp(spec, "prompt") == 0)
		return kl_secret_from_prompt(prompt, ret);
	return kl_error_set(KL_E_INVALID,
	                    "bad source for the %s: want file:PATH, env:NAME or prompt (the value "
	                    "given is not shown, in case it is the secret itself)",
	                    prompt);
}

bool kl_secret_equal(const kl_secret *a, const kl_secret *b)
{
	if (!a || !b || a->len != b->len)
		return false;
	return CRYPTO_memcmp(a->data, b->data, a->len) == 0;
}
