//! What the two completion tasks (patterns, ICML 2018 section 4.1; images, section 4.2) share:
//! the episode's schedule, their three networks, their loss and their
//! [`Experiment`](crate::train::Experiment) hooks.

use super::Model;
use crate::config::PlasticityConfig;
use crate::layer::{PlasticNet, PlasticNetConfig};
use crate::tensors::from_vec;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Lstm, LstmConfig};
use burn::tensor::{Device, Tensor};
use plasticity_kernels::InputMode;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How a completion episode shows its items (patterns or images): `cycles` times in an order
/// shuffled each cycle, each for `present_steps` steps followed by `gap_steps` steps of zero
/// input, then the degraded test item for `test_steps` steps: `[cycles, present_steps,
/// gap_steps, test_steps]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule(pub [usize; 4]);

impl Schedule {
    /// `batch` episodes of `t_len` steps of `width` values, `([B, T, width], [B, width])`: the
    /// inputs and the test items. Each episode shows the items `draw` returns, then the test
    /// item (drawn among them) as `degrade` leaves it.
    pub fn episodes<R: Rng, I: AsRef<[f32]>>(
        &self,
        [batch, t_len, width]: [usize; 3],
        rng: &mut R,
        mut draw: impl FnMut(&mut R) -> Vec<I>,
        mut degrade: impl FnMut(&[f32], &mut R) -> Vec<f32>,
    ) -> (Vec<f32>, Vec<f32>) {
        let [cycles, present_steps, gap_steps, test_steps] = self.0;
        let mut inputs = vec![0.0f32; batch * t_len * width];
        let mut targets = Vec::with_capacity(batch * width);
        for ep in inputs.chunks_mut(t_len * width) {
            let items = draw(rng);
            let mut t = 0;
            for _ in 0..cycles {
                let mut order: Vec<usize> = (0..items.len()).collect();
                order.shuffle(rng);
                for k in order {
                    for _ in 0..present_steps {
                        ep[t * width..(t + 1) * width].copy_from_slice(items[k].as_ref());
                        t += 1;
                    }
                    t += gap_steps;
                }
            }
            let target = items[rng.gen_range(0..items.len())].as_ref();
            let degraded = degrade(target, rng);
            for row in ep[t * width..].chunks_mut(width).take(test_steps) {
                row.copy_from_slice(&degraded);
            }
            targets.extend_from_slice(target);
        }
        (inputs, targets)
    }
}

/// The recurrent network of a completion task: `neurons` neurons, plastic unless `model` is
/// `rnn`.
pub(crate) fn recurrent_net(
    model: Model,
    neurons: usize,
    plasticity: &PlasticityConfig,
    input: InputMode,
) -> PlasticNetConfig {
    PlasticNetConfig {
        neurons,
        plastic: model != Model::Rnn,
        input,
        plasticity: plasticity.clone(),
        ..PlasticNetConfig::default()
    }
}

/// Adds the memory of a completion network to `m`: the LSTM's (`[inputs, cells]`) or the
/// recurrent network's (`(what sizes it, neurons)`), for `[batch, steps]`.
pub(crate) fn add_network_memory(
    m: &mut super::MemoryEstimate,
    model: Model,
    (sized_by, neurons): (String, usize),
    [inputs, cells]: [usize; 2],
    [batch, steps]: [usize; 2],
) {
    match model {
        Model::Lstm => m.add_lstm(format!("lstm_cells = {cells}"), inputs, cells, batch, steps),
        _ => m.add_recurrent(sized_by, neurons, batch, steps),
    }
}

/// The network's input `[B, T, n]` from the episodes' values `inputs: [B, T, width]`: the values
/// times `scale`, then the bias neuron's constant `scale`, then zeros (hidden neurons).
pub(crate) fn with_bias(
    inputs: &[f32],
    [b, t, width]: [usize; 3],
    n: usize,
    scale: f32,
    device: &Device,
) -> Tensor<3> {
    let mut x = vec![0.0f32; b * t * n];
    for (row, src) in x.chunks_mut(n).zip(inputs.chunks(width)) {
        for (d, s) in row.iter_mut().zip(src) {
            *d = s * scale;
        }
        row[width] = scale;
    }
    from_vec(x, [b, t, n], device)
}

/// The last step of `ys: [B, T, H]`, its first `width` values: `[B, width]`.
pub(crate) fn last_step(ys: Tensor<3>, width: usize) -> Tensor<2> {
    let [b, t, _] = ys.dims();
    ys.slice([0..b, t - 1..t, 0..width]).reshape([b, width])
}

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

