/* The CA view; see kl-ca-view.h. */
#include "kl-ca-view.h"

#include <time.h>

#include "kl-json.h"

struct _KlCaView {
	GtkBox parent_instance;

	KlStationClient *client;

	GtkLabel *status_label, *revoke_question, *action_result, *verify_label;
	GtkEntry *revoke_serial;
	GtkDropDown *reason_dropdown;
	GtkRevealer *revoke_confirm;
	GtkWidget *revoke_box, *revoke_go, *publish_button, *audit_box;
	GtkListBox *audit_list;
};

G_DEFINE_FINAL_TYPE(KlCaView, kl_ca_view, GTK_TYPE_BOX)

/* "2027-03-01 (in 412 days)", or a warning when it is close or past. */
static void expiry(gint64 not_after, GString *s)
{
	time_t t = (time_t)not_after;
	gint64 days = (not_after - g_get_real_time() / G_USEC_PER_SEC) / 86400;
	struct tm tm;
	char buf[32];

	if (not_after <= 0) {
		g_string_append(s, "unknown");
		return;
	}
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%d", &tm);
	if (days < 0)
		g_string_append_printf(s, "%s  ✖ EXPIRED", buf);
	else if (days < 30)
		g_string_append_printf(s, "%s  ⚠ in %" G_GINT64_FORMAT " days: renew it", buf,
		                       days);
	else
		g_string_append_printf(s, "%s  (in %" G_GINT64_FORMAT " days)", buf, days);
}

static void cert_line(GString *s, GVariant *r, const char *key, const char *title)
{
	g_autoptr(GVariant) c = kl_variant_child(r, key);

	g_string_append_printf(s, "%s\n", title);
	if (!c) {
		g_string_append(s, "  none\n");
		return;
	}
	g_string_append_printf(s, "  %s\n  serial %s\n  expires ",
	                       kl_variant_str(c, "subject", "?"), kl_variant_str(c, "serial", "?"));
	expiry(kl_variant_int(c, "not_after", 0), s);
	g_string_append(s, "\n");
}

static void status_done(GObject *src, GAsyncResult *res, gpointer data)
{
	g_autoptr(KlCaView) self = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(src), res, &error);
	g_autoptr(GVariant) counts = NULL;
	g_autoptr(GString) s = g_string_new(NULL);

	if (!r) {
		g_autofree char *t = g_strdup_printf("✖ %s", error->message);

		gtk_label_set_text(self->status_label, t);
		return;
	}
	g_string_append_printf(s, "HSM: %s\nKey: %s\n\n",
	                       kl_variant_bool(r, "hsm_logged_in", FALSE)
	                           ? "✔ logged in"
	                           : "✖ NOT logged in: the CA cannot sign",
	                       kl_variant_str(r, "key", "?"));
	cert_line(s, r, "root", "Root CA");
	cert_line(s, r, "issuing", "Issuing CA");
	cert_line(s, r, "records", "Sanitization-record signer");
	counts = kl_variant_child(r, "certificates");
	if (counts)
		g_string_append_printf(
		    s,
		    "\nCertificates: %" G_GINT64_FORMAT " issued, %" G_GINT64_FORMAT
		    " revoked, %" G_GINT64_FORMAT " pending, %" G_GINT64_FORMAT " rejected\n",
		    kl_variant_int(counts, "issued", 0), kl_variant_int(counts, "revoked", 0),
		    kl_variant_int(counts, "pending", 0), kl_variant_int(counts, "rejected", 0));
	g_string_append_printf(s, "CRL number %" G_GINT64_FORMAT ": %s\n",
	                       kl_variant_int(r, "crl_number", 0), kl_variant_str(r, "crl", "?"));
	gtk_label_set_text(self->status_label, s->str);
}

static void audit_done(GObject *src, GAsyncResult *res, gpointer data)
{
	g_autoptr(KlCaView) self = data;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(src), res, NULL);
	g_autoptr(GVariant) list = kl_variant_child(r, "entries");
	GtkWidget *row;
	GVariantIter it;
	GVariant *e;

	while ((row = gtk_widget_get_first_child(GTK_WIDGET(self->audit_list))))
		gtk_list_box_remove(self->audit_list, row);
	if (!list)
		return;
	g_variant_iter_init(&it, list);
	while (g_variant_iter_next(&it, "v", &e)) {
		g_autoptr(GVariant) detail = kl_variant_child(e, "detail");
		g_autofree char *d = detail ? kl_json_print(detail, FALSE)
		                            : g_strdup(kl_variant_str(e, "detail", ""));
		time_t t = (time_t)(kl_variant_int(e, "time_ms", 0) / 1000);
		struct tm tm;
		char when[32];
		g_autofree char *text = NULL;
		GtkWidget *label;

		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%m-%d %H:%M:%S", &tm);
		text = g_strdup_printf(
		    "#%" G_GINT64_FORMAT "  %s  %s  %s\n%s", kl_variant_int(e, "seq", 0), when,
		    kl_variant_str(e, "action", "?"), kl_variant_str(e, "actor", "?"), d);
		label = gtk_label_new(text);
		gtk_label_set_xalign(GTK_LABEL(label), 0);
		gtk_label_set_wrap(GTK_LABEL(label), TRUE);
		gtk_label_set_wrap_mode(GTK_LABEL(label), PANGO_WRAP_WORD_CHAR);
		gtk_widget_add_css_class(label, "detail");
		gtk_list_box_append(self->audit_list, label);
		g_variant_unref(e);
	}
}

