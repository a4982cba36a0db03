//! The parameter table: every tensor of a network with its HF name, shape, flat offset, block
//! and structural role, built once from the network. It is the only place that derives tensor
//! ids, flat offsets ([`FlatLayout`]) and the noise ids of the linear layers ([`ParamTable::site_id`]);
//! the learning core, the backends and the noise streams take them from here.
//!
//! Tensor ids are indices into [`ViTForImageClassification::params`] (HF checkpoint order).

use super::nn::Linear;
use super::vit::{LinearSite, NormSite, ViTForImageClassification};

/// Ids of a linear layer's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearIds {
    pub weight: u32,
    pub bias: Option<u32>,
}

/// Ids of one encoder block's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerIds {
    pub ln_before: (u32, u32),
    pub query: LinearIds,
    pub key: LinearIds,
    pub value: LinearIds,
    pub attn_out: LinearIds,
    pub ln_after: (u32, u32),
    pub fc1: LinearIds,
    pub fc2: LinearIds,
}

impl LayerIds {
    /// Every tensor id of the block.
    pub fn all(&self) -> Vec<u32> {
        let mut v = vec![self.ln_before.0, self.ln_before.1, self.ln_after.0, self.ln_after.1];
        for l in [self.query, self.key, self.value, self.attn_out, self.fc1, self.fc2] {
            v.push(l.weight);
            v.extend(l.bias);
        }
        v
    }
}

/// Which part of the network a tensor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamGroup {
    /// CLS token, position embeddings, patch projection: shared by every query row of an image.
    Embeddings,
    /// Encoder block `l`.
    Block(usize),
    /// `vit.layernorm`.
    FinalNorm,
    /// The classifier.
    Head,
}

/// What a tensor is within its layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamRole {
    /// A linear layer's weight, at `site`.
    Weight(LinearSite),
    /// A linear layer's bias, at `site`.
    Bias(LinearSite),
    /// A LayerNorm's gamma.
    NormWeight(NormSite),
    /// A LayerNorm's beta.
    NormBias(NormSite),
    /// The CLS token or the position embeddings.
    Embedding,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    /// The HF name (`vit.encoder.layer.0.attention.attention.query.weight`).
    pub name: String,
    pub shape: Vec<usize>,
    pub numel: usize,
    /// Offset in the flat vector of all parameters (checkpoint order).
    pub offset: usize,
    pub group: ParamGroup,
    pub role: ParamRole,
}

/// Every tensor of a network, by id and by structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamTable {
    pub entries: Vec<ParamInfo>,
    pub cls_token: u32,
    pub position_embeddings: u32,
    pub patch: LinearIds,
    pub layers: Vec<LayerIds>,
    pub final_ln: (u32, u32),
    pub classifier: LinearIds,
    /// The number of tensors.
    pub count: u32,
    /// The number of scalar parameters.
    pub total: usize,
}

/// Hands out ids in [`ViTForImageClassification::params`] order while recording each entry.
struct Builder<'a> {
    net: &'a ViTForImageClassification,
    entries: Vec<ParamInfo>,
    offset: usize,
}

impl Builder<'_> {
    fn take(&mut self, group: ParamGroup, role: ParamRole) -> u32 {
        let id = self.entries.len();
        let p = self.net.params()[id];
        self.entries.push(ParamInfo {
            name: p.name.clone(),
            shape: p.shape.clone(),
            numel: p.numel(),
            offset: self.offset,
            group,
            role,
        });
        self.offset += p.numel();
        id as u32
    }

    fn linear(&mut self, l: &Linear, group: ParamGroup, site: LinearSite) -> LinearIds {
        LinearIds {
            weight: self.take(group, ParamRole::Weight(site)),
            bias: l.bias.as_ref().map(|_| self.take(group, ParamRole::Bias(site))),
        }
    }

    fn norm(&mut self, group: ParamGroup, site: NormSite) -> (u32, u32) {
        (
            self.take(group, ParamRole::NormWeight(site)),
            self.take(group, ParamRole::NormBias(site)),
        )
    }
}

