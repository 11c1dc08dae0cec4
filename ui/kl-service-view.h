/* KlServiceView: service staff's view: decommission (or repurpose) the
 * device on a slot after a confirmation step, follow the job, and show its
 * signed sanitization record (device.decommission, device.record); report a
 * device lost (device.lost). */
#ifndef KL_UI_SERVICE_VIEW_H
#define KL_UI_SERVICE_VIEW_H

#include <gtk/gtk.h>

#include "kl-line-model.h"
#include "kl-station-client.h"

G_BEGIN_DECLS

#define KL_TYPE_SERVICE_VIEW (kl_service_view_get_type())
G_DECLARE_FINAL_TYPE(KlServiceView, kl_service_view, KL, SERVICE_VIEW, GtkBox)

void kl_service_view_setup(KlServiceView *self, KlStationClient *client, KlLineModel *line);
/* The view as shown (the chosen slot, the serial, the confirmation, the
 * job's progress, the record's summary and text), an a{sv}. */
GVariant *kl_service_view_dump(KlServiceView *self);

G_END_DECLS

#endif