static void verify_done(GObject *src, GAsyncResult *res, gpointer data)
{
	g_autoptr(KlCaView) self = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(src), res, &error);
	g_autofree char *t = NULL;

	if (!r)
		t = g_strdup_printf("✖ Cannot verify: %s", error->message);
	else if (kl_variant_bool(r, "ok", FALSE))
		t = g_strdup_printf("✔ Audit chain intact: %" G_GINT64_FORMAT " entries verified",
		                    kl_variant_int(r, "entries", 0));
	else
		t = g_strdup_printf("✖ AUDIT CHAIN BROKEN at entry %" G_GINT64_FORMAT ": %s",
		                    kl_variant_int(r, "first_bad", 0),
		                    kl_variant_str(r, "problem", "?"));
	gtk_label_set_text(self->verify_label, t);
	gtk_widget_remove_css_class(GTK_WIDGET(self->verify_label), "ok-text");
	gtk_widget_remove_css_class(GTK_WIDGET(self->verify_label), "bad-text");
	gtk_widget_add_css_class(GTK_WIDGET(self->verify_label),
	                         r && kl_variant_bool(r, "ok", FALSE) ? "ok-text" : "bad-text");
}

static void refresh(KlCaView *self)
{
	KlApi *api = KL_API(self->client);

	kl_api_call(api, "ca.status", NULL, NULL, status_done, g_object_ref(self));
	if (kl_station_client_can(self->client, "audit.list")) {
		kl_api_call(api, "audit.list", g_variant_new_parsed("{'limit': <int64 100>}"), NULL,
		            audit_done, g_object_ref(self));
		kl_api_call(api, "audit.verify", NULL, NULL, verify_done, g_object_ref(self));
	}
}

static void on_refresh(KlCaView *self)
{
	refresh(self);
}

static void on_verify(KlCaView *self)
{
	gtk_label_set_text(self->verify_label, "Verifying…");
	kl_api_call(KL_API(self->client), "audit.verify", NULL, NULL, verify_done,
	            g_object_ref(self));
}

static const char *reason(KlCaView *self)
{
	GtkStringList *l = GTK_STRING_LIST(gtk_drop_down_get_model(self->reason_dropdown));
	guint i = gtk_drop_down_get_selected(self->reason_dropdown);

	return i == GTK_INVALID_LIST_POSITION ? "unspecified" : gtk_string_list_get_string(l, i);
}

static void on_revoke_clicked(KlCaView *self)
{
	const char *serial = gtk_editable_get_text(GTK_EDITABLE(self->revoke_serial));
	g_autofree char *q = NULL;

	if (!*serial) {
		gtk_label_set_text(self->action_result, "✖ Type the device's serial first.");
		return;
	}
	q = g_strdup_printf("Revoke every certificate of %s (%s) and publish a new CRL? This "
	                    "cannot be undone.",
	                    serial, reason(self));
	gtk_label_set_text(self->revoke_question, q);
	gtk_revealer_set_reveal_child(self->revoke_confirm, TRUE);
	gtk_widget_grab_focus(self->revoke_go);
}

static void on_revoke_cancel(KlCaView *self)
{
	gtk_revealer_set_reveal_child(self->revoke_confirm, FALSE);
	gtk_widget_grab_focus(GTK_WIDGET(self->revoke_serial));
}

static void revoke_done(GObject *src, GAsyncResult *res, gpointer data)
{
	g_autoptr(KlCaView) self = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(src), res, &error);
	g_autofree char *t = NULL;

	if (!r)
		t = g_strdup_printf("✖ Not revoked: %s", error->message);
	else
		t = g_strdup_printf(
		    "✔ %" G_GINT64_FORMAT " certificate(s) revoked; CRL %" G_GINT64_FORMAT
		    " published%s%s",
		    kl_variant_int(r, "revoked", 0), kl_variant_int(r, "crl_number", 0),
		    kl_variant_has(r, "crl_error") ? ", but: " : "",
		    kl_variant_str(r, "crl_error", ""));
	gtk_label_set_text(self->action_result, t);
	refresh(self);
}

static void on_revoke_go(KlCaView *self)
{
	GVariantBuilder b;

	gtk_revealer_set_reveal_child(self->revoke_confirm, FALSE);
	/* The focused button is going away: back to the serial. */
	gtk_widget_grab_focus(GTK_WIDGET(self->revoke_serial));
	g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add(
	    &b, "{sv}", "serial",
	    g_variant_new_string(gtk_editable_get_text(GTK_EDITABLE(self->revoke_serial))));
	g_variant_builder_add(&b, "{sv}", "reason", g_variant_new_string(reason(self)));
	gtk_label_set_text(self->action_result, "Revoking…");
	kl_api_call(KL_API(self->client), "device.revoke", g_variant_builder_end(&b), NULL,
	            revoke_done, g_object_ref(self));
}

