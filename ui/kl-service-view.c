/* The service view; see kl-service-view.h. */
#include "kl-service-view.h"

#include "kl-json.h"

struct _KlServiceView {
	GtkBox parent_instance;

	KlStationClient *client;
	KlLineModel *line;
	GtkStringList *slot_names;
	gint64 job;
	char *job_serial;

	GtkDropDown *slot_dropdown;
	GtkEntry *dec_serial, *lost_serial;
	GtkCheckButton *repurpose_check;
	GtkRevealer *dec_confirm, *lost_confirm;
	GtkLabel *dec_question, *dec_progress, *lost_question, *result_label, *record_summary;
	GtkWidget *decommission_box, *lost_box, *dec_go, *lost_go;
	GtkTextView *record_view;
};

G_DEFINE_FINAL_TYPE(KlServiceView, kl_service_view, GTK_TYPE_BOX)

static const char *slot_name(KlServiceView *self)
{
	guint i = gtk_drop_down_get_selected(self->slot_dropdown);

	return i == GTK_INVALID_LIST_POSITION ? NULL
	                                      : gtk_string_list_get_string(self->slot_names, i);
}

static void on_slots_changed(GListModel *list, guint pos, guint removed, guint added,
                             KlServiceView *self)
{
	guint n = g_list_model_get_n_items(list);
	g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);

	for (guint i = 0; i < n; i++) {
		g_autoptr(KlSlotItem) it = g_list_model_get_item(list, i);

		g_ptr_array_add(names, g_strdup(it->name));
	}
	g_ptr_array_add(names, NULL);
	gtk_string_list_splice(self->slot_names, 0,
	                       g_list_model_get_n_items(G_LIST_MODEL(self->slot_names)),
	                       (const char *const *)names->pdata);
}

/* The signed record ({"record": {...}, "signature", "signer"}) as its JSON,
 * and above it what service staff check at a glance: which record, which
 * device, how it was erased, the read-back verdict, the disposition, and
 * that it is signed. */
static void show_record(KlServiceView *self, GVariant *envelope)
{
	g_autofree char *json = kl_json_print(envelope, TRUE);
	g_autoptr(GVariant) rec = kl_variant_child(envelope, "record");
	g_autoptr(GVariant) dev = kl_variant_child(rec, "device");
	g_autoptr(GVariant) san = kl_variant_child(rec, "sanitization");
	g_autoptr(GVariant) ver = kl_variant_child(rec, "verification");
	gboolean signed_ = *kl_variant_str(envelope, "signature", "") != 0 &&
	                   *kl_variant_str(envelope, "signer", "") != 0;
	g_autofree char *t = g_strdup_printf(
	    "%s Sanitization record %" G_GINT64_FORMAT " of %s, %s\n%s; read back: %s\n%s\n%s",
	    signed_ ? "✔" : "✖", kl_variant_int(rec, "record_id", 0),
	    kl_variant_str(dev, "serial", "?"), kl_variant_str(rec, "time", "?"),
	    kl_variant_str(san, "method", "?"), kl_variant_str(ver, "result", "?"),
	    kl_variant_str(rec, "disposition", "?"),
	    signed_ ? "Signed by the station's sanitization-record key (signer certificate below)"
	            : "NOT SIGNED");

	gtk_label_set_text(self->record_summary, t);
	gtk_text_buffer_set_text(gtk_text_view_get_buffer(self->record_view), json, -1);
}

static void record_done(GObject *src, GAsyncResult *res, gpointer data)
{
	g_autoptr(KlServiceView) self = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(src), res, &error);
	g_autoptr(GVariant) rec = kl_variant_child(r, "record");

	if (!rec) {
		g_autofree char *t = g_strdup_printf("✖ No sanitization record: %s",
		                                     error ? error->message : "empty");

		gtk_label_set_text(self->result_label, t);
		return;
	}
	show_record(self, rec);
}

static void job_done(GObject *src, GAsyncResult *res, gpointer data)
{
	g_autoptr(KlServiceView) self = data;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(src), res, NULL);
	g_autoptr(GVariant) result = kl_variant_child(r, "result");
	GVariantBuilder b;

	if (!result || !kl_variant_bool(result, "ok", FALSE) || !self->job_serial)
		return;
	g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add(&b, "{sv}", "serial", g_variant_new_string(self->job_serial));
	if (kl_variant_int(result, "record_id", 0) > 0)
		g_variant_builder_add(&b, "{sv}", "id",
		                      g_variant_new_int64(kl_variant_int(result, "record_id", 0)));
	kl_api_call(KL_API(src), "device.record", g_variant_builder_end(&b), NULL, record_done,
	            g_object_ref(self));
}

