//! Query allocators: how a budget of `N = B * n_bar` perturbed queries is split over a batch.
//!
//! Every allocator returns integers with `sum n_i = N` exactly and `n_i >= n_min`, reproducibly
//! from its seed (see ../shared/docs/flops-method.md, section 4). With antithetic pairs the
//! allocation is made in units of 2 queries (`unit = 2`), so every data point gets whole pairs.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::error::LearnError;

/// What the allocator sees of a batch before its queries run (from the clean pass).
#[derive(Debug, Clone)]
pub struct BatchStats<'a> {
    /// Clean per-sample losses `l_i`.
    pub losses: &'a [f32],
    /// Per-point variance proxies known before the queries (`|softmax(z_i) - onehot(y_i)|^2`).
    pub variance_proxy: &'a [f32],
}

/// What the step's queries revealed, for allocators that learn.
#[derive(Debug, Clone)]
pub struct Feedback<'a> {
    pub stats: BatchStats<'a>,
    /// The allocation that was used.
    pub allocation: &'a [usize],
    /// Per-point variance proxy measured from the queries: `m_i = mean_j (L_ij - b_i)^2`.
    pub measured: &'a [f32],
}

/// The budget: total queries `N`, the minimum per point and the allocation unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub total: usize,
    pub min_per_point: usize,
    /// 1, or 2 with antithetic pairs (then `total` and `min_per_point` must be even).
    pub unit: usize,
}

impl Budget {
    pub fn check(&self, batch: usize) -> Result<(), LearnError> {
        let bad = |m: String| Err(LearnError::Config { message: m });
        if batch == 0 {
            return bad("empty batch".into());
        }
        if self.unit == 0 || !self.total.is_multiple_of(self.unit) || !self.min_per_point.is_multiple_of(self.unit) {
            return bad(format!(
                "a step's budget of {} queries (batch x queriesPerPoint) must come in groups of {} \
                 (antithetic queries are pairs): make queriesPerPoint a multiple of {}, or turn antithetic off",
                self.total, self.unit, self.unit
            ));
        }
        if self.min_per_point == 0 {
            return bad("the minimum queries per point must be at least 1".into());
        }
        if self.total < batch * self.min_per_point {
            return bad(format!(
                "a step's budget of {} queries cannot give each of the {} images its minimum of {} \
                 (antithetic queries are pairs): raise queriesPerPoint to at least {}",
                self.total, batch, self.min_per_point, self.min_per_point
            ));
        }
        Ok(())
    }
}

/// Which allocator, by name as users type it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllocatorKind {
    Uniform,
    Flops,
    Neyman,
    Bernoulli,
}

impl std::str::FromStr for AllocatorKind {
    type Err = LearnError;
    fn from_str(s: &str) -> Result<Self, LearnError> {
        match s {
            "uniform" => Ok(Self::Uniform),
            "flops" => Ok(Self::Flops),
            "neyman" => Ok(Self::Neyman),
            "bernoulli" => Ok(Self::Bernoulli),
            other => Err(LearnError::Config {
                message: format!("unknown allocator `{other}`; one of: uniform, flops, neyman, bernoulli"),
            }),
        }
    }
}

