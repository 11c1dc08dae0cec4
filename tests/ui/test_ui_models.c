/* keyline-ui's view models and station client, without a display:
 *
 *   - JSON <-> GVariant and the defaulting getters
 *   - the line model fed slots.list answers and event sequences: card states,
 *     progress, failure text, link drops, stale events, shift counters,
 *     where a scanned serial goes
 *   - the devices paging model over a million devices from a fake page
 *     source (fake_api.c, a test double): only the pages asked for are
 *     fetched, pages held stay bounded, answers to an old query are dropped
 *   - which views rpc.methods allows
 *   - the station client against a scripted socket server in a thread: answers
 *     matched by id out of order, events as signals, the station going away
 *     (calls in flight fail, state DOWN) and coming back (reconnect, "ready")
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <json-c/json.h>

#include "fake_api.h"
#include "kl-devices-model.h"
#include "kl-json.h"
#include "kl-line-model.h"
#include "kl-station-client.h"
#include "kl-ui-access.h"

static GVariant *J(const char *text)
{
	g_autoptr(GError) error = NULL;
	GVariant *v = kl_json_parse(text, &error);

	g_assert_no_error(error);
	return v;
}

/* Runs the main loop until cond(data) or timeout_ms. */
static gboolean wait_until(gboolean (*cond)(gpointer), gpointer data, guint timeout_ms)
{
	gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

	while (!cond(data)) {
		if (g_get_monotonic_time() > end)
			return FALSE;
		g_main_context_iteration(NULL, FALSE);
		g_usleep(1000);
	}
	return TRUE;
}

/* ---- JSON ---- */

static void test_json(void)
{
	g_autoptr(GVariant) v = J("{\"a\":1,\"b\":\"x\",\"c\":null,\"d\":[true,2.5],"
	                          "\"e\":{\"f\":\"g\"}}");
	g_autoptr(GVariant) d = kl_variant_child(v, "d");
	g_autoptr(GVariant) e = kl_variant_child(v, "e");
	g_autofree char *back = kl_json_print(v, FALSE);
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) bad = kl_json_parse("{\"a\":", &error);

	g_assert_cmpint(kl_variant_int(v, "a", 0), ==, 1);
	g_assert_cmpstr(kl_variant_str(v, "b", NULL), ==, "x");
	g_assert_cmpstr(kl_variant_str(v, "c", "def"), ==, "def");
	g_assert_false(kl_variant_has(v, "c"));
	g_assert_false(kl_variant_has(v, "zz"));
	g_assert_cmpstr(kl_variant_str(v, "a", "def"), ==, "def"); /* mistyped */
	g_assert_nonnull(d);
	g_assert_cmpuint(g_variant_n_children(d), ==, 2);
	g_assert_cmpstr(kl_variant_str(e, "f", NULL), ==, "g");
	g_assert_cmpstr(kl_variant_str(NULL, "f", "n"), ==, "n");
	g_assert_nonnull(strstr(back, "\"c\":null"));
	g_assert_nonnull(strstr(back, "\"d\":[true,2.5]"));
	g_assert_null(bad);
	g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
}

/* ---- the line model ---- */

static const char slots_json[] =
    "{\"slots\":["
    "{\"name\":\"slot-01\",\"link\":\"swtpm:port=1\",\"link_up\":true,\"state\":\"idle\"},"
    "{\"name\":\"slot-02\",\"link\":\"swtpm:port=2\",\"link_up\":null,\"state\":\"busy\","
    " \"job\":{\"job\":7,\"kind\":\"provision\",\"state\":\"running\",\"slot\":\"slot-02\","
    "  \"serial\":\"SN-7\",\"step\":\"ek_match\",\"step_index\":4,\"steps\":13,"
    "  \"queued_ms\":1000,\"started_ms\":1100,\"finished_ms\":0}},"
    "{\"name\":\"slot-03\",\"link\":\"swtpm:port=3\",\"link_up\":true,\"state\":\"idle\"}]}";

static void feed(KlLineModel *m, const char *json)
{
	g_autoptr(GVariant) ev = J(json);

	kl_line_model_handle_event(m, ev);
}

