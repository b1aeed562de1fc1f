/**
 * `tcmu-ts <group> <verb> <target> ...` for every control operation a
 * handler offers (Handler.control): `image create|info|check`, `snapshot
 * create|list|revert|delete` from qcow2 today, whatever rbd or crypt add
 * tomorrow. Commands are built from the operations' own argument
 * descriptions; nothing here knows a handler.
 *
 * A target is an image path (offline: the operation runs in this process)
 * or, for operations a served LUN offers, the name of a LUN the daemon
 * serves (online: the daemon finds the layer that offers it and quiesces
 * the LUN around it, or runs it beside the LUN's I/O when the operation
 * says it can, see src/daemon/lun-control.ts).
 */
import type { Command } from 'commander';
import { isAbsolute } from 'node:path';
import { coerceControlArgs } from '../backstore/control.js';
import { offlineOperation, type OfferedOperation } from '../backstore/control-registry.js';
import type { ControlArg, ControlResult } from '../backstore/types.js';
import { controlRequest, DEFAULT_CONTROL_SOCKET } from '../daemon/control.js';
import { createLogger } from '../log.js';

/** How each group introduces itself in --help; other groups get a generic line. */
const GROUP_DESCRIPTIONS: Record<string, string> = {
  image: 'create, inspect, check and compact images',
  snapshot: 'snapshots of an image path or of a served LUN (by name): qcow2 internal snapshots, RBD snapshots of an rbd LUN',
};
/** The image format an offline operation uses when several handlers offer it and none recognises the image. */
const DEFAULT_FORMAT = 'qcow2';
/** Online operations may wait for a LUN to drain and a snapshot to be written (default of --timeout). */
const ONLINE_TIMEOUT_MS = 120_000;

const camel = (name: string) => name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

function formatObject(o: object): string {
  return Object.entries(o)
    .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join('\n');
}

/** Print a result: JSON with --json, else the operation's text, else its value as `key: value` lines. */
export function printResult(result: ControlResult, json?: boolean): void {
  const { value, text } = result;
  if (json || (text === undefined && (typeof value !== 'object' || value === null))) {
    console.log(JSON.stringify(value, null, 2));
  } else if (text !== undefined) {
    if (text !== '') console.log(text);
  } else {
    console.log(formatObject(value as object));
  }
  if (result.exitCode) process.exitCode = result.exitCode;
}

/** The same argument as every offering handler declares it (first declaration wins for the help text). */
function mergedArgs(offers: readonly OfferedOperation[]): { positional: ControlArg[]; options: ControlArg[] } {
  const byName = new Map<string, ControlArg>();
  for (const offer of offers) for (const arg of offer.operation.args ?? []) if (!byName.has(arg.name)) byName.set(arg.name, arg);
  const all = [...byName.values()];
  return { positional: all.filter((a) => a.positional), options: all.filter((a) => !a.positional) };
}

const declaredByAll = (offers: readonly OfferedOperation[], name: string, test: (arg: ControlArg) => boolean) =>
  offers.every((o) => o.operation.args?.some((a) => a.name === name && test(a)));

function addVerb(group: Command, verb: string, offers: readonly OfferedOperation[]): void {
  const name = offers[0]!.name;
  const offline = offers.some((o) => o.operation.modes.includes('offline'));
  const online = offers.some((o) => o.operation.modes.includes('online'));
  const { positional, options } = mergedArgs(offers);
  const handlers = offers.map((o) => o.handlerName).join(', ');
  const cmd = group.command(verb).description(`${offers[0]!.operation.description} [${handlers}]`);
  cmd.argument(online ? '<target>' : '<path>', online ? (offline ? 'image path (absolute) or the name of a served LUN' : 'name of a served LUN') : 'image path');
  for (const arg of positional) {
    const always = offers.every((o) => o.operation.args?.some((a) => a.name === arg.name && a.positional));
    cmd.argument(always ? `<${arg.name}>` : `[${arg.name}]`, arg.description);
  }
  for (const arg of options) {
    const flags = arg.type === 'boolean' ? `--${arg.name}` : `--${arg.name} <${arg.type === 'size' ? 'size' : 'value'}>`;
    const choices = arg.choices ? ` (${arg.choices.join('|')})` : '';
    const sameDefault = arg.default !== undefined && declaredByAll(offers, arg.name, (a) => a.default === arg.default);
    if (declaredByAll(offers, arg.name, (a) => a.required === true)) cmd.requiredOption(flags, arg.description + choices);
    else if (sameDefault) cmd.option(flags, arg.description + choices, arg.default);
    else cmd.option(flags, arg.description + choices + (arg.default !== undefined ? ` (default depends on --format)` : ''));
  }
  if (offline) cmd.option('--format <handler>', `handler that runs it on an image path (offered by: ${handlers}; default: the one recognising the image)`);
  if (online) {
    cmd.option('--socket <path>', 'daemon control socket', DEFAULT_CONTROL_SOCKET);
    cmd.option('--timeout <seconds>', 'on a served LUN: how long to wait for the daemon (0: as long as it takes)', String(ONLINE_TIMEOUT_MS / 1000));
  }
  cmd.option('--json', 'machine-readable output');

  cmd.action(async (target: string, ...rest: unknown[]) => {
    const opts = rest[positional.length] as Record<string, unknown>;
    const raw: Record<string, unknown> = {};
    positional.forEach((arg, index) => {
      if (rest[index] !== undefined) raw[arg.name] = rest[index];
    });
    for (const arg of options) if (opts[camel(arg.name)] !== undefined) raw[arg.name] = opts[camel(arg.name)];
    const json = opts.json === true;
    if (online && (!offline || !isAbsolute(target))) {
      const seconds = Number(opts.timeout);
      if (!Number.isFinite(seconds) || seconds < 0) throw new Error(`--timeout ${String(opts.timeout)}: expected seconds >= 0`);
      const request = { cmd: 'control', lun: target, op: name, args: raw };
      const result = (await controlRequest(String(opts.socket), request, Math.round(seconds * 1000))) as ControlResult;
      return printResult(result, json);
    }
    const offer = await offlineOperation(name, { format: opts.format as string | undefined, path: target, fallback: DEFAULT_FORMAT });
    // Only what this handler declares: an option another handler's variant takes is refused by name.
    const args = coerceControlArgs(offer.operation, raw, (arg) => (arg.positional ? `<${arg.name}>` : `--${arg.name}`));
    const log = createLogger('warn', process.stderr).child({ control: name, handler: offer.handlerName });
    printResult(await offer.operation.run({ mode: 'offline', config: target, options: {}, log }, args), json);
  });
}

/** Add a command group per operation group the known handlers offer. */
export function registerControlCommands(program: Command, offers: readonly OfferedOperation[]): void {
  const taken = new Set(program.commands.map((c) => c.name()));
  const groups = new Map<string, Map<string, OfferedOperation[]>>();
  for (const offer of offers) {
    if (taken.has(offer.group)) continue; // a built-in command of that name wins (validateControl reserves the known ones)
    const verbs = groups.get(offer.group) ?? new Map<string, OfferedOperation[]>();
    verbs.set(offer.verb, [...(verbs.get(offer.verb) ?? []), offer]);
    groups.set(offer.group, verbs);
  }
  for (const [groupName, verbs] of groups) {
    const offeredBy = [...new Set([...verbs.values()].flat().map((o) => o.handlerName))].join(', ');
    const group = program.command(groupName).description(`${GROUP_DESCRIPTIONS[groupName] ?? `${groupName} operations`} (handlers: ${offeredBy})`);
    for (const [verb, verbOffers] of verbs) addVerb(group, verb, verbOffers);
  }
}