/// A query allocator.
pub trait Allocator {
    /// The number of queries of each data point.
    fn allocate(&mut self, stats: &BatchStats, budget: Budget) -> Result<Vec<usize>, LearnError>;
    /// Learns from the step's outcome (no model queries); default: nothing to learn.
    fn update(&mut self, _feedback: &Feedback, _budget: Budget) {}
    /// Parameters worth logging, by name.
    fn params(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
    /// The trainer calls this when epoch `epoch` (0-based) begins; default: nothing changes.
    fn set_epoch(&mut self, _epoch: usize) {}
}

/// Makes the allocator `kind`, seeded.
pub fn make_allocator(kind: AllocatorKind, seed: u64) -> Box<dyn Allocator + Send> {
    match kind {
        AllocatorKind::Uniform => Box::new(Uniform::new(seed)),
        AllocatorKind::Neyman => Box::new(Neyman::new(seed)),
        AllocatorKind::Flops => Box::new(FlopsGaussian::new(seed, FlopsParams::default())),
        AllocatorKind::Bernoulli => Box::new(Bernoulli::new(seed)),
    }
}

/// Real-valued shares -> integers in `unit`s: `n_i >= min`, `sum = total`, proportional to
/// `weights` after water-filling the minimum; largest remainder, ties broken by `rng`.
pub fn integerise(weights: &[f64], budget: Budget, rng: &mut StdRng) -> Vec<usize> {
    let b = weights.len();
    let units = budget.total / budget.unit;
    let min_units = budget.min_per_point / budget.unit;
    let targets = water_fill(weights, units as f64, min_units as f64);
    let mut n: Vec<usize> = targets.iter().map(|t| (t.floor() as usize).max(min_units)).collect();
    let assigned: usize = n.iter().sum();
    // Remainders, with a random key so that equal remainders are ordered reproducibly at random.
    let mut order: Vec<(f64, u64, usize)> = (0..b)
        .map(|i| (targets[i] - targets[i].floor(), rng.random(), i))
        .collect();
    order.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    if assigned <= units {
        for k in 0..units - assigned {
            n[order[k % b].2] += 1;
        }
    } else {
        // Only reachable through float rounding: take back from the largest allocations.
        let mut excess = assigned - units;
        while excess > 0 {
            let i = (0..b)
                .filter(|&i| n[i] > min_units)
                .max_by_key(|&i| n[i])
                .expect("budget was checked");
            n[i] -= 1;
            excess -= 1;
        }
    }
    n.iter().map(|&u| u * budget.unit).collect()
}

/// Shares `t_i` with `sum t = total`, `t_i >= min`, `t_i` proportional to `w_i` among the points
/// above the minimum (Neyman allocation with a floor). Non-positive or non-finite weights get the
/// minimum; all-zero weights give equal shares.
pub fn water_fill(weights: &[f64], total: f64, min: f64) -> Vec<f64> {
    let b = weights.len();
    let w: Vec<f64> = weights
        .iter()
        .map(|&w| if w.is_finite() && w > 0.0 { w } else { 0.0 })
        .collect();
    if w.iter().all(|&w| w == 0.0) {
        return vec![total / b as f64; b];
    }
    let mut floored = vec![false; b];
    loop {
        let free: f64 = total - min * floored.iter().filter(|&&f| f).count() as f64;
        let wsum: f64 = (0..b).filter(|&i| !floored[i]).map(|i| w[i]).sum();
        let t: Vec<f64> = (0..b)
            .map(|i| {
                if floored[i] {
                    min
                } else if wsum > 0.0 {
                    free * w[i] / wsum
                } else {
                    0.0
                }
            })
            .collect();
        let newly: Vec<usize> = (0..b).filter(|&i| !floored[i] && t[i] < min).collect();
        if newly.is_empty() {
            return t;
        }
        for i in newly {
            floored[i] = true;
        }
    }
}

/// `n_i = n_bar`.
pub struct Uniform {
    rng: StdRng,
}

impl Uniform {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }
}

impl Allocator for Uniform {
    fn allocate(&mut self, stats: &BatchStats, budget: Budget) -> Result<Vec<usize>, LearnError> {
        budget.check(stats.losses.len())?;
        Ok(integerise(&vec![1.0; stats.losses.len()], budget, &mut self.rng))
    }
}

/// Neyman: `n_i` proportional to `sqrt(V_i)`, with `V_i` the point's measured `m_i` from its
/// previous step when the trainer passes one, else the clean-pass proxy.
pub struct Neyman {
    rng: StdRng,
}

impl Neyman {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }
}

impl Allocator for Neyman {
    fn allocate(&mut self, stats: &BatchStats, budget: Budget) -> Result<Vec<usize>, LearnError> {
        budget.check(stats.losses.len())?;
        let w: Vec<f64> = stats
            .variance_proxy
            .iter()
            .map(|&v| (v.max(0.0) as f64).sqrt())
            .collect();
        Ok(integerise(&w, budget, &mut self.rng))
    }
}

