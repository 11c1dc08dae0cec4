/* The window; see kl-ui-window.h. */
#include "kl-ui-window.h"

#include "kl-ca-view.h"
#include "kl-devices-view.h"
#include "kl-line-view.h"
#include "kl-service-view.h"
#include "kl-ui-access.h"

struct _KlUiWindow {
	GtkApplicationWindow parent_instance;

	KlStationClient *client;
	KlLineModel *line;
	char *demo_status;
	gboolean demo_error;
	gboolean status_seen;

	GtkStack *stack;
	GtkStackPage *line_page, *devices_page, *ca_page, *service_page;
	GtkRevealer *banner;
	GtkWidget *banner_box;
	GtkImage *banner_icon;
	GtkLabel *banner_label;
	GtkLabel *station_label;
	KlLineView *line_view;
	KlDevicesView *devices_view;
	KlCaView *ca_view;
	KlServiceView *service_view;
};

G_DEFINE_FINAL_TYPE(KlUiWindow, kl_ui_window, GTK_TYPE_APPLICATION_WINDOW)

static void set_banner(KlUiWindow *self, const char *kind, const char *icon, const char *text)
{
	static const char *const kinds[] = { "down", "warn", "info" };

	for (size_t i = 0; i < G_N_ELEMENTS(kinds); i++)
		gtk_widget_remove_css_class(self->banner_box, kinds[i]);
	if (!text) {
		gtk_revealer_set_reveal_child(self->banner, FALSE);
		gtk_label_set_text(self->banner_label, "");
		return;
	}
	gtk_widget_add_css_class(self->banner_box, kind);
	gtk_image_set_from_icon_name(self->banner_icon, icon);
	gtk_label_set_text(self->banner_label, text);
	gtk_revealer_set_reveal_child(self->banner, TRUE);
}

/* The most important thing the operator must know, or nothing. */
static void update_banner(KlUiWindow *self)
{
	KlStationState st = kl_station_client_get_state(self->client);
	GString *links = NULL;
	guint n = g_list_model_get_n_items(G_LIST_MODEL(self->line));

	if (self->demo_status && (st == KL_STATION_STATE_IDLE || self->demo_error)) {
		set_banner(self, self->demo_error ? "down" : "info",
		           self->demo_error ? "dialog-error-symbolic" : "emblem-system-symbolic",
		           self->demo_status);
		return;
	}
	if (st != KL_STATION_STATE_CONNECTED) {
		set_banner(self, "down", "network-offline-symbolic",
		           kl_station_client_get_message(self->client));
		gtk_label_set_text(self->station_label, "⚠ Station down");
		return;
	}
	gtk_label_set_text(self->station_label, kl_station_client_get_station_id(self->client)
	                                            ? kl_station_client_get_station_id(self->client)
	                                            : "station");
	if (self->status_seen && !kl_station_client_get_hsm_logged_in(self->client)) {
		set_banner(self, "down", "dialog-password-symbolic",
		           "The station's HSM is not logged in: the CA cannot sign, so "
		           "provisioning and revocation will fail. Ask the security officer.");
		return;
	}
	for (guint i = 0; i < n; i++) {
		g_autoptr(KlSlotItem) it = g_list_model_get_item(G_LIST_MODEL(self->line), i);

		if (it->link_up != 0)
			continue;
		if (!links)
			links = g_string_new("DUT link down on ");
		else
			g_string_append(links, ", ");
		g_string_append(links, it->name);
	}
	if (links) {
		g_string_append(links, ": check the DUT's cable and power.");
		set_banner(self, "warn", "network-wired-disconnected-symbolic", links->str);
		g_string_free(links, TRUE);
		return;
	}
	set_banner(self, NULL, NULL, NULL);
}

static void on_client_notify(GObject *obj, GParamSpec *pspec, gpointer data)
{
	update_banner(data);
}

static void on_status(KlStationClient *client, GVariant *status, gpointer data)
{
	KlUiWindow *self = data;

	self->status_seen = TRUE;
	update_banner(self);
}

