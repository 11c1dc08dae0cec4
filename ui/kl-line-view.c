/* The line view; see kl-line-view.h. */
#include "kl-line-view.h"

#include "kl-json.h"
#include "kl-slot-card.h"

struct _KlLineView {
	GtkBox parent_instance;

	KlStationClient *client;
	KlLineModel *model;
	guint tick;

	GtkEntry *serial_entry;
	GtkLabel *target_label, *scan_result, *demo_hint;
	GtkLabel *passed_label, *failed_label, *aborted_label, *rate_label;
	GtkButton *abort_button;
	GtkFlowBox *cards;
};

G_DEFINE_FINAL_TYPE(KlLineView, kl_line_view, GTK_TYPE_BOX)

static void set_result(KlLineView *self, gboolean error, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void set_result(KlLineView *self, gboolean error, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *s = NULL;

	va_start(ap, fmt);
	s = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	gtk_label_set_text(self->scan_result, s);
	if (error)
		gtk_widget_add_css_class(GTK_WIDGET(self->scan_result), "error");
	else
		gtk_widget_remove_css_class(GTK_WIDGET(self->scan_result), "error");
}

static KlSlotItem *selected_item(KlLineView *self)
{
	g_autoptr(GList) sel = gtk_flow_box_get_selected_children(self->cards);
	GtkWidget *card;

	if (!sel)
		return NULL;
	card = gtk_flow_box_child_get_child(sel->data);
	return KL_IS_SLOT_CARD(card) ? kl_slot_card_get_item(KL_SLOT_CARD(card)) : NULL;
}

/* "→ slot-03": where the next scan goes. */
static void update_target(KlLineView *self)
{
	KlSlotItem *sel = selected_item(self);
	KlSlotItem *it = kl_line_model_pick_slot(self->model, sel ? sel->name : NULL);
	g_autofree char *t = it ? g_strdup_printf("→ %s", it->name) : g_strdup("no free slot");

	gtk_label_set_text(self->target_label, t);
}

static void update_counters(KlLineView *self)
{
	KlShiftCounters *c = kl_line_model_get_counters(self->model);
	double rate = kl_shift_counters_per_hour(c, g_get_real_time() / 1000);
	char buf[64];

	g_snprintf(buf, sizeof(buf), "✔ Passed %u", kl_shift_counters_get_passed(c));
	gtk_label_set_text(self->passed_label, buf);
	g_snprintf(buf, sizeof(buf), "✖ Failed %u", kl_shift_counters_get_failed(c));
	gtk_label_set_text(self->failed_label, buf);
	g_snprintf(buf, sizeof(buf), "■ Aborted %u", kl_shift_counters_get_aborted(c));
	gtk_label_set_text(self->aborted_label, buf);
	if (rate < 0)
		g_snprintf(buf, sizeof(buf), "— devices/hour");
	else
		g_snprintf(buf, sizeof(buf), "%.0f devices/hour", rate);
	gtk_label_set_text(self->rate_label, buf);
}

static gboolean on_tick(gpointer data)
{
	KlLineView *self = data;

	for (GtkWidget *c = gtk_widget_get_first_child(GTK_WIDGET(self->cards)); c;
	     c = gtk_widget_get_next_sibling(c)) {
		GtkWidget *card = gtk_flow_box_child_get_child(GTK_FLOW_BOX_CHILD(c));

		if (KL_IS_SLOT_CARD(card))
			kl_slot_card_tick(KL_SLOT_CARD(card));
	}
	update_counters(self);
	return G_SOURCE_CONTINUE;
}

static GtkWidget *create_card(gpointer item, gpointer data)
{
	return GTK_WIDGET(kl_slot_card_new(item));
}

static void jobs_loaded(GObject *src, GAsyncResult *res, gpointer data)
{
	g_autoptr(KlLineView) self = data;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(src), res, NULL);

	if (r && self->model)
		kl_line_model_set_recent_jobs(self->model, r);
	update_target(self);
	update_counters(self);
}

static void slots_loaded(GObject *src, GAsyncResult *res, gpointer data)
{
	g_autoptr(KlLineView) self = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(src), res, &error);

	if (!r) {
		if (!g_error_matches(error, KL_API_ERROR, KL_API_ERROR_DISCONNECTED))
			set_result(self, TRUE, "Cannot list the slots: %s", error->message);
		return;
	}
	if (!self->model)
		return;
	kl_line_model_set_slots(self->model, r);
	kl_api_call(KL_API(src), "job.list", g_variant_new_parsed("{'limit': <int64 100>}"), NULL,
	            jobs_loaded, g_object_ref(self));
}

static void reload(KlLineView *self)
{
	kl_api_call(KL_API(self->client), "slots.list", NULL, NULL, slots_loaded,
	            g_object_ref(self));
}

