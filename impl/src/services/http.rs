//! The HTTP face of both services: one axum router, routed by path as the course's ingress
//! did, the course's error shape, and body extraction.
//!
//! Handlers are thin: extract (session, body, path id), call the domain operation, encode.
//! The invariants: every error a client can cause is a 4xx in the shape
//! `{"errors": [{"message": "...", "field": "..."}]}`; a backend failure is a 500/503 with a
//! generic message (its cause goes to the log); nothing a client sends can panic a handler.
//! Extraction runs in the course's order: session (401), body (400/413), then the path id
//! (an id that is not one is 404, like an unknown one).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::Value;

use crate::bus::Publisher;
use crate::id::Id;
use crate::price::Price;
use crate::records::{Ticket, TicketReplica, Title, UserId, Version};
use crate::services::auth::{CurrentUser, SessionKey};
use crate::services::ops;
use crate::services::orders::{self, OrderView, OrdersService, ReplicaView};
use crate::services::tickets::{self, TicketInput, TicketsService};
use crate::services::{ApiError, FieldError};
use crate::store::{OrderBook, StoreError, VersionedStore};

/// The largest request body accepted (larger is 413).
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// The message for a body that is not sent as JSON.
pub const UNSUPPORTED_MEDIA_TYPE: &str = "Content-Type must be application/json";

/// The course's generic message for a server-side failure.
const SOMETHING_WENT_WRONG: &str = "Something went wrong";
/// The message for a backend that is down.
const SERVICE_UNAVAILABLE: &str = "Service unavailable, try again later";

/// The course's error shape.
#[derive(Serialize)]
struct ErrorBody {
    errors: Vec<FieldError>,
}

fn error_response(status: StatusCode, errors: Vec<FieldError>) -> Response {
    (status, Json(ErrorBody { errors })).into_response()
}

fn message(text: &'static str) -> Vec<FieldError> {
    vec![FieldError {
        message: text.into(),
        field: None,
    }]
}

impl ApiError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotAuthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Validation(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Store(StoreError::Backend { .. })
            | ApiError::Bus(_)
            | ApiError::TooManyConflicts { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) | ApiError::Crashed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let errors = match self {
            ApiError::Validation(errors) => errors,
            ApiError::NotAuthorized => message("Not authorized"),
            ApiError::NotFound => message("Not Found"),
            ApiError::BadRequest(text) => message(text),
            ApiError::PayloadTooLarge => message("Request body too large"),
            ApiError::UnsupportedMediaType => message(UNSUPPORTED_MEDIA_TYPE),
            error => {
                tracing::error!(%error, status = status.as_u16(), "request failed");
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    message(SERVICE_UNAVAILABLE)
                } else {
                    message(SOMETHING_WENT_WRONG)
                }
            }
        };
        error_response(status, errors)
    }
}

/// A JSON body, at most [`BODY_LIMIT_BYTES`], sent as `Content-Type: application/json` (415
/// otherwise). An empty body is an empty object (each field then reports itself missing, as
/// with the course's `express.json`), and may come without a `Content-Type`.
///
/// Why the type is checked: sessions ride in a cookie too, and a cross-site HTML form can
/// post with a user's cookie but only as `application/x-www-form-urlencoded`,
/// `multipart/form-data` or `text/plain`; a body read as JSON whatever its type would let such
/// a form act for the user. A cross-site `application/json` request needs a CORS preflight,
/// which this server never grants.
#[derive(Debug)]
pub struct JsonBody(pub Value);

/// Whether `Content-Type` names JSON (`application/json`, any parameters, any case).
fn is_json(content_type: &axum::http::HeaderValue) -> bool {
    content_type
        .to_str()
        .ok()
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"))
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared_json = match request.headers().get(CONTENT_TYPE) {
            Some(content_type) if !is_json(content_type) => {
                return Err(ApiError::UnsupportedMediaType);
            }
            Some(_) => true,
            None => false,
        };
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    tracing::debug!(%rejection, "cannot read request body");
                    ApiError::BadRequest("Cannot read the request body")
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(Value::Object(serde_json::Map::new())));
        }
        if !declared_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|_| ApiError::BadRequest("Request body is not valid JSON"))
    }
}

