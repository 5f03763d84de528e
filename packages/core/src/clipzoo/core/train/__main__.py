"""``python -m clipzoo.core.train CONFIG [--section.key=value ...]``: the entry point for launchers.

``torchrun -m clipzoo.core.train`` and ``deepspeed --module clipzoo.core.train`` start one of these per
process; the deepspeed launcher's ``--local_rank=N`` argument is accepted and ignored (LOCAL_RANK is
read from the environment).
"""

import sys

from clipzoo.core.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
