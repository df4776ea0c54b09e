//! `harness fuzz` with fixed seeds: proptest-generated action sequences, replayed on the
//! model and the implementation, follow the model; and a case is replayed identically from
//! its seed.

use harness::backend::Backend;
use harness::fuzz::{Options, run, run_choices};
use model::{Config, Variant};

fn fuzz(variant: Variant, cases: u32, seed: u64) {
    let outcome = run(&Options {
        config: Config::new(variant),
        cases,
        seed,
        max_steps: 60,
        stutter_probes: true,
        backend: Backend::Memory,
    });
    if let Some(failure) = &outcome.failure {
        panic!(
            "{variant}, seed {seed}: diverged with choices {:?}:\n{}",
            failure.choices,
            failure.divergence.render()
        );
    }
    assert_eq!(outcome.aborted, None);
    assert_eq!(outcome.cases, cases as usize);
    assert!(
        outcome.steps > cases as usize,
        "{variant}: cases ended at once"
    );
}

#[test]
fn the_reference_follows_the_model_on_generated_sequences() {
    fuzz(Variant::Reference, 300, 20_261_127);
}

#[test]
fn every_variant_follows_its_model_on_generated_sequences() {
    for variant in &Variant::ALL[1..] {
        fuzz(*variant, 60, 7);
    }
}

#[test]
fn the_same_choices_take_the_same_path() {
    let config = Config::new(Variant::Reference);
    let choices: Vec<u16> = (0..40).map(|i| (i * 7919 % 65_521) as u16).collect();
    let first = run_choices(config, &choices, true, &Backend::Memory).unwrap();
    let second = run_choices(config, &choices, true, &Backend::Memory).unwrap();
    assert_eq!(first, second);
    assert!(first > 10);
}
