"""Pulumi.yaml, the config model and README agree: one set of keys, types, defaults and descriptions."""

from __future__ import annotations

import typing

import yaml
from pydantic import BaseModel

from infra.config import REGION_KEY, StackConfig, parse_config
from tests.conftest import PROJECT_ROOT
from tests.readme import config_table_problems
from tools.render import read_stack_file

PROJECT = yaml.safe_load((PROJECT_ROOT / "Pulumi.yaml").read_text())
PULUMI_TYPES = {bool: "boolean", int: "integer", str: "string", tuple: "array"}
# Pulumi's project schema has no object type (sdk/go/common/workspace/project.json: string, integer, boolean,
# array): maps and lists of objects are declared without `type`, and only the program validates them.
SCHEMA_TYPES = {"string", "integer", "boolean", "array"}


def is_structured(field) -> bool:
    """A map, or a list of objects (gpuPools): declared without `type`."""
    items = typing.get_args(field.annotation)
    return isinstance(field.default, dict) or any(isinstance(i, type) and issubclass(i, BaseModel) for i in items)


def model_keys() -> dict:
    return {f.alias: f for f in StackConfig.model_fields.values()}


def test_project_runtime():
    assert PROJECT["name"] == "eks-gpu-spot"
    assert PROJECT["runtime"] == {"name": "python", "options": {"toolchain": "uv"}}


def test_every_model_key_is_declared_with_type_description_and_the_same_default():
    declared = PROJECT["config"]
    assert set(declared) == set(model_keys())
    for key, field in model_keys().items():
        entry = declared[key]
        assert entry["description"] == field.description, key
        if key == REGION_KEY:  # Pulumi allows only `value` on another package's key
            assert entry["value"] == field.default and "type" not in entry
            continue
        default = list(field.default) if isinstance(field.default, tuple) else field.default
        assert entry["default"] == default, key
        if is_structured(field):
            assert "type" not in entry, key
            continue
        assert entry["type"] == PULUMI_TYPES[type(field.default)], key
        assert entry["type"] in SCHEMA_TYPES, key
        if entry["type"] == "array":
            assert entry["items"] == {"type": "string"}, key


def test_declared_defaults_parse_to_the_model_defaults(tmp_path):
    # Written as a stack file, the declared defaults must give exactly the model's defaults.
    declared = {k: v.get("default", v.get("value")) for k, v in PROJECT["config"].items()}
    stack_file = tmp_path / "Pulumi.defaults.yaml"
    stack_file.write_text(yaml.safe_dump({"config": declared}))
    assert parse_config(read_stack_file(stack_file)) == StackConfig()


def test_readme_config_table_matches_pulumi_yaml():
    # The table of section "Configuration": every declared key once, in Pulumi.yaml's order, with its default.
    assert config_table_problems(PROJECT_ROOT / "README.md", PROJECT["config"]) == []


def test_dev_stack_file_is_valid_config():
    cfg = parse_config(read_stack_file(PROJECT_ROOT / "Pulumi.dev.yaml"))
    assert cfg.gpu_instance_types == ("p5.48xlarge",)


def _imports(path) -> set[str]:
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _package_of(module: str) -> str:
    """infra.config.cluster -> infra.config; infra.cluster -> infra (the root's own modules)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if (PROJECT_ROOT / parts[0] / parts[1]).is_dir() and len(parts) > 1 else parts[0]


def test_the_house_rules_of_infra():
    """No module over 400 lines, no two packages importing each other, no component importing a tool."""
    uses: dict[str, set[str]] = {}
    for path in (PROJECT_ROOT / "infra").rglob("*.py"):
        module = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(".__init__")
        assert len(path.read_text().splitlines()) <= 400, path.name
        imported = _imports(path)
        assert not [m for m in imported if m == "tools" or m.startswith("tools.")], path.name
        package = _package_of(module) if path.name != "__init__.py" else module
        for target in (m for m in imported if m.startswith("infra.")):
            if _package_of(target) != package:
                uses.setdefault(package, set()).add(_package_of(target))
    assert [(a, b) for a in uses for b in uses[a] if a in uses.get(b, set())] == []
