#!/usr/bin/env bash
# Build a Debian package of Switchyard with dpkg-deb (no cargo-deb needed):
# the binary (stripped), the systemd unit, a default
# /etc/switchyard/switchyard.toml that passes `switchyard check`, the
# logrotate config, the man page, bash/zsh/fish completions and the docs.
#
#   dist/build-deb.sh [OUT_DIR]         (default: target/deb)
#   BIN=path/to/switchyard dist/build-deb.sh   (package this binary; else a release build)
#
# Prints the path of the .deb. dist/test-deb.sh builds one and checks it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/deb}
for tool in dpkg-deb dpkg strip gzip; do
    command -v "$tool" >/dev/null || { echo "build-deb.sh: $tool is missing" >&2; exit 2; }
done
if [ -z "${BIN:-}" ]; then
    echo "build-deb.sh: building switchyard (release)" >&2
    cargo build --release -q -p switchyard-cli
    BIN=target/release/switchyard
fi
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version = "\(.*\)"/\1/p' Cargo.toml)
ARCH=$(dpkg --print-architecture)
NAME="switchyard_${VERSION}_${ARCH}"
WORK=$(mktemp -d /tmp/switchyard-deb-XXXX)
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/$NAME"

install -Dm755 "$BIN" "$ROOT/usr/bin/switchyard"
strip "$ROOT/usr/bin/switchyard"
install -Dm644 dist/switchyard.service "$ROOT/lib/systemd/system/switchyard.service"
install -Dm644 dist/switchyard.toml "$ROOT/etc/switchyard/switchyard.toml"
install -Dm644 dist/logrotate "$ROOT/etc/logrotate.d/switchyard"
mkdir -p "$ROOT/usr/share/man/man1" "$ROOT/usr/share/bash-completion/completions" \
    "$ROOT/usr/share/zsh/vendor-completions" "$ROOT/usr/share/fish/vendor_completions.d"
"$BIN" man | gzip -9n > "$ROOT/usr/share/man/man1/switchyard.1.gz"
"$BIN" completions bash > "$ROOT/usr/share/bash-completion/completions/switchyard"
"$BIN" completions zsh > "$ROOT/usr/share/zsh/vendor-completions/_switchyard"
"$BIN" completions fish > "$ROOT/usr/share/fish/vendor_completions.d/switchyard.fish"
install -Dm644 README.md "$ROOT/usr/share/doc/switchyard/README.md"
install -Dm644 docs/config.md "$ROOT/usr/share/doc/switchyard/config.md"

mkdir -p "$ROOT/DEBIAN"
cat > "$ROOT/DEBIAN/control" <<CONTROL
Package: switchyard
Version: $VERSION
Architecture: $ARCH
Maintainer: Switchyard developers <switchyard@localhost>
Section: net
Priority: optional
Depends: libc6 (>= 2.34)
Installed-Size: $(du -sk "$ROOT" | cut -f1)
Description: reverse proxy that does the right thing when an upstream fails
 Switchyard retries and fails over safely (idempotency, retry budgets,
 deadlines, hedging), and says why for every request: the access log,
 metrics, and the story of each request by its ID (switchyard why).
CONTROL
printf '/etc/switchyard/switchyard.toml\n/etc/logrotate.d/switchyard\n' > "$ROOT/DEBIAN/conffiles"
cat > "$ROOT/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    echo "switchyard: edit /etc/switchyard/switchyard.toml, then: systemctl enable --now switchyard"
fi
POSTINST
cat > "$ROOT/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
POSTRM
chmod 755 "$ROOT/DEBIAN/postinst" "$ROOT/DEBIAN/postrm"

mkdir -p "$OUT"
dpkg-deb --root-owner-group --build "$ROOT" "$OUT/$NAME.deb" >/dev/null
echo "$OUT/$NAME.deb"
