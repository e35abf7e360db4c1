import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["summarize"]:
        # Needs only the standard library: any Python 3.11 runs it, not just the tool's venv.
        from bench.summarize import main as summarize

        sys.exit(summarize(sys.argv[2:]))
    from bench.run import main

    sys.exit(main())
