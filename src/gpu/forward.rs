//! The forward over query rows: embeddings and frozen blocks once per image, fan-out to the
//! rows, tuned blocks with in-shader perturbation, head and per-row cross-entropy. Everything
//! is recorded into one command buffer with one readback of the losses and logits.
//!
//! Rows are processed in chunks that fit the binding limit (scratch buffers reused across
//! chunks; the queue orders the passes). Inputs of LR-perturbed linear layers are kept on
//! the GPU for the gradient estimate ([`LrInputs`]).

use std::ops::Range;

use super::context::GpuContext;
use super::error::{GpuError, Result};
use super::model::GpuModel;
use super::ops::{self, EmbedParams, Matmul, Op, PertView, WeightEpilogue, NONE};
use super::plan::{Chunk, PlanTables, RowPlan};
use super::readback::Staging;
use super::tensor::{upload_bytes, upload_u32, GpuTensor};
use crate::model::params::LinearIds;
use crate::model::{LinearSite, NormSite};

/// The input of an LR-perturbed linear layer for a range of internal rows:
/// `[rows, tokens, in]` (`tokens = 1` for the classifier, which reads the CLS token).
#[derive(Debug, Clone)]
pub struct KeptInput {
    pub site: LinearSite,
    pub rows: Range<usize>,
    pub tensor: GpuTensor,
}

/// `x_hat` (the normalised input, before the affine map) of a LayerNorm that feeds an
/// LR-perturbed layer, for a range of internal rows: `[rows, T, D]`, or `[rows, D]` (the CLS
/// token) for the final LayerNorm.
#[derive(Debug, Clone)]
pub struct KeptNorm {
    pub norm: NormSite,
    pub rows: Range<usize>,
    pub tensor: GpuTensor,
}

/// Inputs of every LR-perturbed layer, in internal row order (`order[i]` = plan row of
/// internal row `i`). Q, K and V share one input (recorded under each site).
#[derive(Debug, Clone, Default)]
pub struct LrInputs {
    pub order: Vec<usize>,
    pub kept: Vec<KeptInput>,
    pub norms: Vec<KeptNorm>,
}

/// What a forward returns, in plan row order.
#[derive(Debug, Clone)]
pub struct RowOutputs {
    /// `[R]` cross-entropy of each row.
    pub losses: Vec<f32>,
    /// `[R, classes]`.
    pub logits: Vec<f32>,
    pub classes: usize,
    pub lr_inputs: LrInputs,
}

/// The result of a validation error scope, resolved when the results are read.
type ScopeResult = std::pin::Pin<Box<dyn std::future::Future<Output = Option<wgpu::Error>>>>;

/// A submitted forward whose results are not read yet.
pub struct PendingForward {
    /// Validation errors of recording and submission: on the web an error scope resolves only
    /// asynchronously, so it is awaited together with the results.
    validation: Option<ScopeResult>,
    staging: Staging,
    order: Vec<usize>,
    classes: usize,
    lr_inputs: LrInputs,
}

