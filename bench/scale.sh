#!/usr/bin/env bash
# The scale benchmark (see bench/scale.py): HitGpu beside pandas + PyTorch at 10 K, 100 K, 1 M and 10 M songs.
# Needs Debian's python3-pandas and python3-torch (apt-get install python3-pandas python3-torch), about 4 GB of
# disk under --work for the generated files, and 10-15 minutes on a 2-core machine. Arguments go to scale.py.
set -euo pipefail
exec python3 "$(dirname "$0")/scale.py" "$@"
