/* The KlApi interface; see kl-api.h. */
#include "kl-api.h"

G_DEFINE_INTERFACE(KlApi, kl_api, G_TYPE_OBJECT)

GQuark kl_api_error_quark(void)
{
	return g_quark_from_static_string("kl-api-error-quark");
}

static void kl_api_default_init(KlApiInterface *iface)
{
}

void kl_api_call(KlApi *self, const char *method, GVariant *params, GCancellable *cancellable,
                 GAsyncReadyCallback callback, gpointer user_data)
{
	g_return_if_fail(KL_IS_API(self));
	KL_API_GET_IFACE(self)->call(self, method, params, cancellable, callback, user_data);
}

GVariant *kl_api_call_finish(KlApi *self, GAsyncResult *result, GError **error)
{
	g_return_val_if_fail(KL_IS_API(self), NULL);
	return KL_API_GET_IFACE(self)->call_finish(self, result, error);
}