/// The authors' heuristic: points below the batch-mean loss have their `n_bar` halved with
/// probability `p` (0.3 in the first epoch, 0.01 after); freed queries go evenly to the rest.
pub struct Bernoulli {
    rng: StdRng,
    pub p: f64,
}

impl Bernoulli {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            p: 0.3,
        }
    }
}

impl Allocator for Bernoulli {
    fn allocate(&mut self, stats: &BatchStats, budget: Budget) -> Result<Vec<usize>, LearnError> {
        let b = stats.losses.len();
        budget.check(b)?;
        let mean = stats.losses.iter().map(|&l| l as f64).sum::<f64>() / b as f64;
        let n_bar = budget.total as f64 / b as f64;
        let halved: Vec<bool> = stats
            .losses
            .iter()
            .map(|&l| (l as f64) < mean && self.rng.random_bool(self.p))
            .collect();
        let kept = halved.iter().filter(|&&h| !h).count();
        let freed = halved.iter().filter(|&&h| h).count() as f64 * n_bar / 2.0;
        let w: Vec<f64> = halved
            .iter()
            .map(|&h| {
                if h {
                    n_bar / 2.0
                } else {
                    n_bar + freed / kept.max(1) as f64
                }
            })
            .collect();
        Ok(integerise(&w, budget, &mut self.rng))
    }

    fn params(&self) -> Vec<(&'static str, f64)> {
        vec![("p", self.p)]
    }

    fn set_epoch(&mut self, epoch: usize) {
        self.p = if epoch == 0 { 0.3 } else { 0.01 };
    }
}

/// Hyper-parameters of the learned Gaussian allocator.
#[derive(Debug, Clone, Copy)]
pub struct FlopsParams {
    /// Score-function step size.
    pub beta: f64,
    /// Candidate draws per update (16-64).
    pub candidates: usize,
    /// Diagonal jitter `delta` of the covariance.
    pub delta: f64,
}

impl Default for FlopsParams {
    fn default() -> Self {
        Self {
            beta: 0.05,
            candidates: 32,
            delta: 1e-2,
        }
    }
}

/// FLOPS's learned allocator: `z ~ N(mu, Sigma)`, `mu_i = a u_i + c` on standardised clean losses
/// `u`, `Sigma_ij = tau^2 exp(-(u_i - u_j)^2 / (2 rho^2)) + delta [i = j]`; `n_i` proportional to
/// `max(z_i, 0)`. Updated by a score-function step on `J(n) = -sum m_i / n_i`.
pub struct FlopsGaussian {
    rng: StdRng,
    pub hp: FlopsParams,
    /// `(a, c, log rho, log tau)`.
    pub lambda: [f64; 4],
}

impl FlopsGaussian {
    pub fn new(seed: u64, hp: FlopsParams) -> Self {
        // Near uniform: a = 0, c = 1, small tau.
        Self {
            rng: StdRng::seed_from_u64(seed),
            hp,
            lambda: [0.0, 1.0, 0.0, (0.1f64).ln()],
        }
    }

    fn standardise(losses: &[f32]) -> Vec<f64> {
        let b = losses.len() as f64;
        let mean = losses.iter().map(|&l| l as f64).sum::<f64>() / b;
        let sd = (losses.iter().map(|&l| (l as f64 - mean).powi(2)).sum::<f64>() / b).sqrt();
        losses
            .iter()
            .map(|&l| if sd > 1e-12 { (l as f64 - mean) / sd } else { 0.0 })
            .collect()
    }

    /// `mu`, `Sigma` and the kernel matrix `K` (without `tau^2` and `delta`).
    fn policy(&self, u: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let [a, c, log_rho, log_tau] = self.lambda;
        let (rho, tau2) = (log_rho.exp(), (2.0 * log_tau).exp());
        let b = u.len();
        let mu = u.iter().map(|&ui| a * ui + c).collect();
        let mut k = vec![0.0; b * b];
        let mut sigma = vec![0.0; b * b];
        for i in 0..b {
            for j in 0..b {
                k[i * b + j] = (-(u[i] - u[j]).powi(2) / (2.0 * rho * rho)).exp();
                sigma[i * b + j] = tau2 * k[i * b + j] + if i == j { self.hp.delta } else { 0.0 };
            }
        }
        (mu, sigma, k)
    }

