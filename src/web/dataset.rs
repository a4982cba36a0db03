//! Classes and examples: added by name, from pixels or encoded files, or the embedded
//! Animal-Shape split; kept as preprocessed tensors ([`Examples`]).

use js_sys::Array;
use wasm_bindgen::prelude::*;

use super::reports::DataSummary;
use super::{image_object, images, js_err, to_js, Learner, State};
use crate::learn::data::{AnimalShapeFiles, Examples};
use crate::model::Image;

impl State {
    pub(super) fn check_class(&self, class: usize) -> Result<(), JsError> {
        if class >= self.classes.len() {
            return Err(JsError::new(&format!(
                "class index {class} out of range: {} classes ({}); call addClass first",
                self.classes.len(),
                self.classes.join(", ")
            )));
        }
        Ok(())
    }

    fn summary(&self) -> DataSummary {
        DataSummary {
            classes: self.classes.clone(),
            counts: self.train.counts(self.classes.len()),
            validation_counts: self.validation.counts(self.classes.len()),
        }
    }
}

#[wasm_bindgen]
impl Learner {
    /// Adds a class; returns its index.
    #[wasm_bindgen(js_name = addClass)]
    pub fn add_class(&self, name: String) -> Result<usize, JsError> {
        let mut s = self.state.borrow_mut();
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(JsError::new("a class needs a non-empty name"));
        }
        if s.classes.contains(&name) {
            return Err(JsError::new(&format!("class `{name}` already exists")));
        }
        s.classes.push(name);
        Ok(s.classes.len() - 1)
    }

    /// Removes a class and its examples; classes above it shift down by one.
    #[wasm_bindgen(js_name = removeClass)]
    pub fn remove_class(&self, class: usize) -> Result<(), JsError> {
        let mut s = self.state.borrow_mut();
        s.check_class(class)?;
        s.classes.remove(class);
        s.train.remove_class(class);
        s.validation.remove_class(class);
        Ok(())
    }

    /// Adds one example from raw pixels at any size (`ImageData`: RGBA; or gray/RGB bytes);
    /// resized and normalised exactly as `flops` does natively.
    #[wasm_bindgen(js_name = addExamplePixels)]
    pub fn add_example_pixels(&self, class: usize, width: u32, height: u32, data: Vec<u8>) -> Result<usize, JsError> {
        let img = images::raw_image(width, height, data).map_err(js_err)?;
        self.add_image(class, &img)
    }

    /// Adds one example from encoded bytes (PNG, JPEG, BMP, GIF, WebP), decoded and
    /// preprocessed as `flops` does natively.
    #[wasm_bindgen(js_name = addExampleEncoded)]
    pub fn add_example_encoded(&self, class: usize, bytes: &[u8]) -> Result<usize, JsError> {
        let img = Image::decode(bytes).map_err(js_err)?;
        self.add_image(class, &img)
    }

    fn add_image(&self, class: usize, img: &Image) -> Result<usize, JsError> {
        let mut s = self.state.borrow_mut();
        s.check_class(class)?;
        let px = s.preprocess(img)?;
        s.train.push(&px, class);
        Ok(s.train.len())
    }

    /// Replaces classes and examples with the Animal-Shape split from its five files (the
    /// worker fetches them from the page's origin, `data/animal-shape/`): up to `trainPerClass`
    /// training and `validationPerClass` validation images per class (its test split).
    #[allow(clippy::too_many_arguments)]
    #[wasm_bindgen(js_name = loadAnimalShape)]
    pub fn load_animal_shape(
        &self,
        train_images: &[u8],
        train_labels: &[u8],
        test_images: &[u8],
        test_labels: &[u8],
        classes_json: &[u8],
        train_per_class: usize,
        validation_per_class: usize,
    ) -> Result<JsValue, JsError> {
        let files = AnimalShapeFiles {
            train_images,
            train_labels,
            test_images,
            test_labels,
            classes_json,
        };
        let (train, test) = files.parse().map_err(js_err)?;
        let mut s = self.state.borrow_mut();
        let pre = &s.model.preprocessor;
        let tr = Examples::prepare(&train.take_per_class(train_per_class), pre).map_err(js_err)?;
        let va = Examples::prepare(&test.take_per_class(validation_per_class), pre).map_err(js_err)?;
        s.classes = train.classes.clone();
        s.train = tr;
        s.validation = va;
        to_js(&s.summary())
    }

    /// Classes and example counts.
    pub fn summary(&self) -> Result<JsValue, JsError> {
        to_js(&self.state.borrow().summary())
    }

    /// Up to `max` examples of `class` for display: `[{width, height, data}]` (RGBA, model size).
    pub fn thumbnails(&self, class: usize, max: usize) -> Result<Array, JsError> {
        let s = self.state.borrow();
        s.check_class(class)?;
        let out = Array::new();
        let (h, w) = s.model.config().image_size.hw();
        let ch = s.model.config().num_channels;
        for i in (0..s.train.len()).filter(|&i| s.train.labels[i] == class).take(max) {
            let rgba = images::tensor_to_rgba(&s.model.preprocessor, s.train.image(i), ch, h * w);
            out.push(&image_object(w, h, &rgba));
        }
        Ok(out)
    }
}
