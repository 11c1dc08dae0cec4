/* JSON <-> GVariant with json-c; see kl-json.h. */
#include "kl-json.h"

#include <gio/gio.h>
#include <json-c/json.h>

static GVariant *from_json(json_object *o)
{
	GVariantBuilder b;

	switch (json_object_get_type(o)) {
	case json_type_null:
		return g_variant_new_maybe(G_VARIANT_TYPE_VARIANT, NULL);
	case json_type_boolean:
		return g_variant_new_boolean(json_object_get_boolean(o));
	case json_type_int:
		return g_variant_new_int64(json_object_get_int64(o));
	case json_type_double:
		return g_variant_new_double(json_object_get_double(o));
	case json_type_string:
		/* JSON strings are UTF-8 (RFC 8259 §8.1); a GVariant string must
		 * be valid UTF-8 too, so anything else is replaced. */
		if (g_utf8_validate(json_object_get_string(o), -1, NULL))
			return g_variant_new_string(json_object_get_string(o));
		else {
			g_autofree char *s = g_utf8_make_valid(json_object_get_string(o),
			                                       json_object_get_string_len(o));

			return g_variant_new_string(s);
		}
	case json_type_array:
		g_variant_builder_init(&b, G_VARIANT_TYPE("av"));
		for (size_t i = 0; i < json_object_array_length(o); i++)
			g_variant_builder_add(&b, "v", from_json(json_object_array_get_idx(o, i)));
		return g_variant_builder_end(&b);
	case json_type_object:
		g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
		json_object_object_foreach(o, key, val)
		{
			if (g_utf8_validate(key, -1, NULL))
				g_variant_builder_add(&b, "{sv}", key, from_json(val));
		}
		return g_variant_builder_end(&b);
	}
	return g_variant_new_maybe(G_VARIANT_TYPE_VARIANT, NULL);
}

GVariant *kl_json_parse(const char *text, GError **error)
{
	json_tokener *tok = json_tokener_new();
	json_object *o;
	GVariant *v = NULL;

	o = json_tokener_parse_ex(tok, text, -1);
	if (!o && json_tokener_get_error(tok) != json_tokener_success) {
		g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "not JSON: %s",
		            json_tokener_error_desc(json_tokener_get_error(tok)));
	} else {
		v = g_variant_ref_sink(from_json(o));
	}
	json_object_put(o);
	json_tokener_free(tok);
	return v;
}

static json_object *to_json(GVariant *v)
{
	const GVariantType *t = g_variant_get_type(v);

	if (g_variant_type_is_maybe(t)) {
		g_autoptr(GVariant) inner = g_variant_get_maybe(v);

		return inner ? to_json(inner) : NULL;
	}
	if (g_variant_type_equal(t, G_VARIANT_TYPE_VARIANT)) {
		g_autoptr(GVariant) inner = g_variant_get_variant(v);

		return to_json(inner);
	}
	if (g_variant_type_equal(t, G_VARIANT_TYPE_BOOLEAN))
		return json_object_new_boolean(g_variant_get_boolean(v));
	if (g_variant_type_equal(t, G_VARIANT_TYPE_INT64))
		return json_object_new_int64(g_variant_get_int64(v));
	if (g_variant_type_equal(t, G_VARIANT_TYPE_INT32))
		return json_object_new_int64(g_variant_get_int32(v));
	if (g_variant_type_equal(t, G_VARIANT_TYPE_UINT32))
		return json_object_new_int64(g_variant_get_uint32(v));
	if (g_variant_type_equal(t, G_VARIANT_TYPE_UINT64))
		return json_object_new_int64((int64_t)g_variant_get_uint64(v));
	if (g_variant_type_equal(t, G_VARIANT_TYPE_DOUBLE))
		return json_object_new_double(g_variant_get_double(v));
	if (g_variant_type_is_subtype_of(t, G_VARIANT_TYPE_STRING))
		return json_object_new_string(g_variant_get_string(v, NULL));
	if (g_variant_type_is_dict_entry(g_variant_type_element(t)) ||
	    g_variant_type_equal(t, G_VARIANT_TYPE_VARDICT)) {
		json_object *o = json_object_new_object();
		GVariantIter it;
		GVariant *child;

		g_variant_iter_init(&it, v);
		while ((child = g_variant_iter_next_value(&it))) {
			g_autoptr(GVariant) key = g_variant_get_child_value(child, 0);
			g_autoptr(GVariant) val = g_variant_get_child_value(child, 1);

			if (g_variant_is_of_type(key, G_VARIANT_TYPE_STRING))
				json_object_object_add(o, g_variant_get_string(key, NULL),
				                       to_json(val));
			g_variant_unref(child);
		}
		return o;
	}
	if (g_variant_type_is_array(t) || g_variant_type_is_tuple(t)) {
		json_object *a = json_object_new_array();
		GVariantIter it;
		GVariant *child;

		g_variant_iter_init(&it, v);
		while ((child = g_variant_iter_next_value(&it))) {
			json_object_array_add(a, to_json(child));
			g_variant_unref(child);
		}
		return a;
	}
	return NULL;
}

