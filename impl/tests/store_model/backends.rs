//! Running an operation sequence against a real backend (MemStore or PgStore), answering in
//! the same terms as the reference model.

use super::*;

/// Runs `ops` against a real store, answering as the model does.
pub(super) async fn run<S>(store: &S, ops: &[Op]) -> Vec<Outcome>
where
    S: VersionedStore<Ticket> + VersionedStore<TicketReplica> + OrderBook + Outbox,
{
    let mut outcomes = Vec::with_capacity(ops.len() + 1);
    for op in ops {
        outcomes.push(run_one(store, op.clone()).await);
    }
    let mut records: Vec<Rec> = VersionedStore::<Ticket>::list(store, Listing::All)
        .await
        .unwrap()
        .into_iter()
        .map(Rec::Ticket)
        .collect();
    records.extend(
        VersionedStore::<TicketReplica>::list(store, Listing::All)
            .await
            .unwrap()
            .into_iter()
            .map(Rec::Replica),
    );
    records.extend(
        VersionedStore::<Order>::list(store, Listing::All)
            .await
            .unwrap()
            .into_iter()
            .map(Rec::Order),
    );
    let mut counts = Vec::new();
    for n in TICKETS {
        counts.push(store.reservation_count(id(n)).await.unwrap());
    }
    let outbox = store.pending(usize::MAX).await.unwrap();
    outcomes.push(Outcome::Contents {
        records: sorted(records),
        counts,
        outbox: outbox.into_iter().map(|entry| entry.event).collect(),
    });
    outcomes
}

