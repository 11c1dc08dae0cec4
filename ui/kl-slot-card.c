/* A slot's card; see kl-slot-card.h. */
#include "kl-slot-card.h"

struct _KlSlotCard {
	GtkBox parent_instance;

	KlSlotItem *item;
	GtkLabel *name_label, *elapsed_label, *link_label, *serial_label, *step_label;
	GtkLabel *state_label, *reason_label, *message_label;
	GtkProgressBar *progress;
};

G_DEFINE_FINAL_TYPE(KlSlotCard, kl_slot_card, GTK_TYPE_BOX)

static const char *const state_classes[] = { "idle",   "queued", "running",
	                                     "passed", "failed", "aborted" };

/* A symbol with the word: ✔ PASS, ✖ FAIL, ■ ABORTED, ▶ RUNNING. */
static const char *state_symbol(KlSlotState st)
{
	switch (st) {
	case KL_SLOT_PASSED:
		return "✔";
	case KL_SLOT_FAILED:
		return "✖";
	case KL_SLOT_ABORTED:
		return "■";
	case KL_SLOT_RUNNING:
		return "▶";
	case KL_SLOT_QUEUED:
		return "…";
	case KL_SLOT_IDLE:
		break;
	}
	return "○";
}

void kl_slot_card_tick(KlSlotCard *self)
{
	gint64 ms = kl_slot_item_get_elapsed_ms(self->item, g_get_real_time() / 1000);
	char buf[64];

	if (ms <= 0) {
		gtk_label_set_text(self->elapsed_label, "");
		return;
	}
	if (ms < 60000)
		g_snprintf(buf, sizeof(buf), "%.1f s", (double)ms / 1000.0);
	else
		g_snprintf(buf, sizeof(buf), "%d:%02d", (int)(ms / 60000), (int)(ms / 1000 % 60));
	gtk_label_set_text(self->elapsed_label, buf);
}

/* A failed or aborted job: the machine reason in large type, and the
 * station's sentence with the step it stopped at, wrapped, under it. */
static void set_failure(KlSlotCard *self, KlSlotItem *it)
{
	gboolean failed = it->state == KL_SLOT_FAILED || it->state == KL_SLOT_ABORTED;
	g_autoptr(GString) msg = g_string_new(NULL);
	const char *reason = "";

	if (failed) {
		if (it->message && *it->message)
			g_string_append(msg, it->message);
		if (it->failed_step && *it->failed_step)
			g_string_append_printf(msg, "%s(at step %s)", msg->len ? " " : "",
			                       it->failed_step);
	}
	if (failed && it->reason && *it->reason)
		reason = it->reason;
	else if (failed)
		reason = "failed";
	gtk_label_set_text(self->reason_label, reason);
	gtk_widget_set_visible(GTK_WIDGET(self->reason_label), failed);
	gtk_label_set_text(self->message_label, msg->str);
	gtk_widget_set_visible(GTK_WIDGET(self->message_label), msg->len > 0);
}

