//! The model's state: both services' stores and outboxes, the broker, the members of both
//! queue groups, what the clients and the adversary have left, and ghost variables.
//!
//! Everything is a small fixed-size array of `u8`-sized values: a state is copied with one
//! `memcpy`, never allocates, and hashes only its live prefix. Tickets, orders and messages are
//! named by their index, in creation order (ticket 0 is the first ticket created, message 0
//! the first event published), which is also how the harness names the implementation's
//! records and stream sequence numbers.
//!
//! Prices are abstract: a ticket is created at price 0 and each edit adds 1, so a price names
//! the edit that set it. Titles change together with prices in every event and every write,
//! so one field stands for both.
//!
//! The invariant: only the first `len` items of every [`Slots`] are live and the rest are
//! default, so equality, hashing and packing read the live prefix alone; ghost variables are
//! written by transitions and read only by properties.

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// Most tickets a run can create.
pub const MAX_TICKETS: usize = 3;
/// Most members per queue group.
pub const MAX_MEMBERS: usize = 3;
/// Most orders a run can place.
pub const MAX_ORDERS: usize = 4;
/// Most messages a run can publish.
pub const MAX_MESSAGES: usize = 24;
/// Most events waiting in one service's outbox.
pub const MAX_OUTBOX: usize = 8;
/// Most versions of one ticket.
pub const MAX_VERSIONS: usize = 16;

/// Index of a ticket (creation order).
pub type TicketIx = u8;
/// Index of an order (creation order).
pub type OrderIx = u8;
/// Index of a message in the stream (publish order; stream sequence number - 1).
pub type MessageIx = u8;
/// An abstract price: the number of edits that led to it.
pub type Price = u8;
/// A record version.
pub type Version = u8;
/// A ticket's reservation-change number (SPEC.md section 1).
pub type Reservation = u8;

/// A fixed-capacity list: the first `len` items are live, the rest are default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slots<T, const N: usize> {
    len: u8,
    items: [T; N],
}

impl<T: Copy + Default, const N: usize> Default for Slots<T, N> {
    fn default() -> Self {
        Self {
            len: 0,
            items: [T::default(); N],
        }
    }
}

impl<T: Copy + Default, const N: usize> Slots<T, N> {
    /// The live items.
    pub fn as_slice(&self) -> &[T] {
        &self.items[..usize::from(self.len)]
    }

    /// The live items, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.items[..usize::from(self.len)]
    }

    /// Number of live items.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// No live items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The item at `index`, if live.
    pub fn get(&self, index: usize) -> Option<&T> {
        self.as_slice().get(index)
    }

    /// Appends `item`. The configuration's bounds guarantee room (`Config::validate`); running
    /// out is a bug in the model, so it panics.
    pub fn push(&mut self, item: T) {
        assert!(
            self.len() < N,
            "model capacity exceeded ({N}); see Config::validate"
        );
        self.items[self.len()] = item;
        self.len += 1;
    }

    /// Removes the item at `index`, keeping the order of the rest.
    pub fn remove(&mut self, index: usize) -> T {
        let live = self.len();
        assert!(index < live);
        let item = self.items[index];
        self.items.copy_within(index + 1..live, index);
        self.items[live - 1] = T::default();
        self.len -= 1;
        item
    }
}

impl<T: Hash + Copy + Default, const N: usize> Hash for Slots<T, N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The dead tail is always default, so hashing the live prefix is consistent with `Eq`.
        self.len.hash(state);
        for item in self.as_slice() {
            item.hash(state);
        }
    }
}

impl<T: Serialize + Copy + Default, const N: usize> Serialize for Slots<T, N> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de> + Copy + Default, const N: usize> Deserialize<'de> for Slots<T, N> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = Vec::<T>::deserialize(deserializer)?;
        if items.len() > N {
            return Err(serde::de::Error::custom(format!(
                "{} items, at most {N} allowed",
                items.len()
            )));
        }
        let mut slots = Self::default();
        for item in items {
            slots.push(item);
        }
        Ok(slots)
    }
}

