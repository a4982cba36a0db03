//! The query rows of a forward ([`RowPlan`]) and their lowering to the perturbation table
//! the kernels read (layout in shaders/perturb.wgsl).
//!
//! Internally rows are reordered so that rows sharing a weight perturbation (same seed, step,
//! direction, scale and tensors) are contiguous: each such group is one z-slice of the
//! perturbed matmuls. Results are returned in plan order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;

use super::error::{GpuError, Result};
use super::ops::NONE;
use crate::model::nn::cross_entropy;
use crate::model::params::ParamTable;
use crate::model::perturb::{lr_noise_tokens, perturbed_copy, LrNoiseHook};
use crate::model::{LinearSite, NoHook, ViTForImageClassification};

/// What one query row perturbs.
#[derive(Debug, Clone, PartialEq)]
pub enum Perturbation {
    /// The unperturbed model (baselines, predictions).
    Clean,
    /// LR: `+ sigma_s * eps` on the output of each site `s` of `sites` (with its signed
    /// `sigma_s`), `eps = Stream::lr(seed, step, site, row)`.
    Lr {
        seed: u64,
        step: u32,
        sites: Vec<(LinearSite, f32)>,
        row: u32,
    },
    /// SPSA/ES: `theta_t + scale * z_k` for tensor ids `tensors`,
    /// `z_k = Stream::weight(seed, step, t, direction)`; `scale = +-eps` for the two sides.
    Weight {
        seed: u64,
        step: u32,
        direction: u32,
        scale: f32,
        tensors: Vec<u32>,
    },
}

/// One query: an image (index into the forward's images), its label, a perturbation.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRow {
    pub image: usize,
    pub label: usize,
    pub perturbation: Perturbation,
}

/// The rows of one forward. Blocks below `first_tuned` must be unperturbed in every row: they
/// run once per image and their output is fanned out to the image's rows. The embeddings are
/// always shared (not perturbable on this path).
#[derive(Debug, Clone, PartialEq)]
pub struct RowPlan {
    pub rows: Vec<QueryRow>,
    pub first_tuned: usize,
}

/// One chunk of internal rows, computed by one pass over the tuned blocks.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    pub rows: Range<usize>,
    pub list_off: u32,
    pub n_groups: u32,
    pub max_group_rows: u32,
}

/// A plan lowered to u32 words.
#[derive(Debug, Clone)]
pub(crate) struct PlanTables {
    /// Internal row `i` is plan row `order[i]`.
    pub order: Vec<usize>,
    /// Image of each internal row.
    pub row_image: Vec<u32>,
    pub words: Vec<u32>,
    pub rows_off: u32,
    pub groups_off: u32,
    pub wscale_off: u32,
    pub n_tensors: u32,
    /// Offset of the sigma table of every LR site some row perturbs.
    pub sigma_off: BTreeMap<LinearSite, u32>,
    /// Tensor ids some row perturbs.
    pub perturbed: BTreeSet<u32>,
    pub chunks: Vec<Chunk>,
}

fn plan_err(reason: String) -> GpuError {
    GpuError::Plan { reason }
}

type GroupKey = (u64, u32, u32, u32, Vec<u32>);

impl RowPlan {
    /// One unperturbed row per image, labelled `labels[i]` (predictions pass any label), split
    /// at `first_tuned`.
    pub fn clean(labels: &[usize], first_tuned: usize) -> Self {
        Self {
            rows: labels
                .iter()
                .enumerate()
                .map(|(image, &label)| QueryRow {
                    image,
                    label,
                    perturbation: Perturbation::Clean,
                })
                .collect(),
            first_tuned,
        }
    }

