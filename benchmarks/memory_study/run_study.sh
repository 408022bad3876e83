#!/usr/bin/env bash
# The memory study behind benchmarks/MEMORY_STUDY.md: the GRU-based agents of the SplAgger paper (RNN,
# SplAgger, Max, CNP) against the parallel-scan encoders (minGRU, LRU, FFM, S6, GLA), each encoder alone
# and under split max aggregation (SplAgger-<encoder>), 3 seeds, every agent with its default
# (hypernetwork) head and the env's preset at lr 1e-3, at ONE shared budget:
#
#   400,000 frames per run on every env (27 % of the paper's 1.5 M on the T-mazes; 0.7 % of its 60 M on
#   MC-LS), evaluated >= 10 times per run on the leaderboard's 16 held-out tasks; on MetaTMaze-v0 a run
#   stops after 3 consecutive evaluations >= 15.5 (solved; the report carries its last value forward).
#
# Why 400 k: the GRU SplAgger solves T-LS at 168-280 k frames, so the budget lets every agent that learns
# as fast as the paper's agent solve with room to spare, while a full grid (14 agents x 3 seeds on T-LS)
# costs at most 17 M frames, a few sessions of one low-priority core. It cannot tell "slow" from "never":
# the paper's RNN needs the full 1.5 M to show that it fails.
#
# Runs go one at a time on one torch thread, at low priority, the most informative first: seed 73 of every
# agent on T-LS (each encoder next to its split-aggregated version), then seeds 20 and 3, then T-maze
# Latent, then MC-LS. Finished runs are skipped and unfinished ones resume from their checkpoint, so
# re-running this script continues where the last session stopped:
#   STUDY_DB=/work/studydb/study.db nohup nice -n 19 bash benchmarks/memory_study/run_study.sh > study.log 2>&1 &
# STUDY_DB=PATH trains into another store (one outside the checkout, so that updating the checkout never
# touches a live database). Commit benchmarks/memory_study/study.db only (never its .checkpoints folder);
# `python benchmarks/results/snapshot.py LIVE_DB benchmarks/memory_study/study.db` copies the finished runs
# of a live store, and `python benchmarks/memory_study/make_study.py` regenerates the tables and plots of
# benchmarks/MEMORY_STUDY.md from the committed store.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
DB=${STUDY_DB:-benchmarks/memory_study/study.db}
BUDGET=(--frames 400k --lrs 1e-3 --threads 1)
# A failed run is recorded in the store (and resumed next time); go on with the others. These runs train
# under the metarl protocol (benchmarks/PROTOCOL.md), as the stored ones did, so this script finds them.
run() { python -m metarl_agents.leaderboard run --db "$DB" --no-progress --protocol metarl "${BUDGET[@]}" "$@" || echo "step failed: $*" >&2; }

# Each encoder next to its split-max version, then the paper's GRU-based agents; S6 (the slowest) last.
AGENTS=(SplAgger-minGRU minGRU SplAgger-LRU LRU SplAgger-FFM FFM SplAgger-GLA GLA SplAgger RNN Max CNP SplAgger-S6 S6)
SOLVED=(--stop-at-return 15.5 --patience 3)
for seed in 73 20 3; do
  run --envs MetaTMaze-v0 --agents "${AGENTS[@]}" --seeds "$seed," "${SOLVED[@]}"
done
# T-maze Latent has no solved threshold: the full budget.
for seed in 73 20 3; do
  run --envs MetaTMazeLatent-v0 --agents "${AGENTS[@]}" --seeds "$seed,"
done
# MC-LS at its preset lr (3e-4, annealed) overrides the --lrs above.
for seed in 73 20 3; do
  run --envs MetaMinecraftLongShort-v0 --agents "${AGENTS[@]}" --seeds "$seed," --lrs 3e-4
done
