/* The devices paging model; see kl-devices-model.h. */
#include "kl-devices-model.h"

#include "kl-json.h"

typedef struct {
	guint index;
	GPtrArray *items; /* KlDeviceItem, placeholders until loaded */
	gboolean loaded;
	gboolean loading;
} Page;

struct _KlDevicesModel {
	GObject parent_instance;

	KlApi *api;
	char *search, *state;
	gboolean newest_first;

	guint n_items;     /* what views see: the last total */
	gboolean counted;  /* the current query's total is known */
	guint generation;  /* bumped by every new query */
	GHashTable *pages; /* index -> Page */
	GQueue lru;        /* page indices, most recent first */
	GCancellable *cancel;
	guint fetches;
	char *error;
};

static void list_iface_init(GListModelInterface *iface);

G_DEFINE_TYPE_WITH_CODE(KlDevicesModel, kl_devices_model, G_TYPE_OBJECT,
                        G_IMPLEMENT_INTERFACE(G_TYPE_LIST_MODEL, list_iface_init))

enum { PROP_0, PROP_TOTAL, PROP_ERROR, N_PROPS };
static GParamSpec *props[N_PROPS];

typedef struct {
	KlDevicesModel *self;
	guint generation;
	guint page;
} Fetch;

static void page_free(gpointer p)
{
	Page *page = p;

	g_ptr_array_unref(page->items);
	g_free(page);
}

static void fetch_page(KlDevicesModel *self, Page *page);

static void set_error(KlDevicesModel *self, const char *e)
{
	if (g_strcmp0(e, self->error) == 0)
		return;
	g_free(self->error);
	self->error = g_strdup(e);
	g_object_notify_by_pspec(G_OBJECT(self), props[PROP_ERROR]);
}

/* Keeps the page among the most recently used; drops the oldest loaded
 * pages beyond KL_DEVICES_PAGES_KEPT (rows still shown keep their items). */
static void touch(KlDevicesModel *self, guint index)
{
	GList *l = g_queue_find(&self->lru, GUINT_TO_POINTER(index));

	if (l)
		g_queue_unlink(&self->lru, l), g_list_free(l);
	g_queue_push_head(&self->lru, GUINT_TO_POINTER(index));
	while (g_queue_get_length(&self->lru) > KL_DEVICES_PAGES_KEPT) {
		guint old = GPOINTER_TO_UINT(g_queue_pop_tail(&self->lru));
		Page *p = g_hash_table_lookup(self->pages, GUINT_TO_POINTER(old));

		if (p && p->loading) {
			/* In flight: keep it, it answers soon. */
			g_queue_push_head(&self->lru, GUINT_TO_POINTER(old));
			break;
		}
		g_hash_table_remove(self->pages, GUINT_TO_POINTER(old));
	}
}

static Page *page_get(KlDevicesModel *self, guint index)
{
	Page *p = g_hash_table_lookup(self->pages, GUINT_TO_POINTER(index));

	if (!p) {
		p = g_new0(Page, 1);
		p->index = index;
		p->items = g_ptr_array_new_with_free_func(g_object_unref);
		for (guint i = 0; i < KL_DEVICES_PAGE_SIZE; i++)
			g_ptr_array_add(p->items,
			                kl_device_item_new(index * KL_DEVICES_PAGE_SIZE + i));
		g_hash_table_insert(self->pages, GUINT_TO_POINTER(index), p);
	}
	touch(self, index);
	return p;
}

/* The total changed: tell views about the rows that came or went. */
static void set_total(KlDevicesModel *self, guint total, gboolean everything_changed)
{
	guint old = self->n_items;

	self->n_items = total;
	if (everything_changed)
		g_list_model_items_changed(G_LIST_MODEL(self), 0, old, total);
	else if (total > old)
		g_list_model_items_changed(G_LIST_MODEL(self), old, 0, total - old);
	else if (total < old)
		g_list_model_items_changed(G_LIST_MODEL(self), total, old - total, 0);
	if (old != total)
		g_object_notify_by_pspec(G_OBJECT(self), props[PROP_TOTAL]);
}

static void page_done(GObject *src, GAsyncResult *res, gpointer data)
{
	Fetch *f = data;
	KlDevicesModel *self = f->self;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(src), res, &error);
	g_autoptr(GVariant) list = NULL;
	Page *page;
	GVariantIter it;
	GVariant *d;
	guint i = 0;
	gboolean first_count;

	if (f->generation != self->generation) {
		/* An older query's answer. */
		g_object_unref(self);
		g_free(f);
		return;
	}
	page = g_hash_table_lookup(self->pages, GUINT_TO_POINTER(f->page));
	if (page)
		page->loading = FALSE;
	if (!r) {
		if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
			set_error(self, error->message);
		/* The page stays unloaded: asked again, it fetches again. */
		g_object_unref(self);
		g_free(f);
		return;
	}
	set_error(self, NULL);
	first_count = !self->counted;
	self->counted = TRUE;
	list = kl_variant_child(r, "devices");
	if (page && list) {
		page->loaded = TRUE;
		g_variant_iter_init(&it, list);
		while (i < page->items->len && g_variant_iter_next(&it, "v", &d)) {
			kl_device_item_set_from_variant(g_ptr_array_index(page->items, i++), d);
			g_variant_unref(d);
		}
	}
	set_total(self, (guint)CLAMP(kl_variant_int(r, "total", 0), 0, G_MAXUINT32 / 2),
	          first_count);
	g_object_unref(self);
	g_free(f);
}

