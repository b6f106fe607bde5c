#!/usr/bin/env node
// Plain JavaScript so that an old Node gets a clear message instead of a syntax error on `.ts`.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  console.error(
    `airlock: needs Node 24 or newer, but ${process.execPath} is Node ${process.versions.node}.\n` +
      '  From the repository, run it through npm (`npm start`, `npx airlock`), which uses the pinned Node 24.',
  );
  process.exit(1);
}
await import('../src/main.ts');
