//! Allocation over cells (data point x site group; flops-method.md, section 7).
//!
//! A query at group `g` of point `i` has variance `V_ig ~ d_g |grad_g l_i|^2` and costs `c_g`
//! forward FLOPs (the forward from the group's first site on). Minimising
//! `sum_ig V_ig / n_ig` under `sum_ig c_g n_ig = budget` gives `n_ig ~ sqrt(V_ig / c_g)`. With
//! `V_ig ~ p_i S_g` (a point factor, a site factor) that is the product of the point
//! allocator's shares (uniform, flops, Neyman, Bernoulli: the data-point factor) and a site
//! factor `sqrt(S_g / c_g)`, `S_g` a running estimate of group `g`'s per-query variance from
//! the steps' own queries. Uniform over cells keeps the site factor flat.

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::allocate::{integerise, Budget};
use super::error::LearnError;

/// The site factor of a cell allocation, and the bookkeeping between cells and points.
#[derive(Debug, Clone)]
pub struct SiteSplit {
    /// Forward FLOPs of one query of each group.
    cost: Vec<f64>,
    /// Running per-query variance of each group (`None` before its first measurement).
    variance: Vec<Option<f64>>,
    /// Whether the site factor follows `sqrt(S_g / c_g)`; else flat.
    adaptive: bool,
    rng: StdRng,
}

/// Weight of the newest step in the running site variances.
const DECAY: f64 = 0.1;

impl SiteSplit {
    pub fn new(cost: Vec<f64>, adaptive: bool, seed: u64) -> Self {
        Self {
            variance: vec![None; cost.len()],
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
            Some(v) if self.adaptive => v
                .iter()
                .zip(&self.cost)
                .map(|(&s, &c)| (s.max(0.0) / c.max(1.0)).sqrt())
                .collect(),
            _ => vec![1.0; g],
        };
        let sum: f64 = raw.iter().sum();
        if !(sum.is_finite() && sum > 0.0) {
            return vec![1.0 / g as f64; g];
        }
        raw.iter().map(|r| r / sum).collect()
    }

    /// Cells `alloc[i * G + g]` from the point allocation: point `i`'s share split by the site
    /// factors, at least `budget.unit` per cell, `budget.total` in all.
    pub fn split(&mut self, points: &[usize], budget: Budget) -> Result<Vec<usize>, LearnError> {
        self.check(points.len(), budget)?;
        let f = self.factors();
        let weights: Vec<f64> = points
            .iter()
            .flat_map(|&n| f.iter().map(move |&fg| n as f64 * fg))
            .collect();
        let cells = Budget {
            min_per_point: budget.unit,
            ..budget
        };
        Ok(integerise(&weights, cells, &mut self.rng))
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

    /// The point allocator's feedback from cells: `m_i = sum_g m_ig n_i / n_ig`, so that
    /// `sum_i m_i / n_i = sum_ig m_ig / n_ig` (the objective it minimises over its `n_i`).
    pub fn point_measured(&self, measured: &[f32], cells: &[usize], points: &[usize]) -> Vec<f32> {
        let g = self.groups();
        points
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                (0..g)
                    .map(|k| measured[i * g + k] as f64 * n as f64 / cells[i * g + k].max(1) as f64)
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
        let mut s = SiteSplit::new(vec![1.0, 1.0], true, 0);
        let flat = s.split(&[20, 20], budget).unwrap();
        assert_eq!(flat, vec![10, 10, 10, 10]);
        // Group 1 four times as variable: twice the queries (sqrt).
        s.update(&[1.0, 4.0, 1.0, 4.0]);
        let c = s.split(&[30, 10], budget).unwrap();
        assert_eq!(c.iter().sum::<usize>(), 40);
        assert_eq!(c, vec![10, 20, 3, 7]);
        // Costlier group 1 (4x): sqrt(4 / 4) = sqrt(1 / 1): flat again.
        let mut s = SiteSplit::new(vec![1.0, 4.0], true, 0);
        s.update(&[1.0, 4.0]);
        assert_eq!(s.factors(), vec![0.5, 0.5]);
        // Uniform over cells ignores what it measured.
        let mut u = SiteSplit::new(vec![1.0, 1.0], false, 0);
        u.update(&[1.0, 100.0]);
        assert_eq!(u.factors(), vec![0.5, 0.5]);
        let e = u.check(2, Budget { total: 3, ..budget }).unwrap_err().to_string();
        assert!(e.contains("at least 2 queries per image"), "{e}");
    }

    #[test]
    fn point_feedback_matches_the_cell_objective() {
        let s = SiteSplit::new(vec![1.0, 1.0], true, 0);
        let (m, cells, points) = ([1.0f32, 2.0, 3.0, 4.0], [2usize, 4, 1, 3], [6usize, 4]);
        let pm = s.point_measured(&m, &cells, &points);
        let lhs: f64 = pm.iter().zip(&points).map(|(&m, &n)| m as f64 / n as f64).sum();
        let rhs: f64 = m.iter().zip(&cells).map(|(&m, &n)| m as f64 / n as f64).sum();
        assert!((lhs - rhs).abs() < 1e-6);
    }
}
