// The flops-web page: plain ES modules over the public API in flops-web.js.
import { createLearner, readModelFiles } from './flops-web.js';
import { lineChart, allocationChart, confusionChart, imageCanvas } from './charts.js';
import { zip } from './zip.js';

const $ = (id) => document.getElementById(id);
const app = { learner: null, classes: [], steps: [], evaluations: [], lastStep: null, done: null, training: false, errors: [], notices: [] };
window.flopsApp = app; // for the end-to-end test and the console

function status(text) { $('status').textContent = text; }
function fail(e) {
  const msg = e && e.message ? e.message : String(e);
  app.errors.push(msg); status(`Error: ${msg}`); console.error(e);
}

function onProgress(e) {
  switch (e.status) {
    case 'loading': status(`Loading ${e.file}…`); break;
    case 'calibrating': status(`Timing a short forward on each device to choose where to train (device: ${e.device})…`); break;
    case 'ready': status('Ready.'); break;
    case 'error': fail(e.error); break;
    case 'deviceLost': app.notices.push(e.message); showDevice(e.device); $('device').value = 'cpu'; status(e.message); break;
    case 'training':
      app.trainSize = e.trainSize;
      $('train-status').textContent = `Training ${e.tunedParameters.toLocaleString()} parameters on ${e.backend}: the first steps also compute the frozen features of the ${e.trainSize.toLocaleString()} training images they meet (kept after, so later steps are faster)…`;
      break;
    default: break;
  }
}

// ---- device and model ---------------------------------------------------------------------
function showDevice(d) {
  const p = $('device-panel');
  p.dataset.webgpu = String(d.webgpu);
  p.dataset.training = d.trainingBackend;
  if (!d.webgpu) {
    p.innerHTML = `<strong>No WebGPU here.</strong> ${esc(d.reason || '')}. Training, evaluation and prediction run on the CPU (WebAssembly SIMD) instead. Training runs on <b id="training-backend">${esc(d.trainingBackend)}</b>.<br>${calibrationText(d)}`;
    return;
  }
  const a = d.adapter; const l = d.limits; const b = d.browserAdapter || {};
  const name = [b.vendor, b.architecture, b.device, b.description].filter(Boolean).join(' ') || a.name || '(the browser gives no name)';
  const lost = d.lost ? `<strong class="warning" id="device-lost">The WebGPU device was lost</strong> (${esc(d.lost)}): training, validation and predictions moved to the CPU; the examples and the trained weights were kept.<br>` : '';
  p.innerHTML = `${lost}<strong>WebGPU adapter:</strong> ${esc(name)} — ${esc(a.deviceType)}${b.isFallbackAdapter ? ' (software fallback adapter)' : ''}, ${esc(a.backend)}${b.features ? `; features: ${esc(b.features.join(', ') || 'none')}` : ''}<br>
  Limits: ${l.maxComputeInvocationsPerWorkgroup} invocations/workgroup, ${l.maxComputeWorkgroupStorageSize} B workgroup memory,
  ${(l.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB per storage binding, ${(l.maxBufferSize / 2 ** 20).toFixed(0)} MiB per buffer.<br>
  Predictions run on <b>${esc(d.predictBackend)}</b>; training runs on <b id="training-backend">${esc(d.trainingBackend)}</b>; validation runs on <b id="evaluation-backend">${esc(d.evaluationBackend)}</b>${d.evaluationBackend !== d.trainingBackend ? ' (the weights are read back from the GPU first)' : ''}.<br>
  ${calibrationText(d)}`;
}
/** Why training runs where it does, in numbers (the learner's calibration). */
function calibrationText(d) {
  const c = d.calibration;
  const ms = (v) => (v < 10 ? v.toFixed(2) : v.toFixed(0));
  const simd = d.wasmSimd === 'relaxed-simd' ? 'WebAssembly relaxed SIMD' : 'WebAssembly SIMD';
  const figures = `a forward of ${c.images} images took ${ms(c.cpuMsPerImage)} ms per image on the CPU (${simd})${c.webgpuMsPerImage != null ? ` and ${ms(c.webgpuMsPerImage)} ms on WebGPU` : ''}`;
  if (d.lost) return `Before the loss, ${figures}.`;
  if (d.requested !== 'auto') return `Device forced to <b>${esc(d.requested)}</b> (${figures}).`;
  return `Chosen automatically: ${figures}, so <b>${esc(d.trainingBackend)}</b> is faster here. Choose WebGPU or CPU above (or add <code>?device=webgpu</code> or <code>?device=cpu</code> to the address) to force one.`;
}
const esc = (s) => String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));

