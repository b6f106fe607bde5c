// Regenerates proto/gen from proto/**/*.proto with buf and ts-proto (options in proto/buf.gen.yaml).
// --check: generates into a temporary folder and fails when the committed proto/gen differs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const protoDir = join(root, 'proto');
const buf = join(root, 'node_modules/.bin/buf');

function listFiles(dir, prefix = '') {
  return readdirSync(join(dir, prefix))
    .flatMap((name) => {
      const rel = join(prefix, name);
      return statSync(join(dir, rel)).isDirectory() ? listFiles(dir, rel) : [rel];
    })
    .sort();
}

/** Runs `buf generate` with the plugin path made absolute, so the output can go anywhere. */
function generate(outBase) {
  const template = readFileSync(join(protoDir, 'buf.gen.yaml'), 'utf8').replace(
    '../node_modules/.bin/protoc-gen-ts_proto',
    join(root, 'node_modules/.bin/protoc-gen-ts_proto'),
  );
  const templateFile = join(mkdtempSync(join(tmpdir(), 'airlock-buf-')), 'buf.gen.yaml');
  writeFileSync(templateFile, template);
  rmSync(join(outBase, 'gen'), { recursive: true, force: true });
  execFileSync(buf, ['generate', '--template', templateFile, '--output', outBase], { cwd: protoDir, stdio: 'inherit' });
}

if (!process.argv.includes('--check')) {
  generate(protoDir);
} else {
  const tmp = mkdtempSync(join(tmpdir(), 'airlock-proto-'));
  try {
    generate(tmp);
    const committed = join(protoDir, 'gen');
    const fresh = join(tmp, 'gen');
    const names = [...new Set([...listFiles(committed), ...listFiles(fresh)])];
    const stale = names.filter((f) => {
      try {
        return readFileSync(join(committed, f), 'utf8') !== readFileSync(join(fresh, f), 'utf8');
      } catch {
        return true;
      }
    });
    if (stale.length > 0) {
      console.error(`proto/gen is stale (${stale.join(', ')}): run \`npm run proto:gen\` and commit the result.`);
      process.exit(1);
    }
    console.log('proto/gen is up to date.');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
