/* KlDevicesView: the registry's devices in a GtkColumnView over
 * KlDevicesModel (paged from devices.list: only the rows shown are
 * fetched), with search, sort (serial or newest first) and a state filter,
 * and a detail pane from devices.show: certificates, evidence, state
 * history and audit entries. */
#ifndef KL_UI_DEVICES_VIEW_H
#define KL_UI_DEVICES_VIEW_H

#include <gtk/gtk.h>

#include "kl-station-client.h"

G_BEGIN_DECLS

#define KL_TYPE_DEVICES_VIEW (kl_devices_view_get_type())
G_DECLARE_FINAL_TYPE(KlDevicesView, kl_devices_view, KL, DEVICES_VIEW, GtkBox)

void kl_devices_view_setup(KlDevicesView *self, KlStationClient *client);
/* The view as shown: total, the first rows loaded, the detail pane. */
GVariant *kl_devices_view_dump(KlDevicesView *self);

G_END_DECLS

#endif
