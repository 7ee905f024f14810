"""The offline engine: runs the real program under Pulumi's mock runtime and records every registration.

Shared by the tests and by `python -m tools.render`. Nothing is contacted: invokes are answered from
`data/offline.json`, ids and ARNs are recognisable placeholders (`vpc-offline-1a2b3c4d`, account 123456789012).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import runpy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as runtime_resource
from pulumi.runtime import rpc, settings
from pulumi.runtime.proto import resource_pb2, source_pb2
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from infra.catalog.data import load_data
from infra.catalog.kubernetes_versions import dated
from infra.catalog.zones import REGION_ZONE_IDS
from infra.config import PROJECT, REGION_KEY
from infra.config.access import region_partition
from infra.config.convert import as_list

OFFLINE = load_data("offline")
ACCOUNT_ID: str = OFFLINE["account_id"]
SECRET = "[secret]"
PROGRAM = Path(__file__).resolve().parent.parent / "__main__.py"

# How ids and ARNs look (infra/data/offline.json).
_ID_PREFIXES: dict[str, str] = OFFLINE["id_prefixes"]
_GLOBAL_SERVICES = frozenset(OFFLINE["global_services"])
_ARN_RESOURCE: dict[str, str] = OFFLINE["arn_resources"]
_ARN_SERVICE: dict[str, str] = OFFLINE["arn_services"]


@dataclass(frozen=True)
class Registration:
    """One resource the program registered, with its inputs as the program wrote them (secrets masked)."""

    urn: str
    type: str
    name: str
    parent: str
    dependencies: tuple[str, ...]
    inputs: dict[str, Any]
    custom: bool
    before_delete_hooks: tuple[str, ...] = ()
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    """Only the operations the program set: create, update, delete."""
    replace_on_changes: tuple[str, ...] = ()
    """Property paths whose change makes the engine replace the resource instead of updating it."""
    delete_before_replace: bool = False

    def as_json(self) -> dict[str, Any]:
        document = {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "dependencies": list(self.dependencies),
            "inputs": self.inputs,
        }
        if self.before_delete_hooks:
            document["hooks"] = {"before_delete": list(self.before_delete_hooks)}
        if self.custom_timeouts:
            document["customTimeouts"] = self.custom_timeouts
        if self.replace_on_changes:
            document["replaceOnChanges"] = list(self.replace_on_changes)
        if self.delete_before_replace:
            document["deleteBeforeReplace"] = True
        return document


@dataclass
class OfflineRun:
    """What one offline run registered and exported."""

    registrations: list[Registration]
    outputs: dict[str, Any]
    secret_outputs: frozenset[str] = field(default_factory=frozenset)
    invokes: tuple[tuple[str, dict], ...] = ()
    """Every invoke the program made: (token, arguments)."""
    warnings: tuple[str, ...] = ()
    """What the program logged as warnings (`pulumi.log.warn`), recorded rather than printed: render prints them."""

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> Registration:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            names = [r.name for r in self.of_type(type_)]
            raise LookupError(f"expected one {type_} named {name!r}, found {len(found)} among {names}")
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)

    def depends_on(self, dependent: Registration, dependency: Registration) -> bool:
        """True when `dependency` is a direct or transitive dependency (or a child of one) of `dependent`."""
        seen: set[str] = set()
        stack = [dependent.urn]
        while stack:
            urn = stack.pop()
            for dep in self._edges.get(urn, ()):
                if dep == dependency.urn:
                    return True
                if dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        return False

    @functools.cached_property
    def _edges(self) -> dict[str, tuple[str, ...]]:
        return {r.urn: r.dependencies for r in self.registrations}


class OfflineMocks(pulumi_mocks.Mocks):
    """Answers invokes and fakes resource outputs; knows the region it pretends to be in."""

    def __init__(self, region: str, pinned_zones: Sequence[str] = ()):
        self.zones = region_zones(region, pinned_zones)  # raises OfflineRegionError first
        self.region = region
        self.invokes: list[tuple[str, dict]] = []

    # --- invokes ---

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict:
        self.invokes.append((args.token, _plain(dict(args.args))))
        handlers: dict[str, Callable[[dict], dict]] = {
            "aws:index/getAvailabilityZones:getAvailabilityZones": self._availability_zones,
            "aws:index/getCallerIdentity:getCallerIdentity": lambda _: {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/offline",
                "userId": "OFFLINE",
                "id": ACCOUNT_ID,
            },
            "aws:index/getPartition:getPartition": lambda _: {
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
                "id": "aws",
            },
            "aws:index/getRegion:getRegion": lambda _: {
                "name": self.region,
                "region": self.region,
                "id": self.region,
                "endpoint": f"ec2.{self.region}.amazonaws.com",
                "description": "offline",
            },
            "aws:secretsmanager/getSecret:getSecret": self._secret,
        }
        handler = handlers.get(args.token)
        if handler is None:
            raise NotImplementedError(f"the offline engine does not answer invoke {args.token}; teach tools/offline.py")
        return handler(args.args)

    def _secret(self, args: dict) -> dict:
        """A secret of this account and region; Secrets Manager ARNs end in '-' and 6 random characters."""
        name = args.get("name") or str(args.get("arn", "")).split(":secret:")[-1]
        arn = f"arn:aws:secretsmanager:{self.region}:{ACCOUNT_ID}:secret:{name}-OFFLIN"
        return {"arn": arn, "id": arn, "name": name, "region": self.region}

    def _availability_zones(self, _: dict) -> dict:
        names, zone_ids = self.zones
        return {
            "names": names,
            "zoneIds": zone_ids,
            "groupNames": [self.region] * len(names),
            "id": self.region,
        }

    # --- resources ---

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict]:
        if not args.custom:
            return None, {}
        return self.fake_state(args.typ, args.name, args.inputs)

    def fake_state(self, type_: str, name: str, inputs: dict) -> tuple[str, dict]:
        digest = hashlib.sha1(f"{type_}::{name}".encode()).hexdigest()[:8]
        prefix = _ID_PREFIXES.get(type_)
        state = dict(inputs)
        state.setdefault("name", name)
        id_ = f"{prefix}-offline-{digest}" if prefix else f"{state['name']}"
        if type_.startswith("aws:"):
            state.setdefault("arn", self.arn(type_, state["name"], id_))
            state.setdefault("region", self.region)
        extras = {
            "aws:sqs/queue:Queue": {"url": f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{state['name']}"},
            "aws:kms/key:Key": {"keyId": id_},
            "aws:iam/role:Role": {"uniqueId": f"AROAOFFLINE{digest.upper()}"},
            "aws:ec2/launchTemplate:LaunchTemplate": {"latestVersion": 1, "defaultVersion": 1},
            "random:index/randomString:RandomString": {"result": "offline0"[: int(inputs.get("length", 8))]},
        }
        state.update(extras.get(type_, {}))
        return id_, state

    def arn(self, type_: str, name: str, id_: str) -> str:
        module = type_.split(":")[1]
        service = _ARN_SERVICE.get(module, module.split("/")[0])
        resource = _ARN_RESOURCE.get(type_, f"{module.split('/')[-1].lower()}/{{id}}").format(name=name, id=id_)
        region = "" if service in _GLOBAL_SERVICES else self.region
        return f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{resource}"

    def eks_cluster_outputs(self, inputs: dict, reference: Callable[[str, str, dict], dict]) -> dict:
        """Outputs of the remote `eks:index:Cluster` component; `eksCluster` is a reference to a fabricated
        `aws:eks/cluster:Cluster` whose state the monitor stores, so the SDK can rebuild it."""
        name = inputs["name"]
        endpoint = f"https://OFFLINE0000000000.gr7.{self.region}.eks.amazonaws.com"
        ca = base64.b64encode(b"offline placeholder certificate").decode()
        cluster_state = {
            "name": name,
            "arn": self.arn("aws:eks/cluster:Cluster", name, name),
            "endpoint": endpoint,
            "version": inputs.get("version"),
            "status": "ACTIVE",
            "platformVersion": "eks.offline",
            "certificateAuthority": {"data": ca},
            "accessConfig": {"authenticationMode": inputs.get("authenticationMode")},
            "vpcConfig": {
                "vpcId": inputs.get("vpcId"),
                "subnetIds": inputs.get("subnetIds"),
                "clusterSecurityGroupId": f"sg-offline-{hashlib.sha1(name.encode()).hexdigest()[:8]}",
                "endpointPrivateAccess": inputs.get("endpointPrivateAccess"),
                "endpointPublicAccess": inputs.get("endpointPublicAccess"),
                "publicAccessCidrs": inputs.get("publicAccessCidrs"),
            },
            "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{self.region}.amazonaws.com/id/OFFLINE"}]}],
            "tags": inputs.get("tags"),
        }
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": endpoint, "certificate-authority-data": ca}}],
            "contexts": [{"name": "aws", "context": {"cluster": name, "user": "aws"}}],
            "current-context": "aws",
            "users": [
                {
                    "name": "aws",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": ["eks", "get-token", "--cluster-name", name, "--region", self.region],
                        }
                    },
                }
            ],
        }
        return {
            "eksCluster": reference("aws:eks/cluster:Cluster", f"{name}-eksCluster", cluster_state),
            "kubeconfig": kubeconfig,
            "kubeconfigJson": json.dumps(kubeconfig),
            "clusterSecurityGroupId": cluster_state["vpcConfig"]["clusterSecurityGroupId"],
        }


class OfflineRegionError(ValueError):
    """The offline engine has no AZ table for the configured region."""


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Mock monitor that records registrations and replaces resource references in inputs by their URNs
    (rebuilding referenced resources inside the monitor hangs or binds to another event loop, pulumi#6561)."""

    mocks: OfflineMocks

    def __init__(self, mocks: OfflineMocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        # URNs of resources fabricated inside remote components -> the component's URN.
        self.inner_urns: dict[str, str] = {}

    def RegisterResource(self, request):
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            return resource_pb2.RegisterResourceResponse(urn=urn)
        _ensure_event_loop()
        inputs = rpc.deserialize_properties(_references_to_urns(request.object))
        self.registrations.append(
            Registration(
                urn=urn,
                type=request.type,
                name=request.name,
                parent=request.parent,
                dependencies=tuple(sorted({self.inner_urns.get(d, d) for d in request.dependencies})),
                inputs=_plain(inputs),
                custom=bool(request.custom),
                before_delete_hooks=tuple(request.hooks.before_delete),
                custom_timeouts={
                    op: getattr(request.customTimeouts, op)
                    for op in ("create", "update", "delete")
                    if getattr(request.customTimeouts, op)
                },
                replace_on_changes=tuple(request.replaceOnChanges),
                delete_before_replace=bool(request.deleteBeforeReplace),
            )
        )
        if request.type == "eks:index:Cluster":
            id_, state = None, self.mocks.eks_cluster_outputs(inputs, self._stored_reference(urn))
        else:
            id_, state = self.mocks.new_resource(
                pulumi_mocks.MockResourceArgs(
                    typ=request.type,
                    name=request.name,
                    inputs=inputs,
                    provider=request.provider,
                    resource_id=request.importId,
                    custom=request.custom,
                )
            )
        obj_proto = _sync_await(rpc.serialize_properties(state, {}))
        self.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(urn, id_ or "", state)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_ or "", object=obj_proto)

    def _stored_reference(self, parent_urn: str) -> Callable[[str, str, dict], dict]:
        def reference(type_: str, name: str, state: dict) -> dict:
            urn = self.make_urn(parent_urn, type_, name)
            self.inner_urns[urn] = parent_urn
            self.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(urn, state["name"], state)
            return {rpc._special_sig_key: rpc._special_resource_sig, "urn": urn, "id": state["name"]}

        return reference


