/* The few offsets of the kernel's TCMU structures the addon writes itself
 * or reads (ring_completer.cc, mapping.cc), as plain numbers: the kernel's header does not
 * compile as C++. ring_layout_check.c holds them against that header at
 * build time; src/tcmu/ring-layout.ts has the same for JS. */
#ifndef TCMU_TS_RING_LAYOUT_H
#define TCMU_TS_RING_LAYOUT_H

#define TCMU_TS_MAILBOX_CMDR_OFF 4   /* struct tcmu_mailbox, cmdr_off */
#define TCMU_TS_MAILBOX_CMDR_SIZE 8  /* struct tcmu_mailbox, cmdr_size */
#define TCMU_TS_MAILBOX_CMD_TAIL 64 /* struct tcmu_mailbox, cmd_tail */
#define TCMU_TS_ENTRY_CMD_ID 4      /* struct tcmu_cmd_entry, hdr.cmd_id */
#define TCMU_TS_ENTRY_UFLAGS 7      /* struct tcmu_cmd_entry, hdr.uflags */
#define TCMU_TS_RSP_SCSI_STATUS 8   /* struct tcmu_cmd_entry, rsp.scsi_status */
#define TCMU_TS_OP_MASK 7
#define TCMU_TS_OP_CMD 1

#endif
