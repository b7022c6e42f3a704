// `npm install` runs this (package.json "install"): builds native/build/Release/zstd_prefix.node and, on
// Linux, agent_front.node with npm's own node-gyp. It never fails the install: where they cannot be built
// (no C compiler), Bulwark builds incrementals through zstd-napi instead (src-main/engine/zstd-prefix.ts
// says which, at publish time) and its file threads serve on the fast path (agent-front.ts; the server says so).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// npm hands its lifecycle scripts the path of the node-gyp it bundles; run by hand, the one beside npm.
const nodeGyp =
  process.env.npm_config_node_gyp ?? path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
const args = [nodeGyp, 'rebuild', `--jobs=${process.env.JOBS ?? 'max'}`];
// node-gyp takes Node's headers from --nodedir, else downloads them from nodejs.org (out of reach offline).
// Node installed under a prefix (Debian's and NodeSource's packages, the official tarballs) has them
// in <prefix>/include/node: use those unless npm is configured with a nodedir already.
const prefix = path.dirname(path.dirname(process.execPath));
if (!process.env.npm_config_nodedir && fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);

const built = spawnSync(process.execPath, args, { cwd: here, stdio: 'inherit' });
if (built.status !== 0) {
  const why = built.error ? built.error.message : `node-gyp exited with ${built.status ?? built.signal}`;
  console.warn(`bulwark: native/zstd_prefix.node and agent_front.node were not built (${why}); incrementals will be built through zstd-napi, with more memory, and agents served without the native front`);
}
