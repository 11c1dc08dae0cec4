/* The devices view; see kl-devices-view.h. */
#include "kl-devices-view.h"

#include <time.h>

#include "kl-devices-model.h"
#include "kl-json.h"

struct _KlDevicesView {
	GtkBox parent_instance;

	KlStationClient *client;
	KlDevicesModel *model;
	GtkSingleSelection *selection;
	GCancellable *show_cancel;
	guint reload_source;

	GtkSearchEntry *search_entry;
	GtkDropDown *sort_dropdown, *state_dropdown;
	GtkLabel *total_label, *detail_title, *detail_label;
	GtkColumnView *column_view;
};

G_DEFINE_FINAL_TYPE(KlDevicesView, kl_devices_view, GTK_TYPE_BOX)

enum { COL_SERIAL, COL_STATE, COL_TENANT, COL_CHANGED };

static void fmt_time(gint64 t, char *buf, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0) {
		g_strlcpy(buf, "—", size);
		return;
	}
	gmtime_r(&tt, &tm);
	strftime(buf, size, "%Y-%m-%d %H:%M:%SZ", &tm);
}

/* A cell shows its column of the row's item; a placeholder reads "…". */
static void cell_update(GtkLabel *label, KlDeviceItem *item)
{
	int col = GPOINTER_TO_INT(g_object_get_data(G_OBJECT(label), "kl-col"));
	char buf[64];

	if (!kl_device_item_get_loaded(item)) {
		gtk_label_set_text(label, col == COL_SERIAL ? "…" : "");
		return;
	}
	switch (col) {
	case COL_SERIAL:
		gtk_label_set_text(label, kl_device_item_get_serial(item));
		break;
	case COL_STATE:
		gtk_label_set_text(label, kl_device_item_get_state(item));
		break;
	case COL_TENANT:
		gtk_label_set_text(label, kl_device_item_get_tenant(item));
		break;
	case COL_CHANGED:
		fmt_time(kl_device_item_get_state_time(item), buf, sizeof(buf));
		gtk_label_set_text(label, buf);
		break;
	}
}

static void on_item_loaded(KlDeviceItem *item, GParamSpec *pspec, GtkLabel *label)
{
	cell_update(label, item);
}

static void cell_setup(GtkSignalListItemFactory *f, GtkListItem *li, gpointer col)
{
	GtkWidget *label = gtk_label_new(NULL);

	gtk_label_set_xalign(GTK_LABEL(label), 0);
	gtk_label_set_ellipsize(GTK_LABEL(label), PANGO_ELLIPSIZE_END);
	g_object_set_data(G_OBJECT(label), "kl-col", col);
	gtk_list_item_set_child(li, label);
}

static void cell_bind(GtkSignalListItemFactory *f, GtkListItem *li, gpointer col)
{
	GtkWidget *label = gtk_list_item_get_child(li);
	KlDeviceItem *item = gtk_list_item_get_item(li);

	cell_update(GTK_LABEL(label), item);
	g_signal_connect_object(item, "notify::loaded", G_CALLBACK(on_item_loaded), label, 0);
}

static void cell_unbind(GtkSignalListItemFactory *f, GtkListItem *li, gpointer col)
{
	GtkWidget *label = gtk_list_item_get_child(li);
	KlDeviceItem *item = gtk_list_item_get_item(li);

	if (item)
		g_signal_handlers_disconnect_by_func(item, on_item_loaded, label);
}

static void add_column(KlDevicesView *self, const char *title, int col, gboolean expand)
{
	GtkListItemFactory *f = gtk_signal_list_item_factory_new();
	GtkColumnViewColumn *c;

	g_signal_connect(f, "setup", G_CALLBACK(cell_setup), GINT_TO_POINTER(col));
	g_signal_connect(f, "bind", G_CALLBACK(cell_bind), GINT_TO_POINTER(col));
	g_signal_connect(f, "unbind", G_CALLBACK(cell_unbind), GINT_TO_POINTER(col));
	c = gtk_column_view_column_new(title, f);
	gtk_column_view_column_set_expand(c, expand);
	gtk_column_view_column_set_resizable(c, TRUE);
	gtk_column_view_append_column(self->column_view, c);
	g_object_unref(c);
}

