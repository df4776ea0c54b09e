//! Bad input (SPEC.md section 5) over real HTTP: malformed JSON, wrong types, missing fields,
//! oversized bodies, absurd prices, bad titles, bad/expired/forged/`alg: none` tokens, unknown
//! ids and routes. Each must be a 4xx in the course's error shape, change nothing (checked
//! with a GET after), and never be a 500.
// These need the network crates, which the loom build leaves out (see impl/Cargo.toml).
#![cfg(not(loom))]

mod http_support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use http_support::{TestApp, id_of, messages, read};
use ticketing::records::UserId;
use ticketing::services::auth::SessionKey;

/// Asserts a 4xx in the error shape and returns the status and messages.
fn client_error(status: u16, body: &Value) -> Vec<String> {
    assert!((400..500).contains(&status), "status {status}: {body}");
    messages(body)
}

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    read(request.send().await.unwrap()).await
}

#[tokio::test]
async fn malformed_bodies_are_400_and_change_nothing() {
    let app = TestApp::start().await;
    let ticket = app.create_ticket("u1", "concert", 20.0).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());
    let token = app.token("u1");
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("truncated JSON", br#"{"title": "x", "price": "#.to_vec()),
        ("not JSON", b"title=x&price=10".to_vec()),
        ("invalid UTF-8", vec![0xff, 0xfe, b'{', b'}']),
        (
            "deeply nested",
            format!("{}{}", "[".repeat(2_000), "]".repeat(2_000)).into_bytes(),
        ),
        (
            "wrong types",
            br#"{"title": ["x"], "price": {"cents": 10}}"#.to_vec(),
        ),
        ("missing fields", b"{}".to_vec()),
        ("empty body", Vec::new()),
        ("null", b"null".to_vec()),
        ("a string", br#""concert""#.to_vec()),
        (
            "price as string",
            br#"{"title": "x", "price": "10"}"#.to_vec(),
        ),
        ("negative price", br#"{"title": "x", "price": -1}"#.to_vec()),
        ("zero price", br#"{"title": "x", "price": 0}"#.to_vec()),
        (
            "absurd price",
            br#"{"title": "x", "price": 1e308}"#.to_vec(),
        ),
        (
            "huge integer price",
            br#"{"title": "x", "price": 123456789012345678901234567890}"#.to_vec(),
        ),
        (
            "too many decimals",
            br#"{"title": "x", "price": 10.001}"#.to_vec(),
        ),
        (
            "just over the maximum",
            br#"{"title": "x", "price": 1000000.01}"#.to_vec(),
        ),
        ("blank title", br#"{"title": "   ", "price": 10}"#.to_vec()),
        (
            "title too long",
            format!(r#"{{"title": "{}", "price": 10}}"#, "x".repeat(201)).into_bytes(),
        ),
        (
            "title not a string",
            br#"{"title": 42, "price": 10}"#.to_vec(),
        ),
    ];
    for (what, body) in bodies {
        for (method, target) in [(Method::POST, "/api/tickets"), (Method::PUT, path.as_str())] {
            let (status, errors) =
                raw(&app, method.clone(), target, Some(&token), body.clone()).await;
            assert_eq!(status, 400, "{what} {method}: {errors}");
            client_error(status, &errors);
        }
    }
    let (_, shown) = app.send(Method::GET, &path, None, None).await;
    assert_eq!(shown, ticket, "unchanged");
    let (_, list) = app.send(Method::GET, "/api/tickets", None, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "nothing created");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = TestApp::start().await;
    let body = format!(r#"{{"title": "{}", "price": 10}}"#, "x".repeat(20 * 1024));
    let (status, errors) = raw(
        &app,
        Method::POST,
        "/api/tickets",
        Some(&app.token("u1")),
        body.into_bytes(),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(client_error(status, &errors), ["Request body too large"]);
    let (_, list) = app.send(Method::GET, "/api/tickets", None, None).await;
    assert_eq!(list, json!([]));
}

/// A body not sent as JSON is 415 whatever it holds (a cross-site form posts with a user's
/// cookie only as a form or text, never as JSON), in the error shape, and changes nothing.
#[tokio::test]
async fn bodies_not_sent_as_json_are_415_and_change_nothing() {
    let app = TestApp::start().await;
    let ticket = app.create_ticket("u1", "concert", 20.0).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());
    let body = r#"{"title": "changed", "price": 10}"#;
    let cookie = format!("session={}", app.token("u1"));
    for (method, target) in [(Method::POST, "/api/tickets"), (Method::PUT, path.as_str())] {
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonp"),
            None,
        ] {
            let mut request = app
                .client
                .request(method.clone(), app.url(target))
                .header("cookie", &cookie)
                .body(body);
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let (status, errors) = read(request.send().await.unwrap()).await;
            assert_eq!(
                status, 415,
                "{method} {target} as {content_type:?}: {errors}"
            );
            assert_eq!(
                client_error(status, &errors),
                ["Content-Type must be application/json"],
                "{content_type:?}"
            );
        }
    }
    let (_, list) = app.send(Method::GET, "/api/tickets", None, None).await;
    assert_eq!(list, json!([ticket]), "nothing created or changed");
    // The sanity check that the test can fail: JSON, with parameters and in any case, works.
    let response = app
        .client
        .post(app.url("/api/tickets"))
        .header("cookie", &cookie)
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

fn forged_tokens(app: &TestApp) -> Vec<(&'static str, String)> {
    use base64_like::encode;
    let now = jsonwebtoken::get_current_timestamp();
    let header_none = encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = encode(format!(r#"{{"id":"u1","email":"e","exp":{}}}"#, now + 3600).as_bytes());
    let valid = app.token("u1");
    let (valid_head, rest) = valid.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &json!({"id": "u1", "email": "e", "exp": now + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(b"http-test-key"),
    )
    .unwrap();
    let sign = |claims: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"http-test-key"),
        )
        .unwrap()
    };
    vec![
        ("alg none", format!("{header_none}.{claims}.")),
        (
            "claims swapped under a valid signature",
            format!("{valid_head}.{claims}.{signature}"),
        ),
        (
            "other key",
            SessionKey::new(b"other")
                .issue(&UserId::new("u1"), "e", Duration::from_secs(60))
                .unwrap(),
        ),
        ("other algorithm", hs512),
        (
            "expired",
            sign(json!({"id": "u1", "email": "e", "exp": now - 10})),
        ),
        ("no exp", sign(json!({"id": "u1", "email": "e"}))),
        ("no id", sign(json!({"email": "e", "exp": now + 3600}))),
        ("no email", sign(json!({"id": "u1", "exp": now + 3600}))),
        (
            "empty id",
            sign(json!({"id": "", "email": "e", "exp": now + 3600})),
        ),
        (
            "id not a string",
            sign(json!({"id": 7, "email": "e", "exp": now + 3600})),
        ),
        ("garbage", "not-a-token".to_owned()),
    ]
}

/// Just enough base64url (no padding) to forge tokens by hand.
mod base64_like {
    pub fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

#[tokio::test]
async fn bad_expired_forged_and_alg_none_tokens_are_401() {
    let app = TestApp::start().await;
    let ticket = app.create_ticket("u1", "concert", 20.0).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());
    let body = br#"{"title": "stolen", "price": 1}"#.to_vec();
    for (what, token) in forged_tokens(&app) {
        let (status, errors) = raw(&app, Method::PUT, &path, Some(&token), body.clone()).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(client_error(status, &errors), ["Not authorized"], "{what}");
        let response = app
            .client
            .post(app.url("/api/tickets"))
            .header("cookie", format!("session={token}"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{what} as a cookie");
    }
    let (_, shown) = app.send(Method::GET, &path, None, None).await;
    assert_eq!(shown, ticket, "unchanged");
    // The sanity check that the test can fail: the genuine token works, by header and cookie.
    let response = app
        .client
        .post(app.url("/api/tickets"))
        .header("cookie", format!("session={}", app.token("u1")))
        .header("content-type", "application/json")
        .body(r#"{"title": "real", "price": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

#[tokio::test]
async fn unknown_ids_and_routes_are_404() {
    let app = TestApp::start().await;
    let user = Some("u1");
    for (method, path) in [
        (Method::GET, "/api/tickets/5f8d0d55b54764421b7156c9"),
        (Method::GET, "/api/tickets/zzzz"),
        (Method::GET, "/api/tickets/%ff%fe"),
        (Method::GET, "/api/orders/5f8d0d55b54764421b7156c9"),
        (Method::GET, "/api/orders/123"),
        (Method::DELETE, "/api/orders/5f8d0d55b54764421b7156c9"),
        (Method::DELETE, "/api/orders/not-an-id"),
        (Method::GET, "/api/replica/tickets/5f8d0d55b54764421b7156c9"),
        (Method::GET, "/api/nothing-here"),
        (Method::GET, "/"),
        (Method::DELETE, "/api/tickets"),
        (Method::PATCH, "/api/orders"),
    ] {
        let (status, body) = app.send(method.clone(), path, user, None).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(client_error(status, &body), ["Not Found"]);
    }
    // Ordering an unknown ticket creates nothing.
    let (status, _) = app
        .send(
            Method::POST,
            "/api/orders",
            user,
            Some(json!({"ticketId": "5f8d0d55b54764421b7156c9"})),
        )
        .await;
    assert_eq!(status, 404);
    let (_, orders) = app.send(Method::GET, "/api/orders", user, None).await;
    assert_eq!(orders, json!([]));
}

#[tokio::test]
async fn order_bodies_are_validated_and_change_nothing() {
    let app = TestApp::start().await;
    let ticket_id = ticketing::id::Id::new();
    app.put_replica(ticket_id, "concert", 1000, 0);
    let token = app.token("u1");
    for body in [
        b"{".to_vec(),
        b"[]".to_vec(),
        br#"{"ticketId": null}"#.to_vec(),
        br#"{"ticketId": 12}"#.to_vec(),
        br#"{"ticketId": "5f8d0d55b54764421b7156c"}"#.to_vec(),
        br#"{"ticketId": "5f8d0d55b54764421b7156cg"}"#.to_vec(),
        format!(r#"{{"ticketId": "{}"}}"#, "a".repeat(30_000)).into_bytes(),
    ] {
        let (status, errors) = raw(&app, Method::POST, "/api/orders", Some(&token), body).await;
        client_error(status, &errors);
    }
    let (_, orders) = app.send(Method::GET, "/api/orders", Some("u1"), None).await;
    assert_eq!(orders, json!([]));
    // The ticket is still free.
    let (status, created) = app
        .send(
            Method::POST,
            "/api/orders",
            Some("u1"),
            Some(json!({"ticketId": ticket_id.to_string()})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(id_of(&created["ticket"]), ticket_id);
}
