/* A devices-list row; see kl-device-item.h. */
#include "kl-device-item.h"

#include "kl-json.h"

struct _KlDeviceItem {
	GObject parent_instance;

	guint position;
	gboolean loaded;
	char *serial, *tenant, *state;
	gint64 created, state_time;
};

G_DEFINE_TYPE(KlDeviceItem, kl_device_item, G_TYPE_OBJECT)

enum {
	PROP_0,
	PROP_LOADED,
	PROP_SERIAL,
	PROP_TENANT,
	PROP_STATE,
	PROP_CREATED,
	PROP_STATE_TIME,
	N_PROPS
};
static GParamSpec *props[N_PROPS];

KlDeviceItem *kl_device_item_new(guint position)
{
	KlDeviceItem *self = g_object_new(KL_TYPE_DEVICE_ITEM, NULL);

	self->position = position;
	return self;
}

void kl_device_item_set_from_variant(KlDeviceItem *self, GVariant *d)
{
	GObject *o = G_OBJECT(self);

	g_object_freeze_notify(o);
	g_free(self->serial);
	self->serial = g_strdup(kl_variant_str(d, "serial", ""));
	g_free(self->tenant);
	self->tenant = g_strdup(kl_variant_str(d, "tenant", ""));
	g_free(self->state);
	self->state = g_strdup(kl_variant_str(d, "state", ""));
	self->created = kl_variant_int(d, "created", 0);
	self->state_time = kl_variant_int(d, "state_time", 0);
	self->loaded = TRUE;
	for (int i = PROP_LOADED; i < N_PROPS; i++)
		g_object_notify_by_pspec(o, props[i]);
	g_object_thaw_notify(o);
}

guint kl_device_item_get_position(KlDeviceItem *self)
{
	return self->position;
}

gboolean kl_device_item_get_loaded(KlDeviceItem *self)
{
	return self->loaded;
}

const char *kl_device_item_get_serial(KlDeviceItem *self)
{
	return self->serial ? self->serial : "";
}

const char *kl_device_item_get_tenant(KlDeviceItem *self)
{
	return self->tenant ? self->tenant : "";
}

const char *kl_device_item_get_state(KlDeviceItem *self)
{
	return self->state ? self->state : "";
}

gint64 kl_device_item_get_created(KlDeviceItem *self)
{
	return self->created;
}

gint64 kl_device_item_get_state_time(KlDeviceItem *self)
{
	return self->state_time;
}

static void kl_device_item_get_property(GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
	KlDeviceItem *self = KL_DEVICE_ITEM(object);

	switch (id) {
	case PROP_LOADED:
		g_value_set_boolean(value, self->loaded);
		break;
	case PROP_SERIAL:
		g_value_set_string(value, self->serial);
		break;
	case PROP_TENANT:
		g_value_set_string(value, self->tenant);
		break;
	case PROP_STATE:
		g_value_set_string(value, self->state);
		break;
	case PROP_CREATED:
		g_value_set_int64(value, self->created);
		break;
	case PROP_STATE_TIME:
		g_value_set_int64(value, self->state_time);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
	}
}

static void kl_device_item_finalize(GObject *object)
{
	KlDeviceItem *self = KL_DEVICE_ITEM(object);

	g_free(self->serial);
	g_free(self->tenant);
	g_free(self->state);
	G_OBJECT_CLASS(kl_device_item_parent_class)->finalize(object);
}

static void kl_device_item_class_init(KlDeviceItemClass *klass)
{
	GObjectClass *oc = G_OBJECT_CLASS(klass);
	GParamFlags f = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS;

	oc->get_property = kl_device_item_get_property;
	oc->finalize = kl_device_item_finalize;
	props[PROP_LOADED] = g_param_spec_boolean("loaded", NULL, NULL, FALSE, f);
	props[PROP_SERIAL] = g_param_spec_string("serial", NULL, NULL, NULL, f);
	props[PROP_TENANT] = g_param_spec_string("tenant", NULL, NULL, NULL, f);
	props[PROP_STATE] = g_param_spec_string("state", NULL, NULL, NULL, f);
	props[PROP_CREATED] = g_param_spec_int64("created", NULL, NULL, 0, G_MAXINT64, 0, f);
	props[PROP_STATE_TIME] = g_param_spec_int64("state-time", NULL, NULL, 0, G_MAXINT64, 0, f);
	g_object_class_install_properties(oc, N_PROPS, props);
}

static void kl_device_item_init(KlDeviceItem *self)
{
}
