//! The model as a HF folder (`config.json`, `model.safetensors`, `preprocessor_config.json`),
//! during a run with the trainer's current weights.

use js_sys::{Object, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{js_err, set, trained_network, Learner};

#[wasm_bindgen]
impl Learner {
    /// Resolves to `{config, weights, preprocessor}` (the three files' bytes).
    #[wasm_bindgen(js_name = exportModel)]
    pub fn export_model(&self) -> js_sys::Promise {
        let state = self.state.clone();
        let device = self.device.clone();
        future_to_promise(async move {
            let net = match trained_network(&state, &device).await? {
                Some(net) => net,
                None => state.borrow().model.net.clone(),
            };
            let mut model = state.borrow().model.clone();
            model.net = net;
            let e = model.export().map_err(js_err)?;
            let o = Object::new();
            set(&o, "config", Uint8Array::from(e.config.as_bytes()));
            set(&o, "weights", Uint8Array::from(e.weights.as_slice()));
            set(&o, "preprocessor", Uint8Array::from(e.preprocessor.as_bytes()));
            Ok(o.into())
        })
    }
}
