//! What the two completion tasks (patterns, ICML 2018 section 4.1; images, section 4.2) share:
//! their three networks and their loss.

use super::Model;
use crate::layer::{PlasticNet, PlasticNetConfig};
use crate::tensors::from_vec;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Lstm, LstmConfig};
use burn::tensor::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The networks of the completion tasks: plastic, non-plastic, LSTM.
pub const MODELS: &[Model] = &[Model::Plastic, Model::Rnn, Model::Lstm];

/// LSTM with a linear read-out (the completion tasks' LSTM baseline).
#[derive(Module, Debug)]
pub struct LstmNet {
    /// The LSTM (input: the episode's values and a constant 1).
    pub lstm: Lstm,
    /// Read-out to the completed values.
    pub head: Linear,
}

/// The model of a pattern or image run.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one model per run: size does not matter
pub enum CompletionModel {
    /// Plastic network.
    Plastic(PlasticNet),
    /// Non-plastic RNN (`alpha = 0`): the plastic network with `plastic: false`, its step
    /// `y_t = tanh(y_{t-1} w + x_t)` (or clamped, images).
    Rnn(PlasticNet),
    /// LSTM.
    Lstm(LstmNet),
}

impl CompletionModel {
    /// The network `kind`: the recurrent network of `net` (which says whether it is plastic),
    /// or an LSTM of `cells` cells on `inputs` inputs reading out `outputs` values.
    pub fn init(
        kind: Model,
        net: &PlasticNetConfig,
        [inputs, cells, outputs]: [usize; 3],
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Self {
        match kind {
            // (The modulated networks learn no completion task: `validate` refuses them.)
            Model::Plastic | Model::Modplast | Model::Modul => {
                CompletionModel::Plastic(net.init(rng, device))
            }
            Model::Rnn => CompletionModel::Rnn(net.init(rng, device)),
            Model::Lstm => {
                // burn initialises these lazily from its own seeded RNG: seed it from ours.
                device.seed(rng.gen());
                CompletionModel::Lstm(LstmNet {
                    lstm: LstmConfig::new(inputs, cells, true).init(device),
                    head: LinearConfig::new(cells, outputs).init(device),
                })
            }
        }
    }
}

/// The completion loss: `sum (out - target)^2` over the values, averaged over the batch.
/// `out: [B, P]`, `target`: `B P` values.
pub fn squared_error(out: Tensor<2>, target: &[f32], device: &Device) -> Tensor<1> {
    let [b, p] = out.dims();
    let target = from_vec(target.to_vec(), [b, p], device);
    (out - target).powf_scalar(2.0).sum().div_scalar(b as f32)
}
