//! Allocation over cells (data point x site group; flops-method.md, section 7).
//!
//! A query at group `g` of point `i` has variance `V_ig ~ d_g |grad_g l_i|^2` and costs `c_g`
//! forward FLOPs (the forward from the group's first site on). Minimising
//! `sum_ig V_ig / n_ig` under `sum_ig c_g n_ig = budget` gives `n_ig ~ sqrt(V_ig / c_g)`. With
//! `V_ig ~ p_i S_g D_g` (a point factor, a site factor) that is the product of the point
//! allocator's shares (uniform, flops, Neyman, Bernoulli: the data-point factor) and a site
//! factor `sqrt(S_g D_g / c_g)`: `S_g` a running estimate of the group's scalar variance proxy
//! `m` from the steps' own queries, `D_g` what turns it into the variance of the group's
//! gradient estimate (noise dimensions times input energy over sigma^2, from the clean
//! activations: [`crate::model::perturb::SiteStats::variance_factor`]). The budget is then in
//! FLOPs: as many as uniform over cells spends. Uniform over cells keeps the site factor flat
//! (and so spends the query budget exactly).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::allocate::{integerise, Budget};
use super::error::LearnError;

/// The site factor of a cell allocation, and the bookkeeping between cells and points.
#[derive(Debug, Clone)]
pub struct SiteSplit {
    /// Forward FLOPs of one query of each group.
    cost: Vec<f64>,
    /// Each group's gradient variance per unit of its scalar proxy `m` (`D_g`).
    dims: Vec<f64>,
    /// Running per-query variance of each group (`None` before its first measurement).
    variance: Vec<Option<f64>>,
    /// Whether the site factor follows `sqrt(S_g / c_g)`; else flat.
    adaptive: bool,
    rng: StdRng,
}

/// Weight of the newest step in the running site variances.
const DECAY: f64 = 0.1;

