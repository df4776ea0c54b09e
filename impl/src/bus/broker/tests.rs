//! The broker's rules, one test each: the stream and its duplicate window, a group's
//! deliveries and their settling (ack, nak, delayed nak, term, expiry), crashes and leaving,
//! and the window that shrinks as the ack floor moves. Every test steps a [`BrokerCore`] by
//! hand: no clock, no task.

use bytes::Bytes;

use super::*;
use crate::bus::{DeadLetterReason, PublishAck};

const CREATED: &str = "ticket:created";
const UPDATED: &str = "ticket:updated";
const ORDER: &str = "order:created";

fn core() -> BrokerCore {
    BrokerCore::new(DuplicateWindow::Unbounded)
}

fn publish(core: &mut BrokerCore, subject: &str, body: &str) -> Seq {
    match core.publish(subject, Bytes::copy_from_slice(body.as_bytes()), None) {
        PublishAck::Stored { seq } => seq,
        PublishAck::Duplicate => panic!("no publish id, cannot be a duplicate"),
    }
}

/// A core with `n` messages on `ticket:created` and group "orders" (max_deliver 3) with
/// two members.
fn setup(n: usize) -> (BrokerCore, GroupId, MemberId, MemberId) {
    let mut core = core();
    for i in 0..n {
        publish(&mut core, CREATED, &format!("m{i}"));
    }
    let group = core.group("orders", &[CREATED, UPDATED], 3).unwrap();
    let a = core.join(group).unwrap();
    let b = core.join(group).unwrap();
    (core, group, a, b)
}

#[test]
fn publish_numbers_messages_from_one_and_stores_them() {
    let mut core = core();
    assert_eq!(publish(&mut core, CREATED, "a"), 1);
    assert_eq!(publish(&mut core, ORDER, "b"), 2);
    let second = core.message(2).unwrap();
    assert_eq!(second.subject, ORDER);
    assert_eq!(&second.payload[..], b"b");
    assert_eq!(core.stream_len(), 2);
    assert!(core.message(0).is_none() && core.message(3).is_none());
}

#[test]
fn a_publish_id_in_the_window_is_dropped() {
    let mut core = core();
    let ack = core.publish(CREATED, Bytes::from_static(b"a"), Some("id-1"));
    assert_eq!(ack, PublishAck::Stored { seq: 1 });
    let again = core.publish(CREATED, Bytes::from_static(b"a"), Some("id-1"));
    assert_eq!(again, PublishAck::Duplicate);
    let other = core.publish(CREATED, Bytes::from_static(b"b"), Some("id-2"));
    assert_eq!(other, PublishAck::Stored { seq: 2 });
    assert_eq!(core.message(1).unwrap().publish_id, Some("id-1"));
    assert_eq!(core.stream_len(), 2);
}

#[test]
fn a_count_window_forgets_the_oldest_ids() {
    let mut core = BrokerCore::new(DuplicateWindow::Recent(2));
    for id in ["a", "b", "c"] {
        assert!(matches!(
            core.publish(CREATED, Bytes::new(), Some(id)),
            PublishAck::Stored { .. }
        ));
    }
    // "a" fell out of the window of 2; "b" and "c" are still in it.
    assert!(matches!(
        core.publish(CREATED, Bytes::new(), Some("a")),
        PublishAck::Stored { .. }
    ));
    assert_eq!(
        core.publish(CREATED, Bytes::new(), Some("c")),
        PublishAck::Duplicate
    );
    let mut none = BrokerCore::new(DuplicateWindow::Recent(0));
    none.publish(CREATED, Bytes::new(), Some("a"));
    assert!(matches!(
        none.publish(CREATED, Bytes::new(), Some("a")),
        PublishAck::Stored { .. }
    ));
}

#[test]
fn a_full_duplicate_window_keeps_its_size_under_steady_publishing() {
    const WINDOW: usize = 1_000;
    let mut core = BrokerCore::new(DuplicateWindow::Recent(WINDOW));
    let mut publish_ids = (0..).map(|n: u64| format!("ticket:updated:{n}"));
    for id in publish_ids.by_ref().take(WINDOW + 1) {
        core.publish(CREATED, Bytes::new(), Some(&id));
    }
    let filled = core.dedup.ids.capacity();
    // Many windows' worth of new ids, each evicting the oldest. `capacity()` counts free
    // slots, so tombstones lower it and an in-place rehash restores it; only a doubling of
    // the table takes it to twice what it was when the window first filled.
    for id in publish_ids.take(20 * WINDOW) {
        core.publish(CREATED, Bytes::new(), Some(&id));
        assert!(
            core.dedup.ids.capacity() < 2 * filled,
            "the window's map doubled after it first filled ({filled} -> {})",
            core.dedup.ids.capacity()
        );
    }
    assert_eq!(core.dedup.ids.len(), WINDOW);
}