impl ParamTable {
    /// The table of `net`, walking its modules in the order of `net.params()`.
    pub fn of(net: &ViTForImageClassification) -> Self {
        let mut b = Builder {
            net,
            entries: Vec::new(),
            offset: 0,
        };
        let emb = &net.vit.embeddings;
        let cls_token = b.take(ParamGroup::Embeddings, ParamRole::Embedding);
        let position_embeddings = b.take(ParamGroup::Embeddings, ParamRole::Embedding);
        let patch = b.linear(
            &emb.patch_embeddings.projection,
            ParamGroup::Embeddings,
            LinearSite::PatchEmbed,
        );
        let layers = net
            .vit
            .layers
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                let g = ParamGroup::Block(l);
                let sa = &layer.attention.attention;
                LayerIds {
                    ln_before: b.norm(g, NormSite::Before(l)),
                    query: b.linear(&sa.query, g, LinearSite::Query(l)),
                    key: b.linear(&sa.key, g, LinearSite::Key(l)),
                    value: b.linear(&sa.value, g, LinearSite::Value(l)),
                    attn_out: b.linear(&layer.attention.output, g, LinearSite::AttnOut(l)),
                    ln_after: b.norm(g, NormSite::After(l)),
                    fc1: b.linear(&layer.intermediate.dense, g, LinearSite::Fc1(l)),
                    fc2: b.linear(&layer.output.dense, g, LinearSite::Fc2(l)),
                }
            })
            .collect();
        let final_ln = b.norm(ParamGroup::FinalNorm, NormSite::Final);
        let classifier = b.linear(&net.classifier, ParamGroup::Head, LinearSite::Classifier);
        let total = b.offset;
        let entries = b.entries;
        Self {
            count: entries.len() as u32,
            entries,
            cls_token,
            position_embeddings,
            patch,
            layers,
            final_ln,
            classifier,
            total,
        }
    }

    /// The entry of tensor `id`.
    pub fn get(&self, id: u32) -> Option<&ParamInfo> {
        self.entries.get(id as usize)
    }

    /// The id of the tensor with HF name `name`.
    pub fn id_of(&self, name: &str) -> Option<u32> {
        self.entries.iter().position(|e| e.name == name).map(|i| i as u32)
    }

    /// The linear layer at `site`.
    pub fn linear(&self, site: LinearSite) -> Option<LinearIds> {
        let layer = |l: usize| self.layers.get(l);
        match site {
            LinearSite::PatchEmbed => Some(self.patch),
            LinearSite::Query(l) => layer(l).map(|x| x.query),
            LinearSite::Key(l) => layer(l).map(|x| x.key),
            LinearSite::Value(l) => layer(l).map(|x| x.value),
            LinearSite::AttnOut(l) => layer(l).map(|x| x.attn_out),
            LinearSite::Fc1(l) => layer(l).map(|x| x.fc1),
            LinearSite::Fc2(l) => layer(l).map(|x| x.fc2),
            LinearSite::Classifier => Some(self.classifier),
        }
    }

    /// `(weight, bias)` of the LayerNorm at `site`.
    pub fn norm(&self, site: NormSite) -> Option<(u32, u32)> {
        match site {
            NormSite::Before(l) => self.layers.get(l).map(|x| x.ln_before),
            NormSite::After(l) => self.layers.get(l).map(|x| x.ln_after),
            NormSite::Final => Some(self.final_ln),
        }
    }

    /// Where tensor `id` lives: `Some(block)` for encoder blocks, `None` for the final
    /// LayerNorm and the classifier; `Err` for the embeddings (shared by all query rows of an
    /// image) and ids out of range.
    pub fn block_of(&self, id: u32) -> Result<Option<usize>, &'static str> {
        match self.get(id).map(|e| e.group) {
            Some(ParamGroup::Block(l)) => Ok(Some(l)),
            Some(ParamGroup::FinalNorm | ParamGroup::Head) => Ok(None),
            Some(ParamGroup::Embeddings) => Err("embeddings"),
            None => Err("out of range"),
        }
    }

    /// Whether tensor `id` feeds blocks below `block` (the embeddings, or a block `< block`):
    /// changing it changes every activation entering `block`. Out-of-range ids count as such.
    pub fn is_below(&self, id: u32, block: usize) -> bool {
        match self.block_of(id) {
            Ok(Some(b)) => b < block,
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// The flat layout of the tensors `tensors` (a tuned subset), in that order.
    pub fn layout(&self, tensors: &[u32]) -> Result<FlatLayout, String> {
        let mut offsets = Vec::with_capacity(tensors.len());
        let mut total = 0;
        for &t in tensors {
            let e = self
                .get(t)
                .ok_or_else(|| format!("tensor id {t} out of range (the model has {} tensors)", self.count))?;
            offsets.push(total);
            total += e.numel;
        }
        Ok(FlatLayout {
            tensors: tensors.to_vec(),
            offsets,
            total,
        })
    }

    /// The 24-bit id of a linear layer in the noise counter ([`crate::noise::Stream::lr`]): patch
    /// embedding 0, block `l`'s query, key, value, attention output, fc1, fc2 are
    /// `1 + 6 l + 0..6`, the classifier `0xFF_FFFF` (independent of the depth).
    pub fn site_id(site: LinearSite) -> u32 {
        let block = |l: usize, j: u32| 1 + 6 * l as u32 + j;
        match site {
            LinearSite::PatchEmbed => 0,
            LinearSite::Query(l) => block(l, 0),
            LinearSite::Key(l) => block(l, 1),
            LinearSite::Value(l) => block(l, 2),
            LinearSite::AttnOut(l) => block(l, 3),
            LinearSite::Fc1(l) => block(l, 4),
            LinearSite::Fc2(l) => block(l, 5),
            LinearSite::Classifier => 0xFF_FFFF,
        }
    }
}

/// Offsets of a subset of tensors (the tuned ones) in one flat vector: the gradient, the
/// optimiser state and `read_params` / `write_params` all use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatLayout {
    pub tensors: Vec<u32>,
    pub offsets: Vec<usize>,
    pub total: usize,
}

