//! What is tuned: the classifier head, or the last K encoder blocks plus the final LayerNorm and
//! the head. Everything below the first tuned block is frozen and computed once per image.
//!
//! The LR estimator perturbs the outputs of linear layers, so under LR the tuned tensors are the
//! linear layers' weights and biases (LayerNorm affine stays frozen); SPSA perturbs every tuned
//! tensor, LayerNorm affine included.

use serde::{Deserialize, Serialize};

use super::error::LearnError;
use crate::model::perturb::TensorIds;
use crate::model::LinearSite;

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

    /// Tensor ids tuned by the LR estimator: the weights and biases of [`Self::lr_sites`].
    pub fn lr_tensors(&self, ids: &TensorIds) -> Vec<u32> {
        let layers = ids.layers.len();
        self.lr_sites(layers)
            .into_iter()
            .filter_map(|s| ids.linear(s))
            .flat_map(|l| std::iter::once(l.weight).chain(l.bias))
            .collect()
    }

    /// Tensor ids tuned by weight-space estimators: every tensor of the tuned blocks, the final
    /// LayerNorm (unless head-only) and the head.
    pub fn all_tensors(&self, ids: &TensorIds) -> Vec<u32> {
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
