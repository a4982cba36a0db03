//! ES, one-sided weight space with the clean baseline (flops-method.md, section 2, optional):
//! `(L(theta + sigma z) - l_i) / sigma * z`. Each query is one estimate; like SPSA's, the
//! directions are shared across the batch (point `i` evaluates `z_0 .. z_{n_i - 1}`), which keeps
//! every point's estimate unbiased and needs one perturbed network per direction.

use super::estimate::{shared_directions, Estimator, Query, Results, Space};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Es {
    pub sigma: f32,
}

impl Estimator for Es {
    fn space(&self) -> Space {
        Space::Weight { scale: self.sigma }
    }

    fn unit(&self) -> usize {
        1
    }

    fn plan(&self, alloc: &[usize], _groups: usize) -> Vec<Query> {
        shared_directions(alloc, &[1.0])
    }

    /// `c_k = sum_{i: n_i > k} (L_ik - b_i) / (sigma B n_i)`; the estimate is `sum_k c_k z_k`.
    fn coefficients(&self, r: &Results) -> Vec<f32> {
        let b = r.points() as f64;
        let dirs = r.alloc.iter().copied().max().unwrap_or(0);
        let mut c = vec![0.0f64; dirs];
        for (q, &l) in r.queries.iter().zip(r.losses) {
            let i = q.point;
            c[q.noise as usize] += (l as f64 - r.baselines[i] as f64) / (self.sigma as f64 * b * r.alloc[i] as f64);
        }
        c.into_iter().map(|v| v as f32).collect()
    }

    /// `m_i = mean_j (L_ij - b_i)^2`.
    fn measured_variance(&self, r: &Results) -> Vec<f32> {
        mean_squared_excess(r)
    }
}

/// `m = mean_j (L_ij - b_i)^2` per cell: the variance proxy of one-sided estimators (LR, ES).
pub(super) fn mean_squared_excess(r: &Results) -> Vec<f32> {
    let mut m = vec![0.0f64; r.alloc.len()];
    for (q, &l) in r.queries.iter().zip(r.losses) {
        let c = r.cell(q);
        m[c] += (l as f64 - r.baselines[q.point] as f64).powi(2) / r.alloc[c] as f64;
    }
    m.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sided_shared_directions() {
        let es = Es { sigma: 0.5 };
        let alloc = [1, 3];
        let q = es.plan(&alloc, 1);
        assert_eq!(
            q.iter().map(|q| (q.point, q.noise)).collect::<Vec<_>>(),
            [(0, 0), (1, 0), (1, 1), (1, 2)]
        );
        assert!(q.iter().all(|q| q.sign == 1.0));
        let r = Results {
            queries: &q,
            losses: &[2.0, 1.0, 2.0, 4.0],
            baselines: &[1.0, 1.0],
            alloc: &alloc,
            groups: 1,
        };
        // k0: (2-1)/(0.5*2*1) + (1-1)/(0.5*2*3); k1: (2-1)/3; k2: (4-1)/3
        assert_eq!(es.coefficients(&r), vec![1.0, 1.0 / 3.0, 1.0]);
        assert_eq!(es.measured_variance(&r), vec![1.0, (0.0 + 1.0 + 9.0) / 3.0]);
    }
}
