#!/usr/bin/env bash
# Build the .deb (dist/build-deb.sh), unpack it into a scratch root, and
# check what it ships: every file in place, the shipped config passes
# `switchyard check` with the shipped binary, the completions parse, the man
# page renders, the unit file is complete. Run on purpose (it builds a
# release binary), like bench/.
#
#   dist/test-deb.sh            (BIN=path/to/switchyard to skip the build)
set -euo pipefail
cd "$(dirname "$0")/.."
SCRATCH=$(mktemp -d /tmp/switchyard-deb-test-XXXX)
trap 'rm -rf "$SCRATCH"' EXIT
DEB=$(dist/build-deb.sh "$SCRATCH/out")
echo "test-deb.sh: built $DEB"
dpkg-deb --info "$DEB" | grep -q "Package: switchyard"
dpkg-deb -x "$DEB" "$SCRATCH/root"
R="$SCRATCH/root"
fail() { echo "test-deb.sh: FAILED: $*" >&2; exit 1; }
for f in usr/bin/switchyard lib/systemd/system/switchyard.service etc/switchyard/switchyard.toml \
         etc/logrotate.d/switchyard usr/share/man/man1/switchyard.1.gz \
         usr/share/bash-completion/completions/switchyard usr/share/zsh/vendor-completions/_switchyard \
         usr/share/fish/vendor_completions.d/switchyard.fish usr/share/doc/switchyard/config.md; do
    [ -s "$R/$f" ] || fail "$f is missing or empty"
done
"$R/usr/bin/switchyard" check -c "$R/etc/switchyard/switchyard.toml" || fail "the shipped config does not pass check"
bash -n "$R/usr/share/bash-completion/completions/switchyard" || fail "the bash completion does not parse"
zcat "$R/usr/share/man/man1/switchyard.1.gz" | grep -q '^\.TH switchyard 1' || fail "the man page has no title"
for key in Type=notify ExecReload= AmbientCapabilities=CAP_NET_BIND_SERVICE ProtectSystem=strict NoNewPrivileges=yes DynamicUser=yes; do
    grep -q "^$key" "$R/lib/systemd/system/switchyard.service" || fail "the unit has no $key"
done
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify "$R/lib/systemd/system/switchyard.service" 2>&1 | grep -v "man switchyard" || true
fi
echo "test-deb.sh: ok ($(du -h "$DEB" | cut -f1) package; the shipped config passes check)"
