/* For the storage code of modules above the CA (the station's registry),
 * which keeps its tables in the same database and commits with the CA's
 * rows in one transaction. Nothing else includes this header. */
#ifndef KL_CA_STORE_INTERNAL_H
#define KL_CA_STORE_INTERNAL_H

#include <stddef.h>
#include <sqlite3.h>

#include "store.h"

sqlite3 *kl_store_sqlite(kl_store *s);

/* Applies a module's migrations (each a SQL script; index i brings the
 * schema to version i + 1), each in a transaction with its version bump. */
int kl_store_migrate(kl_store *s, const char *module, const char *const *migrations, size_t n);

#endif
