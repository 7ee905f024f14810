"""Stack files, as every tool here (render, preflight) reads them: `--stack NAME` or `--config-file PATH`, and a
`Pulumi.<stack>.yaml` turned into the raw string map Pulumi hands a program."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


class StackFileError(ValueError):
    """The stack config file is missing or not in Pulumi's stack-config format."""


def read_stack_file(path: Path) -> dict[str, str]:
    """Read a `Pulumi.<stack>.yaml` into the raw string map Pulumi hands a program (structured values as JSON)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StackFileError(f"{path}: no such stack config file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StackFileError(f"{path}: not a readable YAML file ({first_line})") from None
    if document is None:
        return {}
    if not isinstance(document, dict) or not isinstance(document.get("config", {}) or {}, dict):
        raise StackFileError(f"{path}: expected a mapping with a 'config:' mapping of key: value")
    raw = {}
    for key, value in (document.get("config") or {}).items():
        if isinstance(value, dict) and "secure" in value:
            raise StackFileError(f"{path}: {key} is a secret; secrets cannot be rendered offline")
        if isinstance(value, str):
            raw[str(key)] = value
        elif isinstance(value, bool):
            raw[str(key)] = "true" if value else "false"
        else:
            raw[str(key)] = json.dumps(value)
    return raw


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
