"""`python -m chaosfault ...`: the same commands as the zipapp."""

from chaosfault.cli import entry

entry()