static void on_event(KlStationClient *client, const char *type, GVariant *params, gpointer data)
{
	KlServiceView *self = data;
	g_autofree char *t = NULL;

	if (self->job <= 0 || kl_variant_int(params, "job", 0) != self->job)
		return;
	if (g_str_has_prefix(type, "step."))
		t = g_strdup_printf("▶ %s: %s %s", self->job_serial,
		                    kl_variant_str(params, "step", ""), type[5] == 's' ? "…" : "✔");
	else if (g_str_equal(type, "job.finished")) {
		gboolean ok = g_str_equal(kl_variant_str(params, "result", ""), "passed");

		t = ok ? g_strdup_printf(
		             "✔ %s decommissioned: certificates revoked, TPM erased and "
		             "checked, record signed",
		             self->job_serial)
		       : g_strdup_printf("✖ %s: %s: %s (at %s)", self->job_serial,
		                         kl_variant_str(params, "result", "failed"),
		                         kl_variant_str(params, "reason", "?"),
		                         kl_variant_str(params, "failed_step", "?"));
		if (*kl_variant_str(params, "message", "")) {
			char *m = g_strconcat(t, "\n", kl_variant_str(params, "message", ""), NULL);

			g_free(t);
			t = m;
		}
		if (ok)
			kl_api_call(KL_API(client), "job.get",
			            g_variant_new_parsed("{'job': <%x>}", self->job), NULL,
			            job_done, g_object_ref(self));
		self->job = 0;
	}
	if (t)
		gtk_label_set_text(self->dec_progress, t);
}

static void on_decommission_clicked(KlServiceView *self)
{
	const char *serial = gtk_editable_get_text(GTK_EDITABLE(self->dec_serial));
	gboolean repurpose = gtk_check_button_get_active(self->repurpose_check);
	g_autofree char *q = NULL;

	if (!*serial || !slot_name(self)) {
		gtk_label_set_text(self->result_label,
		                   "✖ Choose the slot and type the serial first.");
		return;
	}
	q = g_strdup_printf(
	    "%s %s on %s? The device proves its identity, then every certificate is revoked "
	    "(cessationOfOperation), its TPM is cryptographically erased and checked, and a signed "
	    "sanitization record is kept. %s",
	    repurpose ? "Repurpose" : "Decommission", serial, slot_name(self),
	    repurpose ? "It may be provisioned again." : "Its EK is deny-listed for good.");
	gtk_label_set_text(self->dec_question, q);
	gtk_revealer_set_reveal_child(self->dec_confirm, TRUE);
	gtk_widget_grab_focus(self->dec_go);
}

static void on_dec_cancel(KlServiceView *self)
{
	gtk_revealer_set_reveal_child(self->dec_confirm, FALSE);
	gtk_widget_grab_focus(GTK_WIDGET(self->dec_serial));
}

static void dec_started(GObject *src, GAsyncResult *res, gpointer data)
{
	g_autoptr(KlServiceView) self = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(src), res, &error);
	g_autofree char *t = NULL;

	if (!r) {
		t = g_strdup_printf("✖ Not started: %s", error->message);
		gtk_label_set_text(self->dec_progress, t);
		return;
	}
	self->job = kl_variant_int(r, "job", 0);
	t = g_strdup_printf("▶ job %" G_GINT64_FORMAT " on %s: waiting to start", self->job,
	                    kl_variant_str(r, "slot", "?"));
	gtk_label_set_text(self->dec_progress, t);
}

