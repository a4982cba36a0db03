//! The CPU reference forward of HF `ViTForImageClassification`: one struct per HF submodule,
//! weights under HF names, plain loops. This is the oracle every other path is tested against.
//!
//! Shapes, per image: `T = 1 + num_patches` tokens, `D = hidden_size`, `I = intermediate_size`,
//! `H` heads of `D / H`. Pixels are `[C, H_img, W_img]` after preprocessing.

use std::rc::Rc;

use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::config::ViTConfig;
use super::error::{ModelError, Result};
use super::fast_math;
use super::nn::{gelu, sgemm, softmax_inplace, Kernels, LayerNorm, Linear, Param, GEMM_MIN_ROWS};
use super::weights::VarBuilder;

/// Where a linear layer sits; perturbation and gradient code address layers by site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinearSite {
    /// The patch projection (a conv with stride = kernel, i.e. a linear map of each patch).
    PatchEmbed,
    Query(usize),
    Key(usize),
    Value(usize),
    AttnOut(usize),
    Fc1(usize),
    Fc2(usize),
    Classifier,
}

impl LinearSite {
    /// The encoder block it is in (none for the patch embedding and the classifier).
    pub fn block(&self) -> Option<usize> {
        match *self {
            LinearSite::Query(l) | LinearSite::Key(l) | LinearSite::Value(l) => Some(l),
            LinearSite::AttnOut(l) | LinearSite::Fc1(l) | LinearSite::Fc2(l) => Some(l),
            LinearSite::PatchEmbed | LinearSite::Classifier => None,
        }
    }

    /// Where a forward that perturbs it must start at the latest, as a residual-stream index
    /// (`layers`: the final LayerNorm and the classifier; the patch embedding: 0).
    pub fn start(&self, layers: usize) -> usize {
        match *self {
            LinearSite::PatchEmbed => 0,
            LinearSite::Classifier => layers,
            s => s.block().unwrap_or(layers),
        }
    }
}

/// Where a LayerNorm sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NormSite {
    /// Block `l`'s `layernorm_before` (feeds its query, key and value).
    Before(usize),
    /// Block `l`'s `layernorm_after` (feeds its fc1).
    After(usize),
    /// `vit.layernorm` (feeds the classifier).
    Final,
}

impl NormSite {
    /// The LayerNorm whose output is `site`'s input, if any.
    pub fn feeding(site: LinearSite) -> Option<Self> {
        match site {
            LinearSite::Query(l) | LinearSite::Key(l) | LinearSite::Value(l) => Some(Self::Before(l)),
            LinearSite::Fc1(l) => Some(Self::After(l)),
            LinearSite::Classifier => Some(Self::Final),
            LinearSite::PatchEmbed | LinearSite::AttnOut(_) | LinearSite::Fc2(_) => None,
        }
    }
}

/// Observes (and may modify) a forward pass. All methods default to doing nothing.
pub trait ForwardHook {
    /// After each linear layer: its input `[T, in]` and output `[T, out]` (bias included).
    /// Adding noise to `output` is the likelihood-ratio estimator's activation perturbation.
    fn linear(&mut self, _site: LinearSite, _input: &[f32], _output: &mut [f32]) {}
    /// [`Self::linear`] with input `shared[..len]`, the input of a block's projections
    /// ([`Qkv`]): when the caller reuses one [`Qkv`] for every query of an image (the first
    /// tuned block's clean projections), a hook that keeps inputs may keep the `Rc` instead of
    /// a copy. Later blocks make a fresh one per query.
    fn linear_shared(&mut self, site: LinearSite, shared: &Rc<Vec<f32>>, len: usize, output: &mut [f32]) {
        self.linear(site, &shared[..len], output)
    }
    /// The residual stream: index 0 after the embeddings, `i + 1` after block `i` (`[T, D]`).
    /// The classification forward does not report the last block (it runs its CLS token only).
    fn hidden(&mut self, _index: usize, _hidden: &[f32]) {}
    /// Before a LayerNorm: its input `[rows, D]` (`norm.normalize(input)` gives `x_hat`).
    fn layer_norm(&mut self, _site: NormSite, _norm: &LayerNorm, _input: &[f32]) {}
}