static void test_line_slots(void)
{
	g_autoptr(KlLineModel) m = kl_line_model_new();
	g_autoptr(GVariant) r = J(slots_json);
	KlSlotItem *s1, *s2;

	kl_line_model_set_slots(m, r);
	g_assert_cmpuint(g_list_model_get_n_items(G_LIST_MODEL(m)), ==, 3);
	s1 = kl_line_model_find(m, "slot-01");
	s2 = kl_line_model_find(m, "slot-02");
	g_assert_cmpint(s1->state, ==, KL_SLOT_IDLE);
	g_assert_cmpstr(kl_slot_item_get_state_label(s1), ==, "READY");
	g_assert_cmpint(s2->state, ==, KL_SLOT_RUNNING);
	g_assert_cmpint(s2->link_up, ==, -1);
	g_assert_cmpstr(s2->serial, ==, "SN-7");
	g_assert_cmpint(s2->step_index, ==, 3); /* step 4 is under way */
	g_assert_cmpfloat_with_epsilon(kl_slot_item_get_fraction(s2), 3.0 / 13, 1e-9);
	g_assert_cmpint(kl_slot_item_get_elapsed_ms(s2, 3100), ==, 2000);
	/* A second answer keeps the items (and so the cards). */
	kl_line_model_set_slots(m, r);
	g_assert_true(kl_line_model_find(m, "slot-01") == s1);
}