/// A record id from the path; anything that is not an id is 404, as an unknown id is.
fn path_id(path: Result<Path<String>, PathRejection>) -> Result<Id, ApiError> {
    let Path(text) = path.map_err(|_| ApiError::NotFound)?;
    text.parse().map_err(|_| ApiError::NotFound)
}

/// A ticket as the tickets service shows it: `{id, title, price, userId, version, orderId?}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketView {
    /// The ticket's id.
    pub id: Id,
    /// Its title.
    pub title: Title,
    /// Its price.
    pub price: Price,
    /// Its owner.
    pub user_id: UserId,
    /// Its version.
    pub version: Version,
    /// The order holding it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Id>,
}

impl From<Ticket> for TicketView {
    fn from(ticket: Ticket) -> Self {
        Self {
            id: ticket.id,
            title: ticket.title,
            price: ticket.price,
            user_id: ticket.user_id,
            version: ticket.version,
            order_id: ticket.order_id,
        }
    }
}

/// What the router serves: both services and the session key.
pub struct AppState<TS, OS, P> {
    /// The tickets service.
    pub tickets: Arc<TicketsService<TS, P>>,
    /// The orders service.
    pub orders: Arc<OrdersService<OS, P>>,
    /// Verifies sessions.
    pub sessions: Arc<SessionKey>,
}

impl<TS, OS, P> Clone for AppState<TS, OS, P> {
    fn clone(&self) -> Self {
        Self {
            tickets: Arc::clone(&self.tickets),
            orders: Arc::clone(&self.orders),
            sessions: Arc::clone(&self.sessions),
        }
    }
}

impl<TS, OS, P> FromRef<AppState<TS, OS, P>> for Arc<SessionKey> {
    fn from_ref(state: &AppState<TS, OS, P>) -> Self {
        Arc::clone(&state.sessions)
    }
}

/// The bounds a tickets store must meet to be served.
pub trait TicketStore: VersionedStore<Ticket> + 'static {}
impl<S: VersionedStore<Ticket> + 'static> TicketStore for S {}

/// The bounds an orders store must meet to be served.
pub trait OrderStore: OrderBook + VersionedStore<TicketReplica> + 'static {}
impl<S: OrderBook + VersionedStore<TicketReplica> + 'static> OrderStore for S {}

/// The router for both services: SPEC.md's routes, the operator's (`/metrics`, `/healthz`,
/// `/readyz`, in `ops`), a 404 in the error shape for anything else (unknown paths and unknown
/// methods alike, as the course's catch-all did). Every request is counted (`ops`).
pub fn router<TS, OS, P>(state: AppState<TS, OS, P>) -> Router
where
    TS: TicketStore,
    OS: OrderStore,
    P: Publisher + 'static,
{
    Router::new()
        .route(
            "/api/tickets",
            get(list_tickets::<TS, OS, P>).post(create_ticket::<TS, OS, P>),
        )
        .route(
            "/api/tickets/{id}",
            get(show_ticket::<TS, OS, P>).put(update_ticket::<TS, OS, P>),
        )
        .route(
            "/api/orders",
            get(list_orders::<TS, OS, P>).post(create_order::<TS, OS, P>),
        )
        .route(
            "/api/orders/{id}",
            get(show_order::<TS, OS, P>).delete(cancel_order::<TS, OS, P>),
        )
        .route("/api/replica/tickets/{id}", get(show_replica::<TS, OS, P>))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(readyz::<TS, OS, P>))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(crate::metrics::HttpRequests::default()),
            ops::count_request,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// `GET /readyz`: both stores and both services' publishers (see `ops::readiness`).
