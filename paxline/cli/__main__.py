"""`python -m paxline.cli`: how the local stack starts its coordinators and workers."""

from paxline.cli.main import main

main()