static void test_line_events(void)
{
	g_autoptr(KlLineModel) m = kl_line_model_new();
	g_autoptr(GVariant) r = J(slots_json);
	KlShiftCounters *c = kl_line_model_get_counters(m);
	KlSlotItem *s1, *s2, *s3;
	g_autofree char *why = NULL;

	kl_shift_counters_reset(c, 0);
	kl_line_model_set_slots(m, r);
	s1 = kl_line_model_find(m, "slot-01");
	s2 = kl_line_model_find(m, "slot-02");
	s3 = kl_line_model_find(m, "slot-03");

	feed(m, "{\"type\":\"job.queued\",\"job\":8,\"slot\":\"slot-01\",\"serial\":\"SN-8\","
	        "\"kind\":\"provision\",\"time_ms\":2000}");
	g_assert_cmpint(s1->state, ==, KL_SLOT_QUEUED);
	g_assert_cmpstr(kl_slot_item_get_state_label(s1), ==, "WAITING");
	g_assert_false(kl_slot_item_is_free(s1));
	feed(m, "{\"type\":\"job.started\",\"job\":8,\"slot\":\"slot-01\",\"serial\":\"SN-8\","
	        "\"kind\":\"provision\",\"time_ms\":2100}");
	feed(m, "{\"type\":\"step.started\",\"job\":8,\"slot\":\"slot-01\",\"step\":\"discover\","
	        "\"index\":1,\"of\":13,\"time_ms\":2110}");
	g_assert_cmpint(s1->state, ==, KL_SLOT_RUNNING);
	g_assert_cmpstr(s1->step, ==, "discover");
	g_assert_cmpint(s1->step_index, ==, 0);
	feed(m, "{\"type\":\"step.finished\",\"job\":8,\"slot\":\"slot-01\",\"step\":\"discover\","
	        "\"index\":1,\"of\":13,\"ms\":3.5,\"time_ms\":2120}");
	g_assert_cmpint(s1->step_index, ==, 1);
	g_assert_cmpfloat_with_epsilon(kl_slot_item_get_fraction(s1), 1.0 / 13, 1e-9);
	feed(m, "{\"type\":\"job.finished\",\"job\":8,\"slot\":\"slot-01\",\"serial\":\"SN-8\","
	        "\"kind\":\"provision\",\"result\":\"passed\",\"reason\":\"\",\"message\":\"\","
	        "\"failed_step\":\"\",\"total_ms\":900.0,\"time_ms\":3000}");
	g_assert_cmpint(s1->state, ==, KL_SLOT_PASSED);
	g_assert_cmpstr(kl_slot_item_get_state_label(s1), ==, "PASS");
	g_assert_cmpfloat(kl_slot_item_get_fraction(s1), ==, 1.0);
	g_assert_cmpint(kl_slot_item_get_elapsed_ms(s1, 99999), ==, 900);
	g_assert_true(kl_slot_item_is_free(s1));

	/* The running job on slot-02 fails: the reason is spelled out. */
	feed(m, "{\"type\":\"job.finished\",\"job\":7,\"slot\":\"slot-02\",\"serial\":\"SN-7\","
	        "\"kind\":\"provision\",\"result\":\"failed\",\"reason\":\"ek_cert_untrusted\","
	        "\"message\":\"the EK certificate does not chain to a trusted vendor root\","
	        "\"failed_step\":\"ek_cert\",\"total_ms\":300.0,\"time_ms\":3100}");
	g_assert_cmpint(s2->state, ==, KL_SLOT_FAILED);
	g_assert_cmpstr(kl_slot_item_get_state_label(s2), ==, "FAIL");
	why = kl_slot_item_dup_failure(s2);
	g_assert_cmpstr(why, ==,
	                "ek_cert_untrusted: the EK certificate does not chain to a trusted "
	                "vendor root (at step ek_cert)");
	/* The same job.finished again (a replay) counts once. */
	feed(m, "{\"type\":\"job.finished\",\"job\":7,\"slot\":\"slot-02\",\"kind\":\"provision\","
	        "\"result\":\"failed\",\"time_ms\":3100}");
	g_assert_cmpuint(kl_shift_counters_get_passed(c), ==, 1);
	g_assert_cmpuint(kl_shift_counters_get_failed(c), ==, 1);
	/* An event about an older job than the slot shows is dropped. */
	feed(m, "{\"type\":\"step.started\",\"job\":3,\"slot\":\"slot-01\",\"step\":\"keys\","
	        "\"index\":7,\"of\":13,\"time_ms\":3200}");
	g_assert_cmpint(s1->state, ==, KL_SLOT_PASSED);
	g_assert_cmpstr(s1->step, ==, "discover");
	/* A job whose job.queued we missed is picked up from its first event. */
	feed(m, "{\"type\":\"step.started\",\"job\":9,\"slot\":\"slot-03\",\"serial\":\"SN-9\","
	        "\"kind\":\"provision\",\"step\":\"ek_cert\",\"index\":3,\"of\":13,"
	        "\"time_ms\":3300}");
	g_assert_cmpint(s3->state, ==, KL_SLOT_RUNNING);
	g_assert_cmpstr(s3->serial, ==, "SN-9");
	g_assert_cmpint(s3->step_index, ==, 2);
	/* Aborted jobs are neither passed nor failed. */
	feed(m, "{\"type\":\"job.finished\",\"job\":9,\"slot\":\"slot-03\",\"kind\":\"provision\","
	        "\"result\":\"aborted\",\"reason\":\"aborted\",\"message\":\"aborted by user\","
	        "\"time_ms\":3400}");
	g_assert_cmpstr(kl_slot_item_get_state_label(s3), ==, "ABORTED");
	g_assert_cmpuint(kl_shift_counters_get_aborted(c), ==, 1);
	g_assert_cmpuint(kl_shift_counters_get_failed(c), ==, 1);

	/* The link drops: said on the card, and the slot is not free. */
	feed(m, "{\"type\":\"slot.link\",\"slot\":\"slot-03\",\"up\":false,"
	        "\"error\":\"connection refused\",\"time_ms\":3500}");
	g_assert_cmpint(s3->link_up, ==, 0);
	g_assert_cmpstr(s3->link_error, ==, "connection refused");
	g_assert_false(kl_slot_item_is_free(s3));
	/* Unknown slots are ignored. */
	feed(m, "{\"type\":\"job.queued\",\"job\":10,\"slot\":\"nope\",\"time_ms\":1}");
}

