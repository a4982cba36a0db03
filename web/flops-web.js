// flops-web: fine-tune a Vision Transformer in the browser with forward passes only.
// The hand-written ES module API; everything heavy runs in a Web Worker (worker.js).
// Types: flops-web.d.ts. Images never leave the device: there is no network code here.
//
//   const learner = await createLearner({ onProgress: (e) => console.log(e.status, e) });
//   await learner.loadAnimalShape();               // or addClass + addExample
//   await learner.train({ steps: 100, allocator: 'flops' }, { onStep: (s) => console.log(s.loss) });
//   const { top } = await learner.predict(imageData);
//   const files = await learner.exportModel();    // {config, weights, preprocessor}: Uint8Array

const DEVICES = ['auto', 'webgpu', 'cpu'];

/** Turns an image argument into a message the worker takes (transferring nothing shared). */
async function imageMessage(image) {
  if (image == null) throw new Error('image is missing');
  if (image instanceof ArrayBuffer) return { kind: 'bytes', bytes: image.slice(0) };
  if (ArrayBuffer.isView(image) && !(image instanceof Uint8ClampedArray)) {
    return { kind: 'bytes', bytes: image.buffer.slice(image.byteOffset, image.byteOffset + image.byteLength) };
  }
  if (typeof Blob !== 'undefined' && image instanceof Blob) {
    return { kind: 'bytes', bytes: await image.arrayBuffer(), name: image.name };
  }
  if (typeof image.width === 'number' && typeof image.height === 'number' && image.data && image.data.length !== undefined) {
    return { kind: 'pixels', width: image.width, height: image.height, data: new Uint8ClampedArray(image.data) };
  }
  // Drawable: ImageBitmap, <img>, <canvas>, <video>, OffscreenCanvas, VideoFrame; drawn at its
  // own size (the core resizes and normalises exactly as `flops` does natively).
  if (typeof OffscreenCanvas === 'function') {
    const w = image.naturalWidth || image.videoWidth || image.displayWidth || image.width;
    const h = image.naturalHeight || image.videoHeight || image.displayHeight || image.height;
    if (!(w > 0 && h > 0)) throw new Error('image has no size (not loaded yet?)');
    const canvas = new OffscreenCanvas(w, h);
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(image, 0, 0, w, h);
    const d = ctx.getImageData(0, 0, w, h);
    return { kind: 'pixels', width: w, height: h, data: d.data };
  }
  throw new Error('unsupported image: pass encoded bytes, a Blob/File, ImageData-like {width, height, data} or a drawable');
}

class Learner {
  constructor(worker, info, onProgress) {
    this._worker = worker;
    this._next = 1;
    this._pending = new Map();
    this._onProgress = onProgress;
    this._trainCallbacks = new Map();
    /** Adapter, limits, where training and predictions run. */
    this.device = info.device;
    /** Labels, input size and shape of the model. */
    this.model = info.model;
  }

