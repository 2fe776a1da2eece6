import sys

from chaos_runner.cli.main import main

sys.exit(main())
