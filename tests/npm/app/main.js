import { createLearner } from 'flops-web';

const out = document.getElementById('out');
const learner = await createLearner({ onProgress: (e) => (out.textContent = e.status) });
out.textContent = `ready: ${learner.device.webgpu ? 'WebGPU' : 'CPU'}; labels ${learner.model.labels.join(',')}`;
