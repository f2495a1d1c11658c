//! What the two completion tasks (patterns, ICML 2018 section 4.1; images, section 4.2) share:
//! the episode's schedule, their three networks, their loss and their
//! [`Experiment`](crate::train::Experiment) hooks.

use super::Model;
use crate::check::fields;
use crate::config::{NoOtherFields, PlasticityConfig};
use crate::layer::{PlasticNet, PlasticNetConfig};
use crate::tensors::from_vec;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Lstm, LstmConfig};
use burn::tensor::{Device, Tensor};
use plasticity_kernels::InputMode;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Configuration of a completion task: the task's own fields `T` (what its items are:
/// [`PatternFields`](super::pattern::PatternFields), [`ImageFields`](super::images::ImageFields))
/// and the schedule, training and network fields both tasks have. One flat JSON object: `T`'s
/// fields and the plastic ones beside the others; an unknown field is refused by name. The
/// defaults are the task's paper's ([`CompletionFields::paper`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, bound(deserialize = "T: CompletionFields + Deserialize<'de>"))]
pub struct CompletionConfig<T> {
    /// The task's own fields (beside the others in JSON).
    #[serde(flatten)]
    pub task: T,
    /// Presentation cycles (the order is shuffled each cycle).
    pub cycles: usize,
    /// Steps each item is shown.
    pub present_steps: usize,
    /// Steps of zero input after each item.
    pub gap_steps: usize,
    /// Steps the degraded test item is shown.
    pub test_steps: usize,
    /// Episodes per update (the paper: 1).
    pub batch: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Adam epsilon.
    pub adam_epsilon: f64,
    /// Model.
    pub model: Model,
    /// The plastic network's rule, `alpha`, `eta`, initialisation (also the RNN's `w`), clip and
    /// backward (fields beside these in JSON).
    #[serde(flatten)]
    pub plasticity: PlasticityConfig,
    /// Cells of the LSTM baseline.
    pub lstm_cells: usize,
    /// Refuses unknown fields.
    #[serde(flatten)]
    pub no_other_fields: NoOtherFields,
}

/// The task-specific part of a [`CompletionConfig`]: the task's paper's configuration, and how
/// its fields size and feed the networks.
pub trait CompletionFields: Sized {
    /// How the recurrent network takes the episode's values.
    const INPUT: InputMode;
    /// The paper's configuration of the task (the `Default` of its [`CompletionConfig`]).
    fn paper() -> CompletionConfig<Self>;
    /// `[items, width]`: the items an episode shows and the values of an item (the networks'
    /// outputs; their inputs add the bias).
    fn shape(&self) -> [usize; 2];
    /// Neurons of the recurrent network of `model` (inputs and bias included).
    fn neurons(&self, _model: Model) -> usize {
        self.shape()[1] + 1
    }
    /// Checks the task's fields (for `model`); the message names the field.
    fn validate(&self, model: Model) -> Result<(), String>;
}

impl<T: CompletionFields> Default for CompletionConfig<T> {
    fn default() -> Self {
        T::paper()
    }
}

impl<T: CompletionFields> CompletionConfig<T> {
    /// A configuration of the task's `task` fields, `[cycles, present_steps, gap_steps,
    /// test_steps]`, Adam's learning rate and the LSTM's cells; one episode per update, the
    /// plastic network with the default plastic fields.
    pub fn new(
        task: T,
        [cycles, present_steps, gap_steps, test_steps]: [usize; 4],
        learning_rate: f64,
        lstm_cells: usize,
    ) -> Self {
        CompletionConfig {
            task,
            cycles,
            present_steps,
            gap_steps,
            test_steps,
            batch: 1,
            learning_rate,
            adam_epsilon: 1e-8,
            model: Model::Plastic,
            plasticity: PlasticityConfig::default(),
            lstm_cells,
            no_other_fields: NoOtherFields::default(),
        }
    }

    /// Steps of an episode.
    pub fn steps(&self) -> usize {
        let per_item = self.present_steps + self.gap_steps;
        self.cycles * self.task.shape()[0] * per_item + self.test_steps
    }

    /// Neurons of the recurrent network for the chosen model (inputs + bias included).
    pub fn neurons(&self) -> usize {
        self.task.neurons(self.model)
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        crate::check::model(self.model, MODELS)?;
        self.task.validate(self.model)?;
        fields!(self, count: [cycles, present_steps, test_steps, batch, lstm_cells]);
        fields!(self, positive: [learning_rate, adam_epsilon]);
        self.plastic_config().validate()
    }

    /// The episode's schedule.
    pub(crate) fn schedule(&self) -> Schedule {
        let s = self;
        Schedule([s.cycles, s.present_steps, s.gap_steps, s.test_steps])
    }