    /// The CPU reference of this plan over `pixels: [B, C, H, W]`: every row's logits
    /// (`[R, classes]`) and loss, with its perturbation applied the CPU way
    /// ([`crate::model::perturb`], the same regenerated noise). The oracle of the GPU forward.
    pub fn cpu_reference(&self, net: &ViTForImageClassification, pixels: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let per = net.config.image_numel();
        let (mut logits, mut losses) = (Vec::new(), Vec::with_capacity(self.rows.len()));
        for row in &self.rows {
            let img = pixels
                .get(row.image * per..(row.image + 1) * per)
                .ok_or_else(|| GpuError::Plan {
                    reason: format!(
                        "row image {} is outside the {} images given",
                        row.image,
                        pixels.len() / per.max(1)
                    ),
                })?;
            let z = match &row.perturbation {
                Perturbation::Clean => net.forward(img, &mut NoHook),
                Perturbation::Lr { seed, step, sites, row } => {
                    let mut hook = LrNoiseHook {
                        seed: *seed,
                        step: *step,
                        row: *row,
                        sites: sites.clone(),
                    };
                    net.forward(img, &mut hook)
                }
                Perturbation::Weight {
                    seed,
                    step,
                    direction,
                    scale,
                    tensors,
                } => perturbed_copy(net, *seed, *step, *direction, *scale, tensors)
                    .map_err(|e| GpuError::Plan { reason: e.to_string() })?
                    .forward(img, &mut NoHook),
            };
            losses.push(cross_entropy(&z, row.label));
            logits.extend(z);
        }
        Ok((logits, losses))
    }