/// An event, as the model needs it. Title and user are abstracted away (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "subject")]
pub enum Event {
    /// `ticket:created` (version 0).
    #[serde(rename = "ticket:created")]
    TicketCreated {
        /// The ticket.
        ticket: TicketIx,
        /// Its price.
        price: Price,
    },
    /// `ticket:updated`.
    #[serde(rename = "ticket:updated")]
    TicketUpdated {
        /// The ticket.
        ticket: TicketIx,
        /// The version it brings the ticket to.
        version: Version,
        /// Price at that version.
        price: Price,
        /// The order holding the ticket at that version.
        order: Option<OrderIx>,
    },
    /// `order:created` (version 0).
    #[serde(rename = "order:created")]
    OrderCreated {
        /// The order.
        order: OrderIx,
        /// Its ticket.
        ticket: TicketIx,
        /// The ticket's reservation-change number.
        reservation: Reservation,
    },
    /// `order:cancelled` (version 1).
    #[serde(rename = "order:cancelled")]
    OrderCancelled {
        /// The order.
        order: OrderIx,
        /// Its ticket.
        ticket: TicketIx,
        /// The ticket's reservation-change number.
        reservation: Reservation,
    },
}

impl Default for Event {
    fn default() -> Self {
        Event::TicketCreated {
            ticket: 0,
            price: 0,
        }
    }
}

impl Event {
    /// The queue group that listens on this event's subject.
    pub const fn group(self) -> Group {
        match self {
            Event::TicketCreated { .. } | Event::TicketUpdated { .. } => Group::Orders,
            Event::OrderCreated { .. } | Event::OrderCancelled { .. } => Group::Tickets,
        }
    }

    /// The ticket the event is about (directly or through its order).
    pub const fn ticket(self) -> TicketIx {
        match self {
            Event::TicketCreated { ticket, .. }
            | Event::TicketUpdated { ticket, .. }
            | Event::OrderCreated { ticket, .. }
            | Event::OrderCancelled { ticket, .. } => ticket,
        }
    }

    /// The subject's name.
    pub const fn subject(self) -> &'static str {
        match self {
            Event::TicketCreated { .. } => "ticket:created",
            Event::TicketUpdated { .. } => "ticket:updated",
            Event::OrderCreated { .. } => "order:created",
            Event::OrderCancelled { .. } => "order:cancelled",
        }
    }
}

/// One of the two queue groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Group {
    /// `orders-service`: listens on `ticket:created` and `ticket:updated`.
    #[serde(rename = "orders-service")]
    Orders,
    /// `tickets-service`: listens on `order:created` and `order:cancelled`.
    #[serde(rename = "tickets-service")]
    Tickets,
}

impl Group {
    /// Both groups.
    pub const ALL: [Group; 2] = [Group::Orders, Group::Tickets];

    /// The queue group's name.
    pub const fn name(self) -> &'static str {
        match self {
            Group::Orders => "orders-service",
            Group::Tickets => "tickets-service",
        }
    }
}

/// One of the two services (for the outbox and HTTP steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// The tickets service (primary of tickets).
    Tickets,
    /// The orders service (primary of orders, replica of tickets).
    Orders,
}

impl Service {
    /// Both services.
    pub const ALL: [Service; 2] = [Service::Tickets, Service::Orders];

    /// The service's name.
    pub const fn name(self) -> &'static str {
        match self {
            Service::Tickets => "tickets",
            Service::Orders => "orders",
        }
    }
}

/// Where a message stands in its queue group's durable subscription.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Waiting to be delivered (again).
    #[default]
    Pending,
    /// Delivered, not yet acknowledged.
    InFlight,
    /// Acknowledged: never delivered again.
    Acked,
    /// Delivered `max_deliver` times without an acknowledgement: given up.
    Dead,
}

/// A message in the stream, with its consumer state in the group that listens on it.
///
/// It keeps its event's [`Event::key`] beside the event, computed once when the message is
/// made (and again when the symmetry renames its ticket): the key is read by every message of
/// every successor, for the symmetry's sort and for both of stateright's fingerprints, and
/// computing it from the `Event` was a sixth of a proof's instructions. The event is therefore
/// private: [`Message::new`] and [`Message::set_event`] are the only ways to write it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(from = "MessageFields", into = "MessageFields")]
pub struct Message {
    /// The event.
    event: Event,
    /// Its consumer state.
    pub status: Status,
    /// Deliveries so far.
    pub deliveries: u8,
    /// `event.key()` (the default event's key is 0, so the default message is consistent).
    event_key: u64,
}

/// A message as it is written and read (JSON traces, the harness): without the cached key.
#[derive(Clone, Copy, Serialize, Deserialize)]
struct MessageFields {
    event: Event,
    status: Status,
    deliveries: u8,
}

impl From<MessageFields> for Message {
    fn from(fields: MessageFields) -> Self {
        Message::new(fields.event, fields.status, fields.deliveries)
    }
}

impl From<Message> for MessageFields {
    fn from(message: Message) -> Self {
        MessageFields {
            event: message.event,
            status: message.status,
            deliveries: message.deliveries,
        }
    }
}

