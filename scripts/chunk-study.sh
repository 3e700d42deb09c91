#!/usr/bin/env bash
# chunk-study.sh: how chunk parameters trade deduplication against chunk
# count on optimized VMA archives (the measurement behind
# chunkplan.DefaultParams, issue 4). Generates a day-1 archive and a day-2
# archive per change fraction (vma/vmatest: Proxmox-like order, another
# uuid, CHANGE of the clusters rewritten at scattered places), optimizes
# them in memory and prints a Markdown table: day 2's new bytes against
# day 1 as a multiple of the physical floor (the bytes of the changed
# clusters), chunks and manifest bytes per GiB of archive.
#
#   scripts/chunk-study.sh                           # SIZE=2G, CHANGE=0.001,0.01,0.03
#   SIZE=512M PARAMS=4096/12/65536,524288/20/8388608 scripts/chunk-study.sh
#
# Needs about 3 × the archive size of memory (archives are held in RAM).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-2G}
CHANGE=${CHANGE:-0.001,0.01,0.03}
PARAMS=${PARAMS:-65536/16/1048576,16384/14/262144,8192/13/131072,8192/12/65536,6144/11/65536,4096/12/65536,4096/11/32768,2048/12/32768,2048/13/65536,524288/20/8388608}
export PATH=$PATH:/usr/local/go/bin
exec go run ./internal/cmd/chunkstudy -size "$SIZE" -change "$CHANGE" -params "$PARAMS"
