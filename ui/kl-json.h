/* JSON <-> GVariant for keyline-ui: the one place besides the station
 * client where json-c is used. Views only ever see GVariants:
 *
 *   object -> a{sv}     array -> av     string -> s     integer -> x
 *   double -> d         boolean -> b    null -> mv (nothing)
 *
 * and the kl_variant_* getters read a{sv} dictionaries with defaults, so that
 * a missing or null field never needs a special case in a view. */
#ifndef KL_UI_JSON_H
#define KL_UI_JSON_H

#include <glib.h>

G_BEGIN_DECLS

/* Parses one JSON text; NULL (and error set) when it is not JSON. The result
 * is a full (non-floating) reference. */
GVariant *kl_json_parse(const char *text, GError **error);

/* A JSON text for v (a{sv}, av, s, x/i/u/t, d, b, mv, v). Free with g_free. */
char *kl_json_print(GVariant *v, gboolean pretty);

/* Getters on an a{sv} (NULL dict allowed). Strings are borrowed from dict;
 * the default is returned for a missing, null or mistyped field. */
const char *kl_variant_str(GVariant *dict, const char *key, const char *def);
gint64 kl_variant_int(GVariant *dict, const char *key, gint64 def);
double kl_variant_double(GVariant *dict, const char *key, double def);
gboolean kl_variant_bool(GVariant *dict, const char *key, gboolean def);
/* TRUE when the key exists and is not null. */
gboolean kl_variant_has(GVariant *dict, const char *key);
/* A child object (a{sv}) or array (av); a new reference, or NULL. */
GVariant *kl_variant_child(GVariant *dict, const char *key);

G_END_DECLS

#endif
