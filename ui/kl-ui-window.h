/* KlUiWindow: keyline-ui's window: a view switcher (Line, Devices, CA,
 * Service), a banner that says when the station is down, its HSM is not
 * logged in or a DUT link dropped, and the views. Views the station's roles
 * do not allow this user (rpc.methods) are hidden. */
#ifndef KL_UI_WINDOW_H
#define KL_UI_WINDOW_H

#include <gtk/gtk.h>

#include "kl-line-model.h"
#include "kl-station-client.h"

G_BEGIN_DECLS

#define KL_TYPE_UI_WINDOW (kl_ui_window_get_type())
G_DECLARE_FINAL_TYPE(KlUiWindow, kl_ui_window, KL, UI_WINDOW, GtkApplicationWindow)

KlUiWindow *kl_ui_window_new(GtkApplication *app, KlStationClient *client, KlLineModel *line);

/* The demo line's progress while it is being set up (NULL: none). */
void kl_ui_window_set_demo_status(KlUiWindow *self, const char *text, gboolean error);
/* Serials the demo pre-registered, offered to the operator. */
void kl_ui_window_set_demo_serials(KlUiWindow *self, const char *const *serials);

/* What the window shows, read from its widgets (for KEYLINE_UI_TEST_STATE):
 * an a{sv}. */
GVariant *kl_ui_window_dump(KlUiWindow *self);

G_END_DECLS

#endif
