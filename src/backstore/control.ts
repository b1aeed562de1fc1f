/**
 * Handler control surfaces (Handler.control, see ./types.ts): checking that
 * a handler's declaration is well formed when it is loaded, and turning the
 * raw arguments a user typed (CLI strings) or sent (control-socket JSON)
 * into the typed values an operation receives. Both the CLI and the daemon
 * go through `coerceControlArgs`, so an operation trusts its arguments the
 * way a backstore trusts its ranges.
 */
import { parseSize } from '../config/size.js';
import { ConfigError } from './config-error.js';
import type { ControlArg, ControlArgs, ControlMode, ControlOperation, HandlerControl } from './types.js';

/** `<group>.<verb>`, both kebab-case: 'snapshot.create', 'image.info'. */
const OPERATION_NAME = /^([a-z][a-z0-9-]*)\.([a-z][a-z0-9-]*)$/;
const ARG_NAME = /^[a-z][a-z0-9-]*$/;
const MODES: readonly ControlMode[] = ['offline', 'online'];
const ARG_TYPES: readonly ControlArg['type'][] = ['string', 'size', 'integer', 'boolean'];
/**
 * Top-level CLI commands a group would shadow. 'format' is the option the
 * CLI adds to pick the handler, so no argument may take that name.
 */
const RESERVED_GROUPS = new Set(['serve', 'lun', 'status', 'handlers', 'help']);
const RESERVED_ARGS = new Set(['format', 'socket', 'timeout', 'json', 'help']);
/** A declaration larger than this is a mistake, not a richer CLI. */
const MAX_OPERATIONS = 64;
const MAX_ARGS = 32;

export interface OperationName {
  group: string;
  verb: string;
}

/** Split 'snapshot.create'; undefined if it is not a valid operation name. */
export function splitOperationName(name: string): OperationName | undefined {
  const m = OPERATION_NAME.exec(name);
  return m ? { group: m[1]!, verb: m[2]! } : undefined;
}

/** The operation `name` of a control surface, if it declares one (own properties only). */
export function operationOf(control: HandlerControl | undefined, name: string): ControlOperation | undefined {
  if (!control || !Object.hasOwn(control.operations, name)) return undefined;
  return control.operations[name];
}

function checkArg(arg: unknown, where: string, seen: Set<string>): void {
  if (arg === null || typeof arg !== 'object') throw new ConfigError(`${where}: an argument is not an object`);
  const a = arg as Partial<Record<keyof ControlArg, unknown>>;
  if (typeof a.name !== 'string' || !ARG_NAME.test(a.name)) {
    throw new ConfigError(`${where}: argument name ${JSON.stringify(a.name)} is invalid (kebab-case, starting with a letter)`);
  }
  const at = `${where}, argument "${a.name}"`;
  if (RESERVED_ARGS.has(a.name)) throw new ConfigError(`${at}: the name is reserved for the CLI (${[...RESERVED_ARGS].join(', ')})`);
  if (seen.has(a.name)) throw new ConfigError(`${at}: declared twice`);
  seen.add(a.name);
  if (typeof a.description !== 'string') throw new ConfigError(`${at}: no "description" string`);
  if (!ARG_TYPES.includes(a.type as ControlArg['type'])) throw new ConfigError(`${at}: "type" must be one of ${ARG_TYPES.join(', ')}`);
  for (const flag of ['required', 'positional'] as const) {
    if (a[flag] !== undefined && typeof a[flag] !== 'boolean') throw new ConfigError(`${at}: "${flag}" must be a boolean`);
  }
  if (a.positional && a.type === 'boolean') throw new ConfigError(`${at}: a boolean cannot be positional`);
  if (a.positional && a.default !== undefined) throw new ConfigError(`${at}: a positional argument is required and takes no default`);
  if (a.choices !== undefined) {
    if (a.type !== 'string') throw new ConfigError(`${at}: "choices" only applies to type string`);
    if (!Array.isArray(a.choices) || a.choices.length === 0 || !a.choices.every((c) => typeof c === 'string')) {
      throw new ConfigError(`${at}: "choices" must be a non-empty list of strings`);
    }
  }
  if (a.default !== undefined) {
    if (typeof a.default !== 'string') throw new ConfigError(`${at}: "default" must be a string, spelled as a user would type it`);
    coerceOne(a as ControlArg, a.default, `${at} default`);
  }
}

