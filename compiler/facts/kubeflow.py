"""Kubeflow Trainer v2: the TrainJob the Helm chart renders for an adapter that trains on more than
one GPU or node, and the ``torch-distributed`` ClusterTrainingRuntime it runs on.

From kubeflow/trainer (Aug 2026): ``manifests/base/runtimes/torch_distributed.yaml`` (one replicated
job ``node`` whose container ``node`` is the trainer) and ``pkg/runtime/framework/plugins/torch/``
(the runtime sets PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR, PET_MASTER_PORT on
that container; torchrun reads every option from ``PET_<OPTION>``, so it needs no rendezvous flags).
"""

from __future__ import annotations

API_GROUP = "trainer.kubeflow.org"
API_VERSION = f"{API_GROUP}/v1alpha1"  # of TrainJob and ClusterTrainingRuntime
RUNTIME_NAME = "torch-distributed"
RUNTIME_KIND = "ClusterTrainingRuntime"
REPLICATED_JOB = "node"  # the runtime's replicatedJobs[].name: one pod per node
CONTAINER = "node"  # the trainer container in it (runtimePatches address it by name)
PATCH_MANAGER = "vilms.dev/helm-chart"  # runtimePatches[].manager: who owns the patch
LAUNCHER = "torchrun"  # the command of the trainer container; `torchrun -m vilms train ...`
