// The flops-web worker: owns the wasm Learner, decodes images off the main thread, and runs the
// training loop step by step (each step a promise: on WebGPU it awaits GPU readbacks), yielding
// to the event loop between steps so `stopTraining` and `predict` messages are handled while
// training.
//
// Protocol (candle-style): requests `{id, method, args}`; replies `{id, result}` or
// `{id, error}`; progress `{status, ...}` (loading, compiling, ready, step, epoch, evaluation,
// deviceLost, done, error).
import { wasmBuild } from './wasm-simd.js';

// The core build this browser runs (wasm-simd.js). Literal import()s, so that bundlers keep both.
const relaxedSimd = wasmBuild === 'relaxed-simd';
let core = null; // the wasm-bindgen module of that build, once loaded

let learner = null;
let wasmMemory = null; // the wasm instance's linear memory, for `memory()`
let stopRequested = false;
let training = null; // the promise of the running training loop
let browserInfo = null; // what the browser says about its adapter (asked once)

const post = (msg, transfer) => self.postMessage(msg, transfer || []);
const progress = (status, extra = {}) => post({ status, ...extra });
const yieldNow = () => new Promise((resolve) => setTimeout(resolve, 0));
// The core's step metrics use Rust field names (snake_case); JS users get camelCase.
const camel = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k.replace(/_([a-z])/g, (_, c) => c.toUpperCase()), v]));

/** What the browser itself says about its WebGPU adapter (wgpu's summary leaves the name empty). */
async function browserAdapter() {
  if (!self.navigator || !navigator.gpu) return null;
  try {
    const a = await navigator.gpu.requestAdapter();
    if (!a) return null;
    const i = a.info || {};
    return { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description, isFallbackAdapter: !!(i.isFallbackAdapter ?? a.isFallbackAdapter), features: Array.from(a.features || []) };
  } catch (_) { return null; }
}

// Same-origin assets beside this worker, fetched only when needed (not compiled into the wasm):
// the default model and the Animal-Shape split. Literal `new URL(..., import.meta.url)`s, so that
// bundlers (Vite, webpack) emit the files and rewrite the URLs; `make demo` serves them.
const DEFAULT_MODEL_URLS = {
  config: new URL('./models/default/config.json', import.meta.url),
  weights: new URL('./models/default/model.safetensors', import.meta.url),
  preprocessor: new URL('./models/default/preprocessor_config.json', import.meta.url),
};
// In the order `loadAnimalShape` takes them.
const ANIMAL_SHAPE_URLS = [
  new URL('./data/animal-shape/train-images.idx3-ubyte', import.meta.url),
  new URL('./data/animal-shape/train-labels.idx1-ubyte', import.meta.url),
  new URL('./data/animal-shape/test-images.idx3-ubyte', import.meta.url),
  new URL('./data/animal-shape/test-labels.idx1-ubyte', import.meta.url),
  new URL('./data/animal-shape/classes.json', import.meta.url),
];

