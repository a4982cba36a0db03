// Type declarations for flops-web (web/flops-web.js): fine-tune a Vision Transformer in the
// browser with forward passes only. Everything runs locally; images never leave the device.

/** Bytes of a HF model folder. Strings are UTF-8 encoded. */
export interface ModelFiles {
  /** config.json (HF ViT or timm). */
  config: Uint8Array | ArrayBuffer | string;
  /** model.safetensors (f32, f16 or bf16). */
  weights: Uint8Array | ArrayBuffer;
  /** preprocessor_config.json (optional; HF ViTImageProcessor defaults otherwise). */
  preprocessor?: Uint8Array | ArrayBuffer | string;
}

/** What `exportModel()` returns: the files of a HF `ViTForImageClassification` folder. */
export interface ExportedModel {
  config: Uint8Array;
  weights: Uint8Array;
  preprocessor: Uint8Array;
}

/** Pixels as in `ImageData` (RGBA), or gray/RGB bytes (`data.length` = w*h or w*h*3). */
export interface ImageDataLike {
  width: number;
  height: number;
  data: Uint8ClampedArray | Uint8Array | number[];
}

/** Encoded bytes (PNG, JPEG, BMP, GIF, WebP), a Blob/File, pixels, or anything drawable. */
export type ImageInput = Uint8Array | ArrayBuffer | Blob | ImageDataLike | CanvasImageSource;

export type Device = 'auto' | 'webgpu' | 'cpu';

export interface AdapterSummary { name: string; backend: string; device_type: string; driver: string }
export interface AdapterLimits {
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupStorageSize: number;
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxStorageBuffersPerShaderStage: number;
  maxComputeWorkgroupsPerDimension: number;
}
export interface DeviceInfo {
  /** A WebGPU adapter and device were obtained. */
  webgpu: boolean;
  /** Why there is no WebGPU, or why `device: 'auto'` chose the CPU or WebGPU (in numbers). */
  reason: string | null;
  adapter: AdapterSummary | null;
  /** The core build this browser runs: 'relaxed-simd' (fused multiply-add in the GEMM kernel,
   * where `WebAssembly.validate` accepts relaxed SIMD) or 'simd128'. */
  wasmSimd: 'relaxed-simd' | 'simd128';
  /** The browser's own adapter description (`GPUAdapter.info`). */
  browserAdapter: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter: boolean; features: string[] } | null;
  limits: AdapterLimits | null;
  /**
   * Where training runs: forced by `device`, or with `device: 'auto'` the faster of the CPU and
   * WebGPU by the calibration (a software adapter such as SwiftShader loses to the CPU).
   */
  trainingBackend: 'cpu' | 'webgpu';
  /** Where validation runs during and after training (may be 'cpu' while training runs on 'webgpu'). */
  evaluationBackend: 'cpu' | 'webgpu';
  predictBackend: 'cpu' | 'webgpu';
  /** What the learner was created with. */
  requested: 'auto' | 'webgpu' | 'cpu';
  /** The timed forward behind the choice: milliseconds per image on each device. */
  calibration: { images: number; cpuMsPerImage: number; webgpuMsPerImage: number | null };
  /** Why the WebGPU device was lost, once it was: everything runs on the CPU since. */
  lost: string | null;
}

export interface ModelInfo {
  labels: string[];
  /** [height, width]. */
  imageSize: [number, number];
  channels: number;
  hiddenSize: number;
  layers: number;
  heads: number;
  parameters: number;
}

export interface DataSummary { classes: string[]; counts: number[]; validationCounts: number[] }