impl Message {
    /// A message carrying `event`, with its consumer state.
    pub const fn new(event: Event, status: Status, deliveries: u8) -> Self {
        Message {
            event,
            status,
            deliveries,
            event_key: event.key(),
        }
    }

    /// The event.
    pub const fn event(&self) -> Event {
        self.event
    }

    /// Replaces the event (the symmetry renaming its ticket), keeping the key in step.
    pub fn set_event(&mut self, event: Event) {
        self.event = event;
        self.event_key = event.key();
    }
}

/// A ticket in the tickets service's store.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Ticket {
    /// Its version.
    pub version: Version,
    /// Its price.
    pub price: Price,
    /// The order holding it.
    pub order: Option<OrderIx>,
    /// The last reservation change applied.
    pub reservation: Reservation,
}

/// A ticket replica in the orders service's store.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Replica {
    /// The version of the last event applied.
    pub version: Version,
    /// Its price.
    pub price: Price,
}

/// An order's status (only the two the services move between).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum OrderStatus {
    /// Holding its ticket.
    #[default]
    Created,
    /// Released.
    Cancelled,
}

/// An order in the orders service's store.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Order {
    /// The ticket it reserves.
    pub ticket: TicketIx,
    /// Its status.
    pub status: OrderStatus,
    /// Its version.
    pub version: Version,
}

/// What a busy member does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "next")]
pub enum Step {
    /// Read the store and decide (only after acknowledging first, in `ack-before-save`).
    Read,
    /// Save the record read at `read_version` (update-if-current).
    Save {
        /// The version the record was read at.
        read_version: Version,
    },
    /// Publish the event its save produced (no outbox).
    Publish {
        /// The event.
        event: Event,
    },
    /// Acknowledge the delivery.
    Ack,
}

/// A member of a queue group.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum Member {
    /// Waiting for a delivery.
    #[default]
    Idle,
    /// Handling a delivery.
    Busy {
        /// The message.
        message: MessageIx,
        /// Which delivery of it this is (a later delivery makes this one stale).
        delivery: u8,
        /// Whether it already acknowledged (`ack-before-save`).
        acked: bool,
        /// What it does next.
        step: Step,
    },
}

/// What the clients and the adversary have left.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Budget {
    /// Tickets still to create.
    pub tickets: u8,
    /// Price updates left.
    pub updates: u8,
    /// Orders left.
    pub orders: u8,
    /// Cancellations left.
    pub cancels: u8,
    /// Crashes left.
    pub crashes: u8,
    /// Spurious ack-wait expiries left.
    pub redeliveries: u8,
    /// Duplicate publishes left.
    pub duplicates: u8,
}

/// Variables no process reads: the history the properties are judged against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ghost {
    /// `price_at[t][v]`: the primary's price of ticket `t` at version `v`.
    pub price_at: [[Price; MAX_VERSIONS]; MAX_TICKETS],
    /// Bit `v` of `ticket_events_applied[t]`: some delivery wrote the effect of the ticket
    /// event bringing `t` to version `v`.
    pub ticket_events_applied: [u16; MAX_TICKETS],
    /// Bit `r` of `order_events_applied[t]`: some delivery wrote the effect of `t`'s order
    /// event with reservation number `r`.
    pub order_events_applied: [u16; MAX_TICKETS],
    /// Some write lowered a record's version (property 2): set by the model's own writes
    /// ([`Ghost::note_write`]), in every store.
    pub version_regressed: bool,
    /// Some edit changed the price of a ticket while its `order` named an order.
    pub reserved_price_changed: bool,
}

impl Ghost {
    /// Notes a write that moves a record from version `before` to `after`: property 2 is
    /// lost the moment a write lowers a version. Every write of every store (tickets,
    /// replicas, orders) goes through here, so the model, not the harness, decides it.
    pub fn note_write(&mut self, before: Version, after: Version) {
        if after < before {
            self.version_regressed = true;
        }
    }
}