/** The bytes of a same-origin asset; a failed fetch names the file. */
async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url.pathname}: HTTP ${r.status} (the server must serve the files beside worker.js)`);
  return new Uint8Array(await r.arrayBuffer());
}

/**
 * The WebGPU device went away: the core moved the work to the CPU (a run from its last
 * checkpoint) and holds one message; post it once, with the device panel's new state.
 */
function noticed(id, step) {
  const message = learner && learner.takeNotice();
  if (message) progress('deviceLost', { id, message, step, device: deviceInfo() });
}

/** The core's device report with the browser's own adapter description. */
function deviceInfo(info = learner.deviceInfo()) {
  info.browserAdapter = browserInfo;
  info.wasmSimd = wasmBuild;
  if (!info.webgpu && !(self.navigator && navigator.gpu)) info.reason = 'this browser has no WebGPU (navigator.gpu is missing)';
  return info;
}

/**
 * Runs `fn` after every earlier call that touches the trainer (steps, evaluation, predictions,
 * export) has settled: messages arrive while a step awaits the GPU, and the core lends its
 * trainer to one await at a time.
 */
let exclusiveTail = Promise.resolve();
function exclusive(fn) {
  const run = exclusiveTail.then(fn);
  exclusiveTail = run.catch(() => {});
  return run;
}

/**
 * Decodes an image message in the browser at its natural size (no resizing: the core resizes
 * and normalises exactly as `flops` does natively). Only for formats the core's decoder does
 * not read (AVIF, ...).
 */
async function browserPixels(bytes) {
  if (typeof createImageBitmap !== 'function' || typeof OffscreenCanvas !== 'function') return null;
  try {
    const bmp = await createImageBitmap(new Blob([bytes]));
    const canvas = new OffscreenCanvas(bmp.width, bmp.height);
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(bmp, 0, 0);
    bmp.close();
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height);
    return { width: canvas.width, height: canvas.height, data: data.data };
  } catch (_) {
    return null;
  }
}

const asBytes = (d) => new Uint8Array(d.buffer, d.byteOffset, d.byteLength);

/**
 * Calls `onPixels(width, height, rgba)` or `onEncoded(bytes)` of the core for an image message:
 * encoded files go to the core's decoder first (the same path as the CLI); when it cannot read
 * the format, the browser decodes it at full size; when neither can, the core's error stands.
 */
async function withImage(image, onPixels, onEncoded) {
  if (image.kind === 'pixels') return onPixels(image.width, image.height, asBytes(image.data));
  try {
    return await onEncoded(new Uint8Array(image.bytes));
  } catch (e) {
    const px = /unsupported|format/i.test(String(e && e.message)) ? await browserPixels(image.bytes) : null;
    if (!px) throw e;
    return onPixels(px.width, px.height, asBytes(px.data));
  }
}

function addExample(classIndex, image) {
  return withImage(
    image,
    (w, h, d) => learner.addExamplePixels(classIndex, w, h, d),
    (b) => learner.addExampleEncoded(classIndex, b),
  );
}

function predict(image) {
  return exclusive(() => withImage(image, (w, h, d) => learner.predictPixels(w, h, d), (b) => learner.predictEncoded(b)));
}

async function trainLoop(id, params) {
  stopRequested = false;
  const started = await exclusive(() => learner.beginTraining(params || {}));
  progress('training', { id, ...started });
  let epoch = 0;
  let last = null;
  try {
    for (let i = 0; i < started.steps && !stopRequested; i++) {
      const ev = camel(await exclusive(() => learner.trainStep()));
      last = ev;
      noticed(id, ev.step);
      progress('step', { id, ...ev, steps: started.steps });
      if (ev.epoch !== epoch) {
        epoch = ev.epoch;
        progress('epoch', { id, epoch, step: ev.step });
      }
      // The core owns the schedule (`evalEvery`): it says when.
      if (ev.evaluate) progress('evaluation', { id, ...(await exclusive(() => learner.evaluate())) });
      await yieldNow();
    }
    const validation = started.validationSize > 0 ? await exclusive(() => learner.evaluate()) : null;
    if (validation) progress('evaluation', { id, ...validation });
    await exclusive(() => learner.finishTraining());
    const result = { steps: last ? last.step : 0, queries: last ? last.queries : 0, stopped: stopRequested, validation, backend: started.backend };
    progress('done', { id, ...result });
    return result;
  } catch (e) {
    // Keep what the run learned; a failure here (device lost) must not hide the first error.
    await exclusive(() => learner.finishTraining()).catch(() => {});
    throw e;
  }
}

const methods = {
  async create({ model, device }) {
    const file = relaxedSimd ? 'flops_web_relaxed_bg.wasm' : 'flops_web_bg.wasm';
    progress('loading', { file });
    core = await (relaxedSimd ? import('./wasm/flops_web_relaxed.js') : import('./wasm/flops_web.js'));
    wasmMemory = (await core.default()).memory;
    progress('loading', { file: model ? 'model.safetensors' : 'embedded default model' });
    // Creating the learner also times a short forward on each device ("calibrating"; on WebGPU
    // this compiles every pipeline) to choose where `device: 'auto'` trains.
    progress('calibrating', { device: device || 'auto' });
    const files = model || Object.fromEntries(await Promise.all(Object.entries(DEFAULT_MODEL_URLS).map(async ([k, u]) => [k, await fetchBytes(u)])));
    learner = await core.createLearner(files.config, files.weights, files.preprocessor, device || 'auto');
    const info = learner.modelInfo();
    browserInfo = learner.deviceInfo().webgpu ? await browserAdapter() : null;
    const report = deviceInfo();
    progress('ready', { device: report, model: info });
    return { device: report, model: info };
  },
  addClass: ({ name }) => learner.addClass(name),
  removeClass: ({ classIndex }) => learner.removeClass(classIndex),
  addExample: ({ classIndex, image }) => addExample(classIndex, image),
  async addExamples({ classIndex, images }) {
    let n = 0;
    const errors = [];
    for (const image of images) {
      try { n = await addExample(classIndex, image); } catch (e) { errors.push(`${image.name || 'image'}: ${e.message || e}`); }
    }
    return { count: n, errors };
  },
  async loadAnimalShape({ trainPerClass, validationPerClass }) {
    const files = await Promise.all(ANIMAL_SHAPE_URLS.map(fetchBytes));
    return learner.loadAnimalShape(...files, trainPerClass ?? 200, validationPerClass ?? 50);
  },
  summary: () => learner.summary(),
  thumbnails: ({ classIndex, max }) => learner.thumbnails(classIndex, max ?? 8),
  gallery: ({ max }) => exclusive(() => learner.gallery(max ?? 24)),
  evaluate: () => exclusive(() => learner.evaluate()),
  setSeed: ({ seed }) => learner.setSeed(seed),
  predict: ({ image }) => predict(image),
  exportModel: () => exclusive(() => learner.exportModel()),
  modelInfo: () => learner.modelInfo(),
  memory: () => ({
    wasmBytes: wasmMemory ? wasmMemory.buffer.byteLength : 0,
    jsHeapBytes: self.performance && performance.memory ? performance.memory.usedJSHeapSize : null,
    gpu: learner.gpuMemory(),
  }),
  // Between two calls on the trainer, as a real loss may land anywhere but a test wants it here.
  destroyDeviceForTesting: () => exclusive(() => learner.destroyDeviceForTesting()),
  setDevice: ({ device }) => exclusive(() => deviceInfo(learner.setDevice(device))),
  preset: ({ name }) => core.trainPreset(name),
  async train({ params }, id) {
    if (training) throw new Error('training is already running; call stopTraining() first');
    training = trainLoop(id, params);
    try { return await training; } finally { training = null; }
  },
  async stopTraining() {
    stopRequested = true;
    if (training) await training.catch(() => {});
    return true;
  },
  dispose() {
    stopRequested = true;
    if (learner) { learner.free(); learner = null; }
    return true;
  },
};

self.onmessage = async ({ data }) => {
  const { id, method, args } = data;
  try {
    const fn = methods[method];
    if (!fn) throw new Error(`unknown method \`${method}\`; one of: ${Object.keys(methods).join(', ')}`);
    if (!learner && method !== 'create' && method !== 'dispose') throw new Error('the learner is not ready (create failed or was disposed)');
    const result = await fn(args || {}, id);
    noticed(id);
    const transfer = [];
    if (method === 'exportModel') for (const k of ['config', 'weights', 'preprocessor']) transfer.push(result[k].buffer);
    post({ id, result }, transfer);
  } catch (e) {
    noticed(id);
    // Reported once: the caller's promise rejects with it (no 'error' progress event as well).
    post({ id, error: e instanceof Error ? e.message : String(e) });
  }
};
