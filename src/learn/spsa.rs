//! SPSA / MeZO, two-point weight space (flops-method.md, section 2): direction `z_k` over the
//! tuned tensors, `(L(theta + eps z_k) - L(theta - eps z_k)) / (2 eps) * z_k`; a pair counts as
//! 2 queries and is one estimate.

use super::estimate::{shared_directions, Estimator, Query, Results, Space};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spsa {
    pub eps: f32,
}

impl Estimator for Spsa {
    fn space(&self) -> Space {
        Space::Weight { scale: self.eps }
    }

    fn unit(&self) -> usize {
        2
    }

    /// Point `i` evaluates directions `0 .. n_i / 2`, each at `+eps` and `-eps`.
    fn plan(&self, alloc: &[usize], _groups: usize) -> Vec<Query> {
        shared_directions(alloc, &[1.0, -1.0])
    }

    /// `c_k = sum_{i: pairs_i > k} (L_ik+ - L_ik-) / (2 eps) / (B pairs_i)`; the estimate is
    /// `sum_k c_k z_k`.
    fn coefficients(&self, r: &Results) -> Vec<f32> {
        let b = r.points() as f64;
        let dirs = r.alloc.iter().map(|n| n / 2).max().unwrap_or(0);
        let mut c = vec![0.0f64; dirs];
        for (q, &l) in r.queries.iter().zip(r.losses) {
            let pairs = (r.alloc[q.point] / 2) as f64;
            c[q.noise as usize] += q.sign as f64 * l as f64 / (2.0 * self.eps as f64) / (b * pairs);
        }
        c.into_iter().map(|v| v as f32).collect()
    }

    /// `m_i = mean_k ((L_ik+ - L_ik-) / 2)^2`.
    fn measured_variance(&self, r: &Results) -> Vec<f32> {
        let mut m = vec![0.0f64; r.points()];
        for (q, l) in r.queries.chunks_exact(2).zip(r.losses.chunks_exact(2)) {
            let i = q[0].point;
            m[i] += ((l[0] as f64 - l[1] as f64) / 2.0).powi(2) / (r.alloc[i] / 2) as f64;
        }
        m.into_iter().map(|v| v as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_are_shared_and_weighted_per_pair() {
        let s = Spsa { eps: 0.5 };
        let alloc = [2, 4];
        let q = s.plan(&alloc, 1);
        assert_eq!(q.len(), 6);
        // point 0: k0 (+3, -1); point 1: k0 (+2, -2), k1 (+1, -1)
        let c = s.coefficients(&Results {
            queries: &q,
            losses: &[3.0, 1.0, 2.0, 2.0, 1.0, 1.0],
            baselines: &[0.0, 0.0],
            alloc: &alloc,
            groups: 1,
        });
        assert_eq!(c, vec![(2.0 / 1.0) / 2.0, 0.0]);
    }
}
