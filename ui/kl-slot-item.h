/* KlSlotItem: one slot of the line as the operator sees it: its link, the
 * job on it (or the last one), the current step and the result. KlLineModel
 * owns and writes it; views read the fields and listen to "changed". */
#ifndef KL_UI_SLOT_ITEM_H
#define KL_UI_SLOT_ITEM_H

#include <glib-object.h>

G_BEGIN_DECLS

typedef enum {
	KL_SLOT_IDLE,    /* no job seen yet */
	KL_SLOT_QUEUED,  /* job.queued, not started */
	KL_SLOT_RUNNING, /* job.started */
	KL_SLOT_PASSED,
	KL_SLOT_FAILED,
	KL_SLOT_ABORTED,
} KlSlotState;

GType kl_slot_state_get_type(void);
#define KL_TYPE_SLOT_STATE (kl_slot_state_get_type())

#define KL_TYPE_SLOT_ITEM (kl_slot_item_get_type())
G_DECLARE_FINAL_TYPE(KlSlotItem, kl_slot_item, KL, SLOT_ITEM, GObject)

struct _KlSlotItem {
	GObject parent_instance;

	char *name;
	char *link;
	int link_up; /* 1 up, 0 down, -1 not probed yet */
	char *link_error;
	/* An agent slot ("link":"agent"): the DUT whose keyline-agent is
	 * attached (link.attached), NULL while none is. */
	gboolean agent;
	char *dut_serial, *dut_model;

	KlSlotState state;
	gint64 job;
	char *kind;     /* provision, renew, decommission, repurpose */
	char *serial;   /* of the job's DUT */
	char *step;     /* the step running or last finished */
	int step_index; /* steps done (a step.started for step k says k-1 are done) */
	int steps;      /* of how many; 0 when unknown (lifecycle jobs) */
	gint64 queued_ms, started_ms, finished_ms; /* station wall clock, ms */
	char *reason;                              /* machine-readable, e.g. ek_cert_untrusted */
	char *message;                             /* for people */
	char *failed_step;                         /* where it stopped */
	double total_ms;
};

KlSlotItem *kl_slot_item_new(const char *name);

/* Tells views the fields changed ("changed" signal). */
void kl_slot_item_changed(KlSlotItem *self);

/* Whether a new job may be started on it: nothing queued or running, and the
 * link not known to be down. */
gboolean kl_slot_item_is_free(KlSlotItem *self);

/* 0..1: steps done over steps; 1 when finished; 0 when unknown. */
double kl_slot_item_get_fraction(KlSlotItem *self);

/* Time on the job so far (running) or in all (finished), ms; now_ms is the
 * wall clock. 0 when it has not started. */
gint64 kl_slot_item_get_elapsed_ms(KlSlotItem *self, gint64 now_ms);

/* The big word on the card: "READY", "WAITING", "RUNNING", "PASS", "FAIL",
 * "ABORTED"; never only a colour. */
const char *kl_slot_item_get_state_label(KlSlotItem *self);

/* A failure's explanation for people, "reason: message (at step)"; "" when
 * it did not fail. Free with g_free. */
char *kl_slot_item_dup_failure(KlSlotItem *self);

G_END_DECLS

#endif
