//! Worker threads: with `workers = N`, the calling thread's runtime serves
//! every listener, and N - 1 more threads each run their own
//! current-thread runtime with their own server on every listen address
//! (`SO_REUSEPORT`: the kernel spreads new connections among them), as
//! nginx's worker processes do. A worker keeps its own pool of upstream
//! connections and never hands a request to another thread, so nothing is
//! woken across threads on the way through; what the workers share (routes,
//! upstream groups and their health, metrics) is behind `Arc`s.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use switchyard::tls::ServerTls;
use switchyard::{ProxyServer, ServerOptions, ShutdownHandle, UpstreamPool};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::proxy::ConfigProxy;

/// The worker threads beyond the calling one.
#[derive(Debug, Default)]
pub(super) struct Workers {
    threads: Vec<Worker>,
}

#[derive(Debug)]
struct Worker {
    runtime: Handle,
    /// Dropped (or sent) to end the thread's runtime.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What the caller keeps of a server started on a worker.
pub(super) struct Started {
    pub(super) shutdown: ShutdownHandle,
    pub(super) pool: UpstreamPool,
    pub(super) counts: switchyard::server::ConnectionCounts,
    pub(super) task: tokio::task::JoinHandle<switchyard::Result<()>>,
}

impl Workers {
    /// Start `count` worker threads, each with its own runtime.
    pub(super) fn start(count: usize) -> Result<Workers, String> {
        let mut workers = Workers::default();
        for index in 1..=count {
            workers.threads.push(Worker::start(index)?);
        }
        Ok(workers)
    }

    /// Serve `addr` (a port already bound by the first server, shared with
    /// `SO_REUSEPORT`) on every worker thread.
    pub(super) async fn serve(
        &self,
        addr: SocketAddr,
        proxy: &ConfigProxy,
        options: &ServerOptions,
        tls: Option<&ServerTls>,
    ) -> Result<Vec<Started>, String> {
        let mut started = Vec::with_capacity(self.threads.len());
        for worker in &self.threads {
            started.push(
                worker
                    .serve(addr, proxy.clone(), options.clone(), tls.cloned())
                    .await?,
            );
        }
        Ok(started)
    }
}

impl Worker {
    fn start(index: usize) -> Result<Worker, String> {
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
                        let _ = ready.send(Err(e.to_string()));
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
            .map_err(|e| format!("cannot start worker thread {index}: {e}"))?;
        let runtime = runtime
            .recv()
            .map_err(|_| format!("worker thread {index} ended before its runtime started"))?
            .map_err(|e| format!("cannot start the runtime of worker thread {index}: {e}"))?;
        Ok(Worker {
            runtime,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Bind `addr` on this worker's runtime and serve it there.
    async fn serve(
        &self,
        addr: SocketAddr,
        proxy: ConfigProxy,
        options: ServerOptions,
        tls: Option<ServerTls>,
    ) -> Result<Started, String> {
        let (bound, handles) = oneshot::channel();
        let task = self.runtime.spawn(async move {
            let mut server = match ProxyServer::bind(addr, proxy, options).await {
                Ok(server) => server,
                Err(e) => {
                    let _ = bound.send(Err(format!("cannot listen on {addr}: {e}")));
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
        let (shutdown, pool, counts) = handles
            .await
            .map_err(|_| format!("a worker thread failed to serve {addr}"))??;
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
