#!/usr/bin/env bash
# Get Fashion-MNIST: from Debian's package where apt-get can install it, else by download.
# Usage: scripts/get_fashion_mnist.sh   (NORMBENCH=path/to/normbench, default: normbench on PATH)
set -euo pipefail
normbench=${NORMBENCH:-normbench}
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian's dataset-fashion-mnist (files go to /usr/share/datasets/fashion-mnist)"
  if $sudo apt-get install -y dataset-fashion-mnist || { $sudo apt-get update && $sudo apt-get install -y dataset-fashion-mnist; }; then
    exit 0
  fi
  echo "apt-get could not install it; downloading instead" >&2
fi
exec "$normbench" data --download fashion_mnist --root "${NORMBENCH_DATA:-data}"
