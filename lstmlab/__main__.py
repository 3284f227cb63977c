import sys

from lstmlab.cli import main

sys.exit(main())
