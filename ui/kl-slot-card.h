/* KlSlotCard: one slot on the line view: the slot, its link, the DUT's
 * serial, the step and a progress bar, the elapsed time, and a large state
 * (PASS / FAIL / ABORTED ...) with a symbol and a word, so that colour is
 * never the only signal, and a failure's reason in large type with the
 * station's sentence wrapped under it. It shows a
 * KlSlotItem and follows its "changed" signal. */
#ifndef KL_UI_SLOT_CARD_H
#define KL_UI_SLOT_CARD_H

#include <gtk/gtk.h>

#include "kl-slot-item.h"

G_BEGIN_DECLS

#define KL_TYPE_SLOT_CARD (kl_slot_card_get_type())
G_DECLARE_FINAL_TYPE(KlSlotCard, kl_slot_card, KL, SLOT_CARD, GtkBox)

KlSlotCard *kl_slot_card_new(KlSlotItem *item);
KlSlotItem *kl_slot_card_get_item(KlSlotCard *self);
/* Redraws what changes with time (the elapsed time). */
void kl_slot_card_tick(KlSlotCard *self);
/* The card as shown (labels' texts), an a{sv}; also "fits" (every line of
 * it inside its border) and "in_view" (all of it in the visible part of the
 * list, no scrolling needed). */
GVariant *kl_slot_card_dump(KlSlotCard *self);

G_END_DECLS

#endif
