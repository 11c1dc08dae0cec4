/* KlLineModel: the line as a list of KlSlotItem (a GListModel), kept up to
 * date from the station's answers (slots.list, job.list) and its events
 * (job.queued, job.started, step.started, step.finished, job.finished,
 * slot.link). It knows nothing of widgets or sockets: feed it GVariants, so
 * that it is tested without a display or a station. */
#ifndef KL_UI_LINE_MODEL_H
#define KL_UI_LINE_MODEL_H

#include <gio/gio.h>

#include "kl-shift-counters.h"
#include "kl-slot-item.h"

G_BEGIN_DECLS

#define KL_TYPE_LINE_MODEL (kl_line_model_get_type())
G_DECLARE_FINAL_TYPE(KlLineModel, kl_line_model, KL, LINE_MODEL, GObject)

KlLineModel *kl_line_model_new(void);

KlShiftCounters *kl_line_model_get_counters(KlLineModel *self);

/* The answer of slots.list: the slots, their links and current jobs. Slots
 * that keep their names keep their items (and the last result shown). */
void kl_line_model_set_slots(KlLineModel *self, GVariant *result);

/* The answer of job.list: an idle slot shows its most recent finished job,
 * and finished provisioning jobs are counted for the shift (once each). */
void kl_line_model_set_recent_jobs(KlLineModel *self, GVariant *result);

/* One event's params (the "event" notification). Returns TRUE when a slot
 * changed. */
gboolean kl_line_model_handle_event(KlLineModel *self, GVariant *params);

/* The slot named name, or NULL; borrowed. */
KlSlotItem *kl_line_model_find(KlLineModel *self, const char *name);

/* Where a scanned serial goes: preferred when it is free, else the first
 * free slot that has not run a job yet, else the free slot whose job
 * finished longest ago (its DUT has most likely been swapped). NULL when no
 * slot is free. Borrowed. */
KlSlotItem *kl_line_model_pick_slot(KlLineModel *self, const char *preferred);

G_END_DECLS

#endif
