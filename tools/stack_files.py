"""Stack files, as every tool here (render, preflight) reads them: `--stack NAME` or `--config-file PATH`, and a
`Pulumi.<stack>.yaml` turned into the raw string map Pulumi hands a program."""

from __future__ import annotations

import argparse
import difflib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from infra.config import KNOWN_KEYS, PROJECT, ConfigError, ConfigProblem, parse_config

ROOT = Path(__file__).resolve().parent.parent


class StackFileError(ValueError):
    """The stack config file is missing or not in Pulumi's stack-config format."""


# What Pulumi reads at the top of a stack file: the yaml keys of ProjectStack (pulumi/pulumi
# sdk/go/common/workspace/project.go). It ignores anything else there, so a key outside `config:` configures nothing.
STACK_FILE_KEYS = ("config", "environment", "secretsprovider", "encryptedkey", "encryptionsalt")
_DECIMAL = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")


def read_stack_file(path: Path) -> dict[str, str]:
    """Read a `Pulumi.<stack>.yaml` into the raw string map Pulumi hands a program (structured values as JSON).

    Raises StackFileError when the file is not a stack file at all, and ConfigError naming every problem when it is
    one that is wrong: keys Pulumi would ignore, YAML scalars that mean something else than they read, and (in the
    same message) whatever parse_config finds in the rest."""
    document, config_node = _load(path)
    if document is None:
        return {}
    if not isinstance(document, dict) or not isinstance(document.get("config", {}) or {}, dict):
        raise StackFileError(f"{path}: expected a mapping with a 'config:' mapping of key: value")
    problems = _top_level_problems(path, document)
    raw: dict[str, str] = {}
    values = dict(zip((str(k.value) for k, _ in config_node), (v for _, v in config_node), strict=True))
    for key, value in (document.get("config") or {}).items():
        if isinstance(value, dict) and "secure" in value:
            raise StackFileError(f"{path}: {key} is a secret; secrets cannot be rendered offline")
        traps = _yaml_traps(values[str(key)], _problem_key(str(key)))
        if traps:
            problems += traps
            continue
        raw[str(key)] = _as_pulumi_string(value)
    if problems:
        raise ConfigError(problems + _config_problems(raw, {p.key for p in problems}))
    return raw


