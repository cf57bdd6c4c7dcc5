#!/usr/bin/env bash
# Compiles (without linking) every source of the build against LibTorch 2.x's headers, so that a
# header LibTorch 1.13 happened to pull in cannot break the build for users of an official
# LibTorch 2.x (it did once: at::GradMode in keras_graph.cpp). The headers are Debian trixie's
# libtorch-dev, downloaded into BUILD/libtorch2 with apt's own private configuration (nothing in
# /etc/apt is read, nothing is installed) and unpacked with dpkg -x; trixie's libraries need a newer
# glibc than bookworm's, so nothing is linked. Each file is compiled with its own flags from the
# build's compile_commands.json, trixie's include folders first, -fsyntax-only (templates are still
# instantiated). A guard fails the check if any torch header came from the system's LibTorch.
#   tools/check_libtorch2.sh [BUILD_DIR]        (default: build; run tools/setup.sh first)
# Environment: TRIXIE_MIRROR (default: the Debian mirror this machine uses), SATCAP_JOBS (default: nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
[ -f "$build/compile_commands.json" ] || { echo "check_libtorch2: $build/compile_commands.json missing; build first (tools/setup.sh)" >&2; exit 2; }
dest=$(mkdir -p "$build/libtorch2" && cd "$build/libtorch2" && pwd)
headers=$dest/root/usr/include
log() { printf '\033[1m[libtorch2]\033[0m %s\n' "$*" >&2; }

# --- the headers ------------------------------------------------------------------------------
if [ ! -f "$headers/torch/csrc/api/include/torch/torch.h" ]; then
  # The Debian mirror this machine's apt uses (one-line or deb822 sources), else deb.debian.org.
  mirror=${TRIXIE_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
                             grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' | head -n 1 | tr -d '[:space:]' || true)}
  mirror=${mirror%/}
  mirror=${mirror:-http://deb.debian.org/debian}
  arch=$(dpkg --print-architecture)
  apt=$dest/apt
  rm -rf "$apt" "$dest/root"
  mkdir -p "$apt/parts" "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
  : > "$apt/status"
  echo "deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$apt/sources.list"
  cat > "$apt/apt.conf" <<CONF
Dir::Etc::Parts "$apt/parts";
Dir::Etc::SourceList "$apt/sources.list";
Dir::Etc::SourceParts "$apt/parts";
Dir::Etc::PreferencesParts "$apt/parts";
Dir::State::Lists "$apt/lists";
Dir::State::status "$apt/status";
Dir::Cache "$apt/cache";
APT::Architecture "$arch";
APT::Sandbox::User "$(id -un)";
Acquire::Languages "none";
CONF
  log "downloading trixie's libtorch-dev headers from $mirror"
  if ! APT_CONFIG=$apt/apt.conf apt-get -qq update >"$apt/update.log" 2>&1 ||
     ! (cd "$apt/debs" && APT_CONFIG=$apt/apt.conf apt-get -qq download libtorch-dev >"$apt/download.log" 2>&1); then
    echo "check_libtorch2: cannot download Debian trixie's libtorch-dev from $mirror (set TRIXIE_MIRROR?)" >&2
    cat "$apt"/*.log | grep -E '^(E|W|Err)' | head -5 >&2 || true
    exit 1
  fi
  dpkg -x "$apt"/debs/libtorch-dev_*.deb "$dest/root"
  rm -rf "$apt/lists" "$apt/cache"
fi
version=$(awk '/define TORCH_VERSION_(MAJOR|MINOR|PATCH) /{v=v (v==""?"":".") $3} END{print v}' "$headers/torch/csrc/api/include/torch/version.h")

# --- compile every source against them --------------------------------------------------------
log "compiling the build's sources against LibTorch $version's headers (-fsyntax-only)"
/usr/bin/python3 - "$build/compile_commands.json" "$headers" "$dest/deps" "${SATCAP_JOBS:-$(nproc)}" <<'PY'
import concurrent.futures, json, os, shlex, subprocess, sys, time
commands, headers, deps, jobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
os.makedirs(deps, exist_ok=True)
first = ["-isystem", headers, "-isystem", headers + "/torch/csrc/api/include"]
system_torch = tuple("/usr/include/" + d + "/" for d in ("torch", "ATen", "c10", "caffe2"))

def check(numbered):
    number, entry = numbered
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    out, kept, skip = [], [], False
    for a in args[1:]:
        if skip: skip = False; continue
        if a in ("-o", "-MF", "-MT", "-MQ"): skip = True; continue
        if a in ("-c", "-MD", "-MMD"): continue
        kept.append(a)
    dep = os.path.join(deps, f"{number}.d")
    cmd = [args[0]] + first + kept + ["-fsyntax-only", "-MD", "-MF", dep]
    cmd = [c for c in cmd if c != entry["file"]] + [entry["file"]]
    p = subprocess.run(cmd, cwd=entry["directory"], capture_output=True, text=True)
    leaked = []
    if os.path.exists(dep):
        leaked = [h for h in open(dep).read().replace("\\\n", " ").split() if h.startswith(system_torch)]
    return entry["file"], p.returncode, p.stderr, leaked

entries = json.load(open(commands))
t0, failed = time.time(), 0
with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
    for name, rc, err, leaked in pool.map(check, enumerate(entries)):
        if rc != 0:
            failed += 1
            print(f"FAILED {name}\n{err}", file=sys.stderr)
        elif leaked:
            failed += 1
            print(f"FAILED {name}: took the system LibTorch's {leaked[0]} (missing from LibTorch 2.x)", file=sys.stderr)
print(f"{len(entries) - failed} of {len(entries)} sources compile against LibTorch 2.x headers "
      f"({time.time() - t0:.0f} s)", file=sys.stderr)
sys.exit(1 if failed else 0)
PY