async function start(model) {
  const device = new URLSearchParams(location.search).get('device') || $('device').value || 'auto';
  // The new learner first: if the model does not load, the old one (its examples and trained
  // weights) stays in use. Start and Export wait meanwhile (work on the old learner would be lost).
  $('start').disabled = true; $('export').disabled = true; $('export-folder').disabled = true; $('device').disabled = true;
  let learner;
  try {
    learner = await createLearner({ model, device, onProgress });
  } catch (e) {
    if (app.learner) { $('export').disabled = false; $('export-folder').disabled = false; $('device').disabled = false; await renderClasses().catch(() => {}); }
    throw e;
  }
  if (app.learner) await app.learner.dispose().catch(() => {});
  app.learner = learner;
  showDevice(learner.device);
  $('device').value = learner.device.requested;
  const m = learner.model;
  $('model-info').textContent = `${model ? 'Local model' : 'Embedded default (tiny ViT pretrained on MNIST)'}: ${m.imageSize.join('x')} px, ${m.channels} channel(s), ${m.layers} layers, hidden ${m.hiddenSize}, ${m.parameters.toLocaleString()} parameters; labels: ${m.labels.slice(0, 12).join(', ')}${m.labels.length > 12 ? '…' : ''}`;
  app.classes = [];
  await renderClasses();
  $('export').disabled = false; $('export-folder').disabled = false; $('device').disabled = false;
}

// ---- data -----------------------------------------------------------------------------------
async function renderClasses() {
  const s = await app.learner.summary();
  app.classes = s.classes;
  const box = $('classes'); box.innerHTML = '';
  for (const [i, name] of s.classes.entries()) {
    const div = document.createElement('div'); div.className = 'class';
    div.innerHTML = `<b>${esc(name)}</b> — <span class="count">${s.counts[i]}</span> train${s.validationCounts[i] ? `, ${s.validationCounts[i]} validation` : ''}
      <label>add images <input type="file" accept="image/*" multiple></label>
      <button type="button" class="record">Hold to record (webcam)</button>
      <button type="button" class="remove">Remove</button><div class="thumbs"></div>`;
    div.querySelector('input').onchange = (ev) => addFiles(i, ev.target.files).catch(fail);
    const rec = div.querySelector('.record');
    rec.onpointerdown = () => record(i, true).catch(fail);
    rec.onpointerup = rec.onpointerleave = () => record(i, false);
    div.querySelector('.remove').onclick = () => app.learner.removeClass(i).then(renderClasses).catch(fail);
    const thumbs = div.querySelector('.thumbs');
    for (const t of await app.learner.thumbnails(i, 8)) thumbs.append(imageCanvas(t));
    box.append(div);
  }
  const total = s.counts.reduce((a, b) => a + b, 0);
  const plural = (n, w) => `${n} ${w}${n === 1 ? '' : w.endsWith('s') ? 'es' : 's'}`;
  $('data-summary').textContent = `${plural(s.classes.length, 'class')}, ${plural(total, 'training image')}${s.validationCounts.some((c) => c) ? `, ${s.validationCounts.reduce((a, b) => a + b, 0)} validation` : ' (validation: 20% split off per class)'}.`;
  const empty = s.classes.filter((_, i) => s.counts[i] === 0);
  app.startReason = s.classes.length < 2
    ? `Start needs at least 2 classes (${s.classes.length ? `only ${s.classes[0]} so far` : 'none yet'}): add a class, drop a folder of class folders, or load Animal-Shape.`
    : empty.length ? `Start needs images in every class: ${empty.join(', ')} ${empty.length === 1 ? 'has' : 'have'} none.` : '';
  $('start-reason').textContent = app.training ? '' : app.startReason;
  $('start').disabled = app.training || !!app.startReason;
}

const isImageFile = (f) => f.type.startsWith('image/') || /\.(png|jpe?g|gif|bmp|webp|avif)$/i.test(f.name);

