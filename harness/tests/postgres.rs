//! The harness's modes with both services on PostgreSQL (`--store postgres://...`): every
//! counterexample row has the verdicts it has in memory, a trace replays, fuzzed cases follow
//! the model, and a bug seeded into the database (an outbox that loses events) is caught
//! there. Each test makes a fresh database on the `DATABASE_URL` server (default the local
//! one) and drops it at the end; an unreachable server skips the test, saying so, unless
//! `REQUIRE_SERVICES=1`.

use harness::backend::Backend;
use harness::counterexamples::{Showing, rows};
use harness::fuzz::{Options, run};
use harness::replay::{Replay, TraceError, replay_trace_on};
use harness::report::Departure;
use model::properties::{Prop, must_violate};
use model::run::{RunOptions, Strategy, check};
use model::trace::Trace;
use model::{Action, Config, TicketingModel, Variant};
use ticketing::testkit::{database_url, unavailable};

/// A run on a fresh database, or `None` (after saying why) when PostgreSQL is unreachable.
fn postgres(test: &str) -> Option<Backend> {
    match Backend::postgres(&database_url(), test) {
        Ok(backend) => Some(backend),
        Err(why) => {
            unavailable(test, "PostgreSQL", why);
            None
        }
    }
}

#[test]
fn every_counterexample_row_has_the_same_verdicts_as_in_memory() {
    let Some(backend) = postgres("harness_pg_counterexamples") else {
        return;
    };
    for variant in Variant::ALL {
        let config = Config::new(variant);
        let in_memory = rows(config, &Backend::Memory);
        let on_postgres = rows(config, &backend);
        assert_eq!(in_memory.len(), on_postgres.len(), "{variant}");
        for (memory, pg) in in_memory.iter().zip(&on_postgres) {
            let what = format!("{variant} / {}", pg.prop.name());
            assert_eq!(
                (memory.prop, memory.length, memory.reference_length),
                (pg.prop, pg.length, pg.reference_length),
                "{what}"
            );
            assert_eq!(memory.on_variant, Showing::AsRequired, "{what} in memory");
            assert_eq!(pg.on_variant, Showing::AsRequired, "{what}: on the variant");
            assert_eq!(memory.on_reference, Showing::AsRequired, "{what} in memory");
            assert_eq!(
                pg.on_reference,
                Showing::AsRequired,
                "{what}: on the reference"
            );
        }
    }
}

fn counterexample(variant: Variant) -> Trace {
    let config = Config::new(variant);
    let options = RunOptions {
        strategy: Strategy::Bfs,
        threads: 1,
        symmetry: false,
        ..RunOptions::default()
    };
    let outcome = check(config, &options);
    let prop = must_violate(variant).first().unwrap();
    let verdict = outcome.verdicts.iter().find(|v| v.prop == prop).unwrap();
    let path = verdict.counterexample.as_ref().unwrap();
    Trace::from_path(&TicketingModel::new(config), Some(prop), path)
}

#[test]
fn a_counterexample_trace_replays_on_postgres_and_is_violated_there() {
    let Some(backend) = postgres("harness_pg_replay") else {
        return;
    };
    let trace = counterexample(Variant::NaiveVersion);
    let replayed = match replay_trace_on(&trace, true, &backend) {
        Ok(replayed) => replayed,
        Err(TraceError::Divergence(divergence)) => panic!("{}", divergence.render()),
        Err(other) => panic!("{other}"),
    };
    assert_eq!(replayed.violation, Some((Prop::VersionMonotonicity, true)));
}

#[test]
fn fuzzed_cases_follow_the_model_on_postgres() {
    let Some(backend) = postgres("harness_pg_fuzz") else {
        return;
    };
    let cases = 12;
    let outcome = run(&Options {
        config: Config::new(Variant::Reference),
        cases,
        seed: 42,
        max_steps: 40,
        stutter_probes: true,
        backend,
    });
    if let Some(failure) = &outcome.failure {
        panic!("diverged:\n{}", failure.divergence.render());
    }
    assert_eq!(outcome.aborted, None);
    assert_eq!(outcome.cases, cases as usize);
    assert!(outcome.steps > cases as usize, "cases ended at once");
}

/// A bug seeded into the tickets service's database, where the memory store cannot have it:
/// its outbox silently loses every `ticket:updated` (the insert is skipped, the edit commits).
const LOSE_UPDATES: &str = "
    CREATE FUNCTION w0_tickets.lose_updates() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.subject = 'ticket:updated' THEN RETURN NULL; END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER lose_updates BEFORE INSERT ON w0_tickets.outbox
        FOR EACH ROW EXECUTE FUNCTION w0_tickets.lose_updates();
";

/// Creates a ticket and edits it on world 0 of `backend`, after running `seed` (SQL) on the
/// run's database.
fn create_and_edit(backend: &Backend, seed: &str) -> Result<(), harness::report::Divergence> {
    let mut replay = Replay::on(Config::new(Variant::Reference), backend)?;
    let url = backend.database_url().unwrap().to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client.batch_execute(seed).await.unwrap();
    });
    replay.step(Action::CreateTicket)?;
    replay.step(Action::UpdatePrice { ticket: 0 })
}

#[test]
fn an_outbox_that_loses_events_on_postgres_is_caught() {
    let Some(backend) = postgres("harness_pg_seeded") else {
        return;
    };
    // The control: the same steps on an unseeded database follow the model.
    let Some(control) = postgres("harness_pg_control") else {
        return;
    };
    create_and_edit(&control, "SELECT 1").unwrap();
    let divergence = create_and_edit(&backend, LOSE_UPDATES).unwrap_err();
    assert_eq!(divergence.step(), 2, "{}", divergence.render());
    let Departure::States { differences, .. } = &divergence.departure else {
        panic!("not a state difference: {}", divergence.render());
    };
    assert!(
        differences.iter().any(|d| d.field == "message 1"),
        "{}",
        divergence.render()
    );
}
