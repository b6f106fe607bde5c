// node bench/secret-scan.ts: what the sidecar's secret and PII scan (common/src/secret-detectors.ts,
// README "Secret and PII blocking") costs per outbound request, in-process on one core: every
// detector over the request's path, its headers and its body prefix (at most 16 KiB), as
// outbound-server.ts runs it before asking for a decision. Shapes of request:
//   get        GET with 8 ordinary headers (one a bearer token that is not a JWT), no body;
//   json1k     POST with a 1 KiB JSON body (an LLM chat call);
//   body16k    POST with a 16 KiB body of mixed text and numbers: the most scanned;
//   secret16k  the same with an AWS key at its end (found; the scan does not stop early).
// Rounds alternate the shapes; the median round per shape is kept. Prints one JSON line.
import { loadavg } from 'node:os';
import { scanRequest, SECRET_SCAN_BODY_BYTES, type ScannedRequest } from '@airlock/common/secret-detectors';

const PER_ROUND = 2_000;
const ROUNDS = 9;

const headers = ['Host', 'api.example.com', 'User-Agent', 'agent/1.2 (node 24)', 'Accept', 'application/json', 'Content-Type', 'application/json', 'Authorization', 'Bearer 3f9c2a7b-5d1e-4c8a-9b0f-6e2d4a1c8b7e', 'X-Request-Id', 'b7e1c9d2-0a4f-4e6b-8c3d-1f2a5b9e7c0d', 'Accept-Encoding', 'gzip, br', 'Traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'];
const chat = JSON.stringify({ model: 'm-1', messages: [{ role: 'user', content: 'Summarize the quarterly figures: revenue 1204.5, cost 877.1, 42 orders on 2026-12-01. '.repeat(10) }], max_tokens: 512 });
const text = 'Order 20261204-77 shipped to the warehouse at 14:05, 3 items, total 129.90 EUR; ticket ref ab12cd34. '.repeat(200).slice(0, SECRET_SCAN_BODY_BYTES);
const aws = ['AKIA', 'Z7Q3XW2PLM4K9TRB'].join('');
const shapes: Record<string, ScannedRequest> = {
  get: { path: '/v1/models?page=2', rawHeaders: headers, body: undefined },
  json1k: { path: '/v1/chat/completions', rawHeaders: headers, body: Buffer.from(chat.slice(0, 1024)) },
  body16k: { path: '/v1/upload', rawHeaders: headers, body: Buffer.from(text) },
  secret16k: { path: '/v1/upload', rawHeaders: headers, body: Buffer.concat([Buffer.from(text.slice(0, SECRET_SCAN_BODY_BYTES - aws.length - 1)), Buffer.from(` ${aws}`)]) },
};
if (scanRequest(shapes.secret16k as ScannedRequest).length !== 1 || scanRequest(shapes.body16k as ScannedRequest).length !== 0) throw new Error('bench shapes do not scan as intended');

let sink = 0;
function round(req: ScannedRequest): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < PER_ROUND; i++) sink += scanRequest(req).length;
  return Number(process.hrtime.bigint() - start) / 1e3 / PER_ROUND;
}
for (const req of Object.values(shapes)) for (let i = 0; i < 3; i++) round(req);
const samples: Record<string, number[]> = {};
for (let r = 0; r < ROUNDS; r++) for (const [name, req] of Object.entries(shapes)) (samples[name] ??= []).push(round(req));
const median = (xs: readonly number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN;
const out: Record<string, unknown> = {};
for (const [name, xs] of Object.entries(samples)) out[`${name}Us`] = median(xs);
console.log(JSON.stringify({ ...out, findings: sink > 0, load: loadavg().map((l) => Number(l.toFixed(2))) }));
