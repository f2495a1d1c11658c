//! Splits an Omniglot training update into its parts (issue 5): the 4 convolutions (forward +
//! backward), as burn's `Conv2d` layers and as the fused `conv_stack` operation, against the
//! whole update (episode generation, convolutions, plastic layer, loss, backward, Adam; the
//! network uses `conv_stack` on the CPU), on one thread:
//! `cargo run --release -p plasticity --example omniglot_profile -- ../shared/data/omniglot [updates]`.
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use plasticity::data::omniglot::Omniglot;
use plasticity::ops::conv_stack;
use plasticity::tasks::omniglot::{generate, EpisodeShape, OmniglotConfig, OmniglotTask};
use plasticity::tensors::from_vec;
use plasticity::train::Experiment;
use rand::SeedableRng;
use std::sync::Arc;
use std::time::Instant;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("one thread");
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("omniglot data directory"));
    let updates: usize = args.next().map_or(20, |s| s.parse().expect("updates"));
    let config = OmniglotConfig {
        meta_batch: 8,
        ..OmniglotConfig::default()
    };
    let data = Arc::new(Omniglot::load(&dir, &config.sets(), config.side).expect("data"));
    let task = OmniglotTask::new(config.clone(), data.clone()).expect("task");
    let device = burn::tensor::Device::flex().autodiff();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut model = task.init_model(&mut rng, &device);
    let (adam, lr) = task.optimizer();
    let mut optim = adam.init();
    let side = config.side;
    let [mut full, mut gen, mut conv_f, mut conv_b, mut fused_f, mut fused_b] =
        [(); 6].map(|_| Vec::new());
    for k in 0..updates + 2 {
        // Whole update, as `bench omniglot` times it.
        let t0 = Instant::now();
        let (loss, _) = task
            .train_batch(&model, &mut rng, &device)
            .expect("episode");
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        let t1 = Instant::now();
        // Episode generation alone.
        let shape = EpisodeShape {
            ways: config.ways,
            shots: config.shots,
            rotations: config.rotations,
            max_shift: config.max_shift,
            label_clamp: config.label_clamp as f32,
            queries: config.queries,
        };
        let ep = generate(
            &data,
            &task.split.train,
            &shape,
            config.meta_batch,
            &mut rng,
        );
        let t2 = Instant::now();
        // The convolution stack alone on the same 48 images: forward, then backward of a sum.
        let m = ep.dims[0] * ep.dims[1];
        let images: Tensor<4> = from_vec(ep.images, [m, 1, side, side], &device);
        let mut x = images.clone();
        for conv in &model.convs {
            x = conv.forward(x).tanh();
        }
        let loss = x.sum();
        let _ = loss.clone().into_data();
        let t3 = Instant::now();
        let _grads = loss.backward();
        let t4 = Instant::now();
        // The same as one fused operation.
        let layers: Vec<(Tensor<4>, Tensor<1>)> = model
            .convs
            .iter()
            .map(|c| (c.weight.val(), c.bias.as_ref().expect("bias").val()))
            .collect();
        let loss = conv_stack(images, &layers).expect("shapes").sum();
        let _ = loss.clone().into_data();
        let t5 = Instant::now();
        let _grads = loss.backward();
        let t6 = Instant::now();
        if k >= 2 {
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            full.push(ms(t0, t1));
            gen.push(ms(t1, t2));
            conv_f.push(ms(t2, t3));
            conv_b.push(ms(t3, t4));
            fused_f.push(ms(t4, t5));
            fused_b.push(ms(t5, t6));
        }
    }
    let (full, gen, cf, cb) = (
        median(&mut full),
        median(&mut gen),
        median(&mut conv_f),
        median(&mut conv_b),
    );
    let (ff, fb) = (median(&mut fused_f), median(&mut fused_b));
    println!("medians of {updates} updates, meta-batch 8 (48 images), 1 thread:");
    println!("whole update             {full:7.2} ms");
    println!("episode generation       {gen:7.2} ms");
    println!("burn Conv2d forward      {cf:7.2} ms");
    println!("burn Conv2d backward     {cb:7.2} ms");
    println!("conv_stack forward       {ff:7.2} ms");
    println!("conv_stack backward      {fb:7.2} ms");
    println!(
        "conv_stack / update      {:7.1} %  (rest {:.2} ms)",
        100.0 * (ff + fb) / full,
        full - ff - fb
    );
}