/** Lists every file that was not added, each with why (the messages persist until the next add). */
function showSkipped(errors) {
  const ul = $('data-messages'); ul.innerHTML = '';
  for (const e of errors) { const li = document.createElement('li'); li.textContent = e; ul.append(li); }
}

/** Adds files to a class; returns the skipped ones' messages (shown unless `show` is false). */
async function addFiles(classIndex, files, show = true) {
  const all = Array.from(files);
  const list = all.filter(isImageFile);
  const errors = all.filter((f) => !isImageFile(f)).map((f) => `${f.name}: not an image file (by its name and type), skipped`);
  status(`Adding ${list.length} images…`);
  let added = 0;
  for (let i = 0; i < list.length; i += 64) {
    const r = await app.learner.addExamples(classIndex, list.slice(i, i + 64));
    errors.push(...r.errors);
    added += list.slice(i, i + 64).length - r.errors.length;
    status(`Added ${added} of ${list.length} images…`);
  }
  if (show) showSkipped(errors);
  status(`Added ${added} image${added === 1 ? '' : 's'} to ${app.classes[classIndex]}${errors.length ? `; skipped ${errors.length} (listed below the classes)` : ''}.`);
  await renderClasses();
  return errors;
}

async function ensureClass(name) {
  const i = app.classes.indexOf(name);
  if (i >= 0) return i;
  const idx = await app.learner.addClass(name);
  app.classes.push(name);
  return idx;
}

function readEntries(dir) {
  return new Promise((resolve, reject) => {
    const reader = dir.createReader(); const all = [];
    const next = () => reader.readEntries((batch) => (batch.length ? (all.push(...batch), next()) : resolve(all)), reject);
    next();
  });
}
const entryFile = (e) => new Promise((resolve, reject) => e.file(resolve, reject));

/** Adds class folders (`name -> files`; `skipped`: messages gathered so far): classes in name
 * order, a folder without an image file is not made a class; one list of skipped files and one
 * status line for the whole folder. The drop zone and the folder input both end here. */
async function addClassFolders(byClass, skipped) {
  const count = async () => (await app.learner.summary()).counts.reduce((a, b) => a + b, 0);
  const before = await count();
  let classes = 0;
  for (const name of [...byClass.keys()].sort((a, b) => a.localeCompare(b))) {
    const files = byClass.get(name);
    if (!files.some(isImageFile)) { skipped.push(`${name}/: no image files, not made a class`); continue; }
    const ci = await ensureClass(name);
    skipped.push(...(await addFiles(ci, files, false)));
    classes++;
  }
  showSkipped(skipped);
  status(`Added ${(await count()) - before} images in ${classes} classes from the folder${skipped.length ? `; skipped ${skipped.length} (listed below the classes)` : ''}.`);
}

async function dropFolder(items) {
  const roots = Array.from(items).map((it) => it.webkitGetAsEntry && it.webkitGetAsEntry()).filter(Boolean);
  // A dropped folder whose subfolders are classes, or the class folders themselves.
  const classDirs = [];
  for (const r of roots) {
    if (!r.isDirectory) continue;
    const kids = await readEntries(r);
    const sub = kids.filter((k) => k.isDirectory);
    classDirs.push(...(sub.length ? sub : [r]));
  }
  if (!classDirs.length) throw new Error('drop a folder whose subfolders are classes');
  const byClass = new Map();
  for (const d of classDirs) byClass.set(d.name, await Promise.all((await readEntries(d)).filter((e) => e.isFile).map(entryFile)));
  await addClassFolders(byClass, []);
}

/** A picked folder (`<input webkitdirectory>`), as a drop: each subfolder is a class (images
 * deeper down belong to it); without subfolders the folder itself is one class. Files beside
 * the class folders are listed as skipped. */
async function pickFolder(files) {
  const all = Array.from(files).map((f) => ({ f, parts: (f.webkitRelativePath || f.name).split('/') }));
  if (!all.length) throw new Error('the picked folder is empty');
  const nested = all.some((x) => x.parts.length >= 3);
  const byClass = new Map();
  const skipped = [];
  for (const { f, parts } of all) {
    if (nested && parts.length < 3) { skipped.push(`${parts.join('/')}: not inside a class folder, skipped`); continue; }
    const cls = nested ? parts[1] : parts[0];
    if (!byClass.has(cls)) byClass.set(cls, []);
    byClass.get(cls).push(f);
  }
  await addClassFolders(byClass, skipped);
}