impl LstmNet {
    /// The read-out of the last step, `tanh(head(h_T))`: `[B, outputs]` from `x: [B, T, inputs]`.
    pub fn last_output(&self, x: Tensor<3>) -> Tensor<2> {
        let (hs, _) = self.lstm.forward(x, None);
        let cells = hs.dims()[2];
        self.head.forward(last_step(hs, cells)).tanh()
    }
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

/// What a completion task supplies; `completion_experiment!` implements
/// [`Experiment`](crate::train::Experiment) from it.
pub trait CompletionTask {
    /// Name used in outputs.
    const NAME: &'static str;
    /// The metric's name, as one column.
    const METRICS: &'static [&'static str];
    /// The model kind, the plastic network's configuration and the LSTM's `[inputs, cells,
    /// outputs]`.
    fn networks(&self) -> (Model, PlasticNetConfig, [usize; 3]);
    /// Adam's learning rate and epsilon.
    fn adam(&self) -> (f64, f64);
    /// One batch of episodes (training data, or held-out data with `training: false`): the
    /// loss `[1]` and the metric.
    fn loss_and_metric(
        &self,
        model: &CompletionModel,
        training: bool,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<(Tensor<1>, f64), String>;
}

/// Implements [`Experiment`](crate::train::Experiment) for a [`CompletionTask`] (one impl for both tasks; a blanket impl
/// would collide with the A2C tasks' one).
macro_rules! completion_experiment {
    ($task:ty) => {
        const _: () = {
            use burn::optim::AdamConfig;
            use burn::tensor::{Device, Tensor};
            use rand_chacha::ChaCha8Rng;
            use $crate::tasks::completion::{CompletionModel, CompletionTask};

            impl $crate::train::Experiment for $task {
                type Model = CompletionModel;

                fn name(&self) -> &'static str {
                    <$task as CompletionTask>::NAME
                }

                fn metric_names(&self) -> &'static [&'static str] {
                    <$task as CompletionTask>::METRICS
                }

                fn init_model(&self, rng: &mut ChaCha8Rng, device: &Device) -> CompletionModel {
                    let (kind, net, lstm) = self.networks();
                    CompletionModel::init(kind, &net, lstm, rng, device)
                }

                fn optimizer(&self) -> (AdamConfig, f64) {
                    let (lr, epsilon) = self.adam();
                    (AdamConfig::new().with_epsilon(epsilon as f32), lr)
                }

                fn train_batch(
                    &self,
                    model: &CompletionModel,
                    rng: &mut ChaCha8Rng,
                    device: &Device,
                ) -> Result<(Tensor<1>, Vec<f64>), String> {
                    let (loss, metric) = self.loss_and_metric(model, true, rng, device)?;
                    Ok((loss.reshape([1]), vec![metric]))
                }

                fn eval_batch(
                    &self,
                    model: &CompletionModel,
                    rng: &mut ChaCha8Rng,
                    device: &Device,
                ) -> Result<Vec<f64>, String> {
                    Ok(vec![self.loss_and_metric(model, false, rng, device)?.1])
                }
            }
        };
    };
}
pub(crate) use completion_experiment;

#[cfg(test)]
mod tests {
    use super::Schedule;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Two items of two values, one cycle of 2 + 1 steps each, 2 test steps: every step by hand.
    #[test]
    fn episodes_follow_the_schedule() {
        let items = [[1.0f32, 2.0], [3.0, 4.0]];
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut drawn_test = Vec::new();
        let (inputs, targets) = Schedule([1, 2, 1, 2]).episodes(
            [2, 8, 2],
            &mut rng,
            |_| items.to_vec(),
            |target, _| {
                drawn_test.push(target.to_vec());
                vec![target[0], 0.0]
            },
        );
        assert_eq!(inputs.len(), 2 * 8 * 2);
        assert_eq!(targets, drawn_test.concat());
        for (ep, target) in inputs.chunks(16).zip(targets.chunks(2)) {
            let step = |t: usize| &ep[2 * t..2 * t + 2];
            let (first, second) = (step(0), step(3));
            assert_ne!(first, second, "each item once per cycle");
            for t in [0, 1] {
                assert_eq!(step(t), first);
                assert_eq!(step(t + 3), second);
            }
            assert!(items.iter().any(|i| i == first) && items.iter().any(|i| i == second));
            assert_eq!(step(2), [0.0, 0.0], "gap");
            assert_eq!(step(5), [0.0, 0.0], "gap");
            for t in [6, 7] {
                assert_eq!(step(t), [target[0], 0.0], "degraded test item");
            }
        }
    }
}
