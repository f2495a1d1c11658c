//! Language modelling (ICLR 2019 section 4.3): the Penn Treebank reader on generated files (and
//! on the real corpus when `../shared/data/ptb` exists), matched parameter counts, the batched
//! stream, and a learning smoke test through the shared training loop.

use burn::tensor::Device;
use plasticity::data::ptb::{self, EOS};
use plasticity::tasks::lm::{Batched, LmConfig, LmPreset, LmTask, Model};
use plasticity::train::RunOptions;
use plasticity::AlphaShape;
use std::path::Path;
use std::sync::Arc;

mod common;
use common::{
    load_trained, metrics_without_time, options, shared_data, temp_dir, train_ok, try_train,
};

fn write_corpus(dir: &Path, train: &str, valid: &str, test: &str) {
    for (f, text) in ptb::FILES.iter().zip([train, valid, test]) {
        std::fs::write(dir.join(f), text).unwrap();
    }
}

#[test]
fn the_reader_builds_the_vocabulary_from_train_with_eos_per_line() {
    let dir = temp_dir("reader");
    write_corpus(
        &dir,
        " the cat sat \n the dog <unk> \n\n",
        "the dog sat\n",
        " cat\n",
    );
    let c = ptb::load(&dir).unwrap();
    // <eos> first, then words in order of first appearance.
    let words: Vec<&str> = (0..c.vocab.len() as u32)
        .map(|i| c.vocab.word(i).unwrap())
        .collect();
    assert_eq!(words, [EOS, "the", "cat", "sat", "dog", "<unk>"]);
    // Three lines (the empty one is a lone <eos>).
    assert_eq!(c.train, [1, 2, 3, 0, 1, 4, 5, 0, 0]);
    assert_eq!(c.valid, [1, 4, 3, 0]);
    assert_eq!(c.test, [2, 0]);
}

#[test]
fn the_reader_names_the_file_and_line_of_an_unknown_word_and_missing_files() {
    let dir = temp_dir("unknown");
    write_corpus(&dir, "a b\n", "a\nb c\n", "a\n");
    let e = ptb::load(&dir).unwrap_err();
    assert!(e.path.ends_with("ptb.valid.txt"), "{e}");
    assert!(e.to_string().contains("line 2: word 'c'"), "{e}");
    std::fs::remove_file(dir.join("ptb.test.txt")).unwrap();
    std::fs::write(dir.join("ptb.valid.txt"), "a\n").unwrap();
    let e = ptb::load(&dir).unwrap_err();
    assert!(e.path.ends_with("ptb.test.txt"), "{e}");
    std::fs::write(dir.join("ptb.test.txt"), [0xff, 0xfe, b'\n']).unwrap();
    let e = ptb::load(&dir).unwrap_err();
    assert!(e.to_string().contains("not UTF-8"), "{e}");
}

#[test]
fn the_real_penn_treebank_has_the_usual_sizes() {
    let Some(dir) = shared_data("ptb", "ptb.train.txt") else {
        return;
    };
    let c = ptb::load(&dir).unwrap();
    assert_eq!(c.vocab.len(), 10_000);
    assert_eq!(c.train.len(), 929_589);
    assert_eq!(c.valid.len(), 73_760);
    assert_eq!(c.test.len(), 82_430);
}

#[test]
fn the_three_models_have_matched_parameter_counts_in_both_presets() {
    for preset in [LmPreset::Small, LmPreset::Paper] {
        let mut totals = Vec::new();
        for model in [Model::Lstm, Model::Plastic, Model::Modplast, Model::Modul] {
            let config = LmConfig::preset(preset, model);
            let (base, own, layers) = config.sizes(10_000).unwrap();
            let gap = own.total.abs_diff(base.total) as f64 / base.total as f64;
            assert!(gap <= 0.01, "{preset:?} {model:?}: {own:?} vs {base:?}");
            assert_eq!(layers.len(), config.layers);
            assert_eq!(layers.last().unwrap().hidden, config.embedding);
            totals.push(own.total);
        }
        eprintln!("{preset:?}: {totals:?}");
        if preset == LmPreset::Paper {
            // The paper's models have about 24M parameters.
            assert!((23_500_000..24_500_000).contains(&totals[0]), "{totals:?}");
        }
    }
    // Per-connection alpha adds H^2 per layer: the plastic model's first layer shrinks.
    let mut config = LmConfig::preset(LmPreset::Small, Model::Plastic);
    config.plasticity.alpha = AlphaShape::PerConnection;
    let (base, own, _) = config.sizes(10_000).unwrap();
    assert!(own.layer_units[0] < 200, "{own:?}");
    assert!(own.total.abs_diff(base.total) as f64 / (base.total as f64) < 0.01);
    // One layer cannot shrink: a per-connection plastic layer is refused, naming the field.
    let config = LmConfig {
        layers: 1,
        ..config
    };
    assert!(config.sizes(10_000).unwrap_err().starts_with("hidden:"));
}

#[test]
fn the_stream_is_cut_into_parallel_rows_and_segments_with_shifted_targets() {
    let stream: Vec<u32> = (0..23).collect();
    let b = Batched::new(&stream, 2); // rows 0..11 and 11..22; 22 is dropped
    assert_eq!(b.len, 11);
    assert_eq!(b.segments(4), 3); // 10 predictions: 4 + 4 + 2
    let (i, t, len) = b.segment(2, 4);
    assert_eq!(len, 2);
    assert_eq!(i, [8, 9, 19, 20]);
    assert_eq!(t, [9, 10, 20, 21]);
}

