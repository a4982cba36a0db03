//! Optimisers over one flat parameter vector: SGD with momentum and Adam, gradient clipping by
//! global norm, constant or cosine learning rate. The GPU runs the same update as a WGSL kernel;
//! this is the reference and the CPU backend's implementation.

use serde::{Deserialize, Serialize};

use super::error::LearnError;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd { momentum: f32 },
    Adam { beta1: f32, beta2: f32, eps: f32 },
}

impl OptimizerKind {
    pub fn adam() -> Self {
        Self::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    /// Cosine decay from the base rate to 0 over the run.
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f32,
    pub schedule: Schedule,
    /// Clip the gradient to this global L2 norm; `None`: no clipping.
    pub clip_norm: Option<f32>,
}

impl OptimizerConfig {
    pub fn validate(&self) -> Result<(), LearnError> {
        let bad = |m: String| Err(LearnError::Config { message: m });
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate must be positive, got {}", self.lr));
        }
        if let Some(c) = self.clip_norm {
            if !(c.is_finite() && c > 0.0) {
                return bad(format!("clip norm must be positive, got {c}"));
            }
        }
        match self.kind {
            OptimizerKind::Sgd { momentum } if !(0.0..1.0).contains(&momentum) => {
                bad(format!("momentum must be in [0, 1), got {momentum}"))
            }
            OptimizerKind::Adam { beta1, beta2, eps }
                if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) || eps.is_nan() || eps <= 0.0 =>
            {
                bad(format!(
                    "Adam needs betas in [0, 1) and eps > 0, got {beta1}, {beta2}, {eps}"
                ))
            }
            _ => Ok(()),
        }
    }

    /// The learning rate at `step` (0-based) of `total` steps.
    pub fn lr_at(&self, step: usize, total: usize) -> f32 {
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let t = step as f64 / total.max(1) as f64;
                (self.lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())) as f32
            }
        }
    }
}

/// The optimiser state for `n` parameters.
#[derive(Debug, Clone)]
pub struct Optimizer {
    pub config: OptimizerConfig,
    /// Momentum buffer (SGD) or first moment (Adam).
    m: Vec<f32>,
    /// Second moment (Adam).
    v: Vec<f32>,
    t: u32,
}

/// Scale factor that clips `grad` to `max_norm` (1 when within).
pub fn clip_scale(grad_norm: f32, max_norm: Option<f32>) -> f32 {
    match max_norm {
        Some(c) if grad_norm > c => c / grad_norm,
        _ => 1.0,
    }
}

pub fn l2_norm(v: &[f32]) -> f32 {
    v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt() as f32
}

impl Optimizer {
    pub fn new(config: OptimizerConfig, n: usize) -> Result<Self, LearnError> {
        config.validate()?;
        let v = if matches!(config.kind, OptimizerKind::Adam { .. }) {
            vec![0.0; n]
        } else {
            Vec::new()
        };
        Ok(Self {
            config,
            m: vec![0.0; n],
            v,
            t: 0,
        })
    }

    /// Forgets the moments and the step count (the run moved to weights these moments were
    /// not gathered on).
    pub fn reset(&mut self) {
        self.m.iter_mut().for_each(|x| *x = 0.0);
        self.v.iter_mut().for_each(|x| *x = 0.0);
        self.t = 0;
    }

