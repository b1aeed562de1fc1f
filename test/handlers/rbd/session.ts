/**
 * An image of the test cluster opened on a session of its own, made from
 * dev_config options through the parser as the handler makes it, for the
 * rbd.test.ts checks that look at librbd's behaviour under one setting.
 */
import { RbdSession, type RbdImage } from '../../../handlers/rbd/librbd.js';
import { connectOptions, parseRbdSpec } from '../../../handlers/rbd/spec.js';
import { CONF } from './cluster.js';

/** Run `body` on `image` opened with `options` (conf is the test cluster's); close image and session after. */
export function withImage<T>(image: string, options: Readonly<Record<string, string>>, body: (img: RbdImage) => Promise<T>): Promise<T> {
  return RbdSession.withImage(connectOptions(parseRbdSpec(`rbd/${image}`, { conf: CONF, ...options })), image, false, body);
}
