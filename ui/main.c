/* keyline-ui: the GTK4 client of the Keyline station (docs/ui.md). */
#include "kl-ui-application.h"

int main(int argc, char **argv)
{
	g_autoptr(KlUiApplication) app = kl_ui_application_new();

	return g_application_run(G_APPLICATION(app), argc, argv);
}
