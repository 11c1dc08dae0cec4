/* KlShiftCounters: what the line did this shift, as the operator counts it:
 * provisioning jobs passed, failed and aborted, and devices per hour. Fed by
 * KlLineModel from job.finished events (each job counted once). */
#ifndef KL_UI_SHIFT_COUNTERS_H
#define KL_UI_SHIFT_COUNTERS_H

#include <glib-object.h>

G_BEGIN_DECLS

#define KL_TYPE_SHIFT_COUNTERS (kl_shift_counters_get_type())
G_DECLARE_FINAL_TYPE(KlShiftCounters, kl_shift_counters, KL, SHIFT_COUNTERS, GObject)

KlShiftCounters *kl_shift_counters_new(void);

/* Counts a finished provisioning job once: result is "passed", "failed" or
 * "aborted"; started_ms/finished_ms on the station's wall clock. Returns
 * FALSE when the job was counted already or finished before the shift
 * started. */
gboolean kl_shift_counters_add(KlShiftCounters *self, gint64 job, const char *result,
                               gint64 started_ms, gint64 finished_ms);

/* Starts a new shift at now_ms (wall clock, ms): everything back to zero.
 * A new object's shift starts when it is made. */
void kl_shift_counters_reset(KlShiftCounters *self, gint64 now_ms);

guint kl_shift_counters_get_passed(KlShiftCounters *self);
guint kl_shift_counters_get_failed(KlShiftCounters *self);
guint kl_shift_counters_get_aborted(KlShiftCounters *self);

/* Passed devices per hour from the first job's start to now_ms, over at
 * least ten minutes so that the first device does not read as a thousand an
 * hour; -1 before any device passed. */
double kl_shift_counters_per_hour(KlShiftCounters *self, gint64 now_ms);

G_END_DECLS

#endif