impl SiteSplit {
    /// `dims`: `D_g` of each group (all 1 when unknown).
    pub fn new(cost: Vec<f64>, dims: Vec<f64>, adaptive: bool, seed: u64) -> Self {
        Self {
            variance: vec![None; cost.len()],
            dims,
            cost,
            adaptive,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn groups(&self) -> usize {
        self.cost.len()
    }

    /// The cost of one query of group `g`.
    pub fn cost(&self, g: usize) -> f64 {
        self.cost[g]
    }

    /// The budget needs `unit` queries in every cell.
    pub fn check(&self, points: usize, budget: Budget) -> Result<(), LearnError> {
        let g = self.groups();
        if budget.total < points * g * budget.unit {
            return Err(LearnError::Config {
                message: format!(
                    "site-wise perturbation of {g} site groups needs at least {} queries per image \
                     ({g} groups x {} per group), got {}",
                    g * budget.unit,
                    budget.unit,
                    budget.total / points.max(1)
                ),
            });
        }
        Ok(())
    }

    /// Each group's site factor, normalised to sum 1: flat until every group was measured.
    pub fn factors(&self) -> Vec<f64> {
        let g = self.groups();
        let raw: Vec<f64> = match self.variance.iter().copied().collect::<Option<Vec<f64>>>() {
            Some(v) if self.adaptive => (0..g)
                .map(|k| (v[k].max(0.0) * self.dim(k) / self.cost[k].max(1.0)).sqrt())
                .collect(),
            _ => vec![1.0; g],
        };
        let sum: f64 = raw.iter().sum();
        if !(sum.is_finite() && sum > 0.0) {
            return vec![1.0 / g as f64; g];
        }
        raw.iter().map(|r| r / sum).collect()
    }

    fn dim(&self, g: usize) -> f64 {
        self.dims.get(g).copied().unwrap_or(1.0)
    }

    /// Cells `alloc[i * G + g]` from the point allocation: point `i`'s share split by the site
    /// factors, at least `budget.unit` per cell. Flat factors: `budget.total` queries in all.
    /// Learned factors: the FLOPs uniform over cells would spend on this point allocation
    /// (`sum_i n_i / G sum_g c_g`), in whole units, the remainder to the largest shortfalls.
    pub fn split(&mut self, points: &[usize], budget: Budget) -> Result<Vec<usize>, LearnError> {
        self.check(points.len(), budget)?;
        let f = self.factors();
        let g = self.groups();
        let weights: Vec<f64> = points
            .iter()
            .flat_map(|&n| f.iter().map(move |&fg| n as f64 * fg))
            .collect();
        let adaptive = self.adaptive && self.variance.iter().all(Option::is_some);
        if !adaptive {
            let cells = Budget {
                min_per_point: budget.unit,
                ..budget
            };
            return Ok(integerise(&weights, cells, &mut self.rng));
        }
        let unit = budget.unit as f64;
        let cost = |c: usize| self.cost[c % g] * unit;
        let flops: f64 = points.iter().sum::<usize>() as f64 / g as f64 * self.cost.iter().sum::<f64>();
        // Units per cell `max(1, lambda w)`, lambda by bisection so the FLOPs match.
        let spend = |lambda: f64| -> f64 {
            (0..weights.len())
                .map(|c| cost(c) * (lambda * weights[c]).max(1.0))
                .sum()
        };
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        while spend(hi) < flops && hi < 1e12 {
            hi *= 2.0;
        }
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if spend(mid) < flops {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let target: Vec<f64> = weights.iter().map(|&w| (lo * w).max(1.0)).collect();
        let mut units: Vec<usize> = target.iter().map(|&t| t.floor() as usize).collect();
        let mut left = flops - (0..units.len()).map(|c| cost(c) * units[c] as f64).sum::<f64>();
        let mut order: Vec<(f64, u64, usize)> = (0..units.len())
            .map(|c| (target[c] - units[c] as f64, self.rng.random(), c))
            .collect();
        order.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        for &(_, _, c) in &order {
            if cost(c) <= left {
                units[c] += 1;
                left -= cost(c);
            }
        }
        Ok(units.into_iter().map(|u| u * budget.unit).collect())
    }

    /// Learns the groups' variances from the step's per-cell measurements.
    pub fn update(&mut self, measured: &[f32]) {
        let g = self.groups();
        let points = measured.len() / g.max(1);
        if points == 0 || measured.iter().any(|m| !m.is_finite()) {
            return;
        }
        for (k, v) in self.variance.iter_mut().enumerate() {
            let mean = (0..points).map(|i| measured[i * g + k] as f64).sum::<f64>() / points as f64;
            *v = Some(match *v {
                Some(old) => (1.0 - DECAY) * old + DECAY * mean,
                None => mean,
            });
        }
    }

    /// The point allocator's feedback from cells: `m_i = sum_g m_ig D_g n_i / n_ig`, so that
    /// `sum_i m_i / n_i = sum_ig V_ig / n_ig` (the objective it minimises over its `n_i`).
    pub fn point_measured(&self, measured: &[f32], cells: &[usize], points: &[usize]) -> Vec<f32> {
        let g = self.groups();
        points
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                (0..g)
                    .map(|k| measured[i * g + k] as f64 * self.dim(k) * n as f64 / cells[i * g + k].max(1) as f64)
                    .sum::<f64>() as f32
            })
            .collect()
    }

    /// For the logs: each group's share of the budget.
    pub fn params(&self) -> Vec<(String, f64)> {
        self.factors()
            .into_iter()
            .enumerate()
            .map(|(g, f)| (format!("site{g}"), f))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_points_by_site_factor_and_keeps_the_budget() {
        let budget = Budget {
            total: 40,
            min_per_point: 1,
            unit: 1,
        };
        let mut s = SiteSplit::new(vec![1.0, 1.0], vec![1.0, 1.0], true, 0);
        let flat = s.split(&[20, 20], budget).unwrap();
        assert_eq!(flat, vec![10, 10, 10, 10]);
        // Group 1 four times as variable: twice the queries (sqrt).
        s.update(&[1.0, 4.0, 1.0, 4.0]);
        let c = s.split(&[30, 10], budget).unwrap();
        assert_eq!(c.iter().sum::<usize>(), 40);
        assert_eq!(c, vec![10, 20, 3, 7]);
        // Costlier group 1 (4x): sqrt(4 / 4) = sqrt(1 / 1): flat again.
        let mut s = SiteSplit::new(vec![1.0, 4.0], vec![1.0, 1.0], true, 0);
        s.update(&[1.0, 4.0]);
        assert_eq!(s.factors(), vec![0.5, 0.5]);
        // Uniform over cells ignores what it measured.
        let mut u = SiteSplit::new(vec![1.0, 1.0], vec![1.0, 1.0], false, 0);
        u.update(&[1.0, 100.0]);
        assert_eq!(u.factors(), vec![0.5, 0.5]);
        let e = u.check(2, Budget { total: 3, ..budget }).unwrap_err().to_string();
        assert!(e.contains("at least 2 queries per image"), "{e}");
    }

    #[test]
    fn learned_split_weighs_dimensions_and_spends_uniform_flops() {
        let budget = Budget {
            total: 20,
            min_per_point: 1,
            unit: 1,
        };
        // 16x the gradient variance per unit of proxy: 4x the queries.
        let mut s = SiteSplit::new(vec![1.0, 1.0], vec![1.0, 16.0], true, 0);
        s.update(&[1.0, 1.0]);
        assert_eq!(s.factors(), vec![0.2, 0.8]);
        assert_eq!(s.split(&[10, 10], budget).unwrap(), vec![2, 8, 2, 8]);
        // A group 4x as costly and 4x as variable: equal queries; uniform's FLOPs (50) spent.
        let mut s = SiteSplit::new(vec![1.0, 4.0], vec![1.0, 1.0], true, 0);
        s.update(&[1.0, 4.0]);
        let c = s.split(&[10, 10], budget).unwrap();
        assert_eq!(c, vec![5, 5, 5, 5]);
        // Costlier group 1 (16x), same variance: a quarter of the queries, more in all.
        let mut s = SiteSplit::new(vec![1.0, 16.0], vec![1.0, 1.0], true, 0);
        s.update(&[1.0, 1.0]);
        let c = s.split(&[10, 10], budget).unwrap();
        let flops: f64 = c.iter().enumerate().map(|(k, &n)| n as f64 * [1.0, 16.0][k % 2]).sum();
        assert!(flops <= 170.0 && flops > 160.0, "{c:?}: {flops} FLOPs of 170");
        assert!(c[0] > 3 * c[1], "{c:?}");
    }

    #[test]
    fn point_feedback_matches_the_cell_objective() {
        let s = SiteSplit::new(vec![1.0, 1.0], vec![1.0, 1.0], true, 0);
        let (m, cells, points) = ([1.0f32, 2.0, 3.0, 4.0], [2usize, 4, 1, 3], [6usize, 4]);
        let pm = s.point_measured(&m, &cells, &points);
        let lhs: f64 = pm.iter().zip(&points).map(|(&m, &n)| m as f64 / n as f64).sum();
        let rhs: f64 = m.iter().zip(&cells).map(|(&m, &n)| m as f64 / n as f64).sum();
        assert!((lhs - rhs).abs() < 1e-6);
    }
}
