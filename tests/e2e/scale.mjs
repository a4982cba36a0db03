// End-to-end at scale: 2,000 photos-sized images (160 x 120 RGB PNGs, 10 classes of 200) picked
// as one folder of class folders in the page (which adds them through the API's addExamples),
// then trained, predicted and exported. Logs the time and the memory: the page's JS heap, the
// worker's JS heap (through the DevTools protocol), its wasm memory, which holds every example,
// and the bytes of the tensors on the WebGPU device. Examples must be kept at the
// model's input size, not as decoded originals: 2,000 decoded originals are 115 MB, so the wasm
// memory may grow by at most 32 MB.
//   node tests/e2e/scale.mjs   (after scripts/build-web.sh)
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withPage, png, out, fail, workerHeap } from './harness.mjs';

const CLASSES = 10, PER_CLASS = 200, W = 160, H = 120, MAX_WASM_GROWTH = 32 << 20;

/** An RGB PNG: a smooth background and a bright disc whose place and colour depend on the class. */
function image(cls, i) {
  const raw = Buffer.alloc((W * 3 + 1) * H);
  const cx = 30 + ((cls * 37 + i * 7) % 100), cy = 25 + ((cls * 23 + i * 11) % 70), r = 12 + (cls % 5) * 3;
  for (let y = 0; y < H; y++) {
    raw[y * (W * 3 + 1)] = 0;
    for (let x = 0; x < W; x++) {
      const o = y * (W * 3 + 1) + 1 + x * 3;
      const inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r;
      raw[o] = inside ? 40 + cls * 20 : (x + i) % 64;
      raw[o + 1] = inside ? 250 - cls * 15 : (y * 2) % 64;
      raw[o + 2] = inside ? 128 : 32;
    }
  }
  return png(W, H, 2, raw);
}

const dir = join(out, 'scale-data');
rmSync(dir, { recursive: true, force: true });
for (let c = 0; c < CLASSES; c++) {
  mkdirSync(join(dir, `class-${c}`), { recursive: true });
  for (let i = 0; i < PER_CLASS; i++) writeFileSync(join(dir, `class-${c}`, `${i}.png`), image(c, i));
}

await withPage('scale', async ({ url, page, log }) => {
  await page.goto(url);
  await page.waitForFunction(() => window.flopsApp && window.flopsApp.learner, null, { timeout: 60000 });
  // The worker's heap through the DevTools protocol (workers have no performance.memory); the
  // peak is the largest of the samples taken.
  const memory = async () => {
    const m = await page.evaluate(async () => ({ page: performance.memory ? performance.memory.usedJSHeapSize : null, ...(await window.flopsApp.learner.memory()) }));
    return { ...m, jsHeapBytes: await workerHeap(page) };
  };
  const mb = (b) => (b == null ? 'n/a' : `${(b / 2 ** 20).toFixed(1)} MB`);
  const m0 = await memory();
  const t0 = Date.now();
  await page.setInputFiles('#data-folder', dir);
  await page.waitForFunction(() => /^Added \d+ images in \d+ classes from the folder/.test(document.getElementById('status').textContent), null, { timeout: 300000 });
  const addSecs = (Date.now() - t0) / 1000;
  const m1 = await memory();
  const s = await page.evaluate(() => window.flopsApp.learner.summary());
  log(`added ${s.counts.reduce((a, b) => a + b, 0)} images in ${s.classes.length} classes in ${addSecs.toFixed(1)} s; page heap ${mb(m0.page)} -> ${mb(m1.page)}, worker heap ${mb(m0.jsHeapBytes)} -> ${mb(m1.jsHeapBytes)}, wasm ${mb(m0.wasmBytes)} -> ${mb(m1.wasmBytes)}`);
  if (s.classes.length !== CLASSES || s.counts.some((n) => n !== PER_CLASS)) fail(`expected ${CLASSES} classes of ${PER_CLASS}: ${JSON.stringify(s)}`);
  if (m1.wasmBytes - m0.wasmBytes > MAX_WASM_GROWTH) fail(`the wasm memory grew by ${mb(m1.wasmBytes - m0.wasmBytes)} for ${CLASSES * PER_CLASS} images: examples are not kept at input size`);

  const t1 = Date.now();
  const r = await page.evaluate(() => window.flopsApp.learner.train({ steps: 40, batch: 32, evalEvery: 0, seed: 1 }));
  const m2 = await memory();
  log(`trained ${r.steps} steps on ${r.backend} in ${((Date.now() - t1) / 1000).toFixed(1)} s: validation accuracy ${(100 * r.validation.accuracy).toFixed(1)}% on ${r.validation.size} held-out images (chance 10%); wasm ${mb(m2.wasmBytes)}, worker heap ${mb(m2.jsHeapBytes)}, page heap ${mb(m2.page)}`);
  if (r.steps !== 40 || !(r.validation.size >= 300)) fail(`unexpected run: ${JSON.stringify(r)}`);
  const p = await page.evaluate(async () => { const c = document.querySelector('#classes canvas'); return (await window.flopsApp.learner.predict(c.getContext('2d').getImageData(0, 0, c.width, c.height))).top[0]; });
  const e = await page.evaluate(async () => { const f = await window.flopsApp.learner.exportModel(); return { config: f.config.length, weights: f.weights.length, labels: JSON.parse(new TextDecoder().decode(f.config)).id2label }; });
  log(`predicts ${JSON.stringify(p)}; export: ${e.weights} B of weights, labels ${Object.values(e.labels).join(', ')}`);
  const m3 = await memory();
  const peak = (k) => Math.max(...[m0, m1, m2, m3].map((m) => m[k] ?? 0));
  const gpu = m3.gpu ? `GPU tensors ${mb(m3.gpu.liveBytes)} live, ${mb(m3.gpu.peakBytes)} at peak (training ran on ${r.backend})` : 'no WebGPU device';
  log(`peak of the samples: worker heap ${mb(peak('jsHeapBytes'))}, page heap ${mb(peak('page'))}, wasm ${mb(peak('wasmBytes'))}; ${gpu}`);
  if (m3.jsHeapBytes == null) fail('the worker heap could not be read');
  if (!p.label || Object.keys(e.labels).length !== CLASSES) fail('predict or export failed at scale');
});