char *kl_json_print(GVariant *v, gboolean pretty)
{
	json_object *o;
	char *s;

	if (!v)
		return g_strdup("null");
	g_variant_ref_sink(v);
	o = to_json(v);
	s = g_strdup(json_object_to_json_string_ext(
	    o, (pretty ? JSON_C_TO_STRING_PRETTY : JSON_C_TO_STRING_PLAIN) |
	           JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	g_variant_unref(v);
	return s;
}

/* The value under key, unwrapped from its variant; NULL when absent or null. */
static GVariant *lookup(GVariant *dict, const char *key)
{
	GVariant *v;

	if (!dict || !g_variant_is_of_type(dict, G_VARIANT_TYPE_VARDICT))
		return NULL;
	v = g_variant_lookup_value(dict, key, NULL);
	if (v && g_variant_is_of_type(v, G_VARIANT_TYPE_MAYBE)) {
		GVariant *inner = g_variant_get_maybe(v);

		g_variant_unref(v);
		v = inner;
		if (v && g_variant_is_of_type(v, G_VARIANT_TYPE_VARIANT)) {
			inner = g_variant_get_variant(v);
			g_variant_unref(v);
			v = inner;
		}
	}
	return v;
}

const char *kl_variant_str(GVariant *dict, const char *key, const char *def)
{
	g_autoptr(GVariant) v = lookup(dict, key);
	const char *s;

	if (!v || !g_variant_is_of_type(v, G_VARIANT_TYPE_STRING))
		return def;
	/* The string lives in dict's serialised data, which outlives v. */
	s = g_variant_get_string(v, NULL);
	return s;
}

gint64 kl_variant_int(GVariant *dict, const char *key, gint64 def)
{
	g_autoptr(GVariant) v = lookup(dict, key);

	if (v && g_variant_is_of_type(v, G_VARIANT_TYPE_INT64))
		return g_variant_get_int64(v);
	if (v && g_variant_is_of_type(v, G_VARIANT_TYPE_DOUBLE))
		return (gint64)g_variant_get_double(v);
	return def;
}

double kl_variant_double(GVariant *dict, const char *key, double def)
{
	g_autoptr(GVariant) v = lookup(dict, key);

	if (v && g_variant_is_of_type(v, G_VARIANT_TYPE_DOUBLE))
		return g_variant_get_double(v);
	if (v && g_variant_is_of_type(v, G_VARIANT_TYPE_INT64))
		return (double)g_variant_get_int64(v);
	return def;
}

gboolean kl_variant_bool(GVariant *dict, const char *key, gboolean def)
{
	g_autoptr(GVariant) v = lookup(dict, key);

	if (v && g_variant_is_of_type(v, G_VARIANT_TYPE_BOOLEAN))
		return g_variant_get_boolean(v);
	return def;
}

gboolean kl_variant_has(GVariant *dict, const char *key)
{
	g_autoptr(GVariant) v = lookup(dict, key);

	return v != NULL;
}

GVariant *kl_variant_child(GVariant *dict, const char *key)
{
	GVariant *v = lookup(dict, key);

	if (v && (g_variant_is_of_type(v, G_VARIANT_TYPE_VARDICT) ||
	          g_variant_is_of_type(v, G_VARIANT_TYPE("av"))))
		return v;
	if (v)
		g_variant_unref(v);
	return NULL;
}
