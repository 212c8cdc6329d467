#!/usr/bin/env bash
# Convert the idx files into the two LMDBs lenet_train_test.prototxt reads.
set -euo pipefail
netdef="${NETDEF:-netdef}"
src="${1:-data/fashion-mnist}"
out="examples/mnist"
for split in train:train t10k:test; do
  in="${split%%:*}"; name="${split##*:}"
  db="$out/mnist_${name}_lmdb"
  if [ -d "$db" ]; then echo "$db exists, keeping it"; continue; fi
  "$netdef" convert_mnist_data "$src/$in-images-idx3-ubyte.gz" "$src/$in-labels-idx1-ubyte.gz" "$db" --backend=lmdb
done
