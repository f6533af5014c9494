import os
import sys

# The pack folder holds fantasy_core and fantasy_train; worker processes find them through this path too.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fantasy_train.cli import main

if __name__ == "__main__":
    sys.exit(main())
