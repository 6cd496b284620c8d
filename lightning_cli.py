"""LightningCLI entry point: `python lightning_cli.py fit --config configs/quickstart.yaml` (same as `rspose`)."""

from rspose.main import main

if __name__ == "__main__":
    raise SystemExit(main())