#[test]
fn a_new_group_delivers_everything_from_the_start_of_the_stream() {
    let (mut core, group, a, _) = setup(3);
    assert_eq!(core.pending(group), vec![1, 2, 3]);
    assert_eq!(core.next_pending(group), Some(1));
    let ticket = core.deliver(group, 1, a).unwrap();
    assert_eq!(
        (ticket.seq, ticket.delivery_count, ticket.member),
        (1, 1, a)
    );
    assert_eq!(&*ticket.subject, CREATED);
    assert_eq!(&ticket.payload[..], b"m0");
    assert_eq!(
        core.status(group, 1),
        Some(Status::InFlight {
            member: a,
            deliveries: 1
        })
    );
    assert_eq!(core.pending(group), vec![2, 3]);
    assert_eq!(core.held(a), 1);
}

#[test]
fn a_group_never_sees_subjects_it_does_not_listen_to() {
    let mut core = core();
    publish(&mut core, ORDER, "x");
    publish(&mut core, CREATED, "y");
    publish(&mut core, ORDER, "z");
    let group = core.group("orders", &[CREATED], 3).unwrap();
    let a = core.join(group).unwrap();
    assert_eq!(core.pending(group), vec![2]);
    assert_eq!(core.next_pending(group), Some(2));
    assert_eq!(
        core.deliver(group, 1, a),
        Err(CoreError::NotForGroup { group, seq: 1 })
    );
    core.deliver(group, 2, a).unwrap();
    assert_eq!(core.next_pending(group), None);
    assert_eq!(core.status(group, 3), None);
    let all = core.group("all", &[] as &[&str], 3).unwrap();
    assert_eq!(core.pending(all), vec![1, 2, 3]);
}

#[test]
fn any_pending_message_can_be_delivered_and_skipped_ones_stay_pending() {
    let (mut core, group, a, b) = setup(4);
    core.deliver(group, 3, a).unwrap();
    assert_eq!(core.pending(group), vec![1, 2, 4]);
    core.deliver(group, 1, b).unwrap();
    assert_eq!(core.pending(group), vec![2, 4]);
    assert_eq!(core.next_pending(group), Some(2));
    let err = core.deliver(group, 3, b).unwrap_err();
    assert!(matches!(err, CoreError::NotPending { seq: 3, .. }));
    assert_eq!(core.deliver(group, 9, b), Err(CoreError::NoSuchMessage(9)));
}

#[test]
fn an_ack_from_any_delivery_acknowledges_the_message() {
    let (mut core, group, a, b) = setup(2);
    core.deliver(group, 1, a).unwrap();
    assert_eq!(
        core.ack(group, 1),
        Effect::Changed {
            status: Status::Acked,
            released: Some(a)
        }
    );
    assert_eq!(core.held(a), 0);
    assert_eq!(core.ack(group, 1), Effect::Ignored, "already acked");
    // A late ack from the first delivery, after the message was redelivered, still acks.
    core.deliver(group, 2, a).unwrap();
    core.expire(group, 2, 1);
    core.deliver(group, 2, b).unwrap();
    assert_eq!(
        core.ack(group, 2),
        Effect::Changed {
            status: Status::Acked,
            released: Some(b)
        }
    );
    assert_eq!(core.status(group, 2), Some(Status::Acked));
    assert!(core.pending(group).is_empty());
    assert_eq!(core.ack(group, 7), Effect::Ignored, "never delivered");
}

#[test]
fn a_late_ack_after_expiry_acknowledges_the_pending_message() {
    let (mut core, group, a, _) = setup(1);
    core.deliver(group, 1, a).unwrap();
    core.expire(group, 1, 1);
    assert_eq!(core.pending(group), vec![1]);
    assert!(matches!(core.ack(group, 1), Effect::Changed { .. }));
    assert!(core.pending(group).is_empty());
}

#[test]
fn a_nak_makes_the_current_delivery_pending_and_counts_it() {
    let (mut core, group, a, b) = setup(1);
    core.deliver(group, 1, a).unwrap();
    assert_eq!(
        core.nak(group, 1, 1),
        Effect::Changed {
            status: Status::Pending { deliveries: 1 },
            released: Some(a)
        }
    );
    let again = core.deliver(group, 1, b).unwrap();
    assert_eq!(again.delivery_count, 2);
    assert_eq!(core.nak(group, 1, 1), Effect::Ignored, "stale nak");
    assert_eq!(
        core.status(group, 1),
        Some(Status::InFlight {
            member: b,
            deliveries: 2
        })
    );
}

