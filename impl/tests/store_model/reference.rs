//! The reference the backends are held to: plain ordered maps, one operation at a time, as
//! obviously correct as a store can be written. It keeps the one documented difference between
//! backends (a second active order refused or let through) as a parameter.

use super::*;

/// The reference: plain maps, one operation at a time.
pub(super) struct Model {
    /// Whether a second active order on a ticket is refused whoever asked for it
    /// (PostgreSQL's index) or only by an atomic reservation (MemStore).
    refuses_second_active: bool,
    tickets: BTreeMap<Id, Ticket>,
    replicas: BTreeMap<Id, TicketReplica>,
    orders: BTreeMap<Id, Order>,
    /// When each active order became active (a logical clock), to tell which is "the"
    /// active order when a race let two through.
    activated: BTreeMap<Id, u64>,
    /// Writes that would make a second active order on a ticket (refused or let through).
    pub(super) second_active_writes: usize,
    clock: u64,
    counts: BTreeMap<Id, Reservation>,
    outbox: Vec<Event>,
}

impl Model {
    pub(super) fn new(refuses_second_active: bool) -> Self {
        Self {
            refuses_second_active,
            tickets: BTreeMap::new(),
            replicas: BTreeMap::new(),
            orders: BTreeMap::new(),
            activated: BTreeMap::new(),
            second_active_writes: 0,
            clock: 0,
            counts: BTreeMap::new(),
            outbox: Vec::new(),
        }
    }

    fn active_order(&self, ticket_id: Id) -> Option<Order> {
        self.orders
            .values()
            .filter(|order| order.ticket_id == ticket_id && order.status.is_active())
            .min_by_key(|order| self.activated.get(&order.id))
            .cloned()
    }

    /// Another order than `order` holding its ticket, if writing `order` would make a second.
    fn second_active(&self, order: &Order) -> Option<Id> {
        let holder = self.active_order(order.ticket_id)?;
        (order.status.is_active() && holder.id != order.id).then_some(holder.id)
    }

    /// Stores `order` and keeps the activation times in step.
    fn put_order(&mut self, order: Order) {
        let was_active = self
            .orders
            .get(&order.id)
            .is_some_and(|stored| stored.status.is_active());
        if !order.status.is_active() {
            self.activated.remove(&order.id);
        } else if !was_active {
            self.clock += 1;
            self.activated.insert(order.id, self.clock);
        }
        self.orders.insert(order.id, order);
    }

    fn insert<R: Record>(
        table: &mut BTreeMap<Id, R>,
        outbox: &mut Vec<Event>,
        record: R,
        event: bool,
    ) -> Result<R, Failure> {
        if table.contains_key(&record.id()) {
            return Err(Failure::Duplicate {
                kind: R::KIND,
                id: record.id(),
            });
        }
        if event {
            outbox.push(event_for(&record));
        }
        table.insert(record.id(), record.clone());
        Ok(record)
    }

    /// The checks of update-if-current: the record exists, at the version it was read at.
    fn check_current<R: Record>(table: &BTreeMap<Id, R>, record: &R) -> Result<(), Failure> {
        let stored = table.get(&record.id()).ok_or(Failure::NotFound {
            kind: R::KIND,
            id: record.id(),
        })?;
        if stored.version() != record.version() {
            return Err(Failure::Conflict {
                kind: R::KIND,
                id: record.id(),
                expected: record.version(),
                found: stored.version(),
            });
        }
        Ok(())
    }

    fn save<R: Record>(
        table: &mut BTreeMap<Id, R>,
        outbox: &mut Vec<Event>,
        mut record: R,
        event: bool,
    ) -> Result<R, Failure> {
        Self::check_current(table, &record)?;
        if event {
            outbox.push(event_for(&record));
        }
        record.set_version(record.version() + 1);
        table.insert(record.id(), record.clone());
        Ok(record)
    }

    fn find_by_event<R: Record>(table: &BTreeMap<Id, R>, n: u8, version: Version) -> Option<R> {
        table
            .get(&id(n))
            .filter(|record| version > 0 && record.version() == version - 1)
            .cloned()
    }

