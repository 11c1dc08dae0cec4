/* The line model; see kl-line-model.h. */
#include "kl-line-model.h"

#include "kl-json.h"

struct _KlLineModel {
	GObject parent_instance;

	GPtrArray *slots; /* KlSlotItem */
	KlShiftCounters *counters;
};

static void list_iface_init(GListModelInterface *iface);

G_DEFINE_TYPE_WITH_CODE(KlLineModel, kl_line_model, G_TYPE_OBJECT,
                        G_IMPLEMENT_INTERFACE(G_TYPE_LIST_MODEL, list_iface_init))

static GType get_item_type(GListModel *list)
{
	return KL_TYPE_SLOT_ITEM;
}

static guint get_n_items(GListModel *list)
{
	return KL_LINE_MODEL(list)->slots->len;
}

static gpointer get_item(GListModel *list, guint position)
{
	KlLineModel *self = KL_LINE_MODEL(list);

	if (position >= self->slots->len)
		return NULL;
	return g_object_ref(g_ptr_array_index(self->slots, position));
}

static void list_iface_init(GListModelInterface *iface)
{
	iface->get_item_type = get_item_type;
	iface->get_n_items = get_n_items;
	iface->get_item = get_item;
}

KlLineModel *kl_line_model_new(void)
{
	return g_object_new(KL_TYPE_LINE_MODEL, NULL);
}

KlShiftCounters *kl_line_model_get_counters(KlLineModel *self)
{
	return self->counters;
}

KlSlotItem *kl_line_model_find(KlLineModel *self, const char *name)
{
	for (guint i = 0; name && i < self->slots->len; i++) {
		KlSlotItem *it = g_ptr_array_index(self->slots, i);

		if (g_strcmp0(it->name, name) == 0)
			return it;
	}
	return NULL;
}

static void set_str(char **field, const char *value)
{
	if (g_strcmp0(*field, value) == 0)
		return;
	g_free(*field);
	*field = g_strdup(value);
}

static KlSlotState state_from_name(const char *s)
{
	if (g_strcmp0(s, "queued") == 0)
		return KL_SLOT_QUEUED;
	if (g_strcmp0(s, "running") == 0)
		return KL_SLOT_RUNNING;
	if (g_strcmp0(s, "passed") == 0)
		return KL_SLOT_PASSED;
	if (g_strcmp0(s, "aborted") == 0)
		return KL_SLOT_ABORTED;
	if (g_strcmp0(s, "failed") == 0)
		return KL_SLOT_FAILED;
	return KL_SLOT_IDLE;
}

/* A new job on the slot: everything about the previous one goes. */
static void start_job(KlSlotItem *it, gint64 job, const char *serial, const char *kind)
{
	it->job = job;
	set_str(&it->serial, serial);
	set_str(&it->kind, kind);
	set_str(&it->step, NULL);
	set_str(&it->reason, NULL);
	set_str(&it->message, NULL);
	set_str(&it->failed_step, NULL);
	it->step_index = 0;
	it->steps = g_strcmp0(kind, "provision") == 0 ? 13 : 0;
	it->queued_ms = it->started_ms = it->finished_ms = 0;
	it->total_ms = 0;
}

/* A job object as slots.list and job.list give it (docs/api.md). */
static void fill_from_job(KlLineModel *self, KlSlotItem *it, GVariant *j)
{
	g_autoptr(GVariant) r = kl_variant_child(j, "result");
	const char *step = kl_variant_str(j, "step", "");
	int index = (int)kl_variant_int(j, "step_index", 0);

	start_job(it, kl_variant_int(j, "job", 0), kl_variant_str(j, "serial", NULL),
	          kl_variant_str(j, "kind", NULL));
	it->state = state_from_name(kl_variant_str(j, "state", NULL));
	set_str(&it->step, *step ? step : NULL);
	it->steps = (int)kl_variant_int(j, "steps", it->steps);
	/* step_index names the step under way (1-based): one fewer is done,
	 * unless the job has finished. */
	it->step_index = it->state >= KL_SLOT_PASSED ? index : MAX(index - 1, 0);
	it->queued_ms = kl_variant_int(j, "queued_ms", 0);
	it->started_ms = kl_variant_int(j, "started_ms", 0);
	it->finished_ms = kl_variant_int(j, "finished_ms", 0);
	if (r) {
		set_str(&it->reason, kl_variant_str(r, "reason", NULL));
		set_str(&it->message, kl_variant_str(r, "message", NULL));
		set_str(&it->failed_step, kl_variant_str(r, "failed_step", NULL));
		it->total_ms = kl_variant_double(r, "total_ms", 0);
	}
	if (it->state >= KL_SLOT_PASSED && g_strcmp0(it->kind, "provision") == 0)
		kl_shift_counters_add(self->counters, it->job, kl_variant_str(j, "state", NULL),
		                      it->started_ms, it->finished_ms);
}