/// A backend's answer to `op`. One match arm per operation, as in the reference's `apply`:
/// long because the operation list is, and kept as one table so the two read side by side.
async fn run_one<S>(store: &S, op: Op) -> Outcome
where
    S: VersionedStore<Ticket> + VersionedStore<TicketReplica> + OrderBook + Outbox,
{
    fn written<R>(result: Result<R, StoreError>, wrap: fn(R) -> Rec) -> Outcome {
        Outcome::Written(result.map(wrap).map_err(Failure::from))
    }
    /// A save answers the version it stored: the record written is `record` at that version.
    fn saved<R: Record>(
        mut record: R,
        result: Result<Version, StoreError>,
        wrap: fn(R) -> Rec,
    ) -> Outcome {
        written(
            result.map(|version| {
                record.set_version(version);
                record
            }),
            wrap,
        )
    }
    fn found<R>(result: Result<Option<R>, StoreError>, wrap: fn(R) -> Rec) -> Outcome {
        match result {
            Ok(found) => Outcome::Found(found.map(wrap)),
            Err(error) => Outcome::Written(Err(error.into())),
        }
    }
    fn listed<R>(result: Result<Vec<R>, StoreError>, wrap: fn(R) -> Rec) -> Outcome {
        match result {
            Ok(records) => Outcome::Listed(sorted(records.into_iter().map(wrap).collect())),
            Err(error) => Outcome::Written(Err(error.into())),
        }
    }
    match op {
        Op::InsertTicket { ticket, event } => {
            let event = event.then(|| event_for(&ticket));
            written(store.insert(ticket, event).await, Rec::Ticket)
        }
        Op::SaveTicket { ticket, event } => {
            let event = event.then(|| event_for(&ticket));
            saved(ticket.clone(), store.save(ticket, event).await, Rec::Ticket)
        }
        Op::FindTicket { n } => found(
            VersionedStore::<Ticket>::find_by_id(store, id(n)).await,
            Rec::Ticket,
        ),
        Op::FindTicketByEvent { n, version } => found(
            VersionedStore::<Ticket>::find_by_event(store, id(n), version).await,
            Rec::Ticket,
        ),
        Op::ListTickets(pick) => listed(
            VersionedStore::<Ticket>::list(store, pick.listing()).await,
            Rec::Ticket,
        ),
        Op::InsertReplica { replica, event } => {
            let event = event.then(|| event_for(&replica));
            written(store.insert(replica, event).await, Rec::Replica)
        }
        Op::SaveReplica { replica, event } => {
            let event = event.then(|| event_for(&replica));
            saved(
                replica.clone(),
                store.save(replica, event).await,
                Rec::Replica,
            )
        }
        Op::FindReplica { n } => found(
            VersionedStore::<TicketReplica>::find_by_id(store, id(n)).await,
            Rec::Replica,
        ),
        Op::FindReplicaByEvent { n, version } => found(
            VersionedStore::<TicketReplica>::find_by_event(store, id(n), version).await,
            Rec::Replica,
        ),
        Op::ListReplicas(pick) => listed(
            VersionedStore::<TicketReplica>::list(store, pick.listing()).await,
            Rec::Replica,
        ),
        Op::InsertOrder { order, event } => {
            let event = event.then(|| event_for(&order));
            written(store.insert(order, event).await, Rec::Order)
        }
        Op::SaveOrder { order, event } => {
            let event = event.then(|| event_for(&order));
            saved(order.clone(), store.save(order, event).await, Rec::Order)
        }
        Op::FindOrder { n } => found(
            VersionedStore::<Order>::find_by_id(store, id(n)).await,
            Rec::Order,
        ),
        Op::ListOrders(pick) => listed(
            VersionedStore::<Order>::list(store, pick.listing()).await,
            Rec::Order,
        ),
        Op::Reserve {
            order,
            cents,
            check,
            outbox,
        } => Outcome::Reserved(
            store
                .reserve(order, price(cents), check, outbox)
                .await
                .map_err(Failure::from),
        ),
        Op::Cancel { order, outbox } => {
            Outcome::Cancelled(store.cancel(order, outbox).await.map_err(Failure::from))
        }
        Op::ActiveOrder { ticket } => found(store.active_order(id(ticket)).await, Rec::Order),
        Op::ReservationCount { ticket } => match store.reservation_count(id(ticket)).await {
            Ok(count) => Outcome::Count(count),
            Err(error) => Outcome::Written(Err(error.into())),
        },
        Op::Pending { limit } => match store.pending(limit).await {
            Ok(entries) => Outcome::Pending(
                entries.iter().map(|entry| entry.event.clone()).collect(),
                entries.windows(2).all(|pair| pair[0].seq < pair[1].seq),
            ),
            Err(error) => Outcome::Written(Err(error.into())),
        },
        Op::RepriceTicket { n, cents, event } => {
            match VersionedStore::<Ticket>::find_by_id(store, id(n)).await {
                Ok(Some(read)) => {
                    let changed = Ticket {
                        price: price(cents),
                        ..read
                    };
                    let event = event.then(|| event_for(&changed));
                    saved(
                        changed.clone(),
                        store.save(changed, event).await,
                        Rec::Ticket,
                    )
                }
                other => found(other, Rec::Ticket),
            }
        }
        Op::ChangeOrderStatus { n, status, event } => {
            match VersionedStore::<Order>::find_by_id(store, id(n)).await {
                Ok(Some(read)) => {
                    let changed = Order { status, ..read };
                    let event = event.then(|| event_for(&changed));
                    saved(
                        changed.clone(),
                        store.save(changed, event).await,
                        Rec::Order,
                    )
                }
                other => found(other, Rec::Order),
            }
        }
        Op::CancelCurrent { n, outbox } => {
            match VersionedStore::<Order>::find_by_id(store, id(n)).await {
                Ok(Some(read)) => {
                    Outcome::Cancelled(store.cancel(read, outbox).await.map_err(Failure::from))
                }
                other => found(other, Rec::Order),
            }
        }
        Op::FindByNextEvent { n, replica: false } => {
            match VersionedStore::<Ticket>::find_by_id(store, id(n)).await {
                Ok(Some(read)) => found(
                    VersionedStore::<Ticket>::find_by_event(store, id(n), read.version + 1).await,
                    Rec::Ticket,
                ),
                other => found(other, Rec::Ticket),
            }
        }
        Op::FindByNextEvent { n, replica: true } => {
            match VersionedStore::<TicketReplica>::find_by_id(store, id(n)).await {
                Ok(Some(read)) => found(
                    VersionedStore::<TicketReplica>::find_by_event(store, id(n), read.version + 1)
                        .await,
                    Rec::Replica,
                ),
                other => found(other, Rec::Replica),
            }
        }
        Op::MarkPublished { positions } => {
            let pending = match store.pending(usize::MAX).await {
                Ok(pending) => pending,
                Err(error) => return Outcome::Written(Err(error.into())),
            };
            let seqs: Vec<u64> = marked_positions(&positions, pending.len())
                .into_iter()
                .map(|position| pending[position].seq)
                .collect();
            match store.mark_published(&seqs).await {
                Ok(()) => Outcome::Done,
                Err(error) => Outcome::Written(Err(error.into())),
            }
        }
    }
}