static void fetch_page(KlDevicesModel *self, Page *page)
{
	GVariantBuilder b;
	Fetch *f;

	if (page->loading || page->loaded)
		return;
	page->loading = TRUE;
	g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add(&b, "{sv}", "offset",
	                      g_variant_new_int64((gint64)page->index * KL_DEVICES_PAGE_SIZE));
	g_variant_builder_add(&b, "{sv}", "limit", g_variant_new_int64(KL_DEVICES_PAGE_SIZE));
	if (self->search && *self->search)
		g_variant_builder_add(&b, "{sv}", "search", g_variant_new_string(self->search));
	if (self->state && *self->state)
		g_variant_builder_add(&b, "{sv}", "state", g_variant_new_string(self->state));
	if (self->newest_first)
		g_variant_builder_add(&b, "{sv}", "newest_first", g_variant_new_boolean(TRUE));
	f = g_new0(Fetch, 1);
	f->self = g_object_ref(self);
	f->generation = self->generation;
	f->page = page->index;
	self->fetches++;
	kl_api_call(self->api, "devices.list", g_variant_builder_end(&b), self->cancel, page_done,
	            f);
}

static GType get_item_type(GListModel *list)
{
	return KL_TYPE_DEVICE_ITEM;
}

static guint get_n_items(GListModel *list)
{
	return KL_DEVICES_MODEL(list)->n_items;
}

static gpointer get_item(GListModel *list, guint position)
{
	KlDevicesModel *self = KL_DEVICES_MODEL(list);
	Page *page;

	if (position >= self->n_items)
		return NULL;
	page = page_get(self, position / KL_DEVICES_PAGE_SIZE);
	fetch_page(self, page);
	return g_object_ref(g_ptr_array_index(page->items, position % KL_DEVICES_PAGE_SIZE));
}

static void list_iface_init(GListModelInterface *iface)
{
	iface->get_item_type = get_item_type;
	iface->get_n_items = get_n_items;
	iface->get_item = get_item;
}

void kl_devices_model_reload(KlDevicesModel *self)
{
	self->generation++;
	if (self->cancel)
		g_cancellable_cancel(self->cancel);
	g_clear_object(&self->cancel);
	self->cancel = g_cancellable_new();
	g_hash_table_remove_all(self->pages);
	g_queue_clear(&self->lru);
	self->counted = FALSE;
	/* The first page counts; views keep the old rows until it answers,
	 * then everything is replaced at once. */
	fetch_page(self, page_get(self, 0));
}

void kl_devices_model_set_query(KlDevicesModel *self, const char *search, const char *state,
                                gboolean newest_first)
{
	g_free(self->search);
	self->search = g_strdup(search);
	g_free(self->state);
	self->state = g_strdup(state);
	self->newest_first = newest_first;
	kl_devices_model_reload(self);
}

KlDevicesModel *kl_devices_model_new(KlApi *api)
{
	KlDevicesModel *self = g_object_new(KL_TYPE_DEVICES_MODEL, NULL);

	self->api = g_object_ref(api);
	return self;
}

guint kl_devices_model_get_total(KlDevicesModel *self)
{
	return self->n_items;
}

guint kl_devices_model_get_fetches(KlDevicesModel *self)
{
	return self->fetches;
}

guint kl_devices_model_get_pages_held(KlDevicesModel *self)
{
	return g_hash_table_size(self->pages);
}

const char *kl_devices_model_get_error(KlDevicesModel *self)
{
	return self->error;
}

static void kl_devices_model_get_property(GObject *object, guint id, GValue *value,
                                          GParamSpec *pspec)
{
	KlDevicesModel *self = KL_DEVICES_MODEL(object);

	switch (id) {
	case PROP_TOTAL:
		g_value_set_uint(value, self->n_items);
		break;
	case PROP_ERROR:
		g_value_set_string(value, self->error);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
	}
}

static void kl_devices_model_dispose(GObject *object)
{
	KlDevicesModel *self = KL_DEVICES_MODEL(object);

	if (self->cancel)
		g_cancellable_cancel(self->cancel);
	g_clear_object(&self->cancel);
	g_clear_object(&self->api);
	G_OBJECT_CLASS(kl_devices_model_parent_class)->dispose(object);
}

static void kl_devices_model_finalize(GObject *object)
{
	KlDevicesModel *self = KL_DEVICES_MODEL(object);

	g_hash_table_unref(self->pages);
	g_queue_clear(&self->lru);
	g_free(self->search);
	g_free(self->state);
	g_free(self->error);
	G_OBJECT_CLASS(kl_devices_model_parent_class)->finalize(object);
}

static void kl_devices_model_class_init(KlDevicesModelClass *klass)
{
	GObjectClass *oc = G_OBJECT_CLASS(klass);

	oc->get_property = kl_devices_model_get_property;
	oc->dispose = kl_devices_model_dispose;
	oc->finalize = kl_devices_model_finalize;
	props[PROP_TOTAL] = g_param_spec_uint("total", NULL, NULL, 0, G_MAXUINT, 0,
	                                      G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
	props[PROP_ERROR] = g_param_spec_string("error", NULL, NULL, NULL,
	                                        G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
	g_object_class_install_properties(oc, N_PROPS, props);
}

static void kl_devices_model_init(KlDevicesModel *self)
{
	self->pages = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, page_free);
	g_queue_init(&self->lru);
	self->cancel = g_cancellable_new();
}