static gboolean can(gpointer ctx, const char *method)
{
	return kl_station_client_can(ctx, method);
}

static void on_ready(KlStationClient *client, gpointer data)
{
	KlUiWindow *self = data;
	KlUiViews v = kl_ui_views_allowed(can, client);

	gtk_stack_page_set_visible(self->devices_page, (v & KL_UI_VIEW_DEVICES) != 0);
	gtk_stack_page_set_visible(self->ca_page, (v & KL_UI_VIEW_CA) != 0);
	gtk_stack_page_set_visible(self->service_page, (v & KL_UI_VIEW_SERVICE) != 0);
	update_banner(self);
}

static void on_slot_changed(KlUiWindow *self)
{
	update_banner(self);
}

static void on_line_items_changed(GListModel *list, guint pos, guint removed, guint added,
                                  gpointer data)
{
	KlUiWindow *self = data;

	for (guint i = pos; i < pos + added; i++) {
		g_autoptr(KlSlotItem) it = g_list_model_get_item(list, i);

		g_signal_handlers_disconnect_by_func(it, on_slot_changed, self);
		g_signal_connect_object(it, "changed", G_CALLBACK(on_slot_changed), self,
		                        G_CONNECT_SWAPPED);
	}
	update_banner(self);
}

static void view_activated(GSimpleAction *action, GVariant *param, gpointer data)
{
	KlUiWindow *self = data;
	const char *name = g_variant_get_string(param, NULL);
	GtkWidget *child = gtk_stack_get_child_by_name(self->stack, name);

	if (child && gtk_stack_page_get_visible(gtk_stack_get_page(self->stack, child))) {
		gtk_stack_set_visible_child(self->stack, child);
		if (g_str_equal(name, "line"))
			kl_line_view_focus_serial(self->line_view);
	}
}

KlUiWindow *kl_ui_window_new(GtkApplication *app, KlStationClient *client, KlLineModel *line)
{
	KlUiWindow *self = g_object_new(KL_TYPE_UI_WINDOW, "application", app, NULL);

	self->client = g_object_ref(client);
	self->line = g_object_ref(line);
	g_signal_connect_object(client, "notify::state", G_CALLBACK(on_client_notify), self, 0);
	g_signal_connect_object(client, "notify::message", G_CALLBACK(on_client_notify), self, 0);
	g_signal_connect_object(client, "notify::hsm-logged-in", G_CALLBACK(on_client_notify), self,
	                        0);
	g_signal_connect_object(client, "status", G_CALLBACK(on_status), self, 0);
	g_signal_connect_object(client, "ready", G_CALLBACK(on_ready), self, 0);
	g_signal_connect_object(line, "items-changed", G_CALLBACK(on_line_items_changed), self, 0);
	kl_line_view_setup(self->line_view, client, line);
	kl_devices_view_setup(self->devices_view, client);
	kl_ca_view_setup(self->ca_view, client);
	kl_service_view_setup(self->service_view, client, line);
	/* Until rpc.methods says otherwise, only the line is offered. */
	gtk_stack_page_set_visible(self->devices_page, FALSE);
	gtk_stack_page_set_visible(self->ca_page, FALSE);
	gtk_stack_page_set_visible(self->service_page, FALSE);
	update_banner(self);
	return self;
}

void kl_ui_window_set_demo_status(KlUiWindow *self, const char *text, gboolean error)
{
	g_free(self->demo_status);
	self->demo_status = g_strdup(text);
	self->demo_error = error;
	update_banner(self);
}

void kl_ui_window_set_demo_serials(KlUiWindow *self, const char *const *serials)
{
	kl_line_view_set_demo_serials(self->line_view, serials);
}