// ---- webcam ---------------------------------------------------------------------------------
let stream = null; let recording = null; let livePredict = false;
async function camera() {
  if (!stream) {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 } });
    $('video').srcObject = stream; $('video').hidden = false;
    await $('video').play();
  }
  return $('video');
}
async function record(classIndex, on) {
  if (!on) { recording = null; return; }
  const video = await camera();
  const token = {}; recording = token;
  let n = 0;
  while (recording === token) {
    await app.learner.addExample(classIndex, await createImageBitmap(video));
    n++; status(`Recorded ${n} frames for ${app.classes[classIndex]}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await renderClasses();
}
async function webcamPredict() {
  livePredict = !livePredict;
  $('webcam-predict').textContent = livePredict ? 'Stop webcam prediction' : 'Live webcam prediction';
  const video = await camera();
  while (livePredict) {
    const p = await app.learner.predict(await createImageBitmap(video));
    showPrediction(p);
    await new Promise((r) => setTimeout(r, 150));
  }
}
function showPrediction(p) {
  $('prediction').textContent = `${p.top.slice(0, 3).map((t) => `${t.label} ${(t.prob * 100).toFixed(1)}%`).join(' · ')} (on ${p.device})`;
}

// ---- training -------------------------------------------------------------------------------
function params() {
  // An empty field (a number input also reads empty when what it holds is not a number) is
  // named here: Number('') would be 0 and reach the core as "got 0".
  const num = (id) => {
    const el = $(id);
    const raw = el.value.trim();
    if (raw === '' || !Number.isFinite(Number(raw))) {
      const label = (el.closest('label') && el.closest('label').firstChild.textContent.trim()) || id;
      throw new Error(`${label}: enter a number (the field is empty or does not hold a number)`);
    }
    return Number(raw);
  };
  return {
    estimator: $('estimator').value, antithetic: $('antithetic').checked, allocator: $('allocator').value,
    queriesPerPoint: num('budget'), batch: num('batch'), steps: num('steps'), learningRate: num('lr'),
    noiseScale: num('sigma'), tunedLayers: num('layers'), seed: num('seed'), evalEvery: num('eval-every'),
    perturb: $('perturb').value, relativeNoise: $('relative-noise').checked,
  };
}

// A recipe fills the form (the page runs 'best' for 500 steps instead of the CLI's 1,500).
const PAGE_STEPS = { best: 500 };
async function applyPreset(name) {
  const p = await app.learner.preset(name);
  const fields = { estimator: p.estimator, allocator: p.allocator, budget: p.queriesPerPoint, batch: p.batch,
    steps: PAGE_STEPS[name] ?? p.steps, lr: p.learningRate, sigma: p.noiseScale, layers: p.tunedLayers,
    perturb: p.perturb, 'eval-every': p.evalEvery };
  for (const [id, v] of Object.entries(fields)) $(id).value = v;
  $('antithetic').checked = p.antithetic;
  $('relative-noise').checked = p.relativeNoise;
}

function draw() {
  const st = app.steps; const ev = app.evaluations;
  lineChart($('loss-chart'), [
    { label: 'train (batch)', points: st.map((s) => [s.queries, s.loss]) },
    { label: 'validation', points: ev.map((e) => [e.queries, e.loss]), dots: true },
  ], { xlabel: 'cumulative queries', ylabel: 'loss', y0: 0 });
  lineChart($('acc-chart'), [
    { label: 'train (batch)', points: st.map((s) => [s.queries, s.accuracy]) },
    { label: 'validation', points: ev.map((e) => [e.queries, e.accuracy]), dots: true },
  ], { xlabel: 'cumulative queries', ylabel: 'accuracy', y0: 0, y1: 1 });
  lineChart($('qps-chart'), [{ label: 'queries/s (over the last 0.25 s or more)', points: st.map((s) => [s.step, s.rate]) }], { xlabel: 'step', ylabel: 'queries / s', y0: 0 });
  const last = app.lastStep;
  if (last) allocationChart($('alloc-chart'), last.allocation, last.cleanLosses, Number($('budget').value));
}

async function showEvaluation(e) {
  confusionChart($('confusion'), e.confusion, app.classes);
  $('per-class').innerHTML = e.perClassAccuracy.map((a, i) => `<li>${esc(app.classes[i])}: ${a == null ? '–' : `${(a * 100).toFixed(0)}%`}</li>`).join('');
}

async function showGallery() {
  const g = $('gallery'); g.innerHTML = '';
  for (const item of await app.learner.gallery(30)) {
    const f = document.createElement('figure');
    const ok = item.label === item.predicted;
    f.append(imageCanvas(item.image));
    const cap = document.createElement('figcaption');
    cap.className = ok ? 'right' : 'wrong';
    cap.textContent = `${app.classes[item.predicted]} ${(item.prob * 100).toFixed(0)}%${ok ? '' : ` (${app.classes[item.label]})`}`;
    f.append(cap); g.append(f);
  }
}

async function train() {
  app.steps = []; app.evaluations = []; app.lastStep = null; app.done = null; app.training = true;
  $('start').disabled = true; $('stop').disabled = false; $('device').disabled = true; $('start-reason').textContent = '';
  $('train-status').textContent = 'Starting…';
  let t0 = performance.now(); let frameQueued = false;
  const redraw = () => { if (!frameQueued) { frameQueued = true; requestAnimationFrame(() => { frameQueued = false; draw(); }); } };
  try {
    const p = params();
    await app.learner.setSeed(p.seed);
    const result = await app.learner.train(p, {
      onStep: (s) => {
        const now = performance.now();
        const prev = app.steps[app.steps.length - 1];
        // This step's own rate (the core's figure is a running average).
        s.stepSeconds = (now - (prev ? prev.at : t0)) / 1000;
        s.at = now;
        // This step's rate over a window of at least 0.25 s (fast steps arrive in bunches).
        let j = app.steps.length - 1;
        while (j > 0 && now - app.steps[j].at < 250) j--;
        const from = j >= 0 && now - app.steps[j].at >= 250 ? app.steps[j] : { at: t0, queries: 0 };
        s.rate = (s.queries - from.queries) / Math.max((now - from.at) / 1000, 1e-3);
        app.steps.push(s); app.lastStep = s;
        // The time left from the recent steps (the first ones also compute each image's frozen features).
        const recent = app.steps.slice(-10);
        const perStep = recent.reduce((a, x) => a + x.stepSeconds, 0) / recent.length;
        const left = (s.steps - s.step) * perStep;
        $('train-status').textContent = `step ${s.step}/${s.steps} on ${s.backend} · loss ${s.loss.toFixed(3)} · ${(perStep * 1000).toFixed(0)} ms/step · ${Math.round(s.rate)} queries/s · ${left >= 1 ? `about ${left < 90 ? `${left.toFixed(0)} s` : `${(left / 60).toFixed(1)} min`} left` : 'finishing'}${s.imagesSeen < app.trainSize ? ` · frozen features of ${s.imagesSeen.toLocaleString()} of ${app.trainSize.toLocaleString()} images computed (steps speed up once all are)` : ''}`;
        $('metrics').textContent = `queries so far: ${s.queries.toLocaleString()} · grad norm ${s.gradNorm.toFixed(3)} · lr ${s.lr.toExponential(2)}${s.allocatorParams.length ? ' · allocator ' + s.allocatorParams.map(([k, v]) => `${k}=${(+v).toPrecision(3)}`).join(', ') : ''}`;
        redraw();
      },
      onEvaluation: (e) => { app.evaluations.push(e); showEvaluation(e); redraw(); },
    });
    app.done = result;
    const v = result.validation;
    status(`Training ${result.stopped ? 'stopped' : 'done'} after ${result.steps} steps${v ? `: validation accuracy ${(v.accuracy * 100).toFixed(1)}%` : ''}.`);
    $('val-accuracy') && ($('val-accuracy').textContent = v ? v.accuracy.toFixed(3) : '');
    await showGallery();
  } catch (e) {
    fail(e);
    if (/diverged/.test(e.message)) $('train-status').textContent = 'Stopped: the loss diverged. The weights from before it are kept; lower the learning rate or the noise scale and start again.';
  } finally {
    app.training = false;
    $('stop').disabled = true; $('device').disabled = false;
    $('start').disabled = !!app.startReason;
  }
}

// ---- export ---------------------------------------------------------------------------------
/** The exported HF folder's files, as `[{name, bytes}]`. */
async function exportedFiles() {
  const f = await app.learner.exportModel();
  return [
    { name: 'config.json', bytes: f.config },
    { name: 'model.safetensors', bytes: f.weights },
    { name: 'preprocessor_config.json', bytes: f.preprocessor },
  ];
}
const exportStatus = (text) => { $('export-status').textContent = text; status(text); };

/** One download in every browser: a zip of the HF folder (stored: weights barely compress). */
async function exportZip() {
  exportStatus('Exporting…');
  const files = await exportedFiles();
  const blob = zip(files.map(({ name, bytes }) => ({ name: `flops-web-model/${name}`, bytes })));
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob); a.download = 'flops-web-model.zip';
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  exportStatus(`Downloaded flops-web-model.zip (${(blob.size / 2 ** 20).toFixed(2)} MiB): unzip it for the HF folder (config.json, model.safetensors, preprocessor_config.json).`);
}

/** Where the browser has a folder picker: the three files written into a chosen folder. */
async function exportFolder() {
  let dir;
  try { dir = await window.showDirectoryPicker({ mode: 'readwrite' }); } catch (e) {
    if (e.name === 'AbortError') { exportStatus('Export cancelled: no folder chosen.'); return; }
    throw e;
  }
  exportStatus(`Writing into ${dir.name}…`);
  for (const { name, bytes } of await exportedFiles()) {
    const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
    await w.write(bytes); await w.close();
  }
  exportStatus(`Saved config.json, model.safetensors and preprocessor_config.json into the folder ${dir.name}.`);
}

// ---- wiring ---------------------------------------------------------------------------------
$('load-animal').onclick = async () => {
  try {
    status('Loading Animal-Shape…');
    await app.learner.loadAnimalShape({ trainPerClass: Number($('train-per-class').value), validationPerClass: Number($('val-per-class').value) });
    await renderClasses();
    status('Animal-Shape loaded.');
  } catch (e) { fail(e); }
};
$('add-class').onclick = async () => {
  // A name that exists is refused by the core with a message (folders add to existing classes).
  try { await app.learner.addClass($('new-class').value); $('new-class').value = ''; await renderClasses(); } catch (e) { fail(e); }
};
const dz = $('dropzone');
dz.ondragover = (e) => { e.preventDefault(); dz.classList.add('over'); };
dz.ondragleave = () => dz.classList.remove('over');
dz.ondrop = (e) => { e.preventDefault(); dz.classList.remove('over'); dropFolder(e.dataTransfer.items).catch(fail); };
// Cleared after each pick, so that picking the same folder again adds it again.
$('data-folder').onchange = (e) => { const files = Array.from(e.target.files); e.target.value = ''; pickFolder(files).catch(fail); };
$('start').onclick = () => train();
$('stop').onclick = () => app.learner.stopTraining().catch(fail);
$('preset').onchange = () => applyPreset($('preset').value).catch(fail);
$('export').onclick = () => exportZip().catch(fail);
$('export-folder').hidden = !window.showDirectoryPicker;
$('export-folder').onclick = () => exportFolder().catch(fail);
$('device').onchange = async () => {
  if (!app.learner) return;
  try {
    showDevice(await app.learner.setDevice($('device').value));
    status(`Training and predictions now run on ${app.learner.device.trainingBackend} (${app.learner.device.requested}); examples and trained weights kept.`);
  } catch (e) { fail(e); $('device').value = app.learner.device.requested; }
};
$('predict-file').onchange = async (e) => { try { if (e.target.files[0]) showPrediction(await app.learner.predict(e.target.files[0])); } catch (err) { fail(err); } };
$('webcam-predict').onclick = () => webcamPredict().catch(fail);
$('model-folder').onchange = async (e) => { try { await start(await readModelFiles(e.target.files)); } catch (err) { fail(err); } };
$('model-default').onclick = () => start(undefined).catch(fail);

start(undefined).catch(fail);
