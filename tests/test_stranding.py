"""No pod can launch a GPU node that will never serve it (infra/gpu/stranding.py, infra/admission.py).

Each case: the placement model shows the node Karpenter launches and the resource it never registers before, and
after the pod is refused by the admission policy (its CEL evaluated with cel-python) or served. The policy itself is
checked against the model over a grid of pods, and for the rules the API server applies where cel-python can."""

from __future__ import annotations

import itertools
import re
from functools import cache

import celpy
import pytest
from celpy import celtypes

from infra.admission import binding_spec, policy_spec
from infra.catalog.gpus import EFA_RESOURCE, POD_ENI_RESOURCE
from infra.config import parse_config
from infra.gpu.placement import EFA_POOL_LABEL, NODEPOOL_LABEL, Pod, quantity
from infra.gpu.pools import exists_tolerations
from infra.gpu.scheduling import lands_on
from infra.gpu.stranding import CASES, REFUSED, SERVED, EfaPlugin, Stranded, stranded
from infra.node_pools import stack_stranding
from tests.conftest import PROJECT_ROOT
from tools.render import read_stack_file

EXAMPLE_STACK = PROJECT_ROOT / "examples" / "stacks" / "Pulumi.gpu-pools.yaml"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


# --- Kubernetes' CEL library functions the policy calls (k8s.io/apiserver/pkg/cel/library quantity.go; cel-go
# ext/strings join). Any other function missing from cel-python fails evaluation, so a new one is noticed.
class Quantity:
    """Opaque like Kubernetes' Quantity: comparing it as a number is an error here as on the API server."""

    def __init__(self, text: str):
        if not re.fullmatch(r"[+-]?\d+(\.\d+)?([KMGTPE]i|[mkMGTPE])?", text):
            raise ValueError(f"not a quantity: {text}")
        self.value = quantity("count", text)


FUNCTIONS = {
    "quantity": lambda text: Quantity(str(text)),
    "isGreaterThan": lambda a, b: celtypes.BoolType(a.value > b.value),
    "join": lambda items, sep: celtypes.StringType(str(sep).join(str(i) for i in items)),
}


@cache
def program(expression: str) -> celpy.Runner:
    environment = celpy.Environment()
    return environment.program(environment.compile(expression), functions=FUNCTIONS)


def evaluate(expression: str, bindings: dict):
    result = program(expression).evaluate(bindings)
    assert not isinstance(result, celpy.CELEvalError), (expression, result)
    return result


def admit(spec: dict, pod: dict, operation: str = "CREATE") -> str | None:
    """The API server's verdict on the pod: None (admitted) or the first refusal's message. Match constraints,
    then match conditions (all true), then variables in order, then every validation (false refuses)."""
    (rule,) = spec["matchConstraints"]["resourceRules"]
    if operation not in rule["operations"] or "pods" not in rule["resources"]:
        return None
    bindings = {"object": celpy.json_to_cel(pod)}
    if not all(evaluate(c["expression"], bindings) for c in spec.get("matchConditions", [])):
        return None
    variables = celtypes.MapType({})
    for variable in spec.get("variables", []):
        value = evaluate(variable["expression"], {**bindings, "variables": variables})
        variables = celtypes.MapType({**variables, celtypes.StringType(variable["name"]): value})
    bindings["variables"] = variables
    for validation in spec["validations"]:
        if not evaluate(validation["expression"], bindings):
            return str(evaluate(validation["messageExpression"], bindings))
    return None


def pod_object(model: Pod, name: str = "main", **metadata) -> dict:
    """A pod as the API server holds it after defaulting: requests and limits of extended resources as strings."""
    resources = {k: str(int(v)) for k, v in model.requests.items()}
    spec: dict = {
        "containers": [{"name": name, "image": "x", "resources": {"requests": resources, "limits": resources}}]
    }
    if model.tolerations:
        spec["tolerations"] = list(model.tolerations)
    if model.node_selector:
        spec["nodeSelector"] = dict(model.node_selector)
    if model.affinity_terms:
        terms = [{"matchExpressions": list(t)} for t in model.affinity_terms]
        spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}
        }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", **metadata}, "spec": spec}


