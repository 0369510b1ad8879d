//! What the access log and the metrics take from a finished request.

use std::time::Instant;

use switchyard::Error;
use switchyard::policy::dry_run::WouldHave;
use switchyard::proxy::Session;
use switchyard::proxy::respond::proxy_status;
use switchyard::route::RouteCtx;

use super::{ClientProtocol, Finished, Observer};

impl Observer {
    /// Count a finished request in the metrics and, when asked for, write
    /// its access log line.
    pub fn report(
        &self,
        session: &Session,
        e: Option<&Error>,
        ctx: &RouteCtx,
        dry_runs: Vec<WouldHave>,
    ) {
        let label = ctx.upstream().map(|group| group.label());
        if let Some(label) = label {
            for &status in ctx.group.holds() {
                self.count_held(label, status);
            }
        }
        if !dry_runs.is_empty() {
            self.count_dry_runs(&dry_runs);
        }
        if let (Some(route), Some(why)) = (ctx.route(), ctx.refusal()) {
            self.count_refusal(&route.name, why);
        }
        let protocol = ClientProtocol::of(session.req_header().version);
        self.connections.count_request(protocol);
        let status = session.response_status().map_or(0, |s| s.as_u16());
        let route = ctx.route().map(|r| &r.name);
        self.count(label, route, status, session.attempts());
        if let Some(grpc) = session.grpc_status() {
            self.count_grpc(label, grpc.code);
        }
        if let Some(upgrade) = session.upgrade() {
            self.count_upgrade(label, upgrade);
        }
        self.otlp.export(session, e, ctx);
        if !self.wants_details() {
            return;
        }
        let head = session.req_header();
        let trace = session.attempts().clone();
        let finished = Finished {
            client: session.client_addr().to_string(),
            method: head.method.to_string(),
            path: head
                .uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_string(),
            status,
            bytes: trace.last().map_or(0, |a| a.response_body_bytes),
            duration: Instant::now().saturating_duration_since(trace.start()),
            upstream: ctx.upstream().map(|group| group.name().to_string()),
            error: e.map(|e| e.to_string()),
            trace,
            request_id: session.request_id().to_str().unwrap_or("-").to_string(),
            upgrade: session.upgrade().cloned(),
            dry_runs,
            grpc: session.grpc_status().cloned(),
            proxy_status: e.and_then(|e| proxy_status(e).to_str().ok().map(str::to_string)),
            trace_id: session.trace_context().map(|t| t.trace_id_hex()),
            refused: ctx.refusal().map(|why| why.as_str()),
            split: split_of(ctx),
            protocol,
        };
        self.log(&finished);
        self.traces.keep(finished);
    }
}

/// The side of the request's split, by group name, and the side it was
/// meant for if it moved.
fn split_of(ctx: &RouteCtx) -> Option<(String, Option<String>)> {
    let choice = ctx.split()?;
    let route = ctx.route()?;
    let switchyard::route::RouteTarget::Split(split) = &route.target else {
        return None;
    };
    let name = |side: usize| split.sides().get(side).map(|s| s.group.name().to_string());
    Some((name(choice.side)?, choice.moved_from.and_then(name)))
}