/// A hook that does nothing.
pub struct NoHook;
impl ForwardHook for NoHook {}

/// Records the residual stream (HF's `hidden_states`) and the final LayerNorm output.
#[derive(Default)]
pub struct HiddenRecorder {
    pub hidden_states: Vec<Vec<f32>>,
}
impl ForwardHook for HiddenRecorder {
    fn hidden(&mut self, index: usize, hidden: &[f32]) {
        if self.hidden_states.len() <= index {
            self.hidden_states.resize(index + 1, Vec::new());
        }
        self.hidden_states[index] = hidden.to_vec();
    }
}

fn linear(layer: &Linear, site: LinearSite, x: &[f32], hook: &mut dyn ForwardHook) -> Vec<f32> {
    let mut y = layer.forward(x);
    hook.linear(site, x, &mut y);
    y
}

/// `vit.embeddings.patch_embeddings`: the projection conv, held as a linear map of patch vectors
/// ordered `(c, dy, dx)` like the conv weight `[D, C, p_h, p_w]`.
#[derive(Debug, Clone)]
pub struct ViTPatchEmbeddings {
    pub projection: Linear,
    channels: usize,
    patch: (usize, usize),
    image: (usize, usize),
}

impl ViTPatchEmbeddings {
    pub fn load(cfg: &ViTConfig, vb: &VarBuilder) -> Result<Self> {
        let (ph, pw) = cfg.patch_size.hw();
        let vb = vb.pp("projection");
        let c = cfg.num_channels;
        let d = cfg.hidden_size;
        let weight = Param::load(&vb, "weight", &[d, c, ph, pw])?;
        let bias = Param::load(&vb, "bias", &[d])?;
        Ok(Self {
            projection: Linear {
                weight,
                bias: Some(bias),
                kernels: Kernels::Reference,
            },
            channels: c,
            patch: (ph, pw),
            image: cfg.image_size.hw(),
        })
    }

    /// Patch vectors `[num_patches, C * p_h * p_w]`, patches in row-major grid order.
    pub fn patches(&self, pixels: &[f32]) -> Vec<f32> {
        let (ih, iw) = self.image;
        let (ph, pw) = self.patch;
        let (gh, gw) = (ih / ph, iw / pw);
        let mut out = Vec::with_capacity(pixels.len());
        for gy in 0..gh {
            for gx in 0..gw {
                for c in 0..self.channels {
                    for dy in 0..ph {
                        for dx in 0..pw {
                            out.push(pixels[(c * ih + gy * ph + dy) * iw + gx * pw + dx]);
                        }
                    }
                }
            }
        }
        out
    }

    /// `[C, H, W]` -> `[num_patches, D]`.
    pub fn forward(&self, pixels: &[f32], hook: &mut dyn ForwardHook) -> Vec<f32> {
        linear(&self.projection, LinearSite::PatchEmbed, &self.patches(pixels), hook)
    }
}

/// `vit.embeddings`: patch projection, CLS token, position embeddings.
#[derive(Debug, Clone)]
pub struct ViTEmbeddings {
    pub cls_token: Param,
    pub position_embeddings: Param,
    pub patch_embeddings: ViTPatchEmbeddings,
}

impl ViTEmbeddings {
    pub fn load(cfg: &ViTConfig, vb: &VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            cls_token: Param::load(vb, "cls_token", &[1, 1, d])?,
            position_embeddings: Param::load(vb, "position_embeddings", &[1, cfg.seq_len(), d])?,
            patch_embeddings: ViTPatchEmbeddings::load(cfg, &vb.pp("patch_embeddings"))?,
        })
    }

    /// `[C, H, W]` -> `[T, D]`: CLS token first, then the patches, plus position embeddings.
    pub fn forward(&self, pixels: &[f32], hook: &mut dyn ForwardHook) -> Vec<f32> {
        let mut x = self.cls_token.data.clone();
        x.extend(self.patch_embeddings.forward(pixels, hook));
        for (v, p) in x.iter_mut().zip(&self.position_embeddings.data) {
            *v += p;
        }
        x
    }

    pub fn params(&self) -> Vec<&Param> {
        let mut p = vec![&self.cls_token, &self.position_embeddings];
        p.extend(self.patch_embeddings.projection.params());
        p
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut p = vec![&mut self.cls_token, &mut self.position_embeddings];
        p.extend(self.patch_embeddings.projection.params_mut());
        p
    }
}

