import sys

from topnas.platform.cli import main

sys.exit(main())
