//! The pages' stylesheet and script, embedded in the binary and served
//! under names that carry a hash of their content: a new build's assets
//! have new names, so browsers may cache each name forever.

use actix_web::{web, HttpResponse};
use std::sync::LazyLock;

const CSS: &[u8] = include_bytes!("../../assets/portal/portal.css");
const JS: &[u8] = include_bytes!("../../assets/portal/portal.js");

struct Asset {
    path: String,
    bytes: &'static [u8],
    content_type: &'static str,
}

fn asset(stem: &str, ext: &str, bytes: &'static [u8], content_type: &'static str) -> Asset {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let tag = hex::encode(&digest.as_ref()[..6]);
    Asset {
        path: format!("/portal/assets/{stem}.{tag}.{ext}"),
        bytes,
        content_type,
    }
}

static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        asset("portal", "css", CSS, "text/css; charset=utf-8"),
        asset("portal", "js", JS, "text/javascript; charset=utf-8"),
    ]
});

/// The stylesheet's path.
pub fn css() -> &'static str {
    &ASSETS[0].path
}

/// The script's path.
pub fn js() -> &'static str {
    &ASSETS[1].path
}

/// `GET /portal/assets/{name}`: an asset by its hashed name, cached for a
/// year; any other name is not found.
pub async fn serve(name: web::Path<String>) -> HttpResponse {
    let path = format!("/portal/assets/{name}");
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => HttpResponse::Ok()
            .content_type(a.content_type)
            .insert_header(("cache-control", "public, max-age=31536000, immutable"))
            .body(a.bytes),
        None => HttpResponse::NotFound().finish(),
    }
}