  _call(method, args, transfer = []) {
    if (!this._worker) return Promise.reject(new Error('the learner was disposed'));
    const id = this._next++;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      this._worker.postMessage({ id, method, args }, transfer);
    });
  }

  _message(data) {
    if (data.status === 'deviceLost') this.device = data.device;
    if (data.status) {
      const cb = data.id !== undefined ? this._trainCallbacks.get(data.id) : undefined;
      if (cb) {
        const f = { step: cb.onStep, epoch: cb.onEpoch, evaluation: cb.onEvaluation, done: cb.onDone }[data.status];
        if (f) f(data);
      }
      if (this._onProgress) this._onProgress(data);
      return;
    }
    const p = this._pending.get(data.id);
    if (!p) return;
    this._pending.delete(data.id);
    this._trainCallbacks.delete(data.id);
    if ('error' in data) p.reject(new Error(data.error));
    else p.resolve(data.result);
  }

  /** Adds a class; resolves to its index. */
  addClass(name) { return this._call('addClass', { name: String(name) }); }
  /** Removes a class and its examples (classes above it shift down). */
  removeClass(classIndex) { return this._call('removeClass', { classIndex }); }

  /** Adds one example; resolves to the number of training examples. */
  async addExample(classIndex, image) {
    const msg = await imageMessage(image);
    return this._call('addExample', { classIndex, image: msg }, transferOf(msg));
  }

  /** Adds many examples of one class; undecodable ones are skipped and named in `errors`. */
  async addExamples(classIndex, images) {
    const msgs = await Promise.all(Array.from(images, (im) => imageMessage(im)));
    return this._call('addExamples', { classIndex, images: msgs }, msgs.flatMap(transferOf));
  }

  /** Replaces classes and examples with the embedded Animal-Shape data (10 classes). */
  loadAnimalShape({ trainPerClass = 200, validationPerClass = 50 } = {}) {
    return this._call('loadAnimalShape', { trainPerClass, validationPerClass });
  }

  /** Classes and example counts. */
  summary() { return this._call('summary'); }
  /** Up to `max` examples of a class as ImageData-like objects (for thumbnails). */
  thumbnails(classIndex, max = 8) { return this._call('thumbnails', { classIndex, max }); }
  /** Validation images with predictions. */
  gallery(max = 24) { return this._call('gallery', { max }); }
  /** Loss, accuracy, confusion matrix and per-class accuracy on the validation data. */
  evaluate() { return this._call('evaluate'); }
  /** Seeds the head initialisation, the validation split and training. */
  setSeed(seed) { return this._call('setSeed', { seed }); }

  /**
   * Fine-tunes with forward passes only. Resolves when done or stopped with
   * `{steps, queries, stopped, validation, backend}`.
   */
  train(params = {}, callbacks = {}) {
    if (!this._worker) return Promise.reject(new Error('the learner was disposed'));
    // NaN and Infinity would cross into the core as null ("unset"): refuse them by name here.
    for (const [k, v] of Object.entries(params || {})) {
      if (typeof v === 'number' && !Number.isFinite(v)) return Promise.reject(new Error(`invalid training setting: ${k} must be a finite number, got ${v}`));
    }
    const id = this._next;
    this._trainCallbacks.set(id, callbacks);
    return this._call('train', { params });
  }

  /** The training params of a named recipe ('quick': the defaults, the head in seconds; 'best':
   * the last block and the head, site-wise, minutes): what `train` takes, e.g. to fill a form.
   * `train({preset: 'best', steps: 500})` uses a recipe with overrides directly. */
  preset(name) { return this._call('preset', { name }); }

  /** Stops training after the current step; resolves once the loop has ended. */
  stopTraining() { return this._call('stopTraining'); }

  /** Classifies an image: `{labels, probabilities, top: [{label, prob}], device}`. */
  async predict(image) {
    const msg = await imageMessage(image);
    return this._call('predict', { image: msg }, transferOf(msg));
  }

  /** What the worker holds: `{wasmBytes, jsHeapBytes, gpu}` (the wasm memory, which holds
   * every example and the model; the worker's JS heap where the browser reports it, else null;
   * `gpu`: `{liveBytes, peakBytes}` of the tensors on the WebGPU device, null without one). */
  memory() { return this._call('memory'); }

  /** Switches where the next runs and predictions go ('auto' | 'webgpu' | 'cpu'), keeping the
   * examples and the trained weights; refused during a run. Resolves to the new `device`. */
  async setDevice(device) {
    if (!DEVICES.includes(device)) throw new Error(`unknown device \`${device}\`; one of: ${DEVICES.join(', ')}`);
    this.device = await this._call('setDevice', { device });
    return this.device;
  }

  /** Test hook: destroys the WebGPU device, as a driver reset would. A run goes on on the CPU
   * from its last checkpoint (an `onProgress` event `{status: 'deviceLost', message, device}`);
   * predictions move to the CPU. Resolves to whether there was a device. */
  destroyDeviceForTesting() { return this._call('destroyDeviceForTesting'); }

  /** The fine-tuned model as a HF folder: `{config, weights, preprocessor}` bytes. */
  exportModel() { return this._call('exportModel'); }

  /** Frees the wasm memory and ends the worker. */
  async dispose() {
    if (!this._worker) return;
    try { await this._call('dispose'); } finally {
      this._worker.terminate();
      this._worker = null;
      for (const p of this._pending.values()) p.reject(new Error('the learner was disposed'));
      this._pending.clear();
    }
  }
}

function transferOf(msg) {
  if (msg.kind === 'bytes') return [msg.bytes];
  return msg.data && msg.data.buffer ? [msg.data.buffer] : [];
}

function toBytes(v, what) {
  if (v == null) return undefined;
  if (typeof v === 'string') return new TextEncoder().encode(v);
  if (v instanceof ArrayBuffer) return new Uint8Array(v.slice(0));
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
  throw new Error(`model.${what}: expected Uint8Array, ArrayBuffer or string`);
}

/**
 * Starts a worker, loads the wasm and the model, finds the WebGPU adapter (and compiles the
 * pipelines). `model`: undefined (the embedded default) or `{config, weights, preprocessor?}`.
 * `device`: 'auto' | 'webgpu' | 'cpu'. `onProgress` receives every `{status, ...}` event.
 */
export async function createLearner({ model, device = 'auto', onProgress, workerUrl } = {}) {
  if (!DEVICES.includes(device)) throw new Error(`unknown device \`${device}\`; one of: ${DEVICES.join(', ')}`);
  const files = model ? { config: toBytes(model.config, 'config'), weights: toBytes(model.weights, 'weights'), preprocessor: toBytes(model.preprocessor, 'preprocessor') } : undefined;
  const worker = workerUrl
    ? new Worker(workerUrl, { type: 'module' })
    : new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  const early = [];
  const learner = await new Promise((resolve, reject) => {
    worker.onerror = (e) => reject(new Error(`worker failed to start: ${e.message || 'see the console'}`));
    worker.onmessage = ({ data }) => {
      if (data.status) { if (onProgress) onProgress(data); return; }
      if (data.id !== 0) { early.push(data); return; }
      if ('error' in data) { worker.terminate(); reject(new Error(data.error)); return; }
      const l = new Learner(worker, data.result, onProgress);
      worker.onmessage = ({ data: d }) => l._message(d);
      worker.onerror = (e) => { if (onProgress) onProgress({ status: 'error', error: e.message || 'worker error' }); };
      resolve(l);
    };
    const transfer = files ? Object.values(files).filter(Boolean).map((b) => b.buffer) : [];
    worker.postMessage({ id: 0, method: 'create', args: { model: files, device } }, transfer);
  });
  return learner;
}

/** Reads a HF model folder chosen by the user (`<input webkitdirectory>` files or a FileList). */
export async function readModelFiles(files) {
  const byName = new Map(Array.from(files, (f) => [f.name, f]));
  const need = (n) => { const f = byName.get(n); if (!f) throw new Error(`the model folder has no ${n}`); return f; };
  const read = async (f) => (f ? new Uint8Array(await f.arrayBuffer()) : undefined);
  return {
    config: await read(need('config.json')),
    weights: await read(need('model.safetensors')),
    preprocessor: await read(byName.get('preprocessor_config.json')),
  };
}
