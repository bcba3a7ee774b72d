//! The browser pages built into the binary (`mc-transport-ws/web/`): the chat page at `/`, the
//! admin console at `/admin`, their scripts and style under `/assets/`. Plain HTML, CSS and one JavaScript module, no
//! toolchain to build them and nothing fetched from elsewhere.
//!
//! Every page response carries a Content-Security-Policy without `unsafe-inline` (scripts,
//! styles and sockets from this origin only, no framing, no plugins, no `<base>`), plus
//! `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The policy every page response carries.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'; object-src 'none'";

const INDEX_HTML: &str = include_str!("../../web/index.html");
const ADMIN_HTML: &str = include_str!("../../web/admin.html");
const CHAT_JS: &str = include_str!("../../web/chat.js");
const ADMIN_JS: &str = include_str!("../../web/admin.js");
const AUTH_JS: &str = include_str!("../../web/auth.js");
const APP_CSS: &str = include_str!("../../web/app.css");

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Small files that change with the binary: revalidate rather than cache stale ones.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The pages' routes (merged into the app unless `HttpConfig::with_web_pages(false)`).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    const HTML: &str = "text/html; charset=utf-8";
    const JS: &str = "text/javascript; charset=utf-8";
    const CSS: &str = "text/css; charset=utf-8";
    let files = [
        ("/", HTML, INDEX_HTML),
        ("/admin", HTML, ADMIN_HTML),
        ("/assets/chat.js", JS, CHAT_JS),
        ("/assets/admin.js", JS, ADMIN_JS),
        ("/assets/auth.js", JS, AUTH_JS),
        ("/assets/app.css", CSS, APP_CSS),
    ];
    files.into_iter().fold(Router::new(), |router, (path, content_type, body)| {
        router.route(path, get(move || async move { page(content_type, body) }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_no_inline_code_and_no_framing() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self'"));
    }

    #[test]
    fn pages_have_no_inline_script_or_style_and_render_text_as_text() {
        for html in [INDEX_HTML, ADMIN_HTML] {
            assert!(!html.contains("<script>"), "scripts are files, never inline");
            assert!(!html.contains("style="), "styles are in app.css, never inline");
            let handler = html.split(" on").skip(1).any(|rest| {
                let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
                !name.is_empty() && rest[name.len()..].starts_with('=')
            });
            assert!(!handler, "no inline event handlers");
        }
        for js in [CHAT_JS, ADMIN_JS, AUTH_JS] {
            assert!(!js.contains("innerHTML"), "text from the server is set as text");
            assert!(!js.contains("insertAdjacentHTML") && !js.contains("eval("));
        }
    }
}
