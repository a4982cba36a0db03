//! LR, likelihood ratio with activation noise (flops-method.md, section 2): a query adds
//! `sigma * eps` to the outputs of the tuned linear layers; with the clean loss as baseline the
//! per-query estimate is `(L - l_i) sum_t (eps_t / sigma) u_t^T`.

use super::estimate::{cell_of, Estimator, Query, Results, Space};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lr {
    pub sigma: f32,
    /// Queries in `(eps, -eps)` pairs of the same data point.
    pub antithetic: bool,
}

impl Estimator for Lr {
    fn space(&self) -> Space {
        Space::Activation { sigma: self.sigma }
    }

    fn unit(&self) -> usize {
        if self.antithetic {
            2
        } else {
            1
        }
    }

    /// Noise ids are unique per query (per pair when antithetic), cells in order.
    fn plan(&self, alloc: &[usize], groups: usize) -> Vec<Query> {
        let mut out = Vec::with_capacity(alloc.iter().sum());
        let mut next = 0u32;
        let signs: &[f32] = if self.antithetic { &[1.0, -1.0] } else { &[1.0] };
        for (cell, &n) in alloc.iter().enumerate() {
            let (point, group) = cell_of(cell, groups);
            for _ in 0..n / signs.len() {
                out.extend(signs.iter().map(|&sign| Query {
                    point,
                    group,
                    noise: next,
                    sign,
                }));
                next += 1;
            }
        }
        out
    }

    /// `c_r = sign_r (L_r - b_i) / (B n_ig sigma)`, so that `g_W = sum_r c_r sum_t eps_rt u_rt^T`
    /// with `eps_r` the unsigned noise of row id `noise` (a backend divides by a site's relative
    /// noise scale where the plan gives one).
    fn coefficients(&self, r: &Results) -> Vec<f32> {
        let b = r.points() as f64;
        r.queries
            .iter()
            .zip(r.losses)
            .map(|(q, &l)| {
                let excess = l as f64 - r.baselines[q.point] as f64;
                (q.sign as f64 * excess / (b * r.n(q) as f64 * self.sigma as f64)) as f32
            })
            .collect()
    }

    /// One-sided: `m = mean_j (L_ij - b_i)^2`. Pairs: `m = mean over pairs ((L+ - L-) / 2)^2`,
    /// the pair's own variance (`(L - b)^2` would also hold the even, curvature part pairs
    /// cancel); a constant factor from a per-query figure, which no allocator sees.
    fn measured_variance(&self, r: &Results) -> Vec<f32> {
        if !self.antithetic {
            return super::es::mean_squared_excess(r);
        }
        let mut m = vec![0.0f64; r.alloc.len()];
        for (q, l) in r.queries.chunks_exact(2).zip(r.losses.chunks_exact(2)) {
            let c = r.cell(&q[0]);
            m[c] += ((l[0] as f64 - l[1] as f64) / 2.0).powi(2) / (r.alloc[c] / 2).max(1) as f64;
        }
        m.into_iter().map(|v| v as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_share_point_and_noise() {
        let alloc = [2, 4, 6];
        let anti = Lr {
            sigma: 0.1,
            antithetic: true,
        }
        .plan(&alloc, 1);
        assert_eq!(anti.len(), 12);
        for pair in anti.chunks_exact(2) {
            assert_eq!((pair[0].point, pair[0].noise), (pair[1].point, pair[1].noise));
            assert_eq!(pair[0].sign, -pair[1].sign);
        }
        let one = Lr {
            sigma: 0.1,
            antithetic: false,
        }
        .plan(&alloc, 1);
        let mut ids: Vec<u32> = one.iter().map(|q| q.noise).collect();
        ids.dedup();
        assert_eq!(ids.len(), 12, "one-sided noise ids are unique");
    }

    #[test]
    fn weights_are_one_over_b_n_i() {
        let lr = Lr {
            sigma: 1.0,
            antithetic: false,
        };
        let alloc = [1, 3];
        let q = lr.plan(&alloc, 1);
        let c = lr.coefficients(&Results {
            queries: &q,
            losses: &[2.0, 1.0, 1.0, 1.0],
            baselines: &[1.0, 0.0],
            alloc: &alloc,
            groups: 1,
        });
        assert_eq!(c, vec![0.5, 1.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0]);
    }
}
