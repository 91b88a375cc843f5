#!/bin/bash
# A PROTEUS sweep on a Cloud TPU VM: one host, or every worker of a pod slice.
#
#   TPU=my-tpu ZONE=us-central2-b bash launch/tpu_vm.sh setup
#   TPU=my-tpu ZONE=us-central2-b bash launch/tpu_vm.sh sweep experiments/configs/quickstart.py \
#       /mnt/shared/sweep --sweep.seeds=8 --sweep.lanes="(64,)"
#   TPU=my-tpu ZONE=us-central2-b bash launch/tpu_vm.sh run "python -c 'import jax; print(jax.devices())'"
#
# `setup` copies this checkout to every worker and installs it with JAX for TPU; `sweep` runs the
# same command on every worker at once. On a pod slice (MULTIHOST=1, the default) each worker
# joins the job through `jax.distributed.initialize()`, which finds the slice from the TPU
# metadata (PROTEUS_DISTRIBUTED=1); set MULTIHOST=0 on a single-host TPU VM.
# WORKDIR must be one directory every worker sees at the same path (a Filestore/NFS mount or a
# gcsfuse mount of a bucket): Orbax writes every worker's checkpoint shards there, and worker 0
# writes the tables. gs:// paths are not supported by the workdir code.
set -euo pipefail
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE to its zone}"
REPO_DIR=${REPO_DIR:-proteus-jax}
MULTIHOST=${MULTIHOST:-1}
PROJECT_FLAG=${PROJECT:+--project=$PROJECT}

on_all() {  # run a shell command on every worker
  gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" $PROJECT_FLAG --worker=all --command="$1"
}

case "${1:-}" in
  setup)
    tar --exclude=.git --exclude=runs -czf /tmp/proteus-src.tgz -C "$(git rev-parse --show-toplevel)" .
    gcloud compute tpus tpu-vm scp /tmp/proteus-src.tgz "$TPU:/tmp/" --zone="$ZONE" $PROJECT_FLAG \
      --worker=all
    on_all "mkdir -p $REPO_DIR && tar -xzf /tmp/proteus-src.tgz -C $REPO_DIR && cd $REPO_DIR \
      && pip install -U 'jax[tpu]' && pip install -e ."
    ;;
  sweep)
    shift
    CONFIG=${1:?usage: tpu_vm.sh sweep CONFIG WORKDIR [--sweep.*=...]}
    WORKDIR=${2:?usage: tpu_vm.sh sweep CONFIG WORKDIR [--sweep.*=...]}
    shift 2
    args=$(printf '%q ' "$@")  # keep quoting of flags such as --sweep.policy_lr="(3e-4, 1e-3)"
    on_all "cd $REPO_DIR && PROTEUS_DISTRIBUTED=$MULTIHOST python -m launch.sweep \
      --config=$CONFIG --workdir=$WORKDIR $args"
    ;;
  run)
    on_all "cd $REPO_DIR && ${2:?usage: tpu_vm.sh run COMMAND}"
    ;;
  *)
    echo "usage: TPU=... ZONE=... bash launch/tpu_vm.sh setup | sweep CONFIG WORKDIR [flags] | run CMD" >&2
    exit 2
    ;;
esac
