/* Views from rpc.methods; see kl-ui-access.h. */
#include "kl-ui-access.h"

KlUiViews kl_ui_views_allowed(KlUiCanFunc can, gpointer ctx)
{
	KlUiViews v = KL_UI_VIEW_LINE;

	if (can(ctx, "devices.list"))
		v |= KL_UI_VIEW_DEVICES;
	if (can(ctx, "device.revoke") || can(ctx, "crl.publish") || can(ctx, "audit.list"))
		v |= KL_UI_VIEW_CA;
	if (can(ctx, "device.decommission") || can(ctx, "device.repurpose") ||
	    can(ctx, "device.lost"))
		v |= KL_UI_VIEW_SERVICE;
	return v;
}