static void update_total(KlDevicesView *self)
{
	g_autofree char *t = NULL;
	const char *err = kl_devices_model_get_error(self->model);

	if (err)
		t = g_strdup_printf("✖ %s", err);
	else
		t = g_strdup_printf("%u device%s", kl_devices_model_get_total(self->model),
		                    kl_devices_model_get_total(self->model) == 1 ? "" : "s");
	gtk_label_set_text(self->total_label, t);
}

static void apply_query(KlDevicesView *self)
{
	guint st = gtk_drop_down_get_selected(self->state_dropdown);
	GtkStringList *states = GTK_STRING_LIST(gtk_drop_down_get_model(self->state_dropdown));

	if (!self->model)
		return;
	kl_devices_model_set_query(
	    self->model, gtk_editable_get_text(GTK_EDITABLE(self->search_entry)),
	    st == 0 || st == GTK_INVALID_LIST_POSITION ? NULL
	                                               : gtk_string_list_get_string(states, st),
	    gtk_drop_down_get_selected(self->sort_dropdown) == 1);
}

static void on_query_changed(KlDevicesView *self)
{
	apply_query(self);
}

static void on_refresh(KlDevicesView *self)
{
	if (self->model)
		kl_devices_model_reload(self->model);
}

static void append_section(GString *s, const char *title)
{
	g_string_append_printf(s, "\n%s\n", title);
}

static void show_done(GObject *src, GAsyncResult *res, gpointer data)
{
	KlDevicesView *self = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(src), res, &error);
	g_autoptr(GVariant) dev = NULL, certs = NULL, hist = NULL, ev = NULL, audit = NULL;
	g_autoptr(GString) s = g_string_new(NULL);
	g_autofree char *title = NULL;
	GVariantIter it;
	GVariant *e;
	char t1[64];

	if (!r) {
		if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
			gtk_label_set_text(self->detail_title, "✖ Cannot show the device");
			gtk_label_set_text(self->detail_label, error->message);
		}
		g_object_unref(self);
		return;
	}
	dev = kl_variant_child(r, "device");
	certs = kl_variant_child(r, "certificates");
	hist = kl_variant_child(r, "history");
	ev = kl_variant_child(r, "evidence");
	audit = kl_variant_child(r, "audit");
#define EMPTY(v) \
	if (!v)  \
		v = g_variant_ref_sink(g_variant_new("av", NULL));
	EMPTY(certs);
	EMPTY(hist);
	EMPTY(ev);
	EMPTY(audit);
#undef EMPTY
	title = g_strdup_printf("%s — %s", kl_variant_str(dev, "serial", "?"),
	                        kl_variant_str(dev, "state", "?"));
	gtk_label_set_text(self->detail_title, title);
	g_string_append_printf(
	    s, "Tenant: %s   Work order: %s\nEK SHA-256: %s\n", kl_variant_str(dev, "tenant", "—"),
	    kl_variant_str(dev, "work_order", "—"), kl_variant_str(dev, "ek_sha256", "—"));
	append_section(s, "CERTIFICATES");
	if (g_variant_n_children(certs) == 0)
		g_string_append(s, "  none\n");
	for (g_variant_iter_init(&it, certs); g_variant_iter_next(&it, "v", &e);) {
		fmt_time(kl_variant_int(e, "not_after", 0), t1, sizeof(t1));
		g_string_append_printf(
		    s, "  %-8s %s\n    %s, valid until %s%s%s\n", kl_variant_str(e, "profile", "?"),
		    kl_variant_str(e, "serial", "?"), kl_variant_str(e, "subject", ""), t1,
		    kl_variant_bool(e, "revoked", FALSE) ? ", REVOKED: " : "",
		    kl_variant_bool(e, "revoked", FALSE)
		        ? kl_variant_str(e, "revocation_reason", "?")
		        : "");
		g_variant_unref(e);
	}
	append_section(s, "STATE HISTORY");
	for (g_variant_iter_init(&it, hist); g_variant_iter_next(&it, "v", &e);) {
		fmt_time(kl_variant_int(e, "time", 0), t1, sizeof(t1));
		g_string_append_printf(
		    s, "  %s  %s → %s  by %s%s%s\n", t1, kl_variant_str(e, "from", "—"),
		    kl_variant_str(e, "to", "?"), kl_variant_str(e, "actor", "?"),
		    *kl_variant_str(e, "reason", "") ? ": " : "", kl_variant_str(e, "reason", ""));
		g_variant_unref(e);
	}
	append_section(s, "EVIDENCE");
	if (g_variant_n_children(ev) == 0)
		g_string_append(s, "  none\n");
	for (g_variant_iter_init(&it, ev); g_variant_iter_next(&it, "v", &e);) {
		g_autoptr(GVariant) rec = kl_variant_child(e, "record");
		g_autofree char *json = kl_json_print(rec, TRUE);

		fmt_time(kl_variant_int(e, "created", 0), t1, sizeof(t1));
		g_string_append_printf(s, "  recorded %s\n%s\n", t1, json);
		g_variant_unref(e);
	}
	append_section(s, "AUDIT ENTRIES");
	for (g_variant_iter_init(&it, audit); g_variant_iter_next(&it, "v", &e);) {
		gint64 ms = kl_variant_int(e, "time_ms", 0);

		fmt_time(ms / 1000, t1, sizeof(t1));
		g_string_append_printf(
		    s, "  #%" G_GINT64_FORMAT "  %s  %s  %s\n", kl_variant_int(e, "seq", 0), t1,
		    kl_variant_str(e, "action", "?"), kl_variant_str(e, "actor", "?"));
		g_variant_unref(e);
	}
	gtk_label_set_text(self->detail_label, s->str);
	g_object_unref(self);
}

