//! The model's terms for the implementation's values and records, the vocabulary both the
//! world (which takes the model's actions on the implementation) and the abstraction function
//! (which reads the implementation's state back) speak.
//!
//! Values: a model price `p` is `BASE_CENTS + EDIT_CENTS * p` cents, and the title at that
//! price is [`title_of`]`(p)` (the model lets one field stand for title and price, so the
//! harness makes the title a function of the price and checks every stored title against it).
//! Versions and reservation numbers map to themselves. Records map to their index in creation
//! order (`Ids`); events to the model's events over those indices (`model_event`).
//!
//! The invariant: only what the harness set maps to a model value; a price, title, id or
//! number it did not set maps to nothing (`None` or an error that names it), never to a
//! nearby model value.

use model::state::{self, Event};
use ticketing::events;
use ticketing::id::Id;
use ticketing::price::Price;

use crate::gate::GateError;

/// The implementation could not take a step the model took (or took it differently in a way
/// no state comparison could show, such as an HTTP error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl From<GateError> for Refusal {
    fn from(error: GateError) -> Self {
        Refusal(error.to_string())
    }
}

/// The ids of the records the harness names by index, in creation order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ids {
    pub(crate) tickets: Vec<Id>,
    pub(crate) orders: Vec<Id>,
}

impl Ids {
    pub(crate) fn ticket(&self, id: Id) -> Option<u8> {
        self.tickets
            .iter()
            .position(|known| *known == id)
            .and_then(|ix| u8::try_from(ix).ok())
    }

    pub(crate) fn order(&self, id: Id) -> Option<u8> {
        self.orders
            .iter()
            .position(|known| *known == id)
            .and_then(|ix| u8::try_from(ix).ok())
    }
}

/// The price of a ticket at model price 0, in cents.
pub const BASE_CENTS: u64 = 1000;
/// What one model price step adds, in cents.
pub const EDIT_CENTS: u64 = 100;

/// The implementation's price for model price `price`.
pub fn price_of(price: state::Price) -> Result<Price, Refusal> {
    Price::from_cents(BASE_CENTS + EDIT_CENTS * u64::from(price))
        .map_err(|error| Refusal(format!("model price {price}: {error}")))
}

/// The model price an implementation price stands for, if it is one the harness sets.
pub fn model_price(price: Price) -> Option<state::Price> {
    let above = price.cents().checked_sub(BASE_CENTS)?;
    if above % EDIT_CENTS != 0 {
        return None;
    }
    state::Price::try_from(above / EDIT_CENTS).ok()
}

/// The title a ticket has at model price `price`.
pub fn title_of(price: state::Price) -> String {
    format!("Concert (edit {price})")
}

/// An implementation event in the model's terms.
pub(crate) fn model_event(ids: &Ids, event: &events::Event) -> Result<Event, String> {
    let ticket = |id| {
        ids.ticket(id)
            .ok_or_else(|| format!("event about unknown ticket {id}"))
    };
    let order = |id| {
        ids.order(id)
            .ok_or_else(|| format!("event about unknown order {id}"))
    };
    let small = |value: u64, what: &str| {
        u8::try_from(value).map_err(|_| format!("{what} {value} is beyond what the model holds"))
    };
    let price = |value: Price| {
        model_price(value).ok_or_else(|| format!("price {} cents in an event", value.cents()))
    };
    Ok(match event {
        events::Event::TicketCreated(e) => {
            let p = price(e.price)?;
            if *e.title != title_of(p) {
                return Err(format!(
                    "ticket:created with title {:?} at price {p}",
                    e.title
                ));
            }
            Event::TicketCreated {
                ticket: ticket(e.id)?,
                price: p,
            }
        }
        events::Event::TicketUpdated(e) => {
            let p = price(e.price)?;
            if *e.title != title_of(p) {
                return Err(format!(
                    "ticket:updated with title {:?} at price {p}",
                    e.title
                ));
            }
            Event::TicketUpdated {
                ticket: ticket(e.id)?,
                version: small(e.version, "version")?,
                price: p,
                order: e.order_id.map(order).transpose()?,
            }
        }
        events::Event::OrderCreated(e) => Event::OrderCreated {
            order: order(e.id)?,
            ticket: ticket(e.ticket.id)?,
            reservation: small(e.reservation, "reservation")?,
        },
        events::Event::OrderCancelled(e) => Event::OrderCancelled {
            order: order(e.id)?,
            ticket: ticket(e.ticket.id)?,
            reservation: small(e.reservation, "reservation")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_round_trip_and_foreign_prices_are_refused() {
        for p in [0, 1, 7, 255] {
            assert_eq!(model_price(price_of(p).unwrap()), Some(p));
        }
        assert_eq!(
            model_price(Price::from_cents(BASE_CENTS - 100).unwrap()),
            None
        );
        assert_eq!(
            model_price(Price::from_cents(BASE_CENTS + 50).unwrap()),
            None
        );
        assert_ne!(title_of(1), title_of(2));
    }
}