#[test]
fn a_delayed_nak_waits_for_its_release() {
    let (mut core, group, a, _) = setup(1);
    core.deliver(group, 1, a).unwrap();
    assert_eq!(
        core.nak_delayed(group, 1, 1),
        Effect::Changed {
            status: Status::Delayed { deliveries: 1 },
            released: Some(a)
        }
    );
    assert!(core.pending(group).is_empty());
    assert_eq!(core.next_pending(group), None);
    assert_eq!(core.expire(group, 1, 1), Effect::Ignored, "not in flight");
    assert_eq!(core.release(group, 1, 2), Effect::Ignored, "stale release");
    assert_eq!(
        core.release(group, 1, 1),
        Effect::Changed {
            status: Status::Pending { deliveries: 1 },
            released: None
        }
    );
    assert_eq!(core.pending(group), vec![1]);
}

#[test]
fn a_term_dead_letters_at_once_with_its_reason() {
    let (mut core, group, a, _) = setup(2);
    core.deliver(group, 1, a).unwrap();
    assert_eq!(core.term(group, 1, 2, "stale"), Effect::Ignored);
    assert_eq!(
        core.term(group, 1, 1, "bad json"),
        Effect::Changed {
            status: Status::Dead,
            released: Some(a)
        }
    );
    assert_eq!(core.status(group, 1), Some(Status::Dead));
    let dead = &core.dead_letters().next().unwrap();
    assert_eq!(dead.stream_seq, 1);
    assert_eq!(&*dead.queue_group, "orders");
    assert_eq!(dead.subject, CREATED);
    assert_eq!(dead.payload, b"m0");
    assert_eq!(
        dead.reason,
        DeadLetterReason::Terminated("bad json".to_owned())
    );
    assert_eq!(core.pending(group), vec![2]);
    assert_eq!(core.ack(group, 1), Effect::Ignored, "dead is final");
}

#[test]
fn expiry_redelivers_until_max_deliver_then_dead_letters() {
    let (mut core, group, a, b) = setup(1);
    for delivery in 1..=3 {
        let member = if delivery % 2 == 1 { a } else { b };
        let ticket = core.deliver(group, 1, member).unwrap();
        assert_eq!(ticket.delivery_count, delivery);
        assert_eq!(core.expire(group, 1, delivery - 1), Effect::Ignored);
        let effect = core.expire(group, 1, delivery);
        let expected = if delivery < 3 {
            Status::Pending {
                deliveries: delivery,
            }
        } else {
            Status::Dead
        };
        assert_eq!(
            effect,
            Effect::Changed {
                status: expected,
                released: Some(member)
            }
        );
    }
    assert_eq!(
        core.dead_letters().next().unwrap().reason,
        DeadLetterReason::MaxDeliveries(3)
    );
    assert!(core.pending(group).is_empty());
    assert_eq!(core.held(a) + core.held(b), 0);
}

#[test]
fn a_nak_of_the_last_allowed_delivery_dead_letters() {
    let (mut core, group, a, _) = setup(1);
    for delivery in 1..=3 {
        core.deliver(group, 1, a).unwrap();
        core.nak(group, 1, delivery);
    }
    assert_eq!(core.status(group, 1), Some(Status::Dead));
    assert_eq!(core.dead_letters().len(), 1);
}

#[test]
fn a_crash_returns_what_the_member_held_and_nothing_else() {
    let (mut core, group, a, b) = setup(4);
    core.deliver(group, 1, a).unwrap();
    core.deliver(group, 2, b).unwrap();
    core.deliver(group, 3, a).unwrap();
    assert_eq!(core.crash(group, a), Ok(2));
    assert_eq!(core.held(a), 0);
    assert_eq!(core.pending(group), vec![1, 3, 4]);
    assert_eq!(
        core.status(group, 2),
        Some(Status::InFlight {
            member: b,
            deliveries: 1
        })
    );
    // The crashed member's late signals are stale; its late ack still acknowledges.
    assert_eq!(core.nak(group, 1, 1), Effect::Ignored);
    assert!(matches!(core.ack(group, 3), Effect::Changed { .. }));
    // It stays in the group and can be delivered to again.
    assert_eq!(core.deliver(group, 1, a).unwrap().delivery_count, 2);
}

