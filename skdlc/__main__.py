import sys

from skdlc._cli import main

sys.exit(main())
