"""moto's server, with two fixes for how Hoist uses it (local development and tests only).

moto 5.2.5's TransactWriteItems deep-copies every table it touches, before every
transaction, to roll back on failure. Hoist writes the upload and the owner's quota
in one transaction at every step, so each call costs time and memory in proportion
to the whole table: measured here, 500 uploads' worth of calls took moto from 90 MB
to 5.2 GB and each call's latency doubled (bench/moto_health.md). This wrapper keeps
moto's transaction logic as it is but backs up only the items the transaction
touches, and restores exactly those on rollback: the same all-or-nothing behaviour,
at the cost of the items, not the table.

moto 5.2.5's Query also costs the whole table: every Query, on the table or on an index,
starts from `Table.all_items()`, which lists *and sorts* every item, then filters by
the key. So each call got slower as the table grew (34 ms a call after 1,000 uploads,
bench/moto_health.md). Query sorts its own results afterwards, so here a Query on the
table reads only its partition, and a Query on an index only the items in its partition;
with a Limit (a listing's page), only a window of that partition kept in moto's own order,
so a page costs the same however many uploads its owner has. Results, order and
pagination are moto's own.

moto never expires items by TTL, so a long-lived `make dev` table only grows (rate
counters an hour old, closed uploads past their retention). Here a sweeper deletes, once
a minute (HOIST_MOTO_TTL_SWEEP_SECONDS), the items whose TTL attribute has passed, in
tables with TTL enabled, as DynamoDB does (DynamoDB takes up to a few days; this is sooner).

moto 5.2.5 also keeps every DynamoDB item object it ever makes: each model class lists its
instances for moto's dashboard (`InstanceTrackerMeta`, `instances_tracked`), and every
GetItem, Query result and transaction makes copies of items. So memory grew with every
call, reads included, not with the data: measured here, 300 uploads' calls left 1,400
item objects alive beside the 1,000 in the table. Here DynamoDB items (and stream records)
are not tracked; the dashboard no longer lists them, which Hoist never uses.
"""
import bisect
import copy
import os
import sys
import threading
import time

import moto.core.model_instances as model_instances
import moto.core.models as core_models
import moto.moto_api._internal.models as api_models
import moto.dynamodb.models as models
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import StreamRecord, Table


class _Untracked(list):
    """An `instances_tracked` that keeps nothing: an item lives as long as the table
    (or the answer) that holds it."""

    def append(self, _instance):
        pass


def _untrack():
    for model in (Item, StreamRecord):
        model.instances_tracked = _Untracked()


_original_reset = model_instances.reset_model_data


def _reset_model_data():
    _original_reset()  # moto's reset gives every model a plain list again
    _untrack()


_untrack()
# moto imports the reset by name where it resets (a test's end, POST /moto-api/reset).
for _module in (model_instances, core_models, api_models):
    _module.reset_model_data = _reset_model_data


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

# A Query reads only what its key can match: `_query` says which items, `_all_items`
# (what moto's Query starts from) returns them. For an index, each table keeps a map from
# each GSI's hash key to the primary keys of the items in it, kept by the three writes
# Hoist's calls go through (put, delete, update: BatchWriteItem and transactions call
# them; PartiQL and writes addressed by table ARN do not, and Hoist uses neither). Those
# writes, transactions and Queries take one lock, so the map never sees a write half done.
_query_scope = threading.local()
_lock = threading.RLock()
_original_query = Table.query
_original_all_items = Table.all_items
_DynamoType = models.DynamoType