/// The whole system. It hashes as a packed encoding of its live parts (see
/// [`State::pack`]): one hasher call per state instead of one per field, which is most of
/// what a model checker does per state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The tickets service's tickets (index = ticket).
    pub tickets: Slots<Ticket, MAX_TICKETS>,
    /// The orders service's replicas (index = ticket).
    pub replicas: [Option<Replica>; MAX_TICKETS],
    /// The orders service's count of reservation changes per ticket.
    pub reservations: [Reservation; MAX_TICKETS],
    /// The orders service's orders (index = order).
    pub orders: Slots<Order, MAX_ORDERS>,
    /// Events written, not yet published, per service: the durable outbox (with the outbox) or
    /// the HTTP handlers' pending publishes (without).
    pub outboxes: [Slots<Event, MAX_OUTBOX>; 2],
    /// Racy reservations checked but not inserted yet (`racy-reserve`), by ticket.
    pub reservation_requests: Slots<TicketIx, MAX_ORDERS>,
    /// The stream, with each message's consumer state.
    pub messages: Slots<Message, MAX_MESSAGES>,
    /// The members of each queue group (index = [`Group`] as usize).
    pub members: [[Member; MAX_MEMBERS]; 2],
    /// What is left to spend.
    pub budget: Budget,
    /// History for the properties.
    pub ghost: Ghost,
}

impl Hash for State {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        // Straight into the hasher: no buffer to clear, fill and read back.
        self.pack(&mut |word| hasher.write_u64(word));
    }
}

/// A word of up to eight bytes (little-endian, zero-filled).
#[inline(always)]
fn word<const N: usize>(bytes: [u8; N]) -> u64 {
    let mut word = [0u8; 8];
    word[..N].copy_from_slice(&bytes);
    u64::from_le_bytes(word)
}

const _: () = assert!(MAX_VERSIONS == 16, "price_words packs 16 prices");

/// The sixteen prices of a ticket's versions as two words.
fn price_words(prices: [Price; MAX_VERSIONS]) -> [u64; 2] {
    let mut low = [0u8; 8];
    let mut high = [0u8; 8];
    low.copy_from_slice(&prices[..8]);
    high.copy_from_slice(&prices[8..]);
    [u64::from_le_bytes(low), u64::from_le_bytes(high)]
}

impl Event {
    /// [`Event::pack`]'s five bytes as one big-endian number, computed with shifts (this is
    /// the hot part of every message's sort key and packed word).
    pub const fn key(self) -> u64 {
        const fn at(byte: u8, position: u32) -> u64 {
            (byte as u64) << (8 * position)
        }
        match self {
            Event::TicketCreated { ticket, price } => at(ticket, 3) | at(price, 2),
            Event::TicketUpdated {
                ticket,
                version,
                price,
                order,
            } => {
                let order = match order {
                    Some(order) => order,
                    None => u8::MAX,
                };
                at(1, 4) | at(ticket, 3) | at(version, 2) | at(price, 1) | at(order, 0)
            }
            Event::OrderCreated {
                order,
                ticket,
                reservation,
            } => at(2, 4) | at(order, 3) | at(ticket, 2) | at(reservation, 1),
            Event::OrderCancelled {
                order,
                ticket,
                reservation,
            } => at(3, 4) | at(order, 3) | at(ticket, 2) | at(reservation, 1),
        }
    }

    /// Five bytes that determine the event (distinct events, distinct bytes).
    pub const fn pack(self) -> [u8; 5] {
        match self {
            Event::TicketCreated { ticket, price } => [0, ticket, price, 0, 0],
            Event::TicketUpdated {
                ticket,
                version,
                price,
                order,
            } => [
                1,
                ticket,
                version,
                price,
                match order {
                    Some(order) => order,
                    None => u8::MAX,
                },
            ],
            Event::OrderCreated {
                order,
                ticket,
                reservation,
            } => [2, order, ticket, reservation, 0],
            Event::OrderCancelled {
                order,
                ticket,
                reservation,
            } => [3, order, ticket, reservation, 0],
        }
    }
}

impl Message {
    /// A key that orders messages totally (for the symmetry representative).
    pub(crate) const fn sort_key(&self) -> u64 {
        self.event_key << 16 | (self.status as u64) << 8 | self.deliveries as u64
    }
}

impl Member {
    /// A key that orders members totally, idle last (for the symmetry representative): a busy
    /// member's eight bytes, big-endian (its message index first), and `u64::MAX`, which no
    /// busy member reaches (its message index is below `MAX_MESSAGES`), for idle.
    pub(crate) fn sort_key(&self) -> u64 {
        match self {
            Member::Idle => u64::MAX,
            Member::Busy { .. } => u64::from_be_bytes(self.pack()),
        }
    }

