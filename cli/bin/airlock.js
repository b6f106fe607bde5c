#!/usr/bin/env node
// Plain JavaScript so that an old Node gets a clear message instead of a syntax error on `.ts`, and
// so that the runtime is set up before the first `.ts` module is loaded.
// A default import: a named one of an API that an old Node lacks would fail before the version check.
import nodeModule from 'node:module';
import { join } from 'node:path';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  console.error(
    `airlock: needs Node 24 or newer, but ${process.execPath} is Node ${process.versions.node}.\n` +
      '  From the repository, run it through npm (`npm start`, `npx airlock`), which uses the pinned Node 24.',
  );
  process.exit(1);
}
// Node's compile cache keeps the type-stripped and compiled code of every module on disk: a warm
// start neither loads the TypeScript stripper (a wasm instance) nor compiles, ~30 MB less RSS per
// process, and a faster start. Under the repository's node_modules, not the shared /tmp (a cache
// others can write is code they can run here); NODE_COMPILE_CACHE overrides the place and
// NODE_DISABLE_COMPILE_CACHE=1 turns it off. A read-only tree just runs without it.
if (process.env.NODE_COMPILE_CACHE === undefined) {
  nodeModule.enableCompileCache(join(import.meta.dirname, '..', '..', 'node_modules', '.cache', 'node-compile-cache'));
}
await import('../src/main.ts');
