"""`python -m detector` runs the gpuwatch command line."""

from detector.cli import main

main()
