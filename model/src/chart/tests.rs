//! The chart of known short traces: its lanes, arrows, notes, step numbers and loss marker,
//! read back from the SVG with a tiny XML parser (the one the integration tests use).

#[path = "../../tests/support/xml.rs"]
mod xml;

use stateright::{Model, Path};

use super::render::wrap;
use super::{counterexample, explorer_view, losses, of_trace};
use crate::action::Action;
use crate::config::{Config, Variant};
use crate::properties::Prop;
use crate::state::{Group, Service};
use crate::system::TicketingModel;
use crate::trace::Trace;
use xml::Element;

fn trace(variant: Variant, actions: &[Action]) -> (TicketingModel, Trace) {
    let model = TicketingModel::new(Config::new(variant));
    let trace = Trace::from_actions(&model, actions)
        .unwrap_or_else(|step| panic!("action {step} of {actions:?} is not enabled"));
    (model, trace)
}

fn elements(svg: &str) -> Vec<Element> {
    xml::parse(svg).unwrap_or_else(|problem| panic!("ill-formed SVG ({problem}):\n{svg}"))
}

/// The texts of the elements with `class`, in document order.
fn texts(elements: &[Element], class: &str) -> Vec<String> {
    elements
        .iter()
        .filter(|e| e.name == "text" && e.has_class(class))
        .map(|e| e.text.clone())
        .collect()
}

/// The drawn arrows of `kind` (`publish`, `deliver`, ...), legend samples excluded.
fn arrows<'a>(elements: &'a [Element], kind: &str) -> Vec<&'a Element> {
    elements
        .iter()
        .filter(|e| e.name == "line" && e.has_class("msc-arrow") && e.has_class(kind))
        .collect()
}

/// The drawn notes of `class` (`msc-write`, ...), legend samples excluded.
fn notes(elements: &[Element], class: &str) -> usize {
    elements
        .iter()
        .filter(|e| e.name == "rect" && e.has_class(class) && !e.has_class("msc-sample"))
        .count()
}

