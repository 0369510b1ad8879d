//! The HTTP/3 listeners of a config: one QUIC endpoint per UDP address,
//! served on this runtime (the worker threads serve TCP only), with the
//! certificates of `[server.tls]`. HTTPS answers then carry `Alt-Svc`
//! naming the first one's port.

use std::sync::Arc;

use switchyard::server::{Http3Server, Started};

use super::Running;

impl Running {
    /// Bind and serve every `[server.http3]` address; set `Alt-Svc` for the
    /// TCP listeners bound after this.
    pub(super) fn listen_http3(&mut self) -> Result<(), String> {
        let (Some(http3), Some(tls)) = (&self.config.http3, &self.config.tls) else {
            return Ok(());
        };
        let (addresses, limits, tls) = (http3.listen.clone(), http3.limits, tls.loaded.clone());
        let proxy = Arc::new(self.proxy.clone());
        for addr in addresses {
            let options = self.config.server.clone();
            let server = Http3Server::bind(addr, Arc::clone(&proxy), options, limits, &tls)
                .map_err(|e| format!("cannot listen on {addr} (UDP, HTTP/3): {e}"))?;
            let bound = server.local_addr();
            if self.listening_http3.is_empty() {
                let alt_svc = format!("h3=\":{}\"; ma=86400", bound.port());
                self.config.server.alt_svc = http::HeaderValue::from_str(&alt_svc).ok();
            }
            self.listening_http3.push(bound);
            self.track(Started {
                shutdown: server.shutdown_handle(),
                pool: server.upstream_pool(),
                counts: server.connection_counts(),
                task: tokio::spawn(server.serve()),
            });
        }
        Ok(())
    }
}
