//! Worker threads, as nginx's worker processes: the caller's runtime serves
//! a listen address with one [`ProxyServer`] bound with `SO_REUSEPORT`
//! ([`ServerOptions::reuse_port`]), and each worker thread runs its own
//! current-thread runtime with its own server on the same address, so the
//! kernel spreads new connections among them. A worker keeps its own pool
//! of upstream connections and never hands a request to another thread, so
//! nothing is woken across threads on the way through; what the workers
//! share is what the clones of the proxy value share (in the binary: routes,
//! upstream groups and their health, metrics).

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::{ConnectionCounts, Listening, ProxyServer, ServerOptions, ShutdownHandle};
use crate::error::{Error, ErrorKind, Result};
use crate::proxy::ProxyHttp;
use crate::tls::ServerTls;
use crate::upstream::pool::UpstreamPool;

/// Worker threads, each with its own runtime, serving listen addresses
/// beside the caller's own server. Dropping it ends the threads: shut
/// their servers down (and await [`Started::task`]) first for a graceful
/// stop.
///
/// ```no_run
/// # use switchyard::prelude::*;
/// # use switchyard::server::Workers;
/// # #[derive(Clone)]
/// # struct MyProxy;
/// # impl ProxyHttp for MyProxy {
/// #     type CTX = ();
/// #     fn new_ctx(&self) {}
/// #     async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
/// #         Ok(Box::new(HttpPeer::parse("127.0.0.1:8000")?))
/// #     }
/// # }
/// # async fn run() -> Result<()> {
/// let options = ServerOptions { reuse_port: true, ..ServerOptions::default() };
/// let first = ProxyServer::bind("127.0.0.1:8080".parse().unwrap(), MyProxy, options.clone()).await?;
/// // One more worker, on a thread of its own, serving the same port.
/// let workers = Workers::start(1)?;
/// let others = workers.serve(first.local_addr(), &MyProxy, &options, None).await?;
/// first.serve().await?;
/// # drop(others);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct Workers {
    threads: Vec<Worker>,
}

#[derive(Debug)]
struct Worker {
    runtime: Handle,
    /// Dropped (or sent) to end the thread's runtime.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A server running on a worker thread: the handles its caller keeps.
#[derive(Debug)]
pub struct Started {
    /// Stops it gracefully.
    pub shutdown: ShutdownHandle,
    /// Its own pool of upstream connections.
    pub pool: UpstreamPool,
    /// Its client connection counts.
    pub counts: ConnectionCounts,
    /// Resolves when it has stopped (it may be awaited on any runtime).
    pub task: tokio::task::JoinHandle<Result<()>>,
}

impl Workers {
    /// Start `count` worker threads (`switchyard-worker-1` and on), each
    /// with its own current-thread runtime.
    pub fn start(count: usize) -> Result<Workers> {
        let mut workers = Workers::default();
        for index in 1..=count {
            workers.threads.push(Worker::start(index)?);
        }
        Ok(workers)
    }

    /// How many worker threads there are.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Serve `addr` on every worker thread, each with a clone of `proxy`.
    /// `addr` is where a server bound with [`ServerOptions::reuse_port`]
    /// listens (with the port it got, if it asked for port 0); the workers
    /// bind with `reuse_port` whatever `options` says.
    pub async fn serve<P: ProxyHttp + Clone>(
        &self,
        addr: SocketAddr,
        proxy: &P,
        options: &ServerOptions,
        tls: Option<&ServerTls>,
    ) -> Result<Vec<Started>> {
        let options = ServerOptions {
            reuse_port: true,
            ..options.clone()
        };
        let mut started = Vec::with_capacity(self.threads.len());
        for worker in &self.threads {
            let proxy = proxy.clone();
            let listen = Listen::Bind(addr);
            started.push(
                worker
                    .serve(listen, proxy, options.clone(), tls.cloned())
                    .await?,
            );
        }
        Ok(started)
    }

