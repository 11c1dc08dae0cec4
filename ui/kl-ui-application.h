/* KlUiApplication: keyline-ui. Options: --socket PATH or --home DIR (the
 * station's socket, HOME/station.sock), or --demo [--devices N] [--home DIR]
 * to set up a demo line first (keyline-demo --ui) and open the UI on it.
 * It owns the station client and the line model the views share. */
#ifndef KL_UI_APPLICATION_H
#define KL_UI_APPLICATION_H

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define KL_TYPE_UI_APPLICATION (kl_ui_application_get_type())
G_DECLARE_FINAL_TYPE(KlUiApplication, kl_ui_application, KL, UI_APPLICATION, GtkApplication)

KlUiApplication *kl_ui_application_new(void);

G_END_DECLS

#endif
