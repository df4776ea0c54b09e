//! The design variants of SPEC.md section 2: the reference design, and each variant that
//! leaves one design element out (plus `course`, the course's design as taught).
//!
//! Services consult a [`Variant`] only through its questions (`checks_version`,
//! `uses_outbox`, ...), one per design element, so each element's code path is switched in
//! exactly one place and the names match SPEC.md's table.

use std::fmt;
use std::str::FromStr;

/// Which design elements are on. `Reference` has all of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Every design element of SPEC.md section 2.
    #[default]
    Reference,
    /// `ticket:updated` applied whatever its version.
    NaiveVersion,
    /// Reserving or releasing a ticket does not publish `ticket:updated`.
    NoReservePublish,
    /// Edits of a reserved ticket are accepted.
    EditReserved,
    /// Listeners acknowledge before their write is durable.
    AckBeforeSave,
    /// The course's listener: a record not found by version is an error (no ack), so an
    /// already-applied duplicate is never acknowledged.
    CourseListener,
    /// The course's reservation: check `isReserved`, then insert, not atomically.
    RacyReserve,
    /// The course's order listeners: set or clear `orderId` whatever order events arrive in.
    UnorderedOrderEvents,
    /// Save, then publish (no transactional outbox, no publish id).
    NoOutbox,
    /// A listener's version conflict fails the delivery (no ack) instead of re-reading.
    ConflictNak,
    /// The course's design as taught: racy reservation, the course's listeners (duplicates
    /// and conflicts not acknowledged), unordered order events, no outbox.
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

    /// SPEC.md's name for the variant.
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

    /// `ticket:updated` is applied only at `version - 1` (otherwise: whatever arrives).
    pub const fn checks_version(self) -> bool {
        !matches!(self, Variant::NaiveVersion)
    }

    /// Reserving and releasing a ticket publish `ticket:updated`.
    pub const fn publishes_reservations(self) -> bool {
        !matches!(self, Variant::NoReservePublish)
    }

    /// An edit of a reserved ticket is rejected ("Cannot edit a reserved ticket").
    pub const fn rejects_reserved_edits(self) -> bool {
        !matches!(self, Variant::EditReserved)
    }

    /// Listeners acknowledge only after their write is durable.
    pub const fn acks_after_save(self) -> bool {
        !matches!(self, Variant::AckBeforeSave)
    }

    /// An event whose effect is already in the store is acknowledged, and a gap waits
    /// (otherwise the course's listener: not found is an error, no ack).
    pub const fn acks_duplicates(self) -> bool {
        !matches!(self, Variant::CourseListener | Variant::Course)
    }

    /// Creating an order checks and inserts in one atomic write.
    pub const fn reserves_atomically(self) -> bool {
        !matches!(self, Variant::RacyReserve | Variant::Course)
    }

    /// The tickets service applies a ticket's order events in `reservation` order.
    pub const fn orders_order_events(self) -> bool {
        !matches!(self, Variant::UnorderedOrderEvents | Variant::Course)
    }

    /// Record changes and their events are written together and relayed with publish ids.
    pub const fn uses_outbox(self) -> bool {
        !matches!(self, Variant::NoOutbox | Variant::Course)
    }

    /// A listener whose save conflicts re-reads and decides again within the same delivery.
    pub const fn rereads_on_conflict(self) -> bool {
        !matches!(self, Variant::ConflictNak | Variant::Course)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name given is not one of SPEC.md's variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown variant {given:?}; expected one of: {}", Variant::ALL.map(Variant::name).join(", "))]
pub struct UnknownVariant {
    given: String,
}

impl FromStr for Variant {
    type Err = UnknownVariant;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Variant::ALL
            .into_iter()
            .find(|variant| variant.name() == name)
            .ok_or_else(|| UnknownVariant {
                given: name.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for variant in Variant::ALL {
            assert_eq!(variant.name().parse::<Variant>(), Ok(variant));
        }
        assert!("nope".parse::<Variant>().is_err());
    }

    #[test]
    fn each_single_element_variant_leaves_out_exactly_one_element() {
        let elements = |v: Variant| {
            [
                v.checks_version(),
                v.publishes_reservations(),
                v.rejects_reserved_edits(),
                v.acks_after_save(),
                v.acks_duplicates(),
                v.reserves_atomically(),
                v.orders_order_events(),
                v.uses_outbox(),
                v.rereads_on_conflict(),
            ]
        };
        assert!(elements(Variant::Reference).iter().all(|on| *on));
        for variant in &Variant::ALL[1..10] {
            let off = elements(*variant).iter().filter(|on| !**on).count();
            assert_eq!(off, 1, "{variant}");
        }
        // The course: atomic reservation, idempotent duplicates, ordered order events,
        // re-reading on conflict and the outbox are off; the rest is on.
        assert_eq!(
            elements(Variant::Course),
            [true, true, true, true, false, false, false, false, false]
        );
    }
}