    /// Serve sockets already listening, one per worker thread in order
    /// (for example those inherited from the process this one replaces;
    /// see [`bind_reusing_port`](super::bind_reusing_port) to make more).
    /// Fails if there are more sockets than workers.
    pub async fn serve_listeners<P: ProxyHttp + Clone>(
        &self,
        listeners: Vec<Listening>,
        proxy: &P,
        options: &ServerOptions,
        tls: Option<&ServerTls>,
    ) -> Result<Vec<Started>> {
        if listeners.len() > self.threads.len() {
            let context = format!(
                "{} listening sockets for {} worker threads",
                listeners.len(),
                self.threads.len()
            );
            return Err(Error::explain(ErrorKind::Internal, context));
        }
        let mut started = Vec::with_capacity(listeners.len());
        for (worker, listener) in self.threads.iter().zip(listeners) {
            let listen = Listen::Socket(listener);
            let server = worker.serve(listen, proxy.clone(), options.clone(), tls.cloned());
            started.push(server.await?);
        }
        Ok(started)
    }
}

/// What a worker's server listens on.
#[derive(Debug)]
enum Listen {
    /// Bind this address (with `SO_REUSEPORT`).
    Bind(SocketAddr),
    /// Serve this socket, already listening.
    Socket(Listening),
}

impl Listen {
    fn describe(&self) -> String {
        match self {
            Listen::Bind(addr) => addr.to_string(),
            Listen::Socket(Listening::Tcp(socket)) => socket
                .local_addr()
                .map_or_else(|_| "a listening socket".to_string(), |a| a.to_string()),
            Listen::Socket(Listening::Unix(socket)) => socket
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "a Unix socket".to_string()),
        }
    }

    async fn server<P: ProxyHttp>(
        self,
        proxy: P,
        options: ServerOptions,
    ) -> Result<ProxyServer<P>> {
        match self {
            Listen::Bind(addr) => ProxyServer::bind(addr, proxy, options).await,
            Listen::Socket(socket) => ProxyServer::from_listener(socket, proxy, options),
        }
    }
}

impl Worker {
    fn start(index: usize) -> Result<Worker> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, runtime) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("switchyard-worker-{index}"))
            .spawn(move || {
                let built = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let runtime = match built {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(runtime.handle().clone()));
                // Tasks of this runtime run while this thread waits here.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| {
                let context = format!("starting worker thread {index}");
                Error::because(ErrorKind::Internal, context, e)
            })?;
        let built = runtime.recv().map_err(|_| {
            let context = format!("worker thread {index} ended before its runtime started");
            Error::explain(ErrorKind::Internal, context)
        })?;
        let runtime = built.map_err(|e| {
            let context = format!("starting the runtime of worker thread {index}");
            Error::because(ErrorKind::Internal, context, e)
        })?;
        Ok(Worker {
            runtime,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Bind or adopt `listen` on this worker's runtime and serve it there.
    async fn serve<P: ProxyHttp>(
        &self,
        listen: Listen,
        proxy: P,
        options: ServerOptions,
        tls: Option<ServerTls>,
    ) -> Result<Started> {
        let addr = listen.describe();
        let (bound, handles) = oneshot::channel();
        let task = self.runtime.spawn(async move {
            let mut server = match listen.server(proxy, options).await {
                Ok(server) => server,
                Err(e) => {
                    let _ = bound.send(Err(e));
                    return Ok(());
                }
            };
            if let Some(tls) = tls {
                server = server.with_tls(tls);
            }
            let kept = (
                server.shutdown_handle(),
                server.upstream_pool(),
                server.connection_counts(),
            );
            let _ = bound.send(Ok(kept));
            server.serve().await
        });
        let (shutdown, pool, counts) = handles.await.map_err(|_| {
            let context = format!("a worker thread stopped before serving {addr}");
            Error::explain(ErrorKind::Internal, context)
        })??;
        Ok(Started {
            shutdown,
            pool,
            counts,
            task,
        })
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for worker in &mut self.threads {
            worker.stop.take();
        }
        for worker in &mut self.threads {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}
