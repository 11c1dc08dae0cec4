/* Test hooks of keyline-ui, off unless KEYLINE_UI_TEST_STATE=PATH is set:
 * then the window's state as shown (kl_ui_window_dump, JSON) is written to
 * PATH whenever it changes, and SIGUSR1 saves a PNG of the window, rendered
 * by GTK itself, to PATH-<view>.png. test_ui_line drives the app with
 * synthetic key events and asserts on these. */
#ifndef KL_UI_TEST_HOOKS_H
#define KL_UI_TEST_HOOKS_H

#include "kl-ui-window.h"

G_BEGIN_DECLS

void kl_ui_test_hooks_install(KlUiWindow *window);

G_END_DECLS

#endif
