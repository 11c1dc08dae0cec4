#include "kl_file.h"
#include "kl_error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* fsyncs the directory holding path, so that a rename into it survives a
 * power cut. */
static int sync_dir(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd, r = 0;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		r = kl_error_set(KL_E_IO, "sync %s: %s", dir, strerror(errno));
	if (fd >= 0)
		close(fd);
	return r;
}

int kl_write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	char tmp[PATH_MAX];
	const char *p = data;
	size_t done = 0;
	int fd, e;

	/* A name no one can guess, made with O_EXCL (mkostemp): a file or a
	 * symlink planted at the temp path is never written through. */
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= sizeof(tmp))
		return kl_error_set(KL_E_INVALID, "write %s: path too long", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return kl_error_set(KL_E_IO, "write %s: %s", path, strerror(errno));
	if (fchmod(fd, mode) < 0)
		goto fail;
	while (done < len) {
		ssize_t n = write(fd, p + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			goto fail;
		}
		done += (size_t)n;
	}
	if (fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		e = errno;
		unlink(tmp);
		return kl_error_set(KL_E_IO, "rename %s: %s", path, strerror(e));
	}
	return sync_dir(path);
fail:
	e = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return kl_error_set(KL_E_IO, "write %s: %s", path, strerror(e));
}

int kl_copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "re"), *out;
	char buf[8192];
	size_t n;
	int bad_read, bad_write = 0;

	if (!in)
		return kl_error_set(KL_E_NOTFOUND, "%s: %s", from, strerror(errno));
	out = fopen(to, "we");
	if (!out) {
		int e = errno;

		fclose(in);
		return kl_error_set(KL_E_IO, "%s: %s", to, strerror(e));
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, out) != n) {
			bad_write = 1;
			break;
		}
	bad_read = ferror(in);
	fclose(in);
	if (fclose(out) != 0)
		bad_write = 1;
	if (bad_read)
		return kl_error_set(KL_E_IO, "read %s: %s", from, strerror(errno ? errno : EIO));
	if (bad_write)
		return kl_error_set(KL_E_IO, "%s: %s", to, strerror(errno ? errno : EIO));
	return 0;
}