    fn sample(&mut self, mu: &[f64], chol: &[f64]) -> Vec<f64> {
        let b = mu.len();
        let e: Vec<f64> = (0..b).map(|_| self.rng.sample(StandardNormal)).collect();
        (0..b)
            .map(|i| mu[i] + (0..=i).map(|j| chol[i * b + j] * e[j]).sum::<f64>())
            .collect()
    }

    fn shares(z: &[f64]) -> Vec<f64> {
        z.iter().map(|&v| v.max(0.0)).collect()
    }
}

impl Allocator for FlopsGaussian {
    fn allocate(&mut self, stats: &BatchStats, budget: Budget) -> Result<Vec<usize>, LearnError> {
        budget.check(stats.losses.len())?;
        let u = Self::standardise(stats.losses);
        let (mu, sigma, _) = self.policy(&u);
        let chol = cholesky(&sigma, u.len());
        let z = self.sample(&mu, &chol);
        Ok(integerise(&Self::shares(&z), budget, &mut self.rng))
    }

    fn update(&mut self, fb: &Feedback, budget: Budget) {
        let b = fb.measured.len();
        if b < 2 || fb.measured.iter().any(|m| !m.is_finite()) {
            return;
        }
        let u = Self::standardise(fb.stats.losses);
        let (mu, sigma, kern) = self.policy(&u);
        let chol = cholesky(&sigma, b);
        let inv = spd_inverse(&chol, b);
        let [_, _, log_rho, log_tau] = self.lambda;
        let (rho2, tau2) = ((2.0 * log_rho).exp(), (2.0 * log_tau).exp());
        let mut draws = Vec::with_capacity(self.hp.candidates);
        for _ in 0..self.hp.candidates {
            let z = self.sample(&mu, &chol);
            let n = integerise(&Self::shares(&z), budget, &mut self.rng);
            let j: f64 = -(0..b).map(|i| fb.measured[i] as f64 / n[i] as f64).sum::<f64>();
            draws.push((z, j));
        }
        let k = draws.len() as f64;
        let mean_j = draws.iter().map(|d| d.1).sum::<f64>() / k;
        let sd_j = (draws.iter().map(|d| (d.1 - mean_j).powi(2)).sum::<f64>() / k).sqrt();
        if sd_j <= 0.0 || !sd_j.is_finite() {
            return;
        }
        let mut grad = [0.0f64; 4];
        for (z, j) in &draws {
            // Score of N(mu, Sigma): d/dmu = Sigma^-1 r; d/dSigma = (Sigma^-1 r r^T Sigma^-1 - Sigma^-1) / 2.
            let r: Vec<f64> = (0..b).map(|i| z[i] - mu[i]).collect();
            let s: Vec<f64> = (0..b).map(|i| (0..b).map(|l| inv[i * b + l] * r[l]).sum()).collect();
            let g_a: f64 = (0..b).map(|i| s[i] * u[i]).sum();
            let g_c: f64 = s.iter().sum();
            let (mut g_rho, mut g_tau) = (0.0, 0.0);
            for i in 0..b {
                for l in 0..b {
                    let m = 0.5 * (s[i] * s[l] - inv[i * b + l]);
                    g_tau += m * 2.0 * tau2 * kern[i * b + l];
                    g_rho += m * tau2 * kern[i * b + l] * (u[i] - u[l]).powi(2) / rho2;
                }
            }
            // Advantage normalised by the spread of J, so the step size does not depend on the loss scale.
            let adv = (j - mean_j) / sd_j;
            for (g, v) in grad.iter_mut().zip([g_a, g_c, g_rho, g_tau]) {
                *g += adv * v / k;
            }
        }
        for (l, g) in self.lambda.iter_mut().zip(grad) {
            *l += self.hp.beta * g.clamp(-10.0, 10.0);
        }
        // Keep the policy well-posed: c > 0 keeps most mass positive; bounded length scales.
        self.lambda[1] = self.lambda[1].max(0.1);
        self.lambda[2] = self.lambda[2].clamp(-3.0, 3.0);
        self.lambda[3] = self.lambda[3].clamp(-5.0, 1.0);
    }