impl PendingForward {
    /// Waits for the GPU (one `map_async`) and returns the rows' results in plan order.
    pub async fn read(mut self, ctx: &GpuContext) -> Result<RowOutputs> {
        if let Some(scope) = self.validation.take() {
            if let Some(e) = scope.await {
                return Err(GpuError::Validation { message: e.to_string() });
            }
        }
        let res = self.staging.read(ctx).await?;
        let r = self.order.len();
        let c = self.classes;
        let mut losses = vec![0.0; r];
        let mut logits = vec![0.0; r * c];
        for (internal, &row) in self.order.iter().enumerate() {
            losses[row] = res[internal];
            logits[row * c..(row + 1) * c].copy_from_slice(&res[r + internal * c..r + (internal + 1) * c]);
        }
        Ok(RowOutputs {
            losses,
            logits,
            classes: c,
            lr_inputs: self.lr_inputs,
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking(self, ctx: &GpuContext) -> Result<RowOutputs> {
        pollster::block_on(self.read(ctx))
    }
}

/// Knobs of a forward; the defaults size chunks from the device limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardOptions {
    /// Caps the rows computed together (fewer rows per chunk, same single submission).
    pub max_rows_per_chunk: Option<usize>,
}

/// The batched forward over query rows.
pub struct GpuForward;

impl GpuForward {
    /// Records and submits the forward of `plan` over `images: [B, C, H, W]` (preprocessed).
    pub fn submit(ctx: &GpuContext, model: &GpuModel, images: &[f32], plan: &RowPlan) -> Result<PendingForward> {
        Self::submit_with(ctx, model, images, plan, &ForwardOptions::default())
    }

    /// [`GpuForward::submit`] with options.
    pub fn submit_with(
        ctx: &GpuContext,
        model: &GpuModel,
        images: &[f32],
        plan: &RowPlan,
        opts: &ForwardOptions,
    ) -> Result<PendingForward> {
        Ok(Self::submit_reusing(ctx, model, images, plan, opts, None)?.0)
    }

    /// [`GpuForward::submit_with`], also returning the per-image residual streams entering
    /// block `plan.first_tuned` (`[B, T, D]`). Given `prefix` (those streams from an earlier
    /// forward of the same images, frozen weights and `first_tuned`), skips the embeddings and
    /// the frozen blocks.
    pub fn submit_reusing(
        ctx: &GpuContext,
        model: &GpuModel,
        images: &[f32],
        plan: &RowPlan,
        opts: &ForwardOptions,
        prefix: Option<&GpuTensor>,
    ) -> Result<(PendingForward, GpuTensor)> {
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let (mut pending, hidden) = Self::submit_inner(ctx, model, images, plan, opts, prefix)?;
        pending.validation = Some(Box::pin(scope.pop()));
        Ok((pending, hidden))
    }

    fn submit_inner(
        ctx: &GpuContext,
        model: &GpuModel,
        images: &[f32],
        plan: &RowPlan,
        opts: &ForwardOptions,
        prefix: Option<&GpuTensor>,
    ) -> Result<(PendingForward, GpuTensor)> {
        let cfg = &model.config;
        let b = image_count("forward", model, images)?;
        let classes = cfg.num_labels();
        plan.validate(&model.ids, b, classes)?;
        let per_chunk = rows_per_chunk(ctx, model)
            .min(opts.max_rows_per_chunk.unwrap_or(usize::MAX))
            .max(1);
        let tables = plan.lower(&model.ids, per_chunk);
        let pert = PertView {
            buffer: upload_bytes(ctx, "perturbation table", bytemuck::cast_slice(&tables.words))?,
            rows_off: tables.rows_off,
            groups_off: tables.groups_off,
            wscale_off: tables.wscale_off,
            n_tensors: tables.n_tensors,
        };
        let dims = Dims::of(model);
        let mut ops = Vec::new();

        // Once per image: embeddings and the frozen prefix (unless given). The scratch lives
        // until the submission, like every buffer the recorded ops use.
        let mut _img_scratch = None;
        let hidden_img = match prefix {
            Some(p) if p.shape == [b, dims.t, dims.d] => p.clone(),
            Some(p) => {
                return Err(GpuError::Shape {
                    op: "forward prefix",
                    message: format!("{:?} for {b} images of [{}, {}]", p.shape, dims.t, dims.d),
                })
            }
            None => {
                let (hidden_img, img_scratch) =
                    record_prefix(ctx, model, images, b, plan.first_tuned, &pert, &mut ops)?;
                _img_scratch = Some(img_scratch);
                hidden_img
            }
        };

        // Per chunk of rows: fan-out, tuned blocks, head, loss.
        let r = plan.rows.len();
        let max_chunk = tables.chunks.iter().map(|c| c.rows.len()).max().unwrap_or(1);
        let scratch = Scratch::new(ctx, &dims, max_chunk)?;
        let x_all = GpuTensor::zeros(ctx, "row hidden", &[max_chunk, dims.t, dims.d])?;
        let identity: Vec<u32> = (0..max_chunk as u32).collect();
        let identity = upload_u32(ctx, "identity rows", &identity)?;
        let results = GpuTensor::zeros(ctx, "results", &[r * (classes + 1)])?;
        let mut kept = LrInputs::default();
        for chunk in &tables.chunks {
            let n = chunk.rows.len();
            let stage = Stage {
                model,
                dims: &dims,
                pert: &pert,
                tables: Some(&tables),
                chunk: Some(chunk),
                row_base: chunk.rows.start as u32,
            };
            let x = x_all.view(&[n, dims.t, dims.d])?;
            let idx = upload_u32(ctx, "row images", &tables.row_image[chunk.rows.clone()])?;
            let row_width = dims.t * dims.d;
            ops.push(ops::gather(
                &hidden_img.view(&[b, row_width])?,
                &idx,
                n,
                row_width,
                row_width,
                0,
                &x,
            )?);
            for l in plan.first_tuned..dims.layers {
                stage.block(ctx, l, &x, n, &scratch, &mut kept, &mut ops)?;
            }
            stage.head(ctx, &x, n, &scratch, &identity, &results, r, &mut kept, &mut ops)?;
        }
        let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("rows forward"),
        });
        ops::record(ctx, &mut encoder, &ops)?;
        let staging = Staging::record(ctx, &mut encoder, &results.buffer, r * (classes + 1));
        ctx.queue.submit([encoder.finish()]);
        let pending = PendingForward {
            validation: None,
            staging,
            order: tables.order.clone(),
            classes,
            lr_inputs: LrInputs {
                order: tables.order,
                ..kept
            },
        };
        Ok((pending, hidden_img))
    }