static void on_ready(KlStationClient *client, gpointer data)
{
	KlLineView *self = data;
	gboolean can_start = kl_station_client_can(client, "job.provision");

	gtk_editable_set_editable(GTK_EDITABLE(self->serial_entry), can_start);
	gtk_entry_set_placeholder_text(self->serial_entry,
	                               can_start ? "Scan a barcode or type a serial, then Enter"
	                                         : "Read-only: your role may not start jobs");
	gtk_widget_set_visible(GTK_WIDGET(self->abort_button),
	                       kl_station_client_can(client, "job.abort"));
	reload(self);
}

static void on_event(KlStationClient *client, const char *type, GVariant *params, gpointer data)
{
	KlLineView *self = data;

	if (!kl_line_model_handle_event(self->model, params) && kl_variant_has(params, "slot") &&
	    g_str_has_prefix(type, "job.") &&
	    !kl_line_model_find(self->model, kl_variant_str(params, "slot", NULL)))
		reload(self); /* a slot we do not know: the station's config changed */
	update_target(self);
	update_counters(self);
}

static void provision_done(GObject *src, GAsyncResult *res, gpointer data)
{
	g_autoptr(KlLineView) self = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(src), res, &error);

	if (!r) {
		set_result(self, TRUE, "✖ Not started: %s", error->message);
		/* Selected, so that the next scan replaces it. */
		gtk_editable_select_region(GTK_EDITABLE(self->serial_entry), 0, -1);
		return;
	}
	set_result(self, FALSE, "▶ %s → %s (job %" G_GINT64_FORMAT ")",
	           kl_variant_str(r, "serial", "?"), kl_variant_str(r, "slot", "?"),
	           kl_variant_int(r, "job", 0));
	update_target(self);
}

static void on_serial_activate(KlLineView *self)
{
	g_autofree char *serial =
	    g_strstrip(g_strdup(gtk_editable_get_text(GTK_EDITABLE(self->serial_entry))));
	KlSlotItem *sel = selected_item(self), *it;
	GVariantBuilder b;

	if (!*serial)
		return;
	if (!kl_station_client_can(self->client, "job.provision")) {
		set_result(self, TRUE,
		           kl_station_client_get_state(self->client) == KL_STATION_STATE_CONNECTED
		               ? "✖ Your role may not start provisioning."
		               : "✖ Not connected to the station.");
		return;
	}
	it = kl_line_model_pick_slot(self->model, sel ? sel->name : NULL);
	if (!it) {
		set_result(self, TRUE,
		           "✖ Every slot is busy or has no link: wait for a slot to finish, "
		           "or abort one.");
		gtk_editable_select_region(GTK_EDITABLE(self->serial_entry), 0, -1);
		return;
	}
	g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add(&b, "{sv}", "serial", g_variant_new_string(serial));
	g_variant_builder_add(&b, "{sv}", "slot", g_variant_new_string(it->name));
	kl_api_call(KL_API(self->client), "job.provision", g_variant_builder_end(&b), NULL,
	            provision_done, g_object_ref(self));
	set_result(self, FALSE, "Starting %s on %s…", serial, it->name);
	gtk_editable_set_text(GTK_EDITABLE(self->serial_entry), "");
	/* The selection was for this scan; the next one goes to the next free
	 * slot unless the operator picks again. */
	gtk_flow_box_unselect_all(self->cards);
}

static void abort_done(GObject *src, GAsyncResult *res, gpointer data)
{
	g_autoptr(KlLineView) self = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(src), res, &error);

	if (!r)
		set_result(self, TRUE, "✖ Not aborted: %s", error->message);
	else
		set_result(self, FALSE, "■ Job %" G_GINT64_FORMAT ": %s",
		           kl_variant_int(r, "job", 0), kl_variant_str(r, "note", "aborting"));
}

static void on_abort_clicked(KlLineView *self)
{
	KlSlotItem *it = selected_item(self);

	if (!it || (it->state != KL_SLOT_QUEUED && it->state != KL_SLOT_RUNNING)) {
		set_result(self, TRUE,
		           "✖ Select the card of a slot with a running job first (Tab to the "
		           "cards, arrows, Space).");
		return;
	}
	kl_api_call(KL_API(self->client), "job.abort",
	            g_variant_new_parsed("{'job': <%x>}", it->job), NULL, abort_done,
	            g_object_ref(self));
}

static void on_new_shift(KlLineView *self)
{
	kl_shift_counters_reset(kl_line_model_get_counters(self->model), g_get_real_time() / 1000);
	update_counters(self);
}

static void on_selection_changed(KlLineView *self)
{
	update_target(self);
}

void kl_line_view_setup(KlLineView *self, KlStationClient *client, KlLineModel *model)
{
	self->client = g_object_ref(client);
	self->model = g_object_ref(model);
	gtk_flow_box_bind_model(self->cards, G_LIST_MODEL(model), create_card, self, NULL);
	g_signal_connect_object(client, "ready", G_CALLBACK(on_ready), self, 0);
	g_signal_connect_object(client, "event", G_CALLBACK(on_event), self, 0);
	g_signal_connect_object(model, "items-changed", G_CALLBACK(update_target), self,
	                        G_CONNECT_SWAPPED);
	self->tick = g_timeout_add_seconds(1, on_tick, self);
	update_counters(self);
	update_target(self);
}

