//! Drawings for people, in SVG: the drawing of the last state of a path for stateright's
//! explorer (the two services' stores side by side, their outboxes and members, and the
//! broker's messages with their status), and what every drawing shares: [`Drawing`] and
//! [`escape`]. The wording is [`crate::words`]'s. The explorer shows this drawing above the
//! sequence chart of the path (`crate::chart`).
//!
//! The invariant: drawing only reads the state; a drawing is one SVG document whose text and
//! attribute values are escaped, on a background of its own (the explorer's page is dark), and
//! whose CSS classes carry the drawing's prefix (`state-`), since the explorer inlines it in
//! its page.

use std::fmt::Write as _;

use stateright::Path;

use crate::action::Action;
use crate::properties::Prop;
use crate::state::{Group, Service, State};
use crate::system::TicketingModel;
use crate::words::{describe_action, describe_event, member_progress, message_status};

/// The drawing's width, in pixels: three columns and their margins.
const WIDTH: i32 = 980;
/// One line of text, in pixels.
const LINE: i32 = 18;
/// One column (a service or the broker), in pixels.
const COLUMN: i32 = 320;

/// An SVG document and its size, so drawings can be stacked.
pub(crate) struct Drawing {
    /// Width, in pixels.
    pub(crate) width: i32,
    /// Height, in pixels.
    pub(crate) height: i32,
    /// The document: one `<svg>` element.
    pub(crate) svg: String,
}

struct Canvas {
    body: String,
}

impl Canvas {
    fn text(&mut self, x: i32, y: i32, class: &str, text: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x}" y="{y}" class="{class}">{}</text>"#,
            escape(text)
        );
    }

    fn frame(&mut self, x: i32, y: i32, height: i32, title: &str) {
        let _ = writeln!(
            self.body,
            r#"<rect x="{x}" y="{y}" width="{}" height="{height}" rx="6" class="state-box"/>"#,
            COLUMN - 10
        );
        self.text(x + 8, y + LINE, "state-title", title);
    }
}

/// `text` escaped for XML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Draws the last state of `path`.
pub(crate) fn draw(model: &TicketingModel, path: &Path<State, Action>) -> Drawing {
    let pairs = path.clone().into_vec();
    let Some((state, _)) = pairs.last() else {
        return Drawing {
            width: 0,
            height: 0,
            svg: String::new(),
        };
    };
    let last_action = pairs
        .len()
        .checked_sub(2)
        .and_then(|i| pairs[i].1)
        .map(|action| describe_action(&action));
    let mut canvas = Canvas {
        body: String::new(),
    };
    let mut y = LINE;
    canvas.text(
        10,
        y,
        "state-title",
        &format!(
            "{} — step {}: {}",
            model.config.variant,
            pairs.len() - 1,
            last_action.unwrap_or_else(|| "initial state".into())
        ),
    );
    y += LINE;
    let violated: Vec<&str> = Prop::ALL
        .into_iter()
        .filter(|prop| !prop.holds(model, state))
        .map(Prop::name)
        .collect();
    if !violated.is_empty() {
        canvas.text(
            10,
            y,
            "state-bad",
            &format!("violated: {}", violated.join(", ")),
        );
    }
    y += LINE / 2;

    let members = usize::from(model.config.members);
    let lines = tickets_service_lines(state, members);
    column(&mut canvas, 10, y, "tickets service", &lines);
    let lines = orders_service_lines(state, members);
    column(&mut canvas, 10 + COLUMN, y, "orders service", &lines);
    let lines = broker_lines(state);
    let height = column(&mut canvas, 10 + 2 * COLUMN, y, "broker (stream)", &lines);

    let total = y + height + LINE;
    let svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{total}" font-family="monospace" font-size="12">
<style>.state-bg {{ fill: #ffffff; }} .state-box {{ fill: #f7f7f7; stroke: #888; }} .state-title {{ font-weight: bold; }} .state-bad {{ fill: #b00; font-weight: bold; }}</style>
<rect x="0" y="0" width="{WIDTH}" height="{total}" class="state-bg"/>
{}</svg>"#,
        canvas.body
    );
    Drawing {
        width: WIDTH,
        height: total,
        svg,
    }
}

/// The tickets service's column: its primaries, outbox and members.
fn tickets_service_lines(state: &State, members: usize) -> Vec<String> {
    let mut lines = vec!["tickets (primary):".to_string()];
    for (t, ticket) in state.tickets.as_slice().iter().enumerate() {
        lines.push(format!(
            "  t{t}: v{} price {} {} res {}",
            ticket.version,
            ticket.price,
            ticket
                .order
                .map_or("free".into(), |o| format!("order o{o}")),
            ticket.reservation
        ));
    }
    push_outbox(&mut lines, state, Service::Tickets);
    push_members(&mut lines, state, Group::Tickets, members);
    lines
}

/// The orders service's column: its replicas, orders, outbox and members.
fn orders_service_lines(state: &State, members: usize) -> Vec<String> {
    let mut lines = vec!["replicas:".to_string()];
    for t in 0..state.tickets.len() {
        lines.push(match state.replicas[t] {
            Some(replica) => format!("  t{t}: v{} price {}", replica.version, replica.price),
            None => format!("  t{t}: none"),
        });
    }
    lines.push("orders:".into());
    for (o, order) in state.orders.as_slice().iter().enumerate() {
        lines.push(format!(
            "  o{o}: t{} {:?} v{}",
            order.ticket, order.status, order.version
        ));
    }
    push_outbox(&mut lines, state, Service::Orders);
    push_members(&mut lines, state, Group::Orders, members);
    lines
}

/// The broker's column: every message of the stream and where it stands.
fn broker_lines(state: &State) -> Vec<String> {
    let mut lines = Vec::new();
    for (index, message) in state.messages.as_slice().iter().enumerate() {
        lines.push(format!("{index}: {}", describe_event(&message.event())));
        lines.push(format!("    {}", message_status(message)));
    }
    lines
}

fn push_outbox(lines: &mut Vec<String>, state: &State, service: Service) {
    let outbox = state.outbox(service);
    lines.push(format!("outbox ({}):", outbox.len()));
    for event in outbox.as_slice() {
        lines.push(format!("  {}", describe_event(event)));
    }
}

fn push_members(lines: &mut Vec<String>, state: &State, group: Group, members: usize) {
    lines.push(format!("{} members:", group.name()));
    for (m, member) in state.group_members(group).iter().take(members).enumerate() {
        lines.push(format!("  m{m}: {}", member_progress(member)));
    }
}

/// Draws a framed column of lines; returns its height.
fn column(canvas: &mut Canvas, x: i32, y: i32, title: &str, lines: &[String]) -> i32 {
    let height = (lines.len() as i32 + 2) * LINE;
    canvas.frame(x, y, height, title);
    for (i, line) in lines.iter().enumerate() {
        canvas.text(x + 8, y + (i as i32 + 2) * LINE, "", line);
    }
    height
}
