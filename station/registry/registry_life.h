/* The registry's part of the device lifecycle (lifecycle.h): sanitization
 * records of decommissioned devices, and evidence added after provisioning
 * (a renewal's). The tables live with the registry's, in the store's
 * database, under their own migration module ("lifecycle"), created on first
 * use.
 *
 * A sanitization record is opened when a decommission has proved the
 * device's identity and before anything is revoked or erased, and closed
 * with the signed record in the transaction that moves the device to
 * decommissioned or repurposed. An open one tells a rerun after a crash that
 * the device's certificates may be revoked and its TPM erased already by a
 * decommission that did not finish.
 *
 * Functions return 0 (or as said) or a negative kl_err with the detail
 * recorded; they run in a kl_store transaction, nested in the caller's when
 * one is open, and write an audit entry with the actor. */
#ifndef KL_STATION_REGISTRY_LIFE_H
#define KL_STATION_REGISTRY_LIFE_H

#include <stdint.h>

#include "kl_error.h"
#include "registry.h"

/* Opens a sanitization record for the device (or finds the one already
 * open). *id receives its id. Returns 0 when opened, 1 when one was open
 * already (a decommission resumed), -KL_E_NOTFOUND for an unknown serial. */
int kl_registry_sanitize_open(kl_registry *r, const char *serial, const char *actor,
                              int64_t *id) KL_MUST_CHECK;

/* 1 with *id set when the device has an open sanitization record, 0 when it
 * has none. */
int kl_registry_sanitize_pending(kl_registry *r, const char *serial, int64_t *id) KL_MUST_CHECK;

/* Closes the open record id with the signed record (a JSON text). Audited
 * with the record's SHA-256. -KL_E_STATE when it is not open. */
int kl_registry_sanitize_close(kl_registry *r, int64_t id, const char *record_json,
                               const char *actor) KL_MUST_CHECK;

/* A closed record of the device: id > 0 that one, else the newest. *json
 * (free() it) is its text. -KL_E_NOTFOUND when there is none. */
int kl_registry_sanitize_get(kl_registry *r, const char *serial, int64_t id,
                             char **json) KL_MUST_CHECK;

/* Adds an evidence record (a JSON object text) to a device, as
 * kl_registry_device_commit stores provisioning's; audited
 * ("registry.device.evidence") with its SHA-256 and kind (the record's
 * "kind" member, e.g. "renewal"). */
int kl_registry_evidence_add(kl_registry *r, const char *serial, const char *evidence_json,
                             const char *actor) KL_MUST_CHECK;

#endif
