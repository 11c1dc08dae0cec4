/* One slot of the line; see kl-slot-item.h. */
#include "kl-slot-item.h"

G_DEFINE_TYPE(KlSlotItem, kl_slot_item, G_TYPE_OBJECT)

G_DEFINE_ENUM_TYPE(KlSlotState, kl_slot_state, G_DEFINE_ENUM_VALUE(KL_SLOT_IDLE, "idle"),
                   G_DEFINE_ENUM_VALUE(KL_SLOT_QUEUED, "queued"),
                   G_DEFINE_ENUM_VALUE(KL_SLOT_RUNNING, "running"),
                   G_DEFINE_ENUM_VALUE(KL_SLOT_PASSED, "passed"),
                   G_DEFINE_ENUM_VALUE(KL_SLOT_FAILED, "failed"),
                   G_DEFINE_ENUM_VALUE(KL_SLOT_ABORTED, "aborted"))

enum { SIGNAL_CHANGED, N_SIGNALS };
static guint signals[N_SIGNALS];

KlSlotItem *kl_slot_item_new(const char *name)
{
	KlSlotItem *self = g_object_new(KL_TYPE_SLOT_ITEM, NULL);

	self->name = g_strdup(name);
	return self;
}

void kl_slot_item_changed(KlSlotItem *self)
{
	g_signal_emit(self, signals[SIGNAL_CHANGED], 0);
}

gboolean kl_slot_item_is_free(KlSlotItem *self)
{
	return self->state != KL_SLOT_QUEUED && self->state != KL_SLOT_RUNNING &&
	       self->link_up != 0;
}

double kl_slot_item_get_fraction(KlSlotItem *self)
{
	if (self->state == KL_SLOT_PASSED)
		return 1.0;
	if (self->steps <= 0)
		return 0.0;
	return CLAMP((double)self->step_index / self->steps, 0.0, 1.0);
}

gint64 kl_slot_item_get_elapsed_ms(KlSlotItem *self, gint64 now_ms)
{
	if (self->started_ms <= 0)
		return 0;
	if (self->finished_ms > 0)
		return MAX(self->finished_ms - self->started_ms, 0);
	return MAX(now_ms - self->started_ms, 0);
}

const char *kl_slot_item_get_state_label(KlSlotItem *self)
{
	switch (self->state) {
	case KL_SLOT_IDLE:
		return self->link_up == 0 ? "NO LINK" : "READY";
	case KL_SLOT_QUEUED:
		return "WAITING";
	case KL_SLOT_RUNNING:
		return "RUNNING";
	case KL_SLOT_PASSED:
		return "PASS";
	case KL_SLOT_FAILED:
		return "FAIL";
	case KL_SLOT_ABORTED:
		return "ABORTED";
	}
	return "";
}

char *kl_slot_item_dup_failure(KlSlotItem *self)
{
	GString *s;

	if (self->state != KL_SLOT_FAILED && self->state != KL_SLOT_ABORTED)
		return g_strdup("");
	s = g_string_new(self->reason && *self->reason ? self->reason : "failed");
	if (self->message && *self->message)
		g_string_append_printf(s, ": %s", self->message);
	if (self->failed_step && *self->failed_step)
		g_string_append_printf(s, " (at step %s)", self->failed_step);
	return g_string_free(s, FALSE);
}

static void kl_slot_item_finalize(GObject *object)
{
	KlSlotItem *self = KL_SLOT_ITEM(object);

	g_free(self->name);
	g_free(self->link);
	g_free(self->link_error);
	g_free(self->dut_serial);
	g_free(self->dut_model);
	g_free(self->kind);
	g_free(self->serial);
	g_free(self->step);
	g_free(self->reason);
	g_free(self->message);
	g_free(self->failed_step);
	G_OBJECT_CLASS(kl_slot_item_parent_class)->finalize(object);
}

static void kl_slot_item_class_init(KlSlotItemClass *klass)
{
	G_OBJECT_CLASS(klass)->finalize = kl_slot_item_finalize;
	signals[SIGNAL_CHANGED] =
	    g_signal_new("changed", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
	                 NULL, G_TYPE_NONE, 0);
}

static void kl_slot_item_init(KlSlotItem *self)
{
	self->link_up = -1;
}
