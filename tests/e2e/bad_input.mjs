// End-to-end: bad input in the page and its API (Debian's Chromium, the page's default device).
// Every bad file, setting and model folder gets a message that names it and the problem; the
// examples already added and the weights already trained are kept; the page stays usable: it
// trains and predicts right after. A second learner in the same page (one class: refused by
// name) is disposed, and a learner created after `dispose()` works.
//   node tests/e2e/bad_input.mjs   (after scripts/build-web.sh)
import { readFileSync, readdirSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { withPage, png, root, out, fail } from './harness.mjs';

const images = join(root, 'tests', 'fixtures', 'images');
const file = (name, buffer, mimeType = 'image/png') => ({ name, mimeType, buffer });

// A PNG header claiming 20,000 x 20,000 gray pixels, with four rows of data: a few hundred bytes.
const hugePng = png(20000, 20000, 0, Buffer.alloc(20001 * 4));
const goodPng = readFileSync(join(images, 'wide-colour-61x23.png'));
const jpg = readFileSync(join(images, 'tall-colour-37x83.jpg'));
// Each bad file and what its message must say.
const BAD = [
  [file('notes.txt', Buffer.from('not an image'), 'text/plain'), 'not an image file'],
  [file('text.png', Buffer.from('just some text, named .png')), 'unknown image format'],
  [file('empty.png', Buffer.alloc(0)), 'empty file'],
  [file('truncated.png', goodPng.subarray(0, Math.floor(goodPng.length / 2))), 'cannot decode'],
  [file('truncated.jpg', jpg.subarray(0, Math.floor(jpg.length * 2 / 3)), 'image/jpeg'), 'truncated JPEG'],
  [file('huge.png', hugePng), '20000x20000 pixels is too large'],
];
// Good files of every colour type: gray, palette, 16-bit, RGB PNG, RGB and CMYK JPEG.
const GOOD = readdirSync(images).sort().map((n) => file(n, readFileSync(join(images, n)), n.endsWith('.jpg') ? 'image/jpeg' : 'image/png'));

await withPage('bad-input', async ({ url, page, log }) => {
  await page.goto(url);
  await page.waitForFunction(() => window.flopsApp && window.flopsApp.learner, null, { timeout: 60000 });
  const app = (f, arg) => page.evaluate(f, arg);
  // The error message of `train(params)`, or 'no error'.
  const trainError = (params) => page.evaluate((p) => window.flopsApp.learner.train(p).then(() => 'no error', (e) => e.message), params);

  // A small dataset and a short run, so there are examples and trained weights to keep.
  await page.fill('#train-per-class', '8');
  await page.fill('#val-per-class', '4');
  await page.click('#load-animal');
  await page.waitForFunction(() => !document.getElementById('start').disabled, null, { timeout: 30000 });
  const quick = { steps: 6, batch: 8, queriesPerPoint: 4, evalEvery: 0, seed: 3 };
  await app((p) => window.flopsApp.learner.train(p), quick);
  const probe = GOOD[0].buffer.toString('base64');
  const logitsOf = () => app(async (b) => (await window.flopsApp.learner.predict(new Blob([Uint8Array.from(atob(b), (c) => c.charCodeAt(0))]))).logits, probe);
  const trained = await logitsOf();
  const before = await app(() => window.flopsApp.learner.summary());
  log(`trained ${quick.steps} steps on ${before.classes.length} classes; probe logits ${trained.slice(0, 3).map((v) => v.toFixed(3))}`);

  // Bad files, through the page: a new class gets good and bad files in one pick.
  await page.fill('#new-class', 'mixed');
  await page.click('#add-class');
  await page.waitForFunction(() => window.flopsApp.classes.includes('mixed'), null, { timeout: 10000 });
  const input = page.locator('#classes .class').filter({ hasText: 'mixed' }).locator('input[type=file]');
  await input.setInputFiles([...GOOD, ...BAD.map(([f]) => f)]);
  await page.waitForFunction(() => /^Added \d+ images? to mixed/.test(document.getElementById('status').textContent), null, { timeout: 30000 });
  const messages = await page.$$eval('#data-messages li', (li) => li.map((l) => l.textContent));
  for (const [f, says] of BAD) {
    const m = messages.find((x) => x.startsWith(`${f.name}:`));
    log(`${f.name}: ${m}`);
    if (!m || !m.includes(says)) fail(`${f.name}: expected a message with "${says}", got ${m}`);
  }
  const mixed = await app(() => window.flopsApp.learner.summary());
  const count = mixed.counts[mixed.classes.indexOf('mixed')];
  log(`status: ${await page.textContent('#status')}`);
  if (count !== GOOD.length) fail(`mixed has ${count} examples, expected the ${GOOD.length} good ones`);

  // A class with no images (added with the page's button): Start says why it is disabled; the
  // same name again is refused by name; the API names the class. Then absurd settings: each
  // refused by name before training.
  await page.fill('#new-class', 'empty');
  await page.click('#add-class');
  await page.waitForFunction(() => /empty have none|empty has none/.test(document.getElementById('start-reason').textContent), null, { timeout: 10000 });
  const reason = await page.textContent('#start-reason');
  log(`Start disabled: ${reason}`);
  if (!(await page.isDisabled('#start'))) fail('Start is enabled with an empty class');
  await page.fill('#new-class', 'empty');
  await page.click('#add-class');
  await page.waitForFunction(() => /already exists/.test(document.getElementById('status').textContent), null, { timeout: 10000 });
  log(`duplicate class: ${await page.textContent('#status')}`);
  const empty = await trainError({ steps: 2 });
  log(`empty class: ${empty}`);
  if (!empty.includes('`empty` has no examples')) fail(`an empty class gave: ${empty}`);
  await page.click('#classes .class:has(b:text-is("empty")) .remove');
  await page.waitForFunction(() => !document.getElementById('start').disabled, null, { timeout: 10000 });
  for (const [params, says] of [
    [{ batch: 0 }, 'batch must be from 1'],
    [{ steps: -1 }, 'steps must be a whole number from 1 to 1000000, got -1'],
    [{ learningRate: NaN }, 'learningRate must be a finite number, got NaN'],
    [{ clipNorm: Infinity }, 'clipNorm must be a finite number, got Infinity'],
    [{ learningRate: '0.1' }, 'learningRate must be a number above 0 and at most 10, got the text "0.1"'],
    [{ learningRate: 1e6 }, 'learningRate must be above 0 and at most 10'],
    [{ queriesPerPoint: 0 }, 'queriesPerPoint must be from 1'],
    [{ stepz: 10 }, 'unknown field `stepz`'],
  ]) {
    const e = await trainError(params);
    const shown = Object.entries(params).map(([k, v]) => `${k}: ${typeof v === 'string' ? JSON.stringify(v) : v}`).join(', ');
    log(`{${shown}}: ${e}`);
    if (!e.includes(says)) fail(`{${shown}} gave: ${e}`);
  }
  // The same through the form: the page's status names the setting.
  await page.fill('#steps', '-1');
  await page.click('#start');
  await page.waitForFunction(() => /steps must be/.test(document.getElementById('status').textContent), null, { timeout: 10000 });
  log(`form: ${await page.textContent('#status')}`);
  await page.fill('#steps', '200');
  await page.fill('#lr', '');
  await page.click('#start');
  await page.waitForFunction(() => /Learning rate: enter a number/.test(document.getElementById('status').textContent), null, { timeout: 10000 });
  log(`form, empty learning rate: ${await page.textContent('#status')}`);
  await page.fill('#lr', '0.05');


  // Model folders with a missing and a corrupt file: named, and the learner in use stays.
  const modelDir = join(root, 'assets', 'default');
  const cfg = file('config.json', readFileSync(join(modelDir, 'config.json')), 'application/json');
  const pre = file('preprocessor_config.json', readFileSync(join(modelDir, 'preprocessor_config.json')), 'application/json');
  const weights = readFileSync(join(modelDir, 'model.safetensors'));
  const folder = (name, files) => {
    const d = join(out, 'bad-models', name);
    rmSync(d, { recursive: true, force: true }); mkdirSync(d, { recursive: true });
    for (const f of files) writeFileSync(join(d, f.name), f.buffer);
    return d;
  };
  await page.setInputFiles('#model-folder', folder('missing-weights', [cfg, pre]));
  await page.waitForFunction(() => /model\.safetensors/.test(document.getElementById('status').textContent), null, { timeout: 20000 });
  log(`missing weights: ${await page.textContent('#status')}`);
  await page.setInputFiles('#model-folder', folder('corrupt-weights', [cfg, pre, file('model.safetensors', weights.subarray(0, 100000))]));
  await page.waitForFunction(() => /Error: .*(truncated|tensor data ends)/.test(document.getElementById('status').textContent), null, { timeout: 60000 });
  log(`corrupt weights: ${await page.textContent('#status')}`);

  // Nothing was lost: same examples, same trained weights.
  const after = await app(() => window.flopsApp.learner.summary());
  if (JSON.stringify(after.counts) !== JSON.stringify(mixed.counts)) fail(`examples changed: ${after.counts} vs ${mixed.counts}`);
  const still = await logitsOf();
  const drift = Math.max(...still.map((v, i) => Math.abs(v - trained[i])));
  if (!(drift === 0)) fail(`the trained weights changed by ${drift}`);

  // A diverging run (learning rate 10, the most allowed): the guard stops it, says so once with
  // a suggestion, and keeps the weights from before it
  // (step 0 of the run: its 11-class head as made; the page trains and predicts after).
  await page.fill('#lr', '10');
  const errorsBefore = (await app(() => window.flopsApp.errors)).length;
  await page.click('#start');
  await page.waitForFunction(() => /diverged/.test(document.getElementById('train-status').textContent), null, { timeout: 60000 });
  const diverged = (await app(() => window.flopsApp.errors)).slice(errorsBefore);
  log(`diverging run: ${diverged.join(' | ')}; ${await page.textContent('#train-status')}`);
  if (diverged.length !== 1 || !/diverged at step \d+.*kept the weights of step 0.*lower learning rate/.test(diverged[0])) fail(`the divergence was reported as: ${JSON.stringify(diverged)}`);
  await page.fill('#lr', '0.05');

  // Still usable: it trains (with the new class) and predicts.
  const r = await app((p) => window.flopsApp.learner.train(p), quick);
  const p = await app(async (b) => (await window.flopsApp.learner.predict(new Blob([Uint8Array.from(atob(b), (c) => c.charCodeAt(0))]))).top[0], probe);
  log(`trained again: ${r.steps} steps on ${r.backend}; predicts ${JSON.stringify(p)}`);
  if (r.steps !== quick.steps || !p.label) fail('the page did not train and predict after the bad input');

  // A second learner in the same page: one class is refused by name; disposed, then a new one works.
  const second = await app(async () => {
    const { createLearner } = await import('./flops-web.js');
    let l = await createLearner({ device: 'cpu' });
    await l.addClass('only');
    const img = document.querySelector('#classes canvas');
    await l.addExample(0, img.getContext('2d').getImageData(0, 0, img.width, img.height));
    const single = await l.train({ steps: 1 }).then(() => 'no error', (e) => e.message);
    await l.dispose();
    const disposed = await l.summary().then(() => 'no error', (e) => e.message);
    l = await createLearner({ device: 'cpu' });
    const top = (await l.predict(img.getContext('2d').getImageData(0, 0, img.width, img.height))).top[0];
    await l.dispose();
    return { single, disposed, top };
  });
  log(`second learner: ${JSON.stringify(second)}`);
  if (!second.single.includes('at least 2 classes')) fail(`one class gave: ${second.single}`);
  if (!second.disposed.includes('disposed')) fail(`a disposed learner gave: ${second.disposed}`);
  if (!second.top.label) fail('a learner created after dispose() did not predict');
  const errors = await app(() => window.flopsApp.errors);
  log(`page errors recorded (expected, one per bad setting or folder): ${errors.length}`);
});