static void show_device(KlDevicesView *self, KlDeviceItem *item)
{
	if (!item || !kl_device_item_get_loaded(item))
		return;
	if (self->show_cancel)
		g_cancellable_cancel(self->show_cancel);
	g_clear_object(&self->show_cancel);
	self->show_cancel = g_cancellable_new();
	gtk_label_set_text(self->detail_title, kl_device_item_get_serial(item));
	gtk_label_set_text(self->detail_label, "Loading…");
	kl_api_call(KL_API(self->client), "devices.show",
	            g_variant_new_parsed("{'serial': <%s>}", kl_device_item_get_serial(item)),
	            self->show_cancel, show_done, g_object_ref(self));
}

static void on_selected(GtkSingleSelection *sel, GParamSpec *pspec, KlDevicesView *self)
{
	show_device(self, gtk_single_selection_get_selected_item(sel));
}

static void on_row_activate(KlDevicesView *self, guint position)
{
	g_autoptr(KlDeviceItem) item = g_list_model_get_item(G_LIST_MODEL(self->model), position);

	show_device(self, item);
}

static gboolean reload_later(gpointer data)
{
	KlDevicesView *self = data;

	self->reload_source = 0;
	kl_devices_model_reload(self->model);
	return G_SOURCE_REMOVE;
}

static void on_event(KlStationClient *client, const char *type, GVariant *params, gpointer data)
{
	KlDevicesView *self = data;

	/* A finished job changed the registry: count again, once a burst of
	 * jobs is over. */
	if (g_str_equal(type, "job.finished") && !self->reload_source)
		self->reload_source = g_timeout_add(1000, reload_later, self);
}

static void on_ready(KlStationClient *client, gpointer data)
{
	KlDevicesView *self = data;

	kl_devices_model_reload(self->model);
}

void kl_devices_view_setup(KlDevicesView *self, KlStationClient *client)
{
	self->client = g_object_ref(client);
	self->model = kl_devices_model_new(KL_API(client));
	self->selection = gtk_single_selection_new(g_object_ref(G_LIST_MODEL(self->model)));
	gtk_single_selection_set_autoselect(self->selection, FALSE);
	gtk_single_selection_set_can_unselect(self->selection, TRUE);
	gtk_column_view_set_model(self->column_view, GTK_SELECTION_MODEL(self->selection));
	add_column(self, "Serial", COL_SERIAL, TRUE);
	add_column(self, "State", COL_STATE, FALSE);
	add_column(self, "Tenant", COL_TENANT, FALSE);
	add_column(self, "Last change (UTC)", COL_CHANGED, FALSE);
	g_signal_connect_object(self->selection, "notify::selected-item", G_CALLBACK(on_selected),
	                        self, 0);
	g_signal_connect_object(self->model, "notify::total", G_CALLBACK(update_total), self,
	                        G_CONNECT_SWAPPED);
	g_signal_connect_object(self->model, "notify::error", G_CALLBACK(update_total), self,
	                        G_CONNECT_SWAPPED);
	g_signal_connect_object(client, "ready", G_CALLBACK(on_ready), self, 0);
	g_signal_connect_object(client, "event", G_CALLBACK(on_event), self, 0);
	update_total(self);
}

