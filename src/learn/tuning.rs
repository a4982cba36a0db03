//! What is tuned: the classifier head, or the last K encoder blocks plus the final LayerNorm and
//! the head. Everything below the first tuned block is frozen and computed once per image.
//!
//! Both estimators tune the same tensors: every tensor of the tuned blocks (Q/K/V, attention
//! output, MLP, both LayerNorms' affine), the final LayerNorm (unless head-only) and the head.
//! SPSA perturbs them all in weight space. LR perturbs the outputs of the linear layers; a
//! LayerNorm's affine map `y = gamma * x_hat + beta` feeds linear layers only (Q/K/V, fc1, the
//! classifier), so its output gradient is estimated from theirs, `d_y = sum W^T d_out` (linear in
//! the unbiased `d_out`, hence unbiased, and no extra noise), and
//! `g_gamma = sum_t d_y * x_hat`, `g_beta = sum_t d_y`.

use serde::{Deserialize, Serialize};

use super::error::LearnError;
use crate::model::params::ParamTable;
use crate::model::LinearSite;

/// Which tuned sites one LR query perturbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Perturb {
    /// Every tuned site in every query: one loss carries every site's noise.
    #[default]
    Joint,
    /// One site per query (flops-method.md, section 7): no site's estimate carries another's
    /// noise, and a late site's query runs only what follows it.
    Site,
}

impl Perturb {
    /// The names [`Perturb::parse`] takes.
    pub const NAMES: &'static [&'static str] = &["joint", "site"];

    pub fn parse(s: &str) -> Result<Self, LearnError> {
        match s {
            "joint" => Ok(Self::Joint),
            "site" => Ok(Self::Site),
            other => Err(LearnError::Config {
                message: format!("unknown perturbation `{other}`; one of: {}", Self::NAMES.join(", ")),
            }),
        }
    }

    /// The site groups of a plan over `sites`.
    pub fn groups(&self, sites: &[LinearSite]) -> Vec<Vec<LinearSite>> {
        match self {
            Perturb::Joint => vec![sites.to_vec()],
            Perturb::Site => sites.iter().map(|&s| vec![s]).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "blocks", rename_all = "lowercase")]
pub enum Tuning {
    Head,
    /// The last `K` encoder blocks, the final LayerNorm and the head.
    Last(usize),
}

impl std::str::FromStr for Tuning {
    type Err = LearnError;
    fn from_str(s: &str) -> Result<Self, LearnError> {
        let bad = || LearnError::Config {
            message: format!("unknown tuning `{s}`; use `head` or `last:K` (K >= 1)"),
        };
        match s {
            "head" => Ok(Tuning::Head),
            _ => match s.strip_prefix("last:").map(str::parse::<usize>) {
                Some(Ok(k)) if k >= 1 => Ok(Tuning::Last(k)),
                _ => Err(bad()),
            },
        }
    }
}

impl Tuning {
    /// Errors when the model has fewer blocks than asked for.
    pub fn check(&self, layers: usize) -> Result<(), LearnError> {
        match *self {
            Tuning::Last(k) if k > layers => Err(LearnError::Config {
                message: format!("cannot tune the last {k} blocks of a {layers}-block model"),
            }),
            _ => Ok(()),
        }
    }

    /// The first block whose output depends on tuned parameters (`layers` for head-only).
    pub fn first_tuned_block(&self, layers: usize) -> usize {
        match *self {
            Tuning::Head => layers,
            Tuning::Last(k) => layers - k.min(layers),
        }
    }

    /// The linear layers LR perturbs, in forward order.
    pub fn lr_sites(&self, layers: usize) -> Vec<LinearSite> {
        let mut sites = Vec::new();
        for l in self.first_tuned_block(layers)..layers {
            sites.extend([
                LinearSite::Query(l),
                LinearSite::Key(l),
                LinearSite::Value(l),
                LinearSite::AttnOut(l),
                LinearSite::Fc1(l),
                LinearSite::Fc2(l),
            ]);
        }
        sites.push(LinearSite::Classifier);
        sites
    }

    /// Every tuned tensor id, sorted, for either estimator: every tensor of the tuned blocks, the
    /// final LayerNorm (unless head-only) and the head.
    pub fn tensors(&self, ids: &ParamTable) -> Vec<u32> {
        let layers = ids.layers.len();
        let mut t: Vec<u32> = ids.layers[self.first_tuned_block(layers)..]
            .iter()
            .flat_map(|l| l.all())
            .collect();
        if *self != Tuning::Head {
            t.extend([ids.final_ln.0, ids.final_ln.1]);
        }
        t.push(ids.classifier.weight);
        t.extend(ids.classifier.bias);
        t.sort_unstable();
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        assert_eq!("head".parse::<Tuning>().unwrap(), Tuning::Head);
        assert_eq!("last:2".parse::<Tuning>().unwrap(), Tuning::Last(2));
        for bad in ["last:0", "last:", "all", "last:x"] {
            assert!(bad.parse::<Tuning>().unwrap_err().to_string().contains("head"), "{bad}");
        }
        assert!(Tuning::Last(5).check(4).is_err());
        assert_eq!(Tuning::Last(1).first_tuned_block(4), 3);
        assert_eq!(Tuning::Head.first_tuned_block(4), 4);
        assert_eq!(Tuning::Last(1).lr_sites(4).len(), 7);
    }
}
