//! Addresses where connection attempts fail on purpose: one that refuses
//! ([`refused_addr`], ECONNREFUSED at once) and one that hangs
//! ([`Blackhole`], the connect never completes).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// How long a filler connect may take before the accept queue counts as full.
const FILL_TIMEOUT: Duration = Duration::from_millis(200);
/// How many filler connections [`Blackhole::start`] tries before giving up.
const MAX_FILLERS: usize = 64;

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Returns a loopback address where nothing listens: connecting there gets
/// ECONNREFUSED. (A listener is bound on `127.0.0.2:0`, its address taken and
/// the listener dropped.)
///
/// The address is 127.0.0.2, where nothing else in the kit or the tests
/// listens: on 127.0.0.1 the kernel may hand the freed port to the next
/// test that binds port 0, and the "dead" server then answers (seen when
/// the machine was loaded).
pub async fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind(SocketAddr::from((REFUSED_IP, 0)))
        .await
        .expect("refused_addr: bind 127.0.0.2:0");
    let addr = listener
        .local_addr()
        .expect("refused_addr: local_addr of the listener");
    drop(listener);
    addr
}

/// The loopback address [`refused_addr`] uses, kept free of listeners.
const REFUSED_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A loopback address where a connect attempt hangs instead of failing.
///
/// A listener with the smallest backlog never accepts, and its accept queue is
/// filled by the kit's own connections (kept open in this struct). The kernel
/// then drops further SYNs, so a new connect to [`Blackhole::addr`] neither
/// succeeds nor is refused: it times out. Dropping the `Blackhole` closes the
/// listener and the filler connections.
pub struct Blackhole {
    addr: SocketAddr,
    _listener: TcpListener,
    fillers: Vec<TcpStream>,
}

impl Blackhole {
    /// Binds the listener and fills its accept queue until a connect attempt
    /// no longer completes within 200 ms. Panics if that never happens within
    /// 64 attempts.
    pub async fn start() -> Blackhole {
        let socket = TcpSocket::new_v4().expect("Blackhole: create socket");
        socket
            .bind(loopback())
            .expect("Blackhole: bind 127.0.0.1:0");
        let listener = socket.listen(0).expect("Blackhole: listen");
        let addr = listener.local_addr().expect("Blackhole: local_addr");
        let mut fillers = Vec::new();
        for _ in 0..MAX_FILLERS {
            match tokio::time::timeout(FILL_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => fillers.push(stream),
                Ok(Err(e)) => panic!("Blackhole: filler connect to {addr} failed: {e}"),
                // The queue is full: this attempt hung; drop it and stop.
                Err(_) => {
                    return Blackhole {
                        addr,
                        _listener: listener,
                        fillers,
                    };
                }
            }
        }
        panic!(
            "Blackhole: accept queue of {addr} never filled after {MAX_FILLERS} connections; \
             connects would not hang"
        )
    }

    /// The address where connect attempts hang.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl fmt::Debug for Blackhole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blackhole")
            .field("addr", &self.addr)
            .field("fillers", &self.fillers.len())
            .finish()
    }
}
