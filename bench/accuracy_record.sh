#!/usr/bin/env bash
# The accuracy record of docs/results.md: Fashion-MNIST under pe and np (dataset-scope key),
# pe with image-scope keys, and plain; pptrain with its default augmentation (crop + flip in
# the cloud) at width 16 on the CPU. One run after the other (the CPU is shared).
#   bench/accuracy_record.sh            # EPOCHS=10 WIDTH=16 by default
set -euo pipefail
cd "$(dirname "$0")/.."
B=.venv/bin
FM=${FMNIST:-/usr/share/datasets/fashion-mnist}
EPOCHS=${EPOCHS:-10}
WIDTH=${WIDTH:-16}
[ -f keys/record.key ] || $B/ppencrypt keygen keys/record.key
for spec in pe:dataset np:dataset pe:image plain:dataset; do
  method=${spec%%:*}; scope=${spec##*:}
  name=fm-$method-$scope; [ "$method" = plain ] && name=fm-plain
  [ -f out/$name/manifest.json ] || $B/ppencrypt dataset "$FM" out/$name --key keys/record.key --method $method --key-scope $scope -q
  rm -rf runs/$name-w$WIDTH
  /usr/bin/time -f "%e s wall" $B/pptrain out/$name --width $WIDTH --epochs $EPOCHS --run-dir runs/$name-w$WIDTH --quiet
  $B/pptrain eval runs/$name-w$WIDTH out/$name
done
