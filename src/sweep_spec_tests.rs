//! Tests of the sweep spec: the grid, the names, the command lines, the errors.

use super::*;

const MAZE: &str = r#"
    experiment = "maze"
    [options]
    preset = "paper"
    fan-out = true
    [axes]
    seed = [0, 1]
    model = ["modul", "rnn"]
    lr = [1e-4, 3e-4]
    [budget]
    updates = 50
    minutes = 1.5
"#;

#[test]
fn the_grid_goes_seed_by_seed_and_names_runs_from_their_values() {
    let spec = Spec::parse(MAZE, true).unwrap();
    let points = spec.points();
    assert_eq!(points.len(), 8);
    let names: Vec<&str> = points.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "modul-lr0.0001-seed0",
            "modul-lr0.0003-seed0",
            "rnn-lr0.0001-seed0",
            "rnn-lr0.0003-seed0",
            "modul-lr0.0001-seed1",
            "modul-lr0.0003-seed1",
            "rnn-lr0.0001-seed1",
            "rnn-lr0.0003-seed1",
        ]
    );
    assert_eq!(points[6].group, "rnn-lr0.0001");
    assert_eq!(
        spec.run_args(&points[6]),
        [
            "maze",
            "--fan-out",
            "--preset",
            "paper",
            "--model",
            "rnn",
            "--lr",
            "0.0001",
            "--seed",
            "1",
            "--updates",
            "50",
            "--time-limit",
            "1.5"
        ]
    );
    assert_eq!(
        spec.resume_args(&points[6]),
        ["maze", "--updates", "50", "--time-limit", "1.5"]
    );
    // The JSON form of the spec reads back as the same spec.
    assert_eq!(Spec::from_value(&spec.to_value()).unwrap(), spec);
}

#[test]
fn a_variant_sets_options_together() {
    let text = r#"{"experiment": "maze", "axes": {"seed": [3],
        "variant": [{"model": "rnn"}, {"model": "rnn", "neurons": 139, "name": "rnn139"},
                    {"model": "plastic", "fan-out": false}]}}"#;
    let spec = Spec::parse(text, false).unwrap();
    let points = spec.points();
    let names: Vec<&str> = points.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["rnn-seed3", "rnn139-seed3", "plastic-no-fan-out-seed3"]
    );
    assert_eq!(
        spec.run_args(&points[1]),
        ["maze", "--model", "rnn", "--neurons", "139", "--seed", "3"]
    );
    assert_eq!(
        spec.run_args(&points[2]),
        ["maze", "--model", "plastic", "--seed", "3"]
    );
}

#[test]
fn errors_name_the_field() {
    let field = |text: &str| Spec::parse(text, true).unwrap_err().field;
    assert_eq!(
        field("experiment = \"pattern\"\n[axes]\nseed = []"),
        "axes.seed"
    );
    assert_eq!(field("experiment = \"pattern\"\n[axes]"), "axes");
    assert_eq!(field("[axes]\nseed = [1]"), "experiment");
    assert_eq!(
        field("experiment = \"x\"\nsweep = 1\n[axes]\nseed = [1]"),
        "sweep"
    );
    assert_eq!(
        field("experiment = \"x\"\n[options]\nout = \"a\"\n[axes]\nseed = [1]"),
        "options.out"
    );
    assert_eq!(
        field("experiment = \"x\"\n[options]\nupdates = 5\n[axes]\nseed = [1]"),
        "options.updates"
    );
    assert_eq!(
        field("experiment = \"x\"\n[axes]\nseed = [1, 1]"),
        "axes.seed"
    );
    assert_eq!(
        field("experiment = \"x\"\n[axes]\nseed = [[1]]"),
        "axes.seed[0]"
    );
    assert_eq!(
        field("experiment = \"x\"\n[axes]\nseed = [1]\n[budget]\nminutes = -1"),
        "budget.minutes"
    );
    assert_eq!(
        field("experiment = \"x\"\n[axes]\nseed = [1]\n[budget]\nhours = 1"),
        "budget"
    );
    assert!(Spec::parse("experiment = ", true)
        .unwrap_err()
        .message
        .contains("TOML"));
}
