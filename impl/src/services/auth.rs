//! Sessions: a JWT signed with HS256 under the key in `JWT_KEY`, claims `id`, `email` and
//! `exp`, sent as `Authorization: Bearer <token>` or cookie `session=<token>`.
//!
//! The invariant: a request is signed in only if its token verifies under the key with HS256,
//! is not expired (no leeway) and carries a non-empty `id` and an `email`. Anything else (no
//! token, bad signature, another algorithm, `alg: none`, a missing claim) is
//! [`ApiError::NotAuthorized`]; the reason is logged at debug level, never told to the client.

use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::records::UserId;
use crate::services::ApiError;

/// The environment variable holding the signing key.
pub const JWT_KEY_VAR: &str = "JWT_KEY";

/// The key used on the embedded profile when `JWT_KEY` is unset. Public by design: it only
/// ever signs sessions on a developer's machine, and the server warns when it uses it.
pub const DEVELOPMENT_KEY: &str = "ticketing-development-key-do-not-use-in-production";

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "session";

/// The signed-in user a request acts for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentUser {
    /// The `id` claim.
    pub id: UserId,
    /// The `email` claim.
    pub email: String,
}

/// The claims of a session token.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    id: String,
    email: String,
    exp: u64,
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Signing failed.
    #[error("cannot sign the session token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    /// The user id is empty.
    #[error("a session needs a non-empty user id")]
    EmptyUser,
}

/// Where the session key came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The `JWT_KEY` environment variable.
    Environment,
    /// [`DEVELOPMENT_KEY`], because `JWT_KEY` is unset and the profile is embedded.
    Development,
}

/// `JWT_KEY` is unset (or empty) and the profile uses real backends.
#[derive(Debug, thiserror::Error)]
#[error(
    "{JWT_KEY_VAR} is not set: a server with real backends (--bus/--store) needs a session key; \
     set {JWT_KEY_VAR} to a secret (the development key is only used on the embedded profile)"
)]
pub struct MissingKey;

/// The session key: verifies and issues tokens.
#[derive(Clone)]
pub struct SessionKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// The key made of `secret`.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// The key from `JWT_KEY`, or, when it is unset and `development_allowed`, the
    /// development key.
    pub fn from_env(development_allowed: bool) -> Result<(Self, KeySource), MissingKey> {
        match std::env::var(JWT_KEY_VAR) {
            Ok(secret) if !secret.is_empty() => {
                Ok((Self::new(secret.as_bytes()), KeySource::Environment))
            }
            _ if development_allowed => Ok((
                Self::new(DEVELOPMENT_KEY.as_bytes()),
                KeySource::Development,
            )),
            _ => Err(MissingKey),
        }
    }

    /// A token for `user`, valid for `ttl`.
    pub fn issue(&self, user: &UserId, email: &str, ttl: Duration) -> Result<String, TokenError> {
        if user.as_str().is_empty() {
            return Err(TokenError::EmptyUser);
        }
        let claims = Claims {
            id: user.as_str().to_owned(),
            email: email.to_owned(),
            exp: jsonwebtoken::get_current_timestamp().saturating_add(ttl.as_secs()),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The user a token signs in, or [`ApiError::NotAuthorized`].
    pub fn verify(&self, token: &str) -> Result<CurrentUser, ApiError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| {
                tracing::debug!(%error, "session token rejected");
                ApiError::NotAuthorized
            })?
            .claims;
        if claims.id.is_empty() {
            tracing::debug!("session token rejected: empty id claim");
            return Err(ApiError::NotAuthorized);
        }
        Ok(CurrentUser {
            id: UserId::new(claims.id),
            email: claims.email,
        })
    }

    /// The user the request's headers sign in: the bearer token if there is an
    /// `Authorization` header, else the `session` cookie.
    pub fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<CurrentUser, ApiError> {
        let token = bearer_token(headers)
            .or_else(|| session_cookie(headers))
            .ok_or(ApiError::NotAuthorized)?;
        self.verify(token)
    }
}

fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

fn session_cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

impl<S> FromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    std::sync::Arc<SessionKey>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let key = std::sync::Arc::<SessionKey>::from_ref(state);
        key.authenticate(&parts.headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn key() -> SessionKey {
        SessionKey::new(b"test-key")
    }

    fn with(name: axum::http::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn an_issued_token_signs_in_by_bearer_or_cookie() {
        let token = key()
            .issue(&UserId::new("user-1"), "a@b.c", Duration::from_secs(60))
            .unwrap();
        let bearer = with(AUTHORIZATION, &format!("Bearer {token}"));
        let user = key().authenticate(&bearer).unwrap();
        assert_eq!(user.id, UserId::new("user-1"));
        assert_eq!(user.email, "a@b.c");
        let cookie = with(COOKIE, &format!("theme=dark; session={token}"));
        assert_eq!(key().authenticate(&cookie).unwrap(), user);
    }

    #[test]
    fn other_keys_missing_tokens_and_garbage_are_not_authorized() {
        let token = SessionKey::new(b"other")
            .issue(&UserId::new("u"), "e", Duration::from_secs(60))
            .unwrap();
        for headers in [
            HeaderMap::new(),
            with(AUTHORIZATION, &format!("Bearer {token}")),
            with(AUTHORIZATION, "Bearer "),
            with(AUTHORIZATION, "Basic dXNlcjpwYXNz"),
            with(AUTHORIZATION, "Bearer not.a.token"),
            with(COOKIE, "session="),
        ] {
            assert!(matches!(
                key().authenticate(&headers),
                Err(ApiError::NotAuthorized)
            ));
        }
    }

    #[test]
    fn empty_user_ids_are_refused() {
        assert!(matches!(
            key().issue(&UserId::new(""), "e", Duration::from_secs(60)),
            Err(TokenError::EmptyUser)
        ));
    }
}
