//! Gradient estimators: which query rows a step runs and how their losses combine, without bias.
//!
//! An estimator is one file implementing [`Estimator`] ([`super::lr`], [`super::spsa`],
//! [`super::es`]) plus its arm in [`EstimatorKind`] (the serialisable choice). Backends never see
//! an estimator: a step's plan names only the perturbation [`Space`] its queries live in, and
//! the estimator turns the query losses into per-query or per-direction coefficients.
//!
//! Every estimate of data point `i` gets weight `1 / (B n_i)` (flops-method.md, section 3): `n_i`
//! is the point's query count for LR and ES (each query is an unbiased estimate on its own,
//! antithetic partners included), its pair count for two-point SPSA.
//!
//! Allocations are over *cells* (data point x site group, section 7): `alloc[i * G + g]` queries
//! of point `i` perturb group `g` of the plan's `G` groups, and the estimate of the sites of
//! group `g` is `(1/B) sum_i (1/n_ig) sum_j g(ij)`. Joint perturbation is `G = 1` (every query
//! perturbs every site); weight-space estimators take `G = 1` only.

use serde::{Deserialize, Serialize};

use super::error::LearnError;
use super::es::Es;
use super::lr::Lr;
use super::spsa::Spsa;

/// Where a step's queries perturb the network: all a backend needs to know.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Space {
    /// Activation noise `sign * sigma * eps` on the outputs of the plan's linear `sites`, `eps`
    /// regenerated from `(seed, step, site, query.noise)`. Gradient coefficients: one per query,
    /// `g_W = sum_r c_r sum_t eps_rt u_rt^T`.
    Activation { sigma: f32 },
    /// Weight-space directions `theta + sign * scale * z_k` over the plan's tensors,
    /// `k = query.noise`. Gradient coefficients: one per direction, `g = sum_k c_k z_k`.
    Weight { scale: f32 },
}

/// One perturbed query of a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Query {
    /// The data point (index in the batch).
    pub point: usize,
    /// The site group it perturbs (index into the plan's groups; 0 when joint).
    pub group: u16,
    /// Activation space: the noise row id (antithetic partners share it); weight space: the
    /// direction `k`.
    pub noise: u32,
    /// `+1` or `-1`: the sign of the noise or of the weight step.
    pub sign: f32,
}

/// A step's queries with their results, for the coefficients and the allocator's feedback.
#[derive(Debug, Clone, Copy)]
pub struct Results<'a> {
    pub queries: &'a [Query],
    pub losses: &'a [f32],
    /// Each point's clean loss.
    pub baselines: &'a [f32],
    /// Queries per cell: `alloc[point * groups + group]`.
    pub alloc: &'a [usize],
    /// Site groups `G` (1: joint perturbation).
    pub groups: usize,
}

impl Results<'_> {
    /// The batch size.
    pub fn points(&self) -> usize {
        self.alloc.len() / self.groups.max(1)
    }

    /// The cell of a query.
    pub fn cell(&self, q: &Query) -> usize {
        q.point * self.groups.max(1) + q.group as usize
    }

    /// The query count `n_ig` of a query's cell.
    pub fn n(&self, q: &Query) -> usize {
        self.alloc[self.cell(q)]
    }
}

/// Cell `c` of an allocation over `groups` groups: `(point, group)`.
pub fn cell_of(c: usize, groups: usize) -> (usize, u16) {
    let g = groups.max(1);
    (c / g, (c % g) as u16)
}

/// A gradient estimator.
pub trait Estimator: std::fmt::Debug {
    /// Where its queries perturb.
    fn space(&self) -> Space;
    /// Queries per allocation unit (2 for pairs): every `n_i` is a multiple of it.
    fn unit(&self) -> usize;
    /// The queries of a step for an allocation over cells (`alloc[i * groups + g]` queries of
    /// point `i` at group `g`; `groups = 1`: joint).
    fn plan(&self, alloc: &[usize], groups: usize) -> Vec<Query>;
    /// Per query (activation space) or per direction (weight space), such that the backend's
    /// accumulation is the unbiased estimate `(1/B) sum_i (1/n_ig) sum_j g(ij)`.
    fn coefficients(&self, r: &Results) -> Vec<f32>;
    /// Each cell's measured variance proxy per query, for the allocators' update.
    fn measured_variance(&self, r: &Results) -> Vec<f32>;
}

/// Which estimator, with its noise scale: the serialisable choice (configs, logs, the page).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EstimatorKind {
    /// Likelihood ratio with activation noise `sigma * eps` on the tuned linear layers' outputs;
    /// baseline = the point's clean loss; `antithetic`: queries come in `(eps, -eps)` pairs of the
    /// same data point.
    Lr { sigma: f32, antithetic: bool },
    /// SPSA / MeZO two-point: `(L(theta + eps z) - L(theta - eps z)) / (2 eps) * z`; a pair
    /// counts 2 queries.
    Spsa { eps: f32 },
    /// ES, one-sided weight space with the clean baseline: `(L(theta + sigma z) - l) / sigma * z`.
    Es { sigma: f32 },
}

impl EstimatorKind {
    /// The names [`EstimatorKind::parse`] takes.
    pub const NAMES: &'static [&'static str] = &["lr", "spsa", "es"];

    /// The estimator `name` (one of [`Self::NAMES`]) at noise scale `scale`.
    pub fn parse(name: &str, scale: f32, antithetic: bool) -> Result<Self, LearnError> {
        Ok(match name {
            "lr" => EstimatorKind::Lr {
                sigma: scale,
                antithetic,
            },
            "spsa" => EstimatorKind::Spsa { eps: scale },
            "es" => EstimatorKind::Es { sigma: scale },
            other => {
                return Err(LearnError::Config {
                    message: format!("unknown estimator `{other}`; one of: {}", Self::NAMES.join(", ")),
                })
            }
        })
    }

    /// The noise scale (LR and ES sigma, SPSA eps).
    pub fn scale(&self) -> f32 {
        match *self {
            EstimatorKind::Lr { sigma, .. } | EstimatorKind::Es { sigma } => sigma,
            EstimatorKind::Spsa { eps } => eps,
        }
    }

    pub fn validate(&self) -> Result<(), LearnError> {
        let s = self.scale();
        if !(s.is_finite() && s > 0.0) {
            return Err(LearnError::Config {
                message: format!("noise scale must be positive, got {s}"),
            });
        }
        Ok(())
    }

    /// The estimator itself.
    pub fn build(&self) -> Box<dyn Estimator> {
        match *self {
            EstimatorKind::Lr { sigma, antithetic } => Box::new(Lr { sigma, antithetic }),
            EstimatorKind::Spsa { eps } => Box::new(Spsa { eps }),
            EstimatorKind::Es { sigma } => Box::new(Es { sigma }),
        }
    }
}

/// Weight-space plans: point `i` evaluates directions `0 .. n_i / unit`, each at the given
/// signs, so direction `k` is shared by every point with more than `k` of them (one perturbed
/// network per direction and sign serves them all).
pub(super) fn shared_directions(alloc: &[usize], signs: &[f32]) -> Vec<Query> {
    let mut out = Vec::with_capacity(alloc.iter().sum());
    for (point, &n) in alloc.iter().enumerate() {
        for k in 0..(n / signs.len()) as u32 {
            out.extend(signs.iter().map(|&sign| Query {
                point,
                group: 0,
                noise: k,
                sign,
            }));
        }
    }
    out
}
