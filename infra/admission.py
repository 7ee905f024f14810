"""A ValidatingAdmissionPolicy (Kubernetes' built-in admission, GA in 1.30, CEL) that refuses, at creation, every
pod that would make Karpenter launch a GPU node which never initializes for it (infra/gpu/stranding.py, CASES
closed as "refused at creation"; README, "Nodes that never start"). No admission webhook, nothing to run.

It looks only at pods Karpenter provisions for: not those already bound to a node, nor DaemonSet or node-owned
(static) pods (kubernetes-sigs/karpenter v1.14.1 pkg/utils/pod/scheduling.go L102-108 IsProvisionable). Requests are
read after defaulting (a limit-only extended resource has its request by then) from every container and init
container; a zero request asks for nothing (initialization.go L134 skips it). Quantities use Kubernetes' CEL
quantity library, tolerations Kubernetes' ToleratesTaint rules (infra/gpu/placement.py tolerates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.catalog.gpus import POD_ENI_RESOURCE
from infra.cluster import Cluster
from infra.config import GpuPool, StackConfig
from infra.gpu.limits import GPU_RESOURCE, SHARED_GPU_RESOURCE, TIME_SLICING, pool_kind
from infra.gpu.placement import NODEPOOL_LABEL
from infra.gpu.pools import GPU_TAINT, SHARING_TAINT_KEY, SHARING_TAINT_VALUES

POLICY_NAME = "eks-gpu-spot-no-stranded-gpu-nodes"
API_VERSION = "admissionregistration.k8s.io/v1"


def _cel_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _cel_string(text: str) -> str:
    """A CEL string literal of plain text (double-quoted: messages carry apostrophes)."""
    assert '"' not in text and "\\" not in text, text
    return f'"{text}"'


def tolerates(key: str, value: str, effect: str = "NoSchedule") -> str:
    """CEL: some toleration of the pod tolerates the taint `key=value:effect` (an empty effect matches every effect;
    an empty key with Exists matches every key; Equal, the default operator, compares the value)."""
    exists = "(has(t.operator) && t.operator == 'Exists')"
    return (
        "has(object.spec.tolerations) && object.spec.tolerations.exists(t, "
        f"(!has(t.effect) || t.effect == '' || t.effect == '{effect}') && "
        f"((!has(t.key) || t.key == '') ? {exists} : "
        f"(t.key == '{key}' && ({exists} || (has(t.value) ? t.value : '') == '{value}'))))"
    )


def requests(resource: str) -> str:
    """CEL: some container requests more than zero of the resource."""
    return (
        "variables.containers.exists(c, has(c.resources) && has(c.resources.requests) && "
        f"'{resource}' in c.resources.requests && "
        f"quantity(c.resources.requests['{resource}']).isGreaterThan(quantity('0')))"
    )


def requesting(resource: str) -> str:
    """CEL: the names of the containers requesting the resource, for messages."""
    return (
        "variables.containers.filter(c, has(c.resources) && has(c.resources.requests) && "
        f"'{resource}' in c.resources.requests).map(c, c.name).join(', ')"
    )


def only_pools_outside(pools: Sequence[str]) -> str:
    """CEL: the pod selects pools by name (nodeSelector, or every required affinity term) and none of `pools`."""
    listed = _cel_list(pools)
    selector = (
        f"(has(object.spec.nodeSelector) && '{NODEPOOL_LABEL}' in object.spec.nodeSelector && "
        f"!(object.spec.nodeSelector['{NODEPOOL_LABEL}'] in {listed}))"
    )
    terms = "object.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
    affinity = (
        "(has(object.spec.affinity) && has(object.spec.affinity.nodeAffinity) && "
        "has(object.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution) && "
        f"{terms}.all(term, has(term.matchExpressions) && term.matchExpressions.exists(e, "
        f"e.key == '{NODEPOOL_LABEL}' && e.operator == 'In' && e.values.all(v, !(v in {listed})))))"
    )
    return f"{selector} || {affinity}"


def _time_sliced_validation(sliced: list[str], whole: list[str]) -> dict[str, Any]:
    taint = f"{SHARING_TAINT_KEY}={SHARING_TAINT_VALUES[TIME_SLICING]}:NoSchedule"
    choice = (
        f"Select a whole-GPU pool (nodeSelector {NODEPOOL_LABEL}: one of {', '.join(whole)}), "
        if whole
        else "This stack has no whole-GPU pool: "
    )
    message = (
        f" request {GPU_RESOURCE} and tolerate the taint {taint}: Karpenter may launch a node of the time-sliced "
        f"pool(s) {', '.join(sliced)} for them, which advertise only {SHARED_GPU_RESOURCE}, so the node never "
        f"initializes and bills until deleted. {choice}request {SHARED_GPU_RESOURCE} instead, or drop "
        "the toleration (README, Nodes that never start)"
    )
    return {
        "expression": f"!(variables.wholeGpus && variables.toleratesTimeSlicing && !({only_pools_outside(sliced)}))",
        "messageExpression": f"'containers ' + {requesting(GPU_RESOURCE)} + {_cel_string(message)}",
        "reason": "Forbidden",
    }


def _pod_eni_validation() -> dict[str, Any]:
    message = (
        f" request {POD_ENI_RESOURCE} (security groups for pods) and the pod tolerates the GPU taint: Karpenter may "
        "launch a GPU node for it, but this cluster's VPC CNI runs without ENABLE_POD_ENI, so no node ever "
        "advertises it and the node never initializes. No pool serves it: drop the request or the "
        "SecurityGroupPolicy that adds it (README, Nodes that never start)"
    )
    return {
        "expression": "!(variables.podEni && variables.toleratesGpu)",
        "messageExpression": f"'containers ' + {requesting(POD_ENI_RESOURCE)} + {_cel_string(message)}",
        "reason": "Forbidden",
    }


def policy_spec(pools: Sequence[GpuPool]) -> dict[str, Any]:
    """The policy's spec for the stack's GPU pools (launchable ones: Karpenter never launches a static pool)."""
    launchable = [pool for pool in pools if not pool.static]
    sliced = [pool.name for pool in launchable if pool_kind(pool) == TIME_SLICING]
    whole = sorted(pool.name for pool in launchable if not pool.time_slicing_replicas and not pool.mig_profile)
    validations = [_pod_eni_validation()]
    if sliced:
        validations.insert(0, _time_sliced_validation(sliced, whole))
    owners = "object.metadata.ownerReferences"
    return {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
            ]
        },
        "matchConditions": [
            {"name": "not-bound", "expression": "!has(object.spec.nodeName) || object.spec.nodeName == ''"},
            {
                "name": "not-daemonset-or-static",
                "expression": f"!has({owners}) || !{owners}.exists(r, (r.kind == 'DaemonSet' && "
                "r.apiVersion.startsWith('apps/')) || (r.kind == 'Node' && r.apiVersion == 'v1'))",
            },
        ],
        "variables": [
            {
                "name": "containers",
                "expression": "object.spec.containers + "
                "(has(object.spec.initContainers) ? object.spec.initContainers : [])",
            },
            {"name": "wholeGpus", "expression": requests(GPU_RESOURCE)},
            {"name": "podEni", "expression": requests(POD_ENI_RESOURCE)},
            {"name": "toleratesGpu", "expression": tolerates(GPU_TAINT["key"], GPU_TAINT["value"])},
            {
                "name": "toleratesTimeSlicing",
                "expression": f"variables.toleratesGpu && "
                f"{tolerates(SHARING_TAINT_KEY, SHARING_TAINT_VALUES[TIME_SLICING])}",
            },
        ],
        "validations": validations,
    }


def binding_spec() -> dict[str, Any]:
    """Every namespace, refused (Deny) rather than only warned or audited."""
    return {"policyName": POLICY_NAME, "validationActions": ["Deny"]}


@dataclass(frozen=True)
class AdmissionPolicyArgs:
    cluster: Cluster
    config: StackConfig


class GpuAdmissionPolicy(pulumi.ComponentResource):
    def __init__(self, name: str, args: AdmissionPolicyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("eks-gpu-spot:index:GpuAdmissionPolicy", name, None, opts)
        options = pulumi.ResourceOptions(parent=self, provider=args.cluster.k8s_provider)
        policy = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
            f"{name}-policy",
            metadata={"name": POLICY_NAME},
            spec=policy_spec(args.config.effective_gpu_pools),
            opts=options,
        )
        k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
            f"{name}-binding",
            metadata={"name": POLICY_NAME},
            spec=binding_spec(),
            opts=pulumi.ResourceOptions.merge(options, pulumi.ResourceOptions(depends_on=[policy])),
        )
        self.register_outputs({"policy": POLICY_NAME})