/// `attention.attention`: Q, K, V projections and scaled dot-product attention per head.
#[derive(Debug, Clone)]
pub struct ViTSelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    heads: usize,
    /// How the score and context products are computed.
    pub kernels: Kernels,
}

impl ViTSelfAttention {
    pub fn load(cfg: &ViTConfig, vb: &VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            query: Linear::load(&vb.pp("query"), d, d, cfg.qkv_bias)?,
            key: Linear::load(&vb.pp("key"), d, d, cfg.qkv_bias)?,
            value: Linear::load(&vb.pp("value"), d, d, cfg.qkv_bias)?,
            heads: cfg.num_attention_heads,
            kernels: Kernels::Reference,
        })
    }

    /// The clean projections of `x: [T, D]`: keys and values of every token, queries of the
    /// first `queries` tokens only.
    pub fn project(&self, x: &[f32], queries: usize) -> Qkv {
        let d_in = self.query.in_dim();
        Qkv {
            input: Rc::new(x.to_vec()),
            queries,
            q: self.query.forward(&x[..queries * d_in]),
            k: self.key.forward(x),
            v: self.value.forward(x),
        }
    }

    /// Context `[queries, D]` (heads side by side, `column = head * head_dim + j`) from clean
    /// projections; the hook sees Q, K and V in that order, as after each linear layer.
    pub fn attend(&self, qkv: Qkv, layer: usize, hook: &mut dyn ForwardHook) -> Vec<f32> {
        let Qkv {
            input,
            queries,
            mut q,
            mut k,
            mut v,
        } = qkv;
        let d_in = self.query.in_dim();
        hook.linear_shared(LinearSite::Query(layer), &input, queries * d_in, &mut q);
        hook.linear_shared(LinearSite::Key(layer), &input, input.len(), &mut k);
        hook.linear_shared(LinearSite::Value(layer), &input, input.len(), &mut v);
        let d = self.query.out_dim();
        let t = input.len() / d_in;
        let hd = d / self.heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut ctx = vec![0.0f32; queries * d];
        if self.kernels == Kernels::Gemm && queries >= GEMM_MIN_ROWS {
            // Per head: scores [queries, T] = scale q_h k_h^T, softmax per row, ctx_h = p v_h.
            let mut scores = vec![0.0f32; queries * t];
            for h in 0..self.heads {
                let off = h * hd;
                let (qh, kh, vh) = (&q[off..], &k[off..], &v[off..]);
                sgemm(
                    (queries, hd, t),
                    scale,
                    (qh, d, 1),
                    (kh, 1, d),
                    0.0,
                    (&mut scores, t, 1),
                );
                scores.chunks_exact_mut(t).for_each(fast_math::softmax_inplace);
                sgemm(
                    (queries, t, hd),
                    1.0,
                    (&scores, t, 1),
                    (vh, d, 1),
                    0.0,
                    (&mut ctx[off..], d, 1),
                );
            }
            return ctx;
        }
        let mut scores = vec![0.0f32; t];
        for h in 0..self.heads {
            let off = h * hd;
            for i in 0..queries {
                let qi = &q[i * d + off..i * d + off + hd];
                for (j, s) in scores.iter_mut().enumerate() {
                    let kj = &k[j * d + off..j * d + off + hd];
                    *s = qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale;
                }
                softmax_inplace(&mut scores);
                let out = &mut ctx[i * d + off..i * d + off + hd];
                for (j, &p) in scores.iter().enumerate() {
                    for (o, &vv) in out.iter_mut().zip(&v[j * d + off..j * d + off + hd]) {
                        *o += p * vv;
                    }
                }
            }
        }
        ctx
    }

    /// `[T, D]` -> context `[T, D]`.
    pub fn forward(&self, x: &[f32], layer: usize, hook: &mut dyn ForwardHook) -> Vec<f32> {
        let t = x.len() / self.query.in_dim();
        self.attend(self.project(x, t), layer, hook)
    }
}

