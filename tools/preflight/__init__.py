"""Capacity preflight: will each GPU pool actually get GPUs, in this region, now? And does AWS have every pin the
stack deploys (add-on versions and their configuration, Bottlerocket images, EFA security group rules)?

    uv run python -m tools.preflight --stack dev [--config-file PATH] [--json] [--regions r1,r2]

Read-only AWS calls (policies/preflight-readonly.json), each bounded in time and retried on throttling; a check that
cannot run is reported as skipped. Exit 0: every pool can launch and every pin exists (warnings allowed); 3: some
pool is blocked or a pin is missing; 4: nothing blocked, some checks could not run; 2: invalid config.
"""