static void test_line_pick(void)
{
	g_autoptr(KlLineModel) m = kl_line_model_new();
	g_autoptr(GVariant) r = J(slots_json);
	KlSlotItem *s1, *s3;

	kl_line_model_set_slots(m, r);
	s1 = kl_line_model_find(m, "slot-01");
	s3 = kl_line_model_find(m, "slot-03");
	/* The selected slot when free; else the first never used. */
	g_assert_true(kl_line_model_pick_slot(m, "slot-03") == s3);
	g_assert_true(kl_line_model_pick_slot(m, "slot-02") == s1);
	g_assert_true(kl_line_model_pick_slot(m, NULL) == s1);
	feed(m, "{\"type\":\"job.queued\",\"job\":8,\"slot\":\"slot-01\",\"kind\":\"provision\","
	        "\"time_ms\":1}");
	g_assert_true(kl_line_model_pick_slot(m, NULL) == s3);
	feed(m, "{\"type\":\"job.finished\",\"job\":8,\"slot\":\"slot-01\",\"kind\":\"provision\","
	        "\"result\":\"passed\",\"time_ms\":50}");
	feed(m, "{\"type\":\"job.queued\",\"job\":9,\"slot\":\"slot-03\",\"kind\":\"provision\","
	        "\"time_ms\":60}");
	feed(m, "{\"type\":\"job.finished\",\"job\":9,\"slot\":\"slot-03\",\"kind\":\"provision\","
	        "\"result\":\"failed\",\"time_ms\":70}");
	/* Both finished: the one that finished first (its DUT swapped). */
	g_assert_true(kl_line_model_pick_slot(m, NULL) == s1);
	feed(m, "{\"type\":\"slot.link\",\"slot\":\"slot-01\",\"up\":false,\"time_ms\":80}");
	g_assert_true(kl_line_model_pick_slot(m, NULL) == s3);
	feed(m, "{\"type\":\"job.queued\",\"job\":11,\"slot\":\"slot-03\",\"kind\":\"provision\","
	        "\"time_ms\":90}");
	g_assert_null(kl_line_model_pick_slot(m, NULL)); /* slot-02 busy, 01 down */
}

/* An agent slot shows the DUT whose keyline-agent attached, and forgets it
 * when it detaches; without one it takes no job. */
static void test_line_agent(void)
{
	g_autoptr(KlLineModel) m = kl_line_model_new();
	g_autoptr(GVariant) r =
	    J("{\"slots\":[{\"name\":\"C\",\"link\":\"agent\",\"link_up\":false,"
	      "\"state\":\"idle\",\"dut\":null},"
	      "{\"name\":\"D\",\"link\":\"agent\",\"link_up\":true,\"state\":\"idle\","
	      "\"dut\":{\"serial\":\"ZT-4\",\"model\":\"WS-2\"}}]}");
	KlSlotItem *c, *d;

	kl_line_model_set_slots(m, r);
	c = kl_line_model_find(m, "C");
	d = kl_line_model_find(m, "D");
	g_assert_true(c->agent);
	g_assert_null(c->dut_serial);
	g_assert_false(kl_slot_item_is_free(c));
	g_assert_cmpstr(d->dut_serial, ==, "ZT-4");
	g_assert_cmpstr(d->dut_model, ==, "WS-2");
	g_assert_true(kl_slot_item_is_free(d));
	feed(m, "{\"type\":\"link.attached\",\"slot\":\"C\",\"serial\":\"ZT-5\","
	        "\"model\":\"WS-3\",\"peer\":\"tcp:127.0.0.1:4000\",\"time_ms\":1}");
	g_assert_cmpstr(c->dut_serial, ==, "ZT-5");
	g_assert_cmpstr(c->dut_model, ==, "WS-3");
	g_assert_true(kl_slot_item_is_free(c));
	feed(m, "{\"type\":\"link.detached\",\"slot\":\"C\",\"serial\":\"ZT-5\","
	        "\"reason\":\"link_lost\",\"time_ms\":2}");
	g_assert_null(c->dut_serial);
	g_assert_cmpstr(c->link_error, ==, "link_lost");
	g_assert_false(kl_slot_item_is_free(c));
}

static void test_line_recent_jobs(void)
{
	g_autoptr(KlLineModel) m = kl_line_model_new();
	g_autoptr(GVariant) r = J(slots_json);
	g_autoptr(GVariant) jobs =
	    J("{\"jobs\":["
	      "{\"job\":6,\"kind\":\"provision\",\"state\":\"failed\",\"slot\":\"slot-01\","
	      " \"serial\":\"SN-6\",\"step\":\"gates\",\"step_index\":5,\"steps\":13,"
	      " \"started_ms\":500,\"finished_ms\":600,\"result\":{\"ok\":false,"
	      " \"reason\":\"not_preregistered\",\"message\":\"SN-6 is not pre-registered\","
	      " \"failed_step\":\"gates\",\"total_ms\":100.0}},"
	      "{\"job\":5,\"kind\":\"provision\",\"state\":\"passed\",\"slot\":\"slot-01\","
	      " \"serial\":\"SN-5\",\"started_ms\":100,\"finished_ms\":200},"
	      "{\"job\":4,\"kind\":\"provision\",\"state\":\"passed\",\"slot\":\"slot-03\","
	      " \"serial\":\"SN-4\",\"started_ms\":10,\"finished_ms\":20}]}");
	KlShiftCounters *c = kl_line_model_get_counters(m);
	KlSlotItem *s1;

	kl_shift_counters_reset(c, 150); /* the shift started after job 4 and 5 began */
	kl_line_model_set_slots(m, r);
	kl_line_model_set_recent_jobs(m, jobs);
	s1 = kl_line_model_find(m, "slot-01");
	g_assert_cmpint(s1->state, ==, KL_SLOT_FAILED);
	g_assert_cmpstr(s1->serial, ==, "SN-6");
	g_assert_cmpstr(s1->reason, ==, "not_preregistered");
	/* Job 4 finished before the shift; 5 and 6 count. */
	g_assert_cmpuint(kl_shift_counters_get_passed(c), ==, 1);
	g_assert_cmpuint(kl_shift_counters_get_failed(c), ==, 1);
	kl_line_model_set_recent_jobs(m, jobs);
	g_assert_cmpuint(kl_shift_counters_get_passed(c), ==, 1);
}