#[test]
fn a_crash_on_the_last_allowed_delivery_dead_letters() {
    let (mut core, group, a, _) = setup(1);
    for delivery in 1..=2 {
        core.deliver(group, 1, a).unwrap();
        core.expire(group, 1, delivery);
    }
    core.deliver(group, 1, a).unwrap();
    assert_eq!(core.crash(group, a), Ok(1));
    assert_eq!(core.status(group, 1), Some(Status::Dead));
    assert_eq!(
        core.dead_letters().next().unwrap().reason,
        DeadLetterReason::MaxDeliveries(3)
    );
}

#[test]
fn a_member_that_left_cannot_be_delivered_to_but_the_group_lives_on() {
    let (mut core, group, a, _) = setup(2);
    core.deliver(group, 1, a).unwrap();
    core.ack(group, 1);
    core.deliver(group, 2, a).unwrap();
    assert_eq!(core.leave(a), Ok(1));
    assert_eq!(core.deliver(group, 2, a), Err(CoreError::UnknownMember(a)));
    // The durable group remembers its acks: a new member resumes where the old one left.
    let c = core.join(group).unwrap();
    assert_eq!(core.pending(group), vec![2]);
    assert_eq!(core.deliver(group, 2, c).unwrap().delivery_count, 2);
}

#[test]
fn groups_are_independent_and_keep_their_first_settings() {
    let (mut core, orders, a, _) = setup(2);
    let again = core.group("orders", &[ORDER], 9).unwrap();
    assert_eq!(again, orders);
    assert_eq!(core.max_deliver(orders), Some(3));
    let tickets = core.group("tickets", &[CREATED], 5).unwrap();
    let t = core.join(tickets).unwrap();
    core.deliver(orders, 1, a).unwrap();
    core.ack(orders, 1);
    assert_eq!(core.pending(tickets), vec![1, 2]);
    assert_eq!(
        core.deliver(tickets, 1, a),
        Err(CoreError::NotAMember {
            group: tickets,
            member: a
        })
    );
    core.deliver(tickets, 1, t).unwrap();
    assert_eq!(
        core.group("x", &[CREATED], 0),
        Err(CoreError::ZeroMaxDeliver)
    );
}

#[test]
fn the_window_shrinks_as_the_ack_floor_moves() {
    let (mut core, group, a, _) = setup(100);
    for seq in 1..=100 {
        let next = core.next_pending(group).unwrap();
        assert_eq!(next, seq);
        core.deliver(group, next, a).unwrap();
        core.ack(group, next);
    }
    let g = &core.groups[group.index()];
    assert!(g.window.is_empty(), "every message acked: nothing kept");
    assert_eq!(g.base, 101);
    assert_eq!(core.status(group, 50), Some(Status::Acked));
    assert_eq!(core.next_pending(group), None);
}

// ----- retention: releasing settled messages, the dead letters' cap -----

fn interest_core(dead_letters_max: usize) -> BrokerCore {
    BrokerCore::with_retention(
        DuplicateWindow::Unbounded,
        Retention::Interest,
        dead_letters_max,
    )
}

/// Delivers `seq` to `member` of `group` and acknowledges it.
fn deliver_and_ack(core: &mut BrokerCore, group: GroupId, member: MemberId, seq: Seq) {
    core.deliver(group, seq, member).unwrap();
    assert!(matches!(core.ack(group, seq), Effect::Changed { .. }));
}

#[test]
fn interest_retention_releases_a_message_once_every_listening_group_settled_it() {
    let mut core = interest_core(DEAD_LETTERS_MAX);
    let orders = core.group("orders", &[CREATED], 3).unwrap();
    let audit = core.group("audit", &[CREATED, ORDER], 3).unwrap();
    let (o, a) = (core.join(orders).unwrap(), core.join(audit).unwrap());
    let created = publish(&mut core, CREATED, "created");
    let order = publish(&mut core, ORDER, "order");
    deliver_and_ack(&mut core, orders, o, created);
    assert!(core.message(created).is_some(), "audit has not settled it");
    core.deliver(audit, created, a).unwrap();
    core.term(audit, created, 1, "poison");
    assert!(
        core.message(created).is_none(),
        "dead-lettered: settled too"
    );
    assert_eq!(core.retained(), 1, "only the order message is held");
    assert_eq!(core.status(orders, created), Some(Status::Acked));
    assert_eq!(core.status(audit, created), Some(Status::Dead));
    deliver_and_ack(&mut core, audit, a, order);
    assert_eq!(core.retained(), 0);
    assert_eq!(core.stream_len(), 2, "sequence numbers are not reused");
    assert_eq!(publish(&mut core, CREATED, "next"), 3);
    assert_eq!(core.next_pending(orders), Some(3));
}