    /// One update of `params` with `grad` at learning rate `lr`; returns the gradient's norm
    /// before clipping.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32], lr: f32) -> f32 {
        self.step_segments(params, grad, &[(params.len(), lr)])
    }

    /// [`Optimizer::step`] with a learning rate per run of elements: `segments` are
    /// `(length, lr)` in order, covering the parameters.
    pub fn step_segments(&mut self, params: &mut [f32], grad: &[f32], segments: &[(usize, f32)]) -> f32 {
        debug_assert_eq!(params.len(), grad.len());
        debug_assert_eq!(segments.iter().map(|s| s.0).sum::<usize>(), params.len());
        let lrs: Vec<f32> = segments
            .iter()
            .flat_map(|&(n, lr)| std::iter::repeat_n(lr, n))
            .collect();
        let norm = l2_norm(grad);
        let scale = clip_scale(norm, self.config.clip_norm);
        self.t += 1;
        match self.config.kind {
            OptimizerKind::Sgd { momentum } => {
                for (((p, &g), m), &lr) in params.iter_mut().zip(grad).zip(&mut self.m).zip(&lrs) {
                    *m = momentum * *m + g * scale;
                    *p -= lr * *m;
                }
            }
            OptimizerKind::Adam { beta1, beta2, eps } => {
                let bc1 = 1.0 - beta1.powi(self.t as i32);
                let bc2 = 1.0 - beta2.powi(self.t as i32);
                let state = self.m.iter_mut().zip(&mut self.v).zip(&lrs);
                for ((p, &g), ((m, v), &lr)) in params.iter_mut().zip(grad).zip(state) {
                    let g = g * scale;
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *v = beta2 * *v + (1.0 - beta2) * g * g;
                    *p -= lr * (*m / bc1) / ((*v / bc2).sqrt() + eps);
                }
            }
        }
        norm
    }

    /// The step count (Adam's `t`).
    pub fn steps(&self) -> u32 {
        self.t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quad_descent(kind: OptimizerKind, lr: f32) -> f32 {
        // f(x) = 0.5 * sum a_i x_i^2, minimum 0.
        let a = [1.0f32, 4.0, 0.25];
        let mut x = vec![1.0f32, -1.0, 2.0];
        let cfg = OptimizerConfig {
            kind,
            lr,
            schedule: Schedule::Constant,
            clip_norm: None,
        };
        let mut opt = Optimizer::new(cfg, 3).unwrap();
        for _ in 0..300 {
            let g: Vec<f32> = x.iter().zip(a).map(|(x, a)| a * x).collect();
            opt.step(&mut x, &g, lr);
        }
        x.iter().zip(a).map(|(x, a)| 0.5 * a * x * x).sum()
    }

    #[test]
    fn both_optimisers_minimise_a_quadratic() {
        assert!(quad_descent(OptimizerKind::Sgd { momentum: 0.9 }, 0.05) < 1e-4);
        assert!(quad_descent(OptimizerKind::adam(), 0.05) < 1e-3);
    }

    #[test]
    fn adam_first_step_is_lr_times_sign() {
        let cfg = OptimizerConfig {
            kind: OptimizerKind::adam(),
            lr: 0.1,
            schedule: Schedule::Constant,
            clip_norm: None,
        };
        let mut opt = Optimizer::new(cfg, 2).unwrap();
        let mut p = vec![0.0f32, 0.0];
        opt.step(&mut p, &[3.0, -0.5], 0.1);
        assert!((p[0] + 0.1).abs() < 1e-6 && (p[1] - 0.1).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn clipping_limits_the_step() {
        let cfg = OptimizerConfig {
            kind: OptimizerKind::Sgd { momentum: 0.0 },
            lr: 1.0,
            schedule: Schedule::Constant,
            clip_norm: Some(1.0),
        };
        let mut opt = Optimizer::new(cfg, 2).unwrap();
        let mut p = vec![0.0f32, 0.0];
        let norm = opt.step(&mut p, &[3.0, 4.0], 1.0);
        assert_eq!(norm, 5.0);
        assert!((l2_norm(&p) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn cosine_schedule_and_validation() {
        let cfg = OptimizerConfig {
            kind: OptimizerKind::adam(),
            lr: 1.0,
            schedule: Schedule::Cosine,
            clip_norm: None,
        };
        assert_eq!(cfg.lr_at(0, 100), 1.0);
        assert!((cfg.lr_at(50, 100) - 0.5).abs() < 1e-6);
        assert!(cfg.lr_at(100, 100).abs() < 1e-6);
        let bad = OptimizerConfig { lr: -1.0, ..cfg };
        assert!(Optimizer::new(bad, 1)
            .unwrap_err()
            .to_string()
            .contains("learning rate"));
    }
}
