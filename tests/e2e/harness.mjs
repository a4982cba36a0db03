// What every end-to-end script shares: the page's own server, Debian's Chromium with WebGPU
// (SwiftShader via --enable-unsafe-webgpu) in a fresh profile, a watch on requests that leave
// the page's origin, and timestamped logging.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { crc32, deflateSync } from 'node:zlib';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const out = join(root, 'target', 'e2e');
mkdirSync(out, { recursive: true });

/**
 * An 8-bit PNG of `width` x `height` (`colorType` 0 gray, 2 RGB) from raw filtered scanlines
 * (`raw`: each row a filter byte then its samples), for crafted test images.
 */
export function png(width, height, colorType, raw) {
  const chunk = (type, body) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(body.length);
    const tb = Buffer.concat([Buffer.from(type), body]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(tb));
    return Buffer.concat([len, tb, crc]);
  };
  const ihdr = Buffer.alloc(13); ihdr.writeUInt32BE(width, 0); ihdr.writeUInt32BE(height, 4); ihdr[8] = 8; ihdr[9] = colorType;
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 1 })), chunk('IEND', Buffer.alloc(0))]);
}

const t0 = Date.now();
export const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
export const fail = (msg) => { throw new Error(msg); };

/**
 * Runs `body({ url, page, context, log })` against the served page and fails if any request
 * left the origin; everything is torn down afterwards. `serverArgs`: more arguments of
 * web/serve.mjs (`--mount /prefix/=dir`).
 */
export async function withPage(name, body, { serverArgs = [] } = {}) {
  const log = (...a) => console.log(`[${name} ${elapsed()}]`, ...a);
  const server = spawn(process.execPath, [join(root, 'web', 'serve.mjs'), '0', join(root, 'target', 'web', 'wasm'), ...serverArgs], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((res, rej) => {
    server.stdout.on('data', (d) => { const m = /http:\/\/127\.0\.0\.1:\d+\//.exec(String(d)); if (m) res(m[0]); });
    server.on('exit', (c) => rej(new Error(`server exited ${c}`)));
  });
  const origin = new URL(url).origin;
  const profile = mkdtempSync(join(tmpdir(), 'flops-e2e-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-gpu-sandbox', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-quic', '--enable-unsafe-webgpu'],
    });
    const foreign = [];
    const watch = (req) => { const u = req.url(); if (!u.startsWith(origin) && !u.startsWith('data:') && !u.startsWith('blob:')) foreign.push(u); };
    context.on('request', watch); // pages and their workers
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (m) => { if (m.type() === 'error') log('console error:', m.text()); });
    page.on('pageerror', (e) => log('page error:', e.message));
    await body({ url, page, context, log });
    if (foreign.length) fail(`requests left the origin: ${foreign.join(', ')}`);
    log(`PASS (${elapsed()})`);
  } finally {
    if (context) await context.close();
    server.kill();
    rmSync(profile, { recursive: true, force: true });
  }
}

/**
 * The used JS heap of the page's worker whose URL contains `urlPart`, in bytes, through the
 * DevTools protocol (Chromium gives workers no `performance.memory`); null if it cannot be read.
 */
export async function workerHeap(page, urlPart = 'worker.js') {
  const cdp = await page.context().newCDPSession(page);
  try {
    const { targetInfos } = await cdp.send('Target.getTargets');
    const w = targetInfos.find((t) => t.type === 'worker' && t.url.includes(urlPart));
    if (!w) return null;
    const { sessionId } = await cdp.send('Target.attachToTarget', { targetId: w.targetId, flatten: false });
    const reply = new Promise((res) => cdp.on('Target.receivedMessageFromTarget', (e) => {
      const m = JSON.parse(e.message);
      if (m.id === 1) res(m.result);
    }));
    await cdp.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id: 1, method: 'Runtime.getHeapUsage' }) });
    const r = await Promise.race([reply, new Promise((res) => setTimeout(() => res(null), 10000))]);
    await cdp.send('Target.detachFromTarget', { sessionId }).catch(() => {});
    return r ? r.usedSize : null;
  } finally {
    await cdp.detach().catch(() => {});
  }
}
