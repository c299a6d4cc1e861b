#!/usr/bin/env bash
# Builds an aarch64 (ARM64) Python 3.11 + LiteRT environment that runs on an
# x86_64 machine under qemu user-mode emulation, for `python -m pytest -m arm64`
# (tests/test_arm64.py). Idempotent: a finished step is kept, a half-done one redone.
#
#   tests/arm64/setup.sh                  # into $KERAS_MIXER_ARM64_ROOT
#
# KERAS_MIXER_ARM64_ROOT   where it goes (default ~/.cache/keras-mixer/arm64;
#                          never inside the repository)
# KERAS_MIXER_ARM64_LITERT ai-edge-litert version(s), comma-separated (default:
#                          constraints.txt's pin, the version x86 runs)
# KERAS_MIXER_ARM64_QEMU   a qemu-aarch64 binary to use (default: Debian trixie's
#                          qemu-user, 10.x, fetched into ROOT/qemu with a private apt
#                          state; the host's apt config is not touched). qemu before
#                          8.1 shows aarch64 programs the host's x86 /proc/cpuinfo, on
#                          which ai-edge-litert 2.x crashes (docs/export.md#arm64).
# KERAS_MIXER_ARM64_MIRROR Debian mirror (default http://deb.debian.org/debian)
#
# Layout: ROOT/sysroot (Debian bookworm arm64: python3.11 and its libraries,
# unpacked with debootstrap --foreign and dpkg-deb, no chroot or binfmt_misc
# needed), ROOT/wheels/<version> (aarch64 wheels from PyPI), ROOT/site-<version>
# (those wheels installed with pip --target), ROOT/qemu (qemu-user), ROOT/python (a launcher:
# `ROOT/python [--litert VERSION] script.py ...` runs the aarch64 Python).
set -euo pipefail

