//! `GET /` and `GET /assets/…`: the web dashboard, compiled into the binary (no CDN, no
//! build step at run time; it works on a machine with no network).
//!
//! The page is plain HTML, CSS and one script (`assets/app.js`) with one vendored library,
//! uPlot (MIT, version and licence in `assets/vendor/README.md`), for the live chart. It
//! reads only the public endpoints any client can use: `/symbols`, `/status`,
//! `/symbols/{id}/history` and the `/stream` of top-of-book events, sending the
//! `x-api-key` the user typed (kept for the browser session) on every request. The page
//! and its assets are not secret and need no key.

use axum::extract::Path as UrlPath;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The page.
const INDEX_HTML: &str = include_str!("assets/index.html");

/// Every asset under `/assets/`: its name, content type and bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/app.css"),
    ),
    (
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/vendor/uPlot.iife.min.js"),
    ),
    (
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/vendor/uPlot.min.css"),
    ),
];

/// Headers every dashboard response carries: revalidate (a new binary may serve new
/// assets), and a content security policy that allows nothing from elsewhere.
const NO_CACHE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-cache");
const CSP: (header::HeaderName, &str) = (
    header::CONTENT_SECURITY_POLICY,
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
);

/// `GET /`: the dashboard page.
pub(super) async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            NO_CACHE,
            CSP,
        ],
        INDEX_HTML,
    )
        .into_response()
}

/// `GET /assets/{file}`: one embedded asset, or 404.
pub(super) async fn asset(UrlPath(file): UrlPath<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, ctype, bytes)) => {
            ([(header::CONTENT_TYPE, *ctype), NO_CACHE, CSP], *bytes).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_names_only_embedded_assets() {
        // Every script and stylesheet the page loads is served from the binary: no CDN.
        for part in INDEX_HTML.split("/assets/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(
                ASSETS.iter().any(|(n, _, _)| *n == name),
                "index.html loads /assets/{name}, which is not embedded"
            );
        }
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
        let js = std::str::from_utf8(ASSETS[0].2).unwrap();
        assert!(!js.contains("https://") && !js.contains("http://"));
    }
}