static void test_counters_rate(void)
{
	g_autoptr(KlShiftCounters) c = kl_shift_counters_new();

	kl_shift_counters_reset(c, 0);
	g_assert_cmpfloat(kl_shift_counters_per_hour(c, 1000), ==, -1);
	kl_shift_counters_add(c, 1, "passed", 1000, 2000);
	/* One device in its first minute is not sixty an hour: at least ten
	 * minutes are the window. */
	g_assert_cmpfloat_with_epsilon(kl_shift_counters_per_hour(c, 61000), 6.0, 1e-9);
	for (int i = 2; i <= 120; i++)
		kl_shift_counters_add(c, i, "passed", 1000 + i, 2000 + i);
	/* 120 in two hours. */
	g_assert_cmpfloat_with_epsilon(kl_shift_counters_per_hour(c, 1000 + 7200000), 60.0, 1e-9);
	kl_shift_counters_reset(c, 5);
	g_assert_cmpuint(kl_shift_counters_get_passed(c), ==, 0);
	g_assert_false(kl_shift_counters_add(c, 1, "passed", 10, 20)); /* seen */
}

/* ---- the devices paging model ---- */

static void test_devices_paging(void)
{
	g_autoptr(FakeApi) api = fake_api_new(1000000);
	g_autoptr(KlDevicesModel) m = kl_devices_model_new(KL_API(api));
	g_autoptr(KlDeviceItem) a = NULL, b = NULL, last = NULL;
	GArray *offs = fake_api_offsets(api);

	g_assert_cmpuint(g_list_model_get_n_items(G_LIST_MODEL(m)), ==, 0);
	kl_devices_model_reload(m);
	g_assert_cmpuint(fake_api_held(api), ==, 1);
	fake_api_flush(api);
	g_assert_cmpuint(g_list_model_get_n_items(G_LIST_MODEL(m)), ==, 1000000);
	g_assert_cmpuint(kl_devices_model_get_fetches(m), ==, 1);

	/* A row in the middle: a placeholder now, its page fetched once. */
	a = g_list_model_get_item(G_LIST_MODEL(m), 500000);
	b = g_list_model_get_item(G_LIST_MODEL(m), 500099);
	g_assert_false(kl_device_item_get_loaded(a));
	g_assert_cmpuint(fake_api_held(api), ==, 1);
	g_assert_cmpint(g_array_index(offs, gint64, offs->len - 1), ==, 500000);
	fake_api_flush(api);
	g_assert_true(kl_device_item_get_loaded(a));
	g_assert_cmpstr(kl_device_item_get_serial(a), ==, "DEV-0500000");
	g_assert_cmpstr(kl_device_item_get_serial(b), ==, "DEV-0500099");
	g_assert_cmpuint(kl_devices_model_get_fetches(m), ==, 2);

	/* Scrolling through 200 pages keeps at most KL_DEVICES_PAGES_KEPT. */
	for (guint p = 0; p < 200; p++) {
		g_autoptr(GObject) it = g_list_model_get_item(G_LIST_MODEL(m), p * 5000);

		fake_api_flush(api);
	}
	g_assert_cmpuint(kl_devices_model_get_pages_held(m), <=, KL_DEVICES_PAGES_KEPT);
	g_assert_cmpuint(kl_devices_model_get_fetches(m), <=, 2 + 200);
	last = g_list_model_get_item(G_LIST_MODEL(m), 999999);
	fake_api_flush(api);
	g_assert_cmpstr(kl_device_item_get_serial(last), ==, "DEV-0999999");
	g_assert_null(g_list_model_get_item(G_LIST_MODEL(m), 1000000));
}