static void update(KlSlotCard *self)
{
	KlSlotItem *it = self->item;
	g_autofree char *state = NULL, *why = kl_slot_item_dup_failure(it);
	g_autofree char *step = NULL, *access = NULL, *link = NULL;
	double frac = kl_slot_item_get_fraction(it);

	gtk_label_set_text(self->name_label, it->name);
	if (it->agent) {
		/* The DUT that is plugged in, the moment its agent attaches. */
		if (it->dut_serial)
			link = g_strdup_printf("DUT %s%s%s%s attached", it->dut_serial,
			                       it->dut_model && *it->dut_model ? " (" : "",
			                       it->dut_model ? it->dut_model : "",
			                       it->dut_model && *it->dut_model ? ")" : "");
		else
			link = g_strdup("No DUT attached: plug one in");
		gtk_label_set_text(self->link_label, link);
	} else if (it->link_up == 0) {
		link = g_strdup_printf("⚠ DUT link down%s%s",
		                       it->link_error && *it->link_error ? ": " : "",
		                       it->link_error ? it->link_error : "");
		gtk_label_set_text(self->link_label, link);
	}
	gtk_widget_set_visible(GTK_WIDGET(self->link_label), it->agent || it->link_up == 0);
	if (it->agent && it->dut_serial && it->state != KL_SLOT_QUEUED &&
	    it->state != KL_SLOT_RUNNING)
		gtk_label_set_text(self->serial_label, it->dut_serial);
	else
		gtk_label_set_text(self->serial_label,
		                   it->serial && *it->serial ? it->serial : "—");
	if (it->state == KL_SLOT_IDLE)
		step = g_strdup(it->link_up == 0 ? "" : "Scan a serial to start");
	else if (it->state == KL_SLOT_QUEUED)
		step = g_strdup_printf("%s: waiting to start", it->kind ? it->kind : "job");
	else if (it->steps > 0 && it->step)
		step =
		    g_strdup_printf("Step %d of %d: %s",
		                    MIN(it->step_index + (it->state != KL_SLOT_PASSED), it->steps),
		                    it->steps, it->step);
	else
		step = g_strdup(it->step ? it->step : "");
	gtk_label_set_text(self->step_label, step);
	gtk_progress_bar_set_fraction(self->progress, frac);
	if (it->steps > 0) {
		g_autofree char *t = g_strdup_printf("%d / %d", it->step_index, it->steps);

		gtk_progress_bar_set_text(self->progress, t);
	} else {
		gtk_progress_bar_set_text(self->progress, it->state == KL_SLOT_RUNNING ? "…" : "");
	}
	state = g_strdup_printf("%s %s", state_symbol(it->state), kl_slot_item_get_state_label(it));
	gtk_label_set_text(self->state_label, state);
	for (size_t i = 0; i < G_N_ELEMENTS(state_classes); i++)
		gtk_widget_remove_css_class(GTK_WIDGET(self), state_classes[i]);
	gtk_widget_add_css_class(GTK_WIDGET(self), state_classes[it->state]);
	set_failure(self, it);
	kl_slot_card_tick(self);
	/* Screen readers hear the card as one sentence. */
	access = g_strdup_printf("%s: %s%s%s%s%s", it->name, kl_slot_item_get_state_label(it),
	                         it->serial ? ", " : "", it->serial ? it->serial : "",
	                         *why ? ", " : "", why);
	gtk_accessible_update_property(GTK_ACCESSIBLE(self), GTK_ACCESSIBLE_PROPERTY_LABEL, access,
	                               -1);
}

KlSlotCard *kl_slot_card_new(KlSlotItem *item)
{
	KlSlotCard *self = g_object_new(KL_TYPE_SLOT_CARD, NULL);

	self->item = g_object_ref(item);
	g_signal_connect_object(item, "changed", G_CALLBACK(update), self, G_CONNECT_SWAPPED);
	update(self);
	return self;
}

KlSlotItem *kl_slot_card_get_item(KlSlotCard *self)
{
	return self->item;
}

/* Whether every visible child of the card lies inside the card as drawn: a
 * box does not clip, so a child taller than what the card was given runs
 * past the card's border. */
static gboolean content_fits(KlSlotCard *self)
{
	GtkWidget *w = GTK_WIDGET(self);
	int height = gtk_widget_get_height(w);

	for (GtkWidget *c = gtk_widget_get_first_child(w); c; c = gtk_widget_get_next_sibling(c)) {
		graphene_rect_t r;

		if (!gtk_widget_get_visible(c) || !gtk_widget_compute_bounds(c, w, &r))
			continue;
		if (r.origin.y + r.size.height > (float)height + 0.5f)
			return FALSE;
	}
	return TRUE;
}

/* Whether the whole card is in the visible part of the scrolled list: the
 * operator reads it without scrolling. */
