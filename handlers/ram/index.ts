/**
 * The 'ram' handler: `ram/` with the size from the kernel (dev_size) or
 * `ram/;size=1G`. Volatile, thin (discard frees memory), synchronous.
 */
import { ConfigError } from '../../src/backstore/config-error.js';
import { rejectUnknownOptions, sizeOption } from '../../src/backstore/options.js';
import type { Handler, OpenContext } from '../../src/backstore/types.js';
import { RamDisk } from './ram-disk.js';

function lunSize(ctx: OpenContext): number {
  const fromOption = sizeOption('ram', ctx.options, 'size');
  if (ctx.size !== undefined && fromOption !== undefined && ctx.size !== fromOption) {
    throw new ConfigError(`ram: option size=${ctx.options.size} (${fromOption} bytes) disagrees with the LUN size ${ctx.size} bytes`);
  }
  const size = ctx.size ?? fromOption;
  if (size === undefined) throw new ConfigError('ram: the LUN size is unknown: set dev_size or give ;size=<bytes>');
  if (size <= 0 || size % ctx.blockSize !== 0) {
    throw new ConfigError(`ram: size ${size} bytes is not a positive multiple of the block size ${ctx.blockSize}`);
  }
  return size;
}

const ram: Handler = {
  name: 'ram',
  description: 'volatile RAM disk, allocated lazily in 1 MiB chunks',
  open(config, ctx) {
    if (config !== '') {
      throw new ConfigError(`ram: unexpected config "${config}" (ram takes no path: use "ram/" and options like ";size=1G")`);
    }
    rejectUnknownOptions('ram', ctx.options, ['size']);
    return new RamDisk(lunSize(ctx), ctx.blockSize, ctx.readOnly);
  },
};

export default ram;
