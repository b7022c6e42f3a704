// Bulwark's own Node-API modules (native/*.c), built by `npm install` (native/build.js) into
// native/build/Release/. Each is optional: where it was not built or does not load, its caller
// serves without it and says why.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const loaded = new Map<string, unknown>();

/** native/build/Release/`name`.node, loaded once; or why it cannot be used here. */
export function loadAddon<T>(name: string): T | Error {
  if (!loaded.has(name)) {
    // The package's root (out/main/engine/ when built, src-main/engine/ in tests), where native/ is.
    let root = path.dirname(fileURLToPath(import.meta.url));
    while (!fs.existsSync(path.join(root, 'package.json')) && path.dirname(root) !== root) root = path.dirname(root);
    const file = path.join(root, 'native', 'build', 'Release', `${name}.node`);
    try {
      loaded.set(name, createRequire(import.meta.url)(file));
    } catch (cause) {
      loaded.set(name, new Error(fs.existsSync(file) ? `${file} does not load: ${(cause as Error).message}` : `${file} was not built at npm install`, { cause }));
    }
  }
  return loaded.get(name) as T | Error;
}
