//! What is checked: the design [`Variant`] and the bounds of the exploration.
//!
//! Budgets bound the adversary and the clients, never the system's own progress (SPEC.md
//! section 3): client operations, crashes, spurious ack-wait expiries and duplicate publishes
//! draw from budgets; delivering, relaying and applying are always enabled.
//!
//! The invariant: a configuration that passes [`Config::validate`] fits the state's fixed
//! capacities (tickets, members, orders, versions, messages), so no run of the model can
//! overflow them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::state::{MAX_MEMBERS, MAX_MESSAGES, MAX_ORDERS, MAX_TICKETS, MAX_VERSIONS};

/// The design variants of SPEC.md section 2. The model keeps its own copy of this list (it
/// must not depend on the implementation); the harness maps the two by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Every design element.
    #[default]
    Reference,
    /// `ticket:updated` applied whatever its version.
    NaiveVersion,
    /// Reserving or releasing a ticket publishes nothing.
    NoReservePublish,
    /// Edits of a reserved ticket are accepted.
    EditReserved,
    /// Listeners acknowledge before their write.
    AckBeforeSave,
    /// Not found by version is an error: duplicates are never acknowledged.
    CourseListener,
    /// Check `isReserved`, then insert.
    RacyReserve,
    /// Order events set or clear `orderId` in whatever order they arrive.
    UnorderedOrderEvents,
    /// Save, then publish, without publish ids.
    NoOutbox,
    /// A listener's version conflict fails the delivery.
    ConflictNak,
    /// The course as taught: racy reservation, the course's listeners, no outbox.
    Course,
}

impl Variant {
    /// Every variant, the reference first, in SPEC.md's order.
    pub const ALL: [Variant; 11] = [
        Variant::Reference,
        Variant::NaiveVersion,
        Variant::NoReservePublish,
        Variant::EditReserved,
        Variant::AckBeforeSave,
        Variant::CourseListener,
        Variant::RacyReserve,
        Variant::UnorderedOrderEvents,
        Variant::NoOutbox,
        Variant::ConflictNak,
        Variant::Course,
    ];

    /// SPEC.md's name.
    pub const fn name(self) -> &'static str {
        match self {
            Variant::Reference => "reference",
            Variant::NaiveVersion => "naive-version",
            Variant::NoReservePublish => "no-reserve-publish",
            Variant::EditReserved => "edit-reserved",
            Variant::AckBeforeSave => "ack-before-save",
            Variant::CourseListener => "course-listener",
            Variant::RacyReserve => "racy-reserve",
            Variant::UnorderedOrderEvents => "unordered-order-events",
            Variant::NoOutbox => "no-outbox",
            Variant::ConflictNak => "conflict-nak",
            Variant::Course => "course",
        }
    }

    /// `ticket:updated` applies only at `version - 1`.
    pub(crate) const fn checks_version(self) -> bool {
        !matches!(self, Variant::NaiveVersion)
    }
    /// Reservation changes publish `ticket:updated`.
    pub(crate) const fn publishes_reservations(self) -> bool {
        !matches!(self, Variant::NoReservePublish)
    }
    /// Edits of a reserved ticket are rejected.
    pub(crate) const fn rejects_reserved_edits(self) -> bool {
        !matches!(self, Variant::EditReserved)
    }
    /// Listeners acknowledge after their write.
    pub const fn acks_after_save(self) -> bool {
        !matches!(self, Variant::AckBeforeSave)
    }
    /// Already-applied events are acknowledged and gaps wait.
    pub(crate) const fn acks_duplicates(self) -> bool {
        !matches!(self, Variant::CourseListener | Variant::Course)
    }
    /// The reservation check and insert are one atomic write.
    pub(crate) const fn reserves_atomically(self) -> bool {
        !matches!(self, Variant::RacyReserve | Variant::Course)
    }
    /// Order events apply in `reservation` order.
    pub(crate) const fn orders_order_events(self) -> bool {
        !matches!(self, Variant::UnorderedOrderEvents | Variant::Course)
    }
    /// Transactional outbox and publish ids.
    pub const fn uses_outbox(self) -> bool {
        !matches!(self, Variant::NoOutbox | Variant::Course)
    }
    /// A listener's conflict re-reads within the same delivery.
    pub(crate) const fn rereads_on_conflict(self) -> bool {
        !matches!(self, Variant::ConflictNak | Variant::Course)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Variant::ALL
            .into_iter()
            .find(|variant| variant.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown variant {name:?}; expected one of: {}",
                    Variant::ALL.map(Variant::name).join(", ")
                )
            })
    }
}

