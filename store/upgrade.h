/* upgrade.h: rewriting a vault of an older format as the current one, in place.
 *
 * Format 1 (vmbak before format 2) kept its records in clear and its index without MACs.
 * vbs_vault_upgrade() reads every record of it, writes them sealed into the format 2 tables
 * (seal.h), computes the group MACs of every disk of every point (imap.h) over the index as it
 * stands, binds the config anew (the keys are rewrapped under the passphrase, so an encrypted
 * vault needs it) and then drops the format 1 tables. Chunks are not touched: their frames
 * are the same in both formats.
 *
 * Crash safety: the format 2 tables are written in one transaction while the format 1 tables
 * stay; the config is then replaced atomically. Cut short before that, the vault has a format
 * 1 config and a whole format 2 database, whose sealed copy of the config proves it: upgrade
 * then finishes (config, drop) and never rebuilds from the format 1 tables, which anyone could
 * have forged. Format 2 tables that do not match are refused (-EBADMSG).
 *
 * The MACs certify the index as upgrade finds it: a format 1 index damaged beforehand stays
 * damaged, now detected. Each disk's data chunks are counted against its record and a
 * mismatch refuses the upgrade (-EBADMSG); run vmbak verify afterwards to read every chunk.
 *
 * v must come from vbs_vault_open (any format) and be unlocked, its environment not open.
 * Errors as vault.h; -EBADMSG damaged format 1 records.
 */
#ifndef VMBAK_UPGRADE_H
#define VMBAK_UPGRADE_H

#include <stdint.h>

#include "vault.h"

typedef struct vbs_upgrade_stats {
	int from_format;   /* the format found */
	uint64_t vms, points, jobs;
	int dropped_old;   /* format 1 tables were dropped (also those a cut-short run left) */
	int finished;	   /* a format 1 config over a whole format 2 database (an upgrade cut
			    * short after its transaction, or an old config put back): the format
			    * 2 database was kept, the format 1 tables ignored and dropped */
} vbs_upgrade_stats;

/* The vault's format as its config says (1 or 2). */
int vbs_vault_format(const vbs_vault *v);

int vbs_vault_upgrade(vbs_vault *v, const char *pass, vbs_upgrade_stats *ret);

#endif
