/**
 * `tcmu-ts handlers`: which handlers this build has, and which control
 * operations each offers (offline on an image path, online on a served
 * LUN), with their arguments, as the handlers themselves describe them.
 */
import type { Command } from 'commander';
import type { OfferedOperation } from '../backstore/control-registry.js';
import type { NamedHandler } from '../backstore/registry.js';
import type { ControlArg } from '../backstore/types.js';

function describeArg(arg: ControlArg): string {
  const head = arg.positional ? `<${arg.name}>` : arg.type === 'boolean' ? `--${arg.name}` : `--${arg.name} <${arg.type}>`;
  const notes = [
    arg.required && !arg.positional ? 'required' : undefined,
    arg.choices ? arg.choices.join('|') : undefined,
    arg.default !== undefined ? `default ${arg.default}` : undefined,
  ].filter(Boolean);
  return `${head}  ${arg.description}${notes.length ? ` (${notes.join(', ')})` : ''}`;
}

/** The listing as text: one block per handler, its operations indented below it. */
export function formatHandlers(handlers: readonly NamedHandler[], offers: readonly OfferedOperation[]): string {
  const lines: string[] = [];
  const nameWidth = Math.max(0, ...handlers.map(({ name, handler }) => name.length + (handler.layer ? 8 : 0)));
  const opWidth = Math.max(0, ...offers.map((o) => o.group.length + o.verb.length + 1));
  for (const { name, handler } of handlers) {
    lines.push(`${`${name}${handler.layer ? ' (layer)' : ''}`.padEnd(nameWidth)}  ${handler.description ?? ''}`.trimEnd());
    for (const offer of offers.filter((o) => o.handlerName === name)) {
      const op = offer.operation;
      lines.push(`  ${`${offer.group} ${offer.verb}`.padEnd(opWidth)}  ${op.description} [${op.modes.join(', ')}]`);
      for (const arg of op.args ?? []) lines.push(`  ${''.padEnd(opWidth)}    ${describeArg(arg)}`);
    }
  }
  return lines.join('\n');
}

/** The listing as JSON (no functions): what `tcmu-ts handlers --json` prints. */
export function handlersAsJson(handlers: readonly NamedHandler[], offers: readonly OfferedOperation[]): unknown {
  return handlers.map(({ name, handler }) => ({
    name,
    description: handler.description,
    layer: handler.layer === true,
    operations: offers
      .filter((o) => o.handlerName === name)
      .map((o) => ({ name: o.name, description: o.operation.description, modes: o.operation.modes, quiesce: o.operation.quiesce !== false, args: o.operation.args ?? [] })),
  }));
}

export function registerHandlers(program: Command, load: () => Promise<{ handlers: NamedHandler[]; offers: OfferedOperation[] }>): void {
  program
    .command('handlers')
    .description('list the built-in handlers and the control operations each offers')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      const { handlers, offers } = await load();
      console.log(o.json ? JSON.stringify(handlersAsJson(handlers, offers), null, 2) : formatHandlers(handlers, offers));
    });
}
