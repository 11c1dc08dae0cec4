/* Shift counters; see kl-shift-counters.h. */
#include "kl-shift-counters.h"

#define MIN_WINDOW_MS (10 * 60 * 1000)

struct _KlShiftCounters {
	GObject parent_instance;

	guint passed, failed, aborted;
	gint64 first_start_ms;
	gint64 shift_start_ms;
	GHashTable *seen; /* job ids counted */
};

G_DEFINE_TYPE(KlShiftCounters, kl_shift_counters, G_TYPE_OBJECT)

enum { PROP_0, PROP_PASSED, PROP_FAILED, PROP_ABORTED, N_PROPS };
static GParamSpec *props[N_PROPS];

KlShiftCounters *kl_shift_counters_new(void)
{
	return g_object_new(KL_TYPE_SHIFT_COUNTERS, NULL);
}

gboolean kl_shift_counters_add(KlShiftCounters *self, gint64 job, const char *result,
                               gint64 started_ms, gint64 finished_ms)
{
	if (g_hash_table_contains(self->seen, &job) ||
	    (finished_ms > 0 && finished_ms < self->shift_start_ms))
		return FALSE;
	g_hash_table_add(self->seen, g_memdup2(&job, sizeof(job)));
	if (started_ms > 0 && (self->first_start_ms == 0 || started_ms < self->first_start_ms))
		self->first_start_ms = started_ms;
	else if (self->first_start_ms == 0 && finished_ms > 0)
		self->first_start_ms = finished_ms;
	if (g_strcmp0(result, "passed") == 0) {
		self->passed++;
		g_object_notify_by_pspec(G_OBJECT(self), props[PROP_PASSED]);
	} else if (g_strcmp0(result, "aborted") == 0) {
		self->aborted++;
		g_object_notify_by_pspec(G_OBJECT(self), props[PROP_ABORTED]);
	} else {
		self->failed++;
		g_object_notify_by_pspec(G_OBJECT(self), props[PROP_FAILED]);
	}
	return TRUE;
}

void kl_shift_counters_reset(KlShiftCounters *self, gint64 now_ms)
{
	self->shift_start_ms = now_ms;
	self->passed = self->failed = self->aborted = 0;
	self->first_start_ms = 0;
	/* Jobs seen stay seen: a late event of the old shift is not counted
	 * in the new one. */
	g_object_notify_by_pspec(G_OBJECT(self), props[PROP_PASSED]);
	g_object_notify_by_pspec(G_OBJECT(self), props[PROP_FAILED]);
	g_object_notify_by_pspec(G_OBJECT(self), props[PROP_ABORTED]);
}

guint kl_shift_counters_get_passed(KlShiftCounters *self)
{
	return self->passed;
}

guint kl_shift_counters_get_failed(KlShiftCounters *self)
{
	return self->failed;
}

guint kl_shift_counters_get_aborted(KlShiftCounters *self)
{
	return self->aborted;
}

double kl_shift_counters_per_hour(KlShiftCounters *self, gint64 now_ms)
{
	gint64 window;

	if (self->passed == 0)
		return -1;
	window = MAX(now_ms - self->first_start_ms, MIN_WINDOW_MS);
	return self->passed * 3600000.0 / (double)window;
}

static void kl_shift_counters_get_property(GObject *object, guint id, GValue *value,
                                           GParamSpec *pspec)
{
	KlShiftCounters *self = KL_SHIFT_COUNTERS(object);

	switch (id) {
	case PROP_PASSED:
		g_value_set_uint(value, self->passed);
		break;
	case PROP_FAILED:
		g_value_set_uint(value, self->failed);
		break;
	case PROP_ABORTED:
		g_value_set_uint(value, self->aborted);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
	}
}

static void kl_shift_counters_finalize(GObject *object)
{
	g_hash_table_unref(KL_SHIFT_COUNTERS(object)->seen);
	G_OBJECT_CLASS(kl_shift_counters_parent_class)->finalize(object);
}

static void kl_shift_counters_class_init(KlShiftCountersClass *klass)
{
	GObjectClass *oc = G_OBJECT_CLASS(klass);

	oc->get_property = kl_shift_counters_get_property;
	oc->finalize = kl_shift_counters_finalize;
	props[PROP_PASSED] = g_param_spec_uint("passed", NULL, NULL, 0, G_MAXUINT, 0,
	                                       G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
	props[PROP_FAILED] = g_param_spec_uint("failed", NULL, NULL, 0, G_MAXUINT, 0,
	                                       G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
	props[PROP_ABORTED] = g_param_spec_uint("aborted", NULL, NULL, 0, G_MAXUINT, 0,
	                                        G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
	g_object_class_install_properties(oc, N_PROPS, props);
}

static void kl_shift_counters_init(KlShiftCounters *self)
{
	self->seen = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
	self->shift_start_ms = g_get_real_time() / 1000;
}
