//! The web console: static files compiled into the binary and served at `/` and `/ui/…`.
//!
//! The page (`http/ui/`) is plain HTML, CSS and JavaScript with no build step; its charts use
//! uPlot, vendored unchanged with its licence under `http/ui/vendor/uplot/`. Everything the page
//! shows or does goes through the documented HTTP API with the user's token, so serving it
//! needs no authentication and grants nothing: the files are public, the data is not.
//!
//! Answers carry a strict Content-Security-Policy (scripts, styles and connections from this
//! origin only), so even a payload that got past the page's text-only rendering could not run.

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderValue};

use crate::body::{self, Resp};

/// One embedded file: its path under the server root, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// An asset from `http/ui/`: served at `/` for `index.html`, at `/ui/<file>` otherwise.
macro_rules! asset {
    ($path:literal, $file:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../ui/", $file)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("/", "index.html", HTML),
    asset!("/ui/app.js", "app.js", JS),
    asset!("/ui/app.css", "app.css", CSS),
    asset!("/ui/favicon.svg", "favicon.svg", "image/svg+xml"),
    asset!(
        "/ui/vendor/uplot/uPlot.iife.min.js",
        "vendor/uplot/uPlot.iife.min.js",
        JS
    ),
    asset!(
        "/ui/vendor/uplot/uPlot.min.css",
        "vendor/uplot/uPlot.min.css",
        CSS
    ),
    asset!(
        "/ui/vendor/uplot/LICENSE",
        "vendor/uplot/LICENSE",
        "text/plain; charset=utf-8"
    ),
];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The console file at `path` (`/index.html` is `/`), or None when there is none.
pub(crate) fn serve(path: &str) -> Option<Resp> {
    let path = if path == "/index.html" { "/" } else { path };
    let asset = ASSETS.iter().find(|a| a.path == path)?;
    let mut r = body::raw(
        StatusCode::OK,
        asset.content_type,
        Bytes::from_static(asset.bytes),
    );
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The files change only with the binary; revalidating costs one small request.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_served() {
        let index = std::str::from_utf8(include_bytes!("../ui/index.html")).unwrap_or_default();
        for part in index.split('"').filter(|s| s.starts_with("/ui/")) {
            assert!(
                serve(part).is_some(),
                "{part} is named by index.html but not served"
            );
        }
        assert!(serve("/").is_some());
        assert!(serve("/ui/nope.js").is_none());
    }
}