static void publish_done(GObject *src, GAsyncResult *res, gpointer data)
{
	g_autoptr(KlCaView) self = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(src), res, &error);
	g_autofree char *t = NULL;

	if (!r)
		t = g_strdup_printf("✖ CRL not published: %s", error->message);
	else
		t = g_strdup_printf("✔ CRL %" G_GINT64_FORMAT " published: %s",
		                    kl_variant_int(r, "crl_number", 0),
		                    kl_variant_str(r, "path", "?"));
	gtk_label_set_text(self->action_result, t);
	refresh(self);
}

static void on_publish(KlCaView *self)
{
	gtk_label_set_text(self->action_result, "Publishing…");
	kl_api_call(KL_API(self->client), "crl.publish", NULL, NULL, publish_done,
	            g_object_ref(self));
}

static void on_ready(KlStationClient *client, gpointer data)
{
	KlCaView *self = data;

	gtk_widget_set_visible(self->revoke_box, kl_station_client_can(client, "device.revoke"));
	gtk_widget_set_visible(self->publish_button, kl_station_client_can(client, "crl.publish"));
	gtk_widget_set_visible(self->audit_box, kl_station_client_can(client, "audit.list"));
	refresh(self);
}

static void on_event(KlStationClient *client, const char *type, GVariant *params, gpointer data)
{
	if (g_str_equal(type, "crl.published") && gtk_widget_get_mapped(data))
		refresh(data);
}

void kl_ca_view_setup(KlCaView *self, KlStationClient *client)
{
	self->client = g_object_ref(client);
	g_signal_connect_object(client, "ready", G_CALLBACK(on_ready), self, 0);
	g_signal_connect_object(client, "event", G_CALLBACK(on_event), self, 0);
}

GVariant *kl_ca_view_dump(KlCaView *self)
{
	GVariantBuilder b;

	g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add(&b, "{sv}", "status",
	                      g_variant_new_string(gtk_label_get_text(self->status_label)));
	g_variant_builder_add(&b, "{sv}", "verify",
	                      g_variant_new_string(gtk_label_get_text(self->verify_label)));
	g_variant_builder_add(&b, "{sv}", "revoke_visible",
	                      g_variant_new_boolean(gtk_widget_get_visible(self->revoke_box)));
	g_variant_builder_add(&b, "{sv}", "action_result",
	                      g_variant_new_string(gtk_label_get_text(self->action_result)));
	g_variant_builder_add(&b, "{sv}", "publish_visible",
	                      g_variant_new_boolean(gtk_widget_get_visible(self->publish_button)));
	g_variant_builder_add(&b, "{sv}", "audit_visible",
	                      g_variant_new_boolean(gtk_widget_get_visible(self->audit_box)));
	return g_variant_builder_end(&b);
}

static void kl_ca_view_dispose(GObject *object)
{
	KlCaView *self = KL_CA_VIEW(object);

	g_clear_object(&self->client);
	gtk_widget_dispose_template(GTK_WIDGET(self), KL_TYPE_CA_VIEW);
	G_OBJECT_CLASS(kl_ca_view_parent_class)->dispose(object);
}

static void kl_ca_view_class_init(KlCaViewClass *klass)
{
	GtkWidgetClass *wc = GTK_WIDGET_CLASS(klass);

	G_OBJECT_CLASS(klass)->dispose = kl_ca_view_dispose;
	gtk_widget_class_set_template_from_resource(wc, "/org/keyline/ui/kl-ca-view.ui");
	gtk_widget_class_bind_template_child(wc, KlCaView, status_label);
	gtk_widget_class_bind_template_child(wc, KlCaView, revoke_question);
	gtk_widget_class_bind_template_child(wc, KlCaView, action_result);
	gtk_widget_class_bind_template_child(wc, KlCaView, verify_label);
	gtk_widget_class_bind_template_child(wc, KlCaView, revoke_serial);
	gtk_widget_class_bind_template_child(wc, KlCaView, reason_dropdown);
	gtk_widget_class_bind_template_child(wc, KlCaView, revoke_confirm);
	gtk_widget_class_bind_template_child(wc, KlCaView, revoke_box);
	gtk_widget_class_bind_template_child(wc, KlCaView, revoke_go);
	gtk_widget_class_bind_template_child(wc, KlCaView, publish_button);
	gtk_widget_class_bind_template_child(wc, KlCaView, audit_box);
	gtk_widget_class_bind_template_child(wc, KlCaView, audit_list);
	gtk_widget_class_bind_template_callback(wc, on_refresh);
	gtk_widget_class_bind_template_callback(wc, on_verify);
	gtk_widget_class_bind_template_callback(wc, on_revoke_clicked);
	gtk_widget_class_bind_template_callback(wc, on_revoke_cancel);
	gtk_widget_class_bind_template_callback(wc, on_revoke_go);
	gtk_widget_class_bind_template_callback(wc, on_publish);
}

static void kl_ca_view_init(KlCaView *self)
{
	gtk_widget_init_template(GTK_WIDGET(self));
}