void kl_line_model_set_slots(KlLineModel *self, GVariant *result)
{
	g_autoptr(GVariant) list = kl_variant_child(result, "slots");
	g_autoptr(GPtrArray) next = g_ptr_array_new_with_free_func(g_object_unref);
	gboolean same;
	GVariantIter iter;
	GVariant *s;
	guint old = self->slots->len;

	if (list) {
		g_variant_iter_init(&iter, list);
		while (g_variant_iter_next(&iter, "v", &s)) {
			const char *name = kl_variant_str(s, "name", "?");
			KlSlotItem *it = kl_line_model_find(self, name);
			g_autoptr(GVariant) job = kl_variant_child(s, "job");

			it = it ? g_object_ref(it) : kl_slot_item_new(name);
			set_str(&it->link, kl_variant_str(s, "link", NULL));
			it->link_up = kl_variant_has(s, "link_up")
			                  ? kl_variant_bool(s, "link_up", FALSE)
			                  : -1;
			set_str(&it->link_error, kl_variant_str(s, "link_error", NULL));
			it->agent = g_strcmp0(it->link, "agent") == 0;
			if (it->agent) {
				g_autoptr(GVariant) dut = kl_variant_child(s, "dut");

				set_str(&it->dut_serial,
				        dut ? kl_variant_str(dut, "serial", NULL) : NULL);
				set_str(&it->dut_model,
				        dut ? kl_variant_str(dut, "model", NULL) : NULL);
			}
			if (job)
				fill_from_job(self, it, job);
			else if (it->state == KL_SLOT_QUEUED || it->state == KL_SLOT_RUNNING)
				/* It finished while we did not listen; job.list
				 * tells how. */
				it->state = KL_SLOT_IDLE;
			g_ptr_array_add(next, it);
			g_variant_unref(s);
		}
	}
	same = next->len == old;
	for (guint i = 0; same && i < old; i++)
		same = g_ptr_array_index(next, i) == g_ptr_array_index(self->slots, i);
	g_ptr_array_unref(self->slots);
	self->slots = g_steal_pointer(&next);
	if (!same)
		g_list_model_items_changed(G_LIST_MODEL(self), 0, old, self->slots->len);
	for (guint i = 0; i < self->slots->len; i++)
		kl_slot_item_changed(g_ptr_array_index(self->slots, i));
}

void kl_line_model_set_recent_jobs(KlLineModel *self, GVariant *result)
{
	g_autoptr(GVariant) list = kl_variant_child(result, "jobs");
	g_autoptr(GHashTable) done = g_hash_table_new(g_direct_hash, g_direct_equal);
	GVariantIter iter;
	GVariant *j;

	if (!list)
		return;
	/* Newest first: the first job seen for a slot is its latest. */
	g_variant_iter_init(&iter, list);
	while (g_variant_iter_next(&iter, "v", &j)) {
		KlSlotItem *it = kl_line_model_find(self, kl_variant_str(j, "slot", NULL));
		KlSlotState st = state_from_name(kl_variant_str(j, "state", NULL));

		if (st >= KL_SLOT_PASSED &&
		    g_strcmp0(kl_variant_str(j, "kind", NULL), "provision") == 0)
			kl_shift_counters_add(self->counters, kl_variant_int(j, "job", 0),
			                      kl_variant_str(j, "state", NULL),
			                      kl_variant_int(j, "started_ms", 0),
			                      kl_variant_int(j, "finished_ms", 0));
		if (it && !g_hash_table_contains(done, it)) {
			g_hash_table_add(done, it);
			if (it->state == KL_SLOT_IDLE || kl_variant_int(j, "job", 0) > it->job) {
				fill_from_job(self, it, j);
				kl_slot_item_changed(it);
			}
		}
		g_variant_unref(j);
	}
}