def _references_to_urns(obj: struct_pb2.Struct) -> struct_pb2.Struct:
    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get(rpc._special_sig_key) == rpc._special_resource_sig:
                return value["urn"]
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    converted = struct_pb2.Struct()
    converted.update(walk(json_format.MessageToDict(obj)))
    return converted


def _plain(value: Any) -> Any:
    """JSON-ready inputs: secrets masked, whole floats back to ints (protobuf carries every number as a double)."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return SECRET
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _no_stack_trace() -> source_pb2.StackTrace:
    return source_pb2.StackTrace()


def region_zones(region: str, pinned: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """The zone names and IDs the offline engine answers for a region: one real account's view where
    infra/data/offline.json has it; else the region's real zone IDs (infra/data/zone_ids.json, from AWS's zone
    table) with names this engine makes up (names differ per account anyway); else the pinned zone IDs."""
    partition = region_partition(region)
    if partition != "aws":
        raise OfflineRegionError(
            f"aws:region = {region!r}: {region} is in the {partition or 'unknown'} partition; render writes ARNs and "
            "endpoints of the aws partition only, so it refuses other partitions (pulumi up reads the partition "
            "from AWS)"
        )
    if region in OFFLINE["availability_zones"]:
        zones = OFFLINE["availability_zones"][region]
        return list(zones), list(zones.values())
    zone_ids = REGION_ZONE_IDS.get(region) or list(pinned)
    if not zone_ids:
        raise OfflineRegionError(
            f"aws:region = {region!r}: no zone IDs known for this region (infra/data/zone_ids.json, regenerated by "
            "`python -m tools.generate_zone_ids`); pin the zones to render it: availabilityZones: [<id>-az1, "
            "<id>-az2, ...] with the IDs `aws ec2 describe-availability-zones --region "
            f"{region} --query 'AvailabilityZones[].ZoneId'` prints"
        )
    return [f"{region}{chr(ord('a') + i)}" for i in range(len(zone_ids))], list(zone_ids)


def run_program(raw_config: Mapping[str, str], stack: str = "dev", today: date | None = None) -> OfflineRun:
    """Run the real program (`__main__.py`) offline with this stack config, as of `today` (None: the clock)."""
    with dated(today):
        return run_offline(lambda: runpy.run_path(str(PROGRAM), run_name="__main__"), raw_config, stack)


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_offline(program: Callable[[], Any], raw_config: Mapping[str, str], stack: str = "dev") -> OfflineRun:
    """Run `program` (which registers resources and calls `pulumi.export`) against the offline engine."""
    warnings = _Warnings()
    logger = logging.getLogger(f"{__name__}.program")
    logger.handlers, logger.propagate = [warnings], False
    pinned = as_list(raw_config.get(f"{PROJECT}:availabilityZones", "")) or ()
    mocks = OfflineMocks(str(raw_config.get(REGION_KEY, "us-west-2")), pinned)
    monitor = RecordingMonitor(mocks)
    # The SDK walks the Python stack at every registration to tell the engine where a resource was declared (a
    # source position for its diagnostics: pulumi/runtime/resource.py _get_stack_trace); nothing offline reads it,
    # and the walk is an eighth of a run.
    runtime_resource._get_stack_trace = _no_stack_trace
    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, logger=logger, monitor=monitor)
    pulumi.runtime.set_all_config({str(k): str(v) for k, v in raw_config.items()})
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()
    outputs: dict[str, Any] = {}
    secret_outputs: set[str] = set()

    async def resolve_exports() -> None:
        root = settings.get_root_resource()
        for name, value in getattr(root, "outputs", {}).items():
            output = pulumi.Output.from_input(value)
            outputs[name] = await output.future()
            if await output.is_secret():
                secret_outputs.add(name)

    def main() -> Any:
        program()
        return _sync_await(resolve_exports())

    _sync_await(run_pulumi_func(main))
    invokes = tuple(mocks.invokes)
    return OfflineRun(monitor.registrations, outputs, frozenset(secret_outputs), invokes, tuple(warnings.messages))
