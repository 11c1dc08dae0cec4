/* The fake KlApi; see fake_api.h. */
#include "fake_api.h"

#include <string.h>

#include "kl-json.h"

struct _FakeApi {
	GObject parent_instance;
	guint total;
	GQueue held; /* GTask */
	GArray *offsets;
};

static void fake_api_iface_init(KlApiInterface *iface);

G_DEFINE_TYPE_WITH_CODE(FakeApi, fake_api, G_TYPE_OBJECT,
                        G_IMPLEMENT_INTERFACE(KL_TYPE_API, fake_api_iface_init))

static const char *state_of(guint i)
{
	return i % 10 == 0 ? "revoked" : "provisioned";
}

/* devices.list over the generated registry. */
static GVariant *devices_list(FakeApi *self, GVariant *p)
{
	gint64 offset = kl_variant_int(p, "offset", 0), limit = kl_variant_int(p, "limit", 100);
	const char *search = kl_variant_str(p, "search", NULL);
	const char *state = kl_variant_str(p, "state", NULL);
	gboolean newest = kl_variant_bool(p, "newest_first", FALSE);
	GVariantBuilder devs, r;
	gint64 matched = 0, count = 0, asked = offset;

	g_variant_builder_init(&devs, G_VARIANT_TYPE("av"));
	/* Without a filter only the page is generated: a million rows stay
	 * cheap. */
	if (!search && !state) {
		matched = offset;
		offset = 0;
	}
	for (guint k = (guint)matched; k < self->total; k++) {
		if (!search && !state && count >= limit) {
			matched = self->total;
			break;
		}
		guint i = newest ? self->total - 1 - k : k;
		char serial[32];
		GVariantBuilder d;

		g_snprintf(serial, sizeof(serial), "DEV-%07u", i);
		if (search && !strstr(serial, search))
			continue;
		if (state && strcmp(state, state_of(i)) != 0)
			continue;
		if (matched++ < offset || count >= limit)
			continue;
		count++;
		g_variant_builder_init(&d, G_VARIANT_TYPE_VARDICT);
		g_variant_builder_add(&d, "{sv}", "serial", g_variant_new_string(serial));
		g_variant_builder_add(&d, "{sv}", "tenant", g_variant_new_string("acme"));
		g_variant_builder_add(&d, "{sv}", "state", g_variant_new_string(state_of(i)));
		g_variant_builder_add(&d, "{sv}", "created", g_variant_new_int64(1700000000 + i));
		g_variant_builder_add(&devs, "v", g_variant_builder_end(&d));
	}
	g_variant_builder_init(&r, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add(&r, "{sv}", "devices", g_variant_builder_end(&devs));
	g_variant_builder_add(&r, "{sv}", "total", g_variant_new_int64(matched));
	g_variant_builder_add(&r, "{sv}", "offset", g_variant_new_int64(asked));
	g_variant_builder_add(&r, "{sv}", "count", g_variant_new_int64(count));
	return g_variant_ref_sink(g_variant_builder_end(&r));
}

static void fake_call(KlApi *api, const char *method, GVariant *params, GCancellable *cancellable,
                      GAsyncReadyCallback callback, gpointer user_data)
{
	FakeApi *self = FAKE_API(api);
	GTask *task = g_task_new(self, cancellable, callback, user_data);

	g_task_set_task_data(task, g_strdup(method), g_free);
	if (params) {
		g_variant_ref_sink(params);
		g_object_set_data_full(G_OBJECT(task), "params", params,
		                       (GDestroyNotify)g_variant_unref);
		if (strcmp(method, "devices.list") == 0) {
			gint64 off = kl_variant_int(params, "offset", 0);

			g_array_append_val(self->offsets, off);
		}
	}
	g_queue_push_tail(&self->held, task);
}

static GVariant *fake_call_finish(KlApi *api, GAsyncResult *result, GError **error)
{
	return g_task_propagate_pointer(G_TASK(result), error);
}

static void fake_api_iface_init(KlApiInterface *iface)
{
	iface->call = fake_call;
	iface->call_finish = fake_call_finish;
}

guint fake_api_flush(FakeApi *self)
{
	guint n = 0;
	GTask *task;

	while ((task = g_queue_pop_head(&self->held))) {
		const char *method = g_task_get_task_data(task);
		GVariant *p = g_object_get_data(G_OBJECT(task), "params");

		if (strcmp(method, "devices.list") == 0)
			g_task_return_pointer(task, devices_list(self, p),
			                      (GDestroyNotify)g_variant_unref);
		else
			g_task_return_new_error(task, KL_API_ERROR, -32601, "Method not found");
		g_object_unref(task);
		n++;
	}
	/* GTask delivers in an idle when returned outside the caller's frame
	 * only if the context changed; run what is pending. */
	while (g_main_context_iteration(NULL, FALSE))
		;
	return n;
}

guint fake_api_held(FakeApi *self)
{
	return g_queue_get_length(&self->held);
}

GArray *fake_api_offsets(FakeApi *self)
{
	return self->offsets;
}

FakeApi *fake_api_new(guint total)
{
	FakeApi *self = g_object_new(FAKE_TYPE_API, NULL);

	self->total = total;
	return self;
}

static void fake_api_finalize(GObject *object)
{
	FakeApi *self = FAKE_API(object);

	g_queue_clear_full(&self->held, g_object_unref);
	g_array_unref(self->offsets);
	G_OBJECT_CLASS(fake_api_parent_class)->finalize(object);
}

static void fake_api_class_init(FakeApiClass *klass)
{
	G_OBJECT_CLASS(klass)->finalize = fake_api_finalize;
}

static void fake_api_init(FakeApi *self)
{
	g_queue_init(&self->held);
	self->offsets = g_array_new(FALSE, FALSE, sizeof(gint64));
}
