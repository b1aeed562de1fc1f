/* Build-time check of ring_layout.h against the kernel's own header: a
 * mismatch stops the build. Nothing here ends up in the addon. */
#include <linux/target_core_user.h>
#include <stddef.h>

#include "ring_layout.h"

_Static_assert(offsetof(struct tcmu_mailbox, cmdr_off) == TCMU_TS_MAILBOX_CMDR_OFF, "cmdr_off");
_Static_assert(offsetof(struct tcmu_mailbox, cmdr_size) == TCMU_TS_MAILBOX_CMDR_SIZE, "cmdr_size");
_Static_assert(offsetof(struct tcmu_mailbox, cmd_tail) == TCMU_TS_MAILBOX_CMD_TAIL, "cmd_tail");
_Static_assert(offsetof(struct tcmu_cmd_entry, hdr.cmd_id) == TCMU_TS_ENTRY_CMD_ID, "cmd_id");
_Static_assert(offsetof(struct tcmu_cmd_entry, hdr.uflags) == TCMU_TS_ENTRY_UFLAGS, "uflags");
_Static_assert(offsetof(struct tcmu_cmd_entry, rsp.scsi_status) == TCMU_TS_RSP_SCSI_STATUS, "scsi_status");
_Static_assert(TCMU_OP_MASK == TCMU_TS_OP_MASK, "op mask");
_Static_assert(TCMU_OP_CMD == TCMU_TS_OP_CMD, "op cmd");