export interface TrainParams {
  /**
   * A recipe the other keys override: 'quick' (the defaults: the head, seconds) or 'best' (the
   * last block and the head, one site per query, 1,500 steps of 64: minutes). Default 'quick'.
   */
  preset?: 'quick' | 'best';
  /**
   * 'lr' (likelihood ratio, activation noise; default), 'spsa' (two-point weight noise) or 'es'
   * (one-sided weight noise). Unknown keys in these params are an error, not ignored.
   */
  estimator?: 'lr' | 'spsa' | 'es';
  /** LR: queries in (+eps, -eps) pairs. Default true. */
  antithetic?: boolean;
  /** How the step's query budget is split across the batch. Default 'flops'. */
  allocator?: 'flops' | 'uniform' | 'neyman' | 'bernoulli';
  /** Average perturbed queries per image (n_bar); budget = batch * n_bar. Default 8. */
  queriesPerPoint?: number;
  batch?: number;
  steps?: number;
  learningRate?: number;
  /** LR and ES sigma, or SPSA eps. Default 0.1. */
  noiseScale?: number;
  /** 0: head only (default); K: the last K encoder blocks + final LayerNorm + head. */
  tunedLayers?: number;
  /**
   * LR: 'joint' (every tuned site in every query; default) or 'site' (one site per query, the
   * budget split over image x site cells: queriesPerPoint must cover every site group).
   */
  perturb?: 'joint' | 'site';
  /** LR: noiseScale relative to each site's clean activation RMS. Default false. */
  relativeNoise?: boolean;
  /** The classifier head's learning rate when it should differ from learningRate. */
  headLearningRate?: number | null;
  /**
   * LR with tunedLayers >= 1: the head's (and final LayerNorm's) gradient exactly from the clean
   * pass, every query going to the blocks. CPU backend only (the WebGPU one refuses it by name).
   */
  exactHead?: boolean;
  optimizer?: 'adam' | 'sgd';
  schedule?: 'cosine' | 'constant';
  clipNorm?: number | null;
  seed?: number;
  /** Evaluate on the validation data every N steps (0: only at the end). Default 20. */
  evalEvery?: number;
  /** Share of each class held out when no validation set was loaded. Default 0.2. */
  validationFraction?: number;
}

export interface StepEvent {
  status: 'step';
  step: number;
  steps: number;
  epoch: number;
  /** Mean clean loss of the batch before the update. */
  loss: number;
  /** Training images met so far: each one's frozen features are computed when first met (and
   * kept), so steps are slower until all are. */
  imagesSeen: number;
  accuracy: number;
  /** Cumulative forward passes (perturbed queries + clean passes). */
  queries: number;
  /** Cumulative forward FLOPs of those passes, each from where it starts on the CPU path (frozen prefixes once per image; the GPU path runs more). */
  flops: number;
  queriesPerSecond: number;
  /** Queries given to each image of the batch, and each image's clean loss. */
  allocation: number[];
  /** Site-wise runs (perturb: 'site'): queries of each site group this step. */
  siteAllocation?: number[];
  cleanLosses: number[];
  allocatorParams: [string, number][];
  gradNorm: number;
  lr: number;
  backend: 'cpu' | 'webgpu';
  /** Whether the run's `evalEvery` schedule asks for a validation pass after this step. */
  evaluate: boolean;
}

export interface Evaluation {
  loss: number;
  accuracy: number;
  /** confusion[true][predicted]. */
  confusion: number[][];
  perClassAccuracy: (number | null)[];
  size: number;
  step: number;
  queries: number;
  /** Where this evaluation ran. */
  backend: 'cpu' | 'webgpu';
}

export interface TrainResult {
  steps: number;
  queries: number;
  stopped: boolean;
  validation: Evaluation | null;
  backend: 'cpu' | 'webgpu';
}

export interface Prediction {
  labels: string[];
  probabilities: number[];
  top: { label: string; prob: number }[];
  /** The raw scores (probabilities are their softmax). */
  logits: number[];
  device: 'cpu' | 'webgpu';
}

export interface GalleryItem { image: ImageDataLike; label: number; predicted: number; prob: number }

/** Progress events, discriminated on `status`. */
export type ProgressEvent =
  | { status: 'loading'; file: string }
  | { status: 'calibrating'; device: 'auto' | 'webgpu' | 'cpu' }
  | { status: 'ready'; device: DeviceInfo; model: ModelInfo }
  | { status: 'training'; steps: number; trainSize: number; validationSize: number; backend: 'cpu' | 'webgpu'; tunedParameters: number; classes: string[]; evalEvery: number }
  | StepEvent
  | { status: 'epoch'; epoch: number; step: number }
  | ({ status: 'evaluation' } & Evaluation)
  | ({ status: 'done' } & TrainResult)
  | { status: 'deviceLost'; message: string; step?: number; device: DeviceInfo }
  | { status: 'error'; error: string };

