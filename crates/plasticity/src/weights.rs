//! The trained parameters of a model as a safetensors file, for other tools (PyTorch, numpy).
//!
//! Every float parameter of a burn [`Module`] becomes one named little-endian `F32` tensor; the
//! name is the parameter's path in the module, its field names joined by dots (`net.w`,
//! `net.alpha`, `input.weight`; the index of a `Vec` entry, the variant of an enum). The file is
//! an export: a resume reads `checkpoint.bin`, never this file.

use crate::tensors::to_vec;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use std::collections::HashMap;

/// Name of the safetensors file a run writes beside `checkpoint.bin`.
pub const WEIGHTS_FILE: &str = "weights.safetensors";

/// One float parameter of a module: its path, shape and values (row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedParam {
    /// Path of the parameter in the module, field names joined by dots (`net.w`).
    pub name: String,
    /// Shape of the parameter.
    pub shape: Vec<usize>,
    /// Values in row-major order.
    pub values: Vec<f32>,
}

/// Every float parameter of `module`, in the module's visiting order, named by its path.
pub fn named_params<M: Module>(module: &M) -> Vec<NamedParam> {
    struct Collect {
        path: Vec<String>,
        params: Vec<NamedParam>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            let name = if self.path.is_empty() {
                "param".to_string()
            } else {
                self.path.join(".")
            };
            self.params.push(NamedParam {
                name,
                shape: t.shape().dims::<D>().to_vec(),
                values: to_vec(t),
            });
        }
    }
    let mut collect = Collect {
        path: Vec::new(),
        params: Vec::new(),
    };
    module.visit(&mut collect);
    collect.params
}

/// The bytes of a safetensors file holding every float parameter of `module` (see
/// [`named_params`]) as `F32`, with `metadata` as its `__metadata__` string map. An error when
/// two parameters would share a name.
pub fn to_safetensors<M: Module>(
    module: &M,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, String> {
    let params = named_params(module);
    let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(params.len());
    for p in params {
        if bytes.iter().any(|(n, _, _)| *n == p.name) {
            return Err(format!("two parameters are named '{}'", p.name));
        }
        let data = p.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.push((p.name, p.shape, data));
    }
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|v| (name.as_str(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("safetensors: {e}"))?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| format!("safetensors: {e}"))
}
