/* keyline-ui's test hooks; see kl-ui-test-hooks.h. */
#include "kl-ui-test-hooks.h"

#include <glib-unix.h>
#include <glib/gstdio.h>

#include "kl-json.h"

typedef struct {
	KlUiWindow *window;
	char *path;
	char *last;
} Hooks;

static gboolean write_state(gpointer data)
{
	Hooks *h = data;
	g_autoptr(GVariant) v = g_variant_ref_sink(kl_ui_window_dump(h->window));
	g_autofree char *json = kl_json_print(v, TRUE);

	if (g_strcmp0(json, h->last) != 0) {
		g_file_set_contents(h->path, json, -1, NULL);
		g_free(h->last);
		h->last = g_steal_pointer(&json);
	}
	return G_SOURCE_CONTINUE;
}

/* The window as GTK draws it, into a PNG (written under a temporary name,
 * then renamed, so that a reader never sees half a file). */
static gboolean screenshot(gpointer data)
{
	Hooks *h = data;
	GtkWidget *w = GTK_WIDGET(h->window);
	int width = gtk_widget_get_width(w), height = gtk_widget_get_height(w);
	g_autoptr(GdkPaintable) p = gtk_widget_paintable_new(w);
	GtkSnapshot *snap = gtk_snapshot_new();
	g_autoptr(GskRenderNode) node = NULL;
	g_autoptr(GdkTexture) tex = NULL;
	g_autoptr(GVariant) dump = NULL;
	g_autofree char *file = NULL, *tmp = NULL;
	GskRenderer *r = gtk_native_get_renderer(GTK_NATIVE(w));

	gdk_paintable_snapshot(p, snap, width, height);
	node = gtk_snapshot_free_to_node(snap);
	if (!node || !r)
		return G_SOURCE_CONTINUE;
	tex = gsk_renderer_render_texture(r, node, &GRAPHENE_RECT_INIT(0, 0, width, height));
	dump = g_variant_ref_sink(kl_ui_window_dump(h->window));
	file = g_strdup_printf("%s-%s.png", h->path, kl_variant_str(dump, "view", "window"));
	tmp = g_strconcat(file, ".tmp", NULL);
	if (gdk_texture_save_to_png(tex, tmp))
		g_rename(tmp, file);
	write_state(h);
	return G_SOURCE_CONTINUE;
}

void kl_ui_test_hooks_install(KlUiWindow *window)
{
	const char *path = g_getenv("KEYLINE_UI_TEST_STATE");
	Hooks *h;

	if (!path || !*path)
		return;
	h = g_new0(Hooks, 1);
	h->window = window;
	h->path = g_strdup(path);
	g_timeout_add(250, write_state, h);
	g_unix_signal_add(SIGUSR1, screenshot, h);
}