class _IndexMap:
    """GSI name -> hash value -> primary keys, and primary key -> GSI name -> (hash value,
    sort key). For a GSI with one hash and one range key (Hoist's), each partition's items
    are also kept in moto's own Query order (`ordered`: GSI range, table hash, table range,
    by the same values moto compares), so a Query with a Limit reads a window of them."""

    def __init__(self, table):
        self.members = {index.name: {} for index in table.global_indexes}
        self.sort_attrs = {index.name: _sort_attrs(table, index) for index in table.global_indexes}
        self.ordered = {index.name: {} for index in table.global_indexes}
        self.pkey_of = {index.name: {} for index in table.global_indexes}
        # Partitions whose range values cannot be ordered (moto does not check GSI key
        # types: an N beside an S): never windowed, so their Queries stay moto's own.
        self.unordered = set()
        self.placed = {}
        for item in _original_all_items(table):
            self.place(table, (item.hash_key, item.range_key), item)

    def place(self, table, pkey, item):
        for name, (hash_value, sort_key) in self.placed.pop(pkey, {}).items():
            self.members[name].get(hash_value, set()).discard(pkey)
            if sort_key is not None and (name, hash_value) not in self.unordered:
                self.pkey_of[name].pop(sort_key, None)
                self._ordering(name, hash_value, lambda in_order: _remove(in_order, sort_key))
        if item is None:
            return
        for index in table.global_indexes:
            names = [k["AttributeName"] for k in index.schema]
            if all(item.attrs.get(n) for n in names):
                hash_value = item.attrs[next(k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH")]
                self.members.setdefault(index.name, {}).setdefault(hash_value, set()).add(pkey)
                attrs = self.sort_attrs.get(index.name)
                sort_key = tuple(item.attrs[a].cast_value for a in attrs) if attrs else None
                if sort_key is not None and (index.name, hash_value) not in self.unordered:
                    self.pkey_of[index.name][sort_key] = pkey
                    self._ordering(index.name, hash_value, lambda in_order: bisect.insort(in_order, sort_key))
                self.placed.setdefault(pkey, {})[index.name] = (hash_value, sort_key)

    def _ordering(self, name, hash_value, change):
        try:
            change(self.ordered[name].setdefault(hash_value, []))
        except TypeError:  # values of two types in one partition's range key
            self.ordered[name].pop(hash_value, None)
            self.unordered.add((name, hash_value))


def _remove(in_order, sort_key):
    at = bisect.bisect_left(in_order, sort_key)
    if at < len(in_order) and in_order[at] == sort_key:
        del in_order[at]


def _sort_attrs(table, index):
    """The attributes moto's Query sorts an index's items by (`_generate_attr_to_sort_by`),
    for a GSI of one hash and one range key on a table with a range key; else None."""
    hashes = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
    ranges = [k["AttributeName"] for k in index.schema if k["KeyType"] == "RANGE"]
    if len(hashes) != 1 or len(ranges) != 1 or table.range_key_attr is None:
        return None
    return [hashes[0], ranges[0], table.hash_key_attr, table.range_key_attr]


def _index_map(table):
    index_map = getattr(table, "_hoist_index_map", None)
    # Built again when the table's GSIs change (UpdateTable adds or drops one).
    if index_map is None or set(index_map.members) != {index.name for index in table.global_indexes}:
        index_map = table._hoist_index_map = _IndexMap(table)
    return index_map


def _partition(table, hash_key):
    part = table.items.get(hash_key) if hash_key is not None else None
    if part is None:
        return []
    return sorted(part.values(), key=lambda i: i.range_key) if table.range_key_attr else [part]


_QUERY_ARGS = ("range_comparison", "range_objs", "limit", "exclusive_start_key", "scan_index_forward",
               "projection_expressions", "index_name")


def _query_args(args, kwargs):
    """Table.query's arguments after the hash key, by name (moto passes them by position)."""
    return dict(zip(_QUERY_ARGS, args), **{k: v for k, v in kwargs.items() if k in _QUERY_ARGS})


def _window(index_map, index_name, hash_key, args, kwargs):
    """The keys a Query with a Limit can answer from: a run of the partition in moto's order
    from just before where the page starts (moto skips what comes before its start key
    itself), 2 x Limit + 2 long; and whether the run reaches the partition's end in the
    Query's direction. None when the whole partition is as cheap."""
    attrs = index_map.sort_attrs.get(index_name)
    if (index_name, hash_key) in index_map.unordered:
        return None
    in_order = index_map.ordered.get(index_name, {}).get(hash_key)
    given = _query_args(args, kwargs)
    limit, start, forward = given.get("limit"), given.get("exclusive_start_key"), given.get("scan_index_forward") is not False
    if not attrs or not in_order or not limit:
        return None
    size = 2 * limit + 2
    if len(in_order) <= size:
        return None
    if start:
        try:
            at = bisect.bisect_left(in_order, tuple(_DynamoType(start[a]).cast_value for a in attrs))
        except (KeyError, TypeError, ValueError):
            return None
    else:
        at = 0 if forward else len(in_order)
    if forward:
        begin = max(0, at - 1)
        end = min(len(in_order), begin + size)
        to_the_end = end == len(in_order)
    else:
        end = min(len(in_order), at + 2)
        begin = max(0, end - size)
        to_the_end = begin == 0
    pkey_of = index_map.pkey_of[index_name]
    return [pkey_of[k] for k in in_order[begin:end]], to_the_end


def _items(table, keys):
    return [i for i in (table.get_item(h, r) for h, r in keys) if i is not None]


def _answer(table, hash_key, items, args, kwargs):
    _query_scope.table, _query_scope.items = table, items
    try:
        return _original_query(table, hash_key, *args, **kwargs)
    finally:
        _query_scope.table = None


def _query(self, hash_key, *args, **kwargs):
    index_name = _query_args(args, kwargs).get("index_name")
    with _lock:
        index_map = _index_map(self)
        members = index_map.members.get(index_name) if index_name is not None else None
        if index_name is None:
            return _answer(self, hash_key, _partition(self, hash_key), args, kwargs)
        if members is None or hash_key is None:
            return _answer(self, hash_key, None, args, kwargs)  # a local index: moto's own walk
        # A page from a window of the partition is the page from all of it when moto stops
        # at the Limit (or the result size) inside the window, which it says with a
        # LastEvaluatedKey, or when the window runs to the partition's end. Otherwise (a
        # range condition the window's items miss) the whole partition, as before.
        window = _window(index_map, index_name, hash_key, args, kwargs)
        if window is not None:
            keys, to_the_end = window
            answer = _answer(self, hash_key, _items(self, keys), args, kwargs)
            if to_the_end or answer[2] is not None:
                return answer
        return _answer(self, hash_key, _items(self, members.get(hash_key, ())), args, kwargs)


def _all_items(self):
    if getattr(_query_scope, "table", None) is self and _query_scope.items is not None:
        return _query_scope.items
    return _original_all_items(self)


def _replace(table, key_attrs):
    """Puts the item with these key attributes (JSON form) where it now belongs."""
    index_map = getattr(table, "_hoist_index_map", None)
    if index_map is None or table.hash_key_attr not in key_attrs:
        return
    hash_value = _DynamoType(key_attrs[table.hash_key_attr])
    range_value = _DynamoType(key_attrs[table.range_key_attr]) if table.range_key_attr else None
    try:
        item = table.get_item(hash_value, range_value)
    except Exception:  # noqa: BLE001 - gone
        item = None
    index_map.place(table, (hash_value, range_value), item)


def _keeping_the_map(write):
    def wrapped(self, table_name, key_or_item, *args, **kwargs):
        with _lock:
            try:
                return write(self, table_name, key_or_item, *args, **kwargs)
            finally:
                table = self.tables.get(table_name)
                try:
                    if table is not None:
                        _replace(table, key_or_item)
                except Exception:  # noqa: BLE001 - never hide moto's own answer
                    table._hoist_index_map = None  # rebuilt at the next index Query
    return wrapped


def _locked(call):
    def wrapped(*args, **kwargs):
        with _lock:
            return call(*args, **kwargs)
    return wrapped


for _name in ("put_item", "delete_item", "update_item"):
    setattr(models.DynamoDBBackend, _name, _keeping_the_map(getattr(models.DynamoDBBackend, _name)))
models.DynamoDBBackend.transact_write_items = _locked(models.DynamoDBBackend.transact_write_items)
Table.query = _query
Table.all_items = _all_items


def _expired(table, now):
    """Keys (JSON form) of the items whose TTL attribute is a number in the past."""
    attr = table.ttl.get("AttributeName") if table.ttl.get("TimeToLiveStatus") == "ENABLED" else None
    if not attr:
        return []
    keys = []
    for item in _original_all_items(table):
        value = item.attrs.get(attr)
        if value is None or value.type != "N":
            continue
        try:
            if float(value.value) >= now:
                continue
        except ValueError:
            continue
        key = {table.hash_key_attr: item.hash_key.to_json()}
        if table.range_key_attr:
            key[table.range_key_attr] = item.range_key.to_json()
        keys.append(key)
    return keys


def sweep_expired(now=None):
    """Deletes expired items in every account, region and table; returns how many."""
    now = time.time() if now is None else now
    deleted = 0
    for account in list(models.dynamodb_backends.values()):
        for backend in list(account.values()):
            for name, table in list(backend.tables.items()):
                with _lock:
                    for key in _expired(table, now):
                        try:
                            backend.delete_item(name, key)
                            deleted += 1
                        except Exception:  # noqa: BLE001 - gone meanwhile
                            pass
    return deleted


def _sweeper(every):
    while True:
        time.sleep(every)
        try:
            sweep_expired()
        except Exception as e:  # noqa: BLE001 - the server goes on; next minute again
            print(f"moto_server.py: TTL sweep failed: {e}", file=sys.stderr)


if __name__ == "__main__":
    threading.Thread(target=_sweeper, args=(float(os.environ.get("HOIST_MOTO_TTL_SWEEP_SECONDS", "60")),),
                     daemon=True).start()
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
