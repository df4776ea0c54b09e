//! The command line: `serve`, `token` and `dead-letters` (see `ticketing --help`).

mod dead_letters;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use ticketing::records::UserId;
use ticketing::services::ServiceConfig;
use ticketing::services::app::{self, AppOptions, Backends};
use ticketing::services::auth::{JWT_KEY_VAR, KeySource, SessionKey, development_key_refusal};
use ticketing::services::relay::RelayConfig;
use ticketing::variant::Variant;

#[derive(Parser, Debug)]
#[command(
    name = "ticketing",
    version,
    about = "The ticketing system's reference implementation: the tickets and orders services, \
             kept in sync by versioned events over a broker.",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve both services (HTTP API, queue-group listeners, outbox relays) behind one address.
    ///
    /// Without --bus and --store everything runs in this process (embedded broker, memory
    /// stores) and, on a loopback --listen address, JWT_KEY falls back to a development key;
    /// anywhere else JWT_KEY (at least 32 bytes) is required. Logs go to stderr; set RUST_LOG
    /// (default `info`) to change the level. Ctrl-C or SIGTERM stops accepting requests, lets
    /// those in flight finish, stops the listeners and flushes the outboxes.
    Serve(ServeArgs),
    /// Print a session token (a JWT signed with JWT_KEY, HS256) for `Authorization: Bearer`
    /// or the `session` cookie.
    ///
    /// Without JWT_KEY the development key is used (matching a `serve` on the embedded
    /// profile), with a note on stderr.
    Token(TokenArgs),
    /// List or replay the dead letters kept on JetStream (with the --bus and --stream-prefix
    /// that `serve` was given).
    DeadLetters(dead_letters::DeadLettersArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on for HTTP.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Members in each queue group (`tickets-service`, `orders-service`); members of a group
    /// share their service's store and compete for its deliveries.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    members: u16,
    /// Design variant (SPEC.md section 2): reference, naive-version, no-reserve-publish,
    /// edit-reserved, ack-before-save, course-listener, racy-reserve, unordered-order-events,
    /// no-outbox, conflict-nak, course.
    #[arg(long, default_value = "reference")]
    variant: Variant,
    /// NATS JetStream server (`nats://host:port`); the embedded broker if absent.
    #[arg(long, value_name = "NATS_URL")]
    bus: Option<String>,
    /// JetStream namespace: stream NAME over subjects `NAME.ticket:created`, ... (so several
    /// deployments can share a server). Default: stream `TICKETING` over the bare subject
    /// names. Only with --bus.
    #[arg(long, value_name = "NAME", requires = "bus")]
    stream_prefix: Option<String>,
    /// PostgreSQL server (`postgres://user@host:port/database`); memory stores if absent. Each
    /// service keeps its own schema (`tickets`, `orders`) in that database.
    #[arg(long, value_name = "POSTGRES_URL")]
    store: Option<String>,
    /// How long a new order holds its ticket (`15m`, `90s`, `1h`, `500ms`): an order still
    /// `created` after that is cancelled by the orders service itself (checked every second).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    order_expiry: Duration,
    /// How long a delivery may stay unacknowledged before the broker redelivers it.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    ack_wait: Duration,
    /// Deliveries of one event before it is dead-lettered. With the default gap backoff
    /// (100 ms doubling to 2 s), 30 deliveries give a redelivery horizon of 51.1 s: a version
    /// gap closed within it never dead-letters.
    #[arg(long, default_value_t = ticketing::bus::DEFAULT_MAX_DELIVER, value_parser = clap::value_parser!(u32).range(1..))]
    max_deliver: u32,
}

#[derive(Args, Debug)]
struct TokenArgs {
    /// The user id (the token's `id` claim).
    #[arg(long)]
    user: String,
    /// The `email` claim (default: `<user>@ticketing.dev`).
    #[arg(long)]
    email: Option<String>,
    /// How long the token is valid (`1h`, `30m`, `7d` is not accepted: use `168h`).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    ttl: Duration,
}

/// Parses `500ms`, `90s`, `15m`, `1h`, or a sum of them (`1h30m`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}: expected e.g. 500ms, 90s, 15m, 1h30m");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let amount: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        let part = u32::try_from(amount)
            .ok()
            .and_then(|amount| unit.checked_mul(amount))
            .ok_or_else(invalid)?;
        total = total.checked_add(part).ok_or_else(invalid)?;
    }
    Ok(total)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Token(args) => token(args),
        Command::DeadLetters(args) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(dead_letters::run(args)),
            Err(error) => {
                eprintln!("ticketing: cannot start the async runtime: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => {
            init_tracing();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("ticketing: cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("ticketing: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn token(args: TokenArgs) -> ExitCode {
    let (key, source) = match SessionKey::from_env(None) {
        Ok(found) => found,
        Err(error) => {
            eprintln!("ticketing: {error}");
            return ExitCode::FAILURE;
        }
    };
    if source == KeySource::Development {
        eprintln!(
            "note: {JWT_KEY_VAR} is not set; signed with the development key (accepted only by \
             a server on the embedded profile, on a loopback address, without {JWT_KEY_VAR})"
        );
    }
    let email = args
        .email
        .unwrap_or_else(|| format!("{}@ticketing.dev", args.user));
    match key.issue(&UserId::new(args.user), &email, args.ttl) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ticketing: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), app::StartError> {
    let embedded = args.bus.is_none() && args.store.is_none();
    let (sessions, source) = SessionKey::from_env(development_key_refusal(embedded, args.listen))?;
    if source == KeySource::Development {
        tracing::warn!(
            "{JWT_KEY_VAR} is not set: using the public development key (embedded profile on a \
             loopback address only); set {JWT_KEY_VAR} for anything but local experiments"
        );
    }
    let mut config = ServiceConfig::new(args.variant);
    config.order_expiry = args.order_expiry;
    let options = AppOptions {
        listen: args.listen,
        members: usize::from(args.members),
        config,
        ack_wait: args.ack_wait,
        max_deliver: args.max_deliver,
        relay: RelayConfig::default(),
        sessions,
    };
    let backends = Backends {
        bus: args.bus,
        stream_prefix: args.stream_prefix,
        store: args.store,
    };
    let running = app::start_with_backends(options, backends).await?;
    println!("listening on http://{}", running.local_addr());
    app::shutdown_signal().await;
    tracing::info!("shutting down: draining requests, stopping listeners, flushing outboxes");
    running.shutdown().await;
    Ok(())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_units_the_help_names() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        for bad in ["", "15", "m", "1x", "-5s", "1.5s", "99999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
