"""`python -m hotline.cli …` runs the same command line as `hotline …`."""
from hotline.cli import main

main()
