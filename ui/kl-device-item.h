/* KlDeviceItem: one row of the devices list. Made empty (a placeholder) by
 * KlDevicesModel and filled when its page arrives: the "loaded" property and
 * the others notify, so a row bound to it updates by itself. */
#ifndef KL_UI_DEVICE_ITEM_H
#define KL_UI_DEVICE_ITEM_H

#include <glib-object.h>

G_BEGIN_DECLS

#define KL_TYPE_DEVICE_ITEM (kl_device_item_get_type())
G_DECLARE_FINAL_TYPE(KlDeviceItem, kl_device_item, KL, DEVICE_ITEM, GObject)

KlDeviceItem *kl_device_item_new(guint position);

/* Fills it from one entry of devices.list (an a{sv}). */
void kl_device_item_set_from_variant(KlDeviceItem *self, GVariant *device);

guint kl_device_item_get_position(KlDeviceItem *self);
gboolean kl_device_item_get_loaded(KlDeviceItem *self);
const char *kl_device_item_get_serial(KlDeviceItem *self);
const char *kl_device_item_get_tenant(KlDeviceItem *self);
const char *kl_device_item_get_state(KlDeviceItem *self);
gint64 kl_device_item_get_created(KlDeviceItem *self);
gint64 kl_device_item_get_state_time(KlDeviceItem *self);

G_END_DECLS

#endif