    /// Eight bytes that determine the member: idle is all zero, a busy member's step tag
    /// (1-4) is never zero.
    fn pack(&self) -> [u8; 8] {
        match *self {
            Member::Idle => [0; 8],
            Member::Busy {
                message,
                delivery,
                acked,
                step,
            } => {
                let (tag, args) = match step {
                    Step::Read => (1, [0; 5]),
                    Step::Save { read_version } => (2, [read_version, 0, 0, 0, 0]),
                    Step::Publish { event } => (3, event.pack()),
                    Step::Ack => (4, [0; 5]),
                };
                let [a, b, c, d, e] = args;
                [message, delivery, tag | u8::from(acked) << 4, a, b, c, d, e]
            }
        }
    }
}

impl State {
    /// Writes the live parts of the state as words (to `out`, one call each): an injective encoding (fixed-size fields,
    /// every list's length first), so equal states and only equal states pack alike. One word
    /// per ticket, order, event, message and member: a message's word is its symmetry sort
    /// key, a member's its eight bytes.
    pub fn pack(&self, out: &mut impl FnMut(u64)) {
        let flag = |set: bool| u8::from(set);
        out(word([
            self.tickets.len() as u8,
            self.orders.len() as u8,
            self.outboxes[0].len() as u8,
            self.outboxes[1].len() as u8,
            self.reservation_requests.len() as u8,
            self.messages.len() as u8,
            flag(self.ghost.version_regressed),
            flag(self.ghost.reserved_price_changed),
        ]));
        for ticket in 0..MAX_TICKETS {
            // Dead ticket slots are default, so they pack alike.
            let primary = self.tickets.items[ticket];
            let [tag, version, price] = match self.replicas[ticket] {
                Some(replica) => [1, replica.version, replica.price],
                None => [0, 0, 0],
            };
            out(word([
                primary.version,
                primary.price,
                primary.order.map_or(0, |order| order + 1),
                primary.reservation,
                tag,
                version,
                price,
                self.reservations[ticket],
            ]));
        }
        for ticket in 0..self.tickets.len() {
            let [low, high] = price_words(self.ghost.price_at[ticket]);
            out(low);
            out(high);
            out(u64::from(self.ghost.ticket_events_applied[ticket])
                | u64::from(self.ghost.order_events_applied[ticket]) << 16);
        }
        for order in self.orders.as_slice() {
            out(word([order.ticket, order.status as u8, order.version]));
        }
        for outbox in &self.outboxes {
            for event in outbox.as_slice() {
                out(event.key());
            }
        }
        out(word(self.reservation_requests.items));
        for message in self.messages.as_slice() {
            out(message.sort_key());
        }
        for members in &self.members {
            for member in members {
                out(word(member.pack()));
            }
        }
        let budget = self.budget;
        out(word([
            budget.tickets,
            budget.updates,
            budget.orders,
            budget.cancels,
            budget.crashes,
            budget.redeliveries,
            budget.duplicates,
        ]));
    }

    /// Forgets what no step will ever read again, so states that differ only there are one
    /// state: the delivery count of a message that is acknowledged or dead, and the delivery
    /// number of a member whose delivery is no longer the message's current one (0, which is
    /// never a delivery number: it only says "stale"). Every step ends with it; the harness
    /// applies it to the implementation's state before comparing.
    pub fn forget_the_irrelevant(&mut self) {
        for message in self.messages.as_mut_slice() {
            if matches!(message.status, Status::Acked | Status::Dead) {
                message.deliveries = 0;
            }
        }
        let messages = &self.messages;
        for members in &mut self.members {
            for member in members.iter_mut() {
                if let Member::Busy {
                    message, delivery, ..
                } = member
                {
                    let current = &messages.as_slice()[usize::from(*message)];
                    if current.status != Status::InFlight || current.deliveries != *delivery {
                        *delivery = 0;
                    }
                }
            }
        }
    }

    /// The members of `group`.
    pub fn group_members(&self, group: Group) -> &[Member; MAX_MEMBERS] {
        &self.members[group as usize]
    }

    /// The outbox of `service`.
    pub fn outbox(&self, service: Service) -> &Slots<Event, MAX_OUTBOX> {
        &self.outboxes[service as usize]
    }

    /// The active (not cancelled) orders on `ticket`.
    pub fn active_orders(&self, ticket: TicketIx) -> impl Iterator<Item = OrderIx> + '_ {
        self.orders
            .as_slice()
            .iter()
            .enumerate()
            .filter(move |(_, order)| {
                order.ticket == ticket && order.status == OrderStatus::Created
            })
            .map(|(ix, _)| ix as OrderIx)
    }

    /// The primary's price of `ticket` at `version`.
    pub fn price_at(&self, ticket: TicketIx, version: Version) -> Price {
        self.ghost.price_at[usize::from(ticket)][usize::from(version)]
    }
}
