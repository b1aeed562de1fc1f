/**
 * The ONE place where a backstore failure becomes a SCSI status + sense.
 * Handlers throw errors carrying a `code` (StorageError codes or Node errno
 * codes); everything above them goes through `statusForStoreError`.
 */
import { errorCode } from '../backstore/errors.js';
import { ScsiStatus } from './command.js';
import { Asc, SenseKey, writeSense } from './sense.js';

/** What the failed store call was doing: the same EIO means different things. */
export const enum IoKind {
  Read = 0,
  Write = 1,
}

/**
 * Map `err` to a status, writing sense into `sense` for CHECK CONDITION.
 *
 * - EIO / ECORRUPT: MEDIUM ERROR (SBC-4 4.17) with UNRECOVERED READ ERROR for
 *   reads and WRITE ERROR for writes, so the initiator's error handling
 *   (Linux sd marks the bio failed, md/dm can redirect) sees a media fault
 *   and does not retry forever. Corrupt metadata is a media fault to the
 *   initiator; the handler itself turns read-only.
 * - ENOSPC: DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT (SBC-4
 *   4.7.3.7, thin provisioning out of space); Linux maps it to -ENOSPC
 *   instead of an I/O error.
 * - EROFS: DATA PROTECT / WRITE PROTECTED.
 * - ERANGE: ILLEGAL REQUEST / LBA OUT OF RANGE.
 * - EINVAL: ILLEGAL REQUEST / INVALID FIELD IN CDB.
 * - ENOTSUP / EOPNOTSUPP: ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE:
 *   the store cannot do this kind of command at all.
 * - EMISCOMPARE: MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION.
 * - ECANCELED: TASK ABORTED status (SAM-5 5.3.1), no sense: a TMF ended it.
 * - ETIMEDOUT: ABORTED COMMAND with no additional sense. SAM says the
 *   application client may retry an ABORTED COMMAND, which is right for a
 *   backend that was merely slow (Linux sd retries it).
 * - anything else: treated as EIO; an unknown failure of a store must not
 *   look like success or like an initiator mistake.
 */
export function statusForStoreError(err: unknown, kind: IoKind, sense: Buffer, descriptor: boolean): number {
  const code = errorCode(err);
  let key: number;
  let asc: number;
  switch (code) {
    case 'ECANCELED':
      return ScsiStatus.TaskAborted;
    case 'ENOSPC':
      key = SenseKey.DataProtect;
      asc = Asc.SpaceAllocationFailedWriteProtect;
      break;
    case 'EROFS':
      key = SenseKey.DataProtect;
      asc = Asc.WriteProtected;
      break;
    case 'ERANGE':
      key = SenseKey.IllegalRequest;
      asc = Asc.LbaOutOfRange;
      break;
    case 'EINVAL':
      key = SenseKey.IllegalRequest;
      asc = Asc.InvalidFieldInCdb;
      break;
    case 'ENOTSUP':
    case 'EOPNOTSUPP':
      key = SenseKey.IllegalRequest;
      asc = Asc.InvalidCommandOperationCode;
      break;
    case 'EMISCOMPARE':
      key = SenseKey.Miscompare;
      asc = Asc.MiscompareDuringVerify;
      break;
    case 'ETIMEDOUT':
      key = SenseKey.AbortedCommand;
      asc = Asc.NoAdditionalSense;
      break;
    default: // EIO, ECORRUPT and unknown codes
      key = SenseKey.MediumError;
      asc = kind === IoKind.Write ? Asc.WriteError : Asc.UnrecoveredReadError;
  }
  writeSense(sense, descriptor, key, asc);
  return ScsiStatus.CheckCondition;
}
