//! Sessions: a JWT signed with HS256 under the key in `JWT_KEY`, claims `id`, `email` and
//! `exp`, sent as `Authorization: Bearer <token>` or cookie `session=<token>`.
//!
//! The invariant: a request is signed in only if its token verifies under the key with HS256,
//! is not expired (no leeway) and carries a non-empty `id` and an `email`. Anything else (no
//! token, bad signature, another algorithm, `alg: none`, a missing claim) is
//! [`ApiError::NotAuthorized`]; the reason is logged at debug level, never told to the client.
//!
//! A key remembers the tokens it verified (a client sends the same token with every request),
//! keyed by the token's exact text: a second request with it skips the signature check and the
//! claims' decoding, which were a third of a request's handling in the profile
//! (docs/PERFORMANCE.md), and is still refused the second its `exp` passes.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::records::UserId;
use crate::services::ApiError;
use crate::sync::{Arc, Mutex};

/// The environment variable holding the signing key.
pub const JWT_KEY_VAR: &str = "JWT_KEY";

/// The key used on the embedded profile when `JWT_KEY` is unset. Public by design: it only
/// ever signs sessions on a developer's machine (a server takes it only on the embedded
/// profile, listening on a loopback address), and the server warns when it uses it.
pub const DEVELOPMENT_KEY: &str = "ticketing-development-key-do-not-use-in-production";

/// The shortest `JWT_KEY` accepted, in bytes: HS256's key should be at least as long as its
/// 256-bit hash (RFC 7518, section 3.2).
pub const MIN_KEY_BYTES: usize = 32;

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

/// Why there is no session key to serve with.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `JWT_KEY` is unset (or empty) where the development key may not stand in.
    #[error(
        "{JWT_KEY_VAR} is not set, and {why}; set {JWT_KEY_VAR} to a secret of at least \
         {MIN_KEY_BYTES} bytes (for example the output of `openssl rand -hex 32`)"
    )]
    Missing {
        /// Why the development key may not be used here.
        why: String,
    },
    /// `JWT_KEY` is shorter than [`MIN_KEY_BYTES`].
    #[error(
        "{JWT_KEY_VAR} is {length} bytes long; a session key needs at least {MIN_KEY_BYTES} \
         bytes (for example the output of `openssl rand -hex 32`)"
    )]
    TooShort {
        /// Its length in bytes.
        length: usize,
    },
}

/// Why a server may not fall back to the development key, if it may not: only on the
/// embedded profile (`embedded`: no `--bus`, no `--store`) and listening on a loopback
/// address is the public key safe, since nobody else can reach the server.
pub fn development_key_refusal(embedded: bool, listen: std::net::SocketAddr) -> Option<String> {
    if !embedded {
        Some("a server with real backends (--bus/--store) needs a key of its own".to_owned())
    } else if !listen.ip().is_loopback() {
        Some(format!(
            "the public development key is only used on a loopback address (--listen is {listen})"
        ))
    } else {
        None
    }
}

/// The most tokens a key remembers as verified; when full, it forgets them all (the next
/// request with each is verified again), so memory stays bounded whatever clients send.
pub const VERIFIED_TOKENS_MAX: usize = 4096;

/// What a verified token signs in, and until when (its `exp`, Unix seconds).
struct Verified {
    user: CurrentUser,
    expires: u64,
}

