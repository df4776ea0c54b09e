//! # Counterexamples as message sequence charts
//!
//! A trace drawn as people draw distributed protocols: one vertical lane per actor (the owner
//! and the buyer, who are also their services' HTTP handlers; each member of both queue
//! groups; the broker), time flowing down, one band per step numbered as `model check`
//! numbers its text trace. Publishes, deliveries, acks and naks are arrows; store writes,
//! reads, crashes and ack-wait expiries are notes on the lane that does them; a red rule
//! marks the step after which a property is lost, with the text trace's `=>` line; the end
//! state closes the chart. `model check --chart FILE.svg` writes a counterexample's chart,
//! and the explorer draws the chart of the path it is on.
//!
//! - `lanes`: who acts, in which order the lanes stand.
//! - `marks`: what each step draws, read off the action and the states around it.
//! - `render`: the layout and the SVG.
//!
//! The invariant: a chart only reads its trace (and the model, to judge the properties), so
//! drawing changes no verdict; its steps are the trace's steps, one band each, in order; the
//! result is one well-formed SVG document.

mod lanes;
mod marks;
mod render;
#[cfg(test)]
mod tests;

use stateright::Path;

use crate::action::Action;
use crate::properties::{Prop, explain};
use crate::state::{Group, Member, State};
use crate::svg::{Drawing, escape};
use crate::system::TicketingModel;
use crate::trace::Trace;
use crate::words::{describe_event, member_progress, message_status};
use render::{Chart, Rule};

/// Where a property is lost along a trace, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    /// The property.
    pub prop: Prop,
    /// The first step after which it fails (0: it fails in the initial state). For a liveness
    /// property, the point of no return: from there every way the system finishes violates it.
    pub step: usize,
    /// Why it fails: `check`'s `=>` line (judged at the trace's end if it still fails there).
    pub reason: String,
}

/// Where each of `props` is first lost along `trace`, for those that fail at some step, in
/// the order of `props`.
pub fn losses(model: &TicketingModel, trace: &Trace, props: &[Prop]) -> Vec<Loss> {
    let states: Vec<&State> = std::iter::once(&trace.initial)
        .chain(trace.steps.iter().map(|step| &step.state))
        .collect();
    let last = states.last().copied().unwrap_or(&trace.initial);
    props
        .iter()
        .filter_map(|prop| {
            let step = states.iter().position(|state| !prop.holds(model, state))?;
            let judged = if prop.holds(model, last) {
                states[step]
            } else {
                last
            };
            Some(Loss {
                prop: *prop,
                step,
                reason: explain(*prop, model, judged),
            })
        })
        .collect()
}

/// The chart of a counterexample of `prop`, as `model check --chart` writes it: `trace` is
/// the counterexample as `check` prints it (a liveness one completed to quiescence).
pub fn counterexample(model: &TicketingModel, trace: &Trace, prop: Prop) -> String {
    let loss = losses(model, trace, &[prop]).pop().unwrap_or_else(|| Loss {
        prop,
        step: trace.steps.len(),
        reason: explain(prop, model, last_state(trace)),
    });
    let title = format!(
        "{}: {}. {} violated, a counterexample in {} steps",
        model.config.variant,
        prop.number(),
        prop.name(),
        trace.steps.len()
    );
    let rules = [rule(&loss, trace.steps.len(), true)];
    draw(model, trace, title, &rules).svg
}

/// The chart of `trace` with `losses` marked, titled `title` (for a path that is not a
/// counterexample; [`counterexample`] titles and marks its own).
pub fn of_trace(model: &TicketingModel, trace: &Trace, title: &str, losses: &[Loss]) -> String {
    let rules: Vec<Rule> = losses
        .iter()
        .map(|loss| rule(loss, trace.steps.len(), false))
        .collect();
    draw(model, trace, title.to_owned(), &rules).svg
}

/// The explorer's drawing of `path`: the drawing of its last state above the chart of the
/// whole path, with every property the path loses marked where it is lost.
pub(crate) fn explorer_view(model: &TicketingModel, path: &Path<State, Action>) -> String {
    let state = crate::svg::draw(model, path);
    let trace = Trace::from_path(model, None, path);
    let losses = losses(model, &trace, &Prop::ALL);
    let title = format!(
        "{}: the explorer's path, {} steps",
        model.config.variant,
        trace.steps.len()
    );
    let rules: Vec<Rule> = losses
        .iter()
        .map(|loss| rule(loss, trace.steps.len(), false))
        .collect();
    let chart = draw(model, &trace, title, &rules);
    stack(&[state, chart])
}

fn last_state(trace: &Trace) -> &State {
    trace
        .steps
        .last()
        .map_or(&trace.initial, |step| &step.state)
}

