/**
 * The one parser (and formatter) of a TCMU dev_config string. The kernel
 * passes it through untouched; by tcmu-runner's convention it is
 * `<subtype>/<handler config>`:
 *
 *   file//var/lib/lun0.img   -> handler 'file', config '/var/lib/lun0.img'
 *   ram/                     -> handler 'ram',  config ''
 *
 * tcmu-ts adds handler options after the config, each introduced by ';':
 *
 *   file//var/lib/lun0.img;create=1;extend=1
 *   ram/;size=1G
 *
 * and stacks: layers joined by '>', written TOP FIRST, each layer's options
 * belonging to the layer they follow:
 *
 *   crypt/;key=k1>qcow2//srv/a.qcow2;compress=zstd
 *     layer 1 (top):    crypt, config '',               options { key: 'k1' }
 *     layer 2 (bottom): qcow2, config '/srv/a.qcow2',   options { compress: 'zstd' }
 *
 * The kernel's subtype (the runner that serves the device, `user:crypt` in
 * targetcli) is the top layer's handler.
 *
 * Characters: configfs splits its control file on ',' and newline, and
 * limits dev_config to 255 characters; ';' and '>' are our separators. So
 * a handler config or option value can contain none of ',', ';', '>' or a
 * control character: formatting refuses them, and parsing a string with a
 * '>' inside a path reads it as a layer boundary, so the error for a layer
 * that does not parse says that '>' separates layers. targetcli additionally
 * refuses ':' and (being a shell) whitespace in its cfgstring (the part
 * after `<subtype>/`); tcmu-ts itself accepts both (`tcmu-ts lun create`
 * writes configfs directly). Errors name the dev_config, the layer (its
 * position, counted from the top as written, and its handler) and the key.
 */
import { ConfigError } from './config-error.js';

/** The kernel's limit for dev_config (TCMU_CONFIG_LEN - 1). */
export const DEV_CONFIG_MAX_LENGTH = 255;
/** Joins stack layers, top first. */
export const LAYER_SEPARATOR = '>';
/** More layers than this is a mistake, not a design (crypt over qcow2 over file is three). */
export const MAX_STACK_LAYERS = 8;

/** One layer: which handler, what its open() receives as `config`, and its options. */
export interface DevLayer {
  /** Handler (subtype) name. */
  handler: string;
  /** What the handler's open() receives as `config`. */
  config: string;
  /** key=value options that followed the config (null prototype). */
  options: Record<string, string>;
}

/**
 * A parsed dev_config. Its own handler/config/options are the TOP layer's
 * (the kernel's subtype); `layers` lists every layer top first, so a plain
 * dev_config has exactly one.
 */
export interface ParsedDevConfig extends DevLayer {
  layers: DevLayer[];
}

export const HANDLER_NAME = /^[a-z0-9][a-z0-9_-]*$/;
const OPTION_KEY = /^[a-z][a-z0-9_-]*$/;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;
const HANDLER_RULE = "lower-case letters, digits, '-' and '_', starting with a letter or digit";
const KEY_RULE = "lower-case letters, digits, '-' and '_', starting with a letter";

/** The kernel's subtype of a dev_config: the text before the first '/' (the top layer's handler). Never throws. */
export function subtypeOf(devConfig: string): string {
  const slash = devConfig.indexOf('/');
  return slash < 0 ? devConfig : devConfig.slice(0, slash);
}

function controlCharacter(text: string): string | undefined {
  const m = CONTROL_CHARACTER.exec(text);
  return m ? `U+${m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}` : undefined;
}

/** Split `subtype/config;key=value;...[>subtype/config;...]`; throws a ConfigError naming the layer and the key. */
export function parseDevConfig(devConfig: string): ParsedDevConfig {
  const where = `dev_config "${devConfig.length > DEV_CONFIG_MAX_LENGTH ? `${devConfig.slice(0, 40)}...` : devConfig}"`;
  if (devConfig.length > DEV_CONFIG_MAX_LENGTH) {
    throw new ConfigError(`${where} is ${devConfig.length} characters; the kernel allows at most ${DEV_CONFIG_MAX_LENGTH}`);
  }
  if (devConfig.includes(',')) {
    throw new ConfigError(`${where} contains ','; configfs cannot carry commas (separate options with ';')`);
  }
  const control = controlCharacter(devConfig);
  if (control) throw new ConfigError(`${where} contains the control character ${control}`);
  const parts = devConfig.split(LAYER_SEPARATOR);
  if (parts.length > MAX_STACK_LAYERS) {
    throw new ConfigError(`${where} has ${parts.length} layers; at most ${MAX_STACK_LAYERS} are allowed`);
  }
  const layers = parts.map((part, index) => parseLayer(part, index, parts.length, where));
  const top = layers[0]!;
  return { handler: top.handler, config: top.config, options: top.options, layers };
}

/**
 * How every error names a layer: its handler, and in a stack its position
 * counted from the top as written (`index` 0 is the top).
 */