/// Every text of the drawing, joined by spaces (so a label wrapped at a space reads whole).
fn all_text(elements: &[Element]) -> String {
    elements
        .iter()
        .filter(|e| e.name == "text")
        .map(|e| e.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn deliver(group: Group, member: u8, message: u8) -> Action {
    Action::Deliver {
        group,
        member,
        message,
    }
}

/// Two reservation requests both pass `isReserved`, then both insert (the orders service
/// needs its replica before it takes orders).
const DOUBLE_BOOKING: [Action; 6] = [
    Action::CreateTicket,
    Action::Deliver {
        group: Group::Orders,
        member: 0,
        message: 0,
    },
    Action::CheckReservation { ticket: 0 },
    Action::CheckReservation { ticket: 0 },
    Action::InsertOrder { request: 0 },
    Action::InsertOrder { request: 0 },
];

#[test]
fn a_double_booking_draws_its_lanes_publishes_writes_and_where_it_is_lost() {
    let (model, trace) = trace(Variant::RacyReserve, &DOUBLE_BOOKING);
    let drawn = elements(&counterexample(&model, &trace, Prop::SingleReservation));
    let lanes = drawn.iter().filter(|e| e.has_class("msc-lane")).count();
    assert_eq!(
        lanes, 7,
        "owner, 2 tickets members, broker, 2 orders members, buyer"
    );
    let text = all_text(&drawn);
    for title in ["owner", "buyer", "broker", "member 0", "member 1"] {
        assert!(text.contains(title), "lane title {title:?}");
    }
    assert_eq!(texts(&drawn, "msc-step"), ["1", "2", "3", "4", "5", "6"]);
    assert_eq!(
        arrows(&drawn, "msc-publish").len(),
        3,
        "ticket:created, 2 x order:created"
    );
    assert_eq!(arrows(&drawn, "msc-deliver").len(), 1, "ticket:created");
    assert_eq!(
        notes(&drawn, "msc-write"),
        4,
        "the ticket, its replica, two orders"
    );
    assert!(text.contains("publish #2 order:created(o1 t0 reservation 2)"));
    assert!(text.contains("request A orders t0: isReserved? no"));
    assert!(text.contains("request A inserts: order o0 created on t0 (reservation 1)"));
    assert!(text.contains("request B inserts: order o1 created on t0 (reservation 2)"));
    assert_eq!(
        texts(&drawn, "msc-loss"),
        ["3. single reservation: VIOLATED at step 6"]
    );
    assert_eq!(
        texts(&drawn, "msc-loss-reason"),
        ["=> ticket 0 has 2 active orders: order 0, order 1"]
    );
}

#[test]
fn the_loss_rule_is_drawn_after_the_step_that_loses_the_property() {
    // One more step after the double booking: the rule stays after step 6.
    let mut actions = DOUBLE_BOOKING.to_vec();
    actions.push(deliver(Group::Tickets, 0, 1));
    let (model, trace) = trace(Variant::RacyReserve, &actions);
    let drawn = elements(&counterexample(&model, &trace, Prop::SingleReservation));
    let y = |e: &Element| e.attribute("y").and_then(|y| y.parse::<i32>().ok());
    let step_y: Vec<i32> = drawn
        .iter()
        .filter(|e| e.has_class("msc-step"))
        .filter_map(y)
        .collect();
    let rule_y = drawn
        .iter()
        .find(|e| e.has_class("msc-loss-line"))
        .and_then(|e| e.attribute("y1")?.parse::<i32>().ok())
        .expect("a loss rule");
    assert_eq!(step_y.len(), 7);
    assert!(step_y.windows(2).all(|w| w[0] < w[1]), "steps go down");
    assert!(
        step_y[5] < rule_y && rule_y < step_y[6],
        "between steps 6 and 7"
    );
}

#[test]
fn a_crash_and_failed_deliveries_dead_letter_a_duplicate() {
    // course-listener: the replica exists after the first delivery, so each redelivery of
    // ticket:created fails until max_deliver.
    let actions = [
        Action::CreateTicket,
        deliver(Group::Orders, 0, 0),
        Action::CrashMember {
            group: Group::Orders,
            member: 0,
        },
        deliver(Group::Orders, 1, 0),
        deliver(Group::Orders, 1, 0),
    ];
    let (model, trace) = trace(Variant::CourseListener, &actions);
    let drawn = elements(&counterexample(&model, &trace, Prop::NothingStuck));
    let text = all_text(&drawn);
    assert_eq!(arrows(&drawn, "msc-deliver").len(), 3);
    assert_eq!(arrows(&drawn, "msc-nak").len(), 2);
    assert_eq!(notes(&drawn, "msc-crash"), 1);
    assert!(text.contains("CRASH mid-handler holding #0 (next: ack) → #0 pending again"));
    assert!(text.contains("read replica t0 at v0: fails, no ack → #0 pending again"));
    assert!(text.contains("#0 DEAD-LETTERED after 3 deliveries"));
    assert!(text.contains("replica t0 none -> v0 price 0"));
    let loss = texts(&drawn, "msc-loss");
    assert_eq!(loss.len(), 1);
    assert!(loss[0].starts_with("8. nothing is stuck:") && loss[0].contains("step 5"));
}

#[test]
fn an_expiry_a_redelivery_and_two_acks_are_drawn() {
    let actions = [
        Action::CreateTicket,
        deliver(Group::Orders, 0, 0),
        Action::ExpireAckWait { message: 0 },
        deliver(Group::Orders, 1, 0),
        Action::Ack {
            group: Group::Orders,
            member: 0,
        },
        Action::Ack {
            group: Group::Orders,
            member: 1,
        },
    ];
    let (model, trace) = trace(Variant::Reference, &actions);
    let drawn = elements(&of_trace(&model, &trace, "reference", &[]));
    let text = all_text(&drawn);
    assert_eq!(notes(&drawn, "msc-expiry"), 1);
    assert!(text.contains(
        "ACK WAIT of #0 expires while orders-service member 0 still works on it → #0 pending again"
    ));
    assert!(text.contains("deliver #0 ticket:created(t0 v0 price 0), delivery 2"));
    assert!(text.contains("replica t0 already has this event: will ack"));
    assert_eq!(arrows(&drawn, "msc-ack").len(), 2);
    assert!(text.contains("ack #0: already acknowledged, no effect"));
    assert!(
        texts(&drawn, "msc-loss").is_empty(),
        "the reference loses nothing"
    );
}

#[test]
fn a_publisher_retry_comes_from_the_lane_that_published_first() {
    let config = Config {
        duplicates: 1,
        ..Config::new(Variant::NoOutbox)
    };
    let model = TicketingModel::new(config);
    let actions = [
        Action::CreateTicket,
        Action::PublishSaved {
            service: Service::Tickets,
            entry: 0,
        },
        Action::DuplicatePublish { message: 0 },
    ];
    let trace = Trace::from_actions(&model, &actions).expect("enabled");
    let drawn = elements(&of_trace(&model, &trace, "retry", &[]));
    let owner_x = drawn
        .iter()
        .find(|e| e.has_class("msc-lane-line"))
        .and_then(|e| e.attribute("x1"))
        .expect("the owner's lane line");
    let retries = arrows(&drawn, "msc-retry");
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0].attribute("x1"), Some(owner_x));
    assert!(all_text(&drawn).contains("retry of #0: stored again as #1"));
    assert!(all_text(&drawn).contains("saved; will publish ticket:created(t0 v0 price 0) later"));
}

