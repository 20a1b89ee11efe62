//! The pages people use, rendered on the server (decision 0036). Like the
//! JSON API in `api`, a page only reads the request, calls one action of
//! `app` and renders; templates live in `templates/`, checked when the
//! crate compiles, and the little script there is in `assets/`.

pub mod assets;
pub mod page;
pub mod portal;
pub mod words;

use actix_web::web;

/// Every page's routes: the patient portal under `/portal/`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/portal")
            .wrap(page::security_headers())
            .configure(portal::routes),
    );
}
