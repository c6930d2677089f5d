"""One folder per domain: its contract, assets, checks and sensors."""