    /// The LSTM's `[inputs, cells, outputs]`: the item's values and the bias in, the values out.
    pub fn lstm_shape(&self) -> [usize; 3] {
        let width = self.task.shape()[1];
        [width + 1, self.lstm_cells, width]
    }

    /// The recurrent network: plastic unless `model` is `rnn`.
    pub fn plastic_config(&self) -> PlasticNetConfig {
        PlasticNetConfig {
            neurons: self.neurons(),
            plastic: self.model != Model::Rnn,
            input: T::INPUT,
            plasticity: self.plasticity.clone(),
            ..PlasticNetConfig::default()
        }
    }
}

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

/// What a completion task supplies beside its configuration; `completion_experiment!`
/// implements [`Experiment`](crate::train::Experiment) from it.
pub trait CompletionTask {
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

/// Implements [`Experiment`](crate::train::Experiment), named `$name` with the one metric
/// `$metric`, for a [`CompletionTask`] whose field `config` is a [`CompletionConfig`] (one impl
/// for both tasks; a blanket impl would collide with the A2C tasks' one).
macro_rules! completion_experiment {
    ($task:ty, $name:literal, $metric:literal) => {
        const _: () = {
            use burn::optim::AdamConfig;
            use burn::tensor::{Device, Tensor};
            use rand_chacha::ChaCha8Rng;
            use $crate::tasks::completion::{CompletionModel, CompletionTask};

            impl $crate::train::Experiment for $task {
                type Model = CompletionModel;

                fn name(&self) -> &'static str {
                    $name
                }

                fn metric_names(&self) -> &'static [&'static str] {
                    &[$metric]
                }

                fn init_model(&self, rng: &mut ChaCha8Rng, device: &Device) -> CompletionModel {
                    let c = &self.config;
                    CompletionModel::init(c.model, &c.plastic_config(), c.lstm_shape(), rng, device)
                }

                fn optimizer(&self) -> (AdamConfig, f64) {
                    let c = &self.config;
                    (
                        AdamConfig::new().with_epsilon(c.adam_epsilon as f32),
                        c.learning_rate,
                    )
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
    use crate::tasks::images::ImageConfig;
    use crate::tasks::pattern::PatternConfig;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use serde_json::{json, Value};

    /// The keys of `c` serialized, sorted.
    fn keys<C: serde::Serialize>(c: &C) -> Vec<String> {
        let Value::Object(m) = serde_json::to_value(c).unwrap() else {
            panic!("a configuration serializes to an object")
        };
        m.keys().cloned().collect()
    }

    /// The configurations stay one flat object with the keys they always had (a run's
    /// config.json must resume), and a partial object takes each task's own defaults.
    #[test]
    fn configurations_keep_their_flat_keys_and_their_task_defaults() {
        let plastic = "alpha alpha_init_std backward clip eta init_std learn_eta rule";
        let shared = "adam_epsilon batch cycles gap_steps learning_rate lstm_cells model \
            present_steps test_steps";
        let expect = |own: &str| {
            let mut k: Vec<String> = [own, shared, plastic]
                .iter()
                .flat_map(|s| s.split_whitespace().map(String::from))
                .collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(&PatternConfig::default()),
            expect("bits patterns degraded_fraction input_scale rnn_neurons")
        );
        assert_eq!(
            keys(&ImageConfig::default()),
            expect("side images top_half_probability")
        );
        let p: PatternConfig = serde_json::from_value(json!({"bits": 64})).unwrap();
        assert_eq!((p.task.bits, p.task.patterns), (64, 5));
        let schedule = (p.cycles, p.present_steps, p.gap_steps, p.test_steps);
        assert_eq!(
            (schedule, p.learning_rate, p.lstm_cells),
            ((2, 6, 4, 6), 3e-4, 2000)
        );
        let i: ImageConfig = serde_json::from_value(json!({"side": 8, "cycles": 1})).unwrap();
        assert_eq!((i.task.side, i.task.images), (8, 3));
        let schedule = (i.cycles, i.present_steps, i.gap_steps, i.test_steps);
        assert_eq!(
            (schedule, i.learning_rate, i.lstm_cells),
            ((1, 20, 2, 3), 1e-4, 330)
        );
        for (bad, name) in [
            (json!({"bitz": 1}), "bitz"),
            (json!({"bits": 64, "cycle": 2}), "cycle"),
        ] {
            let err = serde_json::from_value::<PatternConfig>(bad).unwrap_err();
            assert!(
                err.to_string().contains(&format!("unknown field `{name}`")),
                "{err}"
            );
        }
        let err = serde_json::from_value::<ImageConfig>(json!({"bits": 64})).unwrap_err();
        assert!(err.to_string().contains("unknown field `bits`"), "{err}");
    }

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
