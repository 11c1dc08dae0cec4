/* KlDevicesModel: the registry's devices as a GListModel of KlDeviceItem
 * that pages from devices.list (offset, limit, total). Only pages that a view
 * asks for are fetched: get_item() on a row not loaded yet returns an empty
 * placeholder and fetches its page once; the placeholder fills in when the
 * page arrives. A bounded number of pages is kept, so a million devices cost
 * what the visible rows cost.
 *
 * The query (search, state, newest first) is the station's: changing it
 * starts over from a count; answers to an older query are dropped. */
#ifndef KL_UI_DEVICES_MODEL_H
#define KL_UI_DEVICES_MODEL_H

#include <gio/gio.h>

#include "kl-api.h"
#include "kl-device-item.h"

G_BEGIN_DECLS

#define KL_DEVICES_PAGE_SIZE  100
#define KL_DEVICES_PAGES_KEPT 64

#define KL_TYPE_DEVICES_MODEL (kl_devices_model_get_type())
G_DECLARE_FINAL_TYPE(KlDevicesModel, kl_devices_model, KL, DEVICES_MODEL, GObject)

/* api answers devices.list; the model holds a reference. */
KlDevicesModel *kl_devices_model_new(KlApi *api);

/* A new query; NULL or "" for no search / any state. Starts over. */
void kl_devices_model_set_query(KlDevicesModel *self, const char *search, const char *state,
                                gboolean newest_first);

/* Forgets every page and counts again (new devices, changed states). */
void kl_devices_model_reload(KlDevicesModel *self);

/* The total the station reported for the query; 0 before it answered. */
guint kl_devices_model_get_total(KlDevicesModel *self);
/* devices.list calls made so far, and pages held now (for tests). */
guint kl_devices_model_get_fetches(KlDevicesModel *self);
guint kl_devices_model_get_pages_held(KlDevicesModel *self);
/* The last error the station gave, or NULL. */
const char *kl_devices_model_get_error(KlDevicesModel *self);

G_END_DECLS

#endif
