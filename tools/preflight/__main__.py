"""CLI of the capacity preflight (see tools/preflight/__init__.py and README, Capacity preflight)."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from datetime import date

from infra.catalog.kubernetes_versions import today as current_date
from infra.catalog.regions import sdk_description, sdk_regions
from infra.config import REGION, ConfigError, parse_config
from infra.config.cluster import dated_problems
from tools.preflight import __doc__ as DOC
from tools.preflight.aws import Aws, ClientFactory, session_factory
from tools.preflight.checks import run_checks
from tools.preflight.pins import check_pins
from tools.preflight.report import EXIT_CONFIG, Preflight, as_json, as_text
from tools.stack_files import (
    StackFileError,
    add_stack_arguments,
    config_target,
    read_stack_file,
    source_label,
    stack_file,
    stack_name,
)

MAX_COMPARED = 9  # GetSpotPlacementScores takes at most 10 regions, the stack's own included


def regions_arg(text: str) -> list[str]:
    regions = [r.strip() for r in text.split(",") if r.strip()]
    bad = [r for r in regions if not REGION.match(r)]
    if bad:
        raise argparse.ArgumentTypeError(f"not an AWS region name: {', '.join(bad)}")
    unknown = [r for r in regions if sdk_regions() and r not in sdk_regions()]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"not a region in the partition data of {sdk_description()}: {', '.join(unknown)}"
        )
    if len(regions) > MAX_COMPARED:
        raise argparse.ArgumentTypeError(f"at most {MAX_COMPARED} regions")
    return list(dict.fromkeys(regions))


def main(argv: Sequence[str] | None = None, factory: ClientFactory | None = None, today: date | None = None) -> int:
    """`today` (the date support windows are read against) is injected by tests; the command uses the clock."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.preflight",
        description=DOC.splitlines()[0],
        epilog="Exit codes: 0 every pool and pin checked, nothing blocked (warnings allowed), 3 some pool is blocked "
        "or a pin AWS does not have, "
        "4 nothing blocked but some checks could not run (0 with --allow-unchecked), 2 invalid config.",
    )
    add_stack_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--regions", type=regions_arg, default=[], help="other regions to compare, comma separated")
    parser.add_argument(
        "--allow-unchecked",
        action="store_true",
        help="exit 0 rather than 4 when nothing is blocked but some checks could not run",
    )
    args = parser.parse_args(argv)
    try:
        raw = read_stack_file(stack_file(args))
        cfg = parse_config(raw)
        problems = dated_problems(cfg, today or current_date())  # what `pulumi up` would refuse today
        if problems:
            raise ConfigError(problems)
        compare = [r for r in args.regions if r != cfg.region]
        aws = Aws(factory or session_factory(raw.get("aws:profile")))
        region, reports = run_checks(aws, cfg, compare, config_target(args))
        pins = check_pins(aws, cfg, config_target(args))
    except (StackFileError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    render = as_json if args.json else as_text
    # Named as render names it, with the file when it is not the stack's own; its advice edits that file.
    source = source_label(args)
    run = Preflight(
        stack_name(args), cfg.region, region.zones or [], compare, reports, args.allow_unchecked, pins, source
    )
    print(render(run))
    return run.exit_code


if __name__ == "__main__":
    # `preflight ... | head`: end quietly when the reader goes away (no BrokenPipeError traceback).
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