GVariant *kl_ui_window_dump(KlUiWindow *self)
{
	GVariantBuilder b, views;
	static const char *const names[] = { "line", "devices", "ca", "service" };

	g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add(
	    &b, "{sv}", "connection",
	    g_variant_new_string(g_enum_to_string(KL_TYPE_STATION_STATE,
	                                          kl_station_client_get_state(self->client))));
	g_variant_builder_add(&b, "{sv}", "banner",
	                      g_variant_new_string(gtk_revealer_get_reveal_child(self->banner)
	                                               ? gtk_label_get_text(self->banner_label)
	                                               : ""));
	g_variant_builder_add(&b, "{sv}", "view",
	                      g_variant_new_string(gtk_stack_get_visible_child_name(self->stack)));
	g_variant_builder_init(&views, G_VARIANT_TYPE("av"));
	for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
		GtkWidget *child = gtk_stack_get_child_by_name(self->stack, names[i]);

		if (gtk_stack_page_get_visible(gtk_stack_get_page(self->stack, child)))
			g_variant_builder_add(&views, "v", g_variant_new_string(names[i]));
	}
	g_variant_builder_add(&b, "{sv}", "views", g_variant_builder_end(&views));
	g_variant_builder_add(&b, "{sv}", "line", kl_line_view_dump(self->line_view));
	g_variant_builder_add(&b, "{sv}", "devices", kl_devices_view_dump(self->devices_view));
	g_variant_builder_add(&b, "{sv}", "ca", kl_ca_view_dump(self->ca_view));
	g_variant_builder_add(&b, "{sv}", "service", kl_service_view_dump(self->service_view));
	return g_variant_builder_end(&b);
}

static void kl_ui_window_dispose(GObject *object)
{
	KlUiWindow *self = KL_UI_WINDOW(object);

	g_clear_object(&self->client);
	g_clear_object(&self->line);
	g_clear_pointer(&self->demo_status, g_free);
	gtk_widget_dispose_template(GTK_WIDGET(self), KL_TYPE_UI_WINDOW);
	G_OBJECT_CLASS(kl_ui_window_parent_class)->dispose(object);
}

static void kl_ui_window_class_init(KlUiWindowClass *klass)
{
	GtkWidgetClass *wc = GTK_WIDGET_CLASS(klass);

	G_OBJECT_CLASS(klass)->dispose = kl_ui_window_dispose;
	g_type_ensure(KL_TYPE_LINE_VIEW);
	g_type_ensure(KL_TYPE_DEVICES_VIEW);
	g_type_ensure(KL_TYPE_CA_VIEW);
	g_type_ensure(KL_TYPE_SERVICE_VIEW);
	gtk_widget_class_set_template_from_resource(wc, "/org/keyline/ui/kl-ui-window.ui");
	gtk_widget_class_bind_template_child(wc, KlUiWindow, stack);
	gtk_widget_class_bind_template_child(wc, KlUiWindow, line_page);
	gtk_widget_class_bind_template_child(wc, KlUiWindow, devices_page);
	gtk_widget_class_bind_template_child(wc, KlUiWindow, ca_page);
	gtk_widget_class_bind_template_child(wc, KlUiWindow, service_page);
	gtk_widget_class_bind_template_child(wc, KlUiWindow, banner);
	gtk_widget_class_bind_template_child(wc, KlUiWindow, banner_box);
	gtk_widget_class_bind_template_child(wc, KlUiWindow, banner_icon);
	gtk_widget_class_bind_template_child(wc, KlUiWindow, banner_label);
	gtk_widget_class_bind_template_child(wc, KlUiWindow, station_label);
	gtk_widget_class_bind_template_child(wc, KlUiWindow, line_view);
	gtk_widget_class_bind_template_child(wc, KlUiWindow, devices_view);
	gtk_widget_class_bind_template_child(wc, KlUiWindow, ca_view);
	gtk_widget_class_bind_template_child(wc, KlUiWindow, service_view);
}

static void kl_ui_window_init(KlUiWindow *self)
{
	static const GActionEntry actions[] = {
		{ .name = "view", .activate = view_activated, .parameter_type = "s" },
	};

	gtk_widget_init_template(GTK_WIDGET(self));
	g_action_map_add_action_entries(G_ACTION_MAP(self), actions, G_N_ELEMENTS(actions), self);
}
