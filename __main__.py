"""Pulumi entry point: load and validate config, build the stack, export its outputs."""

import pulumi

from infra.config import load_config
from infra.stack import build_stack

config = load_config()  # raises one ConfigError naming every bad key before anything is registered
for name, value in build_stack(config).items():
    pulumi.export(name, value)