/// A block's clean Q, K, V projections of its `layernorm_before` output `input: [T, D]`: `k`, `v`
/// `[T, D]`, `q` `[queries, D]` for the first `queries` tokens. They do not depend on LR noise
/// (noise is added after them), so they are computed once per image for all of its queries.
#[derive(Debug, Clone)]
pub struct Qkv {
    /// Shared by every clone (the queries of an image that reuse one [`Qkv`]).
    pub input: Rc<Vec<f32>>,
    pub queries: usize,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

/// `attention`: self-attention followed by its output projection (`attention.output.dense`).
#[derive(Debug, Clone)]
pub struct ViTAttention {
    pub attention: ViTSelfAttention,
    /// `attention.output.dense`
    pub output: Linear,
}

impl ViTAttention {
    pub fn load(cfg: &ViTConfig, vb: &VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            attention: ViTSelfAttention::load(cfg, &vb.pp("attention"))?,
            output: Linear::load(&vb.pp("output").pp("dense"), d, d, true)?,
        })
    }

    pub fn forward(&self, x: &[f32], layer: usize, hook: &mut dyn ForwardHook) -> Vec<f32> {
        let t = x.len() / self.attention.query.in_dim();
        self.forward_projected(self.attention.project(x, t), layer, hook)
    }

    /// `[queries, D]` from clean projections (see [`ViTSelfAttention::attend`]).
    pub fn forward_projected(&self, qkv: Qkv, layer: usize, hook: &mut dyn ForwardHook) -> Vec<f32> {
        let ctx = self.attention.attend(qkv, layer, hook);
        linear(&self.output, LinearSite::AttnOut(layer), &ctx, hook)
    }
}

/// `intermediate`: `dense` then GELU.
#[derive(Debug, Clone)]
pub struct ViTIntermediate {
    pub dense: Linear,
}

/// `output`: `dense` (the residual add happens in [`ViTLayer`]).
#[derive(Debug, Clone)]
pub struct ViTOutput {
    pub dense: Linear,
}

/// One pre-LN encoder block: `x + attn(ln1(x))`, then `+ mlp(ln2(.))`.
#[derive(Debug, Clone)]
pub struct ViTLayer {
    pub layernorm_before: LayerNorm,
    pub attention: ViTAttention,
    pub layernorm_after: LayerNorm,
    pub intermediate: ViTIntermediate,
    pub output: ViTOutput,
    pub index: usize,
}

