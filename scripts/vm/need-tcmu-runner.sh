# Host side, sourced by the benchmarks that compare against Debian's
# tcmu-runner (the guest sees the host's root, so the host's copy is the
# guest's). It is only needed there, not by the tests, so it is installed on
# demand rather than by scripts/setup.sh (it pulls in Ceph's client libraries).
# need_tcmu_runner WHO: 0 once /usr/bin/tcmu-runner exists (installing it as
# root), else 1 with the reason on stderr, prefixed by WHO.
need_tcmu_runner() {
  [ -x /usr/bin/tcmu-runner ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "$1: /usr/bin/tcmu-runner not found; install it with: apt-get install tcmu-runner" >&2
    return 1
  fi
  echo "$1: installing Debian's tcmu-runner (the reference)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q tcmu-runner >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q tcmu-runner >/dev/null; } \
    || { echo "$1: apt-get install tcmu-runner failed" >&2; return 1; }
}
