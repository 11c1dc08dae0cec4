/* KlApi: something that answers station API calls asynchronously. The
 * station client implements it over the socket; unit tests implement it with
 * fakes, so that view models (the devices paging model) are tested without a
 * station or a display. */
#ifndef KL_UI_API_H
#define KL_UI_API_H

#include <gio/gio.h>

G_BEGIN_DECLS

#define KL_TYPE_API (kl_api_get_type())
G_DECLARE_INTERFACE(KlApi, kl_api, KL, API, GObject)

struct _KlApiInterface {
	GTypeInterface parent_iface;

	void (*call)(KlApi *self, const char *method, GVariant *params, GCancellable *cancellable,
	             GAsyncReadyCallback callback, gpointer user_data);
	GVariant *(*call_finish)(KlApi *self, GAsyncResult *result, GError **error);
};

/* Calls method with params (an a{sv} or NULL; a floating reference is sunk).
 * The finish function returns the result (an a{sv}, full reference) or NULL
 * with error set: KL_API_ERROR with the JSON-RPC code and the station's
 * message, or a G_IO_ERROR when the station could not be reached. */
void kl_api_call(KlApi *self, const char *method, GVariant *params, GCancellable *cancellable,
                 GAsyncReadyCallback callback, gpointer user_data);
GVariant *kl_api_call_finish(KlApi *self, GAsyncResult *result, GError **error);

#define KL_API_ERROR (kl_api_error_quark())
GQuark kl_api_error_quark(void);

/* Error codes besides the JSON-RPC ones (which are negative). */
enum {
	KL_API_ERROR_DISCONNECTED = 1, /* the connection went away before the answer */
};

G_END_DECLS

#endif