void kl_line_view_set_demo_serials(KlLineView *self, const char *const *serials)
{
	g_autofree char *list = serials ? g_strjoinv("  ", (char **)serials) : NULL;
	g_autofree char *t = NULL;

	gtk_widget_set_visible(GTK_WIDGET(self->demo_hint), serials && *serials);
	if (!serials || !*serials)
		return;
	t = g_strdup_printf("Demo line: pre-registered serials %s. The last slot holds a DUT "
	                    "from a TPM vendor the station does not trust: it must FAIL.",
	                    list);
	gtk_label_set_text(self->demo_hint, t);
}

void kl_line_view_focus_serial(KlLineView *self)
{
	gtk_widget_grab_focus(GTK_WIDGET(self->serial_entry));
}

GVariant *kl_line_view_dump(KlLineView *self)
{
	GVariantBuilder b, cards;

	g_variant_builder_init(&cards, G_VARIANT_TYPE("av"));
	for (GtkWidget *c = gtk_widget_get_first_child(GTK_WIDGET(self->cards)); c;
	     c = gtk_widget_get_next_sibling(c)) {
		GtkWidget *card = gtk_flow_box_child_get_child(GTK_FLOW_BOX_CHILD(c));

		if (KL_IS_SLOT_CARD(card))
			g_variant_builder_add(&cards, "v", kl_slot_card_dump(KL_SLOT_CARD(card)));
	}
	g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add(&b, "{sv}", "cards", g_variant_builder_end(&cards));
#define LABEL(key, w) \
	g_variant_builder_add(&b, "{sv}", key, g_variant_new_string(gtk_label_get_text(w)))
	LABEL("passed", self->passed_label);
	LABEL("failed", self->failed_label);
	LABEL("aborted", self->aborted_label);
	LABEL("rate", self->rate_label);
	LABEL("scan_result", self->scan_result);
	LABEL("target", self->target_label);
#undef LABEL
	g_variant_builder_add(
	    &b, "{sv}", "serial_entry",
	    g_variant_new_string(gtk_editable_get_text(GTK_EDITABLE(self->serial_entry))));
	{
		GtkRoot *root = gtk_widget_get_root(GTK_WIDGET(self));
		GtkWidget *focus = root ? gtk_root_get_focus(root) : NULL;

		g_variant_builder_add(
		    &b, "{sv}", "serial_focused",
		    g_variant_new_boolean(
		        focus && (focus == GTK_WIDGET(self->serial_entry) ||
		                  gtk_widget_is_ancestor(focus, GTK_WIDGET(self->serial_entry)))));
	}
	return g_variant_builder_end(&b);
}

static void kl_line_view_dispose(GObject *object)
{
	KlLineView *self = KL_LINE_VIEW(object);

	g_clear_handle_id(&self->tick, g_source_remove);
	g_clear_object(&self->client);
	g_clear_object(&self->model);
	gtk_widget_dispose_template(GTK_WIDGET(self), KL_TYPE_LINE_VIEW);
	G_OBJECT_CLASS(kl_line_view_parent_class)->dispose(object);
}

static void kl_line_view_class_init(KlLineViewClass *klass)
{
	GtkWidgetClass *wc = GTK_WIDGET_CLASS(klass);

	G_OBJECT_CLASS(klass)->dispose = kl_line_view_dispose;
	gtk_widget_class_set_template_from_resource(wc, "/org/keyline/ui/kl-line-view.ui");
	gtk_widget_class_bind_template_child(wc, KlLineView, serial_entry);
	gtk_widget_class_bind_template_child(wc, KlLineView, target_label);
	gtk_widget_class_bind_template_child(wc, KlLineView, scan_result);
	gtk_widget_class_bind_template_child(wc, KlLineView, demo_hint);
	gtk_widget_class_bind_template_child(wc, KlLineView, passed_label);
	gtk_widget_class_bind_template_child(wc, KlLineView, failed_label);
	gtk_widget_class_bind_template_child(wc, KlLineView, aborted_label);
	gtk_widget_class_bind_template_child(wc, KlLineView, rate_label);
	gtk_widget_class_bind_template_child(wc, KlLineView, abort_button);
	gtk_widget_class_bind_template_child(wc, KlLineView, cards);
	gtk_widget_class_bind_template_callback(wc, on_serial_activate);
	gtk_widget_class_bind_template_callback(wc, on_abort_clicked);
	gtk_widget_class_bind_template_callback(wc, on_new_shift);
	gtk_widget_class_bind_template_callback(wc, on_selection_changed);
}

static void kl_line_view_init(KlLineView *self)
{
	gtk_widget_init_template(GTK_WIDGET(self));
}