def _load(path: Path) -> tuple[Any, list[tuple[yaml.Node, yaml.Node]]]:
    """The document and the (key, value) nodes of its `config:` mapping (the nodes keep each scalar as written)."""
    try:
        text = path.read_text(encoding="utf-8")
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            document = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except FileNotFoundError:
        raise StackFileError(f"{path}: no such stack config file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StackFileError(f"{path}: not a readable YAML file ({first_line})") from None
    pairs: list[tuple[yaml.Node, yaml.Node]] = []
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == "config" and isinstance(value_node, yaml.MappingNode):
                pairs = value_node.value
    return document, pairs


def _as_pulumi_string(value: Any) -> str:
    """A config value as Pulumi hands it to the program: strings as they are, scalars as JSON, structured values as
    JSON; an empty value (`key:`) is the empty string (pulumi/pulumi sdk/go/common/workspace/loaders.go,
    checkForEmptyConfig: "currently treated as an empty string")."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _problem_key(key: str) -> str:
    """How config problems name a key: project keys without their namespace, as parse_config names them."""
    namespace, _, name = key.rpartition(":")
    return name if namespace in ("", PROJECT) else key


def _top_level_problems(path: Path, document: dict) -> list[ConfigProblem]:
    problems = []
    for key, value in document.items():
        name = str(key)
        if name == "environment":
            problems.append(
                ConfigProblem(
                    name,
                    value,
                    "Pulumi ESC environments supply config that render and preflight cannot read offline (they would "
                    "check the stack without it); set those values under `config:` to check them here",
                )
            )
        elif name in STACK_FILE_KEYS:
            continue
        elif ":" in name or name in KNOWN_KEYS:
            home = name if ":" in name else f"{PROJECT}:{name}"
            why = f"is at the top of {path.name}, outside `config:`, where Pulumi ignores it; move it under `config:`"
            problems.append(ConfigProblem(name, value, f"{why} (as {home})"))
        else:
            folded = [k for k in STACK_FILE_KEYS if k == name.lower()]
            close = folded or difflib.get_close_matches(name, STACK_FILE_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            why = f"is not a key of a Pulumi stack file ({', '.join(STACK_FILE_KEYS)}), so Pulumi ignores it{hint}"
            problems.append(ConfigProblem(name, value, why))
    return problems


def _yaml_traps(node: yaml.Node, key: str) -> list[ConfigProblem]:
    """Unquoted scalars YAML reads as something other than their text: `1.30` is the number 1.3 (Pulumi hands the
    program "1.3": pulumi/pulumi sdk/go/common/resource/config/object.go MarshalString turns a float64 into JSON),
    `yes` a boolean only to YAML 1.1 readers, `0x10` and `1_000` numbers in another spelling, `2024-01-01` a date.
    No key here takes a fraction, a `yes` or a date, so each is a mistake."""
    if isinstance(node, yaml.SequenceNode):
        return [p for i, item in enumerate(node.value) for p in _yaml_traps(item, f"{key}[{i}]")]
    if isinstance(node, yaml.MappingNode):
        return [p for k, v in node.value for p in _yaml_traps(v, f"{key}.{k.value}")]
    if not isinstance(node, yaml.ScalarNode) or node.style is not None:  # quoted: a string as written
        return []
    text, kind, name = node.value, node.tag.rsplit(":", 1)[-1], key.rsplit(".", 1)[-1]
    if kind == "float":
        number = float(yaml.safe_load(text))
        why = f"is read as the YAML number {number!r}, not the text {text!r}; quote it: {name}: '{text}'"
    elif kind == "bool" and text.lower() not in ("true", "false"):
        why = "is a boolean to YAML 1.1 readers and the text to others; write true or false"
    elif kind == "int" and not _DECIMAL.match(text):
        why = f"is read as the YAML number {yaml.safe_load(text)}; write it in plain decimal digits"
    elif kind == "timestamp":
        why = f"is read as a YAML date; quote it: {name}: '{text}'"
    else:
        return []
    return [ConfigProblem(key, text, why)]


def _config_problems(raw: dict[str, str], reported: set[str]) -> list[ConfigProblem]:
    """What parse_config finds in the rest of the file, but for keys reported already (one line per key)."""
    try:
        parse_config(raw)
    except ConfigError as error:
        return [p for p in error.problems if p.key not in reported]
    return []


DEFAULT_STACK = "dev"
_STACK_FILE = re.compile(r"^Pulumi\.(?P<stack>.+)\.ya?ml$")


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """`--stack` / `--config-file`: how every command here (render, preflight) names the stack file it reads."""
    parser.add_argument(
        "--stack",
        help="stack name; reads Pulumi.<stack>.yaml (default: dev, or the <name> of --config-file Pulumi.<name>.yaml)",
    )
    parser.add_argument("--config-file", type=Path, help="any file in Pulumi stack-config format")


def stack_name(args: argparse.Namespace) -> str:
    """The stack a command works on: --stack when given, else the <name> of a Pulumi.<name>.yaml config file (so its
    render never lands on another stack's), else dev."""
    if args.stack:
        return args.stack
    if args.config_file:
        match = _STACK_FILE.match(args.config_file.name)
        return match["stack"] if match else args.config_file.stem
    return DEFAULT_STACK


def stack_file(args: argparse.Namespace) -> Path:
    return args.config_file or ROOT / f"Pulumi.{stack_name(args)}.yaml"


def stack_arguments(args: argparse.Namespace) -> str:
    """The same stack, as arguments to hand to another command."""
    return f"--config-file {args.config_file}" if args.config_file else f"--stack {stack_name(args)}"


def own_stack_file(args: argparse.Namespace) -> bool:
    """Whether the file read is this project's Pulumi.<stack>.yaml, the one `pulumi ... --stack <stack>` reads."""
    return args.config_file is None or args.config_file.resolve() == (ROOT / f"Pulumi.{stack_name(args)}.yaml")


def config_target(args: argparse.Namespace) -> str:
    """What a `pulumi config` command needs to edit the file these tools read: `--stack NAME` for the project's own
    stack file, else `--config-file PATH` (Pulumi then reads and writes that file instead of Pulumi.<stack>.yaml:
    `pulumi config --config-file`, pulumi.com/docs/iac/cli/commands/pulumi_config)."""
    return f"--stack {stack_name(args)}" if own_stack_file(args) else f"--config-file {args.config_file}"


def deploy_advice(args: argparse.Namespace) -> str:
    """How to deploy what was read: its stack, or, for a file that is no stack of this project (an example), how to
    make it one (`pulumi up --config-file`, pulumi.com/docs/iac/cli/commands/pulumi_up)."""
    if own_stack_file(args):
        return f"deploy with `pulumi up --stack {stack_name(args)}`"
    return (
        f"deploy this file as a stack of yours (it is no Pulumi.<stack>.yaml of this project): `pulumi stack init "
        f"<name>`, then `pulumi up --stack <name> --config-file {args.config_file}`, or copy its config: into "
        "Pulumi.<name>.yaml"
    )


def source_label(args: argparse.Namespace) -> str:
    """What a report is about: the stack, and the file when it is not the stack's own (`gpu-pools` from
    examples/stacks/Pulumi.gpu-pools.yaml)."""
    return "" if own_stack_file(args) else str(args.config_file)
