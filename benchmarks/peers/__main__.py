"""One contender in a fresh process: `python -m benchmarks.peers JOB_JSON` prints its result as
one JSON line; a failure prints one line on stderr (the reason the suite records) and exits 1."""

from __future__ import annotations

import json
import sys

from benchmarks.peers import Plan, load_data, measure


def main() -> None:
    job = json.loads(sys.argv[1])
    plan = Plan(**job["plan"])
    try:
        result = measure(job["case"], job["name"], plan, load_data(plan), job["device"])
    except Exception as e:  # the suite goes on without this contender and says why
        print(f"{type(e).__name__}: {e}".replace("\n", " "), file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