    /// The residual stream entering block `first` of every image `[B, C, H, W]`: `[B, T, D]`
    /// (embeddings and blocks `0..first`, unperturbed), submitted; later submissions see it.
    pub fn prefix(ctx: &GpuContext, model: &GpuModel, images: &[f32], first: usize) -> Result<GpuTensor> {
        let b = image_count("forward prefix", model, images)?;
        let layers = model.config.num_hidden_layers;
        if first > layers {
            return Err(GpuError::Shape {
                op: "forward prefix",
                message: format!("up to block {first} of a {layers}-block model"),
            });
        }
        let pert = PertView::unused(ctx)?;
        let mut ops = Vec::new();
        let (hidden, _scratch) = record_prefix(ctx, model, images, b, first, &pert, &mut ops)?;
        let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("frozen prefix"),
        });
        ops::record(ctx, &mut encoder, &ops)?;
        ctx.queue.submit([encoder.finish()]);
        Ok(hidden)
    }

    /// [`GpuForward::submit`] then [`PendingForward::read`].
    pub async fn run(ctx: &GpuContext, model: &GpuModel, images: &[f32], plan: &RowPlan) -> Result<RowOutputs> {
        Self::submit(ctx, model, images, plan)?.read(ctx).await
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_blocking(ctx: &GpuContext, model: &GpuModel, images: &[f32], plan: &RowPlan) -> Result<RowOutputs> {
        pollster::block_on(Self::run(ctx, model, images, plan))
    }
}

/// Rows per chunk: the widest activation `[rows, T, max(D, I)]` fits one binding, and the
/// LayerNorm's token rows fit one dispatch dimension.
fn rows_per_chunk(ctx: &GpuContext, model: &GpuModel) -> usize {
    let d = Dims::of(model);
    let widest = (d.t * d.d.max(d.inner).max(d.classes) * 4) as u64;
    let by_memory = (ctx.max_binding_bytes() / widest.max(1)) as usize;
    by_memory.min(65_535 / d.t).max(1)
}

#[derive(Debug, Clone, Copy)]
struct Dims {
    t: usize,
    d: usize,
    inner: usize,
    heads: usize,
    layers: usize,
    classes: usize,
}

impl Dims {
    fn of(model: &GpuModel) -> Self {
        let c = &model.config;
        Self {
            t: c.seq_len(),
            d: c.hidden_size,
            inner: c.intermediate_size,
            heads: c.num_attention_heads,
            layers: c.num_hidden_layers,
            classes: c.num_labels(),
        }
    }
}

/// Reusable activations for up to `rows` rows.
struct Scratch {
    a: GpuTensor,
    q: GpuTensor,
    k: GpuTensor,
    v: GpuTensor,
    c: GpuTensor,
    o: GpuTensor,
    h: GpuTensor,
    cls: GpuTensor,
    logits: GpuTensor,
}

impl Scratch {
    fn new(ctx: &GpuContext, d: &Dims, rows: usize) -> Result<Self> {
        let td = [rows, d.t, d.d];
        Ok(Self {
            a: GpuTensor::zeros(ctx, "ln out", &td)?,
            q: GpuTensor::zeros(ctx, "q", &td)?,
            k: GpuTensor::zeros(ctx, "k", &td)?,
            v: GpuTensor::zeros(ctx, "v", &td)?,
            c: GpuTensor::zeros(ctx, "attention ctx", &td)?,
            o: GpuTensor::zeros(ctx, "branch out", &td)?,
            h: GpuTensor::zeros(ctx, "mlp hidden", &[rows, d.t, d.inner])?,
            cls: GpuTensor::zeros(ctx, "cls", &[rows, d.d])?,
            logits: GpuTensor::zeros(ctx, "logits", &[rows, d.classes])?,
        })
    }
}

