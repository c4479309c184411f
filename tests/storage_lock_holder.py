"""Helper process for tests/test_storage_open.py: open a store, say so, hold it until
stdin closes (or a minute passes)."""

from __future__ import annotations

import sys

from storage import Store

HOLD_SECONDS_MAX = 60  # never outlive a test that forgot us


def main() -> None:
    data_dir, chain_id = sys.argv[1], sys.argv[2]
    with Store.open(data_dir, chain_id=chain_id):
        print("ready", flush=True)
        import select

        select.select([sys.stdin], [], [], HOLD_SECONDS_MAX)


if __name__ == "__main__":
    main()