    /// The reference's answer to `op`. One match arm per operation, each a few lines: it is
    /// long because the operation list is, and reads best as one table beside `Op`.
    pub(super) fn apply(&mut self, op: &Op) -> Outcome {
        match op.clone() {
            Op::InsertTicket { ticket, event } => Outcome::Written(
                Self::insert(&mut self.tickets, &mut self.outbox, ticket, event).map(Rec::Ticket),
            ),
            Op::SaveTicket { ticket, event } => Outcome::Written(
                Self::save(&mut self.tickets, &mut self.outbox, ticket, event).map(Rec::Ticket),
            ),
            Op::FindTicket { n } => {
                Outcome::Found(self.tickets.get(&id(n)).cloned().map(Rec::Ticket))
            }
            Op::FindTicketByEvent { n, version } => {
                Outcome::Found(Self::find_by_event(&self.tickets, n, version).map(Rec::Ticket))
            }
            Op::ListTickets(pick) => Outcome::Listed(sorted(
                self.tickets
                    .values()
                    .filter(|ticket| match &pick {
                        Pick::All => true,
                        Pick::Unreserved => ticket.order_id.is_none(),
                        Pick::OwnedBy(n) => ticket.user_id == user(*n),
                    })
                    .cloned()
                    .map(Rec::Ticket)
                    .collect(),
            )),
            Op::InsertReplica { replica, event } => Outcome::Written(
                Self::insert(&mut self.replicas, &mut self.outbox, replica, event)
                    .map(Rec::Replica),
            ),
            Op::SaveReplica { replica, event } => Outcome::Written(
                Self::save(&mut self.replicas, &mut self.outbox, replica, event).map(Rec::Replica),
            ),
            Op::FindReplica { n } => {
                Outcome::Found(self.replicas.get(&id(n)).cloned().map(Rec::Replica))
            }
            Op::FindReplicaByEvent { n, version } => {
                Outcome::Found(Self::find_by_event(&self.replicas, n, version).map(Rec::Replica))
            }
            // A replica has no owner: listed by everything but an owner.
            Op::ListReplicas(pick) => Outcome::Listed(match pick {
                Pick::OwnedBy(_) => Vec::new(),
                Pick::All | Pick::Unreserved => {
                    sorted(self.replicas.values().cloned().map(Rec::Replica).collect())
                }
            }),
            Op::InsertOrder { order, event } => Outcome::Written(self.insert_order(order, event)),
            Op::SaveOrder { order, event } => Outcome::Written(self.save_order(order, event)),
            Op::FindOrder { n } => Outcome::Found(self.orders.get(&id(n)).cloned().map(Rec::Order)),
            Op::ListOrders(pick) => Outcome::Listed(sorted(
                self.orders
                    .values()
                    .filter(|order| match &pick {
                        Pick::All | Pick::Unreserved => true,
                        Pick::OwnedBy(n) => order.user_id == user(*n),
                    })
                    .cloned()
                    .map(Rec::Order)
                    .collect(),
            )),
            Op::Reserve {
                order,
                cents,
                check,
                outbox,
            } => Outcome::Reserved(self.reserve(order, cents, check, outbox)),
            Op::Cancel { order, outbox } => Outcome::Cancelled(self.cancel(order, outbox)),
            Op::ActiveOrder { ticket } => {
                Outcome::Found(self.active_order(id(ticket)).map(Rec::Order))
            }
            Op::ReservationCount { ticket } => {
                Outcome::Count(self.counts.get(&id(ticket)).copied().unwrap_or(0))
            }
            Op::Pending { limit } => {
                Outcome::Pending(self.outbox.iter().take(limit).cloned().collect(), true)
            }
            Op::RepriceTicket { n, cents, event } => match self.tickets.get(&id(n)) {
                None => Outcome::Found(None),
                Some(read) => {
                    let changed = Ticket {
                        price: price(cents),
                        ..read.clone()
                    };
                    Outcome::Written(
                        Self::save(&mut self.tickets, &mut self.outbox, changed, event)
                            .map(Rec::Ticket),
                    )
                }
            },
            Op::ChangeOrderStatus { n, status, event } => match self.orders.get(&id(n)) {
                None => Outcome::Found(None),
                Some(read) => {
                    let changed = Order {
                        status,
                        ..read.clone()
                    };
                    Outcome::Written(self.save_order(changed, event))
                }
            },
            Op::CancelCurrent { n, outbox } => match self.orders.get(&id(n)) {
                None => Outcome::Found(None),
                Some(read) => Outcome::Cancelled(self.cancel(read.clone(), outbox)),
            },
            Op::FindByNextEvent { n, replica: false } => {
                Outcome::Found(self.tickets.get(&id(n)).cloned().map(Rec::Ticket))
            }
            Op::FindByNextEvent { n, replica: true } => {
                Outcome::Found(self.replicas.get(&id(n)).cloned().map(Rec::Replica))
            }
            Op::MarkPublished { positions } => {
                let marked = marked_positions(&positions, self.outbox.len());
                let mut position = 0;
                self.outbox.retain(|_| {
                    position += 1;
                    !marked.contains(&(position - 1))
                });
                Outcome::Done
            }
        }
    }

