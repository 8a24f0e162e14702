//! `GET /ui`: the console, a page over the public API (what it shows, a script can read too).
//! Its files are inside the binary; nothing is built at run time. They hold no data, so they are
//! served without a token; the page sends the token it is given with its API calls.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::error;

/// The console's files: name, content type, text.
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../../ui/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../ui/app.js")),
    ("errors.js", "text/javascript; charset=utf-8", include_str!("../../ui/errors.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../../ui/style.css")),
];

/// Only this origin's scripts, styles and API; no frames, no inline script.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                      connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub(super) async fn root() -> Redirect {
    Redirect::to("/ui/")
}

pub(super) async fn index() -> Response {
    file("index.html")
}

pub(super) async fn asset(Path(name): Path<String>) -> Response {
    file(&name)
}

fn file(name: &str) -> Response {
    let Some((_, kind, text)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return error(StatusCode::NOT_FOUND, format!("the console has no file `{name}`"));
    };
    (
        [
            (header::CONTENT_TYPE, *kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        *text,
    )
        .into_response()
}
