// Screenshots of the page in fixed states, for notes and reviews (not part of `make test`):
//   node tests/e2e/screens.mjs [repo-root] [prefix]
// serves `repo-root`'s web/ (default: this checkout; an older one shows "before"), adds one
// class (Start disabled), then loads Animal-Shape and runs the default training; writes
// target/e2e/screens/<prefix>-{one-class,default-run}.png under this checkout.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { root } from './harness.mjs';

const site = resolve(process.argv[2] || root);
const prefix = process.argv[3] || 'after';
const dir = join(root, 'target', 'e2e', 'screens');
mkdirSync(dir, { recursive: true });
const server = spawn(process.execPath, [join(site, 'web', 'serve.mjs'), '0'], { cwd: site, stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise((res) => server.stdout.on('data', (d) => { const m = /http:\/\/127\.0\.0\.1:\d+\//.exec(String(d)); if (m) res(m[0]); }));
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--enable-unsafe-webgpu'] });
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  await page.goto(url);
  await page.waitForFunction(() => window.flopsApp && window.flopsApp.learner, null, { timeout: 120000 });
  await page.fill('#new-class', 'cat');
  await page.click('#add-class');
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(dir, `${prefix}-one-class.png`), fullPage: true });
  await page.click('#load-animal');
  await page.waitForFunction(() => !document.getElementById('start').disabled, null, { timeout: 60000 });
  await page.click('#start');
  await page.waitForFunction(() => window.flopsApp.steps.length >= 3 || window.flopsApp.done, null, { timeout: 900000 });
  console.log(`status at step ${await page.evaluate(() => window.flopsApp.steps.length)}: ${await page.textContent('#train-status')}`);
  await page.waitForFunction(() => window.flopsApp.done || window.flopsApp.errors.length, null, { timeout: 900000 });
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(dir, `${prefix}-default-run.png`), fullPage: true });
  console.log(`wrote ${join(dir, prefix)}-{one-class,default-run}.png from ${url} (${site})`);
} finally {
  await browser.close();
  server.kill();
}