/// The session key: verifies and issues tokens. Clones share the tokens already verified.
#[derive(Clone)]
pub struct SessionKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Tokens verified under this key, by their exact text.
    verified: Arc<Mutex<HashMap<Box<str>, Verified>>>,
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
            verified: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The key from `JWT_KEY`, or, when it is unset and nothing refuses it
    /// (`development_refused`, see [`development_key_refusal`]), the development key.
    pub fn from_env(development_refused: Option<String>) -> Result<(Self, KeySource), KeyError> {
        let secret = std::env::var(JWT_KEY_VAR).ok();
        Self::from_secret(secret.as_deref(), development_refused)
    }

    /// [`SessionKey::from_env`] with `JWT_KEY`'s value given: a secret of at least
    /// [`MIN_KEY_BYTES`]; unset or empty, the development key unless `development_refused`.
    pub fn from_secret(
        secret: Option<&str>,
        development_refused: Option<String>,
    ) -> Result<(Self, KeySource), KeyError> {
        match (
            secret.filter(|secret| !secret.is_empty()),
            development_refused,
        ) {
            (Some(secret), _) if secret.len() < MIN_KEY_BYTES => Err(KeyError::TooShort {
                length: secret.len(),
            }),
            (Some(secret), _) => Ok((Self::new(secret.as_bytes()), KeySource::Environment)),
            (None, Some(why)) => Err(KeyError::Missing { why }),
            (None, None) => Ok((
                Self::new(DEVELOPMENT_KEY.as_bytes()),
                KeySource::Development,
            )),
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
        self.verify_at(token, jsonwebtoken::get_current_timestamp())
    }

    /// [`SessionKey::verify`], a token verified before judged expired or not at `now` (Unix
    /// seconds; valid while `exp >= now`, as the validation's leeway is 0). A token seen for
    /// the first time is verified in full, on the library's clock.
    fn verify_at(&self, token: &str, now: u64) -> Result<CurrentUser, ApiError> {
        {
            let mut verified = self.verified.lock();
            match verified.get(token) {
                Some(known) if known.expires >= now => return Ok(known.user.clone()),
                Some(_) => {
                    verified.remove(token);
                    tracing::debug!("session token rejected: expired");
                    return Err(ApiError::NotAuthorized);
                }
                None => {}
            }
        }
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
        let user = CurrentUser {
            id: UserId::new(claims.id),
            email: claims.email,
        };
        let mut verified = self.verified.lock();
        if verified.len() >= VERIFIED_TOKENS_MAX {
            verified.clear();
        }
        verified.insert(
            token.into(),
            Verified {
                user: user.clone(),
                expires: claims.exp,
            },
        );
        Ok(user)
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
    fn the_development_key_stands_in_only_on_the_embedded_profile_on_loopback() {
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 3000));
        let everywhere = std::net::SocketAddr::from(([0, 0, 0, 0], 3000));
        let ipv6_loopback = "[::1]:3000".parse().unwrap();
        assert_eq!(development_key_refusal(true, loopback), None);
        assert_eq!(development_key_refusal(true, ipv6_loopback), None);
        let refused = development_key_refusal(true, everywhere).unwrap();
        assert!(refused.contains("0.0.0.0:3000"), "{refused}");
        assert!(development_key_refusal(false, loopback).is_some());
        let (_, source) = SessionKey::from_secret(None, None).unwrap();
        assert_eq!(source, KeySource::Development);
        let error = SessionKey::from_secret(Some(""), Some(refused)).unwrap_err();
        assert!(matches!(error, KeyError::Missing { .. }));
        assert!(error.to_string().contains("set JWT_KEY"), "{error}");
    }

    #[test]
    fn keys_shorter_than_32_bytes_are_refused_even_where_the_development_key_would_do() {
        let short = "x".repeat(MIN_KEY_BYTES - 1);
        let error = SessionKey::from_secret(Some(&short), None).unwrap_err();
        assert!(
            matches!(error, KeyError::TooShort { length: 31 }),
            "{error}"
        );
        assert!(error.to_string().contains("at least 32 bytes"), "{error}");
        let long = "x".repeat(MIN_KEY_BYTES);
        let (_, source) = SessionKey::from_secret(Some(&long), Some("no".into())).unwrap();
        assert_eq!(source, KeySource::Environment);
    }

    /// The `exp` claim of `token`, signed by `key`.
    fn expiry_of(key: &SessionKey, token: &str) -> u64 {
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &key.validation)
            .unwrap()
            .claims
            .exp
    }

    #[test]
    fn a_verified_token_is_refused_once_it_expires_and_its_bytes_must_match() {
        let key = key();
        let token = key
            .issue(&UserId::new("user-1"), "a@b.c", Duration::from_secs(60))
            .unwrap();
        let expires = expiry_of(&key, &token);
        let now = jsonwebtoken::get_current_timestamp();
        let user = key.verify_at(&token, now).unwrap();
        assert_eq!(user.id, UserId::new("user-1"));
        // Remembered: the same answer up to and including its `exp` second.
        assert_eq!(key.verify_at(&token, expires).unwrap(), user);
        assert!(matches!(
            key.verify_at(&token, expires + 1),
            Err(ApiError::NotAuthorized)
        ));
        // A token differing in one byte of its signature is not the remembered one.
        let mut tampered = token.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(matches!(
            key.verify_at(&tampered, now),
            Err(ApiError::NotAuthorized)
        ));
        // Another key does not share what this one verified.
        assert!(matches!(
            SessionKey::new(b"other").verify_at(&token, now),
            Err(ApiError::NotAuthorized)
        ));
    }

    #[test]
    fn the_verified_tokens_stay_bounded() {
        let key = key();
        for n in 0..=VERIFIED_TOKENS_MAX {
            let token = key
                .issue(
                    &UserId::new(format!("user-{n}")),
                    "e",
                    Duration::from_secs(60),
                )
                .unwrap();
            key.verify(&token).unwrap();
        }
        let remembered = key.verified.lock().len();
        assert!(
            (1..=VERIFIED_TOKENS_MAX).contains(&remembered),
            "{remembered} tokens remembered"
        );
    }

    #[test]
    fn empty_user_ids_are_refused() {
        assert!(matches!(
            key().issue(&UserId::new(""), "e", Duration::from_secs(60)),
            Err(TokenError::EmptyUser)
        ));
    }
}