function checkOperation(op: unknown, where: string): void {
  if (op === null || typeof op !== 'object') throw new ConfigError(`${where}: not an object`);
  const o = op as Partial<Record<keyof ControlOperation, unknown>>;
  if (typeof o.description !== 'string' || o.description === '') throw new ConfigError(`${where}: no "description"`);
  if (typeof o.run !== 'function') throw new ConfigError(`${where}: no "run" function`);
  if (!Array.isArray(o.modes) || o.modes.length === 0 || !o.modes.every((m) => MODES.includes(m))) {
    throw new ConfigError(`${where}: "modes" must list 'offline' and/or 'online'`);
  }
  if (o.quiesce !== undefined && typeof o.quiesce !== 'boolean') throw new ConfigError(`${where}: "quiesce" must be a boolean`);
  if (o.changesMedium !== undefined && typeof o.changesMedium !== 'boolean') throw new ConfigError(`${where}: "changesMedium" must be a boolean`);
  if (o.args !== undefined) {
    if (!Array.isArray(o.args) || o.args.length > MAX_ARGS) throw new ConfigError(`${where}: "args" must be a list of at most ${MAX_ARGS}`);
    const seen = new Set<string>();
    let optionSeen = false;
    for (const arg of o.args) {
      checkArg(arg, where, seen);
      // Positional arguments come first, so the CLI reads them in declared order.
      if ((arg as ControlArg).positional && optionSeen) throw new ConfigError(`${where}: positional argument "${(arg as ControlArg).name}" follows an option; list positional ones first`);
      if (!(arg as ControlArg).positional) optionSeen = true;
    }
  }
}

/** Check a handler's `control` declaration; `source` names the handler in errors. */
export function validateControl(value: unknown, source: string): HandlerControl {
  if (value === null || typeof value !== 'object') throw new ConfigError(`${source}: "control" must be an object with "operations"`);
  const control = value as Partial<Record<keyof HandlerControl, unknown>>;
  const ops = control.operations;
  if (ops === null || typeof ops !== 'object' || Array.isArray(ops)) throw new ConfigError(`${source}: "control.operations" must be an object`);
  const names = Object.keys(ops);
  if (names.length > MAX_OPERATIONS) throw new ConfigError(`${source}: ${names.length} control operations; at most ${MAX_OPERATIONS}`);
  for (const name of names) {
    const parts = splitOperationName(name);
    if (!parts) throw new ConfigError(`${source}: control operation name "${name}" is invalid (expected <group>.<verb>, e.g. snapshot.create)`);
    if (RESERVED_GROUPS.has(parts.group)) throw new ConfigError(`${source}: control operation "${name}": group "${parts.group}" is a tcmu-ts command`);
    checkOperation((ops as Record<string, unknown>)[name], `${source}: control operation "${name}"`);
  }
  if (control.probe !== undefined && typeof control.probe !== 'function') throw new ConfigError(`${source}: "control.probe" must be a function`);
  return value as HandlerControl;
}

/** `label` names the argument as the user spelled it ('--size' on the CLI, 'size' over the socket). */
function coerceOne(arg: ControlArg, value: unknown, label: string): string | number | boolean {
  switch (arg.type) {
    case 'boolean':
      if (typeof value === 'boolean') return value;
      if (value === 'true' || value === '1') return true;
      if (value === 'false' || value === '0') return false;
      throw new ConfigError(`${label}: expected true or false, got ${JSON.stringify(value)}`);
    case 'size':
      if (typeof value !== 'string' && typeof value !== 'number') throw new ConfigError(`${label}: expected a size, got ${typeof value}`);
      try {
        return parseSize(value, label);
      } catch (err) {
        throw new ConfigError((err as Error).message);
      }
    case 'integer': {
      const n = typeof value === 'number' ? value : typeof value === 'string' && /^-?\d{1,15}$/.test(value) ? Number(value) : NaN;
      if (!Number.isSafeInteger(n)) throw new ConfigError(`${label}: expected an integer, got ${JSON.stringify(value)}`);
      return n;
    }
    case 'string':
      if (typeof value !== 'string') throw new ConfigError(`${label}: expected a string, got ${typeof value}`);
      if (arg.choices && !arg.choices.includes(value)) {
        throw new ConfigError(`${label}: "${value}" is not one of ${arg.choices.join(', ')}`);
      }
      return value;
  }
}

/**
 * Check `raw` against the operation's arguments: unknown names, missing
 * required ones and malformed values are refused naming the argument;
 * defaults are filled in; sizes become byte counts.
 */
export function coerceControlArgs(
  op: ControlOperation,
  raw: Readonly<Record<string, unknown>>,
  label: (arg: ControlArg) => string = (arg) => arg.name,
): ControlArgs {
  const declared = op.args ?? [];
  for (const key of Object.keys(raw)) {
    if (raw[key] !== undefined && !declared.some((a) => a.name === key)) {
      const known = declared.map((a) => a.name).join(', ') || 'none';
      throw new ConfigError(`unknown argument "${key}" (this operation takes: ${known})`);
    }
  }
  const args: Record<string, string | number | boolean | undefined> = Object.create(null);
  for (const arg of declared) {
    const given = Object.hasOwn(raw, arg.name) ? raw[arg.name] : undefined;
    const value = given ?? arg.default;
    if (value === undefined) {
      if (arg.required || arg.positional) throw new ConfigError(`${label(arg)} is required (${arg.description})`);
      if (arg.type === 'boolean') args[arg.name] = false;
      continue;
    }
    args[arg.name] = coerceOne(arg, value, label(arg));
  }
  return args;
}