/// How many images `[B, C, H, W]` `images` holds (at least one).
pub(crate) fn image_count(op: &'static str, model: &GpuModel, images: &[f32]) -> Result<usize> {
    let per_image = model.config.image_numel();
    if images.is_empty() || !images.len().is_multiple_of(per_image) {
        return Err(GpuError::Shape {
            op,
            message: format!(
                "{} pixel values are not a whole number of {per_image}-value images",
                images.len()
            ),
        });
    }
    Ok(images.len() / per_image)
}

/// Records the embeddings and blocks `0..first` of `b` images: `[b, T, D]`, and the scratch the
/// recorded ops use (keep it until the submission).
fn record_prefix(
    ctx: &GpuContext,
    model: &GpuModel,
    images: &[f32],
    b: usize,
    first: usize,
    pert: &PertView,
    ops: &mut Vec<Op>,
) -> Result<(GpuTensor, Scratch)> {
    let dims = Dims::of(model);
    let hidden = embed(ctx, model, images, b, pert, ops)?;
    let scratch = Scratch::new(ctx, &dims, b)?;
    let frozen = Stage {
        model,
        dims: &dims,
        pert,
        tables: None,
        chunk: None,
        row_base: 0,
    };
    for l in 0..first {
        frozen.block(ctx, l, &hidden, b, &scratch, &mut LrInputs::default(), ops)?;
    }
    Ok((hidden, scratch))
}

/// Pixels -> `[B, T, D]`: im2col, patch projection, CLS + position embeddings.
/// `pert` is bound but not read (the embeddings are never perturbed).
fn embed(
    ctx: &GpuContext,
    model: &GpuModel,
    images: &[f32],
    b: usize,
    pert: &PertView,
    ops: &mut Vec<Op>,
) -> Result<GpuTensor> {
    let cfg = &model.config;
    let ids = &model.ids;
    let (h, w) = cfg.image_size.hw();
    let (ph, pw) = cfg.patch_size.hw();
    let (_, gw) = cfg.grid();
    let (np, d, ch) = (cfg.num_patches(), cfg.hidden_size, cfg.num_channels);
    let u = |v: usize| v as u32;
    let p = EmbedParams {
        images: u(b),
        channels: u(ch),
        height: u(h),
        width: u(w),
        ph: u(ph),
        pw: u(pw),
        grid_w: u(gw),
        patches: u(np),
        d: u(d),
        _pad: [0; 3],
    };
    let pixels = GpuTensor::from_slice(ctx, "pixels", &[b, ch, h, w], images)?;
    let patches = GpuTensor::zeros(ctx, "patches", &[b * np, ch * ph * pw])?;
    let proj = GpuTensor::zeros(ctx, "patch projection", &[b * np, d])?;
    let hidden = GpuTensor::zeros(ctx, "image hidden", &[b, np + 1, d])?;
    ops.push(ops::im2col(&p, &pixels, &patches)?);
    let weight = model.get(ids.patch.weight)?.view(&[d, ch * ph * pw])?;
    let bias = ids.patch.bias.map(|id| model.get(id)).transpose()?;
    ops.push(ops::matmul(&Matmul {
        x: &patches,
        rows: b * np,
        tokens: 1,
        weight: &weight,
        bias,
        y: &proj,
        tensor_ids: (NONE, NONE),
        gelu: false,
        lr: None,
        weight_pert: None,
        row_base: 0,
        pert,
    })?);
    ops.push(ops::assemble(
        &p,
        &proj,
        model.get(ids.cls_token)?,
        model.get(ids.position_embeddings)?,
        &hidden,
    )?);
    Ok(hidden)
}

/// What the ops of one stage (per-image prefix, or one chunk of rows) share.
struct Stage<'a> {
    model: &'a GpuModel,
    dims: &'a Dims,
    pert: &'a PertView,
    /// `None` for the unperturbed per-image prefix.
    tables: Option<&'a PlanTables>,
    chunk: Option<&'a Chunk>,
    row_base: u32,
}