async fn readyz<TS: TicketStore, OS: OrderStore, P: Publisher>(
    State(state): State<AppState<TS, OS, P>>,
) -> Response {
    let bus = state.tickets.publisher.reachable() && state.orders.publisher.reachable();
    ops::readiness(&state.tickets.store, &state.orders.store, bus).await
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn create_ticket<TS: TicketStore, OS, P: Publisher>(
    State(state): State<AppState<TS, OS, P>>,
    user: CurrentUser,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<TicketView>), ApiError> {
    let input = TicketInput::from_json(&body)?;
    let ticket = tickets::create_ticket(&state.tickets, &user.id, input).await?;
    Ok((StatusCode::CREATED, Json(ticket.into())))
}

async fn update_ticket<TS: TicketStore, OS, P: Publisher>(
    State(state): State<AppState<TS, OS, P>>,
    user: CurrentUser,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody,
) -> Result<Json<TicketView>, ApiError> {
    let input = TicketInput::from_json(&body)?;
    let id = path_id(path)?;
    let ticket = tickets::update_ticket(&state.tickets, &user.id, id, input).await?;
    Ok(Json(ticket.into()))
}

async fn show_ticket<TS: TicketStore, OS, P>(
    State(state): State<AppState<TS, OS, P>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TicketView>, ApiError> {
    let ticket = tickets::show_ticket(&state.tickets, path_id(path)?).await?;
    Ok(Json(ticket.into()))
}

async fn list_tickets<TS: TicketStore, OS, P>(
    State(state): State<AppState<TS, OS, P>>,
) -> Result<Json<Vec<TicketView>>, ApiError> {
    let tickets = tickets::list_tickets(&state.tickets).await?;
    Ok(Json(tickets.into_iter().map(TicketView::from).collect()))
}

async fn create_order<TS, OS: OrderStore, P: Publisher>(
    State(state): State<AppState<TS, OS, P>>,
    user: CurrentUser,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    let ticket_id = orders::parse_order_input(&body)?;
    let order = orders::create_order(&state.orders, &user.id, ticket_id).await?;
    Ok((StatusCode::CREATED, Json(order)))
}

async fn show_order<TS, OS: OrderStore, P>(
    State(state): State<AppState<TS, OS, P>>,
    user: CurrentUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<OrderView>, ApiError> {
    let order = orders::show_order(&state.orders, &user.id, path_id(path)?).await?;
    Ok(Json(order))
}

async fn list_orders<TS, OS: OrderStore, P>(
    State(state): State<AppState<TS, OS, P>>,
    user: CurrentUser,
) -> Result<Json<Vec<OrderView>>, ApiError> {
    Ok(Json(orders::list_orders(&state.orders, &user.id).await?))
}

async fn cancel_order<TS, OS: OrderStore, P: Publisher>(
    State(state): State<AppState<TS, OS, P>>,
    user: CurrentUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    orders::cancel_order(&state.orders, &user.id, path_id(path)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn show_replica<TS, OS: OrderStore, P>(
    State(state): State<AppState<TS, OS, P>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ReplicaView>, ApiError> {
    Ok(Json(
        orders::show_replica(&state.orders, path_id(path)?).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn backend_failures_are_503_with_a_generic_message_and_no_cause() {
        let error = ApiError::Store(StoreError::Backend {
            message: "PostgreSQL at postgres://secret@db: connection refused".into(),
            source: None,
        });
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = body_of(response).await;
        assert_eq!(
            body,
            serde_json::json!({"errors": [{"message": SERVICE_UNAVAILABLE}]})
        );
        let crashed = ApiError::Crashed("after-save-before-publish").into_response();
        assert_eq!(crashed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body_of(crashed).await,
            serde_json::json!({"errors": [{"message": SOMETHING_WENT_WRONG}]})
        );
    }

    #[tokio::test]
    async fn validation_errors_carry_their_fields() {
        let error = ApiError::Validation(vec![FieldError::new("title", "Title is required")]);
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body_of(response).await,
            serde_json::json!({"errors": [{"message": "Title is required", "field": "title"}]})
        );
    }
}
