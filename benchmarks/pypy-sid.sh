#!/bin/sh
# A PyPy for Spartan's benchmarks on a Debian 12 (bookworm) host, which packages only PyPy 3.9:
# Debian sid's pypy3 (8.0.1, Python 3.11) in a tree of its own ($R), and a wrapper that runs it
# through sid's own dynamic loader, so it works from the host with host paths and leaves the
# host's libraries alone.  On a system whose pypy3 is 3.11 already, none of this is needed:
# `pypy3 -m venv v && v/bin/pip install -e .` (docs/performance.md, "PyPy").
#   usage (as root):  sh benchmarks/pypy-sid.sh
#   then:             benchmarks/run.py --spartan-python /usr/local/bin/spartan-pypy
set -eu
R=${R:-/srv/pypy-sid}                          # the sid tree
WRAPPER=${WRAPPER:-/usr/local/bin/spartan-pypy}
REPO=${REPO:-$(cd "$(dirname "$0")/.." && pwd)}  # the Spartan checkout put on the venv's sys.path
V=/opt/spartan-pypy                            # the venv, as seen inside the tree
PIPI="env PIP_FIND_LINKS= PIP_DISABLE_PIP_VERSION_CHECK=1 $V/bin/python -m pip install -q"

command -v debootstrap >/dev/null || { apt-get update; apt-get install -y debootstrap; }
debootstrap --variant=minbase sid "$R" http://deb.debian.org/debian
# The sid Release file here was "expired" against this machine's clock: do not check.
echo 'Acquire::Check-Valid-Until "false";' > "$R/etc/apt/apt.conf.d/99no-valid-until"
# HTTPS egress here goes through a proxy with its own CA: trust it inside the tree as well.
mkdir -p "$R/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/" 2>/dev/null || true

mount -t proc proc "$R/proc"; mount --bind /dev "$R/dev"
trap 'umount "$R/proc" "$R/dev"' EXIT
chroot "$R" apt-get update -qq
DEBIAN_FRONTEND=noninteractive chroot "$R" apt-get install -y -qq --no-install-recommends \
    pypy3 pypy3-venv ca-certificates
chroot "$R" update-ca-certificates >/dev/null

chroot "$R" pypy3 -m venv $V
# A relative link, so the venv's interpreter resolves both inside the tree and from the host.
ln -sfn ../../../usr/bin/pypy3 "$R$V/bin/pypy3"
chroot "$R" $PIPI "twisted>=24.7"              # no [tls]: no cryptography wheel for PyPy 8.0 (pp80)
chroot "$R" $PIPI pytest pytest-twisted pexpect
chroot "$R" $PIPI --only-binary hypothesis hypothesis   # newest hypothesis needs Rust (no pp80 wheel)
chroot "$R" $PIPI --no-deps "txredisapi>=1.6"  # imports need cryptography: the Redis store is CPython-only here

SP="$R$V/lib/pypy3.11/site-packages"
echo "$REPO" > "$SP/spartan-workmain.pth"      # the live working tree, as the CPython venv's editable install
mkdir -p "$R$V/hostbin"
ln -sfn "$WRAPPER" "$R$V/hostbin/python"
cat > "$R$V/hostbin/twistd" <<EOF
#!/bin/sh
exec $WRAPPER -c "from twisted.scripts.twistd import run; run()" "\$@"
EOF
chmod 755 "$R$V/hostbin/twistd"
# Run from the host: sys.executable -> the host-side wrapper (so subprocesses and tests that look
# for twistd next to it work), and .pyc files kept in the tree rather than in $REPO.
cat > "$SP/_spartan_host.pth" <<EOF
import sys; exec("if sys.executable.startswith('$R$V/bin/'):\n    sys.executable = '$R$V/hostbin/python'\n    sys.pycache_prefix = sys.pycache_prefix or '$R/var/cache/spartan-pypy/pycache'")
EOF

cat > "$WRAPPER" <<EOF
#!/bin/sh
# PyPy (Python 3.11) from the Debian sid tree $R, run on the host through sid's own loader
# and libraries (bookworm's glibc is too old for it).  exec: the PID is the interpreter's.
R=$R
exec "\$R/usr/lib64/ld-linux-x86-64.so.2" --inhibit-cache \\
    --library-path "\$R/usr/lib/x86_64-linux-gnu" \\
    "\$R$V/bin/python" "\$@"
EOF
chmod 755 "$WRAPPER"

chroot "$R" apt-get clean
"$WRAPPER" -c "import sys, twisted; print(sys.version); print('Twisted', twisted.__version__)"
