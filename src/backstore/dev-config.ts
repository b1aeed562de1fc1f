/**
 * Parsing a TCMU dev_config string. The kernel passes it through untouched;
 * by tcmu-runner's convention it is `<subtype>/<handler config>`:
 *
 *   file//var/lib/lun0.img   -> handler 'file', config '/var/lib/lun0.img'
 *   ram/                     -> handler 'ram',  config ''
 *
 * tcmu-ts adds handler options after the config, each introduced by ';':
 *
 *   file//var/lib/lun0.img;create=1;extend=1
 *   ram/;size=1G
 *
 * ';' was chosen because configfs forbids ',' in dev_config (the control
 * file splits on it) and ';' rarely appears in paths. The consequence: a
 * handler config can never contain ';'.
 */
import { ConfigError } from './config-error.js';

/** The kernel's limit for dev_config (TCMU_CONFIG_LEN - 1). */
export const DEV_CONFIG_MAX_LENGTH = 255;

export interface ParsedDevConfig {
  /** Handler (subtype) name. */
  handler: string;
  /** What the handler's open() receives as `config`. */
  config: string;
  /** key=value options that followed the config. */
  options: Record<string, string>;
}

export const HANDLER_NAME = /^[a-z0-9][a-z0-9_-]*$/;
const OPTION_KEY = /^[a-z][a-z0-9_-]*$/;

/** Split `subtype/config;key=value;...`; throws ConfigError quoting the offending part. */
export function parseDevConfig(devConfig: string): ParsedDevConfig {
  if (devConfig.length > DEV_CONFIG_MAX_LENGTH) {
    throw new ConfigError(`dev_config is ${devConfig.length} characters; the kernel allows at most ${DEV_CONFIG_MAX_LENGTH}`);
  }
  if (devConfig.includes(',')) {
    throw new ConfigError(`dev_config "${devConfig}" contains ','; configfs cannot carry commas (separate options with ';')`);
  }
  const slash = devConfig.indexOf('/');
  if (slash < 0) {
    throw new ConfigError(`dev_config "${devConfig}" has no '/': expected <handler>/<config>, e.g. "file//var/lib/lun.img" or "ram/"`);
  }
  const handler = devConfig.slice(0, slash);
  if (!HANDLER_NAME.test(handler)) {
    throw new ConfigError(
      `dev_config "${devConfig}": handler name "${handler}" is invalid (lower-case letters, digits, '-' and '_', starting with a letter or digit)`,
    );
  }
  const [config, ...optionParts] = devConfig.slice(slash + 1).split(';');
  return { handler, config: config!, options: parseOptions(optionParts, devConfig) };
}

/** Parse `key=value` items; `where` names the source in error messages. */
export function parseOptions(items: readonly string[], where: string): Record<string, string> {
  const options: Record<string, string> = Object.create(null);
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq < 0) {
      throw new ConfigError(`${where}: option "${item}" has no '=': write key=value (e.g. create=1)`);
    }
    const key = item.slice(0, eq);
    if (!OPTION_KEY.test(key)) {
      throw new ConfigError(
        `${where}: option key "${key}" is invalid (lower-case letters, digits, '-' and '_', starting with a letter)`,
      );
    }
    if (Object.hasOwn(options, key)) {
      throw new ConfigError(`${where}: option "${key}" is given twice`);
    }
    options[key] = item.slice(eq + 1);
  }
  return options;
}

/**
 * Build the dev_config string for `handler`, `config` and `options` — the
 * inverse of parseDevConfig, refusing anything it could not parse back
 * (a ';' or ',' in the config or a value, a bad key, more than 255 characters).
 */
export function formatDevConfig(handler: string, config: string, options: Readonly<Record<string, string>> = {}): string {
  const where = `dev_config for handler "${handler}"`;
  if (!HANDLER_NAME.test(handler)) {
    throw new ConfigError(`${where}: handler name is invalid (lower-case letters, digits, '-' and '_', starting with a letter or digit)`);
  }
  if (config.includes(';') || config.includes(',')) {
    throw new ConfigError(`${where}: config "${config}" contains ';' or ',', which dev_config cannot carry`);
  }
  let text = `${handler}/${config}`;
  for (const [key, value] of Object.entries(options)) {
    if (!OPTION_KEY.test(key)) {
      throw new ConfigError(`${where}: option key "${key}" is invalid (lower-case letters, digits, '-' and '_', starting with a letter)`);
    }
    if (value.includes(';') || value.includes(',')) {
      throw new ConfigError(`${where}: option ${key}="${value}" contains ';' or ',', which dev_config cannot carry`);
    }
    text += `;${key}=${value}`;
  }
  if (text.length > DEV_CONFIG_MAX_LENGTH) {
    throw new ConfigError(`${where}: "${text}" is ${text.length} characters; the kernel allows at most ${DEV_CONFIG_MAX_LENGTH}`);
  }
  return text;
}