    fn insert_order(&mut self, order: Order, event: bool) -> Result<Rec, Failure> {
        if self.orders.contains_key(&order.id) {
            return Err(Failure::Duplicate {
                kind: Order::KIND,
                id: order.id,
            });
        }
        self.refuse_second_active(&order)?;
        if event {
            self.outbox.push(event_for(&order));
        }
        self.put_order(order.clone());
        Ok(Rec::Order(order))
    }

    fn save_order(&mut self, mut order: Order, event: bool) -> Result<Rec, Failure> {
        Self::check_current(&self.orders, &order)?;
        self.refuse_second_active(&order)?;
        if event {
            self.outbox.push(event_for(&order));
        }
        order.version += 1;
        self.put_order(order.clone());
        Ok(Rec::Order(order))
    }

    fn refuse_second_active(&mut self, order: &Order) -> Result<(), Failure> {
        let second_active = self.second_active(order);
        self.second_active_writes += usize::from(second_active.is_some());
        match second_active {
            Some(holder) if self.refuses_second_active => Err(Failure::TicketReserved {
                ticket_id: order.ticket_id,
                order_id: holder,
            }),
            _ => Ok(()),
        }
    }

    fn reserve(
        &mut self,
        order: Order,
        cents: u64,
        check: ReservationCheck,
        outbox: bool,
    ) -> Result<(Order, OrderCreated), Failure> {
        if check == ReservationCheck::Atomic
            && let Some(holder) = self.active_order(order.ticket_id)
        {
            return Err(Failure::TicketReserved {
                ticket_id: order.ticket_id,
                order_id: holder.id,
            });
        }
        if self.orders.contains_key(&order.id) {
            return Err(Failure::Duplicate {
                kind: Order::KIND,
                id: order.id,
            });
        }
        self.refuse_second_active(&order)?;
        let count = self.counts.entry(order.ticket_id).or_insert(0);
        *count += 1;
        let event = OrderCreated {
            id: order.id,
            version: order.version,
            status: order.status,
            user_id: order.user_id.clone(),
            expires_at: order.expires_at,
            ticket: OrderedTicket {
                id: order.ticket_id,
                price: price(cents),
            },
            reservation: *count,
        };
        if outbox {
            self.outbox.push(Event::OrderCreated(event.clone()));
        }
        self.put_order(order.clone());
        Ok((order, event))
    }

    fn cancel(&mut self, order: Order, outbox: bool) -> Result<(Order, OrderCancelled), Failure> {
        Self::check_current(&self.orders, &order)?;
        let count = self.counts.entry(order.ticket_id).or_insert(0);
        *count += 1;
        let cancelled = Order {
            status: OrderStatus::Cancelled,
            version: order.version + 1,
            ..order
        };
        let event = OrderCancelled {
            id: cancelled.id,
            version: cancelled.version,
            ticket: TicketRef {
                id: cancelled.ticket_id,
            },
            reservation: *count,
        };
        if outbox {
            self.outbox.push(Event::OrderCancelled(event.clone()));
        }
        self.put_order(cancelled.clone());
        Ok((cancelled, event))
    }

    pub(super) fn contents(&self) -> Outcome {
        let mut records: Vec<Rec> = self.tickets.values().cloned().map(Rec::Ticket).collect();
        records.extend(self.replicas.values().cloned().map(Rec::Replica));
        records.extend(self.orders.values().cloned().map(Rec::Order));
        Outcome::Contents {
            records: sorted(records),
            counts: TICKETS
                .map(|n| self.counts.get(&id(n)).copied().unwrap_or(0))
                .collect(),
            outbox: self.outbox.clone(),
        }
    }
}