gboolean kl_line_model_handle_event(KlLineModel *self, GVariant *params)
{
	const char *type = kl_variant_str(params, "type", "");
	KlSlotItem *it = kl_line_model_find(self, kl_variant_str(params, "slot", NULL));
	gint64 job = kl_variant_int(params, "job", 0);
	gint64 t = kl_variant_int(params, "time_ms", 0);

	if (!it)
		return FALSE;
	if (g_strcmp0(type, "link.attached") == 0 || g_strcmp0(type, "link.detached") == 0) {
		/* A DUT's keyline-agent came to (or left) this agent slot. */
		gboolean attached = type[5] == 'a';

		it->agent = TRUE;
		it->link_up = attached;
		set_str(&it->dut_serial, attached ? kl_variant_str(params, "serial", NULL) : NULL);
		set_str(&it->dut_model, attached ? kl_variant_str(params, "model", NULL) : NULL);
		set_str(&it->link_error, attached ? NULL : kl_variant_str(params, "reason", NULL));
		kl_slot_item_changed(it);
		return TRUE;
	}
	if (g_strcmp0(type, "slot.link") == 0) {
		it->link_up = kl_variant_bool(params, "up", FALSE);
		set_str(&it->link_error, kl_variant_str(params, "error", NULL));
		kl_slot_item_changed(it);
		return TRUE;
	}
	if (job <= 0 || job < it->job)
		return FALSE; /* not a job event, or about an older job */
	if (job > it->job || g_strcmp0(type, "job.queued") == 0) {
		/* A new job (or one whose job.queued we missed). */
		start_job(it, job, kl_variant_str(params, "serial", NULL),
		          kl_variant_str(params, "kind", NULL));
		it->state = KL_SLOT_QUEUED;
		it->queued_ms = t;
	}
	if (g_strcmp0(type, "job.started") == 0) {
		it->state = KL_SLOT_RUNNING;
		it->started_ms = t;
	} else if (g_strcmp0(type, "step.started") == 0 || g_strcmp0(type, "step.finished") == 0) {
		gboolean finished = type[5] == 'f';
		gint64 index = kl_variant_int(params, "index", -1);

		if (it->state < KL_SLOT_RUNNING) {
			it->state = KL_SLOT_RUNNING;
			it->started_ms = t;
		}
		set_str(&it->step, kl_variant_str(params, "step", NULL));
		if (index > 0) {
			it->step_index = (int)(finished ? index : index - 1);
			it->steps = (int)kl_variant_int(params, "of", it->steps);
		} else if (!finished) {
			/* Lifecycle steps come without an index: count them. */
			it->steps++;
		} else {
			it->step_index++;
		}
	} else if (g_strcmp0(type, "job.finished") == 0) {
		const char *result = kl_variant_str(params, "result", "failed");

		it->state = state_from_name(result);
		if (it->state < KL_SLOT_PASSED)
			it->state = KL_SLOT_FAILED;
		it->finished_ms = t;
		if (it->started_ms <= 0)
			it->started_ms = t - (gint64)kl_variant_double(params, "total_ms", 0);
		it->total_ms = kl_variant_double(params, "total_ms", 0);
		set_str(&it->reason, kl_variant_str(params, "reason", NULL));
		set_str(&it->message, kl_variant_str(params, "message", NULL));
		set_str(&it->failed_step, kl_variant_str(params, "failed_step", NULL));
		if (it->state == KL_SLOT_PASSED)
			it->step_index = it->steps;
		if (g_strcmp0(it->kind, "provision") == 0)
			kl_shift_counters_add(self->counters, job, result, it->started_ms,
			                      it->finished_ms);
	}
	kl_slot_item_changed(it);
	return TRUE;
}

KlSlotItem *kl_line_model_pick_slot(KlLineModel *self, const char *preferred)
{
	KlSlotItem *best = NULL, *pref = kl_line_model_find(self, preferred);

	if (pref && kl_slot_item_is_free(pref))
		return pref;
	for (guint i = 0; i < self->slots->len; i++) {
		KlSlotItem *it = g_ptr_array_index(self->slots, i);

		if (!kl_slot_item_is_free(it))
			continue;
		if (it->state == KL_SLOT_IDLE)
			return it;
		if (!best || it->finished_ms < best->finished_ms)
			best = it;
	}
	return best;
}

static void kl_line_model_finalize(GObject *object)
{
	KlLineModel *self = KL_LINE_MODEL(object);

	g_ptr_array_unref(self->slots);
	g_object_unref(self->counters);
	G_OBJECT_CLASS(kl_line_model_parent_class)->finalize(object);
}

static void kl_line_model_class_init(KlLineModelClass *klass)
{
	G_OBJECT_CLASS(klass)->finalize = kl_line_model_finalize;
}

static void kl_line_model_init(KlLineModel *self)
{
	self->slots = g_ptr_array_new_with_free_func(g_object_unref);
	self->counters = kl_shift_counters_new();
}
