//! `ticketing dead-letters list` and `ticketing dead-letters replay SEQ`: the dead letters
//! kept in the JetStream dead-letter stream, on the server and namespace `serve` uses (same
//! `--bus` and `--stream-prefix`).
//!
//! The embedded broker keeps its dead letters in the `serve` process's memory, out of reach of
//! another process: these commands need `--bus`.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use ticketing::bus::{DeadLetterReason, PublishAck};
use ticketing::services::app;

#[derive(Args, Debug)]
pub struct DeadLettersArgs {
    /// NATS JetStream server (`nats://host:port`), as given to `serve --bus`.
    #[arg(long, value_name = "NATS_URL", global = true)]
    bus: Option<String>,
    /// JetStream namespace, as given to `serve --stream-prefix`.
    #[arg(long, value_name = "NAME", global = true)]
    stream_prefix: Option<String>,
    #[command(subcommand)]
    command: DeadLettersCommand,
}

#[derive(Subcommand, Debug)]
enum DeadLettersCommand {
    /// One line per dead letter, oldest first: subject, stream sequence, deliveries, reason.
    List,
    /// Republish the dead letter of stream sequence SEQ on its subject, then remove it from the
    /// list.
    Replay {
        /// The stream sequence `list` shows.
        seq: u64,
    },
}

/// Runs the command; the exit code says whether it did what was asked.
pub async fn run(args: DeadLettersArgs) -> ExitCode {
    match run_inner(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ticketing: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run_inner(args: DeadLettersArgs) -> Result<(), String> {
    let Some(url) = args.bus else {
        return Err(
            "dead-letters needs --bus NATS_URL: the embedded broker keeps its dead \
                    letters in the memory of its `serve` process"
                .to_owned(),
        );
    };
    let bus = app::connect_bus(&url, args.stream_prefix.as_deref())
        .await
        .map_err(|error| error.to_string())?;
    match args.command {
        DeadLettersCommand::List => {
            let letters = bus
                .durable_dead_letters()
                .await
                .map_err(|error| error.to_string())?;
            for stored in letters {
                let reason = match &stored.letter.reason {
                    DeadLetterReason::MaxDeliveries(_) => "max deliveries".to_owned(),
                    DeadLetterReason::Terminated(why) => format!("terminated: {why}"),
                };
                println!(
                    "{} {} {} {reason}",
                    stored.letter.subject, stored.letter.stream_seq, stored.deliveries
                );
            }
            Ok(())
        }
        DeadLettersCommand::Replay { seq } => {
            match bus
                .replay_dead_letter(seq)
                .await
                .map_err(|error| error.to_string())?
            {
                Some(PublishAck::Stored { seq: new_seq }) => {
                    println!("replayed {seq} as stream sequence {new_seq}");
                    Ok(())
                }
                Some(PublishAck::Duplicate) => {
                    println!("replayed {seq} (already republished within the duplicate window)");
                    Ok(())
                }
                None => Err(format!(
                    "no dead letter has stream sequence {seq} (see `ticketing dead-letters list`)"
                )),
            }
        }
    }
}