export interface TrainCallbacks {
  onStep?: (e: StepEvent) => void;
  onEpoch?: (e: { status: 'epoch'; epoch: number; step: number }) => void;
  onEvaluation?: (e: { status: 'evaluation' } & Evaluation) => void;
  onDone?: (e: { status: 'done' } & TrainResult) => void;
}

export interface Learner {
  readonly device: DeviceInfo;
  readonly model: ModelInfo;
  /** Adds a class; resolves to its index. */
  addClass(name: string): Promise<number>;
  removeClass(classIndex: number): Promise<void>;
  /** Adds an example; resolves to the number of training examples. Kept as a small tensor. */
  addExample(classIndex: number, image: ImageInput): Promise<number>;
  addExamples(classIndex: number, images: Iterable<ImageInput>): Promise<{ count: number; errors: string[] }>;
  /** Replaces classes and examples with the embedded Animal-Shape data (10 classes). */
  loadAnimalShape(opts?: { trainPerClass?: number; validationPerClass?: number }): Promise<DataSummary>;
  summary(): Promise<DataSummary>;
  thumbnails(classIndex: number, max?: number): Promise<ImageDataLike[]>;
  gallery(max?: number): Promise<GalleryItem[]>;
  evaluate(): Promise<Evaluation>;
  setSeed(seed: number): Promise<void>;
  /** Fine-tunes with forward passes only; yields between steps, so stopTraining() is prompt. */
  train(params?: TrainParams, callbacks?: TrainCallbacks): Promise<TrainResult>;
  /** The params of a named recipe, e.g. to fill a form. */
  preset(name: 'quick' | 'best'): Promise<Required<Omit<TrainParams, 'preset'>>>;
  /** Stops after the current step; resolves when training has ended. */
  stopTraining(): Promise<boolean>;
  predict(image: ImageInput): Promise<Prediction>;
  exportModel(): Promise<ExportedModel>;
  /**
   * What the worker holds: the wasm memory (every example, at model-input size, and the model),
   * the worker's JS heap where the browser reports it, else null, and the bytes of the tensors
   * on the WebGPU device (weights, activations, kept features, optimiser state; null without one).
   */
  memory(): Promise<{ wasmBytes: number; jsHeapBytes: number | null; gpu: { liveBytes: number; peakBytes: number } | null }>;
  /**
   * Switches where the next runs and predictions go, keeping the examples and the trained
   * weights: 'cpu', 'webgpu' (refused without a working WebGPU device) or 'auto' (the
   * calibration's choice). Refused while a run is in progress. Resolves to the new `device`.
   */
  setDevice(device: 'auto' | 'webgpu' | 'cpu'): Promise<DeviceInfo>;
  /**
   * Test hook: destroys the WebGPU device, as a driver reset or the browser reclaiming the GPU
   * would. A run goes on on the CPU from its last checkpoint (taken every 10 steps; an
   * `onProgress` event `{status: 'deviceLost'}` says so), and predictions move to the CPU.
   */
  destroyDeviceForTesting(): Promise<boolean>;
  /** Frees the wasm memory and terminates the worker. */
  dispose(): Promise<void>;
}

export interface CreateLearnerOptions {
  /** A HF model folder's bytes; default: the embedded tiny ViT (MNIST). */
  model?: ModelFiles;
  device?: Device;
  onProgress?: (e: ProgressEvent) => void;
  /** Overrides the worker's URL (bundlers normally need nothing). */
  workerUrl?: string | URL;
}

/** Starts the worker, loads the wasm and the model, and finds the WebGPU adapter. */
export function createLearner(options?: CreateLearnerOptions): Promise<Learner>;

/** Reads `config.json`, `model.safetensors` and `preprocessor_config.json` from picked files. */
export function readModelFiles(files: Iterable<File> | FileList): Promise<ModelFiles>;
