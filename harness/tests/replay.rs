//! Replaying JSON traces (`harness replay`): a counterexample written by the checker replays
//! on the implementation and is violated there too; a trace whose recorded state the
//! implementation does not reach is reported at that step, with the field that differs; a
//! trace the model itself does not reproduce is refused; stutter probes change nothing but
//! delivery counts.

use harness::replay::{Replay, TraceError, replay_actions, replay_trace};
use harness::report::Departure;
use model::properties::{Prop, must_violate};
use model::run::{RunOptions, Strategy, check};
use model::state::{Group, Replica, Status};
use model::trace::Trace;
use model::{Action, Config, TicketingModel, Variant};

fn counterexample(variant: Variant) -> Trace {
    let config = Config::new(variant);
    let outcome = check(
        config,
        &RunOptions {
            strategy: Strategy::Bfs,
            threads: 1,
            symmetry: false,
            ..RunOptions::default()
        },
    );
    let prop = must_violate(variant).first().unwrap();
    let verdict = outcome.verdicts.iter().find(|v| v.prop == prop).unwrap();
    let path = verdict.counterexample.as_ref().unwrap();
    Trace::from_path(&TicketingModel::new(config), Some(prop), path)
}

#[test]
fn a_counterexample_from_json_is_violated_on_the_implementation() {
    let trace = counterexample(Variant::NaiveVersion);
    let json = serde_json::to_string_pretty(&trace).unwrap();
    let back: Trace = serde_json::from_str(&json).unwrap();
    let replayed = replay_trace(&back, false).unwrap();
    assert_eq!(replayed.violation, Some((Prop::VersionMonotonicity, true)));
}

#[test]
fn a_state_the_implementation_does_not_reach_is_reported_at_its_step() {
    let mut trace = counterexample(Variant::NaiveVersion);
    // Pretend the model expected replica 0 one version further after the third step.
    let step = 2;
    for later in &mut trace.steps[step..] {
        if let Some(replica) = &mut later.state.replicas[0] {
            replica.version += 1;
        } else {
            later.state.replicas[0] = Some(Replica {
                version: 9,
                price: 0,
            });
        }
    }
    // The model no longer reproduces the tampered trace, so replay it without that check.
    let mut replay = Replay::new(trace.config).unwrap();
    let mut result = Ok(());
    for recorded in &trace.steps {
        result = replay.step_to(recorded.action, recorded.state.clone());
        if result.is_err() {
            break;
        }
    }
    let divergence = result.unwrap_err();
    assert_eq!(divergence.step(), step + 1);
    let Departure::States { differences, .. } = &divergence.departure else {
        panic!("not a state difference: {divergence:?}");
    };
    assert_eq!(differences.len(), 1, "{}", divergence.render());
    assert_eq!(differences[0].field, "replica 0");
    assert!(divergence.render().contains("replica 0"));
    // And the whole-trace replay refuses it, since the model does not reproduce it.
    assert!(matches!(
        replay_trace(&trace, false),
        Err(TraceError::Model(_))
    ));
}

#[test]
fn every_variant_counterexample_replays_from_its_trace() {
    for variant in &Variant::ALL[1..] {
        let trace = counterexample(*variant);
        match replay_trace(&trace, false) {
            Ok(replayed) => assert_eq!(
                replayed.violation.map(|(_, violated)| violated),
                Some(true),
                "{variant}"
            ),
            Err(TraceError::Divergence(divergence)) => panic!("{}", divergence.render()),
            Err(error) => panic!("{variant}: {error}"),
        }
    }
}

#[test]
fn a_delivery_that_is_not_applicable_yet_changes_nothing_but_its_count() {
    let orders = Group::Orders;
    // Two edits before the replica exists: once it does, v2 waits for v1.
    let actions = [
        Action::CreateTicket,
        Action::UpdatePrice { ticket: 0 },
        Action::UpdatePrice { ticket: 0 },
        Action::Deliver {
            group: orders,
            member: 0,
            message: 0,
        },
        Action::Ack {
            group: orders,
            member: 0,
        },
    ];
    let mut replay = replay_actions(Config::new(Variant::Reference), &actions).unwrap();
    let probes = replay.probe_stutters().unwrap();
    assert_eq!(probes, 1, "only message 2 (v2) is not applicable yet");
    let message = replay.observed().messages.as_slice()[2];
    assert_eq!((message.status, message.deliveries), (Status::Pending, 1));
    assert_eq!(replay.observed().replicas[0].map(|r| r.version), Some(0));
}

#[test]
fn an_action_the_model_does_not_enable_is_reported_as_such() {
    let divergence = replay_actions(
        Config::new(Variant::Reference),
        &[Action::UpdatePrice { ticket: 0 }],
    )
    .unwrap_err();
    assert_eq!(divergence.departure, Departure::NotInModel);
}