    fn params(&self) -> Vec<(&'static str, f64)> {
        let [a, c, lr, lt] = self.lambda;
        vec![("a", a), ("c", c), ("rho", lr.exp()), ("tau", lt.exp())]
    }
}

/// Lower Cholesky factor of an SPD `n x n` matrix (row-major); adds jitter if needed.
fn cholesky(a: &[f64], n: usize) -> Vec<f64> {
    let mut jitter = 0.0;
    loop {
        let mut l = vec![0.0; n * n];
        let mut ok = true;
        'outer: for i in 0..n {
            for j in 0..=i {
                let mut s = a[i * n + j] + if i == j { jitter } else { 0.0 };
                for k in 0..j {
                    s -= l[i * n + k] * l[j * n + k];
                }
                if i == j {
                    if s <= 0.0 {
                        ok = false;
                        break 'outer;
                    }
                    l[i * n + i] = s.sqrt();
                } else {
                    l[i * n + j] = s / l[j * n + j];
                }
            }
        }
        if ok {
            return l;
        }
        jitter = if jitter == 0.0 { 1e-9 } else { jitter * 10.0 };
    }
}

/// `A^-1` from the Cholesky factor `L` of `A`.
fn spd_inverse(l: &[f64], n: usize) -> Vec<f64> {
    let mut inv = vec![0.0; n * n];
    for col in 0..n {
        // Solve L y = e_col, then L^T x = y.
        let mut y = vec![0.0; n];
        for i in 0..n {
            let s = if i == col { 1.0 } else { 0.0 } - (0..i).map(|k| l[i * n + k] * y[k]).sum::<f64>();
            y[i] = s / l[i * n + i];
        }
        for i in (0..n).rev() {
            let s = y[i] - (i + 1..n).map(|k| l[k * n + i] * inv[k * n + col]).sum::<f64>();
            inv[i * n + col] = s / l[i * n + i];
        }
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats<'a>(losses: &'a [f32], proxy: &'a [f32]) -> BatchStats<'a> {
        BatchStats {
            losses,
            variance_proxy: proxy,
        }
    }

    #[test]
    fn budget_and_minimum_hold_on_random_inputs() {
        let mut rng = StdRng::seed_from_u64(1);
        for trial in 0..500 {
            let b = rng.random_range(1..40);
            let unit = if trial % 3 == 0 { 2 } else { 1 };
            let min = unit * rng.random_range(1..3);
            let total = unit * rng.random_range(b * min / unit..b * min / unit + 200);
            let budget = Budget {
                total,
                min_per_point: min,
                unit,
            };
            let losses: Vec<f32> = (0..b)
                .map(|_| rng.random_range(0.0..5.0f32) * if rng.random_bool(0.1) { 0.0 } else { 1.0 })
                .collect();
            let proxy: Vec<f32> = (0..b)
                .map(|_| {
                    if rng.random_bool(0.2) {
                        0.0
                    } else {
                        rng.random_range(0.0..2.0f32)
                    }
                })
                .collect();
            for kind in [
                AllocatorKind::Uniform,
                AllocatorKind::Flops,
                AllocatorKind::Neyman,
                AllocatorKind::Bernoulli,
            ] {
                let mut a = make_allocator(kind, trial);
                let n = a.allocate(&stats(&losses, &proxy), budget).unwrap();
                assert_eq!(n.len(), b);
                assert_eq!(n.iter().sum::<usize>(), total, "{kind:?} trial {trial}: {n:?}");
                assert!(
                    n.iter().all(|&x| x >= min && x % unit == 0),
                    "{kind:?} trial {trial}: {n:?} min {min} unit {unit}"
                );
                // Reproducible from the seed.
                let again = make_allocator(kind, trial)
                    .allocate(&stats(&losses, &proxy), budget)
                    .unwrap();
                assert_eq!(n, again);
            }
        }
    }

    #[test]
    fn infeasible_budgets_are_errors() {
        let l = [1.0f32; 4];
        let err = Uniform::new(0)
            .allocate(
                &stats(&l, &l),
                Budget {
                    total: 7,
                    min_per_point: 2,
                    unit: 1,
                },
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot give each of the 4 images its minimum of 2"),
            "{err}"
        );
        let err = Uniform::new(0)
            .allocate(
                &stats(&l, &l),
                Budget {
                    total: 9,
                    min_per_point: 2,
                    unit: 2,
                },
            )
            .unwrap_err();
        assert!(err.to_string().contains("must come in groups of 2"), "{err}");
    }

    #[test]
    fn uniform_is_uniform_and_ties_are_seeded() {
        let l = [0.5f32; 5];
        let budget = Budget {
            total: 52,
            min_per_point: 1,
            unit: 1,
        };
        let a = Uniform::new(3).allocate(&stats(&l, &l), budget).unwrap();
        assert!(a.iter().all(|&n| n == 10 || n == 11), "{a:?}");
        let others: Vec<Vec<usize>> = (0..10)
            .map(|s| Uniform::new(s).allocate(&stats(&l, &l), budget).unwrap())
            .collect();
        assert!(others.iter().any(|o| *o != a), "tie-breaks should depend on the seed");
    }

    #[test]
    fn neyman_beats_uniform_on_the_variance_objective() {
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..100 {
            let b = 16;
            let v: Vec<f32> = (0..b).map(|_| rng.random_range(0.01..4.0f32).powi(2)).collect();
            let budget = Budget {
                total: b * 10,
                min_per_point: 1,
                unit: 1,
            };
            let obj = |n: &[usize]| (0..b).map(|i| v[i] as f64 / n[i] as f64).sum::<f64>();
            let ney = Neyman::new(1).allocate(&stats(&v, &v), budget).unwrap();
            let uni = Uniform::new(1).allocate(&stats(&v, &v), budget).unwrap();
            assert!(obj(&ney) <= obj(&uni) * (1.0 + 1e-9), "{} > {}", obj(&ney), obj(&uni));
        }
    }

    #[test]
    fn water_fill_respects_floor_and_proportions() {
        let t = water_fill(&[100.0, 1.0, 1.0, 0.0], 40.0, 2.0);
        assert!((t.iter().sum::<f64>() - 40.0).abs() < 1e-9);
        assert_eq!(&t[1..], &[2.0, 2.0, 2.0]);
        assert!((t[0] - 34.0).abs() < 1e-9);
    }

    #[test]
    fn cholesky_inverse_is_an_inverse() {
        let a = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let l = cholesky(&a, 3);
        let inv = spd_inverse(&l, 3);
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| a[i * 3 + k] * inv[k * 3 + j]).sum();
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn flops_slope_turns_positive_when_high_loss_points_are_noisy() {
        // Synthetic: the measured variance grows with the loss (as for one-sided LR).
        let mut rng = StdRng::seed_from_u64(5);
        let mut alloc = FlopsGaussian::new(11, FlopsParams::default());
        let budget = Budget {
            total: 16 * 8,
            min_per_point: 1,
            unit: 1,
        };
        for _ in 0..200 {
            let losses: Vec<f32> = (0..16).map(|_| rng.random_range(0.05..3.0f32)).collect();
            let n = alloc.allocate(&stats(&losses, &losses), budget).unwrap();
            let measured: Vec<f32> = losses.iter().map(|l| l * l).collect();
            let fb = Feedback {
                stats: stats(&losses, &losses),
                allocation: &n,
                measured: &measured,
            };
            alloc.update(&fb, budget);
        }
        assert!(alloc.lambda[0] > 0.0, "slope a = {}", alloc.lambda[0]);
    }
}
