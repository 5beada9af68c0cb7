"""A stand-in recipe for the driver's tests: writes a results.json and does nothing else.

`python -m tests.studies.fake_recipe --seed 1 --output DIR` writes
`DIR/results.json` with accuracy `0.5 + seed / 10` (`null` for seed 2, as
`recipes.program.write_results` writes a non-finite number).
"""

import argparse
import json
import os
import sys


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True)
    parser.add_argument("--steps", type=int, default=1)
    args = parser.parse_args(list(argv))
    os.makedirs(args.output, exist_ok=True)
    accuracy = None if args.seed == 2 else 0.5 + args.seed / 10
    with open(os.path.join(args.output, "results.json"), "w") as f:
        json.dump({"accuracy": accuracy, "train_seconds": 1.5}, f)
    print(f"fake run of seed {args.seed}")


if __name__ == "__main__":
    main(sys.argv[1:])
