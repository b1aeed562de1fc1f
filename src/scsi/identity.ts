/**
 * Who the disk says it is: INQUIRY strings, the unit serial number (VPD
 * 0x80) and the NAA designator (VPD 0x83). Linux builds /dev/disk/by-id and
 * multipath WWIDs from the NAA id, so it must be stable across restarts:
 * it is derived from the LUN name, never random.
 */
import { createHash } from 'node:crypto';

export interface DiskIdentity {
  /** T10 vendor identification, up to 8 ASCII chars (space padded on the wire). */
  vendor: string;
  /** Product identification, up to 16 ASCII chars. */
  product: string;
  /** Product revision level, up to 4 ASCII chars. */
  revision: string;
  /** Unit serial number (VPD 0x80), printable ASCII. */
  serial: string;
  /**
   * NAA designator as hex digits: 32 digits for NAA 6 (IEEE Registered
   * Extended, 16 bytes, what deriveIdentity makes) or 16 digits for NAA 5
   * (IEEE Registered, 8 bytes). The first digit is the NAA type.
   */
  naa: string;
  /** Largest transfer in logical blocks (hw_max_sectors); reported in VPD B0 and enforced. */
  maxTransferBlocks?: number;
}

/**
 * IEEE company id placed in derived NAA 6 ids. 00-14-05 is the OUI the
 * Linux LIO target uses in its own naa.6001405... WWNs, so our ids look
 * like every other LIO LUN's to multipath and udev rules.
 */
const LIO_OUI = '001405';

const HEX = /^[0-9a-f]+$/;

/** Normalise a user-supplied WWN ("naa.6001405...", "0x5...", plain hex) or throw. */
function parseWwn(wwn: string): string {
  let hex = wwn.trim().toLowerCase();
  if (hex.startsWith('naa.')) hex = hex.slice(4);
  else if (hex.startsWith('0x')) hex = hex.slice(2);
  const ok = HEX.test(hex) && ((hex.length === 32 && hex[0] === '6') || (hex.length === 16 && hex[0] === '5'));
  if (!ok) {
    throw new TypeError(`invalid wwn "${wwn}": expected 32 hex digits of NAA 6 or 16 hex digits of NAA 5`);
  }
  return hex;
}

/**
 * A stable identity for the LUN called `lunName`. The same name always
 * yields the same NAA id and serial; `opts.wwn` overrides the id (and the
 * serial is then taken from it) for users who must keep an existing WWN.
 */
export function deriveIdentity(lunName: string, opts: { wwn?: string } = {}): DiskIdentity {
  let naa: string;
  if (opts.wwn !== undefined) {
    naa = parseWwn(opts.wwn);
  } else {
    const digest = createHash('sha256').update('tcmu-ts lun\0').update(lunName).digest('hex');
    // NAA 6 = 4-bit type, 24-bit company id, 100 bits vendor specific (25 hex digits).
    naa = '6' + LIO_OUI + digest.slice(0, 25);
  }
  // Serial: the vendor-specific part of the id (after type and company id),
  // so serial and WWN identify the LUN consistently.
  const serial = naa.slice(7);
  return { vendor: 'TCMU-TS', product: 'tcmu-ts disk', revision: '0001', serial, naa };
}

/**
 * The identity of a LUN whose configfs `wwn/vpd_unit_serial` is
 * `unitSerial` (absent: derived from the name). A serial that is itself a
 * WWN is used as one; any other serial (targetcli/rtslib write a UUID) is
 * reported as is in VPD 0x80 and turned into an NAA 6 id the way LIO does
 * for its own backstores: the LIO company id followed by the serial's first
 * 25 hex digits, other characters skipped, zero-padded. A serial with no hex
 * digit at all, or not printable ASCII, falls back to the name.
 */
export function identityFromUnitSerial(lunName: string, unitSerial: string | undefined): DiskIdentity {
  if (unitSerial === undefined || unitSerial === '') return deriveIdentity(lunName);
  try {
    return deriveIdentity(lunName, { wwn: unitSerial });
  } catch {
    // not a WWN: the LIO rule below
  }
  const digits = unitSerial.toLowerCase().replace(/[^0-9a-f]/g, '');
  if (digits === '' || !/^[\x20-\x7e]{1,254}$/.test(unitSerial)) return deriveIdentity(lunName);
  const naa = '6' + LIO_OUI + digits.slice(0, 25).padEnd(25, '0');
  return { ...deriveIdentity(lunName), naa, serial: unitSerial };
}

/** The NAA designator bytes for VPD 0x83 (8 or 16 bytes). */
export function naaBytes(identity: DiskIdentity): Buffer {
  const hex = identity.naa.toLowerCase();
  if (!HEX.test(hex) || (hex.length !== 16 && hex.length !== 32)) {
    throw new TypeError(`DiskIdentity.naa must be 16 or 32 hex digits, got "${identity.naa}"`);
  }
  return Buffer.from(hex, 'hex');
}