#[test]
fn a_message_no_group_listens_to_is_kept_until_one_does_and_settles_it() {
    let mut core = interest_core(DEAD_LETTERS_MAX);
    let orders = core.group("orders", &[CREATED], 3).unwrap();
    let seq = publish(&mut core, ORDER, "nobody listens yet");
    assert_eq!(core.next_pending(orders), None);
    assert!(core.message(seq).is_some());
    let tickets = core.group("tickets", &[ORDER], 3).unwrap();
    let t = core.join(tickets).unwrap();
    assert_eq!(core.pending(tickets), vec![seq]);
    deliver_and_ack(&mut core, tickets, t, seq);
    assert!(core.message(seq).is_none());
    assert_eq!(core.retained(), 0);
}

#[test]
fn a_group_created_later_starts_at_the_oldest_message_held() {
    let mut core = interest_core(DEAD_LETTERS_MAX);
    let orders = core.group("orders", &[CREATED], 3).unwrap();
    let o = core.join(orders).unwrap();
    for body in ["1", "2", "3"] {
        publish(&mut core, CREATED, body);
    }
    deliver_and_ack(&mut core, orders, o, 1);
    deliver_and_ack(&mut core, orders, o, 2);
    let late = core.group("late", &[CREATED], 3).unwrap();
    let l = core.join(late).unwrap();
    assert_eq!(core.pending(late), vec![3]);
    assert_eq!(
        core.status(late, 1),
        None,
        "released before the group existed"
    );
    assert_eq!(
        core.deliver(late, 1, l),
        Err(CoreError::NoSuchMessage(1)),
        "a released message cannot be delivered"
    );
    // The message both groups hold is released only when both settled it.
    deliver_and_ack(&mut core, late, l, 3);
    assert!(core.message(3).is_some());
    deliver_and_ack(&mut core, orders, o, 3);
    assert!(core.message(3).is_none());
}

#[test]
fn an_unsettled_message_does_not_keep_the_released_ones_after_it() {
    let mut core = interest_core(DEAD_LETTERS_MAX);
    let orders = core.group("orders", &[CREATED], 3).unwrap();
    let o = core.join(orders).unwrap();
    for n in 0..1000 {
        publish(&mut core, CREATED, &format!("m{n}"));
    }
    // The first stays in flight; every later one is acknowledged.
    core.deliver(orders, 1, o).unwrap();
    for seq in 2..=1000 {
        deliver_and_ack(&mut core, orders, o, seq);
    }
    assert_eq!(core.retained(), 1);
    assert_eq!(core.messages().map(|m| m.seq).collect::<Vec<_>>(), vec![1]);
    assert_eq!(
        core.stream.len(),
        1,
        "released messages leave even behind an unsettled message"
    );
    assert!(matches!(core.ack(orders, 1), Effect::Changed { .. }));
    assert!(
        core.stream.is_empty(),
        "all settled: the stream holds nothing"
    );
    assert!(core.groups[orders.index()].window.is_empty());
    assert_eq!(core.status(orders, 500), Some(Status::Acked));
}

#[test]
fn dead_letters_are_kept_up_to_their_cap_and_the_dropped_are_counted() {
    let mut core = interest_core(2);
    assert_eq!(core.dead_letters_max(), 2);
    let orders = core.group("orders", &[CREATED], 3).unwrap();
    let o = core.join(orders).unwrap();
    for seq in 1..=3 {
        publish(&mut core, CREATED, &format!("poison {seq}"));
        core.deliver(orders, seq, o).unwrap();
        core.term(orders, seq, 1, "poison");
    }
    let kept: Vec<Seq> = core.dead_letters().map(|l| l.stream_seq).collect();
    assert_eq!(kept, vec![2, 3], "the oldest was dropped");
    assert_eq!(core.dead_letters_dropped(), 1);
    assert_eq!(core.status(orders, 2), Some(Status::Dead));
    assert!(
        core.groups[orders.index()].dead.len() <= 2,
        "the group forgot it too"
    );
    assert!(core.remove_dead_letter(2));
    assert!(!core.remove_dead_letter(2), "removed once");
    assert_eq!(core.dead_letters().len(), 1);
}

#[test]
fn everything_retention_keeps_acknowledged_messages() {
    let (mut core, group, a, _) = setup(1);
    deliver_and_ack(&mut core, group, a, 1);
    assert_eq!(core.retained(), 1);
    assert_eq!(&core.message(1).unwrap().payload[..], b"m0");
}
