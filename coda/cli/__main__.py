import sys

try:
    from coda.cli import main
except KeyboardInterrupt:  # Ctrl-C while the package imports, before `main` can catch it
    print("coda: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
