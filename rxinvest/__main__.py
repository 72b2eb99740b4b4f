import sys

from rxinvest.cli import main

sys.exit(main())