static void on_dec_go(KlServiceView *self)
{
	GVariantBuilder b;

	gtk_revealer_set_reveal_child(self->dec_confirm, FALSE);
	/* The focused button is going away: back to the serial, not to whatever
	 * GTK picks next (the lost device's field). */
	gtk_widget_grab_focus(GTK_WIDGET(self->dec_serial));
	g_free(self->job_serial);
	self->job_serial = g_strdup(gtk_editable_get_text(GTK_EDITABLE(self->dec_serial)));
	g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add(&b, "{sv}", "slot", g_variant_new_string(slot_name(self)));
	g_variant_builder_add(&b, "{sv}", "serial", g_variant_new_string(self->job_serial));
	g_variant_builder_add(
	    &b, "{sv}", "repurpose",
	    g_variant_new_boolean(gtk_check_button_get_active(self->repurpose_check)));
	gtk_text_buffer_set_text(gtk_text_view_get_buffer(self->record_view), "", -1);
	gtk_label_set_text(self->record_summary, "");
	kl_api_call(KL_API(self->client), "device.decommission", g_variant_builder_end(&b), NULL,
	            dec_started, g_object_ref(self));
}

static void on_lost_clicked(KlServiceView *self)
{
	const char *serial = gtk_editable_get_text(GTK_EDITABLE(self->lost_serial));
	g_autofree char *q = NULL;

	if (!*serial) {
		gtk_label_set_text(self->result_label, "✖ Type the lost device's serial first.");
		return;
	}
	q = g_strdup_printf("Report %s lost? Its certificates are revoked, it is marked lost and "
	                    "its EK is deny-listed: it can never be provisioned again.",
	                    serial);
	gtk_label_set_text(self->lost_question, q);
	gtk_revealer_set_reveal_child(self->lost_confirm, TRUE);
	gtk_widget_grab_focus(self->lost_go);
}

static void on_lost_cancel(KlServiceView *self)
{
	gtk_revealer_set_reveal_child(self->lost_confirm, FALSE);
	gtk_widget_grab_focus(GTK_WIDGET(self->lost_serial));
}

static void lost_done(GObject *src, GAsyncResult *res, gpointer data)
{
	g_autoptr(KlServiceView) self = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(src), res, &error);
	g_autofree char *t = NULL;

	if (!r)
		t = g_strdup_printf("✖ Not reported: %s", error->message);
	else
		t = g_strdup_printf("✔ Reported lost: %" G_GINT64_FORMAT
		                    " certificate(s) revoked, CRL %" G_GINT64_FORMAT " published",
		                    kl_variant_int(r, "revoked", 0),
		                    kl_variant_int(r, "crl_number", 0));
	gtk_label_set_text(self->result_label, t);
}

static void on_lost_go(KlServiceView *self)
{
	gtk_revealer_set_reveal_child(self->lost_confirm, FALSE);
	gtk_widget_grab_focus(GTK_WIDGET(self->lost_serial));
	kl_api_call(KL_API(self->client), "device.lost",
	            g_variant_new_parsed("{'serial': <%s>}",
	                                 gtk_editable_get_text(GTK_EDITABLE(self->lost_serial))),
	            NULL, lost_done, g_object_ref(self));
}

static void on_ready(KlStationClient *client, gpointer data)
{
	KlServiceView *self = data;

	gtk_widget_set_visible(self->decommission_box,
	                       kl_station_client_can(client, "device.decommission"));
	gtk_widget_set_visible(self->lost_box, kl_station_client_can(client, "device.lost"));
}

void kl_service_view_setup(KlServiceView *self, KlStationClient *client, KlLineModel *line)
{
	self->client = g_object_ref(client);
	self->line = g_object_ref(line);
	g_signal_connect_object(line, "items-changed", G_CALLBACK(on_slots_changed), self, 0);
	g_signal_connect_object(client, "ready", G_CALLBACK(on_ready), self, 0);
	g_signal_connect_object(client, "event", G_CALLBACK(on_event), self, 0);
}

/* Whether w or a widget inside it (an entry's text) has the focus. */
static gboolean focused(GtkWidget *w)
{
	GtkRoot *root = gtk_widget_get_root(w);
	GtkWidget *focus = root ? gtk_root_get_focus(root) : NULL;

	return focus && (focus == w || gtk_widget_is_ancestor(focus, w));
}

