//! The process's open-file limit: raised to its hard limit at start (each
//! client connection and each upstream connection is a file descriptor),
//! and the default `[server] max_connections` derived from it, so the proxy
//! stops accepting before it runs out of descriptors instead of failing
//! accepts and connects at random.

/// Descriptors kept for everything but client and upstream connections:
/// listeners, the admin listener, logs, resolver lookups.
const RESERVED: u64 = 64;

/// Raise the soft open-file limit to the hard one. A failure is logged and
/// changes nothing: the proxy runs with the limit it has.
pub fn raise_open_files() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
}

/// The default client connection limit: half the open-file limit (each
/// client connection may hold an upstream connection too), less a reserve.
pub fn default_max_connections() -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    connections_for(soft)
}

/// Client connections that fit in `open_files` descriptors.
fn connections_for(open_files: u64) -> usize {
    let per_client = open_files.saturating_sub(RESERVED) / 2;
    usize::try_from(per_client.max(1)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn half_the_descriptors_less_a_reserve_and_never_zero() {
        assert_eq!(super::connections_for(1024), 480);
        assert_eq!(super::connections_for(1_048_576), 524_256);
        assert_eq!(super::connections_for(10), 1);
    }
}
