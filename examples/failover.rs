//! The seed pattern: fail over to a secondary when the primary cannot be
//! reached.
//!
//! ```text
//! cargo run --example failover -- --listen 127.0.0.1:8080 --primary 127.0.0.1:9001 --secondary 127.0.0.1:9002
//! ```
//!
//! With no arguments it runs a self-contained demo on loopback: a primary
//! that refuses connections, a healthy secondary, three requests through the
//! proxy, and the attempt trace of each.

use std::net::SocketAddr;

use switchyard::prelude::*;

/// Primary first; after one connect failure, the secondary.
struct Failover {
    primary: SocketAddr,
    secondary: SocketAddr,
}

/// Per-request state: how many connect failures this request has seen.
struct Ctx {
    tries: usize,
}

impl ProxyHttp for Failover {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx { tries: 0 }
    }

    async fn upstream_peer(&self, _s: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let addr = if ctx.tries < 1 {
            self.primary
        } else {
            self.secondary
        };
        Ok(Box::new(HttpPeer::new(addr, false, String::new())))
    }

    fn fail_to_connect(
        &self,
        _s: &mut Session,
        _p: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if ctx.tries > 0 {
            return e;
        }
        ctx.tries += 1;
        e.set_retry(true);
        e
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, _ctx: &mut Ctx) {
        let head = session.req_header();
        let status = session.response_status().map_or(0, |s| s.as_u16());
        let outcome = e.map_or_else(String::new, |e| format!(" error: {e}"));
        println!(
            "{} {} -> {status} via {}{outcome}",
            head.method,
            head.uri,
            session.attempts()
        );
    }
}

/// `--listen`, `--primary` and `--secondary`, or none of them for the demo.
struct Args {
    listen: SocketAddr,
    primary: SocketAddr,
    secondary: SocketAddr,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> std::result::Result<Option<Args>, String> {
    let (mut listen, mut primary, mut secondary) = (None, None, None);
    let mut any = false;
    while let Some(flag) = args.next() {
        any = true;
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let addr: SocketAddr = value
            .parse()
            .map_err(|e| format!("{flag} {value:?} is not ip:port: {e}"))?;
        match flag.as_str() {
            "--listen" => listen = Some(addr),
            "--primary" => primary = Some(addr),
            "--secondary" => secondary = Some(addr),
            other => {
                return Err(format!(
                    "unknown flag {other}; expected --listen, --primary, --secondary"
                ));
            }
        }
    }
    if !any {
        return Ok(None);
    }
    match (listen, primary, secondary) {
        (Some(listen), Some(primary), Some(secondary)) => Ok(Some(Args {
            listen,
            primary,
            secondary,
        })),
        _ => Err("give all of --listen, --primary and --secondary (or none, for the demo)".into()),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("failover: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match args {
        Some(args) => serve(args).await,
        None => demo().await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("failover: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Run the proxy until Ctrl-C, then drain.
async fn serve(args: Args) -> Result<()> {
    let proxy = Failover {
        primary: args.primary,
        secondary: args.secondary,
    };
    let server = ProxyServer::bind(args.listen, proxy, ServerOptions::default()).await?;
    println!(
        "proxying {} -> {} (failover to {})",
        server.local_addr(),
        args.primary,
        args.secondary
    );
    let shutdown = server.shutdown_handle();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            shutdown.shutdown();
        }
    });
    server.serve().await
}

/// The embedded default: a refusing primary, a healthy secondary, three requests.
async fn demo() -> Result<()> {
    use switchyard_testkit::{Origin, client, refused_addr};

    let primary = refused_addr().await;
    let secondary = Origin::healthy("secondary").await;
    println!(
        "demo: primary {primary} refuses connections; secondary {} is healthy",
        secondary.addr()
    );
    let proxy = Failover {
        primary,
        secondary: secondary.addr(),
    };
    let server = ProxyServer::bind(
        "127.0.0.1:0"
            .parse()
            .or_err(ErrorKind::Internal, "demo address")?,
        proxy,
        ServerOptions::default(),
    )
    .await?;
    let addr = server.local_addr();
    let shutdown = server.shutdown_handle();
    let running = tokio::spawn(server.serve());
    println!("demo: proxy listening on {addr}\n");
    for path in ["/", "/orders/42", "/health"] {
        match client::get(addr, path).await {
            Ok(reply) => println!(
                "  client got {} {:?}\n",
                reply.status.as_u16(),
                String::from_utf8_lossy(&reply.body)
            ),
            Err(e) => println!("  client error: {e}\n"),
        }
    }
    shutdown.shutdown();
    running
        .await
        .or_err(ErrorKind::Internal, "the proxy task")??;
    Ok(())
}