/// The red rule of `loss` in a trace of `steps` steps; `completed` says the steps after a
/// liveness loss are the completion to quiescence.
fn rule(loss: &Loss, steps: usize, completed: bool) -> Rule {
    let prop = loss.prop;
    let headline = match (prop.is_liveness(), loss.step < steps) {
        (false, _) => format!(
            "{}. {}: VIOLATED at step {}",
            prop.number(),
            prop.name(),
            loss.step
        ),
        (true, true) => format!(
            "{}. {}: LOST at step {}, the point of no return: every way the system can finish violates it",
            prop.number(),
            prop.name(),
            loss.step
        ),
        (true, false) => format!(
            "{}. {}: VIOLATED at step {}: nothing is left to do, and it does not hold",
            prop.number(),
            prop.name(),
            loss.step
        ),
    };
    let mut lines = vec![format!("=> {}", loss.reason)];
    if completed && prop.is_liveness() && loss.step < steps {
        lines.push(format!(
            "steps {}-{steps}: the system finishes its work, clients and the adversary idle",
            loss.step + 1
        ));
    }
    Rule {
        after_step: loss.step,
        headline,
        lines,
    }
}

fn draw(model: &TicketingModel, trace: &Trace, title: String, rules: &[Rule]) -> Drawing {
    let config = &model.config;
    let subtitle = format!(
        "bounds: tickets {}, members {}, updates {}, orders {}, cancels {}, crashes {}, \
         redeliveries {}, duplicates {}, max_deliver {}; steps numbered as `model check` prints them",
        config.tickets,
        config.members,
        config.updates,
        config.orders,
        config.cancels,
        config.crashes,
        config.redeliveries,
        config.duplicates,
        config.max_deliver
    );
    let rows = marks::rows(trace);
    render::render(&Chart {
        title,
        subtitle,
        lanes: lanes::lanes(config.members),
        rows: &rows,
        rules,
        footer: end_state(trace),
    })
}

/// The end state in a few lines: the stores, the stream, unpublished events, busy members.
fn end_state(trace: &Trace) -> Vec<String> {
    let state = last_state(trace);
    let messages: Vec<String> = state
        .messages
        .as_slice()
        .iter()
        .enumerate()
        .map(|(index, message)| format!("#{index} {}", message_status(message)))
        .collect();
    let mut lines = vec![format!("end state, after step {}:", trace.steps.len())];
    lines.extend(store_lines(state));
    lines.push(format!("broker: {}", or_none(&messages)));
    let unpublished: Vec<String> = state
        .outboxes
        .iter()
        .flat_map(|outbox| outbox.as_slice().iter().map(describe_event))
        .collect();
    if !unpublished.is_empty() {
        lines.push(format!(
            "saved, not yet published: {}",
            unpublished.join("; ")
        ));
    }
    let busy: Vec<String> = Group::ALL
        .into_iter()
        .flat_map(|group| {
            state
                .group_members(group)
                .iter()
                .enumerate()
                .filter(|(_, member)| matches!(member, Member::Busy { .. }))
                .map(move |(m, member)| {
                    format!("{} member {m}: {}", group.name(), member_progress(member))
                })
        })
        .collect();
    if !busy.is_empty() {
        lines.push(format!("busy: {}", busy.join("; ")));
    }
    lines
}

/// Both services' stores, one line each.
fn store_lines(state: &State) -> [String; 2] {
    let tickets: Vec<String> = (0..state.tickets.len())
        .map(|t| {
            let primary = state.tickets.as_slice()[t];
            format!(
                "ticket t{t} v{} price {}, {}, reservation {}",
                primary.version,
                primary.price,
                primary
                    .order
                    .map_or("no order".into(), |o| format!("order o{o}")),
                primary.reservation
            )
        })
        .collect();
    let mut orders: Vec<String> = (0..state.tickets.len())
        .map(|t| match state.replicas[t] {
            Some(replica) => format!("replica t{t} v{} price {}", replica.version, replica.price),
            None => format!("no replica of t{t}"),
        })
        .collect();
    orders.extend(
        state
            .orders
            .as_slice()
            .iter()
            .enumerate()
            .map(|(o, order)| {
                format!("order o{o} on t{} {:?}", order.ticket, order.status).to_lowercase()
            }),
    );
    [
        format!("tickets service: {}", or_none(&tickets)),
        format!("orders service: {}", or_none(&orders)),
    ]
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join("; ")
    }
}

/// Drawings one above the other, in one SVG document.
fn stack(drawings: &[Drawing]) -> String {
    const GAP: i32 = 12;
    let width = drawings.iter().map(|d| d.width).max().unwrap_or(0);
    let mut body = String::new();
    let mut y = 0;
    for drawing in drawings.iter().filter(|d| d.height > 0) {
        body.push_str(&format!(
            "<g transform=\"translate(0,{y})\">\n{}</g>\n",
            drawing.svg
        ));
        y += drawing.height + GAP;
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\"><title>{}</title>\n{body}</svg>\n",
        (y - GAP).max(0),
        escape("the explorer's path: its last state and its sequence chart")
    )
}
