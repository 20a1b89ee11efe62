//! A real local HTTP server that receives webhooks, for delivery tests.

use std::sync::{Arc, Mutex};

/// One request as received: path kind, `webhook-id`, "timestamp signature", body.
pub type Request = (String, String, String, Vec<u8>);

#[derive(Clone, Default)]
pub struct Received(pub Arc<Mutex<Vec<Request>>>);

/// A real local HTTP receiver: `/ok` answers 200, `/flaky` 500 on the first
/// request then 200, `/down` always 503.
pub async fn webhook_receiver() -> (String, Received, actix_web::dev::ServerHandle) {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let received = Received::default();
    let flaky_calls = Arc::new(Mutex::new(0));
    let r = received.clone();
    let server = HttpServer::new(move || {
        let r = r.clone();
        let flaky_calls = flaky_calls.clone();
        App::new().route(
            "/{kind}",
            web::post().to(move |req: HttpRequest, body: web::Bytes| {
                let r = r.clone();
                let flaky_calls = flaky_calls.clone();
                async move {
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default()
                    };
                    let kind = req.match_info()["kind"].to_owned();
                    r.0.lock().unwrap().push((
                        kind.clone(),
                        h("webhook-id"),
                        format!("{} {}", h("webhook-timestamp"), h("webhook-signature")),
                        body.to_vec(),
                    ));
                    match kind.as_str() {
                        "ok" => HttpResponse::Ok().finish(),
                        "flaky" => {
                            let mut calls = flaky_calls.lock().unwrap();
                            *calls += 1;
                            if *calls == 1 {
                                HttpResponse::InternalServerError().finish()
                            } else {
                                HttpResponse::Ok().finish()
                            }
                        }
                        _ => HttpResponse::ServiceUnavailable().finish(),
                    }
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (format!("http://{addr}"), received, handle)
}
