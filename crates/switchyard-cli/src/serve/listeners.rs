//! The listening sockets of a config: bound here, or adopted from the
//! process this one replaces (a binary upgrade, `crate::handover`), each
//! served by this runtime or a worker thread. A duplicate of every socket
//! is kept to hand to the next upgrade; [`Running::stop`] closes them.
//!
//! Every socket is bound or adopted before any is served: a process that
//! takes over and then fails to bind one address has accepted nothing, so
//! the connections waiting on the sockets it shares stay with the old
//! process.

use std::os::fd::AsFd;
use std::sync::Arc;

use switchyard::ProxyServer;
use switchyard::server::{ListenAddr, Listening, Started, bind_reusing_port, bind_unix};
use switchyard::tls::ServerTls;
use tokio::net::TcpListener;

use super::Running;
use crate::admin::{self, Admin};
use crate::handover::{Inherited, Role, Socket};
use crate::proxy::ConfigProxy;

/// One listen address, its sockets bound or adopted, not yet served.
struct Prepared {
    configured: ListenAddr,
    tls: Option<ServerTls>,
    /// Served on this runtime: the first socket, and any inherited beyond
    /// one per worker thread.
    here: Vec<ProxyServer<ConfigProxy>>,
    /// One per worker thread.
    for_workers: Vec<Listening>,
}

impl Running {
    /// Serve every listen address of the config (HTTP, HTTPS, admin), on
    /// the sockets `inherited` holds for it or on new ones.
    pub(super) async fn listen(&mut self, inherited: &mut Inherited) -> Result<(), String> {
        // First: the TCP listeners' options name its port in Alt-Svc.
        self.listen_http3()?;
        let cleartext = self.config.listen.iter().map(|addr| (addr.clone(), None));
        let tls = self.config.tls.iter().flat_map(|tls| {
            tls.listen
                .iter()
                .map(|addr| (ListenAddr::Tcp(*addr), Some(tls.loaded.clone())))
        });
        let addresses: Vec<_> = cleartext.chain(tls).collect();
        let mut prepared = Vec::with_capacity(addresses.len());
        for (configured, tls) in addresses {
            prepared.push(self.prepare(configured, tls, inherited).await?);
        }
        let admin = self.prepare_admin(inherited).await?;
        // Every socket is ours: only now does anything accept.
        for address in prepared {
            self.serve(address).await?;
        }
        if let Some(listener) = admin {
            self.serve_admin(listener);
        }
        let unused = inherited.close_unused();
        if unused > 0 {
            eprintln!(
                "switchyard: closed {unused} inherited listening socket(s) of addresses this config does not list"
            );
        }
        Ok(())
    }

    /// Bind or adopt the sockets of `configured`: one here, one per worker.
    async fn prepare(
        &mut self,
        configured: ListenAddr,
        tls: Option<ServerTls>,
        inherited: &mut Inherited,
    ) -> Result<Prepared, String> {
        let role = if tls.is_some() {
            Role::Https
        } else {
            Role::Http
        };
        let cannot = |e: &dyn std::fmt::Display| format!("cannot listen on {configured}: {e}");
        let mut sockets = inherited.take(role, &configured).into_iter();
        let adopted = sockets.len() > 0;
        let options = self.config.server.clone();
        let first = match sockets.next() {
            Some(socket) => ProxyServer::from_listener(socket, self.proxy.clone(), options.clone()),
            None => self.bind(&configured).await,
        }
        .map_err(|e| cannot(&e))?;
        let bound = first.local_addr();
        match &configured {
            ListenAddr::Tcp(_) => {
                self.listening.push(bound);
                self.secure.push(tls.is_some());
            }
            // HTTPS listeners are TCP ones.
            ListenAddr::Unix(path) => self.listening_unix.push(path.clone()),
        }
        // The worker threads' sockets: inherited ones first; then new ones
        // on the port the first got, or, for a Unix socket or one inherited
        // (perhaps bound without SO_REUSEPORT), the same socket again.
        let mut for_workers = Vec::with_capacity(self.workers.len());
        for _ in 0..self.workers.len() {
            let socket = match (sockets.next(), &configured) {
                (Some(socket), _) => Ok(socket),
                (None, ListenAddr::Tcp(_)) if !adopted => {
                    bind_reusing_port(bound).map(Listening::Tcp)
                }
                (None, _) => first.listening_socket(),
            }
            .map_err(|e| cannot(&e))?;
            let duplicate = socket.try_clone().map_err(|e| cannot(&e))?;
            self.keep(role, &configured, duplicate);
            for_workers.push(socket);
        }
        // More inherited sockets than worker threads (the old process had
        // more): served here too, or the connections waiting in them would
        // be refused when the old process closes its copies.
        let mut here = vec![first];
        for socket in sockets {
            here.push(
                ProxyServer::from_listener(socket, self.proxy.clone(), options.clone())
                    .map_err(|e| cannot(&e))?,
            );
        }
        for server in &here {
            let duplicate = server.listening_socket().map_err(|e| cannot(&e))?;
            self.keep(role, &configured, duplicate);
        }
        Ok(Prepared {
            configured,
            tls,
            here,
            for_workers,
        })
    }