static guint changes;

static void on_items_changed(GListModel *l, guint pos, guint removed, guint added, gpointer d)
{
	changes++;
}

static void test_devices_query(void)
{
	g_autoptr(FakeApi) api = fake_api_new(1000000);
	g_autoptr(KlDevicesModel) m = kl_devices_model_new(KL_API(api));
	g_autoptr(KlDeviceItem) stale = NULL, first = NULL, newest = NULL;

	g_signal_connect(m, "items-changed", G_CALLBACK(on_items_changed), NULL);
	kl_devices_model_reload(m);
	fake_api_flush(api);
	/* A page of the old query is in flight when the search changes: its
	 * answer is dropped, the new total replaces the old at once. */
	stale = g_list_model_get_item(G_LIST_MODEL(m), 999999);
	changes = 0;
	kl_devices_model_set_query(m, "DEV-000001", NULL, FALSE);
	g_assert_cmpuint(fake_api_held(api), ==, 2);
	fake_api_flush(api);
	g_assert_false(kl_device_item_get_loaded(stale));
	g_assert_cmpuint(kl_devices_model_get_total(m), ==, 10); /* DEV-0000010..19 */
	g_assert_cmpuint(changes, ==, 1);
	first = g_list_model_get_item(G_LIST_MODEL(m), 0);
	g_assert_cmpstr(kl_device_item_get_serial(first), ==, "DEV-0000010");

	kl_devices_model_set_query(m, NULL, "revoked", FALSE);
	fake_api_flush(api);
	g_assert_cmpuint(kl_devices_model_get_total(m), ==, 100000);

	kl_devices_model_set_query(m, NULL, NULL, TRUE);
	fake_api_flush(api);
	newest = g_list_model_get_item(G_LIST_MODEL(m), 0);
	g_assert_cmpstr(kl_device_item_get_serial(newest), ==, "DEV-0999999");
	g_assert_null(kl_devices_model_get_error(m));
}

/* ---- access ---- */

static gboolean can_in(gpointer ctx, const char *method)
{
	return g_strv_contains(ctx, method);
}

static void test_access(void)
{
	const char *operator[] = { "station.status", "slots.list",   "job.provision", "job.abort",
		                   "devices.list",   "devices.show", "ca.status",     NULL };
	const char *officer[] = { "devices.list", "device.revoke", "crl.publish",
		                  "audit.list",   "device.lost",   NULL };
	const char *service[] = { "devices.list", "device.decommission", "audit.list", NULL };

	g_assert_cmpint(kl_ui_views_allowed(can_in, operator), ==,
	                KL_UI_VIEW_LINE | KL_UI_VIEW_DEVICES);
	g_assert_cmpint(kl_ui_views_allowed(can_in, officer), ==,
	                KL_UI_VIEW_LINE | KL_UI_VIEW_DEVICES | KL_UI_VIEW_CA | KL_UI_VIEW_SERVICE);
	g_assert_cmpint(kl_ui_views_allowed(can_in, service), ==,
	                KL_UI_VIEW_LINE | KL_UI_VIEW_DEVICES | KL_UI_VIEW_CA | KL_UI_VIEW_SERVICE);
}

/* ---- the station client against a scripted server ---- */

typedef struct {
	char path[108];
	int lfd;
	GThread *thread;
	int connections;
} Server;

