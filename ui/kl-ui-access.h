/* Which views and actions keyline-ui offers, from what the station lets this
 * user call (rpc.methods). The station enforces its roles anyway; the UI
 * only avoids offering what would be refused. */
#ifndef KL_UI_ACCESS_H
#define KL_UI_ACCESS_H

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
	KL_UI_VIEW_LINE = 1 << 0,    /* always: slots.list is everyone's */
	KL_UI_VIEW_DEVICES = 1 << 1, /* devices.list */
	KL_UI_VIEW_CA = 1 << 2,      /* an officer's or auditor's method */
	KL_UI_VIEW_SERVICE = 1 << 3, /* decommission, repurpose or lost */
} KlUiViews;

/* can(ctx, method) says whether rpc.methods listed the method. */
typedef gboolean (*KlUiCanFunc)(gpointer ctx, const char *method);

KlUiViews kl_ui_views_allowed(KlUiCanFunc can, gpointer ctx);

G_END_DECLS

#endif