    /// A new server on `configured`: a Unix socket file is made with
    /// `unix_mode` (replacing one a crashed process left).
    async fn bind(&self, configured: &ListenAddr) -> switchyard::Result<ProxyServer<ConfigProxy>> {
        let options = self.config.server.clone();
        match configured {
            ListenAddr::Tcp(addr) => ProxyServer::bind(*addr, self.proxy.clone(), options).await,
            ListenAddr::Unix(path) => {
                let listener = bind_unix(path, Some(self.config.unix_mode))
                    .await
                    .map_err(|e| {
                        switchyard::Error::because(
                            switchyard::ErrorKind::Internal,
                            format!("binding {}", path.display()),
                            e,
                        )
                    })?;
                ProxyServer::from_listener(listener, self.proxy.clone(), options)
            }
        }
    }

    /// Start serving a prepared address, here and on every worker thread.
    async fn serve(&mut self, prepared: Prepared) -> Result<(), String> {
        let Prepared {
            configured,
            tls,
            here,
            for_workers,
        } = prepared;
        for server in here {
            self.run_here(server, tls.clone());
        }
        let options = self.config.server.clone();
        let started = self
            .workers
            .serve_listeners(for_workers, &self.proxy, &options, tls.as_ref())
            .await
            .map_err(|e| format!("cannot listen on {configured} in every worker: {e}"))?;
        for started in started {
            self.track(started);
        }
        Ok(())
    }

    /// Keep a started server's stop handle, pool, counts and task, and
    /// report its pool and connections in the metrics.
    pub(super) fn track(&mut self, started: Started) {
        self.shutdowns.push(started.shutdown);
        self.observer.watch_pool(started.pool.clone());
        self.pools.push(started.pool);
        self.observer.watch_connections(started.counts);
        self.servers.push(started.task);
    }

    /// Serve `server` on this runtime.
    fn run_here(&mut self, server: ProxyServer<ConfigProxy>, tls: Option<ServerTls>) {
        let server = match tls {
            Some(tls) => server.with_tls(tls),
            None => server,
        };
        self.track(Started {
            shutdown: server.shutdown_handle(),
            pool: server.upstream_pool(),
            counts: server.connection_counts(),
            task: tokio::spawn(server.serve()),
        });
    }

    /// Bind or adopt the admin listener, if the config has one.
    async fn prepare_admin(
        &mut self,
        inherited: &mut Inherited,
    ) -> Result<Option<TcpListener>, String> {
        let Some(addr) = self.config.admin else {
            return Ok(None);
        };
        let cannot = |e: std::io::Error| format!("cannot listen on admin address {addr}: {e}");
        let configured = ListenAddr::Tcp(addr);
        let listener = match inherited.take(Role::Admin, &configured).into_iter().next() {
            Some(Listening::Tcp(socket)) => admin::adopt(socket),
            Some(Listening::Unix(_)) => Err(std::io::Error::other("a Unix socket for admin")),
            None => admin::bind(addr).await,
        }
        .map_err(cannot)?;
        let duplicate = listener.as_fd().try_clone_to_owned().map_err(cannot)?;
        self.keep(Role::Admin, &configured, Listening::Tcp(duplicate.into()));
        Ok(Some(listener))
    }

    fn serve_admin(&mut self, listener: TcpListener) {
        self.admin = listener.local_addr().ok();
        let admin = Arc::new(Admin::new(Arc::clone(&self.observer), &self.config));
        self.admin_state = Some(Arc::clone(&admin));
        self.admin_task = Some(tokio::spawn(admin::serve(listener, admin)));
    }

    fn keep(&mut self, role: Role, configured: &ListenAddr, listener: Listening) {
        self.sockets.push(Socket {
            role,
            configured: configured.clone(),
            listener,
        });
    }
}