impl ViTLayer {
    pub fn load(cfg: &ViTConfig, vb: &VarBuilder, index: usize) -> Result<Self> {
        let (d, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        Ok(Self {
            layernorm_before: LayerNorm::load(&vb.pp("layernorm_before"), d, eps)?,
            attention: ViTAttention::load(cfg, &vb.pp("attention"))?,
            layernorm_after: LayerNorm::load(&vb.pp("layernorm_after"), d, eps)?,
            intermediate: ViTIntermediate {
                dense: Linear::load(&vb.pp("intermediate").pp("dense"), d, i, true)?,
            },
            output: ViTOutput {
                dense: Linear::load(&vb.pp("output").pp("dense"), i, d, true)?,
            },
            index,
        })
    }

    /// `[T, D]` -> `[T, D]`.
    pub fn forward(&self, x: &[f32], hook: &mut dyn ForwardHook) -> Vec<f32> {
        let t = x.len() / self.layernorm_before.weight.numel();
        self.forward_rows(x, t, hook)
    }

    /// `[T, D]` -> `[queries, D]`: the output of the first `queries` tokens (attending to all).
    pub fn forward_rows(&self, x: &[f32], queries: usize, hook: &mut dyn ForwardHook) -> Vec<f32> {
        let qkv = self.project(x, queries);
        self.forward_projected(x, qkv, hook)
    }

    /// The clean Q, K, V projections of `layernorm_before(x)`, queries for the first `queries` tokens.
    pub fn project(&self, x: &[f32], queries: usize) -> Qkv {
        self.attention
            .attention
            .project(&self.layernorm_before.forward(x), queries)
    }

    /// The rest of the block from `x: [T, D]` and its clean projections [`Self::project`]:
    /// `[qkv.queries, D]`.
    pub fn forward_projected(&self, x: &[f32], qkv: Qkv, hook: &mut dyn ForwardHook) -> Vec<f32> {
        let l = self.index;
        let d = self.layernorm_before.weight.numel();
        let rows = qkv.queries * d;
        hook.layer_norm(NormSite::Before(l), &self.layernorm_before, x);
        let a = self.attention.forward_projected(qkv, l, hook);
        let h: Vec<f32> = x[..rows].iter().zip(&a).map(|(x, a)| x + a).collect();
        hook.layer_norm(NormSite::After(l), &self.layernorm_after, &h);
        let mut m = linear(
            &self.intermediate.dense,
            LinearSite::Fc1(l),
            &self.layernorm_after.forward(&h),
            hook,
        );
        match self.intermediate.dense.kernels {
            Kernels::Reference => m.iter_mut().for_each(|v| *v = gelu(*v)),
            Kernels::Gemm => fast_math::gelu_inplace(&mut m),
        }
        let o = linear(&self.output.dense, LinearSite::Fc2(l), &m, hook);
        h.iter().zip(&o).map(|(h, o)| h + o).collect()
    }

    pub fn params(&self) -> Vec<&Param> {
        let mut p = self.layernorm_before.params();
        let sa = &self.attention.attention;
        for lin in [&sa.query, &sa.key, &sa.value, &self.attention.output] {
            p.extend(lin.params());
        }
        p.extend(self.layernorm_after.params());
        p.extend(self.intermediate.dense.params());
        p.extend(self.output.dense.params());
        p
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut p = self.layernorm_before.params_mut();
        let a = &mut self.attention;
        p.extend(a.attention.query.params_mut());
        p.extend(a.attention.key.params_mut());
        p.extend(a.attention.value.params_mut());
        p.extend(a.output.params_mut());
        p.extend(self.layernorm_after.params_mut());
        p.extend(self.intermediate.dense.params_mut());
        p.extend(self.output.dense.params_mut());
        p
    }
}

/// `vit`: embeddings, encoder blocks, final LayerNorm.
#[derive(Debug, Clone)]
pub struct ViTModel {
    pub embeddings: ViTEmbeddings,
    /// `encoder.layer`
    pub layers: Vec<ViTLayer>,
    pub layernorm: LayerNorm,
}

impl ViTModel {
    pub fn load(cfg: &ViTConfig, vb: &VarBuilder) -> Result<Self> {
        let enc = vb.pp("encoder").pp("layer");
        Ok(Self {
            embeddings: ViTEmbeddings::load(cfg, &vb.pp("embeddings"))?,
            layers: (0..cfg.num_hidden_layers)
                .map(|i| ViTLayer::load(cfg, &enc.pp(i), i))
                .collect::<Result<_>>()?,
            layernorm: LayerNorm::load(&vb.pp("layernorm"), cfg.hidden_size, cfg.layer_norm_eps)?,
        })
    }

    /// Blocks `range` on a residual stream `[T, D]`; reports hidden states `start + 1 ..`.
    pub fn run_blocks(&self, mut x: Vec<f32>, range: std::ops::Range<usize>, hook: &mut dyn ForwardHook) -> Vec<f32> {
        for layer in &self.layers[range] {
            x = layer.forward(&x, hook);
            hook.hidden(layer.index + 1, &x);
        }
        x
    }

