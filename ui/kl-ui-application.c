/* keyline-ui, the application; see kl-ui-application.h. */
#include "kl-ui-application.h"

#include <signal.h>

#include "kl-line-model.h"
#include "kl-station-client.h"
#include "kl-ui-test-hooks.h"
#include "kl-ui-window.h"

struct _KlUiApplication {
	GtkApplication parent_instance;

	char *socket_path;
	char *home;
	gboolean demo;
	int devices;

	KlStationClient *client;
	KlLineModel *line;
	KlUiWindow *window;

	GSubprocess *demo_proc;
	GDataInputStream *demo_out;
	GCancellable *demo_cancel;
};

G_DEFINE_FINAL_TYPE(KlUiApplication, kl_ui_application, GTK_TYPE_APPLICATION)

static void demo_line_read(GObject *src, GAsyncResult *res, gpointer data);

/* The program next to this one (installed side by side), else the build
 * tree's, else $PATH. */
static char *find_program(const char *name, const char *build_path, const char *env)
{
	g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
	g_autofree char *dir = self ? g_path_get_dirname(self) : NULL;
	g_autofree char *beside = dir ? g_build_filename(dir, name, NULL) : NULL;

	if (env && g_getenv(env))
		return g_strdup(g_getenv(env));
	if (beside && g_file_test(beside, G_FILE_TEST_IS_EXECUTABLE))
		return g_steal_pointer(&beside);
	if (build_path && g_file_test(build_path, G_FILE_TEST_IS_EXECUTABLE))
		return g_strdup(build_path);
	return g_find_program_in_path(name);
}

static void demo_next_line(KlUiApplication *self)
{
	g_data_input_stream_read_line_async(self->demo_out, G_PRIORITY_DEFAULT, self->demo_cancel,
	                                    demo_line_read, self);
}

static void demo_line_read(GObject *src, GAsyncResult *res, gpointer data)
{
	KlUiApplication *self = data;
	g_autoptr(GError) error = NULL;
	g_autofree char *line =
	    g_data_input_stream_read_line_finish_utf8(G_DATA_INPUT_STREAM(src), res, NULL, &error);

	if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
		return;
	if (!line) {
		if (kl_station_client_get_state(self->client) == KL_STATION_STATE_IDLE)
			kl_ui_window_set_demo_status(self->window,
			                             "✖ The demo line stopped before it was ready "
			                             "(see demo-line.log in its home).",
			                             TRUE);
		return;
	}
	if (g_str_has_prefix(line, "STEP ")) {
		g_autofree char *t = g_strdup_printf("Setting up the demo line: %s…", line + 5);

		kl_ui_window_set_demo_status(self->window, t, FALSE);
	} else if (g_str_has_prefix(line, "ERROR ")) {
		g_autofree char *t = g_strdup_printf("✖ Demo line: %s", line + 6);

		kl_ui_window_set_demo_status(self->window, t, TRUE);
	} else if (g_str_has_prefix(line, "READY ")) {
		g_auto(GStrv) parts = g_strsplit(line + 6, " ", -1);

		kl_ui_window_set_demo_status(self->window, NULL, FALSE);
		kl_ui_window_set_demo_serials(self->window, (const char *const *)parts + 1);
		kl_station_client_start(self->client, parts[0]);
	}
	demo_next_line(self);
}

static void start_demo(KlUiApplication *self)
{
	/* keyline-demo (fixtures/demo.c), the program behind `keyline demo`;
	 * --ui: build the line, say STEP/READY/ERROR, keep it running. */
	g_autofree char *helper = find_program("keyline-demo", KL_UI_BUILD_DEMO, "KEYLINE_DEMO");
	g_autofree char *keyline = find_program("keyline", KL_UI_BUILD_KEYLINE, "KEYLINE_BIN");
	g_autofree char *devices = g_strdup_printf("%d", self->devices);
	g_autoptr(GError) error = NULL;

	if (!self->home) {
		g_autofree char *tmpl =
		    g_build_filename(g_get_tmp_dir(), "keyline-ui-demo.XXXXXX", NULL);

		self->home = g_mkdtemp(g_steal_pointer(&tmpl));
	}
	if (!helper || !keyline || !self->home) {
		kl_ui_window_set_demo_status(self->window,
		                             "✖ Demo: keyline or keyline-demo not found", TRUE);
		return;
	}
	self->demo_proc = g_subprocess_new(
	    G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDIN_PIPE, &error, helper, "--ui",
	    "--home", self->home, "--keyline", keyline, "--devices", devices, NULL);
	if (!self->demo_proc) {
		g_autofree char *t = g_strdup_printf("✖ Demo: %s", error->message);

		kl_ui_window_set_demo_status(self->window, t, TRUE);
		return;
	}
	self->demo_cancel = g_cancellable_new();
	self->demo_out = g_data_input_stream_new(g_subprocess_get_stdout_pipe(self->demo_proc));
	kl_ui_window_set_demo_status(self->window, "Setting up the demo line…", FALSE);
	demo_next_line(self);
}

static void activate(GApplication *app)
{
	KlUiApplication *self = KL_UI_APPLICATION(app);

	if (self->window) {
		gtk_window_present(GTK_WINDOW(self->window));
		return;
	}
	self->window = kl_ui_window_new(GTK_APPLICATION(app), self->client, self->line);
	kl_ui_test_hooks_install(self->window);
	gtk_window_present(GTK_WINDOW(self->window));
	if (self->demo)
		start_demo(self);
	else
		kl_station_client_start(self->client, self->socket_path);
}