GVariant *kl_service_view_dump(KlServiceView *self)
{
	GVariantBuilder b;
	GtkTextBuffer *buf = gtk_text_view_get_buffer(self->record_view);
	GtkTextIter start, end;
	g_autofree char *record = NULL;

	gtk_text_buffer_get_bounds(buf, &start, &end);
	record = gtk_text_buffer_get_text(buf, &start, &end, FALSE);
	g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add(&b, "{sv}", "slot",
	                      g_variant_new_string(slot_name(self) ? slot_name(self) : ""));
	g_variant_builder_add(
	    &b, "{sv}", "serial",
	    g_variant_new_string(gtk_editable_get_text(GTK_EDITABLE(self->dec_serial))));
	g_variant_builder_add(&b, "{sv}", "serial_focused",
	                      g_variant_new_boolean(focused(GTK_WIDGET(self->dec_serial))));
	g_variant_builder_add(
	    &b, "{sv}", "confirm",
	    g_variant_new_boolean(gtk_revealer_get_reveal_child(self->dec_confirm)));
#define LABEL(key, w) \
	g_variant_builder_add(&b, "{sv}", key, g_variant_new_string(gtk_label_get_text(w)))
	LABEL("question", self->dec_question);
	LABEL("progress", self->dec_progress);
	LABEL("result", self->result_label);
	LABEL("record_summary", self->record_summary);
#undef LABEL
	g_variant_builder_add(&b, "{sv}", "record", g_variant_new_string(record));
	g_variant_builder_add(
	    &b, "{sv}", "decommission_visible",
	    g_variant_new_boolean(gtk_widget_get_visible(self->decommission_box)));
	return g_variant_builder_end(&b);
}

static void kl_service_view_dispose(GObject *object)
{
	KlServiceView *self = KL_SERVICE_VIEW(object);

	g_clear_object(&self->client);
	g_clear_object(&self->line);
	g_clear_pointer(&self->job_serial, g_free);
	gtk_widget_dispose_template(GTK_WIDGET(self), KL_TYPE_SERVICE_VIEW);
	g_clear_object(&self->slot_names);
	G_OBJECT_CLASS(kl_service_view_parent_class)->dispose(object);
}

static void kl_service_view_class_init(KlServiceViewClass *klass)
{
	GtkWidgetClass *wc = GTK_WIDGET_CLASS(klass);

	G_OBJECT_CLASS(klass)->dispose = kl_service_view_dispose;
	gtk_widget_class_set_template_from_resource(wc, "/org/keyline/ui/kl-service-view.ui");
	gtk_widget_class_bind_template_child(wc, KlServiceView, slot_dropdown);
	gtk_widget_class_bind_template_child(wc, KlServiceView, dec_serial);
	gtk_widget_class_bind_template_child(wc, KlServiceView, lost_serial);
	gtk_widget_class_bind_template_child(wc, KlServiceView, repurpose_check);
	gtk_widget_class_bind_template_child(wc, KlServiceView, dec_confirm);
	gtk_widget_class_bind_template_child(wc, KlServiceView, lost_confirm);
	gtk_widget_class_bind_template_child(wc, KlServiceView, dec_question);
	gtk_widget_class_bind_template_child(wc, KlServiceView, dec_progress);
	gtk_widget_class_bind_template_child(wc, KlServiceView, lost_question);
	gtk_widget_class_bind_template_child(wc, KlServiceView, result_label);
	gtk_widget_class_bind_template_child(wc, KlServiceView, record_summary);
	gtk_widget_class_bind_template_child(wc, KlServiceView, decommission_box);
	gtk_widget_class_bind_template_child(wc, KlServiceView, lost_box);
	gtk_widget_class_bind_template_child(wc, KlServiceView, dec_go);
	gtk_widget_class_bind_template_child(wc, KlServiceView, lost_go);
	gtk_widget_class_bind_template_child(wc, KlServiceView, record_view);
	gtk_widget_class_bind_template_callback(wc, on_decommission_clicked);
	gtk_widget_class_bind_template_callback(wc, on_dec_cancel);
	gtk_widget_class_bind_template_callback(wc, on_dec_go);
	gtk_widget_class_bind_template_callback(wc, on_lost_clicked);
	gtk_widget_class_bind_template_callback(wc, on_lost_cancel);
	gtk_widget_class_bind_template_callback(wc, on_lost_go);
}

static void kl_service_view_init(KlServiceView *self)
{
	gtk_widget_init_template(GTK_WIDGET(self));
	self->slot_names = gtk_string_list_new(NULL);
	gtk_drop_down_set_model(self->slot_dropdown, G_LIST_MODEL(self->slot_names));
}