    /// Checks the plan against the model: indices in range, perturbations only at or above
    /// `first_tuned` (and never in the embeddings), finite scales.
    pub fn validate(&self, ids: &ParamTable, images: usize, classes: usize) -> Result<()> {
        let layers = ids.layers.len();
        if self.first_tuned > layers {
            return Err(plan_err(format!(
                "first_tuned {} beyond the {layers} blocks",
                self.first_tuned
            )));
        }
        if self.rows.is_empty() {
            return Err(plan_err("no rows".into()));
        }
        for (i, r) in self.rows.iter().enumerate() {
            if r.image >= images {
                return Err(plan_err(format!("row {i}: image {} of {images}", r.image)));
            }
            if r.label >= classes {
                return Err(plan_err(format!("row {i}: label {} of {classes} classes", r.label)));
            }
            match &r.perturbation {
                Perturbation::Clean => {}
                Perturbation::Lr { sites, .. } => {
                    for &(s, sigma) in sites {
                        if !sigma.is_finite() {
                            return Err(plan_err(format!("row {i}: sigma {sigma} at {s:?}")));
                        }
                        if s == LinearSite::PatchEmbed {
                            return Err(GpuError::Unsupported {
                                reason: format!("row {i}: LR noise on the patch embedding"),
                            });
                        }
                        match s.block() {
                            Some(l) if l >= layers => {
                                return Err(plan_err(format!("row {i}: {s:?} beyond {layers} blocks")))
                            }
                            Some(l) if l < self.first_tuned => {
                                return Err(plan_err(format!(
                                    "row {i}: {s:?} is below first_tuned {}",
                                    self.first_tuned
                                )))
                            }
                            _ => {}
                        }
                    }
                }
                Perturbation::Weight { scale, tensors, .. } => {
                    if !scale.is_finite() {
                        return Err(plan_err(format!("row {i}: scale {scale}")));
                    }
                    for &t in tensors {
                        match ids.block_of(t) {
                            Err("embeddings") => {
                                return Err(GpuError::Unsupported {
                                    reason: format!("row {i}: perturbing embedding tensor {t}"),
                                })
                            }
                            Err(_) => return Err(plan_err(format!("row {i}: tensor id {t} of {}", ids.count))),
                            Ok(Some(b)) if b < self.first_tuned => {
                                return Err(plan_err(format!(
                                    "row {i}: tensor {t} is in block {b}, below first_tuned {}",
                                    self.first_tuned
                                )))
                            }
                            Ok(_) => {}
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Lowers the plan: internal order, the u32 table, chunks of at most `rows_per_chunk` rows.
    pub(crate) fn lower(&self, ids: &ParamTable, rows_per_chunk: usize) -> PlanTables {
        let r_count = self.rows.len();
        let n_tensors = ids.count;
        let mut groups: Vec<GroupKey> = Vec::new();
        let mut group_index: HashMap<GroupKey, u32> = HashMap::new();
        let mut scales: Vec<f32> = Vec::new();
        let row_group: Vec<u32> = self
            .rows
            .iter()
            .map(|r| match &r.perturbation {
                Perturbation::Weight {
                    seed,
                    step,
                    direction,
                    scale,
                    tensors,
                } => {
                    let mut t = tensors.clone();
                    t.sort_unstable();
                    t.dedup();
                    let key = (*seed, *step, *direction, scale.to_bits(), t);
                    *group_index.entry(key.clone()).or_insert_with(|| {
                        groups.push(key);
                        scales.push(*scale);
                        groups.len() as u32 - 1
                    })
                }
                _ => NONE,
            })
            .collect();
        let mut order: Vec<usize> = (0..r_count).collect();
        // NONE (u32::MAX) sorts last: unperturbed-weight rows after the groups.
        order.sort_by_key(|&i| row_group[i]);

        let mut sites: BTreeSet<LinearSite> = BTreeSet::new();
        for r in &self.rows {
            if let Perturbation::Lr { sites: s, .. } = &r.perturbation {
                sites.extend(s.iter().map(|&(site, _)| site));
            }
        }
        let g_count = groups.len();
        let rows_off = 0u32;
        let groups_off = rows_off + 8 * r_count as u32;
        let wscale_off = groups_off + 4 * g_count as u32;
        let sigma_base = wscale_off + g_count as u32 * n_tensors;
        let lists_off = sigma_base + (sites.len() * r_count) as u32;
        let mut words = vec![0u32; lists_off as usize];
        let mut row_image = Vec::with_capacity(r_count);
        let sigma_off: BTreeMap<LinearSite, u32> = sites
            .iter()
            .enumerate()
            .map(|(s, &site)| (site, sigma_base + (s * r_count) as u32))
            .collect();
        for (internal, &i) in order.iter().enumerate() {
            let row = &self.rows[i];
            row_image.push(row.image as u32);
            let e = rows_off as usize + 8 * internal;
            let (seed, step, id) = match &row.perturbation {
                Perturbation::Lr { seed, step, row, .. } => (*seed, *step, *row),
                _ => (0, 0, 0),
            };
            words[e..e + 8].copy_from_slice(&[
                seed as u32,
                (seed >> 32) as u32,
                step,
                id,
                row_group[i],
                row.label as u32,
                row.image as u32,
                0,
            ]);
            if let Perturbation::Lr { sites: s, .. } = &row.perturbation {
                for (site, sigma) in s {
                    words[(sigma_off[site] as usize) + internal] = sigma.to_bits();
                }
            }
        }
        let mut perturbed = BTreeSet::new();
        for (g, (seed, step, direction, _, tensors)) in groups.iter().enumerate() {
            let e = groups_off as usize + 4 * g;
            words[e..e + 4].copy_from_slice(&[*seed as u32, (*seed >> 32) as u32, *step, *direction]);
            for &t in tensors {
                words[wscale_off as usize + g * n_tensors as usize + t as usize] = scales[g].to_bits();
                perturbed.insert(t);
            }
        }
        let mut chunks = Vec::new();
        let per = rows_per_chunk.max(1);
        for start in (0..r_count).step_by(per) {
            let end = (start + per).min(r_count);
            let list_off = words.len() as u32;
            let (mut n_groups, mut max_rows) = (0u32, 0u32);
            let mut i = start;
            while i < end {
                let g = row_group[order[i]];
                let mut j = i + 1;
                while j < end && row_group[order[j]] == g {
                    j += 1;
                }
                words.extend_from_slice(&[(i - start) as u32, (j - i) as u32, g]);
                n_groups += 1;
                max_rows = max_rows.max((j - i) as u32);
                i = j;
            }
            chunks.push(Chunk {
                rows: start..end,
                list_off,
                n_groups,
                max_group_rows: max_rows,
            });
        }
        PlanTables {
            order,
            row_image,
            words,
            rows_off,
            groups_off,
            wscale_off,
            n_tensors,
            sigma_off,
            perturbed,
            chunks,
        }
    }
}

impl PlanTables {
    /// The LR epilogue of `site` in a model of `layers` blocks and `tokens` tokens, when some
    /// row perturbs it.
    pub fn lr(&self, site: LinearSite, layers: usize, tokens: usize) -> Option<super::ops::LrEpilogue> {
        self.sigma_off.get(&site).map(|&off| super::ops::LrEpilogue {
            sigma_off: off,
            site: ParamTable::site_id(site),
            noise_tokens: lr_noise_tokens(site, layers, tokens) as u32,
        })
    }
}
