/* A fake KlApi for unit tests: a registry of `total` generated devices
 * ("DEV-0000000", ...) answering devices.list (offset, limit, search, state,
 * newest_first) from memory. It is a test double, not the station: the real
 * station is exercised by test_ui_line. Answers are held until
 * fake_api_flush() so that tests decide when (and in which order) they
 * arrive. */
#ifndef KL_TEST_FAKE_API_H
#define KL_TEST_FAKE_API_H

#include "kl-api.h"

G_BEGIN_DECLS

#define FAKE_TYPE_API (fake_api_get_type())
G_DECLARE_FINAL_TYPE(FakeApi, fake_api, FAKE, API, GObject)

FakeApi *fake_api_new(guint total);
/* Answers every held call, oldest first; returns how many. */
guint fake_api_flush(FakeApi *self);
/* Calls held now, and the offsets asked in all devices.list calls so far. */
guint fake_api_held(FakeApi *self);
GArray *fake_api_offsets(FakeApi *self);

G_END_DECLS

#endif
