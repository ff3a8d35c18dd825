#!/usr/bin/env bash
# Fetches ptxas, cuobjdump and nvdisasm (Debian's nvidia-cuda-toolkit 11.8, non-free) into one folder and
# prints that folder. They need only libc: the package is downloaded and unpacked alone, none of its 3 GB of
# dependencies, with apt's state kept in a scratch folder (the machine's own sources and lists are untouched).
# Folder: $HITGPU_CUDA_TOOLS, else ~/.cache/hitgpu/cuda-tools. Already there: printed, nothing fetched.
set -euo pipefail
dir="${HITGPU_CUDA_TOOLS:-$HOME/.cache/hitgpu/cuda-tools}"
if [ -x "$dir/ptxas" ] && [ -x "$dir/cuobjdump" ]; then
  echo "$dir"
  exit 0
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/lists/partial" "$scratch/archives/partial" "$scratch/parts"
# The machine's Debian entry with the non-free component: the same mirror and key, the main suite only.
source_entry="$(grep -h -m1 -E '^URIs: .*debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
uri="${source_entry#URIs: }"
uri="${uri:-http://deb.debian.org/debian}"
suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
cat > "$scratch/non-free.sources" <<SRC
Types: deb
URIs: $uri
Suites: $suite
Components: non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_options=(-o "Dir::Etc::SourceList=$scratch/non-free.sources" -o "Dir::Etc::SourceParts=$scratch/parts"
  -o "Dir::State::Lists=$scratch/lists" -o "Dir::Cache::Archives=$scratch/archives" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root" -qq)
apt-get "${apt_options[@]}" update >&2
(cd "$scratch" && apt-get "${apt_options[@]}" download nvidia-cuda-toolkit >&2)
dpkg -x "$scratch"/nvidia-cuda-toolkit_*.deb "$scratch/unpacked"
mkdir -p "$dir"
for tool in ptxas cuobjdump nvdisasm; do
  cp "$scratch/unpacked/usr/bin/$tool" "$dir/"
done
"$dir/ptxas" --version >&2
echo "$dir"
