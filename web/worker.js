// The flops-web worker: owns the wasm Learner, decodes images off the main thread, and runs the
// training loop step by step (each step a promise: on WebGPU it awaits GPU readbacks), yielding
// to the event loop between steps so `stopTraining` and `predict` messages are handled while
// training.
//
// Protocol (candle-style): requests `{id, method, args}`; replies `{id, result}` or
// `{id, error}`; progress `{status, ...}` (loading, compiling, ready, step, epoch, evaluation,
// done, error).
import init, { createLearner } from './wasm/flops_web.js';

let learner = null;
let inputSize = [224, 224];
let stopRequested = false;
let training = null; // the promise of the running training loop

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

/** An image message -> `{width, height, data}` at the model's input size, or encoded bytes. */
async function toPixels(image) {
  if (image.kind === 'pixels') return image;
  const bytes = image.bytes;
  if (typeof createImageBitmap === 'function' && typeof OffscreenCanvas === 'function') {
    try {
      const [h, w] = inputSize;
      const bmp = await createImageBitmap(new Blob([bytes]), {
        resizeWidth: w, resizeHeight: h, resizeQuality: 'high',
      });
      const canvas = new OffscreenCanvas(w, h);
      const ctx = canvas.getContext('2d', { willReadFrequently: true });
      ctx.drawImage(bmp, 0, 0);
      bmp.close();
      const data = ctx.getImageData(0, 0, w, h);
      return { kind: 'pixels', width: w, height: h, data: data.data };
    } catch (_) {
      // Not decodable by the browser: let the Rust decoder try (and name the problem).
    }
  }
  return image;
}

async function addExample(classIndex, image) {
  const px = await toPixels(image);
  return px.kind === 'pixels'
    ? learner.addExamplePixels(classIndex, px.width, px.height, new Uint8Array(px.data.buffer, px.data.byteOffset, px.data.byteLength))
    : learner.addExampleEncoded(classIndex, new Uint8Array(px.bytes));
}

async function predict(image) {
  const px = await toPixels(image);
  return px.kind === 'pixels'
    ? learner.predictPixels(px.width, px.height, new Uint8Array(px.data.buffer, px.data.byteOffset, px.data.byteLength))
    : learner.predictEncoded(new Uint8Array(px.bytes));
}

async function trainLoop(id, params) {
  stopRequested = false;
  const started = await learner.beginTraining(params || {});
  const evalEvery = params && params.evalEvery !== undefined ? params.evalEvery : 20;
  progress('training', { id, ...started });
  let epoch = 0;
  let last = null;
  try {
    for (let i = 0; i < started.steps && !stopRequested; i++) {
      const ev = camel(await learner.trainStep());
      last = ev;
      progress('step', { id, ...ev, steps: started.steps });
      if (ev.epoch !== epoch) {
        epoch = ev.epoch;
        progress('epoch', { id, epoch, step: ev.step });
      }
      if (evalEvery > 0 && ev.step % evalEvery === 0 && ev.step < started.steps && started.validationSize > 0) {
        progress('evaluation', { id, ...(await learner.evaluate()) });
      }
      await yieldNow();
    }
    const validation = started.validationSize > 0 ? await learner.evaluate() : null;
    if (validation) progress('evaluation', { id, ...validation });
    await learner.finishTraining();
    const result = { steps: last ? last.step : 0, queries: last ? last.queries : 0, stopped: stopRequested, validation, backend: started.backend };
    progress('done', { id, ...result });
    return result;
  } catch (e) {
    // Keep what the run learned; a failure here (device lost) must not hide the first error.
    await learner.finishTraining().catch(() => {});
    throw e;
  }
}

const methods = {
  async create({ model, device }) {
    progress('loading', { file: 'flops_web_bg.wasm' });
    await init();
    progress('loading', { file: model ? 'model.safetensors' : 'embedded default model' });
    learner = await createLearner(model && model.config, model && model.weights, model && model.preprocessor, device || 'auto');
    const info = learner.modelInfo();
    inputSize = info.imageSize;
    const deviceInfo = learner.deviceInfo();
    deviceInfo.browserAdapter = deviceInfo.webgpu ? await browserAdapter() : null;
    if (!deviceInfo.webgpu && !(self.navigator && navigator.gpu)) deviceInfo.reason = 'this browser has no WebGPU (navigator.gpu is missing)';
    if (deviceInfo.webgpu) {
      // The first GPU forward compiles every pipeline: do it now, not on the first predict.
      progress('compiling', { adapter: deviceInfo.adapter });
      const [h, w] = inputSize;
      await learner.predictPixels(w, h, new Uint8Array(w * h * 4));
    }
    progress('ready', { device: deviceInfo, model: info });
    return { device: deviceInfo, model: info };
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
  loadAnimalShape: ({ trainPerClass, validationPerClass }) => learner.loadAnimalShape(trainPerClass ?? 200, validationPerClass ?? 50),
  summary: () => learner.summary(),
  thumbnails: ({ classIndex, max }) => learner.thumbnails(classIndex, max ?? 8),
  gallery: ({ max }) => learner.gallery(max ?? 24),
  evaluate: () => learner.evaluate(),
  setSeed: ({ seed }) => learner.setSeed(seed),
  predict: ({ image }) => predict(image),
  exportModel: () => learner.exportModel(),
  modelInfo: () => learner.modelInfo(),
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
    const transfer = [];
    if (method === 'exportModel') for (const k of ['config', 'weights', 'preprocessor']) transfer.push(result[k].buffer);
    post({ id, result }, transfer);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (method === 'create' || method === 'train') progress('error', { id, error: message });
    post({ id, error: message });
  }
};