/// A corpus whose every line is the same 8 words: after training, each next word is certain.
fn repeating_corpus(dir: &Path) -> Arc<ptb::Corpus> {
    let line = "a b c d e f g h\n";
    write_corpus(dir, &line.repeat(60), &line.repeat(12), &line.repeat(12));
    Arc::new(ptb::load(dir).unwrap())
}

#[test]
fn every_model_learns_a_repeating_corpus_to_low_perplexity() {
    let dir = temp_dir("smoke");
    let corpus = repeating_corpus(&dir);
    let device = Device::flex().autodiff();
    for model in [Model::Lstm, Model::Plastic, Model::Modplast] {
        let config = LmConfig {
            layers: 2,
            embedding: 16,
            hidden: 16,
            match_params: false,
            bptt: 8,
            batch: 4,
            eval_batch: 2,
            epochs: 12,
            learning_rate: 1e-2,
            lr_decay: 1.0,
            max_grad_norm: 1.0,
            dropout_embedding: 0.0,
            dropout_hidden: 0.1,
            dropout_output: 0.1,
            ..LmConfig::preset(LmPreset::Small, model)
        };
        let task = LmTask::new(config, corpus.clone()).unwrap();
        let out = dir.join(format!("{model:?}"));
        let opts = RunOptions {
            checkpoint_every: 1000,
            ..options(out.clone(), task.total_updates(), 3)
        };
        let summary = train_ok(&task, &opts, &device);
        assert_eq!(summary.updates, task.total_updates());
        // metrics.csv: perplexities at the end of each epoch only.
        let text = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "update,loss,perplexity,valid_perplexity,train_perplexity,seconds"
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        let spe = task.segments_per_epoch() as usize;
        let measured: Vec<f64> = rows
            .iter()
            .enumerate()
            .filter_map(|(k, r)| {
                assert_eq!(!r[2].is_empty(), (k + 1) % spe == 0, "row {k}: {r:?}");
                (!r[2].is_empty()).then(|| r[3].parse().unwrap())
            })
            .collect();
        assert_eq!(measured.len(), 12);
        eprintln!("{model:?}: validation perplexity by epoch {measured:?}");
        let (first, last) = (measured[0], *measured.last().unwrap());
        // Uniform guessing over 9 words is perplexity 9.
        assert!(last < 1.5, "{model:?}: validation perplexity {measured:?}");
        assert!(last < first, "{model:?}: {measured:?}");
        // eval: the checkpoint's model on the test set.
        let (net, updates) = load_trained(&task, &out, &device);
        assert_eq!(updates, task.total_updates());
        let test = task.perplexity(&net, &task.corpus.test).unwrap();
        assert!(test < 1.5, "{model:?}: test perplexity {test}");
    }
}

#[test]
fn runs_are_reproducible_and_a_resume_equals_an_uninterrupted_run() {
    let dir = temp_dir("repro");
    let corpus = repeating_corpus(&dir);
    let device = Device::flex().autodiff();
    let config = LmConfig {
        embedding: 8,
        hidden: 8,
        match_params: false,
        bptt: 8,
        batch: 4,
        eval_batch: 2,
        epochs: 3,
        ..LmConfig::preset(LmPreset::Small, Model::Modul)
    };
    let task = LmTask::new(config.clone(), corpus.clone()).unwrap();
    let spe = task.segments_per_epoch();
    assert!(spe >= 2, "the test needs segments to resume between");
    // Runs of `updates` updates from `seed` into `dir/name`, a checkpoint each epoch.
    let opts = |name: &str, updates: u64, seed: u64, resume: bool| RunOptions {
        resume,
        checkpoint_every: spe,
        ..options(dir.join(name), updates, seed)
    };
    let run_task = |task: &LmTask, name: &str, updates: u64, resume: bool| {
        let opts = opts(name, updates, 9, resume);
        try_train(task, &opts, &device).map(|_| opts.out)
    };
    let run =
        |name: &str, updates: u64, resume: bool| run_task(&task, name, updates, resume).unwrap();
    let a = metrics_without_time(&run("a", 3 * spe, false));
    let b = metrics_without_time(&run("b", 3 * spe, false));
    assert_eq!(a, b, "same seed, same metrics");
    // Stop after the first epoch, then resume: the carried state restarts at each epoch
    // anyway, so the resumed run is the uninterrupted one.
    run("c", spe, false);
    let c = metrics_without_time(&run("c", 3 * spe, true));
    assert_eq!(a, c, "resumed at an epoch boundary");
    // Stop in the middle of the second epoch and resume with a fresh task (as a new process
    // would): the checkpoint holds the carried LSTM states and traces, so the resumed run is
    // the uninterrupted one.
    let mid = spe + spe / 2;
    run("e", mid, false);
    let fresh = LmTask::new(config.clone(), corpus.clone()).unwrap();
    let e = metrics_without_time(&run_task(&fresh, "e", 3 * spe, true).unwrap());
    assert_eq!(a, e, "resumed mid-epoch");
    // A carried state of the wrong shape (another batch size) is a clear error.
    let other_batch = LmTask::new(
        LmConfig {
            batch: 2,
            ..config.clone()
        },
        corpus.clone(),
    )
    .unwrap();
    run("f", mid, false);
    let err = run_task(&other_batch, "f", 3 * spe, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checkpoint.bin") && err.contains("carried state") && err.contains("shape"),
        "{err}"
    );
    // Dropout and data order come from the seed: another seed gives other training losses.
    let other = opts("d", spe, 10, false);
    train_ok(&task, &other, &device);
    let other = metrics_without_time(&other.out);
    assert_ne!(a[1..=spe as usize], other[1..]);
}