@pytest.fixture(scope="module")
def example():
    cfg = parse_config(read_stack_file(EXAMPLE_STACK))
    offers, pools, plugin = stack_stranding(cfg)
    old_plugin = EfaPlugin([EFA_POOL_LABEL], ["true"], exists_tolerations([p for p in pools.values() if p.efa]))
    return cfg, offers, pools, plugin, old_plugin, policy_spec(cfg.effective_gpu_pools)


# --- each case: launched and never initialized before; refused or served after ----------------------------------


def test_efa_on_a_pool_without_the_plugin_was_stranded_and_is_now_served(example):
    _, offers, pools, plugin, old_plugin, spec = example
    case = CASES[0]
    assert case.resource == EFA_RESOURCE and case.closed_by == SERVED
    pod = case.probe()
    assert stranded(pod, offers, pools, old_plugin) == Stranded("reserved-h100", EFA_RESOURCE)
    assert lands_on(pod, offers) == "reserved-h100" and stranded(pod, offers, pools, plugin) is None
    assert admit(spec, pod_object(pod)) is None  # served, so not refused


def test_whole_gpus_on_a_time_sliced_pool_were_stranded_and_are_now_refused(example):
    _, offers, pools, plugin, _, spec = example
    case = CASES[1]
    assert case.closed_by == REFUSED
    pod = case.probe("inference")
    assert stranded(pod, offers, pools, plugin) == Stranded("inference", "nvidia.com/gpu")
    message = admit(spec, pod_object(pod, name="trainer"))
    assert message.startswith("containers trainer request nvidia.com/gpu")
    assert "one of reserved-h100, training)" in message and "time-sliced pool(s) inference" in message
    # Selecting a whole-GPU pool, or asking for a slice, passes.
    assert admit(spec, pod_object(case.probe("training"))) is None
    shared = Pod({"nvidia.com/gpu.shared": 1}, case.tolerations)
    assert admit(spec, pod_object(shared)) is None and stranded(shared, offers, pools, plugin) is None


def test_pod_eni_was_stranded_and_is_now_refused(example):
    _, offers, pools, plugin, _, spec = example
    case = CASES[2]
    pod = case.probe()
    assert stranded(pod, offers, pools, plugin) == Stranded("reserved-h100", POD_ENI_RESOURCE)
    assert "request vpc.amazonaws.com/pod-eni" in admit(spec, pod_object(pod))
    # Not tolerating the GPU taint: no GPU node is launched for it; the policy leaves it alone.
    assert admit(spec, pod_object(Pod({POD_ENI_RESOURCE: 1}))) is None


@pytest.mark.parametrize("resource", ["hugepages-2Mi", "amd.com/gpu", "aws.amazon.com/neuron", "example.com/widget"])
def test_a_resource_no_type_has_launches_nothing(example, resource):
    """hugepages (karpenter#751) and every name outside Karpenter's capacity for NVIDIA types: the pod stays
    pending, no node is launched, nothing to strand (and the policy does not need to refuse it)."""
    _, offers, pools, plugin, _, _ = example
    pod = Pod({"nvidia.com/gpu": 1, resource: 1}, [{"operator": "Exists"}])
    assert lands_on(pod, offers) is None and stranded(pod, offers, pools, plugin) is None


# --- the policy against the model -----------------------------------------------------------------------------------

TOLERATIONS = {
    "none": [],
    "gpu": [GPU_TOLERATION],
    "blanket": [{"operator": "Exists"}],
    "sharing-key": [GPU_TOLERATION, {"key": "eks-gpu-spot/gpu-sharing", "operator": "Exists"}],
    "time-slicing-value": [GPU_TOLERATION, {"key": "eks-gpu-spot/gpu-sharing", "value": "time-slicing"}],
    "mig-value": [GPU_TOLERATION, {"key": "eks-gpu-spot/gpu-sharing", "value": "mig", "effect": "NoSchedule"}],
    "noexecute-only": [{"operator": "Exists", "effect": "NoExecute"}],
}
REQUESTS = {
    "gpu": {"nvidia.com/gpu": 1},
    "gpu+efa": {"nvidia.com/gpu": 1, EFA_RESOURCE: 1},
    "shared": {"nvidia.com/gpu.shared": 1},
    "shared+efa": {"nvidia.com/gpu.shared": 1, EFA_RESOURCE: 1},
    "gpu+pod-eni": {"nvidia.com/gpu": 1, POD_ENI_RESOURCE: 1},
    "gpu-zero": {"nvidia.com/gpu": 0},
}