export function layerName(index: number, count: number, handler?: string): string {
  if (count === 1) return `handler "${handler}"`;
  const position = `layer ${index + 1} of ${count}${index === 0 ? ' (top)' : index === count - 1 ? ' (bottom)' : ''}`;
  return handler === undefined ? position : `${position}, handler "${handler}"`;
}

function parseLayer(text: string, index: number, count: number, where: string): DevLayer {
  const stacked = count > 1;
  const separatorHint = stacked ? `; '${LAYER_SEPARATOR}' separates stack layers, so a path or option value cannot contain it` : '';
  if (text === '' && stacked) {
    throw new ConfigError(`${where}: ${layerName(index, count)} is empty (two '${LAYER_SEPARATOR}' in a row, or one at an end)`);
  }
  const slash = text.indexOf('/');
  if (slash < 0) {
    const part = stacked ? `${layerName(index, count)} "${text}" ` : '';
    throw new ConfigError(
      `${where}: ${part}has no '/': expected <handler>/<config>, e.g. "file//var/lib/lun.img" or "ram/"${separatorHint}`,
    );
  }
  const handler = text.slice(0, slash);
  if (!HANDLER_NAME.test(handler)) {
    const part = stacked ? `${layerName(index, count)}: ` : '';
    throw new ConfigError(`${where}: ${part}handler name "${handler}" is invalid (${HANDLER_RULE})${separatorHint}`);
  }
  const [config, ...optionParts] = text.slice(slash + 1).split(';');
  return { handler, config: config!, options: parseOptions(optionParts, `${where}: ${layerName(index, count, handler)}`) };
}

/** Parse `key=value` items; `where` names the source (dev_config and layer) in error messages. */
export function parseOptions(items: readonly string[], where: string): Record<string, string> {
  const options: Record<string, string> = Object.create(null);
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq < 0) {
      throw new ConfigError(`${where}: option "${item}" has no '=': write key=value (e.g. create=1)`);
    }
    const key = item.slice(0, eq);
    if (!OPTION_KEY.test(key)) {
      throw new ConfigError(`${where}: option key "${key}" is invalid (${KEY_RULE})`);
    }
    if (Object.hasOwn(options, key)) {
      throw new ConfigError(`${where}: option "${key}" is given twice`);
    }
    options[key] = item.slice(eq + 1);
  }
  return options;
}

/** What a layer to format may look like: options may be absent. */
export interface DevLayerInput {
  handler: string;
  config: string;
  options?: Readonly<Record<string, string>>;
}

/** Why `text` cannot be carried inside one layer of a dev_config, or undefined. */
function unrepresentable(text: string): string | undefined {
  for (const c of [',', ';', LAYER_SEPARATOR]) if (text.includes(c)) return `contains '${c}'`;
  const control = controlCharacter(text);
  return control ? `contains the control character ${control}` : undefined;
}

/**
 * Build the dev_config for a stack given TOP FIRST — the inverse of
 * parseDevConfig, refusing anything it could not parse back (a ';', ',',
 * '>' or control character in a config or value, a bad handler name or
 * key, too many layers, more than 255 characters).
 */
export function formatDevStack(layers: readonly DevLayerInput[]): string {
  if (layers.length === 0) throw new ConfigError('dev_config: a stack needs at least one layer');
  if (layers.length > MAX_STACK_LAYERS) {
    throw new ConfigError(`dev_config: ${layers.length} layers given; at most ${MAX_STACK_LAYERS} are allowed`);
  }
  const text = layers.map((layer, index) => formatLayer(layer, index, layers.length)).join(LAYER_SEPARATOR);
  if (text.length > DEV_CONFIG_MAX_LENGTH) {
    throw new ConfigError(`dev_config "${text.slice(0, 40)}..." is ${text.length} characters; the kernel allows at most ${DEV_CONFIG_MAX_LENGTH}`);
  }
  return text;
}

function formatLayer(layer: DevLayerInput, index: number, count: number): string {
  const where = `dev_config ${layerName(index, count, layer.handler)}`;
  if (!HANDLER_NAME.test(layer.handler)) throw new ConfigError(`${where}: handler name is invalid (${HANDLER_RULE})`);
  const badConfig = unrepresentable(layer.config);
  if (badConfig) throw new ConfigError(`${where}: config "${layer.config}" ${badConfig}, which dev_config cannot carry`);
  let text = `${layer.handler}/${layer.config}`;
  for (const [key, value] of Object.entries(layer.options ?? {})) {
    if (!OPTION_KEY.test(key)) throw new ConfigError(`${where}: option key "${key}" is invalid (${KEY_RULE})`);
    const badValue = unrepresentable(value);
    if (badValue) throw new ConfigError(`${where}: option ${key}="${value}" ${badValue}, which dev_config cannot carry`);
    text += `;${key}=${value}`;
  }
  return text;
}

/** The dev_config of a single (unstacked) handler: `formatDevStack([{ handler, config, options }])`. */
export function formatDevConfig(handler: string, config: string, options: Readonly<Record<string, string>> = {}): string {
  return formatDevStack([{ handler, config, options }]);
}
