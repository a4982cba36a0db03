//! Gradient estimators: which query rows a step runs and how their losses combine, without bias.
//!
//! Every estimate of data point `i` gets weight `1 / (B n_i)` (flops-method.md, section 3). For
//! LR each query is an unbiased estimate on its own (antithetic partners included), so `n_i` is
//! the point's query count; for two-point SPSA an estimate is a pair, so `n_i` is its pair count.

use serde::{Deserialize, Serialize};

use super::error::LearnError;

/// Which estimator, with its noise scale.
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
}

impl EstimatorKind {
    pub fn validate(&self) -> Result<(), LearnError> {
        let s = match *self {
            EstimatorKind::Lr { sigma, .. } => sigma,
            EstimatorKind::Spsa { eps } => eps,
        };
        if !(s.is_finite() && s > 0.0) {
            return Err(LearnError::Config {
                message: format!("noise scale must be positive, got {s}"),
            });
        }
        Ok(())
    }

    /// Queries per allocation unit: pairs for SPSA and antithetic LR.
    pub fn unit(&self) -> usize {
        match self {
            EstimatorKind::Lr { antithetic: false, .. } => 1,
            _ => 2,
        }
    }
}

/// One perturbed query of a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Query {
    /// The data point (index in the batch).
    pub point: usize,
    /// LR: the noise row id (antithetic partners share it); SPSA: the direction `k`.
    pub noise: u32,
    /// `+1` or `-1`: LR noise sign, or the SPSA side.
    pub sign: f32,
}

/// The queries of a step for an allocation (`alloc[i]` queries of point `i`).
/// LR: noise ids are unique per query (per pair when antithetic). SPSA: point `i` evaluates
/// directions `0 .. n_i / 2`, each at `+eps` and `-eps`, so direction `k` is shared by every
/// point with more than `k` pairs.
pub fn plan_queries(kind: EstimatorKind, alloc: &[usize]) -> Vec<Query> {
    let mut out = Vec::with_capacity(alloc.iter().sum());
    let mut next_id = 0u32;
    for (point, &n) in alloc.iter().enumerate() {
        match kind {
            EstimatorKind::Lr { antithetic: false, .. } => {
                for _ in 0..n {
                    out.push(Query {
                        point,
                        noise: next_id,
                        sign: 1.0,
                    });
                    next_id += 1;
                }
            }
            EstimatorKind::Lr { antithetic: true, .. } => {
                for _ in 0..n / 2 {
                    out.push(Query {
                        point,
                        noise: next_id,
                        sign: 1.0,
                    });
                    out.push(Query {
                        point,
                        noise: next_id,
                        sign: -1.0,
                    });
                    next_id += 1;
                }
            }
            EstimatorKind::Spsa { .. } => {
                for k in 0..(n / 2) as u32 {
                    out.push(Query {
                        point,
                        noise: k,
                        sign: 1.0,
                    });
                    out.push(Query {
                        point,
                        noise: k,
                        sign: -1.0,
                    });
                }
            }
        }
    }
    out
}

/// LR: the coefficient of each query's `eps (x) u` product,
/// `c_r = sign_r (L_r - b_i) / (B n_i sigma)`, so that `g_W = sum_r c_r sum_t eps_rt u_rt^T`
/// with `eps_r` the unsigned noise of row id `noise`.
pub fn lr_coefficients(queries: &[Query], losses: &[f32], baselines: &[f32], alloc: &[usize], sigma: f32) -> Vec<f32> {
    let b = alloc.len() as f64;
    queries
        .iter()
        .zip(losses)
        .map(|(q, &l)| {
            let i = q.point;
            (q.sign as f64 * (l as f64 - baselines[i] as f64) / (b * alloc[i] as f64 * sigma as f64)) as f32
        })
        .collect()
}

/// SPSA: the coefficient of each direction `z_k`,
/// `c_k = sum_{i: pairs_i > k} (L_ik+ - L_ik-) / (2 eps) / (B pairs_i)`; the estimate is
/// `sum_k c_k z_k`.
pub fn spsa_coefficients(queries: &[Query], losses: &[f32], alloc: &[usize], eps: f32) -> Vec<f32> {
    let b = alloc.len() as f64;
    let dirs = alloc.iter().map(|n| n / 2).max().unwrap_or(0);
    let mut c = vec![0.0f64; dirs];
    for (q, &l) in queries.iter().zip(losses) {
        let pairs = (alloc[q.point] / 2) as f64;
        c[q.noise as usize] += q.sign as f64 * l as f64 / (2.0 * eps as f64) / (b * pairs);
    }
    c.into_iter().map(|v| v as f32).collect()
}

/// The per-point variance proxy measured from the queries, for the allocator's update:
/// LR `m_i = mean_j (L_ij - b_i)^2`; SPSA `m_i = mean_k ((L_ik+ - L_ik-) / 2)^2`.
pub fn measured_variance(
    kind: EstimatorKind,
    queries: &[Query],
    losses: &[f32],
    baselines: &[f32],
    alloc: &[usize],
) -> Vec<f32> {
    let mut m = vec![0.0f64; alloc.len()];
    match kind {
        EstimatorKind::Lr { .. } => {
            for (q, &l) in queries.iter().zip(losses) {
                m[q.point] += (l as f64 - baselines[q.point] as f64).powi(2) / alloc[q.point] as f64;
            }
        }
        EstimatorKind::Spsa { .. } => {
            for pair in queries.chunks_exact(2).zip(losses.chunks_exact(2)) {
                let (q, l) = pair;
                let i = q[0].point;
                m[i] += ((l[0] as f64 - l[1] as f64) / 2.0).powi(2) / (alloc[i] / 2) as f64;
            }
        }
    }
    m.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_have_the_allocated_counts() {
        let alloc = [2, 4, 6];
        for kind in [
            EstimatorKind::Lr {
                sigma: 0.1,
                antithetic: false,
            },
            EstimatorKind::Lr {
                sigma: 0.1,
                antithetic: true,
            },
            EstimatorKind::Spsa { eps: 0.1 },
        ] {
            let q = plan_queries(kind, &alloc);
            assert_eq!(q.len(), 12);
            for (i, &n) in alloc.iter().enumerate() {
                assert_eq!(q.iter().filter(|q| q.point == i).count(), n, "{kind:?}");
            }
        }
        let anti = plan_queries(
            EstimatorKind::Lr {
                sigma: 0.1,
                antithetic: true,
            },
            &alloc,
        );
        for pair in anti.chunks_exact(2) {
            assert_eq!(
                (pair[0].point, pair[0].noise),
                (pair[1].point, pair[1].noise),
                "pairs share point and noise"
            );
            assert_eq!(pair[0].sign, -pair[1].sign);
        }
    }

    #[test]
    fn weights_are_one_over_b_n_i() {
        let alloc = [1, 3];
        let q = plan_queries(
            EstimatorKind::Lr {
                sigma: 1.0,
                antithetic: false,
            },
            &alloc,
        );
        let losses = [2.0, 1.0, 1.0, 1.0];
        let c = lr_coefficients(&q, &losses, &[1.0, 0.0], &alloc, 1.0);
        assert_eq!(c, vec![0.5, 1.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0]);
        let sq = plan_queries(EstimatorKind::Spsa { eps: 0.5 }, &[2, 4]);
        // point 0: k0 (+3, -1); point 1: k0 (+2, -2), k1 (+1, -1)
        let c = spsa_coefficients(&sq, &[3.0, 1.0, 2.0, 2.0, 1.0, 1.0], &[2, 4], 0.5);
        assert_eq!(c, vec![(2.0 / 1.0) / 2.0, 0.0]);
    }
}
