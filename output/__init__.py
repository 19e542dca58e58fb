"""The output folder: its layout, storage, lock, ledger, commit, manifest and verification."""
