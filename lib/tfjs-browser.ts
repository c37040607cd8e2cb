/**
 * `simdnorm/tfjs` (browsers and bundlers): as the Node entry, on simdnorm's browser backends
 * (`await ready()` before the first call, or BatchNorm runs on simdnorm's `js` backend).
 */
import './browser.js';
import { register } from './tfjs/plugin.js';

export * from './tfjs/plugin.js';
export { currentBackend, ready } from './browser.js';

register();