/// The bounds of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Config {
    /// The design checked.
    pub variant: Variant,
    /// Tickets clients create.
    pub tickets: u8,
    /// Members in each queue group.
    pub members: u8,
    /// Price updates clients issue (over all tickets).
    pub updates: u8,
    /// Orders clients place.
    pub orders: u8,
    /// Orders clients cancel.
    pub cancels: u8,
    /// Crashes: of a member mid-handler, of a relay mid-publish, of an HTTP handler between
    /// its save and its publish or between its reservation check and its insert.
    pub crashes: u8,
    /// Spurious ack-wait expiries: an ack arriving later than `ack_wait`.
    pub redeliveries: u8,
    /// Duplicate deliveries of an already-published event as a new message: a publisher's
    /// retry without publish ids, or, with the outbox, a relay republishing after the broker's
    /// dedup window (or a broker redelivering a settled message). Every design, the
    /// reference included (SPEC.md section 3).
    pub duplicates: u8,
    /// Deliveries of one message before it is dead-lettered.
    pub max_deliver: u8,
}

impl Config {
    /// The default bounds for `variant`: one ticket ordered, cancelled and ordered again, two
    /// price updates, two members per group, one crash and one spurious redelivery. They reach
    /// every counterexample of SPEC.md's table, and the reference's proof at these bounds
    /// takes a second or two.
    pub const fn new(variant: Variant) -> Self {
        Self {
            variant,
            tickets: 1,
            members: 2,
            updates: 2,
            orders: 2,
            cancels: 1,
            crashes: 1,
            redeliveries: 1,
            duplicates: 0,
            max_deliver: Self::tolerated_deliveries(1, 1, 0),
        }
    }

    /// The `max_deliver` that tolerates every failed delivery the adversary can cause: one
    /// delivery, plus one per crash and per spurious expiry. With it a design that never
    /// fails a delivery on its own never dead-letters; one that does (a duplicate never
    /// acknowledged, a conflict that fails the delivery) runs out of attempts.
    pub const fn tolerated_deliveries(crashes: u8, redeliveries: u8, _duplicates: u8) -> u8 {
        1 + crashes + redeliveries
    }

    /// Checks the bounds fit the model's fixed-size state.
    pub fn validate(&self) -> Result<(), String> {
        let too_many = |what: &str, given: u8, max: usize| {
            Err(format!(
                "--{what} {given} is more than the model holds ({max})"
            ))
        };
        if self.tickets == 0 {
            return Err("--tickets must be at least 1".into());
        }
        if self.members == 0 {
            return Err("--members must be at least 1".into());
        }
        if self.max_deliver == 0 {
            return Err("--max-deliver must be at least 1".into());
        }
        if usize::from(self.tickets) > MAX_TICKETS {
            return too_many("tickets", self.tickets, MAX_TICKETS);
        }
        if usize::from(self.members) > MAX_MEMBERS {
            return too_many("members", self.members, MAX_MEMBERS);
        }
        if usize::from(self.orders) > MAX_ORDERS {
            return too_many("orders", self.orders, MAX_ORDERS);
        }
        // Every change of a ticket is a version: one per update and two per order.
        let versions = 1 + usize::from(self.updates) + 2 * usize::from(self.orders);
        if versions > MAX_VERSIONS {
            return Err(format!(
                "--updates {} and --orders {} give tickets {versions} versions; the model holds {MAX_VERSIONS}",
                self.updates, self.orders
            ));
        }
        if self.message_bound() > MAX_MESSAGES {
            return Err(format!(
                "these bounds can publish up to {} messages; the model holds {MAX_MESSAGES} \
                 (lower --orders, --cancels, --max-deliver or --duplicates)",
                self.message_bound()
            ));
        }
        Ok(())
    }

    /// An upper bound on the messages a run can publish: every client event, every
    /// `ticket:updated` a delivery of an order event can produce, relay re-publishes and
    /// duplicates.
    pub(crate) fn message_bound(&self) -> usize {
        let client_events = usize::from(self.tickets)
            + usize::from(self.updates)
            + usize::from(self.orders)
            + usize::from(self.cancels);
        let order_events = usize::from(self.orders) + usize::from(self.cancels);
        let per_order_event =
            if self.variant.orders_order_events() && self.variant.acks_duplicates() {
                1
            } else {
                usize::from(self.max_deliver)
            };
        client_events
            + order_events * per_order_event
            + usize::from(self.crashes)
            + usize::from(self.duplicates)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new(Variant::Reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_the_state_for_every_variant() {
        for variant in Variant::ALL {
            Config::new(variant).validate().unwrap();
        }
    }

    #[test]
    fn rejects_bounds_the_state_cannot_hold() {
        let config = Config {
            tickets: 9,
            ..Config::default()
        };
        assert!(config.validate().is_err());
        let config = Config {
            members: 0,
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn variant_names_round_trip() {
        for variant in Variant::ALL {
            assert_eq!(variant.name().parse::<Variant>(), Ok(variant));
            let json = serde_json::to_string(&variant).unwrap();
            assert_eq!(json, format!("\"{}\"", variant.name()));
        }
    }
}
