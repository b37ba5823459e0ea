//! A TCP proxy the tests put between the host and a real service, to cut
//! the network at a chosen moment and restore it later.
//!
//! `cut` closes every proxied connection and refuses (accepts and at once
//! drops) new ones, which is what a broker restart or a network partition
//! looks like from the client; `restore` forwards again. The service itself
//! is never touched, so tests can run in parallel against one broker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    /// `true` while cut. Every connection task watches it.
    cut: watch::Sender<bool>,
    accepted: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl TcpProxy {
    /// Listens on `127.0.0.1:0` and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (cut, _) = watch::channel(false);
        let stop = CancellationToken::new();
        let accepted = Arc::new(AtomicU64::new(0));
        tokio::spawn(accept_loop(
            listener,
            upstream,
            cut.clone(),
            accepted.clone(),
            stop.clone(),
        ));
        Self {
            addr,
            upstream,
            cut,
            accepted,
            stop,
        }
    }

    /// Where clients connect instead of the service.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service behind the proxy.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Connections accepted and forwarded so far (refused ones excluded).
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Drops every live connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    /// Whether the proxy is cut right now.
    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        // Also ends the live connections.
        self.cut.send_replace(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    cut: watch::Sender<bool>,
    accepted: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    loop {
        let (client, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => continue,
            },
        };
        if *cut.borrow() {
            drop(client);
            continue;
        }
        let rx = cut.subscribe();
        accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(forward(client, upstream, rx));
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = cut.wait_for(|c| *c) => {}
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
    // Dropping both sockets closes them: the client sees its link die.
}
