/* Whole files written and copied with every error named: the station's
 * home (PIN files, certificates, CRLs, keyline.conf) and the demo line. */
#ifndef KL_FILE_H
#define KL_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include "kl_error.h"

/* Writes a file atomically with the given mode: a temp file beside it with
 * an unguessable name (created exclusively, never through a symlink), the
 * mode set on it before any byte is written, fsync, rename, fsync of the
 * directory. On failure the old file (if any) is left as it was and no temp
 * file remains. */
int kl_write_file(const char *path, const void *data, size_t len, mode_t mode) KL_MUST_CHECK;

/* Copies a file (not atomically: for files made once, such as profiles).
 * A read or write error anywhere is an error naming the file. */
int kl_copy_file(const char *from, const char *to) KL_MUST_CHECK;

#endif
