/* KlCaView: the security officer's view: the CA's certificates and their
 * expiry and the HSM (ca.status), revoking a device's certificates with an
 * RFC 5280 reason after a confirmation (device.revoke), publishing the CRL
 * (crl.publish), and the audit log (audit.list) with the hash chain's
 * status (audit.verify). What the user's roles do not allow is hidden. */
#ifndef KL_UI_CA_VIEW_H
#define KL_UI_CA_VIEW_H

#include <gtk/gtk.h>

#include "kl-station-client.h"

G_BEGIN_DECLS

#define KL_TYPE_CA_VIEW (kl_ca_view_get_type())
G_DECLARE_FINAL_TYPE(KlCaView, kl_ca_view, KL, CA_VIEW, GtkBox)

void kl_ca_view_setup(KlCaView *self, KlStationClient *client);
GVariant *kl_ca_view_dump(KlCaView *self);

G_END_DECLS

#endif