def grid(pool_names):
    selections = [({}, ()), *[({NODEPOOL_LABEL: name}, ()) for name in pool_names]]
    selections.append(({}, ([{"key": NODEPOOL_LABEL, "operator": "In", "values": ["training"]}],)))
    for (t, tolerations), (r, requests), (selector, terms) in itertools.product(
        TOLERATIONS.items(), REQUESTS.items(), selections
    ):
        yield f"{t}/{r}/{selector or terms}", Pod(dict(requests), tolerations, selector, terms)


@pytest.mark.parametrize(
    "stack",
    [
        EXAMPLE_STACK.read_text(),
        # Only time-sliced pools (one with EFA types): no whole-GPU pool to point to.
        '[{"name": "sliced", "instanceTypes": ["g6.12xlarge", "g6.xlarge"], "timeSlicingReplicas": 4}]',
    ],
    ids=["example", "time-sliced-only"],
)
def test_every_pod_the_model_strands_is_refused_and_no_refused_pod_is_needlessly_so(stack):
    if stack.startswith("["):
        raw = {"aws:region": "us-west-2", "eks-gpu-spot:gpuPools": stack}
    else:
        raw = read_stack_file(EXAMPLE_STACK)
    cfg = parse_config(raw)
    offers, pools, plugin = stack_stranding(cfg)
    spec = policy_spec(cfg.effective_gpu_pools)
    old = EfaPlugin([EFA_POOL_LABEL], ["true"], exists_tolerations([p for p in pools.values() if p.efa]))
    before = stranding_pods = 0
    for label, pod in grid(pools):
        verdict = admit(spec, pod_object(pod))
        before += stranded(pod, offers, pools, old) is not None
        if (where := stranded(pod, offers, pools, plugin)) is not None:
            stranding_pods += 1
            assert verdict is not None, f"{label} strands {where} and is admitted"
        if verdict is not None:  # refused: only pods whose request some reachable pool never registers
            assert "gpu-zero" not in label and not label.startswith(("none/", "noexecute-only/")), label
    assert before > stranding_pods > 0  # the grid does strand nodes, and the plugin alone closed some


def test_pods_karpenter_never_provisions_for_are_left_alone(example):
    spec = example[-1]
    pod = CASES[1].probe("inference")
    daemonset = {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "d", "uid": "u"}]}
    assert admit(spec, pod_object(pod, **daemonset)) is None
    bound = pod_object(pod)
    bound["spec"]["nodeName"] = "ip-10-0-0-1"
    assert admit(spec, bound) is None
    replicaset = {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "u"}]}
    assert admit(spec, pod_object(pod, **replicaset)) is not None
    assert admit(spec, pod_object(pod), operation="UPDATE") is None


# --- what the API server checks that cel-python can -----------------------------------------------------------------


def test_the_policy_is_well_formed_for_the_api_server(example):
    """Every expression compiles; each validation has a messageExpression and a reason the API accepts; variables
    are valid identifiers and only read earlier ones; the policy matches pod CREATE only, fails closed, and its
    binding denies. Not checkable here: CEL cost estimation (cel-python has none), type checking against the pod
    schema (the API server reports it in status.typeChecking)."""
    spec = example[-1]
    expressions = [c["expression"] for c in spec["matchConditions"]] + [v["expression"] for v in spec["variables"]]
    for validation in spec["validations"]:
        assert validation["reason"] in {"Unauthorized", "Forbidden", "Invalid", "RequestEntityTooLarge"}
        assert validation.get("messageExpression")
        expressions += [validation["expression"], validation["messageExpression"]]
    for expression in expressions:
        celpy.Environment().compile(expression)  # raises CELParseError on bad syntax
    names = [v["name"] for v in spec["variables"]]
    for index, variable in enumerate(spec["variables"]):
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable["name"])
        assert set(re.findall(r"variables\.(\w+)", variable["expression"])) <= set(names[:index])
    assert spec["matchConstraints"] == {
        "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]
    }
    assert spec["failurePolicy"] == "Fail" and binding_spec()["validationActions"] == ["Deny"]
