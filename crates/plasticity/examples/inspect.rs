//! Prints the learned eta and the spread of w and alpha of a pattern run:
//! `cargo run --release -p plasticity --example inspect -- runs/pattern-plastic-seed0`.
use plasticity::tasks::pattern::{PatternConfig, PatternModel, PatternTask};
use plasticity::tensors::to_vec;
use plasticity::train::{load_model, Experiment};
use rand::SeedableRng;

fn main() {
    let run = std::path::PathBuf::from(std::env::args().nth(1).expect("run directory"));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let config: PatternConfig = serde_json::from_value(cfg["task"].clone()).unwrap();
    let task = PatternTask::new(config).unwrap();
    let device = burn::tensor::Device::flex().autodiff();
    let model = task.init_model(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0), &device);
    let (model, episode) = load_model(&run, model).unwrap();
    if let PatternModel::Plastic(net) = model {
        let stats = |v: Vec<f32>| {
            let n = v.len() as f32;
            let mean = v.iter().sum::<f32>() / n;
            (
                mean,
                (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt(),
            )
        };
        println!("episode {episode}: eta {:?}", to_vec(net.eta.val()));
        println!(
            "w mean/std {:?}, alpha mean/std {:?}",
            stats(to_vec(net.w.val())),
            stats(to_vec(net.alpha.val()))
        );
    }
}