say() { printf 'arm64-setup: %s\n' "$*"; }
die() { printf 'arm64-setup: error: %s\n' "$*" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/../.." && pwd)
ROOT=${KERAS_MIXER_ARM64_ROOT:-$HOME/.cache/keras-mixer/arm64}
QEMU=${KERAS_MIXER_ARM64_QEMU:-}
MIRROR=${KERAS_MIXER_ARM64_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# The NumPy that the x86 side pins (constraints.txt), so both run one NumPy.
NUMPY=$(sed -n 's/^numpy==//p' "$REPO/constraints.txt")
PINNED=$(sed -n 's/^ai-edge-litert==//p' "$REPO/constraints.txt")
VERSIONS=${KERAS_MIXER_ARM64_LITERT:-$PINNED}
QEMU_SUITE=trixie
PACKAGES=python3.11-minimal,libpython3.11-stdlib,libstdc++6,libgcc-s1

[ $# -eq 0 ] || die "takes no arguments (got: $*); configure with the KERAS_MIXER_ARM64_* variables"
case "$ROOT" in
  /*) ;;
  *) die "KERAS_MIXER_ARM64_ROOT: expected an absolute path; got '$ROOT'" ;;
esac
ROOT=${ROOT%/}
case "$ROOT/" in
  "$REPO"/*) die "KERAS_MIXER_ARM64_ROOT: expected a directory outside the repository $REPO; got '$ROOT'" ;;
esac
for v in ${VERSIONS//,/ }; do
  [[ "$v" =~ ^[0-9]+(\.[0-9]+)+$ ]] \
    || die "KERAS_MIXER_ARM64_LITERT: expected versions such as 1.2.0 or 1.2.0,2.3.0; got '$VERSIONS'"
done
[ -n "$NUMPY" ] || die "no numpy==VERSION line in $REPO/constraints.txt"
if [ -n "$QEMU" ] && ! [ -x "$QEMU" ]; then
  die "KERAS_MIXER_ARM64_QEMU: expected an executable qemu-aarch64 binary; got '$QEMU'"
fi

host=$(uname -m)
[ "$host" = x86_64 ] || [ "$host" = aarch64 ] \
  || die "expected an x86_64 host (emulating aarch64) or an aarch64 one; got $host"

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v dpkg-deb >/dev/null || need+=(dpkg)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${need[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
      || die "apt-get install ${need[*]} failed"
  else
    die "needs ${need[*]}: run as root 'apt-get install ${need[*]}' (Debian/Ubuntu), then this again"
  fi
fi
PIP=(python3 -m pip)
export PIP_ROOT_USER_ACTION=ignore
"${PIP[@]}" --version >/dev/null 2>&1 || die "needs pip for the host's python3 (to fetch aarch64 wheels)"

mkdir -p "$ROOT" || die "cannot create KERAS_MIXER_ARM64_ROOT '$ROOT'"
SYSROOT=$ROOT/sysroot
if ! [ -f "$SYSROOT/.complete" ] && [ "$(id -u)" != 0 ]; then
  die "debootstrap needs root: run this as root (sudo -E $0) once; later runs only check"
fi

# 1. Debian arm64: debootstrap's first stage downloads and resolves the
# packages; --foreign unpacks only the base, so every .deb is unpacked here
# (nothing is configured: Python needs its files, not maintainer scripts).
if [ -f "$SYSROOT/.complete" ]; then
  say "sysroot: kept $SYSROOT ($(cat "$SYSROOT/.complete"))"
else
  say "sysroot: debootstrap --arch=arm64 --foreign $SUITE into $SYSROOT (a few minutes)"
  rm -rf "$SYSROOT"
  debootstrap --arch=arm64 --foreign --variant=minbase --include="$PACKAGES" \
    "$SUITE" "$SYSROOT" "$MIRROR" > "$ROOT/debootstrap.log" 2>&1 \
    || die "debootstrap failed (is $MIRROR reachable?); see $ROOT/debootstrap.log"
  debs=("$SYSROOT"/var/cache/apt/archives/*.deb)
  [ -e "${debs[0]}" ] || die "debootstrap left no .deb files in $SYSROOT/var/cache/apt/archives"
  for deb in "${debs[@]}"; do
    dpkg-deb -x "$deb" "$SYSROOT" || die "dpkg-deb -x $deb failed"
  done
  [ -x "$SYSROOT/usr/bin/python3.11" ] || die "no usr/bin/python3.11 in $SYSROOT after unpacking"
  rm -f "$SYSROOT"/var/cache/apt/archives/*.deb
  echo "Debian $SUITE arm64, $(ls "$SYSROOT"/usr/lib/python3.11/ | wc -l) stdlib entries" \
    > "$SYSROOT/.complete"
  say "sysroot: unpacked ${#debs[@]} packages"
fi

# 2. qemu-user from Debian trixie (statically linked: it runs on any x86_64
# Linux), fetched with apt into a private state under ROOT.
if [ "$host" = x86_64 ] && [ -z "$QEMU" ]; then
  QEMU=$ROOT/qemu/usr/bin/qemu-aarch64
  if [ -x "$QEMU" ] && [ -f "$ROOT/qemu/.complete" ]; then
    say "qemu: kept $QEMU ($(head -1 "$ROOT/qemu/.complete"))"
  else
    say "qemu: fetching qemu-user from Debian $QEMU_SUITE into $ROOT/qemu"
    command -v apt-get >/dev/null || die "needs apt-get to fetch qemu-user (or set KERAS_MIXER_ARM64_QEMU)"
    apt_dir=$ROOT/apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
    echo "deb $MIRROR $QEMU_SUITE main" > "$apt_dir/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
              -o APT::Architecture=amd64 -o APT::Sandbox::User=root)
    apt-get "${apt_opts[@]}" update -qq > "$ROOT/apt.log" 2>&1 \
      || die "apt-get update for Debian $QEMU_SUITE failed; see $ROOT/apt.log"
    (cd "$apt_dir/debs" && rm -f ./*.deb && apt-get "${apt_opts[@]}" download qemu-user) >> "$ROOT/apt.log" 2>&1 \
      || die "apt-get download qemu-user ($QEMU_SUITE) failed; see $ROOT/apt.log"
    rm -rf "$ROOT/qemu" && mkdir -p "$ROOT/qemu"
    dpkg-deb -x "$apt_dir"/debs/qemu-user_*.deb "$ROOT/qemu" || die "dpkg-deb -x qemu-user failed"
    rm -f "$apt_dir"/debs/*.deb
    "$QEMU" --version > "$ROOT/qemu/.complete" 2>&1 || die "$QEMU does not run; see $ROOT/qemu/.complete"
    say "qemu: $(head -1 "$ROOT/qemu/.complete")"
  fi
fi

# 3. The launcher: the aarch64 Python, under qemu on x86_64.
if [ "$host" = x86_64 ]; then
  RUN="exec \"$QEMU\" -L \"$SYSROOT\" \${QEMU_FLAGS:-} \"$SYSROOT/usr/bin/python3.11\""
else
  RUN="exec \"$SYSROOT/usr/bin/python3.11\""  # a real ARM64 host: the same files, natively
fi
cat > "$ROOT/python.tmp" <<LAUNCHER
#!/usr/bin/env bash
# Written by tests/arm64/setup.sh: the aarch64 Python 3.11 with ai-edge-litert.
# Usage: python [--litert VERSION] ARGS...   (default: the first installed, $VERSIONS)
set -euo pipefail
version=${VERSIONS%%,*}
if [ "\${1:-}" = --litert ]; then version=\${2:?--litert needs a version}; shift 2; fi
site="$ROOT/site-\$version"
[ -d "\$site" ] || { echo "no ai-edge-litert \$version in $ROOT: KERAS_MIXER_ARM64_LITERT=\$version $REPO/tests/arm64/setup.sh" >&2; exit 2; }
export PYTHONHOME="$SYSROOT/usr" PYTHONPATH="\$site" PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1
$RUN "\$@"
LAUNCHER
chmod +x "$ROOT/python.tmp" && mv "$ROOT/python.tmp" "$ROOT/python"
say "launcher: $ROOT/python"

# 4. aarch64 wheels of ai-edge-litert and NumPy, installed with pip --target.
# Every manylinux tag up to bookworm's glibc 2.36.
platforms=(--platform manylinux2014_aarch64)
for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
wheel_opts=("${platforms[@]}" --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311)
for version in ${VERSIONS//,/ }; do
  site=$ROOT/site-$version
  if [ -f "$site/.complete" ]; then
    say "ai-edge-litert $version: kept $site"
    continue
  fi
  say "ai-edge-litert $version: pip download (aarch64 wheels) and install into $site"
  wheels=$ROOT/wheels/$version
  mkdir -p "$wheels"
  "${PIP[@]}" download -q --disable-pip-version-check -d "$wheels" "${wheel_opts[@]}" \
      "ai-edge-litert==$version" "numpy==$NUMPY" \
    || die "pip download of ai-edge-litert==$version numpy==$NUMPY for aarch64 failed (is PyPI reachable? does $version have an aarch64 cp311 wheel?)"
  rm -rf "$site" "$site.tmp"
  "${PIP[@]}" install -q --disable-pip-version-check --no-index --find-links "$wheels" \
      --target "$site.tmp" "${wheel_opts[@]}" "ai-edge-litert==$version" "numpy==$NUMPY" \
    || die "pip install --target $site failed"
  mv "$site.tmp" "$site"
  "$ROOT/python" --litert "$version" -c \
    "import numpy, ai_edge_litert.interpreter as i; print(numpy.__version__)" > "$ROOT/check.log" 2>&1 \
    || die "the aarch64 Python cannot import ai_edge_litert $version; see $ROOT/check.log"
  echo "$version" > "$site/.complete"
  say "ai-edge-litert $version: imports in the aarch64 Python (numpy $(cat "$ROOT/check.log"))"
done

say "done: $ROOT/python runs aarch64 Python 3.11 ($("$ROOT/python" -c 'import platform; print(platform.machine())'))"
say "next: python -m pytest -m arm64 tests/test_arm64.py"
