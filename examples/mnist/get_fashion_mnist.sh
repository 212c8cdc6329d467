#!/usr/bin/env bash
# Put Fashion-MNIST's four idx files in data/fashion-mnist/: from Debian's
# dataset-fashion-mnist package when it is (or can be) installed, else from the
# dataset's official download.
set -euo pipefail
dest="data/fashion-mnist"
pkg_dir="/usr/share/datasets/fashion-mnist"
files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
mkdir -p "$dest"
have() { for f in $files; do [ -s "$1/$f" ] || return 1; done; }
if have "$dest"; then echo "Fashion-MNIST already in $dest"; exit 0; fi
if ! have "$pkg_dir" && command -v apt-get >/dev/null 2>&1; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo -n"
  ($sudo_cmd apt-get install -y dataset-fashion-mnist >/dev/null 2>&1 \
   || { $sudo_cmd apt-get update >/dev/null 2>&1 && $sudo_cmd apt-get install -y dataset-fashion-mnist >/dev/null 2>&1; }) || true
fi
if have "$pkg_dir"; then
  for f in $files; do cp "$pkg_dir/$f" "$dest/$f"; done
  echo "Fashion-MNIST copied from $pkg_dir"
  exit 0
fi
base="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
for f in $files; do
  echo "Downloading $f"
  curl -fsSL -o "$dest/$f.part" "$base/$f" && mv "$dest/$f.part" "$dest/$f"
done