impl Stage<'_> {
    fn perturbed(&self, id: Option<u32>) -> bool {
        matches!((self.tables, id), (Some(t), Some(id)) if t.perturbed.contains(&id))
    }

    fn is_lr(&self, site: LinearSite) -> bool {
        self.tables.is_some_and(|t| t.sigma_off.contains_key(&site))
    }

    #[allow(clippy::too_many_arguments)]
    fn linear(
        &self,
        site: LinearSite,
        ids: LinearIds,
        x: &GpuTensor,
        rows: usize,
        tokens: usize,
        y: &GpuTensor,
        gelu: bool,
    ) -> Result<Op> {
        let weight_pert = match (self.chunk, self.perturbed(Some(ids.weight)) || self.perturbed(ids.bias)) {
            (Some(c), true) => Some(WeightEpilogue {
                list_off: c.list_off,
                n_groups: c.n_groups,
                max_group_rows: c.max_group_rows,
            }),
            _ => None,
        };
        let bias = ids.bias.map(|id| self.model.get(id)).transpose()?;
        ops::matmul(&Matmul {
            x,
            rows,
            tokens,
            weight: self.model.get(ids.weight)?,
            bias,
            y,
            tensor_ids: (ids.weight, ids.bias.unwrap_or(NONE)),
            gelu,
            lr: self
                .tables
                .and_then(|t| t.lr(site, self.model.ids.layers.len(), self.model.config.seq_len())),
            weight_pert,
            row_base: self.row_base,
            pert: self.pert,
        })
    }

    fn layer_norm(&self, ln: (u32, u32), x: &GpuTensor, rows: usize, y: &GpuTensor) -> Result<Op> {
        let perturb = (self.perturbed(Some(ln.0)) || self.perturbed(Some(ln.1))).then_some(ln);
        let (g, b) = (self.model.get(ln.0)?, self.model.get(ln.1)?);
        ops::layer_norm(
            x,
            rows,
            self.dims.t,
            g,
            b,
            self.model.layer_norm_eps,
            y,
            perturb,
            self.row_base,
            self.pert,
        )
    }

    /// A buffer for the input of `sites`: a fresh one, recorded in `kept`, when any of them is
    /// LR-perturbed; else the scratch view.
    fn input_buffer(
        &self,
        ctx: &GpuContext,
        sites: &[LinearSite],
        scratch: &GpuTensor,
        shape: &[usize],
        kept: &mut LrInputs,
    ) -> Result<GpuTensor> {
        let lr: Vec<LinearSite> = sites.iter().copied().filter(|&s| self.is_lr(s)).collect();
        let (Some(chunk), false) = (self.chunk, lr.is_empty()) else {
            return scratch.view(shape);
        };
        let t = GpuTensor::zeros(ctx, "LR layer input", shape)?;
        kept.kept.extend(lr.into_iter().map(|site| KeptInput {
            site,
            rows: chunk.rows.clone(),
            tensor: t.clone(),
        }));
        Ok(t)
    }

    /// The CLS token of each row of `full: [rows, T, D]` into `cls: [rows, D]`.
    fn gather_cls(&self, full: &GpuTensor, rows: usize, identity: &wgpu::Buffer, cls: &GpuTensor) -> Result<Op> {
        let row_width = self.dims.t * self.dims.d;
        ops::gather(
            &full.view(&[rows, row_width])?,
            identity,
            rows,
            self.dims.d,
            row_width,
            0,
            cls,
        )
    }

    /// When any of `consumers` is LR-perturbed: `x_hat` of `x: [rows, T, D]` for `norm` into a
    /// kept buffer (`[rows, T, D]`, or its CLS token `[rows, D]` via `tmp` when `cls_only`).
    #[allow(clippy::too_many_arguments)]
    fn keep_norm(
        &self,
        ctx: &GpuContext,
        norm: NormSite,
        consumers: &[LinearSite],
        x: &GpuTensor,
        rows: usize,
        cls_only: Option<(&GpuTensor, &wgpu::Buffer)>,
        kept: &mut LrInputs,
        ops: &mut Vec<Op>,
    ) -> Result<()> {
        let (Some(chunk), true) = (self.chunk, consumers.iter().any(|&s| self.is_lr(s))) else {
            return Ok(());
        };
        let d = self.dims;
        let (ones, zeros) = &self.model.unit_affine;
        let normalize = |y: &GpuTensor| {
            ops::layer_norm(
                x,
                rows,
                d.t,
                ones,
                zeros,
                self.model.layer_norm_eps,
                y,
                None,
                self.row_base,
                self.pert,
            )
        };
        let tensor = match cls_only {
            None => {
                let t = GpuTensor::zeros(ctx, "LR LayerNorm x_hat", &[rows, d.t, d.d])?;
                ops.push(normalize(&t)?);
                t
            }
            Some((tmp, identity)) => {
                let t = GpuTensor::zeros(ctx, "LR LayerNorm x_hat (CLS)", &[rows, d.d])?;
                let full = tmp.view(&[rows, d.t, d.d])?;
                ops.push(normalize(&full)?);
                ops.push(self.gather_cls(&full, rows, identity, &t)?);
                t
            }
        };
        kept.norms.push(KeptNorm {
            norm,
            rows: chunk.rows.clone(),
            tensor,
        });
        Ok(())
    }

    /// Encoder block `l` on `x: [rows, T, D]`, in place.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        ctx: &GpuContext,
        l: usize,
        x: &GpuTensor,
        rows: usize,
        s: &Scratch,
        kept: &mut LrInputs,
        ops: &mut Vec<Op>,
    ) -> Result<()> {
        let d = self.dims;
        let ids = self.model.ids.layers[l];
        let qkv = [LinearSite::Query(l), LinearSite::Key(l), LinearSite::Value(l)];
        self.keep_norm(ctx, NormSite::Before(l), &qkv, x, rows, None, kept, ops)?;
        let td = [rows, d.t, d.d];
        let a = self.input_buffer(ctx, &qkv, &s.a, &td, kept)?;
        let (q, k, v, o) = (s.q.view(&td)?, s.k.view(&td)?, s.v.view(&td)?, s.o.view(&td)?);
        ops.push(self.layer_norm(ids.ln_before, x, rows, &a)?);
        ops.push(self.linear(LinearSite::Query(l), ids.query, &a, rows, d.t, &q, false)?);
        ops.push(self.linear(LinearSite::Key(l), ids.key, &a, rows, d.t, &k, false)?);
        ops.push(self.linear(LinearSite::Value(l), ids.value, &a, rows, d.t, &v, false)?);
        let c = self.input_buffer(ctx, &[LinearSite::AttnOut(l)], &s.c, &td, kept)?;
        ops.push(ops::attention(&q, &k, &v, &c, rows, d.t, d.d, d.heads)?);
        ops.push(self.linear(LinearSite::AttnOut(l), ids.attn_out, &c, rows, d.t, &o, false)?);
        ops.push(ops::add(x, &o)?);
        self.keep_norm(ctx, NormSite::After(l), &[LinearSite::Fc1(l)], x, rows, None, kept, ops)?;
        let a2 = self.input_buffer(ctx, &[LinearSite::Fc1(l)], &s.a, &td, kept)?;
        ops.push(self.layer_norm(ids.ln_after, x, rows, &a2)?);
        let h = self.input_buffer(ctx, &[LinearSite::Fc2(l)], &s.h, &[rows, d.t, d.inner], kept)?;
        ops.push(self.linear(LinearSite::Fc1(l), ids.fc1, &a2, rows, d.t, &h, true)?);
        ops.push(self.linear(LinearSite::Fc2(l), ids.fc2, &h, rows, d.t, &o, false)?);
        ops.push(ops::add(x, &o)?);
        Ok(())
    }

    /// Final LayerNorm, CLS gather, classifier, cross-entropy into `results`.
    #[allow(clippy::too_many_arguments)]
    fn head(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        rows: usize,
        s: &Scratch,
        identity: &wgpu::Buffer,
        results: &GpuTensor,
        total_rows: usize,
        kept: &mut LrInputs,
        ops: &mut Vec<Op>,
    ) -> Result<()> {
        let d = self.dims;
        let ids = &self.model.ids;
        let a = s.a.view(&[rows, d.t, d.d])?;
        let cls_only = Some((&a, identity));
        self.keep_norm(
            ctx,
            NormSite::Final,
            &[LinearSite::Classifier],
            x,
            rows,
            cls_only,
            kept,
            ops,
        )?;
        ops.push(self.layer_norm(ids.final_ln, x, rows, &a)?);
        let cls = self.input_buffer(ctx, &[LinearSite::Classifier], &s.cls, &[rows, d.d], kept)?;
        ops.push(self.gather_cls(&a, rows, identity, &cls)?);
        let logits = s.logits.view(&[rows, d.classes])?;
        ops.push(self.linear(LinearSite::Classifier, ids.classifier, &cls, rows, 1, &logits, false)?);
        ops.push(ops::loss(
            &logits,
            rows,
            self.row_base as usize,
            total_rows,
            self.pert,
            results,
        )?);
        Ok(())
    }
}