#[test]
fn text_is_escaped_for_xml() {
    let (model, trace) = trace(Variant::RacyReserve, &DOUBLE_BOOKING[..2]);
    let svg = of_trace(&model, &trace, r#"<b> & "quoted" 'too'"#, &[]);
    assert!(svg.contains("&lt;b&gt; &amp; &quot;quoted&quot; &apos;too&apos;"));
    let drawn = elements(&svg);
    assert!(all_text(&drawn).contains(r#"<b> & "quoted" 'too'"#));
}

#[test]
fn losses_are_found_at_the_first_failing_step() {
    let (model, trace) = trace(Variant::RacyReserve, &DOUBLE_BOOKING);
    let found = losses(&model, &trace, &Prop::ALL);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].prop, Prop::SingleReservation);
    assert_eq!(found[0].step, 6);
}

#[test]
fn the_explorer_view_stacks_the_state_above_the_chart() {
    let model = TicketingModel::new(Config::new(Variant::RacyReserve));
    let initial = model.init_states().remove(0);
    let path = Path::from_actions(&model, initial, &DOUBLE_BOOKING).expect("a path");
    let drawn = elements(&explorer_view(&model, &path));
    assert_eq!(drawn[0].name, "svg");
    assert!(
        drawn.iter().any(|e| e.has_class("state-title")),
        "the state"
    );
    assert!(drawn.iter().any(|e| e.has_class("msc-lane")), "the chart");
    assert!(all_text(&drawn).contains("violated: single reservation"));
    assert_eq!(
        texts(&drawn, "msc-loss"),
        ["3. single reservation: VIOLATED at step 6"]
    );
}

#[test]
fn wrapping_keeps_every_word_and_every_line_short() {
    let text = "deliver #12 ticket:updated(t0 v12 price 11 order o3), delivery 3 averyveryverylongwordindeed";
    let lines = wrap(text, 20);
    assert!(
        lines.iter().all(|line| line.chars().count() <= 20),
        "{lines:?}"
    );
    assert_eq!(lines.concat().replace(' ', ""), text.replace(' ', ""));
    assert_eq!(wrap("short", 20), ["short"]);
    assert_eq!(wrap("", 20), [""]);
}

#[test]
fn an_edit_of_a_reserved_ticket_is_flagged_where_it_happens() {
    let actions = [
        Action::CreateTicket,
        deliver(Group::Orders, 0, 0),
        Action::CreateOrder { ticket: 0 },
        deliver(Group::Tickets, 0, 1),
        Action::Save {
            group: Group::Tickets,
            member: 0,
        },
        Action::UpdatePrice { ticket: 0 },
    ];
    let (model, trace) = trace(Variant::EditReserved, &actions);
    let drawn = elements(&counterexample(&model, &trace, Prop::ReservedTicketsFrozen));
    let text = all_text(&drawn);
    assert_eq!(notes(&drawn, "msc-alarm"), 1);
    assert!(text.contains("t0 names order o0, yet its price changed 0 -> 1"));
    assert!(text.contains("edit: ticket t0 v1 -> v2 price 1, order o0"));
    assert!(text.contains("read ticket t0 at v0: will save"));
    assert_eq!(
        texts(&drawn, "msc-loss"),
        ["4. reserved tickets are frozen: VIOLATED at step 6"]
    );
}
