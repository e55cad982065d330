"""moto's server, with one fix for how Hoist uses it (local development and tests only).

moto 5.2.5's TransactWriteItems deep-copies every table it touches, before every
transaction, to roll back on failure. Hoist writes the upload and the owner's quota
in one transaction at every step, so each call costs time and memory in proportion
to the whole table: measured here, 500 uploads' worth of calls took moto from 90 MB
to 5.2 GB and each call's latency doubled (bench/moto_health.md). This wrapper keeps
moto's transaction logic as it is but backs up only the items the transaction
touches, and restores exactly those on rollback: the same all-or-nothing behaviour,
at the cost of the items, not the table.
"""
import copy
import sys

import moto.dynamodb.models as models
from moto.dynamodb.models.table import Table


class _TablesAreNotCopied:
    """Stands in for the `copy` module inside moto's DynamoDB backend: a Table is
    returned as it is (the transaction wrapper below does the rollback); anything else
    is deep-copied as before."""

    @staticmethod
    def deepcopy(obj, memo=None):
        if isinstance(obj, Table):
            return obj
        return copy.deepcopy(obj, memo)

    def __getattr__(self, name):
        return getattr(copy, name)


models.copy = _TablesAreNotCopied()
_original = models.DynamoDBBackend.transact_write_items


def _key_of(table, op_type, op):
    if op_type == "Put":
        attrs = op.get("Item", {})
        key = {table.hash_key_attr: attrs.get(table.hash_key_attr)}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = attrs.get(table.range_key_attr)
        return key
    return op.get("Key")


def transact_write_items(self, transact_items):
    backup = []
    for item in transact_items:
        op_type, op = next(iter(item.items()))
        table = self.tables.get(op.get("TableName"))
        key = _key_of(table, op_type, op) if table is not None else None
        if not key or None in key.values():
            continue
        try:
            current = self.get_item(table.name, key)
        except Exception:  # noqa: BLE001 - an unreadable key fails inside the transaction
            current = None
        backup.append((table.name, key, copy.deepcopy(current.to_json()["Attributes"]) if current else None))
    try:
        return _original(self, transact_items)
    except Exception:
        # All or nothing: put every touched item back as it was.
        for table_name, key, attrs in reversed(backup):
            try:
                self.delete_item(table_name, key)
            except Exception:  # noqa: BLE001 - absent already
                pass
            if attrs is not None:
                self.put_item(table_name, attrs)
        raise


models.DynamoDBBackend.transact_write_items = transact_write_items

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