static void send_line(FILE *f, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void send_line(FILE *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fflush(f);
}

/* Connection 1: the handshake, then "slow" is answered only after "fast",
 * then "bye" closes without an answer. Connection 2: the handshake, then
 * until the client goes. */
static gpointer server_main(gpointer data)
{
	Server *s = data;

	for (int n = 1; n <= 2; n++) {
		int fd = accept(s->lfd, NULL, NULL);
		FILE *in, *out;
		char line[4096];
		long long slow_id = 0;

		if (fd < 0)
			return NULL;
		s->connections = n;
		in = fdopen(fd, "r");
		out = fdopen(dup(fd), "w");
		while (fgets(line, sizeof(line), in)) {
			json_object *o = json_tokener_parse(line), *v;
			const char *method = "";
			long long id = 0;

			if (json_object_object_get_ex(o, "method", &v))
				method = json_object_get_string(v);
			if (json_object_object_get_ex(o, "id", &v))
				id = json_object_get_int64(v);
			if (!strcmp(method, "rpc.methods"))
				send_line(
				    out,
				    "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"result\":{\"methods\":"
				    "[{\"name\":\"slots.list\"},{\"name\":\"job.provision\"}]}}",
				    id);
			else if (!strcmp(method, "events.subscribe")) {
				send_line(
				    out,
				    "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"result\":{\"subscribed\":"
				    "true}}",
				    id);
				send_line(out,
				          "{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":"
				          "{\"type\":\"slot.link\",\"slot\":\"A\",\"up\":false}}");
			} else if (!strcmp(method, "station.status"))
				send_line(
				    out,
				    "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"result\":{\"station\":"
				    "\"st-%d\",\"hsm_logged_in\":true}}",
				    id, n);
			else if (!strcmp(method, "slow"))
				slow_id = id;
			else if (!strcmp(method, "fast")) {
				send_line(out,
				          "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"result\":{\"who\":"
				          "\"fast\"}}",
				          id);
				send_line(
				    out,
				    "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"error\":{\"code\":-32000,"
				    "\"message\":\"slow failed\"}}",
				    slow_id);
			} else if (!strcmp(method, "bye")) {
				json_object_put(o);
				break;
			}
			json_object_put(o);
		}
		fclose(in);
		fclose(out);
	}
	return NULL;
}

typedef struct {
	KlStationClient *client;
	int events, readies;
	char last_event[64];
	GVariant *fast;
	GError *slow_error, *bye_error;
	gboolean fast_done, slow_done, bye_done;
} ClientCtx;

static void on_event(KlStationClient *c, const char *type, GVariant *params, gpointer data)
{
	ClientCtx *x = data;

	x->events++;
	g_strlcpy(x->last_event, type, sizeof(x->last_event));
	g_assert_cmpstr(kl_variant_str(params, "slot", NULL), ==, "A");
}

static void on_ready(KlStationClient *c, gpointer data)
{
	((ClientCtx *)data)->readies++;
}

static void fast_done(GObject *src, GAsyncResult *res, gpointer data)
{
	ClientCtx *x = data;

	x->fast = kl_api_call_finish(KL_API(src), res, NULL);
	x->fast_done = TRUE;
}

static void slow_done(GObject *src, GAsyncResult *res, gpointer data)
{
	ClientCtx *x = data;
	GVariant *v = kl_api_call_finish(KL_API(src), res, &x->slow_error);

	g_assert_null(v);
	x->slow_done = TRUE;
}

static void bye_done(GObject *src, GAsyncResult *res, gpointer data)
{
	ClientCtx *x = data;
	GVariant *v = kl_api_call_finish(KL_API(src), res, &x->bye_error);

	g_assert_null(v);
	x->bye_done = TRUE;
}

static gboolean is_down(gpointer d)
{
	return kl_station_client_get_state(((ClientCtx *)d)->client) == KL_STATION_STATE_DOWN;
}

static gboolean is_ready_once(gpointer d)
{
	ClientCtx *x = d;

	return x->readies >= 1 && x->events >= 1 && kl_station_client_get_hsm_logged_in(x->client);
}

static gboolean answers_in(gpointer d)
{
	ClientCtx *x = d;

	return x->fast_done && x->slow_done;
}

static gboolean bye_in(gpointer d)
{
	ClientCtx *x = d;

	return x->bye_done && kl_station_client_get_state(x->client) != KL_STATION_STATE_CONNECTED;
}

static gboolean ready_twice(gpointer d)
{
	ClientCtx *x = d;

	return x->readies >= 2 &&
	       kl_station_client_get_state(x->client) == KL_STATION_STATE_CONNECTED &&
	       g_strcmp0(kl_station_client_get_station_id(x->client), "st-2") == 0;
}

static void test_client(void)
{
	g_autofree char *dir = g_dir_make_tmp("kl-ui-test-XXXXXX", NULL);
	Server s = { .lfd = -1 };
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	ClientCtx x = { 0 };

	g_snprintf(s.path, sizeof(s.path), "%s/station.sock", dir);
	x.client = kl_station_client_new(s.path);
	g_signal_connect(x.client, "event", G_CALLBACK(on_event), &x);
	g_signal_connect(x.client, "ready", G_CALLBACK(on_ready), &x);

	/* No station yet: down, said in words, nothing callable. */
	kl_station_client_start(x.client, NULL);
	g_assert_true(wait_until(is_down, &x, 5000));
	g_assert_nonnull(strstr(kl_station_client_get_message(x.client), "not running"));
	g_assert_false(kl_station_client_can(x.client, "slots.list"));

	/* The station appears: the client finds it by itself. */
	s.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	g_strlcpy(a.sun_path, s.path, sizeof(a.sun_path));
	g_assert_cmpint(bind(s.lfd, (struct sockaddr *)&a, sizeof(a)), ==, 0);
	g_assert_cmpint(listen(s.lfd, 4), ==, 0);
	s.thread = g_thread_new("fake-station", server_main, &s);
	g_assert_true(wait_until(is_ready_once, &x, 15000));
	g_assert_cmpint(kl_station_client_get_state(x.client), ==, KL_STATION_STATE_CONNECTED);
	g_assert_true(kl_station_client_can(x.client, "job.provision"));
	g_assert_false(kl_station_client_can(x.client, "device.revoke"));
	g_assert_cmpstr(x.last_event, ==, "slot.link");
	g_assert_cmpstr(kl_station_client_get_station_id(x.client), ==, "st-1");

	/* Answers out of order find their calls by id. */
	kl_api_call(KL_API(x.client), "slow", NULL, NULL, slow_done, &x);
	kl_api_call(KL_API(x.client), "fast", g_variant_new_parsed("{'n': <int64 1>}"), NULL,
	            fast_done, &x);
	g_assert_true(wait_until(answers_in, &x, 5000));
	g_assert_cmpstr(kl_variant_str(x.fast, "who", NULL), ==, "fast");
	g_assert_error(x.slow_error, KL_API_ERROR, -32000);
	g_assert_cmpstr(x.slow_error->message, ==, "slow failed");

	/* The station goes away mid-call: the call fails, the client says so and
	 * comes back to the next connection by itself. */
	kl_api_call(KL_API(x.client), "bye", NULL, NULL, bye_done, &x);
	g_assert_true(wait_until(bye_in, &x, 5000));
	g_assert_error(x.bye_error, KL_API_ERROR, KL_API_ERROR_DISCONNECTED);
	g_assert_nonnull(strstr(kl_station_client_get_message(x.client), "Trying again"));
	g_assert_true(wait_until(ready_twice, &x, 15000));
	g_assert_cmpint(s.connections, ==, 2);

	kl_station_client_close(x.client);
	g_assert_cmpint(kl_station_client_get_state(x.client), ==, KL_STATION_STATE_IDLE);
	g_clear_object(&x.client); /* EOF ends the server's second connection */
	g_thread_join(s.thread);
	close(s.lfd);
	g_unlink(s.path);
	g_rmdir(dir);
	g_clear_pointer(&x.fast, g_variant_unref);
	g_clear_error(&x.slow_error);
	g_clear_error(&x.bye_error);
}

static void test_backoff(void)
{
	g_assert_cmpuint(kl_station_client_backoff_ms(1), ==, 500);
	g_assert_cmpuint(kl_station_client_backoff_ms(2), ==, 1000);
	g_assert_cmpuint(kl_station_client_backoff_ms(5), ==, 8000);
	g_assert_cmpuint(kl_station_client_backoff_ms(6), ==, 10000);
	g_assert_cmpuint(kl_station_client_backoff_ms(40), ==, 10000);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/ui/json", test_json);
	g_test_add_func("/ui/line/slots", test_line_slots);
	g_test_add_func("/ui/line/events", test_line_events);
	g_test_add_func("/ui/line/pick", test_line_pick);
	g_test_add_func("/ui/line/recent-jobs", test_line_recent_jobs);
	g_test_add_func("/ui/line/agent", test_line_agent);
	g_test_add_func("/ui/counters/rate", test_counters_rate);
	g_test_add_func("/ui/devices/paging", test_devices_paging);
	g_test_add_func("/ui/devices/query", test_devices_query);
	g_test_add_func("/ui/access", test_access);
	g_test_add_func("/ui/client/backoff", test_backoff);
	g_test_add_func("/ui/client/reconnect", test_client);
	return g_test_run();
}