impl FlatLayout {
    /// The offset of tensor `tensor`, if it is in the layout.
    pub fn offset(&self, tensor: u32) -> Option<usize> {
        self.tensors.iter().position(|&t| t == tensor).map(|i| self.offsets[i])
    }

    /// The flat range of the `i`-th tensor of the layout.
    pub fn range_at(&self, i: usize) -> std::ops::Range<usize> {
        let end = self.offsets.get(i + 1).copied().unwrap_or(self.total);
        self.offsets[i]..end
    }

    /// The flat range of tensor `tensor`, if it is in the layout.
    pub fn range(&self, tensor: u32) -> Option<std::ops::Range<usize>> {
        self.tensors.iter().position(|&t| t == tensor).map(|i| self.range_at(i))
    }

    /// `(tensor, offset)` pairs in layout order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, usize)> + '_ {
        self.tensors.iter().copied().zip(self.offsets.iter().copied())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::model::Model;

    #[test]
    fn ids_follow_params_and_names() {
        let net = Model::embedded_default().unwrap().net;
        let t = ParamTable::of(&net);
        let params = net.params();
        assert_eq!(t.count as usize, params.len());
        assert_eq!(t.total, net.num_params());
        for (e, p) in t.entries.iter().zip(&params) {
            assert_eq!((&e.name, &e.shape), (&p.name, &p.shape));
        }
        let name = |id: u32| t.get(id).unwrap().name.as_str();
        assert_eq!(
            name(t.layers[2].query.weight),
            "vit.encoder.layer.2.attention.attention.query.weight"
        );
        assert_eq!(
            name(t.layers[0].fc2.bias.unwrap()),
            "vit.encoder.layer.0.output.dense.bias"
        );
        assert_eq!(name(t.final_ln.0), "vit.layernorm.weight");
        assert_eq!(name(t.classifier.weight), "classifier.weight");
        assert_eq!(t.id_of("vit.embeddings.cls_token"), Some(t.cls_token));
        assert_eq!(t.block_of(t.layers[3].ln_after.1), Ok(Some(3)));
        assert_eq!(t.block_of(t.classifier.weight), Ok(None));
        assert!(t.block_of(t.patch.weight).is_err() && t.block_of(t.count).is_err());
        assert!(t.is_below(t.layers[1].key.weight, 2) && !t.is_below(t.layers[2].key.weight, 2));
        let l = t.layout(&[t.classifier.weight, t.final_ln.1]).unwrap();
        assert_eq!(l.offsets, vec![0, params[t.classifier.weight as usize].numel()]);
        assert_eq!(l.offset(t.final_ln.1), Some(l.offsets[1]));
        assert!(t.layout(&[t.count]).is_err());
        let last = t.entries.last().unwrap();
        assert_eq!(last.offset + last.numel, t.total);
    }
}
