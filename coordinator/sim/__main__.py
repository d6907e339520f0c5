"""`python -m coordinator.sim --seeds 1000` or `python -m coordinator.sim --seed N -v`."""

from __future__ import annotations

import argparse
import sys

from coordinator.sim.cli import replay, run_sweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coordinator.sim", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--seeds", type=int, default=100, help="number of seeds to sweep")
    group.add_argument("--seed", type=int, help="replay one seed")
    parser.add_argument("--start", type=int, default=0, help="first seed of the sweep")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.seed is not None:
        return replay(args.seed, args.verbose)
    return run_sweep(args.seeds, args.start, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