static gboolean in_view(KlSlotCard *self)
{
	GtkWidget *sw = gtk_widget_get_ancestor(GTK_WIDGET(self), GTK_TYPE_SCROLLED_WINDOW);
	graphene_rect_t r;

	if (!sw || !gtk_widget_compute_bounds(GTK_WIDGET(self), sw, &r))
		return FALSE;
	return r.origin.y >= -0.5f &&
	       r.origin.y + r.size.height <= (float)gtk_widget_get_height(sw) + 0.5f;
}

GVariant *kl_slot_card_dump(KlSlotCard *self)
{
	GVariantBuilder b;

	g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add(&b, "{sv}", "name",
	                      g_variant_new_string(gtk_label_get_text(self->name_label)));
	g_variant_builder_add(&b, "{sv}", "serial",
	                      g_variant_new_string(gtk_label_get_text(self->serial_label)));
	g_variant_builder_add(&b, "{sv}", "step",
	                      g_variant_new_string(gtk_label_get_text(self->step_label)));
	g_variant_builder_add(&b, "{sv}", "state",
	                      g_variant_new_string(gtk_label_get_text(self->state_label)));
	g_variant_builder_add(
	    &b, "{sv}", "reason",
	    g_variant_new_string(gtk_widget_get_visible(GTK_WIDGET(self->reason_label))
	                             ? gtk_label_get_text(self->reason_label)
	                             : ""));
	g_variant_builder_add(
	    &b, "{sv}", "message",
	    g_variant_new_string(gtk_widget_get_visible(GTK_WIDGET(self->message_label))
	                             ? gtk_label_get_text(self->message_label)
	                             : ""));
	g_variant_builder_add(
	    &b, "{sv}", "link",
	    g_variant_new_string(gtk_widget_get_visible(GTK_WIDGET(self->link_label))
	                             ? gtk_label_get_text(self->link_label)
	                             : ""));
	g_variant_builder_add(&b, "{sv}", "progress",
	                      g_variant_new_double(gtk_progress_bar_get_fraction(self->progress)));
	g_variant_builder_add(&b, "{sv}", "elapsed",
	                      g_variant_new_string(gtk_label_get_text(self->elapsed_label)));
	g_variant_builder_add(&b, "{sv}", "fits", g_variant_new_boolean(content_fits(self)));
	g_variant_builder_add(&b, "{sv}", "in_view", g_variant_new_boolean(in_view(self)));
	return g_variant_builder_end(&b);
}

static void kl_slot_card_dispose(GObject *object)
{
	KlSlotCard *self = KL_SLOT_CARD(object);

	g_clear_object(&self->item);
	gtk_widget_dispose_template(GTK_WIDGET(self), KL_TYPE_SLOT_CARD);
	G_OBJECT_CLASS(kl_slot_card_parent_class)->dispose(object);
}

static void kl_slot_card_class_init(KlSlotCardClass *klass)
{
	GtkWidgetClass *wc = GTK_WIDGET_CLASS(klass);

	G_OBJECT_CLASS(klass)->dispose = kl_slot_card_dispose;
	gtk_widget_class_set_template_from_resource(wc, "/org/keyline/ui/kl-slot-card.ui");
	gtk_widget_class_bind_template_child(wc, KlSlotCard, name_label);
	gtk_widget_class_bind_template_child(wc, KlSlotCard, elapsed_label);
	gtk_widget_class_bind_template_child(wc, KlSlotCard, link_label);
	gtk_widget_class_bind_template_child(wc, KlSlotCard, serial_label);
	gtk_widget_class_bind_template_child(wc, KlSlotCard, step_label);
	gtk_widget_class_bind_template_child(wc, KlSlotCard, progress);
	gtk_widget_class_bind_template_child(wc, KlSlotCard, state_label);
	gtk_widget_class_bind_template_child(wc, KlSlotCard, reason_label);
	gtk_widget_class_bind_template_child(wc, KlSlotCard, message_label);
}

static void kl_slot_card_init(KlSlotCard *self)
{
	gtk_widget_init_template(GTK_WIDGET(self));
}
