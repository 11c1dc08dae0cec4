/* KlLineView: the operator's view: one card per slot, the serial field
 * that takes a barcode scanner (text + Enter starts job.provision on the
 * selected or the next free slot), abort, and the shift's counters. */
#ifndef KL_UI_LINE_VIEW_H
#define KL_UI_LINE_VIEW_H

#include <gtk/gtk.h>

#include "kl-line-model.h"
#include "kl-station-client.h"

G_BEGIN_DECLS

#define KL_TYPE_LINE_VIEW (kl_line_view_get_type())
G_DECLARE_FINAL_TYPE(KlLineView, kl_line_view, KL, LINE_VIEW, GtkBox)

void kl_line_view_setup(KlLineView *self, KlStationClient *client, KlLineModel *model);
void kl_line_view_set_demo_serials(KlLineView *self, const char *const *serials);
void kl_line_view_focus_serial(KlLineView *self);
/* The view as shown: cards, counters, the last scan's result; an a{sv}. */
GVariant *kl_line_view_dump(KlLineView *self);

G_END_DECLS

#endif