GVariant *kl_devices_view_dump(KlDevicesView *self)
{
	GVariantBuilder b, rows;
	guint n = self->model ? MIN(g_list_model_get_n_items(G_LIST_MODEL(self->model)), 20) : 0;

	g_variant_builder_init(&rows, G_VARIANT_TYPE("av"));
	for (guint i = 0; i < n; i++) {
		g_autoptr(KlDeviceItem) it = g_list_model_get_item(G_LIST_MODEL(self->model), i);
		GVariantBuilder r;

		if (!kl_device_item_get_loaded(it))
			continue;
		g_variant_builder_init(&r, G_VARIANT_TYPE_VARDICT);
		g_variant_builder_add(&r, "{sv}", "serial",
		                      g_variant_new_string(kl_device_item_get_serial(it)));
		g_variant_builder_add(&r, "{sv}", "state",
		                      g_variant_new_string(kl_device_item_get_state(it)));
		g_variant_builder_add(&rows, "v", g_variant_builder_end(&r));
	}
	g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add(&b, "{sv}", "total_label",
	                      g_variant_new_string(gtk_label_get_text(self->total_label)));
	g_variant_builder_add(
	    &b, "{sv}", "total",
	    g_variant_new_int64(self->model ? kl_devices_model_get_total(self->model) : 0));
	g_variant_builder_add(
	    &b, "{sv}", "fetches",
	    g_variant_new_int64(self->model ? kl_devices_model_get_fetches(self->model) : 0));
	g_variant_builder_add(&b, "{sv}", "rows", g_variant_builder_end(&rows));
	g_variant_builder_add(&b, "{sv}", "detail_title",
	                      g_variant_new_string(gtk_label_get_text(self->detail_title)));
	return g_variant_builder_end(&b);
}

static void kl_devices_view_dispose(GObject *object)
{
	KlDevicesView *self = KL_DEVICES_VIEW(object);

	g_clear_handle_id(&self->reload_source, g_source_remove);
	if (self->show_cancel)
		g_cancellable_cancel(self->show_cancel);
	g_clear_object(&self->show_cancel);
	if (self->column_view)
		gtk_column_view_set_model(self->column_view, NULL);
	g_clear_object(&self->selection);
	g_clear_object(&self->model);
	g_clear_object(&self->client);
	gtk_widget_dispose_template(GTK_WIDGET(self), KL_TYPE_DEVICES_VIEW);
	G_OBJECT_CLASS(kl_devices_view_parent_class)->dispose(object);
}

static void kl_devices_view_class_init(KlDevicesViewClass *klass)
{
	GtkWidgetClass *wc = GTK_WIDGET_CLASS(klass);

	G_OBJECT_CLASS(klass)->dispose = kl_devices_view_dispose;
	gtk_widget_class_set_template_from_resource(wc, "/org/keyline/ui/kl-devices-view.ui");
	gtk_widget_class_bind_template_child(wc, KlDevicesView, search_entry);
	gtk_widget_class_bind_template_child(wc, KlDevicesView, sort_dropdown);
	gtk_widget_class_bind_template_child(wc, KlDevicesView, state_dropdown);
	gtk_widget_class_bind_template_child(wc, KlDevicesView, total_label);
	gtk_widget_class_bind_template_child(wc, KlDevicesView, detail_title);
	gtk_widget_class_bind_template_child(wc, KlDevicesView, detail_label);
	gtk_widget_class_bind_template_child(wc, KlDevicesView, column_view);
	gtk_widget_class_bind_template_callback(wc, on_query_changed);
	gtk_widget_class_bind_template_callback(wc, on_refresh);
	gtk_widget_class_bind_template_callback(wc, on_row_activate);
}

static void kl_devices_view_init(KlDevicesView *self)
{
	gtk_widget_init_template(GTK_WIDGET(self));
}
