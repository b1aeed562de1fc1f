/**
 * Byte offsets of the TCMU shared structures (linux/target_core_user.h,
 * x86_64 / little endian). test/tcmu/ring-layout.test.ts checks every one
 * against the kernel header with offsetof().
 */

/** Mailbox at offset 0 of the map. */
export const Mailbox = {
  version: 0, // u16, must be 2
  flags: 2, // u16, MailboxFlag bits
  cmdrOff: 4, // u32, ring start (from map start)
  cmdrSize: 8, // u32, ring length in bytes (not a power of two)
  cmdHead: 12, // u32, written by the kernel
  cmdTail: 64, // u32, written by us, on its own cache line
  /** sizeof(struct tcmu_mailbox): the kernel puts the ring right after it. */
  size: 128,
} as const;

export const MAILBOX_VERSION = 2;

export const MailboxFlag = {
  OutOfOrderCompletion: 1,
  ReadLen: 2,
  Tmr: 4,
  KeepBuf: 8,
} as const;

/** Entry header, at the start of every ring entry. */
export const EntryHeader = {
  lenOp: 0, // u32: low 3 bits op, rest length (multiple of 8)
  cmdId: 4, // u16
  kflags: 6, // u8
  uflags: 7, // u8
  size: 8,
} as const;

export const Op = { Pad: 0, Cmd: 1, Tmr: 2 } as const;
export const OP_MASK = 7;
/** Entries (and their lengths) are aligned to this. */
export const ENTRY_ALIGN = 8;

export const UFlag = { UnknownOp: 1, ReadLen: 2, KeepBuf: 4 } as const;

/** CMD request (what the kernel wrote). */
export const CmdReq = {
  iovCnt: 8, // u32, data-out iovs (or all, when not bidi)
  iovBidiCnt: 12, // u32, data-in iovs of a bidi command, after iovCnt
  iovDifCnt: 16, // u32, protection-info iovs, after those
  cdbOff: 24, // u64, from map start
  iov: 48, // struct iovec[]: { u64 base (from map start), u64 len }
  iovSize: 16,
  iovBase: 0,
  iovLen: 8,
} as const;

/** CMD response (overlays the request in the same entry). */
export const CmdRsp = {
  scsiStatus: 8, // u8 (aliases iov_cnt: always write it)
  readLen: 12, // u32, valid when uflags has ReadLen
  sense: 16, // 96 bytes
} as const;

export const SENSE_SIZE = 96;
/** sizeof(struct tcmu_cmd_entry): the minimum CMD entry before the CDB. */
export const CMD_ENTRY_MIN = 112;

/** TMR notification entry. */
export const TmrEntry = {
  tmrType: 8, // u8
  cmdCnt: 12, // u32
  cmdIds: 32, // u16[]
} as const;

export const TmrType = {
  Unknown: 0,
  AbortTask: 1,
  AbortTaskSet: 2,
  ClearAca: 3,
  ClearTaskSet: 4,
  LunReset: 5,
  TargetWarmReset: 6,
  TargetColdReset: 7,
  LunResetPro: 128,
} as const;

/** Longest CDB the kernel sends (SCSI_MAX_VARLEN_CDB_SIZE). */
export const MAX_CDB_LENGTH = 260;

/** Kernel's scsi_command_size_tbl, indexed by opcode group (opcode >> 5). */
const CDB_LENGTH_BY_GROUP = [6, 10, 10, 12, 16, 12, 10, 10] as const;
const VARIABLE_LENGTH_CDB = 0x7f;

/**
 * CDB length as the kernel computes it (scsi_command_size). `byte7` is only
 * read for variable-length CDBs (opcode 0x7F: additional length + 8).
 */
export function cdbLength(opcode: number, byte7: number): number {
  return opcode === VARIABLE_LENGTH_CDB ? byte7 + 8 : CDB_LENGTH_BY_GROUP[opcode >> 5]!;
}

export function roundUp8(n: number): number {
  return (n + 7) & ~7;
}

/** Ring entry length for a command, as the kernel sizes it. */
export function cmdEntryLength(iovCount: number, cdbLen: number): number {
  return Math.max(CmdReq.iov + CmdReq.iovSize * iovCount, CMD_ENTRY_MIN) + roundUp8(cdbLen);
}

/** Ring entry length of a TMR listing `count` command ids. */
export function tmrEntryLength(count: number): number {
  return roundUp8(TmrEntry.cmdIds + 2 * count);
}
