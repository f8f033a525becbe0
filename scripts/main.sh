#!/usr/bin/env bash
# README command one: the main job (line vs standard model on mnist1d; extra args are passed on).
source "$(dirname "$0")/env.sh"
exec python -m subspace_param.experiments.line_vs_standard "$@"