    /// `[C, H, W]` -> the final LayerNorm's output `[T, D]` (HF's `last_hidden_state`).
    pub fn forward(&self, pixels: &[f32], hook: &mut dyn ForwardHook) -> Vec<f32> {
        let x = self.embeddings.forward(pixels, hook);
        hook.hidden(0, &x);
        let x = self.run_blocks(x, 0..self.layers.len(), hook);
        hook.layer_norm(NormSite::Final, &self.layernorm, &x);
        self.layernorm.forward(&x)
    }
}

/// `ViTForImageClassification`: the classifier reads the CLS token of the final LayerNorm.
#[derive(Debug, Clone)]
pub struct ViTForImageClassification {
    pub config: ViTConfig,
    pub vit: ViTModel,
    pub classifier: Linear,
}

impl ViTForImageClassification {
    /// Loads the backbone and, when `reuse_head` and the checkpoint has one, the head; otherwise
    /// a new head for `config`'s labels, initialised `N(0, 0.02^2)` from `head_seed` (HF's
    /// initializer range) with zero bias.
    pub fn load(config: ViTConfig, vb: &VarBuilder, reuse_head: bool, head_seed: u64) -> Result<Self> {
        let vit = ViTModel::load(&config, &vb.pp("vit"))?;
        let (d, n) = (config.hidden_size, config.num_labels());
        let cls = vb.pp("classifier");
        let classifier = if reuse_head && cls.contains("weight") {
            Linear::load(&cls, d, n, true)?
        } else {
            let mut rng = StdRng::seed_from_u64(head_seed);
            Linear::init("classifier", d, n, || rng.sample(StandardNormal), 0.02)
        };
        Ok(Self {
            config,
            vit,
            classifier,
        })
    }

    /// Logits of one preprocessed image `[C, H, W]`.
    pub fn forward(&self, pixels: &[f32], hook: &mut dyn ForwardHook) -> Vec<f32> {
        let x = self.vit.embeddings.forward(pixels, hook);
        hook.hidden(0, &x);
        self.logits_from(&x, 0, hook)
    }

    /// How many leading tokens of block `block` the logits depend on: all `T`, except in the
    /// last block, whose only output the classifier reads is the CLS token's. There the query,
    /// attention output, LayerNorm and MLP run for the CLS token alone (keys and values for all),
    /// which is exact, saves work and, for LR, puts no noise where it cannot reach the loss
    /// (the GPU masks its noise the same way: [`crate::model::perturb::lr_noise_tokens`]).
    pub fn queries_of(&self, block: usize) -> usize {
        if block + 1 == self.vit.layers.len() {
            1
        } else {
            self.config.seq_len()
        }
    }

    /// Multiply-add FLOPs (x 2) of the patch embedding of one image.
    pub fn embedding_flops(&self) -> f64 {
        let c = &self.config;
        let (ph, pw) = c.patch_size.hw();
        2.0 * (c.num_patches() * c.num_channels * ph * pw * c.hidden_size) as f64
    }

    /// Multiply-add FLOPs (x 2) of the forward from the residual stream entering block `start`
    /// (`L`: the final LayerNorm and the classifier) to the logits, as this forward runs it (the
    /// last block for the CLS token only; keys and values of every token). `projected`: block
    /// `start`'s clean Q, K, V are given ([`Self::logits_projected`]), not computed.
    pub fn flops_from(&self, start: usize, projected: bool) -> f64 {
        let c = &self.config;
        let (t, d, m) = (c.seq_len() as f64, c.hidden_size as f64, c.intermediate_size as f64);
        let mut total = 2.0 * d * c.num_labels() as f64;
        for l in start..self.vit.layers.len() {
            let rows = self.queries_of(l) as f64;
            let projections = 2.0 * (rows + 2.0 * t) * d * d;
            let attention = 4.0 * rows * t * d;
            let rest = 2.0 * rows * (d * d + 2.0 * d * m);
            total += attention + rest + if projected && l == start { 0.0 } else { projections };
        }
        total
    }

