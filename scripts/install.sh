#!/usr/bin/env bash
# Installs fedguard on a plain host under systemd: fedguardd, fedguardctl and
# fedguard-ca, the systemd units, a sample configuration and the operator's
# docs (docs/deploy.md, "systemd"). Installs what `meson compile` built; it
# starts nothing (systemctl daemon-reload, enable --now fedguardd is the
# operator's step).
#
#   scripts/install.sh [--prefix DIR] [--sysconfdir DIR] [--unitdir DIR]
#                      [--builddir DIR] [--destdir DIR] [--uninstall]
#
# DESTDIR (or --destdir) stages the tree for packaging: paths inside the
# installed files are those without it. An existing configuration is never
# overwritten; the sample then goes next to it as fedguardd.yaml.example.
# --uninstall removes what an install put there except the configuration
# and the state (/var/lib/fedguard); it does not touch the kernel: stop the
# service and run fedguardd --uninstall first (docs/deploy.md, "Uninstall").
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
sysconfdir=
unitdir=
builddir=build
destdir=${DESTDIR:-}
uninstall=false

usage() {
	sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
	echo "install.sh: $*" >&2
	exit 1
}

while [ $# -gt 0 ]; do
	case $1 in
	--prefix) prefix=${2:?--prefix needs DIR}; shift 2 ;;
	--sysconfdir) sysconfdir=${2:?--sysconfdir needs DIR}; shift 2 ;;
	--unitdir) unitdir=${2:?--unitdir needs DIR}; shift 2 ;;
	--builddir) builddir=${2:?--builddir needs DIR}; shift 2 ;;
	--destdir) destdir=${2:?--destdir needs DIR}; shift 2 ;;
	--uninstall) uninstall=true; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "install.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done

case $prefix in
/*) ;;
*) echo "install.sh: --prefix must be an absolute path, not '$prefix'" >&2; exit 2 ;;
esac
prefix=${prefix%/}
# /usr installs the system's way; any other prefix keeps its configuration
# under /etc unless told otherwise, and its units where the admin's go.
if [ -z "$sysconfdir" ]; then
	case $prefix in
	/usr | /usr/local) sysconfdir=/etc ;;
	*) sysconfdir=$prefix/etc ;;
	esac
fi
if [ -z "$unitdir" ]; then
	case $prefix in
	/usr) unitdir=/usr/lib/systemd/system ;;
	/usr/local) unitdir=/etc/systemd/system ;;
	*) unitdir=$prefix/lib/systemd/system ;;
	esac
fi

sbindir=$prefix/sbin
bindir=$prefix/bin
docdir=$prefix/share/doc/fedguard
confdir=$sysconfdir/fedguard
units=(fedguardd.service fedguard.slice)
docs=(deploy.md configuration.md ARCHITECTURE.md observability.md identity.md policy.md cli.md)

if $uninstall; then
	rm -f "$destdir$sbindir/fedguardd" "$destdir$bindir/fedguardctl" \
		"$destdir$bindir/fedguard-ca"
	for u in "${units[@]}"; do rm -f "$destdir$unitdir/$u"; done
	rm -rf "$destdir$docdir"
	rm -f "$destdir$confdir/fedguardd.yaml.example"
	echo "install.sh: removed fedguard from $destdir$prefix;" \
		"kept $destdir$confdir and /var/lib/fedguard"
	exit 0
fi

for b in agent/fedguardd tools/fedguardctl tools/fedguard-ca; do
	[ -x "$builddir/$b" ] ||
		die "'$builddir/$b' is not built: meson setup $builddir && meson compile -C $builddir"
done

install -d -m 0755 "$destdir$sbindir" "$destdir$bindir" "$destdir$unitdir" "$destdir$docdir"
install -d -m 0750 "$destdir$confdir"
install -m 0755 "$builddir/agent/fedguardd" "$destdir$sbindir/fedguardd"
install -m 0755 "$builddir/tools/fedguardctl" "$destdir$bindir/fedguardctl"
install -m 0755 "$builddir/tools/fedguard-ca" "$destdir$bindir/fedguard-ca"

# The units name the paths of a /usr install: rewrite them for this one.
for u in "${units[@]}"; do
	sed -e "s#/usr/sbin/fedguardd#$sbindir/fedguardd#g" \
		-e "s#/etc/fedguard/#$confdir/#g" \
		-e "s#/usr/share/doc/fedguard/#$docdir/#g" \
		"deploy/systemd/$u" >"$destdir$unitdir/$u.tmp"
	chmod 0644 "$destdir$unitdir/$u.tmp"
	mv "$destdir$unitdir/$u.tmp" "$destdir$unitdir/$u"
done

for d in "${docs[@]}"; do install -m 0644 "docs/$d" "$destdir$docdir/$d"; done

if [ -e "$destdir$confdir/fedguardd.yaml" ]; then
	install -m 0640 deploy/fedguardd.yaml "$destdir$confdir/fedguardd.yaml.example"
	echo "install.sh: kept $destdir$confdir/fedguardd.yaml; the sample is fedguardd.yaml.example"
else
	install -m 0640 deploy/fedguardd.yaml "$destdir$confdir/fedguardd.yaml"
fi

echo "install.sh: installed fedguard into $destdir$prefix (units in $destdir$unitdir)"
if [ -z "$destdir" ]; then
	cat <<EOF
Next: edit $confdir/fedguardd.yaml, check it with
  $sbindir/fedguardd --check-config $confdir/fedguardd.yaml
then: systemctl daemon-reload && systemctl enable --now fedguardd
EOF
fi
