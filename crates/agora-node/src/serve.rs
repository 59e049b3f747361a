//! The connection loop under the router: which connections are taken, how
//! long a request's head may take, and a shutdown that ends in bounded time.
//!
//! axum's own `serve` has no bound on the time a client takes to send its
//! request head and keeps every connection it accepts; a few hundred slow
//! clients could then hold the node. Here each accepted connection is
//! first admitted (`guard::Places`: at most `max_connections` in all and
//! `max_connections_per_client` from one address; past either, the
//! connection gets a `503` and is closed at once), then served by hyper's
//! HTTP/1 server with a header-read timeout (`header_timeout`, which also
//! ends a keep-alive connection idle that long) and a bounded head buffer.
//! Bodies and work are bounded by the guard (`crate::guard`).
//!
//! On shutdown the listener closes, every connection is asked to finish the
//! request it is serving and close, and after `shutdown_grace` whatever is
//! still open is dropped: a slow upload cannot hold the node up.

use crate::guard::Refusal;
use crate::Core;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The largest request head (request line and headers) a connection
/// buffers; past it, `431`.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Serves `app` on `listener` until `shutdown` completes; then stops
/// accepting, lets each connection finish its request for at most
/// `shutdown_grace`, and drops the rest.
pub(crate) async fn run(
    core: Arc<Core>,
    app: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(core.config.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .keep_alive(true);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors, or a connection reset before
                        // it was taken: wait a little rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let ticket = match core.admission.connections.admit(peer.ip()) {
                    Ok(t) => t,
                    Err(why) => {
                        core.metrics.connections_refused.inc();
                        tracing::debug!(client = %peer.ip(), ?why, "connection refused");
                        tasks.spawn(refuse(tcp, why));
                        continue;
                    }
                };
                // No Nagle: a reply written in a few pieces (a SPEED
                // delivery: its length, the product, the head) would
                // otherwise wait for the client's delayed acknowledgement.
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!(error = %e, "could not set TCP_NODELAY");
                }
                tasks.spawn(connection(
                    http.clone(),
                    app.clone(),
                    tcp,
                    peer,
                    ticket,
                    stop_rx.clone(),
                ));
            }
        }
    }
    drop(listener);
    core.admission.begin_stopping();
    let _ = stop_tx.send(true);
    let grace = core.config.shutdown_grace;
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open = tasks.len(),
            grace_secs = grace.as_secs_f64(),
            "shutdown grace over: closing the connections still open"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    Ok(())
}

/// One admitted connection, served until it closes or the node stops.
async fn connection(
    http: http1::Builder,
    app: Router,
    tcp: TcpStream,
    peer: SocketAddr,
    ticket: crate::guard::Place,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let _ticket = ticket;
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move { tower::ServiceExt::oneshot(app, req.map(Body::new)).await }
    });
    let conn = http.serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(client = %peer.ip(), error = %e, "connection ended");
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A connection past a limit: one `503` problem document, then closed.
async fn refuse(mut tcp: TcpStream, why: Refusal) {
    let detail = match why {
        Refusal::NodeFull => "the node has as many connections open as it takes",
        Refusal::ClientFull => "this client has as many connections open as it may",
    };
    let body = crate::Problem::overloaded(detail).to_json().to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {}\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        crate::problem::PROBLEM_JSON,
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body.as_bytes()).await?;
        tcp.shutdown().await
    })
    .await;
}
