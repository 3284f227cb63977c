"""Speed and memory of every backend against torch's modules: `python benchmarks/bench.py [--quick] [--json FILE]`.

The same as `lstmlab bench`; the measurement itself lives in `lstmlab.bench`.
"""

import sys

from lstmlab.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