static void startup(GApplication *app)
{
	KlUiApplication *self = KL_UI_APPLICATION(app);
	g_autoptr(GtkCssProvider) css = gtk_css_provider_new();
	static const char *const views[][2] = {
		{ "win.view('line')", "<Control>1" },
		{ "win.view('devices')", "<Control>2" },
		{ "win.view('ca')", "<Control>3" },
		{ "win.view('service')", "<Control>4" },
	};

	G_APPLICATION_CLASS(kl_ui_application_parent_class)->startup(app);
	gtk_css_provider_load_from_resource(css, "/org/keyline/ui/style.css");
	gtk_style_context_add_provider_for_display(gdk_display_get_default(),
	                                           GTK_STYLE_PROVIDER(css),
	                                           GTK_STYLE_PROVIDER_PRIORITY_APPLICATION);
	for (size_t i = 0; i < G_N_ELEMENTS(views); i++) {
		const char *accels[] = { views[i][1], NULL };

		gtk_application_set_accels_for_action(GTK_APPLICATION(app), views[i][0], accels);
	}
	self->client = kl_station_client_new(NULL);
	self->line = kl_line_model_new();
}

static void shutdown(GApplication *app)
{
	KlUiApplication *self = KL_UI_APPLICATION(app);

	if (self->client)
		kl_station_client_close(self->client);
	if (self->demo_cancel)
		g_cancellable_cancel(self->demo_cancel);
	if (self->demo_proc) {
		/* The demo line stops its station and DUTs on SIGTERM. */
		g_subprocess_send_signal(self->demo_proc, SIGTERM);
		g_subprocess_wait(self->demo_proc, NULL, NULL);
	}
	G_APPLICATION_CLASS(kl_ui_application_parent_class)->shutdown(app);
}

static int handle_local_options(GApplication *app, GVariantDict *options)
{
	KlUiApplication *self = KL_UI_APPLICATION(app);
	const char *s = NULL, *home = NULL;
	int n = 0;

	if (g_variant_dict_contains(options, "version")) {
		g_print("keyline-ui %s\n", KL_VERSION);
		return 0;
	}
	g_variant_dict_lookup(options, "socket", "&s", &s);
	g_variant_dict_lookup(options, "home", "^&ay", &home);
	g_variant_dict_lookup(options, "devices", "i", &n);
	self->demo = g_variant_dict_contains(options, "demo");
	self->devices = n > 0 ? n : 4;
	if (self->devices > 32) {
		g_printerr("keyline-ui: --devices must be 1..32\n");
		return 2;
	}
	if (home)
		self->home = g_canonicalize_filename(home, NULL);
	if (s)
		self->socket_path = g_strdup(s);
	else if (!self->demo) {
		const char *env = g_getenv("KEYLINE_HOME");
		const char *h = self->home ? self->home : env && *env ? env : "/var/lib/keyline";

		self->socket_path = g_build_filename(h, "station.sock", NULL);
	}
	return -1;
}

KlUiApplication *kl_ui_application_new(void)
{
	return g_object_new(KL_TYPE_UI_APPLICATION, "application-id", "org.keyline.Ui", "flags",
	                    G_APPLICATION_NON_UNIQUE, NULL);
}

static void kl_ui_application_finalize(GObject *object)
{
	KlUiApplication *self = KL_UI_APPLICATION(object);

	g_clear_object(&self->demo_out);
	g_clear_object(&self->demo_cancel);
	g_clear_object(&self->demo_proc);
	g_clear_object(&self->client);
	g_clear_object(&self->line);
	g_free(self->socket_path);
	g_free(self->home);
	G_OBJECT_CLASS(kl_ui_application_parent_class)->finalize(object);
}

static void kl_ui_application_class_init(KlUiApplicationClass *klass)
{
	GApplicationClass *ac = G_APPLICATION_CLASS(klass);

	G_OBJECT_CLASS(klass)->finalize = kl_ui_application_finalize;
	ac->activate = activate;
	ac->startup = startup;
	ac->shutdown = shutdown;
	ac->handle_local_options = handle_local_options;
}

static void kl_ui_application_init(KlUiApplication *self)
{
	static const GOptionEntry entries[] = {
		{ "socket", 's', 0, G_OPTION_ARG_STRING, NULL,
		  "The station's socket (default HOME/station.sock)", "PATH" },
		{ "home", 'H', 0, G_OPTION_ARG_FILENAME, NULL,
		  "The station's home ($KEYLINE_HOME, else /var/lib/keyline); with --demo, where "
		  "the demo line lives (default: a new directory in $TMPDIR)",
		  "DIR" },
		{ "demo", 0, 0, G_OPTION_ARG_NONE, NULL,
		  "Set up a demo line (CA in SoftHSM, simulated swtpm DUTs, a station) and open "
		  "the UI on it",
		  NULL },
		{ "devices", 'n', 0, G_OPTION_ARG_INT, NULL,
		  "With --demo: trusted DUTs to make, 1..32 (default 4; one forged DUT is added)",
		  "N" },
		{ "version", 0, 0, G_OPTION_ARG_NONE, NULL, "Print the version", NULL },
		{ NULL },
	};

	g_application_add_main_option_entries(G_APPLICATION(self), entries);
	g_application_set_option_context_summary(
	    G_APPLICATION(self), "keyline-ui: the line, devices, CA and service views of a "
	                         "Keyline station, over its socket API.");
}