    /// Logits from the residual stream `x: [T, D]` entering block `first` (`first = L`: the
    /// final LayerNorm and the classifier only).
    pub fn logits_from(&self, x: &[f32], first: usize, hook: &mut dyn ForwardHook) -> Vec<f32> {
        match self.vit.layers.get(first) {
            Some(block) => {
                let qkv = block.project(x, self.queries_of(first));
                self.logits_projected(x, first, qkv, hook)
            }
            None => self.final_head(x, hook),
        }
    }

    /// The final LayerNorm of the CLS token of `x` and the classifier.
    fn final_head(&self, x: &[f32], hook: &mut dyn ForwardHook) -> Vec<f32> {
        let cls = &x[..self.config.hidden_size];
        hook.layer_norm(NormSite::Final, &self.vit.layernorm, cls);
        self.head(&self.vit.layernorm.forward(cls), hook)
    }

    /// Logits from the residual stream `x` entering block `first` and that block's clean
    /// projections `qkv` ([`ViTLayer::project`] with [`Self::queries_of`]), which callers reuse
    /// across the queries of one image.
    pub fn logits_projected(&self, x: &[f32], first: usize, qkv: Qkv, hook: &mut dyn ForwardHook) -> Vec<f32> {
        let mut h = self.vit.layers[first].forward_projected(x, qkv, hook);
        for layer in &self.vit.layers[first + 1..] {
            hook.hidden(layer.index, &h);
            h = layer.forward_rows(&h, self.queries_of(layer.index), hook);
        }
        self.final_head(&h, hook)
    }

    /// The classifier on the CLS token of the final LayerNorm output `[T, D]` (or `[1, D]`).
    pub fn head(&self, last_hidden: &[f32], hook: &mut dyn ForwardHook) -> Vec<f32> {
        linear(
            &self.classifier,
            LinearSite::Classifier,
            &last_hidden[..self.config.hidden_size],
            hook,
        )
    }

    /// Logits `[B, num_labels]` of a batch `[B, C, H, W]`.
    pub fn forward_batch(&self, pixels: &[f32]) -> Result<Vec<f32>> {
        let n = self.config.image_numel();
        if pixels.is_empty() || !pixels.len().is_multiple_of(n) {
            return Err(ModelError::Input {
                reason: format!(
                    "pixel batch of {} values is not a whole number of {n}-value images",
                    pixels.len()
                ),
            });
        }
        Ok(pixels
            .chunks_exact(n)
            .flat_map(|img| self.forward(img, &mut NoHook))
            .collect())
    }

    /// Every parameter under its HF name, in checkpoint order.
    pub fn params(&self) -> Vec<&Param> {
        let mut p = self.vit.embeddings.params();
        for l in &self.vit.layers {
            p.extend(l.params());
        }
        p.extend(self.vit.layernorm.params());
        p.extend(self.classifier.params());
        p
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut p = self.vit.embeddings.params_mut();
        for l in &mut self.vit.layers {
            p.extend(l.params_mut());
        }
        p.extend(self.vit.layernorm.params_mut());
        p.extend(self.classifier.params_mut());
        p
    }

    pub fn num_params(&self) -> usize {
        self.params().iter().map(|p| p.numel()).sum()
    }

    /// Which implementation every dense product of the forward uses ([`Kernels::Reference`]
    /// after loading: the oracle).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.vit.embeddings.patch_embeddings.projection.kernels = kernels;
        self.vit.layernorm.kernels = kernels;
        for l in &mut self.vit.layers {
            l.layernorm_before.kernels = kernels;
            l.layernorm_after.kernels = kernels;
            let a = &mut l.attention;
            a.attention.kernels = kernels;
            for lin in [
                &mut a.attention.query,
                &mut a.attention.key,
                &mut a.attention.value,
                &mut a.output,
                &mut l.intermediate.dense,
                &mut l.output.dense,
            ] {
                lin.kernels = kernels;
            }
        }
        self.classifier.kernels = kernels;
    }
}
