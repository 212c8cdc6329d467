#!/usr/bin/env bash
# The four LMDBs of this example, from the files split_classes.py wrote.
set -euo pipefail
netdef="${NETDEF:-netdef}"
src="${1:-data/fashion-split}"
out="examples/finetune_fashion"
for split in base new; do
  for part in train:train t10k:test; do
    in="${part%%:*}"; name="${part##*:}"
    db="$out/${split}_${name}_lmdb"
    if [ -d "$db" ]; then echo "$db exists, keeping it"; continue; fi
    "$netdef" convert_mnist_data "$src/$split-$in-images-idx3-ubyte.gz" \
      "$src/$split-$in-labels-idx1-ubyte.gz" "$db" --backend=lmdb
  done
done
